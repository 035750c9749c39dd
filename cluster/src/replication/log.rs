//! Raft log storage for one replica: raft-rs's `Storage` over the engine's `Raft`
//! column family.
//!
//! ```text
//!   r <group u64> 'l' <index u64>  -> Entry (protobuf)
//!   r <group u64> 'h'              -> HardState
//!   r <group u64> 'c'              -> ConfState
//!   r <group u64> 't'              -> truncated index u64, truncated term u64
//!   r <group u64> 'a'              -> applied index u64
//! ```
//!
//! All changes are *staged* into a caller's `WriteBatch` (the driver persists every
//! replica's changes with one fsync) and the in-memory view is updated at the same time;
//! the driver writes the batch before raft-rs reads the log again. Invariants:
//! `truncated_index <= applied <= commit <= last_index`, and entries `(truncated_index,
//! last_index]` are all present. The term of every live entry is also kept in memory as
//! runs (first index of each term), so `term(i)` — which raft-rs asks on every commit
//! and every ReadIndex, often of the last, possibly megabytes-large entry — never loads
//! an entry. A snapshot is the group's span of the `Data` column family
//! as of `applied` or later, with the conf state at `applied`; its data is streamed and
//! installed by [`super::snapshot`], never built here.

use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use tessera_storage::{Cf, Engine, Visit, WriteBatch};

use crate::{Error, Result};

/// The key of one of `group`'s records in the `Raft` column family (`r<group><suffix>`).
pub(super) fn group_key(group: u64, suffix: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.push(b'r');
    k.extend_from_slice(&group.to_be_bytes());
    k.push(suffix);
    k
}

fn entry_key(group: u64, index: u64) -> Vec<u8> {
    let mut k = group_key(group, b'l');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| corrupt("short integer"))
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Storage(tessera_storage::Error::Corrupt(format!("raft log: {what}")))
}

