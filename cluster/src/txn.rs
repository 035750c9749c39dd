//! The KV transaction API: the seam between query and cluster (DESIGN.md §1).
//!
//! A [`Txn`] reads a consistent snapshot at its `read_ts` with its own writes overlaid,
//! buffers writes locally, and commits serializably (DESIGN.md §5). Errors say whether a
//! retry can succeed ([`crate::Error::is_retryable`]).
//!
//! Contract, independent of where keys live:
//! - `get` / `get_many` / `scan` see the snapshot at `read_ts` plus this transaction's
//!   own writes, and remember the keys and spans they read for validation at commit.
//!   `get_many` reads many keys with one request per tablet.
//! - `put` / `delete` are buffered; past the buffer bound they go to the tablets early
//!   as intents (memory stays bounded for million-row transactions).
//! - A read that meets a write within the clock uncertainty interval (see
//!   [`crate::Store`]) restarts the transaction at the write's timestamp when it has
//!   not read or written anything yet, transparently; otherwise it fails with a
//!   retryable error.
//! - `commit` validates and makes every write visible atomically at one `commit_ts`, or
//!   fails with a conflict and leaves nothing behind. `rollback` (or dropping an open
//!   transaction) leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_storage::mvcc::TxnId;
use tessera_storage::Timestamp;

use crate::store::{Intents, Uncertainty, KEY_MAX};
use crate::{Error, Result, Store};

/// Options for a new transaction.
#[derive(Clone, Debug, Default)]
pub struct TxnOptions {}

/// Entry point of the KV API: begins transactions.
#[derive(Clone, Debug)]
pub struct Db {
    store: Arc<Store>,
}

impl Db {
    /// A KV client over a store.
    pub fn new(store: Arc<Store>) -> Self {
        Db { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Begin a transaction.
    pub fn begin(&self, _opts: TxnOptions) -> Txn {
        let (id, read_ts, uncertainty) = self.store.begin();
        Txn {
            store: self.store.clone(),
            id,
            read_ts,
            uncertainty,
            has_read: false,
            writes: BTreeMap::new(),
            write_bytes: 0,
            intents: Intents::default(),
            reads: Vec::new(),
            state: State::Open,
            confirmed: BTreeSet::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Committed,
    Aborted,
}

/// A KV transaction. See the module docs.
#[derive(Debug)]
pub struct Txn {
    store: Arc<Store>,
    id: TxnId,
    read_ts: Timestamp,
    uncertainty: Uncertainty,
    /// Whether any read has returned data to the caller (the snapshot is then fixed).
    has_read: bool,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    write_bytes: usize,
    /// What went out to the tablets before the commit.
    intents: Intents,
    reads: Vec<(Vec<u8>, Vec<u8>)>,
    state: State,
    /// The tablets that confirmed this node may read them locally (once per
    /// transaction and tablet).
    confirmed: BTreeSet<u64>,
}

/// A savepoint: the buffered state a transaction can return to.
#[derive(Clone, Debug)]
pub struct Savepoint {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    write_bytes: usize,
    flushed_len: usize,
}

impl Txn {
    /// The snapshot timestamp.
    pub fn read_ts(&self) -> Timestamp {
        self.read_ts
    }

    /// The transaction id.
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// The user key the transaction's record is anchored at, once it has one (its
    /// writes went out as intents, or it committed on several tablets).
    pub fn record_anchor(&self) -> Option<&[u8]> {
        self.intents.anchor.as_deref()
    }

    /// Whether the transaction has buffered or flushed any write.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty() || !self.intents.keys.is_empty()
    }

    fn check_open(&self) -> Result<()> {
        match self.state {
            State::Open => Ok(()),
            State::Committed => Err(Error::Finished("committed")),
            State::Aborted => Err(Error::Finished("rolled back")),
        }
    }

    /// The value of `key`, recording the read for validation.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_inner(key, true)
    }

    /// The value of `key` without recording the read. Only sound for keys that this
    /// transaction also writes before it commits: the write-write check at commit then
    /// guarantees that the key did not change since `read_ts` (an insert's uniqueness
    /// check is the use).
    pub fn get_for_write(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_inner(key, false)
    }

    fn get_inner(&mut self, key: &[u8], track: bool) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        let end = [key, &[0]].concat();
        let mut rows = self.read_store(|store, id, ts, bound, confirmed| {
            store.scan(id, ts, bound, confirmed, key, &end, 1, track)
        })?;
        if track {
            self.reads.push((key.to_vec(), end));
        }
        Ok(rows.pop().map(|(_, v)| v))
    }

    /// The value of each of `keys`, in the order given, recording every read for
    /// validation: what [`Txn::get`] answers for each, with one request per tablet
    /// instead of one per key.
    pub fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.get_many_inner(keys, true)
    }

