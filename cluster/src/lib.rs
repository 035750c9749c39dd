//! # tessera cluster
//!
//! Everything between a SQL node and the bytes of a tablet: the hybrid logical clock,
//! the store that hosts tablets, and the KV transaction API that the query layer uses.
//!
//! ```text
//!   query ──▶ Db::begin() ──▶ Txn { get, scan, put, delete, commit, rollback }
//!                                │  buffered writes, read spans, read_ts
//!                                ▼
//!                             Store (one per node): tablets over one Engine,
//!                             timestamp cache, span latches, GC
//! ```
//!
//! The KV API is the seam of DESIGN.md §1: query never learns where a key lives. Today a
//! store holds one tablet spanning the whole key space and commits are one fsynced
//! RocksDB write batch (the one-tablet 1PC path of DESIGN.md §5). Replication replaces
//! the inside of [`Store::commit`] with a Raft proposal; the `Txn` contract does not
//! change.

mod clock;
pub mod control;
mod error;
mod frame;
mod latch;
mod node;
mod remote;
pub mod replication;
mod store;
mod txn;

pub use clock::{Hlc, ManualClock, PhysicalClock, SystemClock};
pub use error::{Error, Result};
pub use node::{ClusterNode, NodeOptions};
pub use remote::{KvPeers, PeerResolver, TcpPeers};
pub use store::{Replicator, Store, StoreConfig};
pub use txn::{Db, Savepoint, Txn, TxnOptions};
