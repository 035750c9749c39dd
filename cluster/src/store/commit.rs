//! Committing a transaction: on one tablet in one command, or on several in one
//! parallel round that stages the writes and the transaction record (DESIGN.md §5).
//!
//! ## Where records live
//!
//! A transaction that needs a record (its writes went out early as intents, or it
//! writes several tablets) anchors it at one of its written keys, fixed for its whole
//! life: the first key of its first flush, or else the first key it writes. The record
//! is a tablet-local entry beside that key ([`TxnRecord::key`]), so it lies on the
//! *record's tablet* `R`, the tablet of the anchor, and moves with it when a split cuts
//! the tablet; every intent names the anchor, so whoever meets one knows where to ask.
//! As in CockroachDB, a transaction whose writes all land in one tablet keeps its record
//! there and commits with one command, and records spread over the tablets that are
//! written instead of one status tablet for all. A split latches every record latch of
//! the tablet it cuts ([`Store::latch_record`]), so no request on a record is in flight
//! while it changes tablets.
//!
//! ## One tablet
//!
//! Every write (buffered or flushed) lies in one tablet `W` (for a transaction with a
//! record, `W` is the record's tablet). When the transaction read nothing elsewhere, `W`
//! validates and commits in one command. When it also read other tablets, the gateway
//! picks `commit_ts = C` from its clock and first *refreshes* the reads on each other
//! tablet up to `C`: nothing committed in `(read_ts, C]` and no foreign intent there,
//! and the spans recorded in that tablet's cache at `C`, so no later write lands there
//! at or below `C`. Then `W` validates its own reads and commits at exactly `C`. If
//! `W` needs a higher timestamp (its cache holds a read at or above `C` on a written
//! key), it writes nothing and answers with that timestamp; the gateway refreshes
//! again up to it. The reads are thus valid over `(read_ts, commit_ts]` on every
//! tablet.
//!
//! ## Parallel commits (several tablets)
//!
//! Writes that went out early (large transactions) are already intents, each at a
//! provisional timestamp above its tablet's cache for its key; `min_commit` is the
//! highest. The record need not exist yet: a missing record reads as PENDING, and a
//! transaction counts as alive while its heartbeat or the intent met is younger than
//! the expiry ([`super::push`]). The commit is then one round of consensus:
//!
//! 0. A buffered write outside `R` that replaces one of those intents goes out as an
//!    intent first (one more round, for large transactions only): a recovery asks
//!    whether an in-flight key holds the transaction's intent, and must not take the
//!    old one for the staged write.
//! 1. `C = max(clock, min_commit)`. The reads on tablets that take no part in the
//!    round (no new writes there, not the record's) are refreshed up to `C` first:
//!    refreshing writes nothing durable, and a part that writes nothing new could not
//!    make a failed check stop the commit (see 3).
//! 2. In parallel, every tablet with buffered writes, and the record's tablet `R`,
//!    *stages* its part, in one synced command under the latches: its reads validated
//!    up to `C`, its written keys not read at or above `C`, the write-write checks,
//!    then its writes as intents at exactly `C`. `R` also checks that the record is
//!    PENDING (or this transaction's STAGING) and pushed no higher than `C`, and that
//!    its flushed intents are still there, and writes the record STAGING at `C`,
//!    listing the round's writes outside `R` as in flight (bounded by the write
//!    buffer). Intents flushed earlier need no listing: they were acknowledged, and
//!    only an abort push could remove them, which needs a PENDING record. A part that
//!    needs a higher timestamp writes nothing and answers it. Intents flushed on `R`
//!    lie at `read_ts`, and readers there ignored them (they are recorded in `R`'s
//!    cache, which `R`'s part checks); when a split has moved some of them to another
//!    tablet since, that tablet takes part too and checks its cache for them (a split
//!    carries the cache over), writing nothing.
//! 3. When every part succeeded, the transaction has committed at `C`, and the client
//!    is told so. The record is then marked COMMITTED and the intents resolved, in the
//!    background; if that fails, whoever meets the intents settles the record
//!    ([`super::recovery`]).
//! 4. When a part answered a higher timestamp, `C` moves up to the highest answer and
//!    the round runs again for the parts that did not stage and for `R` (STAGING again,
//!    higher); the parts that staged keep their intents (below the new `C`), and their
//!    reads are refreshed with the others in 1.
//! 5. When a part failed, the commit fails and is rolled back: the record becomes
//!    ABORTED even over STAGING, which is safe because the client was not told of a
//!    commit, and a recovery that could have committed it found every intent there,
//!    which the failed part's missing write rules out. When a part's outcome is
//!    unknown (its answer was lost), the gateway recovers the status itself at once:
//!    COMMITTED is a commit; otherwise it rolls back.
//!
//! ## Why it is serializable
//!
//! - **Its writes.** Each written key holds the transaction's intent from the flush or
//!   the staging round until it is resolved: the write-write check there saw no
//!   version above `read_ts`, and every later writer of the key meets the intent.
//! - **Others' reads of its writes.** A read at `r` below an intent's timestamp ignores
//!   it, correctly: the commit is at or above that timestamp. A read at `r` at or above
//!   it, on a tablet other than `R`, pushes the record to `r.next()` ([`super::push`])
//!   while it is PENDING; the push and `R`'s staging are ordered by the record's latch,
//!   and staging at `C` fails when the record was pushed above `C`. Once the record is
//!   STAGING at `C`, no push applies: a read at or above `C` (or with `C` inside its
//!   uncertainty window) waits until the transaction is settled, and one below `C`
//!   ignores the intent. On `R` itself the read leaves `r` in `R`'s timestamp cache,
//!   which the staging of `R`'s keys checks under their latches.
//! - **Its reads.** Valid over `(read_ts, C]` on every tablet: refreshed (and recorded
//!   at `C`) before the round, or validated in it.
//! - **Atomicity.** Until the record is settled every intent reads as pending (or makes
//!   its reader wait); the only ways out of STAGING are conditional writes of the
//!   record ([`super::recovery`]), so everyone sees one outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_storage::mvcc::{TxnId, TxnStatus};
use tessera_storage::Timestamp;

