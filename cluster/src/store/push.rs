//! Abandoned intents: transaction heartbeats, and writers that push aside the intents
//! of a transaction whose heartbeat expired (see the store's module docs, "Abandoned
//! intents").

use parking_lot::Mutex;
use tessera_storage::mvcc::{TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Timestamp, WriteBatch};

use super::tablet::Tablet;
use super::Store;
use crate::latch::{Access, Guard, Span};
use crate::remote::KvRequest;
use crate::{Error, Result};

/// Transactions a write aborted, with the latches of their records.
type Pushed<'a> = Vec<(TxnId, Guard<'a>)>;

impl Store {
    /// Renew the heartbeat of every open transaction of this gateway that holds
    /// intents; call it every [`crate::StoreConfig::txn_heartbeat_nanos`]. Returns how many
    /// were renewed. A transaction that a conflicting writer has aborted stays known
    /// here until it ends (its commit fails).
    pub fn heartbeat_once(&self) -> usize {
        let open: Vec<TxnId> = self.heartbeats.lock().iter().copied().collect();
        let mut renewed = 0;
        for txn in open {
            match self.heartbeat(txn) {
                Ok(()) => renewed += 1,
                Err(e) => tracing::debug!(txn, error = %e, "transaction heartbeat failed"),
            }
        }
        renewed
    }

    /// Renew `txn`'s heartbeat on the leaseholder of its record.
    pub(super) fn heartbeat(&self, txn: TxnId) -> Result<()> {
        let t = self.tablets.for_key(&TxnRecord::key(txn));
        let Some(node) = self.forward_to(&t)? else {
            return self.heartbeat_local(&t, txn);
        };
        self.forward(node, KvRequest::Heartbeat { txn }).map(|_| ())
    }

    pub(super) fn heartbeat_local(&self, t: &Tablet, txn: TxnId) -> Result<()> {
        let key = TxnRecord::key(txn);
        let record = Span::key(&key, Access::Write);
        let _latched = Self::latch(t, vec![record])?;
        match self.status(txn)? {
            TxnStatus::Pending => {
                let mut b = WriteBatch::new();
                b.put(
                    Cf::Data,
                    TxnRecord::key(txn),
                    TxnRecord::encode_heartbeat(self.clock.now()),
                );
                self.write(t, b, false)
            }
            TxnStatus::Aborted => Err(Self::aborted_by_push()),
            TxnStatus::Committed(_) => Ok(()),
        }
    }

    pub(super) fn aborted_by_push() -> Error {
        Error::Conflict {
            key: Vec::new(),
            reason:
                "the transaction was aborted by a conflicting writer after its heartbeat expired"
                    .into(),
        }
    }

    /// The fate of a transaction owning an intent that a write on `t` meets:
    /// [`Store::status`], except that a pending transaction whose heartbeat has expired
    /// at `now` is aborted. Its id is added to `pushed`, and the caller must write its
    /// ABORTED record in the batch that overwrites its intent (see the module docs).
    /// Only a record on `t` itself can go in that batch; elsewhere the transaction
    /// counts as pending.
    pub(super) fn status_for_write<'a>(
        &'a self,
        t: &'a Tablet,
        txn: TxnId,
        now: Timestamp,
        pushed: &Mutex<Pushed<'a>>,
    ) -> Result<TxnStatus, tessera_storage::Error> {
        if pushed.lock().iter().any(|(t, _)| *t == txn) {
            return Ok(TxnStatus::Aborted);
        }
        let status = self.status(txn)?;
        if status != TxnStatus::Pending {
            return Ok(status);
        }
        // No heartbeat at all: the record predates heartbeats; nothing renews it.
        let expired = TxnRecord::heartbeat(&*self.engine, txn)?
            .is_none_or(|hb| now.wall.saturating_sub(hb.wall) > self.config.txn_expiry_nanos);
        if !expired {
            return Ok(status);
        }
        // The record's latch makes the abort conditional on PENDING. It is taken
        // without waiting (this request already holds latches); while it is busy, the
        // transaction counts as pending.
        let key = TxnRecord::key(txn);
        if !t.desc.read().contains(&key) {
            return Ok(status);
        }
        let record = Span::key(&key, Access::Write);
        let Some(latched) = t.latches.try_acquire(vec![record]) else {
            return Ok(status);
        };
        let status = self.status(txn)?;
        if status != TxnStatus::Pending {
            return Ok(status);
        }
        tracing::info!(txn, "aborting a transaction whose heartbeat expired");
        pushed.lock().push((txn, latched));
        Ok(TxnStatus::Aborted)
    }

    /// Queue the ABORTED records of the transactions a write pushed aside (their
    /// latches stay held until the batch is written).
    pub(super) fn record_pushed(batch: &mut WriteBatch, pushed: &Mutex<Pushed<'_>>) {
        for &(txn, _) in pushed.lock().iter() {
            batch.put(
                Cf::Data,
                TxnRecord::key(txn),
                TxnRecord::encode(TxnStatus::Aborted),
            );
        }
    }
}
