//! The gateway side of a transaction's reads: cutting them at tablet boundaries and
//! sending each part to the tablet that owns it, on this node or at the tablet's
//! leaseholder ([`super::forward`]). Commits are in [`super::commit`].
//!
//! - **Reads over several tablets.** A scan that crosses tablets reads each tablet's
//!   part at the same `read_ts`, and each tablet records its part in its own timestamp
//!   cache. Since every tablet keeps its writes above the reads it recorded and its
//!   reads wait for the commits in flight, the parts together are one snapshot.
//! - **Reads of many keys.** [`Store::get_many`] sends each tablet the keys it owns in
//!   one request (one Raft ReadIndex and one round trip per tablet, not per key), the
//!   tablets in parallel; each key is recorded as read like a point scan. The parts
//!   read at the same `read_ts` and wait for commits in flight, so they are one
//!   snapshot, as a scan's parts are.
//! - **Routing races.** A request that reaches a tablet after a split moved its keys
//!   away is refused by the tablet ([`crate::Error::RangeKeyMismatch`]) and routed again
//!   here, a bounded number of times.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_storage::mvcc::TxnId;
use tessera_storage::Timestamp;

use super::commit::parallel;
use super::tablet::Tablet;
use super::{Store, Uncertainty};
use crate::remote::{KvRequest, KvResponse, Read, ReadAnswer};
use crate::{Error, Result};

/// How often a request is routed again after a tablet refused it for a split.
pub(super) const REROUTES: usize = 8;

/// The most keys one read of [`Store::get_many`] asks a tablet for (the request and its
/// answer stay within a frame's bound).
const KEYS_PER_READ: usize = 1024;

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
            let read = Read::Span {
                start: cursor.clone(),
                end: part_end.clone(),
                limit: want as u64,
            };
            let answer = self.settling(true, || {
                self.read_tablet(&t, txn, read_ts, bound, confirmed, &read, track)
            });
            let rows = match answer {
                Err(Error::RangeKeyMismatch { .. }) if reroutes < REROUTES => {
                    reroutes += 1;
                    continue;
                }
                Ok(ReadAnswer::Rows(rows)) => rows,
                other => return Err(unexpected(other)),
            };
            out.extend(rows);
            cursor = part_end;
        }
        Ok(out)
    }

    /// The visible value of each of `keys` (in any order, repeats allowed) at
    /// `read_ts`, as seen by `txn`, in the order asked: one read per tablet that owns
    /// some of them (per [`KEYS_PER_READ`] of them), the reads in parallel, each served
    /// like a scan's part (see [`Store::scan`]). With `track`,
    /// each key is recorded as read in its tablet's timestamp cache.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_many(
        &self,
        txn: TxnId,
        read_ts: Timestamp,
        bound: &mut Uncertainty,
        confirmed: &mut BTreeSet<u64>,
        keys: &[Vec<u8>],
        track: bool,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let mut todo: Vec<&Vec<u8>> = keys.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let mut found: BTreeMap<&[u8], Option<Vec<u8>>> = BTreeMap::new();
        for _ in 0..=REROUTES {
            // One part per tablet (and per `KEYS_PER_READ` keys), read in parallel, each
            // starting from what the transaction knows now.
            let mut parts: Vec<(Arc<Tablet>, &[&Vec<u8>])> = Vec::new();
            let mut rest = &todo[..];
            while let Some(first) = rest.first() {
                let t = self.tablets.for_key(first);
                let end = t.desc.read().end.clone();
                let n = rest
                    .partition_point(|k| k.as_slice() < end.as_slice())
                    .min(KEYS_PER_READ);
                let (part, after) = rest.split_at(n);
                parts.push((t, part));
                rest = after;
            }
            let (known, seen) = (&*bound, &*confirmed);
            let results = parallel(self.config.threads, parts.iter(), |(t, part)| {
                let (mut bound, mut confirmed) = (known.clone(), seen.clone());
                let read = Read::Keys(part.iter().map(|k| k.to_vec()).collect());
                let answer = self.settling(true, || {
                    self.read_tablet(t, txn, read_ts, &mut bound, &mut confirmed, &read, track)
                });
                (answer, bound, confirmed)
            });
            let mut again = Vec::new();
            for ((_, part), (answer, learned, confirmed_there)) in parts.iter().zip(results) {
                // Any reading of a node's clock taken after the transaction began bounds
                // its uncertainty there; the first one kept stays.
                for (node, observed) in learned.observed {
                    bound.observed.entry(node).or_insert(observed);
                }
                confirmed.extend(confirmed_there);
                match answer {
                    Err(Error::RangeKeyMismatch { .. }) => again.extend_from_slice(part),
                    Ok(ReadAnswer::Values(values)) if values.len() == part.len() => {
                        found.extend(part.iter().map(|k| k.as_slice()).zip(values));
                    }
                    other => return Err(unexpected(other)),
                }
            }
            if again.is_empty() {
                return Ok(keys
                    .iter()
                    .map(|k| found.get(k.as_slice()).cloned().flatten())
                    .collect());
            }
            todo = again;
        }
        Err(Error::RangeKeyMismatch {
            key: todo.first().map(|k| k.to_vec()).unwrap_or_default(),
        })
    }

    /// One tablet's part of a read.
    #[allow(clippy::too_many_arguments)]
    fn read_tablet(
        &self,
        t: &Tablet,
        txn: TxnId,
        read_ts: Timestamp,
        bound: &mut Uncertainty,
        confirmed: &mut BTreeSet<u64>,
        read: &Read,
        track: bool,
    ) -> Result<ReadAnswer> {
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
            return self.read_local(t, txn, read_ts, limit_ts, read, track);
        };
        let req = KvRequest::Read {
            txn,
            read_ts,
            uncertainty_limit: bound.limit,
            observed: bound
                .observed
                .get(&node)
                .copied()
                .unwrap_or(Timestamp::ZERO),
            read: read.clone(),
            track,
        };
        match self.forward(node, req)? {
            KvResponse::Read { answer, observed } => {
                bound.observed.entry(node).or_insert(observed);
                Ok(answer)
            }
            other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
        }
    }
}

/// The error for a read that failed, or whose answer has the wrong shape.
fn unexpected(answer: Result<ReadAnswer>) -> Error {
    match answer {
        Err(e) => e,
        Ok(answer) => Error::Raft(format!("unexpected answer to a read: {answer:?}")),
    }
}
