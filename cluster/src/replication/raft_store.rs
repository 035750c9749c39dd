//! The per-store Raft driver: every tablet replica of a node, one Ready cycle for all.
//!
//! The driver is synchronous and single-threaded by design; the node runs it on its own
//! thread (or a test calls it step by step). A failed engine write is fatal for the store:
//! the in-memory log view already moved on, so the node must stop and recover from disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use tessera_storage::{Cf, Engine, Visit, WriteBatch};

use super::command::Command;
use super::log::RaftLog;
use super::snapshot::{self, Incoming, Outgoing, Received};
use super::transport::{Envelope, Transport};
use crate::{Error, Result};

/// Timing and size settings of every group on a store.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// Ticks without a leader's heartbeat before a follower campaigns.
    pub election_tick: usize,
    /// A follower campaigns after a random number of ticks in
    /// `[election_tick, max_election_tick)`; 0: twice `election_tick`. Deterministic
    /// simulations set `election_tick + 1` (raft-rs draws from an unseeded generator).
    pub max_election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Largest append message, in bytes.
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// Largest command a proposal may carry, in bytes.
    pub max_command_bytes: usize,
    /// Applied entries kept in a log before it is truncated (a replica further behind
    /// catches up from a snapshot).
    pub log_keep_entries: u64,
    /// Bytes of data per snapshot chunk (one message).
    pub snapshot_chunk_bytes: usize,
    /// Snapshot chunks sent per tick to each follower being caught up: with the chunk
    /// size and the tick, the rate at which a snapshot streams.
    pub snapshot_chunks_per_tick: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_tick: 10,
            max_election_tick: 0,
            heartbeat_tick: 2,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_command_bytes: 16 << 20,
            log_keep_entries: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_chunks_per_tick: 4,
        }
    }
}

/// A group (tablet) as the store knows it: its id, data span (engine keys of the
/// `Data` column family) and generation (bumped by every split).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDesc {
    /// The group id.
    pub id: u64,
    /// First key of the group's data span.
    pub start: Vec<u8>,
    /// End (exclusive) of the group's data span.
    pub end: Vec<u8>,
    /// 1 for a new group; every split of it adds one.
    pub generation: u64,
}

impl GroupDesc {
    fn registry_key(id: u64) -> Vec<u8> {
        let mut k = b"g".to_vec();
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    /// `[1] generation: u64 BE, start length: u32 BE, start, end`. (The first form had
    /// no version byte and no generation; its first byte, the top of a length, is 0.)
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1];
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&(self.start.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.start);
        out.extend_from_slice(&self.end);
        out
    }

    fn decode(id: u64, b: &[u8]) -> Result<Self> {
        let bad = || Error::Storage(tessera_storage::Error::Corrupt("group descriptor".into()));
        let (generation, b) = match b.first() {
            Some(1) => {
                let g = b.get(1..9).ok_or_else(bad)?;
                (u64::from_be_bytes(g.try_into().expect("8")), &b[9..])
            }
            Some(0) => (1, b),
            _ => return Err(bad()),
        };
        let n = u32::from_be_bytes(b.get(..4).ok_or_else(bad)?.try_into().expect("4")) as usize;
        let start = b.get(4..4 + n).ok_or_else(bad)?.to_vec();
        let end = b[4 + n..].to_vec();
        Ok(GroupDesc {
            id,
            start,
            end,
            generation,
        })
    }
}

/// A command that has been applied on this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The group.
    pub group: u64,
    /// The log index it was applied at.
    pub index: u64,
    /// The proposer's id of the command.
    pub id: u64,
    /// For a split: the group's new descriptor and the new group's.
    pub split: Option<(GroupDesc, GroupDesc)>,
}

/// Why a proposal was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader of group {group} (leader: {leader:?})")]
    NotLeader {
        /// The group.
        group: u64,
        /// The leader this replica knows of.
        leader: Option<u64>,
    },
    /// The group has no replica on this store.
    #[error("group {0} has no replica here")]
    UnknownGroup(u64),
    /// The command is over the size bound.
    #[error("command of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// The command's size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// raft-rs refused the proposal (e.g. a leadership transfer is in progress).
    #[error("proposal dropped: {0}")]
    Dropped(String),
}

struct Replica {
    desc: GroupDesc,
    node: RawNode<RaftLog>,
}