use super::background::Resolution;
use super::gateway::REROUTES;
use super::tablet::Tablet;
use super::{Commit, CommitPart, Store};
use crate::remote::{KvRequest, KvResponse};
use crate::{Error, Result};

/// How often a commit with reads on other tablets refreshes them before giving up.
const REFRESHES: usize = 4;

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
type Spans = Vec<(Vec<u8>, Vec<u8>)>;

/// One tablet's part of a staging round.
struct Stage {
    range: u64,
    tablet: Arc<Tablet>,
    /// Its buffered writes, to become intents.
    writes: Writes,
    /// Its keys that already hold the transaction's intents, to check: the record's
    /// part, and tablets that a split gave intents flushed on the record's tablet.
    flushed: Vec<Vec<u8>>,
    /// Whether it holds the record.
    record: bool,
}
/// Per range id: the tablet and the items that lie in it.
type ByTablet<T> = BTreeMap<u64, (Arc<Tablet>, Vec<T>)>;

/// What a transaction has written ahead of its commit.
#[derive(Clone, Debug, Default)]
pub(crate) struct Intents {
    /// The keys that hold an intent of the transaction, on any tablet.
    pub keys: Vec<Vec<u8>>,
    /// Where the transaction's record is anchored, once it may have one (PENDING until
    /// it ends); see the module docs.
    pub anchor: Option<Vec<u8>>,
    /// The highest timestamp of its intents outside the record's tablet: it commits at
    /// or above it.
    pub min_commit: Timestamp,
    /// Where its intents may lie at its `read_ts`: the keys of every flush that
    /// answered no higher timestamp (those on the record's tablet, which the commit
    /// there checks against the timestamp cache).
    pub at_read_ts: KeySpans,
}

/// Inclusive spans of keys, kept sorted and disjoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeySpans(Vec<(Vec<u8>, Vec<u8>)>);

