//! The session's current transaction, shared with the table providers and functions
//! that a running statement uses.
//!
//! KV calls wait (for a lease confirmation, a Raft round, a latch). Every call made
//! through the slot, and every commit and rollback, runs through [`may_block`], so a
//! waiting session hands its runtime worker's other tasks to another thread instead of
//! holding up every other session scheduled there.

use std::sync::Arc;

use parking_lot::Mutex;
use tessera_cluster::Txn;

use crate::error::{Error, Result, SqlState};

/// A slot holding the session's open transaction, if any. Cloning shares the slot.
#[derive(Clone, Debug, Default)]
pub struct TxnSlot(Arc<Mutex<Option<Txn>>>);

impl TxnSlot {
    /// Run `f` on the open transaction. The lock is held only for the call, never
    /// across an `.await`.
    pub fn with<R>(&self, f: impl FnOnce(&mut Txn) -> Result<R>) -> Result<R> {
        let mut guard = self.0.lock();
        match guard.as_mut() {
            Some(txn) => may_block(|| f(txn)),
            None => Err(Error::new(
                SqlState::NoActiveSqlTransaction,
                "no transaction is open",
            )),
        }
    }

    /// Commit the transaction, if one is installed (it is removed).
    pub fn commit(&self) -> Option<tessera_cluster::Result<tessera_storage::Timestamp>> {
        let mut txn = self.take()?;
        Some(may_block(|| txn.commit()))
    }

    /// Roll the transaction back, if one is installed (it is removed).
    pub fn rollback(&self) {
        if let Some(mut txn) = self.take() {
            if let Err(e) = may_block(|| txn.rollback()) {
                tracing::warn!(error = %e, "rollback failed");
            }
        }
    }

    /// Install a transaction.
    pub fn set(&self, txn: Txn) {
        *self.0.lock() = Some(txn);
    }

    /// Remove and return the transaction.
    pub fn take(&self) -> Option<Txn> {
        self.0.lock().take()
    }

    /// Whether a transaction is installed.
    pub fn is_open(&self) -> bool {
        self.0.lock().is_some()
    }
}

/// Run `f`, which may wait, without holding up the runtime's other tasks (on a
/// multi-threaded runtime; elsewhere it simply runs).
pub(crate) fn may_block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
