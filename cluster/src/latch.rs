//! Latches over key spans: how a tablet's requests exclude only the requests they
//! conflict with.
//!
//! A request declares every span it reads and every span it writes and acquires them
//! all at once; it holds them from evaluation until its writes are applied (across the
//! Raft round), so a request that overlaps it sees either none or all of its effects.
//!
//! Invariants:
//! - Two latches conflict when their spans overlap and at least one of them writes.
//!   Non-conflicting requests run in parallel (their proposals are pipelined).
//! - A request acquires all of its latches at once, waiting while any of them
//!   conflicts with a held one; it never holds some while waiting for others, so
//!   waiting cannot deadlock. The one exception, [`Latches::try_acquire`], never waits.
//! - Conflicting requests are served in arrival order: a request also waits for every
//!   earlier request still waiting that it conflicts with, so a write over a wide span
//!   (garbage collection latches the whole tablet) is not starved by a stream of
//!   overlapping reads. The earliest waiter waits only for holders, and holders wait
//!   for nothing but their own Raft round, so the queue always moves.
//! - A latch is released when its guard is dropped, and waiters are woken.
//!
//! Conflict checks compare each requested span with each held or earlier waiting one,
//! which is cheap for the point spans of OLTP and linear in the spans of a large
//! transaction.

use std::collections::BTreeMap;

use parking_lot::{Condvar, Mutex};

/// Whether a latch reads or writes its span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// A latch request: the key span `[start, end)` and how it is used.
#[derive(Clone, Debug)]
pub(crate) struct Span {
    start: Vec<u8>,
    end: Vec<u8>,
    access: Access,
}

impl Span {
    /// The span `[start, end)`.
    pub(crate) fn range(start: &[u8], end: &[u8], access: Access) -> Span {
        Span {
            start: start.to_vec(),
            end: end.to_vec(),
            access,
        }
    }

    /// The single key `key`.
    pub(crate) fn key(key: &[u8], access: Access) -> Span {
        Span {
            start: key.to_vec(),
            end: [key, &[0]].concat(),
            access,
        }
    }

    /// The first key of the span.
    pub(crate) fn start(&self) -> &[u8] {
        &self.start
    }

    /// The end (exclusive) of the span.
    pub(crate) fn end(&self) -> &[u8] {
        &self.end
    }

    fn conflicts(&self, other: &Span) -> bool {
        (self.access == Access::Write || other.access == Access::Write)
            && self.start < other.end
            && other.start < self.end
    }
}

/// The latches of one tablet.
#[derive(Debug, Default)]
pub(crate) struct Latches {
    state: Mutex<Held>,
    released: Condvar,
}

/// Requests by arrival: their spans, and whether they hold them yet.
#[derive(Debug, Default)]
struct Held {
    next: u64,
    by_request: BTreeMap<u64, (Vec<Span>, bool)>,
}

impl Held {
    /// Whether `spans` conflict with a held latch or with a request that arrived
    /// before `before` and still waits.
    fn blocked(&self, spans: &[Span], before: u64) -> bool {
        self.by_request
            .iter()
            .filter(|(id, (_, held))| *held || **id < before)
            .flat_map(|(_, (h, _))| h)
            .any(|h| spans.iter().any(|s| s.conflicts(h)))
    }

    fn insert(&mut self, spans: Vec<Span>, held: bool) -> u64 {
        self.next += 1;
        self.by_request.insert(self.next, (spans, held));
        self.next
    }
}

/// Latches held by one request; released on drop.
#[derive(Debug)]
pub(crate) struct Guard<'a> {
    latches: &'a Latches,
    id: u64,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.latches.state.lock().by_request.remove(&self.id);
        self.latches.released.notify_all();
    }
}

impl Latches {
    /// Wait until none of `spans` conflicts with a held latch or an earlier waiting
    /// request, then hold them all.
    pub(crate) fn acquire(&self, spans: Vec<Span>) -> Guard<'_> {
        let mut state = self.state.lock();
        let id = state.insert(spans, false);
        loop {
            let (spans, _) = &state.by_request[&id];
            if !state.blocked(spans, id) {
                break;
            }
            self.released.wait(&mut state);
        }
        state.by_request.get_mut(&id).expect("queued").1 = true;
        Guard { latches: self, id }
    }

    /// Hold `spans` if none conflicts with a held latch or a waiting request right
    /// now; never waits.
    pub(crate) fn try_acquire(&self, spans: Vec<Span>) -> Option<Guard<'_>> {
        let mut state = self.state.lock();
        if state.blocked(&spans, u64::MAX) {
            return None;
        }
        let id = state.insert(spans, true);
        Some(Guard { latches: self, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn w(k: &str) -> Span {
        Span::key(k.as_bytes(), Access::Write)
    }

    fn r(a: &str, b: &str) -> Span {
        Span::range(a.as_bytes(), b.as_bytes(), Access::Read)
    }

    #[test]
    fn only_overlapping_spans_with_a_writer_conflict() {
        let l = Latches::default();
        let _a = l.acquire(vec![w("a"), r("m", "p")]);
        // Another key, another read of the same span: no conflict.
        assert!(l.try_acquire(vec![w("b"), r("m", "p")]).is_some());
        // A write inside the read span, a read of the written key: conflicts.
        assert!(l.try_acquire(vec![w("n")]).is_none());
        assert!(l.try_acquire(vec![r("0", "b")]).is_none());
        // Spans are half-open: [b, m) does not touch the read of [m, p).
        assert!(l
            .try_acquire(vec![Span::range(b"b", b"m", Access::Write)])
            .is_some());
    }

    #[test]
    fn conflicting_requests_are_served_in_arrival_order() {
        let l = Arc::new(Latches::default());
        let held = l.acquire(vec![w("k")]);
        // A wide write arrives and waits for the holder.
        let wide = {
            let l = l.clone();
            std::thread::spawn(move || {
                let _g = l.acquire(vec![Span::range(b"a", b"z", Access::Write)]);
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        // A read of another key conflicts with the waiting write, not with the holder:
        // it queues behind the write instead of overtaking it.
        assert!(l.try_acquire(vec![r("x", "y")]).is_none());
        let late = {
            let l = l.clone();
            std::thread::spawn(move || {
                let _g = l.acquire(vec![r("x", "y")]);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!late.is_finished(), "a later read overtook a waiting write");
        drop(held);
        wide.join().unwrap();
        late.join().unwrap();
    }

    #[test]
    fn a_conflicting_request_waits_until_the_holder_releases() {
        let l = Arc::new(Latches::default());
        let held = l.acquire(vec![w("k")]);
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || {
                let _g = l.acquire(vec![w("x"), r("a", "z")]);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "acquired over a conflicting latch");
        // While it waits it holds nothing: a request that conflicts with neither the
        // holder nor the waiter goes ahead.
        assert!(l.try_acquire(vec![w("zz")]).is_some());
        drop(held);
        waiter.join().unwrap();
        assert!(l.try_acquire(vec![w("k")]).is_some());
    }
}
