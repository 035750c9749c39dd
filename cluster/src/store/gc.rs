//! Garbage collection of old MVCC versions and each tablet's replicated GC threshold
//! (see the store's module docs, "Garbage collection").

use tessera_storage::mvcc::{self, GcThreshold};
use tessera_storage::{Timestamp, WriteBatch};

use super::tablet::Tablet;
use super::Store;
use crate::latch::{Access, Span};
use crate::{Error, Result};

impl Store {
    /// `t`'s GC threshold. The replicated entry is the truth; it is read once per lease
    /// term, since within a term only this leaseholder raises it.
    pub(super) fn gc_threshold(&self, t: &Tablet) -> Result<Timestamp> {
        let term = t.lease_term();
        let mut cached = t.gc_threshold.lock();
        if cached.0 != term {
            let start = t.desc.read().start.clone();
            *cached = (term, GcThreshold::read(&*self.engine, &start)?);
        }
        Ok(cached.1)
    }

    /// Refuse a read or commit at `read_ts` below the tablet's (replicated) GC threshold.
    pub(super) fn check_gc(&self, t: &Tablet, read_ts: Timestamp) -> Result<()> {
        let threshold = self.gc_threshold(t)?;
        if read_ts < threshold {
            return Err(Error::TooOld { read_ts, threshold });
        }
        Ok(())
    }

    /// Collect, on every tablet this node holds the lease of, the versions that no open
    /// transaction and no read within the GC window can see. Returns how many versions
    /// were removed.
    pub fn gc_once(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut threshold = Timestamp::new(now.wall.saturating_sub(self.config.gc_window_nanos), 0);
        if let Some(((oldest, _), _)) = self.active.lock().first_key_value() {
            threshold = threshold.min(*oldest);
        }
        if threshold == Timestamp::ZERO {
            return Ok(0);
        }
        let mut removed = 0;
        for t in self.tablets.all() {
            if !Self::leads_here(&t) {
                continue;
            }
            match self.gc_tablet(&t, threshold) {
                Ok(n) => removed += n,
                // Split or moved meanwhile: the next round collects it.
                Err(Error::RangeKeyMismatch { .. } | Error::NotLeaseholder { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if removed > 0 {
            tracing::debug!(removed, %threshold, "garbage-collected MVCC versions");
        }
        Ok(removed)
    }

    /// Collect `t` below `threshold`.
    fn gc_tablet(&self, t: &Tablet, threshold: Timestamp) -> Result<usize> {
        let desc = t.desc.read().clone();
        // Only the MVCC key space: below it lie the first tablet's raw bookkeeping keys.
        let start = desc.start.clone().max(mvcc::MVCC_START.to_vec());
        let mut batch = WriteBatch::new();
        let removed = mvcc::gc(
            &*self.engine,
            &mut batch,
            &start,
            Some(&desc.end),
            threshold,
        )?;
        if removed == 0 {
            return Ok(0);
        }
        // Latching everything: a commit checks the threshold and validates its reads
        // with no collection in between.
        let _latched = Self::latch(
            t,
            vec![
                Span::range(&start, &desc.end, Access::Write),
                Span::key(GcThreshold::KEY, Access::Write),
            ],
        )?;
        if *t.desc.read() != desc {
            return Err(Error::RangeKeyMismatch { key: start });
        }
        let raised = threshold.max(GcThreshold::read(&*self.engine, &desc.start)?);
        GcThreshold::put(&mut batch, &desc.start, raised);
        self.write(t, batch, false)?;
        *t.gc_threshold.lock() = (t.lease_term(), raised);
        Ok(removed)
    }
}
