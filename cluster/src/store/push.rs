//! Meeting another transaction's intent: transaction heartbeats, pushes through the
//! transaction record, and the status a read or a write acts on (see the store's module
//! docs, "Abandoned intents", and [`super::commit`], "Why it is serializable").
//!
//! A record lives on the tablet of its anchor ([`Store::record_tablet`]); an intent
//! may lie on any tablet and names the anchor. Whoever meets an intent whose record is elsewhere learns its fate
//! from the record's leaseholder with a [`Push`], evaluated there under the record's
//! latch, so that a push and the commit that writes the record are ordered:
//! - a **timestamp push** raises the lowest timestamp the pending transaction may
//!   commit at above the reader's, so the reader may ignore the intent;
//! - an **abort push** marks a pending transaction that has been silent for longer than
//!   the expiry ABORTED. A transaction was last heard from at its record's heartbeat
//!   or, when later (or there is no record yet: the record of a transaction whose
//!   intents all lie outside the record's tablet is written by its first heartbeat or
//!   its commit), at the timestamp of the intent the pusher met;
//! - both only ever change a PENDING record, and both answer the status they leave,
//!   so one that meets COMMITTED learns the commit timestamp instead.
//!
//! The local replica's copy of a record can lag, but a final status (COMMITTED or
//! ABORTED) never changes: only a pending one is asked about.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tessera_storage::mvcc::{Intent, TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Timestamp, WriteBatch};

use super::tablet::Tablet;
use super::Store;
use crate::latch::Guard;
use crate::remote::{KvRequest, KvResponse};
use crate::{Error, Result};

/// What a write learned about the owners of the intents it met.
#[derive(Default)]
pub(super) struct Met<'a> {
    /// Transactions it aborted, with their anchors and the latches of their records.
    aborted: Vec<(TxnId, Vec<u8>, Guard<'a>)>,
    /// A STAGING transaction it met (with its anchor), whose fate must be settled first.
    unsettled: Option<(TxnId, Vec<u8>)>,
}

/// What a push asks of a pending transaction's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Push {
    /// Commit at or above this timestamp.
    Timestamp(Timestamp),
    /// Abort, if the transaction has been silent for longer than the expiry; the
    /// timestamp is that of the intent the pusher met (the transaction was alive then).
    Abort(Timestamp),
}

impl Store {
    /// Renew the heartbeat of every open transaction of this gateway that holds
    /// intents; call it every [`crate::StoreConfig::txn_heartbeat_nanos`]. Returns how many
    /// were renewed. A transaction that a conflicting writer has aborted stays known
    /// here until it ends (its commit fails).
    pub fn heartbeat_once(&self) -> usize {
        let open: Vec<(TxnId, Vec<u8>)> = self
            .heartbeats
            .lock()
            .iter()
            .map(|(t, a)| (*t, a.clone()))
            .collect();
        let mut renewed = 0;
        for (txn, anchor) in open {
            match self.heartbeat(txn, &anchor) {
                Ok(()) => renewed += 1,
                Err(e) => tracing::debug!(txn, error = %e, "transaction heartbeat failed"),
            }
        }
        renewed
    }

    /// Renew `txn`'s heartbeat on the leaseholder of its record (writing the record,
    /// PENDING, when there is none yet).
    pub(super) fn heartbeat(&self, txn: TxnId, anchor: &[u8]) -> Result<()> {
        let t = self.record_tablet(anchor);
        let Some(node) = self.forward_to(&t)? else {
            return self.heartbeat_local(&t, txn, anchor);
        };
        let anchor = anchor.to_vec();
        self.forward(node, KvRequest::Heartbeat { txn, anchor })
            .map(|_| ())
    }

