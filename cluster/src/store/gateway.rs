//! The gateway side of a transaction: cutting its requests at tablet boundaries and
//! sending each part to the tablet that owns it, on this node or at the tablet's
//! leaseholder ([`super::forward`]).
//!
//! ## Transactions over several tablets
//!
//! - **Reads.** A scan that crosses tablets reads each tablet's part at the same
//!   `read_ts`, and each tablet records its part in its own timestamp cache. Since every
//!   tablet keeps its writes above the reads it recorded and its reads wait for the
//!   commits in flight, the parts together are one snapshot.
//! - **Commit on one tablet.** Every write (buffered or flushed) and the transaction's
//!   record must lie in one tablet `W`. When the transaction also read other tablets,
//!   the gateway picks `commit_ts = C` from its clock and first *refreshes* the reads
//!   on each other tablet up to `C`: nothing committed in `(read_ts, C]` and no foreign
//!   intent there, and the spans recorded in that tablet's cache at `C`, so no later
//!   write lands there at or below `C`. Then `W` validates its own reads and commits
//!   at exactly `C`. If `W`'s cache holds a read at or above `C` on a written key, `W`
//!   writes nothing and answers with the timestamp it would need; the gateway
//!   refreshes again up to that one. The reads are thus valid over
//!   `(read_ts, commit_ts]` on every tablet, exactly as for a single-tablet commit.
//! - **Writes on several tablets** need the distributed commit protocol
//!   (DESIGN.md §5, step 3); until it exists such a commit fails with SQLSTATE 0A000
//!   naming the tablets, before anything is written. Intents of a large transaction
//!   go to the first tablet, where transaction records live; a large transaction that
//!   writes elsewhere fails the same way.
//! - **Routing races.** A request that reaches a tablet after a split moved its keys
//!   away is refused by the tablet ([`crate::Error::RangeKeyMismatch`]) and routed again
//!   here, a bounded number of times.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_storage::mvcc::{TxnId, TxnRecord};
use tessera_storage::Timestamp;

use super::tablet::Tablet;
use super::{Commit, Store, Uncertainty};
use crate::remote::{KvRequest, KvResponse};
use crate::{Error, Result};

/// How often a request is routed again after a tablet refused it for a split.
pub(super) const REROUTES: usize = 8;

/// How often a commit with reads on other tablets refreshes them before giving up.
const REFRESHES: usize = 4;

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
type Spans = Vec<(Vec<u8>, Vec<u8>)>;

