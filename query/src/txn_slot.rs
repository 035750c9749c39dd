//! The session's current transaction, shared with the table providers and functions
//! that a running statement uses.

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
            Some(txn) => f(txn),
            None => Err(Error::new(
                SqlState::NoActiveSqlTransaction,
                "no transaction is open",
            )),
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
