//! Work a store does off the request path, on one background thread: resolving the
//! intents of committed transactions (marking a staged record COMMITTED first) and
//! measuring tablets that grew ([`super::size`]). When the thread is busy or absent,
//! a commit resolves its own intents.

use std::sync::{mpsc, Arc};

use tessera_storage::mvcc::{TxnId, TxnStatus};
use tessera_storage::Timestamp;

use super::Store;

/// The intents of a committed transaction, to resolve after its commit point.
pub(super) struct Resolution {
    pub txn: TxnId,
    /// Where its record is anchored.
    pub anchor: Vec<u8>,
    pub keys: Vec<Vec<u8>>,
    pub commit_ts: Timestamp,
    /// Its record is still STAGING at `commit_ts`: mark it COMMITTED first.
    pub staged: bool,
}

/// How many jobs wait for the background thread before commits resolve their own
/// intents (and size checks are skipped).
const BACKGROUND_QUEUE: usize = 1024;

/// Work a store does off the request path.
pub(super) enum Job {
    /// Resolve a committed transaction's intents.
    Resolve(Resolution),
    /// Measure a tablet that grew, and split it if it is too large ([`super::size`]).
    Measure(u64),
}

impl Store {
    /// Start the thread that resolves the intents of committed transactions and
    /// measures growing tablets in the background; it ends with the store.
    pub(super) fn start_background(self: &Arc<Self>) {
        let (tx, rx) = mpsc::sync_channel::<Job>(BACKGROUND_QUEUE);
        let store = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("store-background".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let Some(store) = store.upgrade() else {
                        return;
                    };
                    match job {
                        Job::Resolve(r) => store.resolve_committed(r),
                        Job::Measure(range) => store.measure(range),
                    }
                }
            });
        match spawned {
            Ok(_) => *self.background.lock() = Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no background thread; commits resolve their own intents")
            }
        }
    }

    /// Hand `job` to the background thread; `Err` gives it back when the thread is
    /// busy or absent.
    pub(super) fn in_background(&self, job: Job) -> Result<(), Job> {
        match &*self.background.lock() {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                mpsc::TrySendError::Full(j) | mpsc::TrySendError::Disconnected(j) => j,
            }),
            None => Err(job),
        }
    }

    /// Resolve `job` in the background, or here when the background thread is busy.
    pub(super) fn resolve_later(&self, job: Resolution) {
        if job.keys.is_empty() && !job.staged {
            return;
        }
        if let Err(Job::Resolve(job)) = self.in_background(Job::Resolve(job)) {
            self.resolve_committed(job);
        }
    }

    fn resolve_committed(&self, job: Resolution) {
        if job.staged {
            match self.mark_committed(job.txn, &job.anchor, job.commit_ts) {
                Ok(TxnStatus::Committed(ts)) if ts == job.commit_ts => {}
                Ok(other) => {
                    tracing::error!(txn = job.txn, status = ?other, "a staged commit's record says otherwise");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, txn = job.txn, "marking a staged transaction committed failed; a recovery will");
                    return;
                }
            }
        }
        if let Err(e) = self.resolve_everywhere(job.txn, &job.keys, Some(job.commit_ts)) {
            tracing::warn!(error = %e, txn = job.txn, "resolving the intents of a committed transaction failed; they stay until read");
        }
    }
}