    pub(super) fn heartbeat_local(&self, t: &Tablet, txn: TxnId, anchor: &[u8]) -> Result<()> {
        let key = TxnRecord::key(anchor, txn);
        let _latched = Self::latch_record(t, txn, anchor, Vec::new())?;
        match self.status(anchor, txn)? {
            TxnStatus::Pending => {
                let mut b = WriteBatch::new();
                let pushed = TxnRecord::pushed(&*self.engine, anchor, txn)?;
                b.put(
                    Cf::Data,
                    key,
                    TxnRecord::encode_pending(self.clock.now(), pushed),
                );
                self.write(t, b, false)
            }
            TxnStatus::Staging(ts) => {
                let mut b = WriteBatch::new();
                let in_flight = TxnRecord::in_flight(&*self.engine, anchor, txn)?;
                b.put(
                    Cf::Data,
                    key,
                    TxnRecord::encode_staging(ts, self.clock.now(), &in_flight),
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

    /// Push `txn` at the leaseholder of its record; answers the status it leaves.
    pub(super) fn push(&self, txn: TxnId, anchor: &[u8], push: Push) -> Result<TxnStatus> {
        let t = self.record_tablet(anchor);
        let Some(node) = self.forward_to(&t)? else {
            return self.push_local(&t, txn, anchor, push);
        };
        let anchor = anchor.to_vec();
        match self.forward(node, KvRequest::Push { txn, anchor, push })? {
            KvResponse::Status(s) => Ok(s),
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Evaluate a push on `t`, the record's tablet, under the record's latch.
    pub(super) fn push_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
        push: Push,
    ) -> Result<TxnStatus> {
        // The record must be current here: an earlier leaseholder may have written it.
        if let Some(r) = &t.replicator {
            r.read_barrier()?;
        }
        let key = TxnRecord::key(anchor, txn);
        let _latched = Self::latch_record(t, txn, anchor, Vec::new())?;
        let status = self.status(anchor, txn)?;
        if status != TxnStatus::Pending {
            return Ok(status);
        }
        let heartbeat = TxnRecord::heartbeat(&*self.engine, anchor, txn)?;
        let pushed = TxnRecord::pushed(&*self.engine, anchor, txn)?;
        let mut b = WriteBatch::new();
        let after = match push {
            Push::Timestamp(ts) if ts <= pushed => return Ok(status),
            Push::Timestamp(ts) => {
                let hb = heartbeat.unwrap_or(Timestamp::ZERO);
                b.put(Cf::Data, key, TxnRecord::encode_pending(hb, ts));
                TxnStatus::Pending
            }
            Push::Abort(seen) if !self.expired(heartbeat, seen) => return Ok(status),
            Push::Abort(_) => {
                tracing::info!(txn, "aborting a transaction whose heartbeat expired");
                b.put(Cf::Data, key, TxnRecord::encode(TxnStatus::Aborted));
                TxnStatus::Aborted
            }
        };
        // Whoever pushed acts on the answer at once: it must be durable first.
        self.write(t, b, true)?;
        Ok(after)
    }

    /// Whether a pending transaction whose record carries `heartbeat` and that wrote an
    /// intent at `intent_ts` counts as abandoned: silent for longer than the expiry.
    pub(super) fn expired(&self, heartbeat: Option<Timestamp>, intent_ts: Timestamp) -> bool {
        let last = heartbeat.unwrap_or(Timestamp::ZERO).max(intent_ts);
        let now = self.clock.now();
        now.wall.saturating_sub(last.wall) > self.config.txn_expiry_nanos
    }

    /// The fate of a transaction owning an intent at `intent_ts` that a read at
    /// `read_ts` with uncertainty limit `limit` meets on `t`. A pending intent whose
    /// record lies on `t` is ignored: its commit lands above `t`'s timestamp cache,
    /// where this read is recorded. One whose record lies elsewhere is ignored without
    /// asking when it lies above both `read_ts` and `limit` (its commit cannot be
    /// lower); otherwise the record is pushed above `read_ts`, which also answers
    /// whether it committed. A STAGING transaction commits at or above its staging
    /// timestamp: above both, it is ignored too; otherwise the read cannot go on before
    /// its fate is settled ([`Error::Unsettled`]). A push that fails, or a
    /// transaction to settle, leaves its error in `failed`.
    pub(super) fn status_for_read(
        &self,
        t: &Tablet,
        intent: &Intent,
        read_ts: Timestamp,
        limit: Timestamp,
        failed: &Mutex<Option<Error>>,
    ) -> Result<TxnStatus, tessera_storage::Error> {
        let (txn, anchor) = (intent.txn, intent.anchor.as_slice());
        let mut status = self.status(anchor, txn)?;
        if status == TxnStatus::Pending
            && intent.ts <= read_ts.max(limit)
            && !t.desc.read().contains(anchor)
        {
            status = self
                .push(txn, anchor, Push::Timestamp(read_ts.next()))
                .map_err(|e| {
                    let message = e.to_string();
                    *failed.lock() = Some(e);
                    tessera_storage::Error::Engine(message)
                })?;
        }
        match status {
            TxnStatus::Staging(ts) if ts > read_ts.max(limit) => Ok(TxnStatus::Pending),
            TxnStatus::Staging(_) => {
                *failed.lock() = Some(Error::Unsettled {
                    txn,
                    anchor: anchor.to_vec(),
                });
                Err(tessera_storage::Error::Engine(format!(
                    "transaction {:x} is staging",
                    txn as u64
                )))
            }
            other => Ok(other),
        }
    }

    /// The fate of a transaction owning an intent at `intent_ts` that a write on `t`
    /// meets: [`Store::status`], except that a pending transaction silent for longer
    /// than the expiry is aborted. When its record lies on `t`, its id is added to `met`,
    /// and the caller must write its ABORTED record in the batch that overwrites its
    /// intent (see the module docs); elsewhere it is aborted by a push to its record's
    /// leaseholder, and a push that fails leaves it pending. A STAGING transaction is
    /// not aborted: the write fails, and [`Self::met_error`] names it for settling.
    pub(super) fn status_for_write<'a>(
        &'a self,
        t: &'a Tablet,
        intent: &Intent,
        met: &Mutex<Met<'a>>,
    ) -> Result<TxnStatus, tessera_storage::Error> {
        let (txn, anchor) = (intent.txn, intent.anchor.as_slice());
        if met.lock().aborted.iter().any(|(t, _, _)| *t == txn) {
            return Ok(TxnStatus::Aborted);
        }
        let status = self.status(anchor, txn)?;
        if let TxnStatus::Staging(_) = status {
            return Self::unsettled(met, txn, anchor);
        }
        let heartbeat = TxnRecord::heartbeat(&*self.engine, anchor, txn)?;
        if status != TxnStatus::Pending || !self.expired(heartbeat, intent.ts) {
            return Ok(status);
        }
        if !t.desc.read().contains(anchor) {
            // This replica's copy of the heartbeat may lag: the record's leaseholder
            // decides.
            let status = self
                .push(txn, anchor, Push::Abort(intent.ts))
                .unwrap_or_else(|e| {
                    tracing::debug!(txn, error = %e, "pushing an abandoned transaction failed");
                    TxnStatus::Pending
                });
            if let TxnStatus::Staging(_) = status {
                return Self::unsettled(met, txn, anchor);
            }
            return Ok(status);
        }
        // The record's latch makes the abort conditional on PENDING. It is taken
        // without waiting (this request already holds latches); while it is busy, or
        // when a split took the record elsewhere meanwhile, the transaction counts as
        // pending.
        let Some(latched) = t.latches.try_acquire(vec![super::record_latch(txn)]) else {
            return Ok(status);
        };
        if !t.desc.read().contains(anchor) {
            return Ok(status);
        }
        let status = self.status(anchor, txn)?;
        if status != TxnStatus::Pending {
            return Ok(status);
        }
        tracing::info!(txn, "aborting a transaction whose heartbeat expired");
        met.lock().aborted.push((txn, anchor.to_vec(), latched));
        Ok(TxnStatus::Aborted)
    }

    fn unsettled(
        met: &Mutex<Met<'_>>,
        txn: TxnId,
        anchor: &[u8],
    ) -> Result<TxnStatus, tessera_storage::Error> {
        met.lock().unsettled = Some((txn, anchor.to_vec()));
        Err(tessera_storage::Error::Engine(format!(
            "transaction {:x} is staging",
            txn as u64
        )))
    }

    /// The error of a write whose MVCC step failed with `e`: [`Error::Unsettled`] when
    /// it met a STAGING transaction.
    pub(super) fn met_error(met: &Mutex<Met<'_>>, e: tessera_storage::Error) -> Error {
        match met.lock().unsettled.clone() {
            Some((txn, anchor)) => Error::Unsettled { txn, anchor },
            None => e.into(),
        }
    }

    /// `e`, unless the write met a STAGING transaction: then [`Error::Unsettled`].
    pub(super) fn unsettled_first(met: &Mutex<Met<'_>>, e: Error) -> Error {
        match met.lock().unsettled.clone() {
            Some((txn, anchor)) => Error::Unsettled { txn, anchor },
            None => e,
        }
    }

    /// Queue the ABORTED records of the transactions a write pushed aside (their
    /// latches stay held until the batch is written).
    pub(super) fn record_pushed(batch: &mut WriteBatch, met: &Mutex<Met<'_>>) {
        for (txn, anchor, _) in met.lock().aborted.iter() {
            batch.put(
                Cf::Data,
                TxnRecord::key(anchor, *txn),
                TxnRecord::encode(TxnStatus::Aborted),
            );
        }
    }
}