/// All Raft replicas of one store.
pub struct RaftStore {
    node_id: u64,
    engine: Arc<dyn Engine>,
    transport: Arc<dyn Transport>,
    cfg: RaftConfig,
    replicas: BTreeMap<u64, Replica>,
    logger: slog::Logger,
    /// Confirmed read requests: (group, request id, log index to apply before reading).
    read_states: Vec<(u64, u64, u64)>,
    /// Read requests held back until their leader has committed an entry of its term
    /// (raft-rs drops a ReadIndex asked earlier): (group, request id).
    held_reads: Vec<(u64, u64)>,
    /// Snapshots this store is streaming to followers.
    outgoing: Vec<Outgoing>,
    /// Snapshot streams arriving here, by group.
    incoming: BTreeMap<u64, Incoming>,
}

fn raft_err(e: raft::Error) -> Error {
    Error::Raft(e.to_string())
}

impl RaftStore {
    /// Open the store's replicas as they were persisted.
    pub fn open(
        node_id: u64,
        engine: Arc<dyn Engine>,
        transport: Arc<dyn Transport>,
        cfg: RaftConfig,
    ) -> Result<Self> {
        let mut store = RaftStore {
            node_id,
            engine,
            transport,
            cfg,
            replicas: BTreeMap::new(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            read_states: Vec::new(),
            held_reads: Vec::new(),
            outgoing: Vec::new(),
            incoming: BTreeMap::new(),
        };
        let mut descs = Vec::new();
        store.engine.scan(
            Cf::Local,
            &GroupDesc::registry_key(0),
            Some(&GroupDesc::registry_key(u64::MAX)),
            &mut |k, v| {
                let id = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
                descs.push((id, v.to_vec()));
                Ok(Visit::Continue)
            },
        )?;
        for (id, v) in descs {
            let desc = GroupDesc::decode(id, &v)?;
            store.start_replica(desc)?;
        }
        Ok(store)
    }

    /// This store's node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The engine under the store.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    fn start_replica(&mut self, desc: GroupDesc) -> Result<()> {
        snapshot::recover(
            &*self.engine,
            desc.id,
            &(desc.start.clone(), desc.end.clone()),
        )?;
        let log = RaftLog::open(
            desc.id,
            self.engine.clone(),
            (desc.start.clone(), desc.end.clone()),
        )?;
        let config = raft::Config {
            id: self.node_id,
            election_tick: self.cfg.election_tick,
            max_election_tick: self.cfg.max_election_tick,
            heartbeat_tick: self.cfg.heartbeat_tick,
            applied: log.applied(),
            max_size_per_msg: self.cfg.max_size_per_msg,
            max_inflight_msgs: self.cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        config.validate().map_err(raft_err)?;
        let node = RawNode::new(&config, log, &self.logger).map_err(raft_err)?;
        tracing::debug!(group = desc.id, node = self.node_id, "replica started");
        self.replicas.insert(desc.id, Replica { desc, node });
        Ok(())
    }

    /// Create a replica of a group. With `voters`, the group is bootstrapped with that
    /// configuration (every initial voter must be created with the same list); with an
    /// empty list the replica starts empty and waits for the leader's snapshot (a new
    /// member being added).
    pub fn create_group(&mut self, desc: GroupDesc, voters: &[u64]) -> Result<()> {
        if self.replicas.contains_key(&desc.id) {
            return Err(Error::Raft(format!(
                "group {} already has a replica on node {}",
                desc.id, self.node_id
            )));
        }
        let mut batch = WriteBatch::new();
        batch.put(Cf::Local, GroupDesc::registry_key(desc.id), desc.encode());
        let mut log = RaftLog::open(
            desc.id,
            self.engine.clone(),
            (desc.start.clone(), desc.end.clone()),
        )?;
        if !voters.is_empty() {
            let cs = ConfState::from((voters.to_vec(), vec![]));
            log.stage_bootstrap(&mut batch, &cs)?;
        }
        self.engine.write(batch, true)?;
        self.start_replica(desc)
    }

    /// Advance every replica's logical clock by one tick, and send the next chunks of
    /// the snapshots being streamed.
    pub fn tick(&mut self) {
        for r in self.replicas.values_mut() {
            r.node.tick();
        }
        self.stream_snapshots();
    }

    /// Send up to `snapshot_chunks_per_tick` chunks of every outgoing snapshot; a stream
    /// whose last chunk is out is reported to raft-rs as finished.
    fn stream_snapshots(&mut self) {
        let mut out = Vec::new();
        let (chunk, per_tick) = (
            self.cfg.snapshot_chunk_bytes,
            self.cfg.snapshot_chunks_per_tick,
        );
        let engine = self.engine.clone();
        let replicas = &mut self.replicas;
        self.outgoing.retain_mut(|o| {
            let Some(r) = replicas.get_mut(&o.group) else {
                return false;
            };
            if r.node.raft.state != StateRole::Leader {
                return false;
            }
            for _ in 0..per_tick.max(1) {
                match o.next_chunk(&*engine, &r.desc.end, chunk) {
                    Ok(msg) => out.push(Envelope { group: o.group, msg }),
                    Err(e) => {
                        tracing::warn!(group = o.group, to = o.to, error = %e, "snapshot stream failed");
                        r.node.report_snapshot(o.to, SnapshotStatus::Failure);
                        return false;
                    }
                }
                if o.is_done() {
                    r.node.report_snapshot(o.to, SnapshotStatus::Finish);
                    return false;
                }
            }
            true
        });
        if !out.is_empty() {
            self.transport.send(out);
        }
    }

    /// Take the snapshots raft-rs wants sent out of `msgs`: they are streamed in chunks.
    fn divert_snapshots(&mut self, msgs: &mut Vec<Envelope>) {
        let mut i = 0;
        while i < msgs.len() {
            if !snapshot::is_to_stream(&msgs[i].msg) {
                i += 1;
                continue;
            }
            let env = msgs.remove(i);
            let Some(r) = self.replicas.get(&env.group) else {
                continue;
            };
            tracing::info!(
                group = env.group,
                to = env.msg.to,
                index = env.msg.get_snapshot().get_metadata().index,
                "streaming a snapshot"
            );
            let o = Outgoing::new(env.group, env.msg, &r.desc.start);
            self.outgoing.retain(|x| (x.group, x.to) != (o.group, o.to));
            self.outgoing.push(o);
        }
    }

    /// Hand a message from a peer to its replica. Messages for unknown groups are
    /// dropped (the sender retries; a replica may not exist here yet).
    pub fn step(&mut self, env: Envelope) {
        let Some(r) = self.replicas.get_mut(&env.group) else {
            tracing::debug!(group = env.group, "message for unknown group dropped");
            return;
        };
        let mut msg = env.msg;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        if snapshot {
            if !snapshot::is_chunk(&msg) {
                tracing::warn!(
                    group = env.group,
                    "snapshot message that is not a chunk dropped"
                );
                return;
            }
            let span = (r.desc.start.clone(), r.desc.end.clone());
            let incoming = self.incoming.entry(env.group).or_default();
            match incoming.receive(&*self.engine, env.group, &span, msg) {
                Ok(Received::Pending) => return,
                Ok(Received::Complete(m)) => msg = m,
                Err(e) => {
                    tracing::warn!(group = env.group, error = %e, "snapshot stream dropped");
                    return;
                }
            }
        }
        if let Err(e) = r.node.step(msg) {
            tracing::debug!(group = env.group, error = %e, "message dropped");
        }
        // raft-rs declines a snapshot it no longer needs: drop what was staged for it.
        if snapshot && r.node.raft.raft_log.unstable.snapshot.is_none() {
            let incoming = self.incoming.entry(env.group).or_default();
            if let Err(e) = incoming.finish(&*self.engine, env.group, false) {
                tracing::warn!(group = env.group, error = %e, "dropping a staged snapshot failed");
            }
        }
    }

    /// Start an election for `group` on this replica.
    pub fn campaign(&mut self, group: u64) -> Result<()> {
        let r = self
            .replicas
            .get_mut(&group)
            .ok_or_else(|| Error::Raft(format!("group {group} has no replica here")))?;
        r.node.campaign().map_err(raft_err)
    }

    /// Ask this replica, the leader of `group`, to hand leadership to `to` (ignored
    /// when it does not lead; the transfer is abandoned after an election timeout).
    pub fn transfer_leader(&mut self, group: u64, to: u64) -> Result<()> {
        let r = self
            .replicas
            .get_mut(&group)
            .ok_or_else(|| Error::Raft(format!("group {group} has no replica here")))?;
        r.node.transfer_leader(to);
        Ok(())
    }

    /// The leader of `group` as this replica knows it.
    pub fn leader(&self, group: u64) -> Option<u64> {
        let r = self.replicas.get(&group)?;
        let id = r.node.raft.leader_id;
        (id != 0).then_some(id)
    }

    /// Where requests for `group` should go, as this replica knows it: the leader and
    /// its term. This replica names itself only once it has applied an entry of its own
    /// term: a new leader's log holds entries of earlier terms that a quorum acknowledged
    /// but that it learns are committed only when its own first entry commits, so until
    /// it has applied that far its state may lack acknowledged writes, and it serves
    /// neither reads nor commits (it names no leader, which callers retry).
    pub fn leaseholder(&self, group: u64) -> Option<(u64, u64)> {
        let r = self.replicas.get(&group)?;
        let raft = &r.node.raft;
        let l = raft.leader_id;
        if l == 0 {
            return None;
        }
        if l == self.node_id {
            let applied = r.node.store().applied();
            if raft.state != StateRole::Leader || raft.raft_log.term(applied) != Ok(raft.term) {
                return None;
            }
        }
        Some((l, raft.term))
    }

    /// Every group with a [`RaftStore::leaseholder`]: (group, (leader, term)).
    pub fn leaders(&self) -> impl Iterator<Item = (u64, (u64, u64))> + '_ {
        self.replicas
            .keys()
            .filter_map(|&g| self.leaseholder(g).map(|l| (g, l)))
    }

