//! Replication: tablets as Raft groups (raft-rs), many per store, driven by one loop.
//!
//! ```text
//!   Transport ──msgs──▶ RaftStore::step ─┐
//!   timer ────────────▶ RaftStore::tick ─┤   one RawNode per tablet replica (Replica)
//!   leaseholder ──────▶ RaftStore::propose (a Command: a WriteBatch evaluated upstream)
//!                                        ▼
//!                       RaftStore::handle_ready: for every replica with a Ready
//!                         1. send the leader's messages (allowed before the fsync)
//!                         2. stage snapshot, log entries, hard state of *all* replicas
//!                            and the commands they commit in ONE WriteBatch, ONE fsync
//!                         3. send the messages that had to wait for the fsync
//!                         4. advance; apply what the light ready commits; report
//!                            applied proposals to whoever waits for them
//! ```
//!
//! Model and invariants:
//! - A replica is identified by (group id, node id); a group has at most one replica per
//!   node, so raft-rs peer ids are node ids.
//! - A [`Command`] is the *result* of evaluation: the exact writes to make. Every replica
//!   applies the same command bytes at the same log index, so replicas never diverge, and
//!   applying reads no clock and does no I/O besides the store's own write batch.
//! - The applied index is written in the same batch as the data a command writes, so
//!   after a crash a replica resumes exactly after the last applied entry (raft-rs is told
//!   it through `Config::applied`).
//! - Raft log entries, hard state, conf state and the truncation point live in the engine's
//!   `Raft` column family under the group's prefix ([`log`]); a group's data lives in its
//!   span of the `Data` column family, which is also what a snapshot carries.
//! - Nothing is acknowledged before it is applied, and nothing is applied before a quorum
//!   has fsynced it (raft-rs commits only quorum-persisted entries; this loop persists
//!   with `sync` before it reports persistence).
//! - The loop owns all replicas; time and the network come in only through `tick` and
//!   `step`, so tests drive whole clusters deterministically ([`MemNetwork`]).

pub mod balance;
mod command;
mod driver;
pub mod log;
mod proposals;
mod raft_store;
mod snapshot;
pub(crate) mod tcp;
mod transport;

pub use command::{Command, SplitTrigger};
pub use driver::{GroupReplicator, Inbox, RaftDriver, Replicators, SplitHook};
pub use raft_store::{Applied, GroupDesc, ProposeError, RaftConfig, RaftStore};
pub use tcp::{ControlHandler, KvHandler, Limits, TcpTransport};
pub use transport::{Envelope, MemNetwork, NoPeers, Transport};

/// The group of the first tablet, which spans the whole key space.
pub const FIRST_GROUP: u64 = 1;
