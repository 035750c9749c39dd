//! The `Engine` trait: an ordered byte map in a few column families with atomic,
//! optionally fsynced write batches.
//!
//! Two implementations answer identically (see `tests/conformance.rs`):
//! [`RocksEngine`], which is what a node runs, and [`MemoryEngine`], for deterministic
//! tests of the layers above. Scans take a visitor rather than returning an iterator so
//! that no borrow of the engine escapes a call; callers page through large spans by
//! resuming after the last key they saw.

mod memory;
mod rocks;

pub use memory::MemoryEngine;
pub use rocks::RocksEngine;

use crate::Result;

/// A column family: an independent key space within one engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// MVCC-encoded table and metadata keys.
    Data,
    /// Raft log entries and hard state.
    Raft,
    /// Node- and tablet-local state: identity, transaction records.
    Local,
}

impl Cf {
    /// Every column family, in a fixed order.
    pub const ALL: [Cf; 3] = [Cf::Data, Cf::Raft, Cf::Local];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Data => "data",
            Cf::Raft => "raft",
            Cf::Local => "local",
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete { cf: Cf, key: Vec<u8> },
    /// Remove every key in `[start, end)`.
    DeleteRange {
        cf: Cf,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Writes applied atomically by [`Engine::write`], in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a put.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.bytes += key.len() + value.len();
        self.ops.push(WriteOp::Put { cf, key, value });
    }

    /// Queue a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += key.len();
        self.ops.push(WriteOp::Delete { cf, key });
    }

    /// Queue the deletion of `[start, end)`.
    pub fn delete_range(&mut self, cf: Cf, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        let (start, end) = (start.into(), end.into());
        self.bytes += start.len() + end.len();
        self.ops.push(WriteOp::DeleteRange { cf, start, end });
    }

    /// The queued operations.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Number of queued operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate payload size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Move every operation of `other` to the end of this batch.
    pub fn append(&mut self, other: WriteBatch) {
        self.bytes += other.bytes;
        self.ops.extend(other.ops);
    }
}

/// What a scan visitor tells the scan to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// Go on with the next key.
    Continue,
    /// Stop the scan.
    Stop,
}

/// The callback of [`Engine::scan`]: called with each key and value in order.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Visit> + 'a;

/// An ordered key-value store with column families.
pub trait Engine: Send + Sync + 'static {
    /// The value stored at `key`, if any.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visit the keys in `[start, end)` in ascending order (`end = None`: to the end).
    fn scan(&self, cf: Cf, start: &[u8], end: Option<&[u8]>, visit: &mut Visitor<'_>)
        -> Result<()>;

    /// Apply a batch atomically. With `sync`, the batch is durable when this returns.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;
}