    /// Whether this replica leads `group`.
    pub fn is_leader(&self, group: u64) -> bool {
        self.replicas
            .get(&group)
            .is_some_and(|r| r.node.raft.state == StateRole::Leader)
    }

    /// The index of the last command applied by this replica.
    pub fn applied_index(&self, group: u64) -> Option<u64> {
        self.replicas.get(&group).map(|r| r.node.store().applied())
    }

    /// The term of the entry at `index` in this replica's log, or `None` when the log
    /// no longer holds it (truncated; a snapshot stands for it).
    pub fn entry_term(&self, group: u64, index: u64) -> Option<u64> {
        let log = &self.replicas.get(&group)?.node.raft.raft_log;
        if index + 1 < log.first_index() || index > log.last_index() {
            return None;
        }
        log.term(index).ok()
    }

    /// The index of the last entry in this replica's log (stable or not).
    pub fn last_index(&self, group: u64) -> Option<u64> {
        self.replicas
            .get(&group)
            .map(|r| r.node.raft.raft_log.last_index())
    }

    /// The index up to which this replica's log is truncated.
    pub fn truncated_index(&self, group: u64) -> Option<u64> {
        self.replicas
            .get(&group)
            .map(|r| r.node.store().truncated_index())
    }

    /// The voters of `group` as this replica knows them.
    pub fn voters(&self, group: u64) -> Vec<u64> {
        self.replicas
            .get(&group)
            .map(|r| r.node.store().conf_state().voters.clone())
            .unwrap_or_default()
    }

