//! `StoreError`: every way a store operation can fail.

use std::path::PathBuf;

/// Why a store operation failed.
///
/// A refused join token is not an error; see [`super::TokenRefusal`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created (missing directory, locked by another
    /// process, not a redb file).
    #[error("cannot open the store at {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::DatabaseError,
    },
    /// A read or write transaction could not be started.
    #[error("cannot begin a store transaction")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened (schema mismatch or storage failure).
    #[error("cannot open a store table")]
    Table(#[from] redb::TableError),
    /// Reading or writing a table failed (IO error, corruption detected by redb).
    #[error("store read or write failed")]
    Storage(#[from] redb::StorageError),
    /// A write transaction could not be committed; nothing of it is stored.
    #[error("cannot commit a store transaction")]
    Commit(#[from] redb::CommitError),
    /// A stored record could not be decoded.
    #[error("corrupt store record: {0}")]
    Corrupt(String),
    /// A record could not be encoded.
    #[error("cannot encode {what} record")]
    Encode {
        /// Which kind of record.
        what: &'static str,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a build with another schema version.
    #[error(
        "store schema version {found} is not supported (this build uses {supported}); \
         run the matching warden version or restore a backup"
    )]
    UnsupportedSchema {
        /// Version recorded in the file.
        found: u64,
        /// Version this build reads and writes.
        supported: u64,
    },
    /// An insert found a record with the same id.
    #[error("{what} {id} already exists")]
    AlreadyExists {
        /// Which kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The store cannot write now (a full disk, or telemetry held back to keep the audit
    /// log's reserve); the reason names the disk. Retry later.
    #[error("the store cannot write: {reason}")]
    Unavailable {
        /// What is wrong, naming the file or disk.
        reason: String,
    },
    /// A history query asked for a step that is not positive.
    #[error("step must be a positive number of milliseconds, got {0}")]
    InvalidStep(i64),
}
