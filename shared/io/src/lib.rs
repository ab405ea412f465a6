//! IO helpers both binaries need, kept apart from the sans-IO `warden-shared`:
//! frames on QUIC streams, private key files, config file loading and process glue.

pub mod config;
pub mod framed;
pub mod fs;
pub mod process;
