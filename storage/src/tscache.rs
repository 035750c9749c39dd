//! The timestamp cache: for any key span, the highest timestamp at which it was read.
//!
//! A write at `ts` to a key that was read at `r >= ts` would invalidate that read, so a
//! writer must commit above [`TimestampCache::max_read`] of every key it writes
//! (DESIGN.md §5). The cache is an interval map of disjoint segments, each carrying the
//! largest read timestamp recorded over it. Memory is bounded: when it holds more than
//! its capacity, the segments with the oldest timestamps are dropped and the
//! *low-water mark* rises to the newest timestamp dropped. Every query answers at least
//! the low-water mark, so forgetting only ever makes the cache more conservative.
//!
//! ```text
//!   key space  ──[a────c)──[d──f)────────────
//!   max read       @7        @9      elsewhere: low-water mark
//! ```

use std::collections::BTreeMap;

use crate::Timestamp;

/// Max read timestamp per key span, with a low-water mark. See the module docs.
#[derive(Debug)]
pub struct TimestampCache {
    /// Disjoint segments: start -> (end, max read timestamp). `end` is exclusive.
    segments: BTreeMap<Vec<u8>, (Vec<u8>, Timestamp)>,
    low_water: Timestamp,
    capacity: usize,
}

/// The key just after `key` in byte order: the exclusive end of a point span.
fn successor(key: &[u8]) -> Vec<u8> {
    [key, &[0u8][..]].concat()
}

impl TimestampCache {
    /// An empty cache holding at most `capacity` segments, with the low-water mark at
    /// `low_water` (a new leaseholder starts at the time its lease starts).
    pub fn new(capacity: usize, low_water: Timestamp) -> Self {
        TimestampCache {
            segments: BTreeMap::new(),
            low_water,
            capacity: capacity.max(2),
        }
    }

    /// The low-water mark.
    pub fn low_water(&self) -> Timestamp {
        self.low_water
    }

    /// Number of segments held.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// True when no segment is held.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Record a read of the single key `key` at `ts`.
    pub fn add_point(&mut self, key: &[u8], ts: Timestamp) {
        self.add(key, &successor(key), ts);
    }

    /// Record a read of `[start, end)` at `ts`.
    pub fn add(&mut self, start: &[u8], end: &[u8], ts: Timestamp) {
        if start >= end || ts <= self.low_water {
            return;
        }
        // Collect the segments overlapping [start, end), then rebuild that stretch.
        let mut overlapping: Vec<(Vec<u8>, Vec<u8>, Timestamp)> = Vec::new();
        if let Some((s, (e, t))) = self.segments.range(..start.to_vec()).next_back() {
            if e.as_slice() > start {
                overlapping.push((s.clone(), e.clone(), *t));
            }
        }
        for (s, (e, t)) in self.segments.range(start.to_vec()..end.to_vec()) {
            overlapping.push((s.clone(), e.clone(), *t));
        }
        for (s, _, _) in &overlapping {
            self.segments.remove(s);
        }
        // Boundaries: every segment edge plus the new span's edges, in order.
        let mut cuts: Vec<Vec<u8>> = vec![start.to_vec(), end.to_vec()];
        for (s, e, _) in &overlapping {
            cuts.push(s.clone());
            cuts.push(e.clone());
        }
        cuts.sort();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let mut best: Option<Timestamp> = None;
            if a.as_slice() >= start && b.as_slice() <= end {
                best = Some(ts);
            }
            for (s, e, t) in &overlapping {
                if s <= a && b <= e {
                    best = Some(best.map_or(*t, |x| x.max(*t)));
                }
            }
            if let Some(t) = best {
                self.segments.insert(a.clone(), (b.clone(), t));
            }
        }
        self.shrink();
    }

    /// The highest read timestamp recorded over any key in `[start, end)`, and at least
    /// the low-water mark.
    pub fn max_read(&self, start: &[u8], end: &[u8]) -> Timestamp {
        let mut best = self.low_water;
        if let Some((_, (e, t))) = self.segments.range(..start.to_vec()).next_back() {
            if e.as_slice() > start {
                best = best.max(*t);
            }
        }
        for (_, (_, t)) in self.segments.range(start.to_vec()..end.to_vec()) {
            best = best.max(*t);
        }
        best
    }

    /// [`TimestampCache::max_read`] of the single key `key`.
    pub fn max_read_point(&self, key: &[u8]) -> Timestamp {
        self.max_read(key, &successor(key))
    }

    /// Drop the oldest half of the segments once over capacity, raising the low-water mark.
    fn shrink(&mut self) {
        if self.segments.len() <= self.capacity {
            return;
        }
        let mut stamps: Vec<Timestamp> = self.segments.values().map(|(_, t)| *t).collect();
        stamps.sort();
        let cutoff = stamps[stamps.len() / 2];
        self.low_water = self.low_water.max(cutoff);
        self.segments.retain(|_, (_, t)| *t > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: u64) -> Timestamp {
        Timestamp::new(n, 0)
    }

    #[test]
    fn points_and_spans_take_the_max() {
        let mut c = TimestampCache::new(100, ts(1));
        c.add_point(b"b", ts(5));
        c.add(b"a", b"c", ts(3));
        c.add(b"x", b"z", ts(9));
        assert_eq!(c.max_read_point(b"b"), ts(5));
        assert_eq!(c.max_read_point(b"a"), ts(3));
        assert_eq!(c.max_read_point(b"bb"), ts(3));
        assert_eq!(c.max_read_point(b"c"), ts(1));
        assert_eq!(c.max_read(b"c", b"y"), ts(9));
        assert_eq!(c.max_read(b"z", b"zz"), ts(1));
        c.add(b"a", b"zz", ts(4));
        assert_eq!(c.max_read_point(b"b"), ts(5));
        assert_eq!(c.max_read_point(b"c"), ts(4));
        assert_eq!(c.max_read_point(b"y"), ts(9));
    }

    #[test]
    fn eviction_only_raises_answers() {
        let mut c = TimestampCache::new(8, ts(0));
        for i in 0..100u64 {
            c.add_point(&i.to_be_bytes(), ts(i + 1));
        }
        assert!(c.len() <= 8);
        for i in 0..100u64 {
            assert!(c.max_read_point(&i.to_be_bytes()) >= ts(i + 1), "key {i}");
        }
        assert!(c.low_water() > ts(0));
    }
}
