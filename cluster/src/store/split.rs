//! Splitting a tablet in two, and describing a store's tablets.
//!
//! A split at a user key `k` of the tablet `[start, end)` leaves `[start, k)` to the
//! parent (its generation bumped) and gives `[k, end)` to a new tablet. It copies no
//! data and does no work proportional to the tablet's size: the moved part is
//! write-latched on the parent (so no request of the parent is in flight there), the
//! new tablet's timestamp cache starts at the highest read the parent recorded over the
//! moved part, and the map of tablets changes in one step (see [`super::tablet`]).
//!
//! So far only tablets that are not replicated split; a replicated tablet's split must
//! be one command in its Raft group, applied by every replica, and is refused with
//! SQLSTATE 0A000 until that exists.

use std::sync::Arc;

use tessera_storage::{mvcc, TimestampCache};

use super::tablet::{Descriptor, Tablet};
use super::{Store, KEY_MAX};
use crate::latch::{Access, Span};
use crate::{Error, Result};

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
        if key < mvcc::MVCC_START || key >= KEY_MAX {
            return Err(Error::Unsupported(format!(
                "a split at key {key:?}, outside the key space of tables and indexes"
            )));
        }
        loop {
            let t = self.tablets.for_key(key);
            let desc = t.desc.read().clone();
            if desc.start == key {
                return Ok(desc);
            }
            if t.replicator.is_some() {
                return Err(Error::Unsupported(
                    "splitting a replicated tablet".to_string(),
                ));
            }
            let _moving = t
                .latches
                .acquire(vec![Span::range(key, &desc.end, Access::Write)]);
            if *t.desc.read() != desc {
                // Split concurrently: route again.
                continue;
            }
            let low_water = t.tscache.lock().max_read(key, &desc.end);
            let right = Descriptor {
                range_id: self.tablets.next_id(),
                start: key.to_vec(),
                end: desc.end.clone(),
                generation: 1,
            };
            let tablet = Tablet::new(
                right.clone(),
                None,
                TimestampCache::new(self.config.tscache_capacity, low_water),
            );
            self.tablets.split(&t, Arc::new(tablet));
            tracing::info!(
                left = desc.range_id,
                right = right.range_id,
                "split a tablet"
            );
            return Ok(right);
        }
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