    /// The learners of `group` as this replica knows them.
    pub fn learners(&self, group: u64) -> Vec<u64> {
        self.replicas
            .get(&group)
            .map(|r| r.node.store().conf_state().learners.clone())
            .unwrap_or_default()
    }

    /// The leader's view of how far `node` has replicated `group`'s log.
    pub fn matched(&self, group: u64, node: u64) -> Option<u64> {
        let r = self.replicas.get(&group)?;
        r.node.raft.prs().get(node).map(|p| p.matched)
    }

    /// The commit index of `group` here.
    pub fn commit_index(&self, group: u64) -> Option<u64> {
        self.replicas
            .get(&group)
            .map(|r| r.node.raft.raft_log.committed)
    }

    /// The current Raft term of `group` here.
    pub fn term(&self, group: u64) -> Option<u64> {
        self.replicas.get(&group).map(|r| r.node.raft.term)
    }

    /// Whether a configuration change of `group` is proposed and not yet applied.
    pub fn has_pending_conf(&self, group: u64) -> bool {
        self.replicas
            .get(&group)
            .is_some_and(|r| r.node.raft.has_pending_conf())
    }

    /// Whether `group` is in a joint configuration (a multi-member change under way).
    pub fn in_joint(&self, group: u64) -> bool {
        self.replicas
            .get(&group)
            .is_some_and(|r| !r.node.store().conf_state().voters_outgoing.is_empty())
    }

