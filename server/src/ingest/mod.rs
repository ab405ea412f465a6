//! Ingest services: the writer that commits agents' batches to the store before they are
//! acknowledged, and the registry of connected agents. The QUIC edge that feeds them is
//! `crate::quic`.

pub mod live;
pub mod writer;
