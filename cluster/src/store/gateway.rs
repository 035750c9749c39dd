//! The gateway side of a transaction's reads: cutting them at tablet boundaries and
//! sending each part to the tablet that owns it, on this node or at the tablet's
//! leaseholder ([`super::forward`]). Commits are in [`super::commit`].
//!
//! - **Reads over several tablets.** A scan that crosses tablets reads each tablet's
//!   part at the same `read_ts`, and each tablet records its part in its own timestamp
//!   cache. Since every tablet keeps its writes above the reads it recorded and its
//!   reads wait for the commits in flight, the parts together are one snapshot.
//! - **Routing races.** A request that reaches a tablet after a split moved its keys
//!   away is refused by the tablet ([`crate::Error::RangeKeyMismatch`]) and routed again
//!   here, a bounded number of times.

use std::collections::BTreeSet;

use tessera_storage::mvcc::TxnId;
use tessera_storage::Timestamp;

use super::tablet::Tablet;
use super::{Store, Uncertainty};
use crate::remote::{KvRequest, KvResponse};
use crate::{Error, Result};

/// How often a request is routed again after a tablet refused it for a split.
pub(super) const REROUTES: usize = 8;

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
            let rows = self.settling(true, || {
                self.scan_tablet(
                    &t, txn, read_ts, bound, confirmed, &cursor, &part_end, want, track,
                )
            });
            let rows = match rows {
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
}