    /// The groups with a replica here.
    pub fn groups(&self) -> Vec<GroupDesc> {
        self.replicas.values().map(|r| r.desc.clone()).collect()
    }

    /// The replica of `group` if it leads the group.
    fn leader_replica(&mut self, group: u64) -> std::result::Result<&mut Replica, ProposeError> {
        let r = self
            .replicas
            .get_mut(&group)
            .ok_or(ProposeError::UnknownGroup(group))?;
        if r.node.raft.state != StateRole::Leader {
            let id = r.node.raft.leader_id;
            return Err(ProposeError::NotLeader {
                group,
                leader: (id != 0).then_some(id),
            });
        }
        Ok(r)
    }

    /// Propose a command; it is applied (and reported by [`RaftStore::handle_ready`]) once
    /// a quorum has it.
    pub fn propose(&mut self, group: u64, cmd: &Command) -> std::result::Result<(), ProposeError> {
        let limit = self.cfg.max_command_bytes;
        let r = self.leader_replica(group)?;
        let data = cmd.encode();
        if data.len() > limit {
            return Err(ProposeError::TooLarge {
                size: data.len(),
                limit,
            });
        }
        r.node
            .propose(vec![], data)
            .map_err(|e| ProposeError::Dropped(e.to_string()))
    }

    /// Propose a membership change of `group` (several changes at once use joint
    /// consensus). Only the leader accepts it.
    pub fn propose_conf_change(
        &mut self,
        group: u64,
        cc: ConfChangeV2,
    ) -> std::result::Result<(), ProposeError> {
        let r = self.leader_replica(group)?;
        r.node
            .propose_conf_change(vec![], cc)
            .map_err(|e| ProposeError::Dropped(e.to_string()))
    }

    /// Ask the group to confirm a read (Raft's ReadIndex): once a quorum confirms that the
    /// leader is still the leader, [`RaftStore::take_read_states`] returns `id` with the
    /// log index this replica must have applied before it reads. Works on followers too
    /// (the leader answers through them); with no leader the request is dropped. A new
    /// leader holds the request until it has committed an entry of its own term.
    pub fn read_index(&mut self, group: u64, id: u64) -> std::result::Result<(), ProposeError> {
        let r = self
            .replicas
            .get_mut(&group)
            .ok_or(ProposeError::UnknownGroup(group))?;
        if r.node.raft.state == StateRole::Leader && !r.node.raft.commit_to_current_term() {
            self.held_reads.push((group, id));
        } else {
            r.node.read_index(id.to_be_bytes().to_vec());
        }
        Ok(())
    }

    /// Ask again for held reads whose leader is now able to answer (or that lost its
    /// leadership: the request then goes to the new leader, or is dropped).
    fn release_held_reads(&mut self) {
        let replicas = &mut self.replicas;
        self.held_reads.retain(|(group, id)| {
            let Some(r) = replicas.get_mut(group) else {
                return false;
            };
            if r.node.raft.state == StateRole::Leader && !r.node.raft.commit_to_current_term() {
                return true;
            }
            r.node.read_index(id.to_be_bytes().to_vec());
            false
        });
    }

    /// Reads confirmed since the last call: (group, request id, index to apply first).
    pub fn take_read_states(&mut self) -> Vec<(u64, u64, u64)> {
        std::mem::take(&mut self.read_states)
    }

    /// Truncate `group`'s log up to `index` (bounded by what is applied here).
    pub fn compact(&mut self, group: u64, index: u64) -> Result<()> {
        let r = self
            .replicas
            .get_mut(&group)
            .ok_or_else(|| Error::Raft(format!("group {group} has no replica here")))?;
        let mut batch = WriteBatch::new();
        r.node.mut_store().stage_compact(&mut batch, index)?;
        if !batch.is_empty() {
            self.engine.write(batch, true)?;
        }
        Ok(())
    }

