//! # tessera storage
//!
//! The bottom layer of tessera: bytes on disk, and the pure functions that give those
//! bytes transactional meaning. Nothing here knows about SQL, nodes or the network.
//!
//! ```text
//!   Engine (trait)            ordered byte maps in three column families, atomic
//!     ├─ RocksEngine          write batches, optional fsync before acknowledging
//!     └─ MemoryEngine
//!   keycode                   order-preserving encoding of typed key values
//!   mvcc                      versions `key @ ts` newest first, tombstones, intents,
//!                             reads at a timestamp, span validation, GC
//!   tscache                   the timestamp cache: max read timestamp per key span
//! ```
//!
//! Invariants this crate keeps:
//! - Every engine returns identical answers for identical operations (the conformance
//!   suite in `tests/conformance.rs` runs against both).
//! - A write batch is applied atomically; with `sync = true` it is on disk when `write`
//!   returns.
//! - Encoded keys compare (memcmp) exactly as the values they encode.
//! - For a key, MVCC versions are stored newest first, and an intent (an uncommitted
//!   write) sorts before all of its key's versions.
//!
//! Deliberately left out here: Raft log storage (it arrives with replication) and
//! snapshots as SST files.

mod engine;
mod error;
pub mod keycode;
pub mod mvcc;
mod timestamp;
mod tscache;

pub use engine::{Cf, Engine, MemoryEngine, RocksEngine, Visit, Visitor, WriteBatch, WriteOp};
pub use error::{Error, Result};
pub use timestamp::Timestamp;
pub use tscache::TimestampCache;
