//! Evaluating writes on one tablet, at its leaseholder: intent flushes, commits and
//! the parts of a staging round ([`super::commit`]), rollbacks and intent resolution.
//! Each holds the latches of every key it writes (and of the record it touches) from
//! its checks until its batch is applied (see the store's module docs, "Latches").

use std::collections::BTreeMap;

use parking_lot::Mutex;
use tessera_storage::mvcc::{self, GcThreshold, Intent, ReadView, TxnId, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Timestamp, WriteBatch};

use super::push::Met;
use super::tablet::Tablet;
use super::Store;
use crate::latch::{Access, Span};
use crate::{Error, Result};

impl Store {
    /// Write `writes` as intents of `txn` on `t`, in batches of bounded size; answers
    /// their highest timestamp. Each batch is checked and written under the latch, so no
    /// other write of its keys can come between the conflict check and the intent. On
    /// the record's tablet (the tablet of `anchor`) the record (pending, with a fresh
    /// heartbeat) goes with every batch and the intents carry `read_ts`: the commit
    /// there checks the timestamp cache of these keys. Elsewhere they carry a timestamp
    /// above that tablet's cache for their keys, which the commit may not go below (see
    /// [`commit`]). Every intent names the anchor.
    pub(super) fn flush_intents_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
        read_ts: Timestamp,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<Timestamp> {
        self.check_lease(t);
        let size = |(k, v): &(&Vec<u8>, &Option<Vec<u8>>)| {
            k.len() + v.as_ref().map_or(0, |v| v.len()) + anchor.len() + 64
        };
        let record = TxnRecord::key(anchor, txn);
        let on_record = t.desc.read().contains(anchor);
        let mut highest = read_ts;
        for chunk in chunks(writes.iter(), size, self.config.intent_batch_bytes) {
            let mut spans: Vec<Span> = chunk
                .iter()
                .map(|(k, _)| Span::key(k, Access::Write))
                .collect();
            spans.push(Span::key(GcThreshold::KEY, Access::Read));
            let _latched = if on_record {
                Self::latch_record(t, txn, anchor, spans)?
            } else {
                Self::latch(t, spans)?
            };
            let pushed = Mutex::new(Met::default());
            let status = |i: &Intent| self.status_for_write(t, i, &pushed);
            let view = ReadView {
                read_ts,
                txn: Some(txn),
                status: &status,
                uncertainty_limit: Timestamp::ZERO,
            };
            self.check_gc(t, read_ts)?;
            let mut batch = WriteBatch::new();
            let mut ts = read_ts;
            if on_record {
                if self.status(anchor, txn)? == TxnStatus::Aborted {
                    return Err(Self::aborted_by_push());
                }
                let pushed = TxnRecord::pushed(&*self.engine, anchor, txn)?;
                batch.put(
                    Cf::Data,
                    record.clone(),
                    TxnRecord::encode_pending(self.clock.now(), pushed),
                );
            } else {
                let cache = t.tscache.lock();
                for (key, _) in &chunk {
                    ts = ts.max(cache.max_read_point(key).next());
                }
            }
            for (key, value) in chunk {
                let prepared = mvcc::prepare_write(&*self.engine, &mut batch, key, &view, true);
                if let Some(c) = prepared.map_err(|e| Self::met_error(&pushed, e))? {
                    return Err(self.conflict(c, "write-write conflict"));
                }
                let intent = Intent {
                    txn,
                    anchor: anchor.to_vec(),
                    ts,
                    value: value.clone(),
                };
                mvcc::put_intent(&mut batch, key, &intent);
            }
            Self::record_pushed(&mut batch, &pushed);
            self.write(t, batch, false)?;
            highest = highest.max(ts);
        }
        Ok(highest)
    }