impl KeySpans {
    fn add(&mut self, first: &[u8], last: &[u8]) {
        self.0.push((first.to_vec(), last.to_vec()));
        self.0.sort();
        let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(self.0.len());
        for (a, b) in self.0.drain(..) {
            match merged.last_mut() {
                Some((_, end)) if a <= *end => *end = b.max(std::mem::take(end)),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }

    fn contains(&self, key: &[u8]) -> bool {
        let i = self.0.partition_point(|(a, _)| a.as_slice() <= key);
        i > 0 && key <= self.0[i - 1].1.as_slice()
    }
}

impl Intents {
    /// The record's anchor, fixed at `first` when the transaction has none yet.
    fn anchor_at(&mut self, first: &[u8]) -> Vec<u8> {
        self.anchor.get_or_insert_with(|| first.to_vec()).clone()
    }
}

impl Store {
    /// The tablet holding the records anchored at `anchor`.
    pub(super) fn record_tablet(&self, anchor: &[u8]) -> Arc<Tablet> {
        self.tablets.for_key(anchor)
    }

    /// Cut `spans` at tablet boundaries, grouped by tablet.
    fn by_tablet(&self, spans: &[(Vec<u8>, Vec<u8>)]) -> ByTablet<(Vec<u8>, Vec<u8>)> {
        let mut out: ByTablet<(Vec<u8>, Vec<u8>)> = BTreeMap::new();
        for (start, end) in spans {
            let mut cursor = start.clone();
            while cursor < *end {
                let t = self.tablets.for_key(&cursor);
                let part_end = t.desc.read().end.clone().min(end.clone());
                out.entry(t.range_id())
                    .or_insert_with(|| (t.clone(), Vec::new()))
                    .1
                    .push((cursor, part_end.clone()));
                cursor = part_end;
            }
        }
        out
    }

    /// Group `keys` (with their values) by the tablet owning them.
    pub(super) fn keys_by_tablet<'k, V: Clone + 'k>(
        &self,
        keys: impl Iterator<Item = (&'k Vec<u8>, V)>,
    ) -> ByTablet<(Vec<u8>, V)> {
        let mut out: ByTablet<(Vec<u8>, V)> = BTreeMap::new();
        for (k, v) in keys {
            let t = self.tablets.for_key(k);
            out.entry(t.range_id())
                .or_insert_with(|| (t.clone(), Vec::new()))
                .1
                .push((k.clone(), v));
        }
        out
    }

    /// Write `writes` as intents of `txn`, each part on the leaseholder of its tablet, the
    /// parts in parallel (the part on the record's tablet writes the record too).
    /// `intents` learns the keys (even on failure: some intents may have
    /// landed and need removal) and the intents' timestamps.
    pub(crate) fn flush_intents(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        writes: &Writes,
        intents: &mut Intents,
    ) -> Result<()> {
        let Some(first) = writes.keys().next() else {
            return Ok(());
        };
        let anchor = intents.anchor_at(first);
        intents.keys.extend(writes.keys().cloned());
        // From now on the transaction has a record: keep its heartbeat alive.
        self.heartbeats.lock().insert(txn, anchor.clone());
        let mut todo = self.keys_by_tablet(writes.iter().map(|(k, v)| (k, v.clone())));
        for _ in 0..=REROUTES {
            let results = parallel(self.config.threads, todo.values(), |(t, part)| {
                let part: Writes = part.iter().cloned().collect();
                (self.flush_on(t, txn, &anchor, read_ts, &part), part)
            });
            let mut again = Writes::new();
            for (result, part) in results {
                match result {
                    Ok(ts) if ts <= read_ts => {
                        if let (Some(first), Some(last)) = (part.keys().next(), part.keys().last())
                        {
                            intents.at_read_ts.add(first, last);
                        }
                    }
                    Ok(ts) => intents.min_commit = intents.min_commit.max(ts),
                    Err(Error::RangeKeyMismatch { .. }) => again.extend(part),
                    Err(e) => return Err(e),
                }
            }
            if again.is_empty() {
                return Ok(());
            }
            todo = self.keys_by_tablet(again.iter().map(|(k, v)| (k, v.clone())));
        }
        Err(Error::RangeKeyMismatch {
            key: writes.keys().next().cloned().unwrap_or_default(),
        })
    }

    /// Write intents on `t`, at its leaseholder; answers their highest timestamp.
    fn flush_on(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
        read_ts: Timestamp,
        writes: &Writes,
    ) -> Result<Timestamp> {
        self.settling(true, || self.flush_on_once(t, txn, anchor, read_ts, writes))
    }

    fn flush_on_once(
        &self,
        t: &Tablet,
        txn: TxnId,
        anchor: &[u8],
        read_ts: Timestamp,
        writes: &Writes,
    ) -> Result<Timestamp> {
        let Some(node) = self.forward_to(t)? else {
            return self.flush_intents_local(t, txn, anchor, read_ts, writes);
        };
        let req = KvRequest::Flush {
            txn,
            anchor: anchor.to_vec(),
            read_ts,
            writes: writes.clone(),
        };
        match self.forward(node, req)? {
            KvResponse::Flushed(ts) => {
                self.clock.update(ts);
                Ok(ts)
            }
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Validate and commit (see the module docs). A tablet that refuses a request for
    /// a split that moved its keys has written nothing for it: the commit is routed
    /// again, a bounded number of times.
    pub(crate) fn commit(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &Writes,
        intents: &mut Intents,
    ) -> Result<Timestamp> {
        let mut reroutes = 0;
        loop {
            match self.commit_routed(txn, read_ts, reads, writes, intents) {
                Err(Error::RangeKeyMismatch { .. }) if reroutes < REROUTES => reroutes += 1,
                other => return other,
            }
        }
    }

    fn commit_routed(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &Writes,
        intents: &mut Intents,
    ) -> Result<Timestamp> {
        let Some(first) = writes.keys().chain(intents.keys.iter()).next().cloned() else {
            // Read-only: commits at its read timestamp without validation.
            return Ok(read_ts);
        };
        let w = match &intents.anchor {
            Some(anchor) => self.record_tablet(anchor),
            None => self.tablets.for_key(&first),
        };
        let desc = w.desc.read().clone();
        if writes
            .keys()
            .chain(intents.keys.iter())
            .all(|k| desc.contains(k))
        {
            let flushed = &intents.keys;
            let record = intents.anchor.as_deref();
            return self.commit_single(&w, txn, read_ts, reads, writes, flushed, record);
        }
        self.commit_distributed(txn, read_ts, reads, writes, intents)
    }

    /// Commit on `w`, which holds every write (see the module docs, "One tablet").
    #[allow(clippy::too_many_arguments)]
    fn commit_single(
        &self,
        w: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &Writes,
        flushed: &[Vec<u8>],
        record: Option<&[u8]>,
    ) -> Result<Timestamp> {
        let mut parts = self.by_tablet(reads);
        let own = parts
            .remove(&w.range_id())
            .map(|(_, s)| s)
            .unwrap_or_default();
        let part = CommitPart {
            txn,
            read_ts,
            reads: &own,
            writes,
            flushed,
            record,
            staging: None,
        };
        if parts.is_empty() {
            return match self.commit_on(w, &part, None)? {
                Commit::Committed(ts) => Ok(ts),
                Commit::Pushed(ts) => Err(Error::Raft(format!(
                    "a commit without a fixed timestamp was pushed to {ts}"
                ))),
            };
        }
        self.commit_refreshed(w, &part, &parts, self.clock.now())
    }

    /// Refresh the reads of `others` up to `at` and commit `part` on `w` at exactly
    /// `at`, moving `at` up as long as `w` asks for it, a bounded number of times.
    fn commit_refreshed(
        &self,
        w: &Tablet,
        part: &CommitPart<'_>,
        others: &ByTablet<(Vec<u8>, Vec<u8>)>,
        mut at: Timestamp,
    ) -> Result<Timestamp> {
        for _ in 0..REFRESHES {
            let refreshed = parallel(self.config.threads, others.values(), |(t, spans)| {
                self.refresh_on(t, part.txn, part.read_ts, at, spans, true)
            });
            refreshed.into_iter().collect::<Result<Vec<()>>>()?;
            match self.commit_on(w, part, Some(at))? {
                Commit::Committed(ts) => return Ok(ts),
                Commit::Pushed(ts) => at = ts,
            }
        }
        Err(Error::Conflict {
            key: part
                .writes
                .keys()
                .chain(part.flushed.iter())
                .next()
                .cloned()
                .unwrap_or_default(),
            reason: format!(
                "the commit timestamp kept moving up while refreshing the reads (last {at})"
            ),
        })
    }

    /// Commit writes on several tablets by staging them in parallel (see the module
    /// docs, "Parallel commits").
    fn commit_distributed(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &Writes,
        intents: &mut Intents,
    ) -> Result<Timestamp> {
        // From now on the transaction has a record (or may have one: a rollback must
        // look), and every buffered key may hold its intent. `commit_routed` found a
        // write, so there is a first key.
        let first = writes.keys().next().or(intents.keys.first()).cloned();
        let anchor = intents.anchor_at(&first.unwrap_or_default());
        self.heartbeats.lock().insert(txn, anchor.clone());
        let flushed: BTreeSet<Vec<u8>> = intents.keys.iter().cloned().collect();
        intents
            .keys
            .extend(writes.keys().filter(|k| !flushed.contains(*k)).cloned());
        // The writes that are not intents yet: every key of `intents` but these holds
        // this transaction's intent, at or below `at`.
        let mut unstaged: Writes = writes.clone();
        let mut staged_at: Option<Timestamp> = None;
        let mut at = self.clock.now();
        for _ in 0..REFRESHES + REROUTES {
            let r = self.record_tablet(&anchor);
            let r_desc = r.desc.read().clone();
            // A recovery takes an in-flight key that holds an intent of this
            // transaction for its staged write; so a key outside `R` whose flushed
            // intent a buffered write replaces gets the new value as an intent first.
            let rewritten: Writes = unstaged
                .iter()
                .filter(|(k, _)| flushed.contains(*k) && !r_desc.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !rewritten.is_empty() {
                self.flush_intents(txn, read_ts, &rewritten, intents)?;
                for k in rewritten.keys() {
                    unstaged.remove(k);
                }
            }
            at = at.max(intents.min_commit);
            // In flight: the writes of the staging round outside `R`. Intents flushed
            // before it were acknowledged, and stay until resolved: only an abort
            // push could remove them, which needs a PENDING record, and `R` stages
            // only from PENDING.
            let in_flight: Vec<Vec<u8>> = writes
                .keys()
                .filter(|k| !flushed.contains(*k) && !r_desc.contains(k))
                .cloned()
                .collect();
            // The parts to stage: every tablet with unstaged writes, and the record's.
            let mut parts: ByTablet<(Vec<u8>, Option<Vec<u8>>)> =
                self.keys_by_tablet(unstaged.iter().map(|(k, v)| (k, v.clone())));
            parts
                .entry(r.range_id())
                .or_insert_with(|| (r.clone(), Vec::new()));
            // Intents flushed on the record's tablet lie at `read_ts`, below reads that
            // ignored them there (the commit checks the record tablet's cache). A split
            // may have moved some of them out since: their tablets take part too and
            // check their caches (which the split carried over).
            let moved = intents
                .keys
                .iter()
                .filter(|k| {
                    !r_desc.contains(k)
                        && !unstaged.contains_key(*k)
                        && intents.at_read_ts.contains(k)
                })
                .map(|k| (k, ()));
            let mut moved: BTreeMap<u64, Vec<Vec<u8>>> = self
                .keys_by_tablet(moved)
                .into_iter()
                .map(|(range, (t, keys))| {
                    parts.entry(range).or_insert_with(|| (t, Vec::new()));
                    (range, keys.into_iter().map(|(k, _)| k).collect())
                })
                .collect();
            // Reads on the other tablets are refreshed up to `at` first: a part that
            // writes nothing new could not make a failed check stop the commit.
            let mut read_parts = self.by_tablet(reads);
            let staged_reads: BTreeMap<u64, Spans> = parts
                .keys()
                .filter_map(|id| read_parts.remove(id).map(|(_, s)| (*id, s)))
                .collect();
            let refreshed = parallel(self.config.threads, read_parts.values(), |(t, spans)| {
                // Once staged, the transaction waits on others only briefly.
                self.refresh_on(t, txn, read_ts, at, spans, staged_at.is_none())
            });
            refreshed.into_iter().collect::<Result<Vec<()>>>()?;
            // One round: every part validates its reads and writes its intents at `at`,
            // the record's part also the record, STAGING at `at`.
            let jobs: Vec<Stage> = parts
                .into_iter()
                .map(|(range, (tablet, part))| Stage {
                    record: range == r.range_id(),
                    tablet,
                    writes: part.into_iter().collect(),
                    flushed: if range == r.range_id() {
                        intents
                            .keys
                            .iter()
                            .filter(|k| r_desc.contains(k) && !unstaged.contains_key(*k))
                            .cloned()
                            .collect()
                    } else {
                        moved.remove(&range).unwrap_or_default()
                    },
                    range,
                })
                .collect();
            let empty = Vec::new();
            let results = parallel(self.config.threads, jobs.iter(), |job| {
                let part = CommitPart {
                    txn,
                    read_ts,
                    reads: staged_reads.get(&job.range).unwrap_or(&empty),
                    writes: &job.writes,
                    flushed: &job.flushed,
                    record: job.record.then_some(anchor.as_slice()),
                    staging: Some((&anchor, &in_flight)),
                };
                self.commit_on(&job.tablet, &part, Some(at))
            });
            let mut next_at = at;
            let mut ambiguous = None;
            let mut failed = None;
            // Whether every part answered (a split may have moved one's keys).
            let mut answered = true;
            for (job, result) in jobs.iter().zip(results) {
                match result {
                    Ok(Commit::Committed(_)) => {
                        for k in job.writes.keys() {
                            unstaged.remove(k);
                        }
                        if job.record {
                            staged_at = Some(at);
                        }
                    }
                    Ok(Commit::Pushed(ts)) => next_at = next_at.max(ts),
                    Err(Error::RangeKeyMismatch { .. }) => answered = false,
                    Err(e @ Error::Ambiguous(_)) => ambiguous = Some(e),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                // Not told to the client: the rollback may overwrite STAGING.
                return Err(e);
            }
            if let Some(e) = ambiguous {
                return self.settle_own(txn, &anchor, e, intents);
            }
            // A part that only checks moved intents may ask for a higher timestamp
            // too (or have moved again): then the round runs again.
            if unstaged.is_empty() && staged_at == Some(at) && next_at == at && answered {
                // Every part succeeded: the transaction has committed at `at`; nothing
                // rolls it back, so its keys go to the resolution.
                self.resolve_later(Resolution {
                    txn,
                    anchor,
                    keys: std::mem::take(&mut intents.keys),
                    commit_ts: at,
                    staged: true,
                });
                return Ok(at);
            }
            at = next_at;
        }
        Err(Error::Conflict {
            key: writes.keys().next().cloned().unwrap_or_default(),
            reason: format!(
                "the commit timestamp kept moving up while staging the writes (last {at})"
            ),
        })
    }

    /// After a staging round whose outcome on some tablet is unknown: recover the
    /// transaction's status at once. COMMITTED is a commit; anything else is not, and
    /// the transaction is rolled back by the caller. If the record cannot be reached,
    /// the outcome stays unknown (`error`).
    fn settle_own(
        &self,
        txn: TxnId,
        anchor: &[u8],
        error: Error,
        intents: &mut Intents,
    ) -> Result<Timestamp> {
        match self.settle(txn, anchor, false, true) {
            Ok(TxnStatus::Committed(ts)) => {
                self.resolve_later(Resolution {
                    txn,
                    anchor: anchor.to_vec(),
                    keys: std::mem::take(&mut intents.keys),
                    commit_ts: ts,
                    staged: false,
                });
                Ok(ts)
            }
            Ok(TxnStatus::Staging(_)) | Err(_) => Err(error),
            Ok(_) => Err(Error::Conflict {
                key: Vec::new(),
                reason: "the commit did not complete on every tablet and was rolled back".into(),
            }),
        }
    }

    /// Commit `part` on `t`, at its leaseholder (settling the STAGING transactions it
    /// meets).
    fn commit_on(
        &self,
        t: &Tablet,
        part: &CommitPart<'_>,
        at: Option<Timestamp>,
    ) -> Result<Commit> {
        // A part of a staging round waits only briefly: two committing transactions
        // could wait on each other's staged intents.
        self.settling(part.staging.is_none(), || self.commit_on_once(t, part, at))
    }

    fn commit_on_once(
        &self,
        t: &Tablet,
        part: &CommitPart<'_>,
        at: Option<Timestamp>,
    ) -> Result<Commit> {
        let Some(node) = self.forward_to(t)? else {
            return self.commit_local(t, part, at);
        };
        let req = KvRequest::Commit {
            txn: part.txn,
            read_ts: part.read_ts,
            reads: part.reads.to_vec(),
            writes: part.writes.clone(),
            flushed: part.flushed.to_vec(),
            record: part.record.map(<[u8]>::to_vec),
            at,
            staging: part.staging.map(|(a, keys)| (a.to_vec(), keys.to_vec())),
        };
        match self.forward(node, req)? {
            KvResponse::Committed(ts) => {
                self.clock.update(ts);
                Ok(Commit::Committed(ts))
            }
            KvResponse::Pushed(ts) => Ok(Commit::Pushed(ts)),
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// Refresh reads of `t` up to `to`, at its leaseholder (settling the STAGING
    /// transactions it meets, waiting for live ones when `wait`).
    fn refresh_on(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        to: Timestamp,
        spans: &[(Vec<u8>, Vec<u8>)],
        wait: bool,
    ) -> Result<()> {
        self.settling(wait, || self.refresh_on_once(t, txn, read_ts, to, spans))
    }

    fn refresh_on_once(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        to: Timestamp,
        spans: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let Some(node) = self.forward_to(t)? else {
            return self.refresh_local(t, txn, read_ts, to, spans);
        };
        let req = KvRequest::Refresh {
            txn,
            read_ts,
            to,
            spans: spans.to_vec(),
        };
        self.forward(node, req).map(|_| ())
    }

    /// Roll back: mark the record aborted (unless it says committed) and remove the
    /// intents; a transaction found committed has its intents resolved as such.
    pub(crate) fn abort(&self, txn: TxnId, intents: &Intents) -> Result<()> {
        let Some(anchor) = intents.anchor.as_deref() else {
            // No record: no intents either (both come with the first flush).
            return Ok(());
        };
        let r = self.record_tablet(anchor);
        let desc = r.desc.read().clone();
        let (own, others): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            intents.keys.iter().cloned().partition(|k| desc.contains(k));
        let outcome = match self.forward_to(&r)? {
            None => self.abort_local(&r, txn, anchor, &own)?,
            Some(node) => {
                let req = KvRequest::Abort {
                    txn,
                    anchor: anchor.to_vec(),
                    flushed: own,
                };
                match self.forward(node, req)? {
                    KvResponse::Committed(ts) => Some(ts),
                    _ => None,
                }
            }
        };
        self.resolve_everywhere(txn, &others, outcome)
    }

    /// Resolve `txn`'s intents on `keys`, on whichever tablets hold them, in parallel:
    /// committed at `commit_ts`, or removed.
    pub(super) fn resolve_everywhere(
        &self,
        txn: TxnId,
        keys: &[Vec<u8>],
        commit_ts: Option<Timestamp>,
    ) -> Result<()> {
        self.on_tablets_of(keys, |t, part| self.resolve_on(t, txn, part, commit_ts))
            .map(|_| ())
    }

    /// `f` on each tablet's share of `keys`, the shares in parallel; a share that a
    /// split moved is routed again, a bounded number of times. The answers, in no
    /// particular order.
    pub(super) fn on_tablets_of<R: Send>(
        &self,
        keys: &[Vec<u8>],
        f: impl Fn(&Tablet, &[Vec<u8>]) -> Result<R> + Sync,
    ) -> Result<Vec<R>> {
        let mut out = Vec::new();
        let mut todo = self.keys_by_tablet(keys.iter().map(|k| (k, ())));
        for _ in 0..=REROUTES {
            if todo.is_empty() {
                return Ok(out);
            }
            let results = parallel(self.config.threads, todo.values(), |(t, part)| {
                let part: Vec<Vec<u8>> = part.iter().map(|(k, _)| k.clone()).collect();
                (f(t, &part), part)
            });
            let mut again = Vec::new();
            for (result, part) in results {
                match result {
                    Ok(r) => out.push(r),
                    Err(Error::RangeKeyMismatch { .. }) => again.extend(part),
                    Err(e) => return Err(e),
                }
            }
            todo = self.keys_by_tablet(again.iter().map(|k| (k, ())));
        }
        Err(Error::RangeKeyMismatch {
            key: keys.first().cloned().unwrap_or_default(),
        })
    }

    fn resolve_on(
        &self,
        t: &Tablet,
        txn: TxnId,
        keys: &[Vec<u8>],
        commit_ts: Option<Timestamp>,
    ) -> Result<()> {
        let Some(node) = self.forward_to(t)? else {
            return self.resolve(t, txn, keys, commit_ts);
        };
        let req = KvRequest::Resolve {
            txn,
            keys: keys.to_vec(),
            commit_ts,
        };
        self.forward(node, req).map(|_| ())
    }
}

/// `f` over `items`, each on its own thread when there are several (and `threads`
/// allows); results in order.
pub(super) fn parallel<I, T, R>(threads: bool, items: I, f: impl Fn(&T) -> R + Sync) -> Vec<R>
where
    I: Iterator<Item = T>,
    T: Send + Sync,
    R: Send,
{
    let items: Vec<T> = items.collect();
    if items.len() <= 1 || !threads {
        return items.iter().map(&f).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(|| f(item))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a parallel KV call panicked"))
            .collect()
    })
}
