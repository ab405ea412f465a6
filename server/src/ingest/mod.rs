//! Ingest services: the writer that commits agents' batches to the store before they are
//! acknowledged, the writer of agent records' session updates, and the registry of
//! connected agents. The QUIC edge that feeds them is `crate::quic`.

pub mod live;
pub mod records;
pub mod writer;
