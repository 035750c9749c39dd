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
}

/// Result alias of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Engine(e.into_string())
    }
}
