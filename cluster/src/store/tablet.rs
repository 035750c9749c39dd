//! Tablets: the ranges of the key space a store hosts, and the per-range state that
//! orders the requests on each.
//!
//! ## Model
//!
//! A tablet is one range `[start, end)` of user keys with a [`Descriptor`]: its range
//! id (the id of its Raft group when replicated), its span and a generation that every
//! split bumps. The tablets of a store cover the whole key space without gaps or
//! overlaps; the first one (range id [`FIRST_RANGE`]) starts at the empty key and also
//! holds the system region below [`mvcc::MVCC_START`] (node addresses, the range id
//! counter). Transaction records and GC thresholds are tablet-local entries anchored
//! at user keys ([`mvcc::local_key`]), so they lie in the tablet of their anchor.
//!
//! Each tablet has its own latches, timestamp cache, lease state and GC threshold:
//! requests on different tablets never wait for each other.
//!
//! ## Invariants
//!
//! - **Routing is checked under the latch.** A request finds its tablet by key, takes
//!   that tablet's latches and then checks that the tablet still owns its keys (a
//!   split may have run in between); if not, it routes again. A split holds a write
//!   latch over the part that moves, so no request of the parent is in flight there
//!   when ownership changes.
//! - **Read history moves with the keys.** The right-hand side of a split starts its
//!   timestamp cache at the highest read the parent recorded over the moved span, so
//!   no write lands on the new tablet at or below a read served by the old one.
//! - **A split never splits a row or a key's history.** The split point is a user key:
//!   all versions and the intent of a key stay together.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tessera_storage::mvcc;
use tessera_storage::{Timestamp, TimestampCache};

use super::{Replicator, KEY_MAX};
use crate::latch::Latches;

/// The range id of the first tablet, which starts at the empty key and holds the
/// system region. Equal to the Raft group id of the first group.
pub const FIRST_RANGE: u64 = crate::replication::FIRST_GROUP;

/// What a tablet is: its range id, its span of user keys and its generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The range id (the Raft group id when replicated).
    pub range_id: u64,
    /// First user key (inclusive).
    pub start: Vec<u8>,
    /// End user key (exclusive); [`KEY_MAX`] for the last tablet.
    pub end: Vec<u8>,
    /// Bumped by every split of this range.
    pub generation: u64,
}

impl Descriptor {
    /// Whether `key` lies in the tablet. Keys of the system region belong to the first
    /// tablet.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && key < self.end.as_slice()
    }

    /// Whether `[start, end)` lies entirely in the tablet.
    pub fn contains_span(&self, start: &[u8], end: &[u8]) -> bool {
        start >= self.start.as_slice() && end <= self.end.as_slice()
    }

    /// The span in engine keys of [`tessera_storage::Cf::Data`] (what a Raft group
    /// replicates): from the encoding of `start` (or the very first key for the first
    /// tablet) to that of `end`.
    pub fn engine_span(&self) -> (Vec<u8>, Vec<u8>) {
        let start = if self.start.is_empty() {
            Vec::new()
        } else {
            mvcc::intent_key(&self.start)
        };
        let end = if self.end == KEY_MAX {
            KEY_MAX.to_vec()
        } else {
            mvcc::intent_key(&self.end)
        };
        (start, end)
    }
}

impl Descriptor {
    /// The descriptor of a Raft group's tablet: its engine span read back as user keys.
    pub fn from_group(g: &crate::replication::GroupDesc) -> crate::Result<Descriptor> {
        let user = |k: &[u8]| -> crate::Result<Vec<u8>> {
            Ok(if k.is_empty() || k == KEY_MAX {
                k.to_vec()
            } else {
                mvcc::decode_key(k)?.0
            })
        };
        Ok(Descriptor {
            range_id: g.id,
            start: user(&g.start)?,
            end: user(&g.end)?,
            generation: g.generation,
        })
    }
}

/// One tablet on this store.
pub(crate) struct Tablet {
    pub desc: RwLock<Descriptor>,
    /// `None`: not replicated; batches go straight to the engine.
    pub replicator: Option<Arc<dyn Replicator>>,
    pub tscache: Mutex<TimestampCache>,
    pub latches: Latches,
    /// The Raft term of the lease this tablet last served under, and that lease's floor.
    pub lease: Mutex<(u64, Timestamp)>,
    /// The replicated GC threshold as read under the lease of the given term.
    pub gc_threshold: Mutex<(u64, Timestamp)>,
    /// Bytes written here since its size was last measured.
    pub written: std::sync::atomic::AtomicU64,
}

impl Tablet {
    pub fn new(
        desc: Descriptor,
        replicator: Option<Arc<dyn Replicator>>,
        tscache: TimestampCache,
    ) -> Tablet {
        Tablet {
            desc: RwLock::new(desc),
            replicator,
            tscache: Mutex::new(tscache),
            latches: Latches::default(),
            lease: Mutex::new((0, Timestamp::ZERO)),
            gc_threshold: Mutex::new((u64::MAX, Timestamp::ZERO)),
            written: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn range_id(&self) -> u64 {
        self.desc.read().range_id
    }

    /// The Raft term of this node's lease on the tablet (0: none; unreplicated: 1).
    pub fn lease_term(&self) -> u64 {
        self.replicator.as_ref().map_or(1, |r| r.lease_term())
    }
}

impl std::fmt::Debug for Tablet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tablet")
            .field("desc", &*self.desc.read())
            .finish()
    }
}

/// The tablets of a store, by start key.
#[derive(Default)]
pub(crate) struct Tablets {
    by_start: RwLock<std::collections::BTreeMap<Vec<u8>, Arc<Tablet>>>,
}

impl Tablets {
    pub fn insert(&self, tablet: Arc<Tablet>) {
        let start = tablet.desc.read().start.clone();
        self.by_start.write().insert(start, tablet);
    }

    /// The tablet owning `key` (system keys: the first tablet).
    pub fn for_key(&self, key: &[u8]) -> Arc<Tablet> {
        let map = self.by_start.read();
        map.range(..=key.to_vec())
            .next_back()
            .map(|(_, t)| t.clone())
            .expect("the tablets cover the key space")
    }

    /// The tablet with range id `id`, if this store hosts it.
    pub fn by_id(&self, id: u64) -> Option<Arc<Tablet>> {
        self.by_start
            .read()
            .values()
            .find(|t| t.range_id() == id)
            .cloned()
    }

    /// Every tablet, in key order.
    pub fn all(&self) -> Vec<Arc<Tablet>> {
        self.by_start.read().values().cloned().collect()
    }

    /// The first tablet.
    pub fn first(&self) -> Arc<Tablet> {
        self.for_key(&[])
    }

    /// Cut `left` at `key`: it keeps `[start, key)` and `right` (whose descriptor says
    /// `[key, end)`) takes the rest, in one step for every reader of the map. The
    /// caller holds `left`'s write latch over the moved part.
    pub fn split(&self, left: &Tablet, right: Arc<Tablet>) {
        let mut map = self.by_start.write();
        let start = right.desc.read().start.clone();
        {
            let mut d = left.desc.write();
            debug_assert!(d.contains(&start) && d.start != start, "split point inside");
            d.end = start.clone();
            d.generation += 1;
        }
        map.insert(start, right);
    }

    /// The next unused range id.
    pub fn next_id(&self) -> u64 {
        self.by_start
            .read()
            .values()
            .map(|t| t.range_id())
            .max()
            .unwrap_or(0)
            + 1
    }
}
