//! Settling a STAGING transaction: waiting for its coordinator, or *status recovery*
//! when the coordinator has gone quiet (see [`super::commit`], "Parallel commits").
//!
//! A STAGING record at `C` lists the transaction's writes in flight on other tablets.
//! The transaction has committed (implicitly) exactly when each of them holds its
//! intent at or below `C`; nobody may act on that until the record says so.
//!
//! ## Recovery
//!
//! 1. Ask every tablet holding an in-flight key whether the intent is there at or
//!    below `C` ([`KvRequest::QueryIntents`]). A tablet that finds it missing records
//!    the key as read at `C` in its timestamp cache, under the key's latch: from then on
//!    no intent of any transaction can be written there at or below `C`, so the
//!    coordinator's own write of it, still on its way, fails (it is pushed above `C`).
//! 2. At the record's leaseholder, under the record's latch: if the record is still
//!    STAGING at `C`, write COMMITTED at `C` when every intent was found, else ABORTED
//!    ([`KvRequest::Recover`]). Any other record is left as it is: its coordinator
//!    staged again higher, or someone else settled it first.
//!
//! ## Why it is safe
//!
//! - The coordinator tells its client of a commit only when every part of its staging
//!   round succeeded: every in-flight intent was written at `C`. A recovery that found
//!   one missing prevented it first, so that part cannot have succeeded. Thus a
//!   recovery never aborts a commit that a client was told of.
//! - A recovery commits only when every intent is there at or below `C`: the
//!   transaction's writes and checks at `C` all succeeded, which is what a commit at
//!   `C` needs ([`super::commit`], "Why it is serializable").
//! - Every move out of STAGING is a conditional write on the record under its latch,
//!   and a final status never changes, so the coordinator, its background finisher and
//!   any number of recoveries agree on one outcome.
//!
//! ## Waiting
//!
//! Requests meet a STAGING intent under their latches and cannot ask other tablets
//! from there; they fail with [`Error::Unsettled`], and the gateway settles the
//! transaction ([`Store::settle`]) and sends them again ([`Store::settling`]). Reads
//! and writes outside a staging round wait for a live coordinator to mark its record
//! (it is at most one round away). A part of a staging round waits only briefly, then
//! fails with a retryable conflict: two committing transactions could wait on each
//! other's intents. A transaction whose coordinator has been silent for longer than
//! the expiry is recovered by whoever meets it.

use std::time::Duration;

use tessera_storage::mvcc::{self, TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Timestamp, WriteBatch};

use super::tablet::Tablet;
use super::Store;
use crate::latch::{Access, Span};
use crate::remote::{KvRequest, KvResponse};
use crate::{Error, Result};

/// How often a request that met STAGING transactions is sent again after settling them.
const SETTLES: usize = 4;

/// How long a request waits between looks at a live STAGING record.
const POLL: Duration = Duration::from_millis(1);

/// How long a request that must not wait long (a part of a staging round) waits for
/// a live STAGING transaction: about the time its coordinator needs to mark it.
const BRIEF: Duration = Duration::from_millis(50);

/// A transaction record as its leaseholder has it.
pub(super) struct RecordState {
    pub status: TxnStatus,
    /// The coordinator has been silent for longer than the expiry.
    pub expired: bool,
    /// The writes a STAGING record lists in flight.
    pub in_flight: Vec<Vec<u8>>,
}

impl Store {
    /// Run `f` (one request on one tablet), settling each STAGING transaction it meets
    /// and running it again, a bounded number of times. A live coordinator is waited
    /// for, with `wait` up to twice the expiry, without only briefly ([`BRIEF`]); then
    /// meeting it is a retryable conflict. A request this node began to serve itself
    /// and its replica refused because the lease had just moved (nothing of it was
    /// done) runs again too, and is then sent to the new leaseholder.
    pub(super) fn settling<T>(&self, wait: bool, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        for _ in 0..SETTLES {
            match f() {
                Err(Error::Unsettled { txn, anchor }) => {
                    if let TxnStatus::Staging(_) = self.settle(txn, &anchor, wait, false)? {
                        return Err(Self::still_committing(txn));
                    }
                }
                Err(Error::NotLeaseholder { leader }) => {
                    tracing::debug!(?leader, "the lease moved under a request; routing it again");
                }
                other => return other,
            }
        }
        f()
    }