    /// Validate and commit `part` on `t`. With `part.record` (its anchor), `t` holds the
    /// transaction's record, which must be PENDING and is written COMMITTED in the same
    /// batch (the commit point of a transaction with intents), at or above the
    /// timestamp pushes left in it. With `at`, the commit timestamp is fixed (the
    /// transaction's reads on other tablets were refreshed up to it): when it must be
    /// higher, nothing is written and the higher timestamp is returned instead.
    ///
    /// With `part.staging` (and `at`), the part is *staged* instead ([`commit`],
    /// "Parallel commits"): the same checks, but the writes become intents at `at`, and
    /// the record, which may already be STAGING at a lower timestamp, becomes STAGING
    /// at `at` with the listed writes in flight. Nothing is resolved.
    pub(super) fn commit_local(
        &self,
        t: &Tablet,
        part: &CommitPart<'_>,
        at: Option<Timestamp>,
    ) -> Result<Commit> {
        let CommitPart {
            txn,
            read_ts,
            reads,
            writes,
            flushed,
            record,
            staging,
        } = *part;
        if staging.is_some() && at.is_none() {
            return Err(Error::Raft("staging needs a fixed timestamp".into()));
        }
        let pushed = Mutex::new(Met::default());
        let status = |i: &Intent| self.status_for_write(t, i, &pushed);
        let view = ReadView {
            read_ts,
            txn: Some(txn),
            status: &status,
            uncertainty_limit: Timestamp::ZERO,
        };
        self.check_lease(t);
        let keys = writes.keys().chain(flushed.iter());
        let commit_ts = {
            let mut spans: Vec<Span> = keys.clone().map(|k| Span::key(k, Access::Write)).collect();
            spans.extend(reads.iter().map(|(a, b)| Span::range(a, b, Access::Read)));
            spans.push(Span::key(GcThreshold::KEY, Access::Read));
            let _latched = match record {
                Some(anchor) => Self::latch_record(t, txn, anchor, spans)?,
                None => Self::latch(t, spans)?,
            };
            // History below the threshold may be gone: reads and writes could not be
            // validated against it.
            self.check_gc(t, read_ts)?;
            // A transaction with intents commits only from PENDING (or its own
            // STAGING, when staging again higher).
            let before = match record {
                Some(anchor) => self.status(anchor, txn)?,
                None => TxnStatus::Pending,
            };
            match before {
                TxnStatus::Aborted => return Err(Self::aborted_by_push()),
                TxnStatus::Committed(ts) => {
                    return Err(Error::Raft(format!(
                        "transaction {:x} is already committed at {ts}",
                        txn as u64
                    )))
                }
                TxnStatus::Staging(_) if staging.is_none() => {
                    return Err(Error::Raft(format!(
                        "transaction {:x} is staging; only a recovery ends it",
                        txn as u64
                    )))
                }
                TxnStatus::Pending | TxnStatus::Staging(_) => {}
            }
            let commit_ts = {
                // Later transactions must start above this commit to see it: the clock
                // moves past it before anyone can observe the clock again.
                let _choosing = self.ts_choice.lock();
                let mut commit_ts = at.unwrap_or_else(|| self.clock.now());
                if let Some(anchor) = record {
                    commit_ts = commit_ts.max(TxnRecord::pushed(&*self.engine, anchor, txn)?);
                }
                let cache = t.tscache.lock();
                for key in keys.clone() {
                    let r = cache.max_read_point(key);
                    if r >= commit_ts {
                        commit_ts = r.next();
                    }
                }
                if at.is_some_and(|at| at != commit_ts) {
                    return Ok(Commit::Pushed(commit_ts));
                }
                self.clock.update(commit_ts);
                commit_ts
            };
            self.validate_reads(&view, reads, commit_ts)
                .map_err(|e| Self::unsettled_first(&pushed, e))?;
            // Every flushed key must still hold its intent.
            for key in flushed {
                let ours = mvcc::get_intent(&*self.engine, key)?.is_some_and(|i| i.txn == txn);
                if !ours && !writes.contains_key(key) {
                    return Err(Error::Conflict {
                        key: key.clone(),
                        reason: "an intent of this transaction is gone".into(),
                    });
                }
            }
            let mut batch = WriteBatch::new();
            for (key, value) in writes {
                // Drops this transaction's own intent (the buffered value wins) and
                // keeps another's committed one as a version.
                let prepared =
                    mvcc::prepare_write(&*self.engine, &mut batch, key, &view, staging.is_some());
                if let Some(c) = prepared.map_err(|e| Self::met_error(&pushed, e))? {
                    return Err(self.conflict(c, "write-write conflict"));
                }
                if let Some((anchor, _)) = staging {
                    let intent = Intent {
                        txn,
                        anchor: anchor.to_vec(),
                        ts: commit_ts,
                        value: value.clone(),
                    };
                    mvcc::put_intent(&mut batch, key, &intent);
                } else {
                    mvcc::put_version(&mut batch, key, commit_ts, value.as_deref());
                }
            }
            if let Some(anchor) = record {
                let value = match staging {
                    Some((_, in_flight)) => {
                        TxnRecord::encode_staging(commit_ts, self.clock.now(), in_flight)
                    }
                    None => TxnRecord::encode(TxnStatus::Committed(commit_ts)),
                };
                batch.put(Cf::Data, TxnRecord::key(anchor, txn), value);
            }
            Self::record_pushed(&mut batch, &pushed);
            // A part that only checks (intents a split moved off the record's tablet)
            // writes nothing.
            if !batch.is_empty() {
                self.write(t, batch, true)?;
            }
            let mut cache = t.tscache.lock();
            for (start, end) in reads {
                cache.add(start, end, commit_ts);
            }
            commit_ts
        };
        // The commit point is durable: the transaction has committed, whatever happens
        // to the resolution of its intents (readers resolve them through the record).
        if staging.is_none() && !flushed.is_empty() {
            if let Err(e) = self.resolve(t, txn, flushed, Some(commit_ts)) {
                tracing::warn!(error = %e, txn, "resolving the intents of a committed transaction failed; they stay until read");
            }
        }
        Ok(Commit::Committed(commit_ts))
    }