impl Store {
    /// Visible entries of `[start, end)` at `read_ts`, as seen by `txn`, at most `limit`,
    /// each tablet's part served by its leaseholder. `bound` is the transaction's
    /// uncertainty state; it learns the serving nodes' clock readings. `confirmed` holds
    /// the tablets this transaction already confirmed it may read locally.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scan(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        bound: &mut Uncertainty,
        confirmed: &mut BTreeSet<u64>,
        start: &[u8],
        end: &[u8],
        limit: usize,
        track: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        let mut reroutes = 0;
        while out.len() < limit && cursor.as_slice() < end {
            let t = self.tablets.for_key(&cursor);
            let part_end = t.desc.read().end.clone().min(end.to_vec());
            let want = limit - out.len();
            let rows = match self.scan_tablet(
                &t, txn, read_ts, bound, confirmed, &cursor, &part_end, want, track,
            ) {
                Err(Error::RangeKeyMismatch { .. }) if reroutes < REROUTES => {
                    reroutes += 1;
                    continue;
                }
                rows => rows?,
            };
            out.extend(rows);
            cursor = part_end;
        }
        Ok(out)
    }

    /// One tablet's part of a scan.
    #[allow(clippy::too_many_arguments)]
    fn scan_tablet(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        bound: &mut Uncertainty,
        confirmed: &mut BTreeSet<u64>,
        start: &[u8],
        end: &[u8],
        limit: usize,
        track: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some(node) = self.forward_to(t)? else {
            // Before the first local read of a tablet: make sure this node's copy is
            // current (a deposed leader cut off from the quorum must not serve).
            if let Some(r) = &t.replicator {
                if !confirmed.contains(&t.range_id()) {
                    r.read_barrier()?;
                    confirmed.insert(t.range_id());
                }
            }
            let node = self.node_id();
            let observed = match bound.observed.get(&node) {
                Some(o) => *o,
                None => {
                    let now = {
                        let _chosen = self.ts_choice.lock();
                        self.clock.now()
                    };
                    *bound.observed.entry(node).or_insert(now)
                }
            };
            let limit_ts = self.uncertainty_limit(t, bound.limit, observed);
            return self.scan_local(t, txn, read_ts, limit_ts, start, end, limit, track);
        };
        let req = KvRequest::Scan {
            txn,
            read_ts,
            uncertainty_limit: bound.limit,
            observed: bound
                .observed
                .get(&node)
                .copied()
                .unwrap_or(Timestamp::ZERO),
            start: start.to_vec(),
            end: end.to_vec(),
            limit: limit as u64,
            track,
        };
        match self.forward(node, req)? {
            KvResponse::Rows { rows, observed } => {
                bound.observed.entry(node).or_insert(observed);
                Ok(rows)
            }
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }

    /// The tablet that holds the transaction's record and its intents: the first one.
    /// Refuses writes that lie elsewhere (see the module docs).
    pub(super) fn intent_tablet<'a>(
        &self,
        keys: impl Iterator<Item = &'a Vec<u8>>,
    ) -> Result<Arc<Tablet>> {
        let t = self.tablets.first();
        let desc = t.desc.read().clone();
        if let Some(k) = keys.into_iter().find(|k| !desc.contains(k)) {
            let other = self.tablets.for_key(k).range_id();
            return Err(Error::Unsupported(format!(
                "a transaction whose writes outgrow the write buffer writing outside the first tablet (range {other})"
            )));
        }
        Ok(t)
    }

    /// Write `writes` as intents of `txn`, on the leaseholder of their tablet.
    pub(crate) fn flush_intents(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        writes: &Writes,
    ) -> Result<()> {
        let t = self.intent_tablet(writes.keys())?;
        // From now on the transaction holds intents: keep its heartbeat alive.
        self.heartbeats.lock().insert(txn);
        let Some(node) = self.forward_to(&t)? else {
            return self.flush_intents_local(&t, txn, read_ts, writes);
        };
        let req = KvRequest::Flush {
            txn,
            read_ts,
            writes: writes.clone(),
        };
        self.forward(node, req).map(|_| ())
    }

    /// Cut `spans` at tablet boundaries, grouped by tablet.
    fn by_tablet(&self, spans: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<u64, (Arc<Tablet>, Spans)> {
        let mut out: BTreeMap<u64, (Arc<Tablet>, Spans)> = BTreeMap::new();
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

    /// Validate and commit (see the module docs for transactions over several tablets).
    pub(crate) fn commit(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &Writes,
        flushed: &[Vec<u8>],
    ) -> Result<Timestamp> {
        let Some(first) = writes.keys().chain(flushed.iter()).next() else {
            // Read-only: commits at its read timestamp without validation.
            return Ok(read_ts);
        };
        let w = if flushed.is_empty() {
            self.tablets.for_key(first)
        } else {
            self.intent_tablet(writes.keys().chain(flushed.iter()))?
        };
        let desc = w.desc.read().clone();
        if let Some(k) = writes
            .keys()
            .chain(flushed.iter())
            .find(|k| !desc.contains(k))
        {
            let other = self.tablets.for_key(k).range_id();
            return Err(Error::Unsupported(format!(
                "a transaction that writes to more than one tablet (ranges {} and {other})",
                desc.range_id
            )));
        }
        let mut parts = self.by_tablet(reads);
        let own = parts
            .remove(&desc.range_id)
            .map(|(_, s)| s)
            .unwrap_or_default();
        if parts.is_empty() {
            return match self.commit_on(&w, txn, read_ts, &own, writes, flushed, None)? {
                Commit::Committed(ts) => Ok(ts),
                Commit::Pushed(ts) => Err(Error::Raft(format!(
                    "a commit without a fixed timestamp was pushed to {ts}"
                ))),
            };
        }
        let mut at = self.clock.now();
        for _ in 0..REFRESHES {
            for (t, spans) in parts.values() {
                self.refresh_on(t, txn, read_ts, at, spans)?;
            }
            match self.commit_on(&w, txn, read_ts, &own, writes, flushed, Some(at))? {
                Commit::Committed(ts) => return Ok(ts),
                Commit::Pushed(ts) => at = ts,
            }
        }
        Err(Error::Conflict {
            key: first.clone(),
            reason: format!(
                "the commit timestamp kept moving up while refreshing the reads (last {at})"
            ),
        })
    }

    /// Commit on `t`, at its leaseholder.
    #[allow(clippy::too_many_arguments)]
    fn commit_on(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        reads: &[(Vec<u8>, Vec<u8>)],
        writes: &Writes,
        flushed: &[Vec<u8>],
        at: Option<Timestamp>,
    ) -> Result<Commit> {
        let Some(node) = self.forward_to(t)? else {
            return self.commit_local(t, txn, read_ts, reads, writes, flushed, at);
        };
        let req = KvRequest::Commit {
            txn,
            read_ts,
            reads: reads.to_vec(),
            writes: writes.clone(),
            flushed: flushed.to_vec(),
            at,
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

    /// Refresh reads of `t` up to `to`, at its leaseholder.
    fn refresh_on(
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

    /// Roll back on the leaseholder of the tablet holding the intents.
    pub(crate) fn abort(&self, txn: TxnId, flushed: &[Vec<u8>]) -> Result<()> {
        if flushed.is_empty() {
            return Ok(());
        }
        let t = self.tablets.for_key(&TxnRecord::key(txn));
        let Some(node) = self.forward_to(&t)? else {
            return self.abort_local(&t, txn, flushed);
        };
        let req = KvRequest::Abort {
            txn,
            flushed: flushed.to_vec(),
        };
        self.forward(node, req).map(|_| ())
    }
}
