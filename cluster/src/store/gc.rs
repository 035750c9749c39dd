//! Garbage collection of old MVCC versions and the tablet's replicated GC threshold
//! (see the store's module docs, "Garbage collection").

use tessera_storage::mvcc::{self, GcThreshold};
use tessera_storage::{Timestamp, WriteBatch};

use super::{Store, KEY_MAX};
use crate::latch::{Access, Span};
use crate::{Error, Result};

impl Store {
    /// The tablet's GC threshold. The replicated key is the truth; it is read once per
    /// lease term, since within a term only this leaseholder raises it.
    pub(super) fn gc_threshold(&self) -> Result<Timestamp> {
        let term = self.replicator.as_ref().map_or(0, |r| r.lease_term());
        let mut cached = self.gc_threshold.lock();
        if cached.0 != term {
            *cached = (term, GcThreshold::read(&*self.engine)?);
        }
        Ok(cached.1)
    }

    /// Refuse a read or commit at `read_ts` below the tablet's (replicated) GC threshold.
    pub(super) fn check_gc(&self, read_ts: Timestamp) -> Result<()> {
        let threshold = self.gc_threshold()?;
        if read_ts < threshold {
            return Err(Error::TooOld { read_ts, threshold });
        }
        Ok(())
    }

    /// Collect versions that no open transaction and no read within the GC window can
    /// see. Returns how many versions were removed.
    pub fn gc_once(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut threshold = Timestamp::new(now.wall.saturating_sub(self.config.gc_window_nanos), 0);
        if let Some(((oldest, _), _)) = self.active.lock().first_key_value() {
            threshold = threshold.min(*oldest);
        }
        if threshold == Timestamp::ZERO {
            return Ok(0);
        }
        let mut batch = WriteBatch::new();
        // Only the MVCC key space: below it lie the tablet's raw bookkeeping keys.
        let removed = mvcc::gc(
            &*self.engine,
            &mut batch,
            mvcc::MVCC_START,
            Some(KEY_MAX),
            threshold,
        )?;
        if removed == 0 {
            return Ok(0);
        }
        {
            // Latching everything: a commit checks the threshold and validates its
            // reads with no collection in between.
            let _latched = self.latches.acquire(vec![
                Span::range(mvcc::MVCC_START, KEY_MAX, Access::Write),
                Span::key(GcThreshold::KEY, Access::Write),
            ]);
            let raised = threshold.max(GcThreshold::read(&*self.engine)?);
            GcThreshold::put(&mut batch, raised);
            self.write(batch, false)?;
            let term = self.replicator.as_ref().map_or(0, |r| r.lease_term());
            *self.gc_threshold.lock() = (term, raised);
        }
        tracing::debug!(removed, %threshold, "garbage-collected MVCC versions");
        Ok(removed)
    }
}
