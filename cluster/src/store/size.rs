//! Splits by size: a tablet that grows past [`crate::StoreConfig::split_bytes`] is cut
//! in two at its middle row.
//!
//! - Every write counts its bytes on its tablet; once a quarter of the bound has been
//!   written since the last measurement, the tablet's leaseholder measures it in the
//!   background by a scan of its span (keys and values of every version).
//! - A tablet above the bound splits at the first user key at or past half of its
//!   bytes. A split point is always a user key, so no row (a key with its versions and
//!   intent) is ever cut ([`super::tablet`]), and the split is the same one Raft
//!   command as any other ([`super::split`]).
//! - Measuring is best effort: when the background thread is busy the measurement is
//!   skipped until more has been written.

use std::sync::atomic::Ordering;

use tessera_storage::{mvcc, Cf, Visit};

use super::background::Job;
use super::tablet::Tablet;
use super::{Store, KEY_MAX};

impl Store {
    /// Count `bytes` written on `t`; ask for a measurement once enough accumulated.
    pub(super) fn wrote(&self, t: &Tablet, bytes: u64) {
        let every = (self.config.split_bytes / 4).max(1);
        let total = t.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= every {
            t.written.store(0, Ordering::Relaxed);
            let _ = self.in_background(Job::Measure(t.range_id()));
        }
    }

    /// Measure tablet `range` and split it if it is too large (only on its leaseholder).
    pub(super) fn measure(&self, range: u64) {
        let Some(t) = self.tablets.by_id(range) else {
            return;
        };
        if !Self::leads_here(&t) {
            return;
        }
        match self.middle_key(&t) {
            Ok(Some(key)) => match self.split(&key) {
                Ok(right) => tracing::info!(
                    left = range,
                    right = right.range_id,
                    "split a tablet that outgrew {} bytes",
                    self.config.split_bytes
                ),
                Err(e) => tracing::debug!(range, error = %e, "a split by size failed"),
            },
            Ok(None) => {}
            Err(e) => tracing::debug!(range, error = %e, "measuring a tablet failed"),
        }
    }

    /// The key to split `t` at when it holds more than the bound: the first user key at
    /// or past half of its bytes (never its first key). `None` when it is small enough.
    fn middle_key(&self, t: &Tablet) -> crate::Result<Option<Vec<u8>>> {
        let desc = t.desc.read().clone();
        // The MVCC part of the span: the first tablet's raw bookkeeping keys lie below.
        let start = desc.start.clone().max(mvcc::MVCC_START.to_vec());
        let from = mvcc::intent_key(&start);
        let to = (desc.end != KEY_MAX).then(|| mvcc::intent_key(&desc.end));
        let mut total = 0u64;
        self.engine
            .scan(Cf::Data, &from, to.as_deref(), &mut |k, v| {
                total += (k.len() + v.len()) as u64;
                Ok(Visit::Continue)
            })?;
        if total <= self.config.split_bytes {
            return Ok(None);
        }
        let mut seen = 0u64;
        let mut previous: Option<Vec<u8>> = None;
        let mut found = None;
        self.engine
            .scan(Cf::Data, &from, to.as_deref(), &mut |k, v| {
                // Tablet-local entries belong to no row.
                if let Ok((user, _)) = mvcc::decode_key(k) {
                    if previous.as_deref() != Some(user.as_slice()) {
                        if seen * 2 >= total && user > desc.start {
                            found = Some(user);
                            return Ok(Visit::Stop);
                        }
                        previous = Some(user);
                    }
                }
                seen += (k.len() + v.len()) as u64;
                Ok(Visit::Continue)
            })?;
        Ok(found)
    }
}
