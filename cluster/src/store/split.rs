//! Splitting a tablet in two, and describing a store's tablets.
//!
//! A split at a user key `k` of the tablet `[start, end)` leaves `[start, k)` to the
//! parent (its generation bumped) and gives `[k, end)` to a new tablet. It copies no
//! data and does no work proportional to the tablet's size: the moved part and the
//! tablet's transaction records are write-latched on the parent's leaseholder (so no
//! request of the parent is in flight there, and records anchored in the moved part
//! move with it), the new tablet's timestamp cache starts at the highest read the parent
//! recorded over the moved part, and the map of tablets changes in one step (see
//! [`super::tablet`]).
//!
//! - **Range ids** are allocated from a counter in the first tablet's system region,
//!   read and raised under its latch by its leaseholder and replicated with it, so two
//!   splits anywhere in the cluster never get the same id.
//! - **A replicated tablet** splits by one command in its Raft group
//!   ([`crate::replication::SplitTrigger`]): every replica applies it at the same log
//!   index, creates the new group with the parent's members and tells its store
//!   ([`Store::apply_split`]), which adds the new tablet. The parent's leaseholder
//!   campaigns for the new group at once, so its lease usually stays on the same node.
//!   The new tablet is created holding the parent's lease floor for the new group's
//!   first term, on the parent's leaseholder only ([`Store::add_right`]): if that node
//!   wins the first election, writes there never wait out a new floor, not even those
//!   that arrive before the split returns; if another node wins, the floor is never used
//!   and the winner's first write waits out a floor of its own (up to the maximum clock
//!   offset), as after any lease change.
//! - **GC threshold.** The new tablet's threshold, written with the split, is the
//!   parent's: reads below it on the moved keys stay refused.
//! - A split is served by the parent's leaseholder; other nodes forward it there.

use std::sync::Arc;
use std::time::Duration;

use tessera_storage::mvcc::{self, GcThreshold};
use tessera_storage::{Cf, TimestampCache, WriteBatch};

use super::tablet::{Descriptor, Tablet};
use super::{Replicator, Store, KEY_MAX};
use crate::latch::{Access, Span};
use crate::remote::{KvRequest, KvResponse};
use crate::replication::GroupDesc;
use crate::{Error, Result};

/// The raw key of the last range id handed out (in the first tablet's system region).
const RANGE_ID_KEY: &[u8] = b"\x01range/last_id";

/// The term of a new group's first leader: groups start at the bootstrap term.
const FIRST_LEADER_TERM: u64 = crate::replication::log::INIT_INDEX + 1;

/// How long a split waits for the new tablet to get a leaseholder.
const LEASE_WAIT: Duration = Duration::from_secs(10);

/// A tablet as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeInfo {
    /// The descriptor.
    pub desc: Descriptor,
    /// The nodes holding a replica (this node alone when not replicated).
    pub replicas: Vec<u64>,
    /// The node holding the lease, as last seen.
    pub leaseholder: Option<u64>,
}

impl Store {
    /// Split the tablet holding `key` at `key`, which becomes the first key of a new
    /// tablet. Splitting at a key that already starts a tablet changes nothing. Returns
    /// the descriptor of the tablet that starts at `key`.
    pub fn split(&self, key: &[u8]) -> Result<Descriptor> {
        self.split_at(key, true)
    }

    /// [`Store::split`]; without `forward`, a split this node cannot serve fails with
    /// `NotLeaseholder` instead of going to the leaseholder (a forwarded split never
    /// travels twice).
    pub(super) fn split_at(&self, key: &[u8], forward: bool) -> Result<Descriptor> {
        if key < mvcc::MVCC_START || key >= KEY_MAX {
            return Err(Error::Unsupported(format!(
                "a split at key {key:?}, outside the key space of tables and indexes"
            )));
        }
        for _ in 0..super::gateway::REROUTES {
            let t = self.tablets.for_key(key);
            let desc = t.desc.read().clone();
            if desc.start == key {
                return Ok(desc);
            }
            if let Some(node) = self.forward_to(&t)? {
                if !forward {
                    return Err(Error::NotLeaseholder { leader: Some(node) });
                }
                return match self.forward(node, KvRequest::Split { key: key.to_vec() })? {
                    KvResponse::Split {
                        range_id,
                        start,
                        end,
                        generation,
                    } => Ok(Descriptor {
                        range_id,
                        start,
                        end,
                        generation,
                    }),
                    other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
                };
            }
            let right_id = self.allocate_range_id()?;
            // The moved part, and every record of the tablet: records anchored in
            // the moved part change tablets with it ([`Store::latch_record`]).
            let (records, records_end) = super::RECORD_LATCHES;
            let _moving = t.latches.acquire(vec![
                Span::range(key, &desc.end, Access::Write),
                Span::range(records, records_end, Access::Write),
            ]);
            if *t.desc.read() != desc {
                // Split concurrently: route again.
                continue;
            }
            // The new tablet's history starts where the parent's does (a collection of
            // the parent latches the moving part too, so this is current).
            let mut inherited = WriteBatch::new();
            GcThreshold::put(&mut inherited, key, self.gc_threshold(&t)?);
            match &t.replicator {
                None => {
                    self.engine.write(inherited, true)?;
                    let right = Descriptor {
                        range_id: right_id,
                        start: key.to_vec(),
                        end: desc.end.clone(),
                        generation: 1,
                    };
                    self.add_right(&t, right.clone(), None);
                    return Ok(right);
                }
                Some(r) => {
                    r.split(right_id, key, inherited)?;
                    let right = self.tablets.by_id(right_id).ok_or_else(|| {
                        Error::Raft(format!("the split at {key:?} did not apply"))
                    })?;
                    drop(_moving);
                    // Requests for the new tablet need its leaseholder: wait for the
                    // election that this node started.
                    let rr = right.replicator.as_ref().expect("a replicated split");
                    rr.wait_until(LEASE_WAIT, &mut || match rr.leader() {
                        None => false,
                        Some(l) => l != self.node || rr.lease_term() != 0,
                    });
                    let d = right.desc.read().clone();
                    return Ok(d);
                }
            }
        }
        Err(Error::RangeKeyMismatch { key: key.to_vec() })
    }