    /// [`Txn::get_many`] without recording the reads: what [`Txn::get_for_write`]
    /// answers for each key, under the same condition (every key is written by this
    /// transaction before it commits).
    pub fn get_many_for_write(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.get_many_inner(keys, false)
    }

    fn get_many_inner(&mut self, keys: &[Vec<u8>], track: bool) -> Result<Vec<Option<Vec<u8>>>> {
        self.check_open()?;
        let missing: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !self.writes.contains_key(*k))
            .cloned()
            .collect();
        let fetched = if missing.is_empty() {
            Vec::new()
        } else {
            self.read_store(|store, id, ts, bound, confirmed| {
                store.get_many(id, ts, bound, confirmed, &missing, track)
            })?
        };
        let mut fetched = fetched.into_iter();
        let values = keys
            .iter()
            .map(|k| match self.writes.get(k) {
                Some(v) => v.clone(),
                None => fetched.next().expect("one value per key"),
            })
            .collect();
        if track {
            self.reads.extend(missing.into_iter().map(|k| {
                let end = [k.as_slice(), &[0]].concat();
                (k, end)
            }));
        }
        Ok(values)
    }

    /// Up to `limit` entries of `[start, end)` in key order (`end = None`: to the end of
    /// the key space), own writes included. Fewer than `limit` means the span is done;
    /// otherwise continue after the last key returned.
    pub fn scan(
        &mut self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_open()?;
        let end = end.unwrap_or(KEY_MAX);
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut cursor = start.to_vec();
        while out.len() < limit && cursor.as_slice() < end {
            let want = (limit - out.len()).clamp(16, 1024);
            // Each page is recorded in the timestamp cache of the node that serves it.
            let page = self.read_store(|store, id, ts, bound, confirmed| {
                store.scan(id, ts, bound, confirmed, &cursor, end, want, true)
            })?;
            let exhausted = page.len() < want;
            let hi = match (&page.last(), exhausted) {
                (Some((k, _)), false) => [k.as_slice(), &[0]].concat(),
                _ => end.to_vec(),
            };
            // Overlay buffered writes on [cursor, hi).
            let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = page.into_iter().collect();
            for (k, v) in self.writes.range(cursor.clone()..hi.clone()) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
            for (k, v) in merged {
                if out.len() >= limit {
                    break;
                }
                out.push((k, v));
            }
            if exhausted {
                break;
            }
            cursor = hi;
        }
        // The span actually read: up to the last key returned when the limit cut it.
        let read_end = match out.last() {
            Some((k, _)) if out.len() >= limit => [k.as_slice(), &[0]].concat(),
            _ => end.to_vec(),
        };
        if start < read_end.as_slice() {
            self.reads.push((start.to_vec(), read_end));
        }
        Ok(out)
    }

    /// One read at the store. A write in the uncertainty interval moves the snapshot up
    /// to it while nothing has been read or written yet (no earlier result depends on the
    /// old snapshot); after that it is a retryable error. Either way this node's clock
    /// moves past the write, so the retry's snapshot includes it: otherwise a write
    /// timestamped ahead of every clock in reach (by a previous leaseholder whose clock
    /// ran fast) would make each retry uncertain again until real time caught up.
    fn read_store<T>(
        &mut self,
        read: impl Fn(&Store, TxnId, Timestamp, &mut Uncertainty, &mut BTreeSet<u64>) -> Result<T>,
    ) -> Result<T> {
        loop {
            match read(
                &self.store,
                self.id,
                self.read_ts,
                &mut self.uncertainty,
                &mut self.confirmed,
            ) {
                Err(Error::Uncertain { ts, .. }) if !self.has_read && !self.has_writes() => {
                    self.store.clock().update(ts);
                    tracing::debug!(from = %self.read_ts, to = %ts, "restarting above an uncertain write");
                    self.store.move_read_ts(self.id, self.read_ts, ts);
                    self.read_ts = ts;
                }
                Ok(answer) => {
                    self.has_read = true;
                    return Ok(answer);
                }
                Err(e) => {
                    if let Error::Uncertain { ts, .. } = &e {
                        self.store.clock().update(*ts);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Buffer a write of `value` at `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.write(key, Some(value))
    }

    /// Buffer a delete of `key`.
    pub fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.write(key, None)
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        self.check_open()?;
        self.write_bytes += key.len() + value.as_ref().map_or(0, |v| v.len()) + 32;
        self.writes.insert(key, value);
        if self.write_bytes > self.store.config().write_buffer_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Send buffered writes to the tablets as intents.
    fn flush(&mut self) -> Result<()> {
        let writes = std::mem::take(&mut self.writes);
        self.write_bytes = 0;
        self.store
            .flush_intents(self.id, self.read_ts, &writes, &mut self.intents)
    }

    /// A point to roll back to with [`Txn::rollback_to`].
    pub fn savepoint(&mut self) -> Result<Savepoint> {
        self.check_open()?;
        Ok(Savepoint {
            writes: self.writes.clone(),
            write_bytes: self.write_bytes,
            flushed_len: self.intents.keys.len(),
        })
    }

    /// Undo every write made since `sp`. Writes already flushed as intents cannot be
    /// undone individually: rolling back past a flush is refused as not supported.
    pub fn rollback_to(&mut self, sp: &Savepoint) -> Result<bool> {
        self.check_open()?;
        if self.intents.keys.len() != sp.flushed_len {
            return Ok(false);
        }
        self.writes = sp.writes.clone();
        self.write_bytes = sp.write_bytes;
        Ok(true)
    }

    /// Validate and commit; returns the commit timestamp. On error the transaction is
    /// rolled back, except when the outcome is unknown (`Ambiguous`): then nothing is
    /// undone, since the commit may have taken effect.
    pub fn commit(&mut self) -> Result<Timestamp> {
        self.check_open()?;
        let result = self.store.commit(
            self.id,
            self.read_ts,
            &self.reads,
            &self.writes,
            &mut self.intents,
        );
        match result {
            Ok(ts) => {
                self.state = State::Committed;
                self.store.end(self.id, self.read_ts);
                Ok(ts)
            }
            // The commit may have happened: leave everything as it is (a rollback could
            // undo a committed transaction).
            Err(e @ Error::Ambiguous(_)) => {
                self.state = State::Aborted;
                self.writes.clear();
                self.store.end(self.id, self.read_ts);
                Err(e)
            }
            Err(e) => {
                let _ = self.rollback();
                Err(e)
            }
        }
    }

    /// Discard every write.
    pub fn rollback(&mut self) -> Result<()> {
        if self.state != State::Open {
            return Ok(());
        }
        self.state = State::Aborted;
        self.writes.clear();
        self.store.end(self.id, self.read_ts);
        self.store
            .abort(self.id, &std::mem::take(&mut self.intents))
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if self.state == State::Open {
            if let Err(e) = self.rollback() {
                tracing::warn!(error = %e, "rollback of a dropped transaction failed");
            }
        }
    }
}