    /// Roll back on `t` (the record's tablet): mark the record aborted and remove the
    /// intents on `flushed` (keys of `t`). A record that says COMMITTED is never
    /// overwritten: the intents are then resolved as committed instead, and the commit
    /// timestamp is returned.
    pub(super) fn abort_local(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
        flushed: &[Vec<u8>],
    ) -> Result<Option<Timestamp>> {
        let outcome = {
            let key = TxnRecord::key(anchor, txn);
            let _latched = Self::latch_record(t, txn, anchor, Vec::new())?;
            match TxnRecord::read(&*self.engine, anchor, txn)? {
                TxnStatus::Committed(ts) => Some(ts),
                // The coordinator rolls back only before it told its client of a
                // commit, and a recovery commits only from STAGING: ABORTED over its
                // own STAGING is safe.
                TxnStatus::Pending | TxnStatus::Aborted | TxnStatus::Staging(_) => {
                    let mut b = WriteBatch::new();
                    b.put(Cf::Data, key, TxnRecord::encode(TxnStatus::Aborted));
                    self.write(t, b, false)?;
                    None
                }
            }
        };
        if let Some(ts) = outcome {
            tracing::error!(txn, %ts, "asked to roll back a committed transaction; keeping it committed");
        }
        self.resolve(t, txn, flushed, outcome)?;
        Ok(outcome)
    }

    /// Resolve `txn`'s intents on `keys` (keys of `t`): committed at `commit_ts`, or
    /// removed.
    pub(super) fn resolve(
        &self,
        t: &Tablet,
        txn: TxnId,
        keys: &[Vec<u8>],
        commit_ts: Option<Timestamp>,
    ) -> Result<()> {
        let size = |k: &&Vec<u8>| 2 * k.len() + 64;
        for chunk in chunks(keys.iter(), size, self.config.intent_batch_bytes) {
            let spans = chunk.iter().map(|k| Span::key(k, Access::Write)).collect();
            let _latched = Self::latch(t, spans)?;
            let mut batch = WriteBatch::new();
            for key in chunk {
                mvcc::resolve_intent(&*self.engine, &mut batch, key, txn, commit_ts)?;
            }
            self.write(t, batch, false)?;
        }
        Ok(())
    }
}

/// What a commit validates and writes on one tablet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommitPart<'a> {
    pub txn: TxnId,
    pub read_ts: Timestamp,
    /// The spans the transaction read on the tablet.
    pub reads: &'a [(Vec<u8>, Vec<u8>)],
    /// Its buffered writes there.
    pub writes: &'a BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Its keys there that already hold its intents.
    pub flushed: &'a [Vec<u8>],
    /// The anchor of its record when the tablet holds the record, to be written
    /// COMMITTED (or STAGING).
    pub record: Option<&'a [u8]>,
    /// Stage instead of commit (see [`Store::commit_local`]): the anchor its intents
    /// name, and the writes the record lists in flight on other tablets.
    pub staging: Option<(&'a [u8], &'a [Vec<u8>])>,
}

/// What a commit on one tablet did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Committed at the timestamp.
    Committed(Timestamp),
    /// Not committed: the fixed commit timestamp must move up to this one.
    Pushed(Timestamp),
}

/// Cut `items` into chunks of about `bound` bytes each (by `size`), never empty.
fn chunks<T>(
    items: impl Iterator<Item = T>,
    size: impl Fn(&T) -> usize,
    bound: usize,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(last) if bytes + n <= bound => last.push(item),
            _ => {
                out.push(vec![item]);
                bytes = 0;
            }
        }
        bytes += n;
    }
    out
}