    fn still_committing(txn: TxnId) -> Error {
        Error::Conflict {
            key: Vec::new(),
            reason: format!(
                "the key is held by transaction {:x}, which is still committing",
                txn as u64
            ),
        }
    }

    /// Learn the fate of `txn`, whose record was seen STAGING. A live coordinator is
    /// waited for (with `wait` up to twice the expiry, else [`BRIEF`]), then its
    /// STAGING status is answered; an expired one, or any with `force` (the
    /// coordinator settling its own commit, which does not wait), is recovered.
    /// Answers the status the record is left with.
    pub(super) fn settle(
        &self,
        txn: TxnId,
        anchor: &[u8],
        wait: bool,
        force: bool,
    ) -> Result<TxnStatus> {
        let began = self.clock.now().wall;
        let patience = if wait {
            2 * self.config.txn_expiry_nanos
        } else {
            BRIEF.as_nanos() as u64
        };
        let polls = patience / POLL.as_nanos() as u64;
        for _ in 0..=polls {
            let record = self.record_of(txn, anchor)?;
            let TxnStatus::Staging(ts) = record.status else {
                return Ok(record.status);
            };
            if record.expired || force {
                tracing::info!(txn, %ts, "recovering the status of a staging transaction");
                let status = self.recover(txn, anchor, ts, &record.in_flight)?;
                if !matches!(status, TxnStatus::Staging(_)) {
                    return Ok(status);
                }
                // Staged again, higher: look again.
                continue;
            }
            if self.clock.now().wall.saturating_sub(began) > patience {
                return Ok(record.status);
            }
            if self.config.threads {
                std::thread::sleep(POLL);
            } else {
                // In a simulation, the clock's time passes instead.
                let until = self.clock.physical_nanos() + POLL.as_nanos() as u64;
                self.clock.wait_until(until);
            }
        }
        Ok(self.record_of(txn, anchor)?.status)
    }