    /// Run one Ready cycle for every replica that has work: persist all of it with one
    /// fsync, send messages, apply committed entries. Returns the commands applied.
    pub fn handle_ready(&mut self) -> Result<Vec<Applied>> {
        self.release_held_reads();
        let mut batch = WriteBatch::new();
        let mut readies = Vec::new();
        let mut early = Vec::new();
        let mut applied = Vec::new();
        let mut created = Created {
            engine: self.engine.clone(),
            known: self.replicas.keys().copied().collect(),
            new: Vec::new(),
        };
        for (&group, r) in self.replicas.iter_mut() {
            if !r.node.has_ready() {
                continue;
            }
            let mut rd = r.node.ready();
            wrap(group, rd.take_messages(), &mut early);
            for rs in rd.take_read_states() {
                if let Ok(id) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                    self.read_states
                        .push((group, u64::from_be_bytes(id), rs.index));
                }
            }
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                if snap.get_data() != snapshot::STAGED {
                    return Err(Error::Raft(format!(
                        "group {group}: a snapshot to install that was not staged"
                    )));
                }
                // Durably drop the old data and log and set the marker, copy the staged
                // chunks in, and clear the marker with this cycle's fsync.
                let span = (r.desc.start.clone(), r.desc.end.clone());
                let mut first = WriteBatch::new();
                snapshot::stage_install(&mut first, group, &span);
                r.node.mut_store().stage_snapshot(&mut first, &snap)?;
                self.engine.write(first, true)?;
                let pairs = snapshot::copy_staged(&*self.engine, group, &span)?;
                snapshot::stage_cleanup(&mut batch, group);
                self.incoming.remove(&group);
                tracing::info!(
                    group,
                    index = snap.get_metadata().index,
                    pairs,
                    "installed a snapshot"
                );
            }
            apply(
                group,
                r,
                rd.take_committed_entries(),
                &mut batch,
                &mut applied,
                &mut created,
            )?;
            r.node.mut_store().stage_append(&mut batch, rd.entries())?;
            if let Some(hs) = rd.hs() {
                let hs = hs.clone();
                r.node.mut_store().stage_hard_state(&mut batch, &hs)?;
            }
            readies.push((group, rd));
        }
        if readies.is_empty() {
            return Ok(applied);
        }
        self.divert_snapshots(&mut early);
        // A leader may send its appends before its own fsync (Raft allows it).
        self.transport.send(early);
        if !batch.is_empty() {
            self.engine.write(batch, true)?;
        }
        let mut later = Vec::new();
        let mut batch = WriteBatch::new();
        for (group, mut rd) in readies {
            let r = self.replicas.get_mut(&group).expect("replica");
            wrap(group, rd.take_persisted_messages(), &mut later);
            let mut light = r.node.advance(rd);
            if let Some(commit) = light.commit_index() {
                r.node.mut_store().stage_commit(&mut batch, commit)?;
            }
            wrap(group, light.take_messages(), &mut later);
            apply(
                group,
                r,
                light.take_committed_entries(),
                &mut batch,
                &mut applied,
                &mut created,
            )?;
            r.node.advance_apply();
        }
        // Truncate logs that keep more applied entries than configured, but never past a
        // snapshot being streamed: its follower continues from the log after it.
        let keep = self.cfg.log_keep_entries;
        for (group, r) in self.replicas.iter_mut() {
            let log = r.node.store();
            if log.applied() > log.truncated_index() + 2 * keep {
                let streaming = self.outgoing.iter().filter(|o| o.group == *group);
                let upto = streaming
                    .map(|o| o.index)
                    .fold(log.applied() - keep, u64::min);
                r.node.mut_store().stage_compact(&mut batch, upto)?;
            }
        }
        if !batch.is_empty() {
            // Everything here is recoverable from the fsynced log: no sync needed.
            self.engine.write(batch, false)?;
        }
        // The groups splits created have their state written: start them, and campaign
        // where this node led the parent, so the lease usually stays here.
        for (desc, campaign) in created.new {
            let id = desc.id;
            self.start_replica(desc)?;
            if campaign {
                self.campaign(id)?;
            }
        }
        self.divert_snapshots(&mut later);
        self.transport.send(later);
        Ok(applied)
    }
}

