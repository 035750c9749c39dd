//! Errors of the KV layer. Each says whether retrying the transaction can succeed.

use tessera_storage::Timestamp;

/// A KV error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transaction conflicts with another one and must restart (SQLSTATE 40001).
    /// `key` is the conflicting user key; the query layer names its table and columns.
    #[error("transaction conflict on key {key:?}: {reason}")]
    Conflict {
        /// The user key where the conflict was found.
        key: Vec<u8>,
        /// What was found there.
        reason: String,
    },
    /// A read met a write committed above the transaction's `read_ts` that may have
    /// happened before the transaction began (its commit timestamp lies within the
    /// clock uncertainty interval); the transaction must restart above `ts` (40001).
    #[error("read within the uncertainty interval: key {key:?} was written at {ts}")]
    Uncertain {
        /// The user key written.
        key: Vec<u8>,
        /// The commit timestamp of the write.
        ts: Timestamp,
    },
    /// The outcome of a commit cannot be known (SQLSTATE 40003).
    #[error("result is ambiguous: {0}")]
    Ambiguous(String),
    /// The transaction was used after it finished.
    #[error("transaction already {0}")]
    Finished(&'static str),
    /// A read below the garbage-collection threshold: history is gone (retryable).
    #[error("read timestamp {read_ts} is below the GC threshold {threshold}")]
    TooOld {
        /// The transaction's read timestamp.
        read_ts: Timestamp,
        /// The GC threshold.
        threshold: Timestamp,
    },
    /// Replication failed in a way the caller cannot fix by retrying here (the group is
    /// unknown on this node, raft-rs refused an operation).
    #[error("replication: {0}")]
    Raft(String),
    /// This node does not hold the lease of the tablet the request needs; `leader` is the
    /// node that does, if known.
    #[error("this node does not hold the tablet's lease (leaseholder: {})", leader.map(|l| format!("node {l}")).unwrap_or_else(|| "unknown".into()))]
    NotLeaseholder {
        /// The leaseholder's node id.
        leader: Option<u64>,
    },
    /// The tablet the request reached no longer owns `key` (a split moved it); the
    /// request must be routed again (retryable).
    #[error("the tablet no longer owns key {key:?}: it was split; retry")]
    RangeKeyMismatch {
        /// The first key of the request.
        key: Vec<u8>,
    },
    /// The request met an intent of transaction `txn` whose record is STAGING and had to
    /// learn whether it committed, which takes requests to other tablets that must not
    /// wait under this request's latches. The gateway settles the transaction's status
    /// (status recovery) and sends the request again; it is retryable
    /// should it ever reach a client.
    #[error("the key is held by transaction {:x}, whose commit is being decided; retry", *txn as u64)]
    Unsettled {
        /// The transaction whose record is STAGING.
        txn: u128,
        /// The user key its record is anchored at.
        anchor: Vec<u8>,
    },
    /// The request needs something not built yet (SQLSTATE 0A000); names the feature.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] tessera_storage::Error),
}

impl Error {
    /// Whether running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. }
                | Error::TooOld { .. }
                | Error::Uncertain { .. }
                | Error::RangeKeyMismatch { .. }
                | Error::Unsettled { .. }
        )
    }
}

/// Result alias of the KV layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
