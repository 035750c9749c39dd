//! Errors of the storage layer.

/// A storage error. Conflicts carry the key they concern so that upper layers can name it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying engine failed (I/O error, corruption, disk full).
    #[error("storage engine: {0}")]
    Engine(String),
    /// Stored bytes could not be decoded: a bug or corruption.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A read met a write committed above its timestamp but within its uncertainty
    /// interval: the reader must restart at `ts` or above.
    #[error("read within the uncertainty interval: a write at {ts} on key {key:?}")]
    Uncertain {
        /// The user key written.
        key: Vec<u8>,
        /// The write's commit timestamp.
        ts: crate::Timestamp,
    },
}

/// Result alias of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Engine(e.into_string())
    }
}
