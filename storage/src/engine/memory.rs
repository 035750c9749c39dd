//! An in-memory engine for deterministic tests. Never used by a running node.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use super::{Cf, Engine, Visit, Visitor, WriteBatch, WriteOp};
use crate::Result;

/// One column family's contents.
type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// A `BTreeMap` per column family behind one lock; batches apply atomically under it.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    cfs: RwLock<BTreeMap<Cf, Tree>>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.cfs.read().get(&cf).and_then(|m| m.get(key).cloned()))
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        // Copy out in pages so that the visitor may call back into the engine.
        let mut from: Bound<Vec<u8>> = Bound::Included(start.to_vec());
        loop {
            let page: Vec<(Vec<u8>, Vec<u8>)> = {
                let cfs = self.cfs.read();
                let Some(map) = cfs.get(&cf) else {
                    return Ok(());
                };
                let upper = match end {
                    Some(e) => Bound::Excluded(e.to_vec()),
                    None => Bound::Unbounded,
                };
                if let (Bound::Included(s) | Bound::Excluded(s), Some(e)) = (&from, end) {
                    if s.as_slice() >= e {
                        return Ok(());
                    }
                }
                map.range((from.clone(), upper))
                    .take(256)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let Some(last) = page.last().map(|(k, _)| k.clone()) else {
                return Ok(());
            };
            for (k, v) in &page {
                if visit(k, v)? == Visit::Stop {
                    return Ok(());
                }
            }
            from = Bound::Excluded(last);
        }
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<()> {
        let mut cfs = self.cfs.write();
        for op in batch.ops {
            match op {
                WriteOp::Put { cf, key, value } => {
                    cfs.entry(cf).or_default().insert(key, value);
                }
                WriteOp::Delete { cf, key } => {
                    cfs.entry(cf).or_default().remove(&key);
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    let map = cfs.entry(cf).or_default();
                    let doomed: Vec<Vec<u8>> =
                        map.range(start..end).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }
}