    /// `txn`'s record at its leaseholder.
    fn record_of(&self, txn: TxnId, anchor: &[u8]) -> Result<RecordState> {
        let t = self.record_tablet(anchor);
        let Some(node) = self.forward_to(&t)? else {
            return self.record_local(&t, txn, anchor);
        };
        let anchor = anchor.to_vec();
        match self.forward(node, KvRequest::Record { txn, anchor })? {
            KvResponse::Record {
                status,
                expired,
                in_flight,
            } => Ok(RecordState {
                status,
                expired,
                in_flight,
            }),
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    pub(super) fn record_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
    ) -> Result<RecordState> {
        // The record must be current here: an earlier leaseholder may have written it.
        if let Some(r) = &t.replicator {
            r.read_barrier()?;
        }
        if !t.desc.read().contains(anchor) {
            return Err(Error::RangeKeyMismatch {
                key: anchor.to_vec(),
            });
        }
        let status = self.status(anchor, txn)?;
        let heartbeat = TxnRecord::heartbeat(&*self.engine, anchor, txn)?;
        Ok(RecordState {
            status,
            expired: self.expired(heartbeat, Timestamp::ZERO),
            in_flight: TxnRecord::in_flight(&*self.engine, anchor, txn)?,
        })
    }

    /// Status recovery of `txn`, STAGING at `ts` with `in_flight` writes (see the module
    /// docs); answers the status the record is left with.
    pub(super) fn recover(
        &self,
        txn: TxnId,
        anchor: &[u8],
        ts: Timestamp,
        in_flight: &[Vec<u8>],
    ) -> Result<TxnStatus> {
        let found = self.query_intents(txn, ts, in_flight)?;
        self.recover_on(txn, anchor, ts, found)
    }

    /// Mark `txn`, which staged at `ts` and whose every part succeeded, COMMITTED.
    pub(super) fn mark_committed(
        &self,
        txn: TxnId,
        anchor: &[u8],
        ts: Timestamp,
    ) -> Result<TxnStatus> {
        self.recover_on(txn, anchor, ts, true)
    }

    /// [`Self::recover_local`] at the record's leaseholder.
    fn recover_on(
        &self,
        txn: TxnId,
        anchor: &[u8],
        ts: Timestamp,
        commit: bool,
    ) -> Result<TxnStatus> {
        let t = self.record_tablet(anchor);
        let Some(node) = self.forward_to(&t)? else {
            return self.recover_local(&t, txn, anchor, ts, commit);
        };
        let req = KvRequest::Recover {
            txn,
            anchor: anchor.to_vec(),
            staging: ts,
            commit,
        };
        match self.forward(node, req)? {
            KvResponse::Status(s) => Ok(s),
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Whether every key of `keys` holds `txn`'s intent at or below `at`, asking the
    /// tablets in parallel; each prevents a missing one (see the module docs).
    fn query_intents(&self, txn: TxnId, at: Timestamp, keys: &[Vec<u8>]) -> Result<bool> {
        let found = self.on_tablets_of(keys, |t, part| self.query_intents_on(t, txn, at, part))?;
        Ok(found.into_iter().all(|f| f))
    }

    fn query_intents_on(
        &self,
        t: &Tablet,
        txn: TxnId,
        at: Timestamp,
        keys: &[Vec<u8>],
    ) -> Result<bool> {
        let Some(node) = self.forward_to(t)? else {
            return self.query_intents_local(t, txn, at, keys);
        };
        let req = KvRequest::QueryIntents {
            txn,
            keys: keys.to_vec(),
            at,
        };
        match self.forward(node, req)? {
            KvResponse::Found(found) => Ok(found),
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Whether `keys` of `t` hold `txn`'s intents at or below `at`; a missing one is
    /// recorded as read at `at`, under its latch, so none can be written there later.
    pub(super) fn query_intents_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        at: Timestamp,
        keys: &[Vec<u8>],
    ) -> Result<bool> {
        // A new lease raises the cache to its floor before anything is recorded.
        self.lease_floor(t);
        let spans = keys.iter().map(|k| Span::key(k, Access::Read)).collect();
        let _latched = Self::latch(t, spans)?;
        let mut all = true;
        for key in keys {
            let there =
                mvcc::get_intent(&*self.engine, key)?.is_some_and(|i| i.txn == txn && i.ts <= at);
            if !there {
                all = false;
                t.tscache
                    .lock()
                    .add(key, &[key.as_slice(), &[0]].concat(), at);
            }
        }
        Ok(all)
    }

    /// Move `txn`'s record from STAGING at `staging` to COMMITTED at it (`commit`) or to
    /// ABORTED; any other record stays. Answers the status left.
    pub(super) fn recover_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
        staging: Timestamp,
        commit: bool,
    ) -> Result<TxnStatus> {
        if let Some(r) = &t.replicator {
            r.read_barrier()?;
        }
        let key = TxnRecord::key(anchor, txn);
        let _latched = Self::latch_record(t, txn, anchor, Vec::new())?;
        let status = self.status(anchor, txn)?;
        if status != TxnStatus::Staging(staging) {
            return Ok(status);
        }
        let after = if commit {
            TxnStatus::Committed(staging)
        } else {
            TxnStatus::Aborted
        };
        let mut b = WriteBatch::new();
        b.put(Cf::Data, key, TxnRecord::encode(after));
        // Whoever settled acts on the answer at once: it must be durable first.
        self.write(t, b, true)?;
        Ok(after)
    }
}
