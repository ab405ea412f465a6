//! The audit log's tamper-evident format, pure and without IO: event records and their
//! hashes, the signing keys (HMAC per event, Ed25519 checkpoints, AES-GCM for stored secrets)
//! and the verification of a chain of links against its checkpoints. The store appends and
//! reads with it inside its transactions; `audit` (the recording service) and the export use it.

pub mod event;
pub mod verify;
