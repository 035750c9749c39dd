//! The hybrid logical clock (HLC).
//!
//! `now()` returns a timestamp that is strictly greater than every timestamp it returned
//! before and than every remote timestamp passed to `update()`, and whose wall part
//! tracks the physical clock when that clock moves forward. The physical clock is a
//! trait so that tests inject a manual one; nothing else in the cluster reads time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tessera_storage::Timestamp;

/// A source of physical time in nanoseconds since the Unix epoch.
pub trait PhysicalClock: Send + Sync + 'static {
    /// The current physical time.
    fn now_nanos(&self) -> u64;

    /// Return once the physical time is past `nanos`.
    fn sleep_until(&self, nanos: u64) {
        loop {
            let now = self.now_nanos();
            if now > nanos {
                return;
            }
            let left = std::time::Duration::from_nanos(nanos - now);
            std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
        }
    }
}

/// The operating system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl PhysicalClock for SystemClock {
    fn now_nanos(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `nanos`.
    pub fn new(nanos: u64) -> Self {
        ManualClock(AtomicU64::new(nanos))
    }

    /// Move the clock to `nanos` (it may go backwards, as real clocks do).
    pub fn set(&self, nanos: u64) {
        self.0.store(nanos, Ordering::SeqCst);
    }

    /// Advance the clock by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl PhysicalClock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Time in a test passes only when it is needed: sleeping moves the clock.
    fn sleep_until(&self, nanos: u64) {
        self.0.fetch_max(nanos + 1, Ordering::SeqCst);
    }
}

/// A hybrid logical clock over a physical clock.
pub struct Hlc {
    physical: Arc<dyn PhysicalClock>,
    last: Mutex<Timestamp>,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc")
            .field("last", &*self.last.lock())
            .finish()
    }
}

impl Hlc {
    /// A clock over `physical`.
    pub fn new(physical: Arc<dyn PhysicalClock>) -> Self {
        Hlc {
            physical,
            last: Mutex::new(Timestamp::ZERO),
        }
    }

    /// A new timestamp, greater than every one before.
    pub fn now(&self) -> Timestamp {
        let wall = self.physical.now_nanos();
        let mut last = self.last.lock();
        let next = if wall > last.wall {
            Timestamp::new(wall, 0)
        } else {
            last.next()
        };
        *last = next;
        next
    }

    /// Ratchet forward past a timestamp seen on another node.
    pub fn update(&self, remote: Timestamp) {
        let mut last = self.last.lock();
        if remote > *last {
            *last = remote;
        }
    }

    /// Return once the physical clock is past `wall` nanoseconds.
    pub fn wait_until(&self, wall: u64) {
        self.physical.sleep_until(wall);
    }

    /// The physical time, for callers that need a wall-clock bound (GC windows).
    pub fn physical_nanos(&self) -> u64 {
        self.physical.now_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_under_a_stalled_or_backward_clock() {
        let phys = Arc::new(ManualClock::new(100));
        let hlc = Hlc::new(phys.clone());
        let a = hlc.now();
        let b = hlc.now();
        assert_eq!(a, Timestamp::new(100, 0));
        assert_eq!(b, Timestamp::new(100, 1));
        phys.set(50);
        let c = hlc.now();
        assert!(c > b);
        phys.set(200);
        assert_eq!(hlc.now(), Timestamp::new(200, 0));
        hlc.update(Timestamp::new(500, 7));
        assert_eq!(hlc.now(), Timestamp::new(500, 8));
    }
}
