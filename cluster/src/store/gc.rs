//! Garbage collection of old MVCC versions and the tablet's replicated GC threshold
//! (see the store's module docs, "Garbage collection").

use tessera_storage::mvcc::{self, GcThreshold};
use tessera_storage::{Timestamp, WriteBatch};

use super::tablet::{Tablet, FIRST_RANGE};
use super::Store;
use crate::latch::{Access, Span};
use crate::{Error, Result};

impl Store {
    /// `t`'s GC threshold. The replicated key is the truth; it is read once per lease
    /// term, since within a term only this leaseholder raises it. Only the first tablet
    /// collects (see the module docs of the store): the others have no threshold.
    pub(super) fn gc_threshold(&self, t: &Tablet) -> Result<Timestamp> {
        if t.range_id() != FIRST_RANGE {
            return Ok(Timestamp::ZERO);
        }
        let term = t.lease_term();
        let mut cached = t.gc_threshold.lock();
        if cached.0 != term {
            *cached = (term, GcThreshold::read(&*self.engine)?);
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

    /// Collect versions of the first tablet that no open transaction and no read
    /// within the GC window can see. Returns how many versions were removed.
    pub fn gc_once(&self) -> Result<usize> {
        let t = self.tablets.first();
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
        let end = t.desc.read().end.clone();
        let removed = mvcc::gc(
            &*self.engine,
            &mut batch,
            mvcc::MVCC_START,
            Some(&end),
            threshold,
        )?;
        if removed == 0 {
            return Ok(0);
        }
        {
            // Latching everything: a commit checks the threshold and validates its
            // reads with no collection in between.
            let _latched = Self::latch(
                &t,
                vec![
                    Span::range(mvcc::MVCC_START, &end, Access::Write),
                    Span::key(GcThreshold::KEY, Access::Write),
                ],
            )?;
            let raised = threshold.max(GcThreshold::read(&*self.engine)?);
            GcThreshold::put(&mut batch, raised);
            self.write(&t, batch, false)?;
            *t.gc_threshold.lock() = (t.lease_term(), raised);
        }
        tracing::debug!(removed, %threshold, "garbage-collected MVCC versions");
        Ok(removed)
    }
}