fn to_raft(e: Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

/// Index (and term) at which a bootstrapped group's log starts.
pub const INIT_INDEX: u64 = 5;

/// One replica's log, hard state and applied index.
pub struct RaftLog {
    group: u64,
    engine: Arc<dyn Engine>,
    /// The replica's data: `[start, end)` of the `Data` column family.
    span: (Vec<u8>, Vec<u8>),
    hard: HardState,
    conf: ConfState,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    applied: u64,
    /// `(first index, term)` of each run of equal terms among the live entries, in index
    /// order; the term of entry `i` is that of the last run starting at or before `i`.
    terms: Vec<(u64, u64)>,
}

/// Record that entry `index` has `term`, after all earlier entries were recorded.
fn push_term(terms: &mut Vec<(u64, u64)>, index: u64, term: u64) {
    if terms.last().is_none_or(|&(_, t)| t != term) {
        terms.push((index, term));
    }
}

impl RaftLog {
    /// Load the log of `group` (empty if it was never written).
    pub fn open(group: u64, engine: Arc<dyn Engine>, span: (Vec<u8>, Vec<u8>)) -> Result<Self> {
        let get = |suffix| engine.get(Cf::Raft, &group_key(group, suffix));
        let hard = match get(b'h')? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(corrupt)?,
            None => HardState::default(),
        };
        let conf = match get(b'c')? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(corrupt)?,
            None => ConfState::default(),
        };
        let (truncated_index, truncated_term) = match get(b't')? {
            Some(b) => (u64_at(&b, 0)?, u64_at(&b, 8)?),
            None => (0, 0),
        };
        let applied = match get(b'a')? {
            Some(b) => u64_at(&b, 0)?,
            None => truncated_index,
        };
        let mut last_index = truncated_index;
        let mut terms = Vec::new();
        let mut bad = None;
        engine.scan(
            Cf::Raft,
            &entry_key(group, truncated_index + 1),
            Some(&entry_key(group, u64::MAX)),
            &mut |k, v| {
                let at = k.len().saturating_sub(8);
                if let Some(b) = k.get(at..) {
                    last_index = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                }
                match Entry::parse_from_bytes(v) {
                    Ok(e) => {
                        push_term(&mut terms, last_index, e.term);
                        Ok(Visit::Continue)
                    }
                    Err(e) => {
                        bad = Some(format!("entry {last_index} of group {group}: {e}"));
                        Ok(Visit::Stop)
                    }
                }
            },
        )?;
        if let Some(e) = bad {
            return Err(corrupt(e));
        }
        Ok(RaftLog {
            group,
            engine,
            span,
            hard,
            conf,
            truncated_index,
            truncated_term,
            last_index,
            applied,
            terms,
        })
    }

    /// Whether the group has any state here (a conf state or a log).
    pub fn is_initialized(&self) -> bool {
        !self.conf.voters.is_empty() || self.last_index > 0
    }

    /// The index of the last applied entry.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The index up to which the log has been truncated.
    pub fn truncated_index(&self) -> u64 {
        self.truncated_index
    }

    /// The current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// The data span of the group.
    pub fn span(&self) -> &(Vec<u8>, Vec<u8>) {
        &self.span
    }

    /// Append `entries`, replacing any conflicting suffix.
    pub fn stage_append(&mut self, batch: &mut WriteBatch, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.truncated_index {
            return Err(corrupt(format!(
                "append at {} below the truncation point {}",
                first.index, self.truncated_index
            )));
        }
        for e in entries {
            batch.put(
                Cf::Raft,
                entry_key(self.group, e.index),
                e.write_to_bytes().map_err(corrupt)?,
            );
        }
        let keep = self
            .terms
            .partition_point(|&(start, _)| start < first.index);
        self.terms.truncate(keep);
        for e in entries {
            push_term(&mut self.terms, e.index, e.term);
        }
        let new_last = entries.last().expect("non-empty").index;
        if new_last < self.last_index {
            batch.delete_range(
                Cf::Raft,
                entry_key(self.group, new_last + 1),
                entry_key(self.group, self.last_index + 1),
            );
        }
        self.last_index = new_last;
        Ok(())
    }

    /// Record the hard state.
    pub fn stage_hard_state(&mut self, batch: &mut WriteBatch, hs: &HardState) -> Result<()> {
        batch.put(
            Cf::Raft,
            group_key(self.group, b'h'),
            hs.write_to_bytes().map_err(corrupt)?,
        );
        self.hard = hs.clone();
        Ok(())
    }

    /// Record the commit index (from a light ready).
    pub fn stage_commit(&mut self, batch: &mut WriteBatch, commit: u64) -> Result<()> {
        let mut hs = self.hard.clone();
        hs.commit = commit;
        self.stage_hard_state(batch, &hs)
    }

    /// Record the configuration.
    pub fn stage_conf_state(&mut self, batch: &mut WriteBatch, cs: &ConfState) -> Result<()> {
        batch.put(
            Cf::Raft,
            group_key(self.group, b'c'),
            cs.write_to_bytes().map_err(corrupt)?,
        );
        self.conf = cs.clone();
        Ok(())
    }

    /// Initialise a new group with its first configuration. The log starts as if
    /// truncated at [`INIT_INDEX`], so a replica created empty later (a member being
    /// added) can only catch up from a snapshot, which carries the configuration; it
    /// never replays a configuration change against an empty one.
    pub fn stage_bootstrap(&mut self, batch: &mut WriteBatch, cs: &ConfState) -> Result<()> {
        self.stage_conf_state(batch, cs)?;
        self.stage_truncated(batch, INIT_INDEX, INIT_INDEX);
        self.last_index = INIT_INDEX;
        self.terms.clear();
        let hs = HardState {
            term: INIT_INDEX,
            commit: INIT_INDEX,
            ..Default::default()
        };
        self.stage_hard_state(batch, &hs)?;
        self.stage_applied(batch, INIT_INDEX);
        Ok(())
    }

    /// Record the truncation point: entries up to `index` (whose term was `term`) are gone.
    fn stage_truncated(&mut self, batch: &mut WriteBatch, index: u64, term: u64) {
        let mut trunc = index.to_be_bytes().to_vec();
        trunc.extend_from_slice(&term.to_be_bytes());
        batch.put(Cf::Raft, group_key(self.group, b't'), trunc);
        self.truncated_index = index;
        self.truncated_term = term;
    }

    /// Record the applied index (in the same batch as the data it covers).
    pub fn stage_applied(&mut self, batch: &mut WriteBatch, index: u64) {
        batch.put(
            Cf::Raft,
            group_key(self.group, b'a'),
            index.to_be_bytes().to_vec(),
        );
        self.applied = index;
    }

    /// Replace the replica's log with a snapshot's metadata: the log restarts after the
    /// snapshot's index, which becomes the applied index. (The data is installed by
    /// [`super::snapshot`].)
    pub fn stage_snapshot(&mut self, batch: &mut WriteBatch, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        batch.delete_range(
            Cf::Raft,
            entry_key(self.group, 0),
            entry_key(self.group, u64::MAX),
        );
        self.stage_truncated(batch, meta.index, meta.term);
        self.last_index = meta.index;
        self.terms.clear();
        self.stage_conf_state(batch, meta.get_conf_state())?;
        let mut hs = self.hard.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.stage_hard_state(batch, &hs)?;
        self.stage_applied(batch, meta.index);
        Ok(())
    }

    /// Drop entries up to and including `index` (never beyond what is applied).
    pub fn stage_compact(&mut self, batch: &mut WriteBatch, index: u64) -> Result<()> {
        let index = index.min(self.applied);
        if index <= self.truncated_index {
            return Ok(());
        }
        let term = raft::Storage::term(self, index).map_err(|e| corrupt(e.to_string()))?;
        batch.delete_range(
            Cf::Raft,
            entry_key(self.group, self.truncated_index + 1),
            entry_key(self.group, index + 1),
        );
        self.stage_truncated(batch, index, term);
        // Runs wholly below the new first index go; the one covering it stays.
        let covering = self.terms.partition_point(|&(start, _)| start <= index + 1);
        self.terms.drain(..covering.saturating_sub(1));
        Ok(())
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        let mut bad = None;
        self.engine
            .scan(
                Cf::Raft,
                &entry_key(self.group, low),
                Some(&entry_key(self.group, high)),
                &mut |_, v| match Entry::parse_from_bytes(v) {
                    Ok(e) => {
                        size += e.compute_size() as u64;
                        // Always at least one entry, as raft-rs requires.
                        if !out.is_empty() && size > max {
                            return Ok(Visit::Stop);
                        }
                        out.push(e);
                        Ok(Visit::Continue)
                    }
                    Err(e) => {
                        bad = Some(e.to_string());
                        Ok(Visit::Stop)
                    }
                },
            )
            .map_err(|e| to_raft(e.into()))?;
        if let Some(e) = bad {
            return Err(to_raft(corrupt(e)));
        }
        let expected = (high - low) as usize;
        if out.len() < expected && size <= max {
            return Err(to_raft(corrupt(format!(
                "entries [{low}, {high}) of group {} are missing",
                self.group
            ))));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let run = self.terms.partition_point(|&(start, _)| start <= idx);
        match run.checked_sub(1).and_then(|r| self.terms.get(r)) {
            Some(&(_, term)) => Ok(term),
            None => Err(to_raft(corrupt(format!(
                "no term for entry {idx} of group {}",
                self.group
            )))),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.applied < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = self.term(self.applied)?;
        meta.set_conf_state(self.conf.clone());
        // The data is streamed by the store in chunks (see `super::snapshot`).
        snap.set_data(super::snapshot::TO_STREAM.to_vec().into());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use raft::Storage as _;
    use tessera_storage::{MemoryEngine, Visitor};

    use super::*;

    /// An engine that counts the bytes of the values it hands out.
    struct Counting {
        inner: MemoryEngine,
        bytes_read: AtomicUsize,
    }

    impl Engine for Counting {
        fn get(&self, cf: Cf, key: &[u8]) -> tessera_storage::Result<Option<Vec<u8>>> {
            let v = self.inner.get(cf, key)?;
            let n = v.as_ref().map_or(0, Vec::len);
            self.bytes_read.fetch_add(n, Ordering::SeqCst);
            Ok(v)
        }
        fn scan(
            &self,
            cf: Cf,
            start: &[u8],
            end: Option<&[u8]>,
            visit: &mut Visitor<'_>,
        ) -> tessera_storage::Result<()> {
            self.inner.scan(cf, start, end, &mut |k, v| {
                self.bytes_read.fetch_add(v.len(), Ordering::SeqCst);
                visit(k, v)
            })
        }
        fn write(&self, batch: WriteBatch, sync: bool) -> tessera_storage::Result<()> {
            self.inner.write(batch, sync)
        }
    }

    fn entry(index: u64, term: u64, size: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![7u8; size].into(),
            ..Default::default()
        }
    }

    fn terms(log: &RaftLog, range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        range.map(|i| log.term(i).expect("term")).collect()
    }

    #[test]
    fn terms_are_answered_without_reading_entries() {
        let engine = Arc::new(Counting {
            inner: MemoryEngine::new(),
            bytes_read: AtomicUsize::new(0),
        });
        let span = (Vec::new(), vec![0xff]);
        let mut log = RaftLog::open(9, engine.clone(), span.clone()).expect("open");
        let mut batch = WriteBatch::new();
        log.stage_bootstrap(&mut batch, &ConfState::from((vec![1], vec![])))
            .expect("bootstrap");
        let big = 1 << 20;
        let first: Vec<Entry> = (6..=9).map(|i| entry(i, 6 + i / 8, big)).collect();
        log.stage_append(&mut batch, &first).expect("append");
        engine.write(batch, false).expect("write");

        engine.bytes_read.store(0, Ordering::SeqCst);
        for _ in 0..100 {
            assert_eq!(terms(&log, 5..=9), [5, 6, 6, 7, 7]);
        }
        assert_eq!(engine.bytes_read.load(Ordering::SeqCst), 0);

        // A conflicting suffix replaces entries 8.. with a later term.
        let mut batch = WriteBatch::new();
        log.stage_append(
            &mut batch,
            &[entry(8, 9, 10), entry(9, 9, 10), entry(10, 10, 10)],
        )
        .expect("append");
        engine.write(batch, false).expect("write");
        assert_eq!(terms(&log, 5..=10), [5, 6, 6, 9, 9, 10]);

        // Compaction keeps the terms of what remains.
        let mut batch = WriteBatch::new();
        log.stage_applied(&mut batch, 10);
        log.stage_compact(&mut batch, 8).expect("compact");
        engine.write(batch, false).expect("write");
        assert_eq!(terms(&log, 8..=10), [9, 9, 10]);
        assert!(log.term(7).is_err());

        // A reopened log knows the same terms.
        let reopened = RaftLog::open(9, engine.clone(), span).expect("reopen");
        assert_eq!(terms(&reopened, 8..=10), [9, 9, 10]);
        assert_eq!(reopened.last_index().expect("last"), 10);
    }
}