    /// A range id never handed out before, from the counter on the first tablet.
    pub(super) fn allocate_range_id(&self) -> Result<u64> {
        let t = self.tablets.first();
        if let Some(node) = self.forward_to(&t)? {
            return match self.forward(node, KvRequest::AllocateRangeId)? {
                KvResponse::RangeId(id) => Ok(id),
                other => Err(Error::Raft(format!("unexpected answer {other:?}"))),
            };
        }
        self.allocate_range_id_local(&t)
    }

    pub(super) fn allocate_range_id_local(&self, t: &Tablet) -> Result<u64> {
        let _latched = Self::latch(t, vec![Span::key(RANGE_ID_KEY, Access::Write)])?;
        self.check_lease(t);
        let last = match self.engine.get(Cf::Data, RANGE_ID_KEY)? {
            Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                Error::Storage(tessera_storage::Error::Corrupt("range id counter".into()))
            })?),
            // Ids of tablets that exist without having been counted (the first).
            None => self.tablets.next_id() - 1,
        };
        let id = last + 1;
        let mut b = WriteBatch::new();
        b.put(Cf::Data, RANGE_ID_KEY.to_vec(), id.to_be_bytes().to_vec());
        self.write(t, b, true)?;
        Ok(id)
    }

    /// Install the new tablet of a split that the parent's Raft group applied: `left`
    /// and `right` are the groups' new descriptors, `replicator` writes through the new
    /// group. A split this store already knows changes nothing.
    pub fn apply_split(
        &self,
        left: &GroupDesc,
        right: &GroupDesc,
        replicator: Arc<dyn Replicator>,
    ) -> Result<()> {
        if self.tablets.by_id(right.id).is_some() {
            return Ok(());
        }
        let parent = self
            .tablets
            .by_id(left.id)
            .ok_or_else(|| Error::Raft(format!("a split of range {} unknown here", left.id)))?;
        let desc = Descriptor::from_group(right)?;
        self.add_right(&parent, desc, Some(replicator));
        Ok(())
    }

    /// Cut `parent` at `right`'s start and add the tablet `right`, whose timestamp
    /// cache starts at the parent's reads over the moved span.
    ///
    /// On the parent's leaseholder, a replicated `right` starts with the parent's lease
    /// floor for its group's first term. That floor is used only if this node wins the
    /// first election, and then it is sound: no other node ever held that lease; every
    /// read served on the moved span lies at or below the parent's floor (earlier
    /// leaseholders) or in this node's cache, from which `right`'s low-water mark is
    /// taken; and a leaseholder of the parent in a later term applies this split before
    /// it serves, so it never serves the moved span.
    fn add_right(
        &self,
        parent: &Tablet,
        right: Descriptor,
        replicator: Option<Arc<dyn Replicator>>,
    ) {
        let low_water = parent.tscache.lock().max_read(&right.start, &right.end);
        tracing::info!(
            left = parent.range_id(),
            right = right.range_id,
            "split a tablet"
        );
        let replicated = replicator.is_some();
        let tablet = Tablet::new(
            right,
            replicator,
            TimestampCache::new(self.config.tscache_capacity, low_water),
        );
        if replicated && parent.lease_term() != 0 {
            *tablet.lease.lock() = (FIRST_LEADER_TERM, self.lease_floor(parent));
        }
        self.tablets.split(parent, Arc::new(tablet));
    }

    /// The store's tablets in key order.
    pub fn ranges(&self) -> Vec<RangeInfo> {
        self.tablets
            .all()
            .into_iter()
            .map(|t| {
                let desc = t.desc.read().clone();
                match &t.replicator {
                    None => RangeInfo {
                        desc,
                        replicas: vec![self.node_id()],
                        leaseholder: Some(self.node_id()),
                    },
                    Some(r) => RangeInfo {
                        desc,
                        replicas: r.replicas(),
                        leaseholder: r.leader(),
                    },
                }
            })
            .collect()
    }
}