/// Groups that splits created during a Ready cycle: started (and, where this node led
/// the parent, campaigned for) once the cycle's batches are written.
struct Created {
    engine: Arc<dyn Engine>,
    /// Groups that exist here, including the ones created this cycle.
    known: std::collections::BTreeSet<u64>,
    /// New groups, and whether this node led the parent.
    new: Vec<(GroupDesc, bool)>,
}

/// Apply a split of `r`'s group at a user key: the group's span ends where the new
/// group's begins; the new group's descriptor and its initial Raft state (the parent's
/// configuration) go in the same batch as the parent's applied index, so a crash keeps
/// both or neither. The data stays where it is. A split key outside the span makes the
/// split a no-op on every replica alike (they all hold the same descriptor at this
/// index); a new group this store already has is never created twice. Returns the new
/// descriptors of both sides.
fn split(
    r: &mut Replica,
    trigger: &super::command::SplitTrigger,
    batch: &mut WriteBatch,
    created: &mut Created,
) -> Result<Option<(GroupDesc, GroupDesc)>> {
    let at = tessera_storage::mvcc::intent_key(&trigger.key);
    if at <= r.desc.start || at >= r.desc.end || created.known.contains(&trigger.right) {
        tracing::warn!(
            group = r.desc.id,
            right = trigger.right,
            "split outside the group's span or onto a group in use ignored"
        );
        return Ok(None);
    }
    let right = GroupDesc {
        id: trigger.right,
        start: at.clone(),
        end: r.desc.end.clone(),
        generation: 1,
    };
    let left = GroupDesc {
        id: r.desc.id,
        start: r.desc.start.clone(),
        end: at,
        generation: r.desc.generation + 1,
    };
    batch.put(Cf::Local, GroupDesc::registry_key(left.id), left.encode());
    batch.put(Cf::Local, GroupDesc::registry_key(right.id), right.encode());
    let mut log = RaftLog::open(
        right.id,
        created.engine.clone(),
        (right.start.clone(), right.end.clone()),
    )?;
    let cs = r.node.store().conf_state().clone();
    log.stage_bootstrap(batch, &cs)?;
    r.desc = left.clone();
    created.known.insert(right.id);
    let leads = r.node.raft.state == StateRole::Leader;
    created.new.push((right.clone(), leads));
    tracing::info!(left = left.id, right = right.id, "split a group");
    Ok(Some((left, right)))
}

fn wrap(group: u64, msgs: Vec<Message>, out: &mut Vec<Envelope>) {
    out.extend(msgs.into_iter().map(|msg| Envelope { group, msg }));
}

/// Apply committed entries: commands write their batch, configuration changes update
/// the conf state, splits cut the group (see [`split`]); the applied index goes in the
/// same batch.
fn apply(
    group: u64,
    r: &mut Replica,
    entries: Vec<Entry>,
    batch: &mut WriteBatch,
    applied: &mut Vec<Applied>,
    created: &mut Created,
) -> Result<()> {
    let Some(last) = entries.last().map(|e| e.index) else {
        return Ok(());
    };
    for e in entries {
        match e.get_entry_type() {
            // A new leader's empty entry. (An empty *configuration* change is not empty
            // in meaning: it leaves a joint configuration.)
            EntryType::EntryNormal if e.data.is_empty() => {}
            EntryType::EntryNormal => {
                let cmd = Command::decode(&e.data)?;
                batch.append(cmd.writes);
                let split = match &cmd.split {
                    Some(trigger) => split(r, trigger, batch, created)?,
                    None => None,
                };
                applied.push(Applied {
                    group,
                    index: e.index,
                    id: cmd.id,
                    split,
                });
            }
            EntryType::EntryConfChange => {
                let cc = ConfChange::parse_from_bytes(&e.data)
                    .map_err(|e| Error::Storage(tessera_storage::Error::Corrupt(e.to_string())))?;
                let cs = r.node.apply_conf_change(&cc).map_err(raft_err)?;
                r.node.mut_store().stage_conf_state(batch, &cs)?;
            }
            EntryType::EntryConfChangeV2 => {
                let cc = ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|e| Error::Storage(tessera_storage::Error::Corrupt(e.to_string())))?;
                let cs = r.node.apply_conf_change(&cc).map_err(raft_err)?;
                r.node.mut_store().stage_conf_state(batch, &cs)?;
            }
        }
    }
    r.node.mut_store().stage_applied(batch, last);
    Ok(())
}
