//! # tessera cluster
//!
//! Everything between a SQL node and the bytes of a tablet: the hybrid logical clock,
//! the store that hosts tablets, and the KV transaction API that the query layer uses.
//!
//! ```text
//!   query ──▶ Db::begin() ──▶ Txn { get, scan, put, delete, commit, rollback }
//!                                │  buffered writes, read spans, read_ts
//!                                ▼
//!                             Store (one per node): tablets over one Engine, each
//!                             with its latches, timestamp cache, lease and GC
//! ```
//!
//! The KV API is the seam of DESIGN.md §1: query never learns where a key lives. A store
//! cuts the key space into tablets and routes each request to the one that owns its
//! keys, on this node or at the tablet's leaseholder; a commit is one fsynced batch on
//! the tablet it writes (the 1PC path of DESIGN.md §5), through that tablet's Raft group
//! when replicated. The `Txn` contract does not change with the number of tablets.

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
pub use store::tablet::{Descriptor, FIRST_RANGE};
pub use store::{RangeInfo, Replicator, Store, StoreConfig};
pub use txn::{Db, Savepoint, Txn, TxnOptions};
