//! Running a [`RaftStore`] on its own thread, and writing through it.
//!
//! The driver thread owns the `RaftStore`. Everything else talks to it through a channel:
//! proposals (with a reply channel), messages from peers, questions about leadership.
//! It ticks on a fixed interval, batches whatever arrived since the last cycle into one
//! Ready cycle (one fsync), and answers each proposal once its command is applied here.
//!
//! A proposal's outcome is exact: applied (`Ok`), definitely not committed because another
//! entry took its log position after a leadership change (a retryable conflict), or
//! unknown when no answer came in time or a snapshot replaced the log past it
//! (`Ambiguous`, SQLSTATE 40003); see [`super::proposals`]. When the driver itself
//! fails (the store cannot write), every waiting proposal is ambiguous and the driver
//! stops; [`RaftDriver::failure`] says why, so that the node stops serving.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tessera_storage::WriteBatch;

use super::command::{Command, SplitTrigger};
use super::proposals::{first_command_id, Outcome, Position, Proposals};
use super::raft_store::{GroupDesc, ProposeError, RaftStore};
use super::transport::Envelope;
use crate::store::Replicator;
use crate::{Error, Result};

enum Input {
    Propose {
        group: u64,
        cmd: Command,
        reply: mpsc::Sender<Result<()>>,
    },
    Message(Envelope),
    ReadBarrier {
        group: u64,
        reply: mpsc::Sender<Result<()>>,
    },
    IsLeader(u64, mpsc::Sender<bool>),
    Voters(u64, mpsc::Sender<Vec<u64>>),
    AddMember {
        group: u64,
        node: u64,
    },
    Stop,
}

/// Who leads each group, as the driver last saw it: group -> (leader node, term).
pub type Leaders = Arc<RwLock<HashMap<u64, (u64, u64)>>>;

/// What is told of every split applied here: the parent's new descriptor and the new
/// group's. Called on the driver thread before the split's proposer hears back.
pub type SplitHook = Box<dyn Fn(&GroupDesc, &GroupDesc) + Send>;

/// The splits applied before anyone listened, and the listener once there is one.
#[derive(Default)]
struct Splits {
    queued: Vec<(GroupDesc, GroupDesc)>,
    hook: Option<SplitHook>,
}

impl Splits {
    fn applied(&mut self, left: &GroupDesc, right: &GroupDesc) {
        match &self.hook {
            Some(hook) => hook(left, right),
            None => self.queued.push((left.clone(), right.clone())),
        }
    }
}

/// A handle on the driver thread. Dropping it stops the thread.
pub struct RaftDriver {
    tx: mpsc::Sender<Input>,
    thread: Option<JoinHandle<()>>,
    node_id: u64,
    leaders: Leaders,
    /// The next command id, shared by the replicators of every group this driver runs
    /// (proposals wait by command id).
    next_id: Arc<AtomicU64>,
    /// Why the driver thread stopped on its own, once it has.
    failure: Failure,
    splits: Arc<parking_lot::Mutex<Splits>>,
}

/// Why a driver stopped serving, once it has: the store could not persist.
type Failure = Arc<RwLock<Option<String>>>;

/// Delivers messages from peers to a driver; cheap to clone (transports hold one).
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Input>,
}

impl Inbox {
    /// Hand a message from a peer to the driver.
    pub fn deliver(&self, env: Envelope) {
        let _ = self.tx.send(Input::Message(env));
    }
}

impl RaftDriver {
    /// Start the driver thread over `store`, ticking every `tick`.
    pub fn start(mut store: RaftStore, tick: Duration) -> RaftDriver {
        let (tx, rx) = mpsc::channel::<Input>();
        let node_id = store.node_id();
        let leaders: Leaders = Arc::default();
        let published = leaders.clone();
        let failure: Failure = Arc::default();
        let failed = failure.clone();
        let splits: Arc<parking_lot::Mutex<Splits>> = Arc::default();
        let split_hook = splits.clone();
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", store.node_id()))
            .spawn(move || {
                let mut waiters: Proposals<mpsc::Sender<Result<()>>> = Proposals::default();
                // Reads waiting for confirmation, by request id, with when they were asked.
                let mut reads: HashMap<u64, (mpsc::Sender<Result<()>>, Instant)> = HashMap::new();
                // Confirmed reads waiting for the replica to apply up to their index.
                let mut confirmed: Vec<(u64, u64, mpsc::Sender<Result<()>>)> = Vec::new();
                let mut next_read: u64 = 1;
                // Members to add (as learners, then voters once caught up).
                let mut wanted: BTreeSet<(u64, u64)> = BTreeSet::new();
                let mut next_tick = Instant::now() + tick;
                let mut next_balance = Instant::now() + BALANCE_INTERVAL;
                loop {
                    let wait = next_tick.saturating_duration_since(Instant::now());
                    let first = match rx.recv_timeout(wait) {
                        Ok(i) => Some(i),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    let mut stop = false;
                    for input in first.into_iter().chain(rx.try_iter()) {
                        match input {
                            Input::Propose { group, cmd, reply } => {
                                let id = cmd.id;
                                match store.propose(group, &cmd) {
                                    Ok(()) => {
                                        let at = Position {
                                            group,
                                            index: store.last_index(group).unwrap_or(0),
                                            term: store.term(group).unwrap_or(0),
                                        };
                                        waiters.insert(id, at, reply);
                                    }
                                    Err(e) => {
                                        let _ = reply.send(Err(propose_error(e)));
                                    }
                                }
                            }
                            Input::Message(env) => store.step(env),
                            Input::ReadBarrier { group, reply } => {
                                let id = next_read;
                                next_read += 1;
                                match store.read_index(group, id) {
                                    Ok(()) => {
                                        reads.insert(id, (reply, Instant::now()));
                                    }
                                    Err(e) => {
                                        let _ = reply.send(Err(propose_error(e)));
                                    }
                                }
                            }
                            Input::IsLeader(group, reply) => {
                                let _ = reply.send(store.is_leader(group));
                            }
                            Input::Voters(group, reply) => {
                                let _ = reply.send(store.voters(group));
                            }
                            Input::AddMember { group, node } => {
                                wanted.insert((group, node));
                            }
                            Input::Stop => stop = true,
                        }
                    }
                    if stop {
                        break;
                    }
                    if Instant::now() >= next_tick {
                        store.tick();
                        next_tick = Instant::now() + tick;
                        wanted.retain(|&(group, node)| grow(&mut store, group, node));
                        if Instant::now() >= next_balance {
                            next_balance = Instant::now() + BALANCE_INTERVAL;
                            balance_leases(&mut store);
                        }
                    }
                    let result = store.handle_ready();
                    // Publish leadership only when it changed: readers take this lock
                    // on every KV operation.
                    let now: HashMap<u64, (u64, u64)> = store.leaders().collect();
                    if *published.read() != now {
                        *published.write() = now;
                    }
                    match result {
                        Ok(applied) => {
                            for a in &applied {
                                if let Some((left, right)) = &a.split {
                                    split_hook.lock().applied(left, right);
                                }
                            }
                            for a in applied {
                                if let Some(reply) = waiters.applied(a.id) {
                                    let _ = reply.send(Ok(()));
                                }
                            }
                            // Applied past a proposal's index without reporting it: the
                            // log says whether another entry took the index.
                            let settled = waiters.settle(
                                |g| store.applied_index(g).unwrap_or(0),
                                |g, i| store.entry_term(g, i),
                            );
                            for (reply, outcome) in settled {
                                let _ = reply.send(match outcome {
                                    Outcome::Applied => Ok(()),
                                    Outcome::Lost => Err(Error::Conflict {
                                        key: Vec::new(),
                                        reason: "the proposal was lost in a leadership change"
                                            .into(),
                                    }),
                                    Outcome::Ambiguous => Err(Error::Ambiguous(
                                        "a snapshot replaced the log past the proposal".into(),
                                    )),
                                });
                            }
                            for (group, id, index) in store.take_read_states() {
                                if let Some((reply, _)) = reads.remove(&id) {
                                    confirmed.push((group, index, reply));
                                }
                            }
                            confirmed.retain(|(group, index, reply)| {
                                let done = store.applied_index(*group).unwrap_or(0) >= *index;
                                if done {
                                    let _ = reply.send(Ok(()));
                                }
                                !done
                            });
                            // Without a leader a read request is dropped: give up on it.
                            reads.retain(|_, (reply, asked)| {
                                let expired = asked.elapsed() > READ_TIMEOUT;
                                if expired {
                                    let _ = reply.send(Err(no_leader()));
                                }
                                !expired
                            });
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "raft store failed; stopping replication");
                            // Fail-stop: nothing may be served from state that could not
                            // be written. Leadership is withdrawn before any waiter hears.
                            *failed.write() = Some(e.to_string());
                            published.write().clear();
                            for (_, (reply, _)) in reads.drain() {
                                let _ = reply.send(Err(Error::Raft(e.to_string())));
                            }
                            for reply in waiters.drain() {
                                let _ = reply.send(Err(Error::Ambiguous(e.to_string())));
                            }
                            break;
                        }
                    }
                }
            })
            .expect("spawn raft driver thread");
        let boot_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        RaftDriver {
            tx,
            thread: Some(thread),
            node_id,
            leaders,
            next_id: Arc::new(AtomicU64::new(first_command_id(node_id, boot_micros))),
            failure,
            splits,
        }
    }

    /// Tell `hook` of every split applied on this node: first of those applied so far,
    /// then of each one as it applies.
    pub fn on_split(&self, hook: SplitHook) {
        let mut splits = self.splits.lock();
        for (left, right) in std::mem::take(&mut splits.queued) {
            hook(&left, &right);
        }
        splits.hook = Some(hook);
    }

    /// Why the driver stopped, if it stopped on its own (the store could not persist):
    /// the node must then stop serving and restart from what is on disk.
    pub fn failure(&self) -> Option<String> {
        self.failure.read().clone()
    }

    /// The leader of `group` as last seen, if any.
    pub fn leader_of(&self, group: u64) -> Option<u64> {
        self.leaders.read().get(&group).map(|(l, _)| *l)
    }

    /// Make `node` a voting member of `group`: it is added as a learner, and promoted once
    /// it has caught up. Only acted on while this node leads the group.
    pub fn add_member(&self, group: u64, node: u64) {
        let _ = self.tx.send(Input::AddMember { group, node });
    }

    /// Where peers' messages go.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            tx: self.tx.clone(),
        }
    }

    /// Whether this node leads `group`.
    pub fn is_leader(&self, group: u64) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Input::IsLeader(group, tx)).is_err() {
            return false;
        }
        rx.recv_timeout(Duration::from_secs(5)).unwrap_or(false)
    }

    /// Wait until this node leads `group`, up to `timeout`.
    pub fn wait_leader(&self, group: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.leader_of(group) == Some(self.node_id) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A writer that replicates batches through `group`.
    pub fn replicator(&self, group: u64, timeout: Duration) -> GroupReplicator {
        self.replicators(timeout).group(group)
    }

    /// What makes writers for any group of this driver (held by whoever learns of
    /// groups later, such as the receiver of splits, without holding the driver).
    pub fn replicators(&self, timeout: Duration) -> Replicators {
        Replicators {
            tx: self.tx.clone(),
            next_id: self.next_id.clone(),
            failure: self.failure.clone(),
            timeout,
            node_id: self.node_id,
            leaders: self.leaders.clone(),
        }
    }
}

/// Makes [`GroupReplicator`]s of one driver.
#[derive(Clone)]
pub struct Replicators {
    tx: mpsc::Sender<Input>,
    next_id: Arc<AtomicU64>,
    failure: Failure,
    timeout: Duration,
    node_id: u64,
    leaders: Leaders,
}

impl Replicators {
    /// A writer that replicates batches through `group`.
    pub fn group(&self, group: u64) -> GroupReplicator {
        GroupReplicator {
            tx: parking_lot::Mutex::new(self.tx.clone()),
            group,
            next_id: self.next_id.clone(),
            failure: self.failure.clone(),
            timeout: self.timeout,
            node_id: self.node_id,
            leaders: self.leaders.clone(),
        }
    }
}

impl Drop for RaftDriver {
    fn drop(&mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One step towards `node` being a voter of `group` (leader only, one configuration
/// change at a time). Returns whether there is more to do.
/// How often a node considers handing one of its leases to a node with fewer
/// ([`super::balance`]).
const BALANCE_INTERVAL: Duration = Duration::from_secs(2);

/// Hand one lease of this node to a caught-up voter with at least two fewer, if any.
fn balance_leases(store: &mut RaftStore) {
    let me = store.node_id();
    let leaders: std::collections::BTreeMap<u64, u64> = store
        .leaders()
        .map(|(g, (leader, _))| (g, leader))
        .collect();
    let caught_up = |g: u64| -> Vec<u64> {
        if store.has_pending_conf(g) {
            return Vec::new();
        }
        let committed = store.commit_index(g).unwrap_or(u64::MAX);
        store
            .voters(g)
            .into_iter()
            .filter(|n| store.matched(g, *n).is_some_and(|m| m >= committed))
            .collect()
    };
    if let Some((group, to)) = super::balance::lease_to_move(me, &leaders, &caught_up) {
        tracing::info!(group, to, "handing a lease to a node that holds fewer");
        if let Err(e) = store.transfer_leader(group, to) {
            tracing::debug!(group, error = %e, "a lease transfer failed");
        }
    }
}

fn grow(store: &mut RaftStore, group: u64, node: u64) -> bool {
    if store.voters(group).contains(&node) {
        return false;
    }
    if !store.is_leader(group) || store.has_pending_conf(group) {
        return true;
    }
    let learner = store.learners(group).contains(&node);
    let kind = if !learner {
        ConfChangeType::AddLearnerNode
    } else if store.matched(group, node).unwrap_or(0) >= store.commit_index(group).unwrap_or(0) {
        ConfChangeType::AddNode
    } else {
        return true; // still catching up
    };
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = node;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    if let Err(e) = store.propose_conf_change(group, cc) {
        tracing::debug!(group, node, error = %e, "membership change not proposed yet");
    } else {
        tracing::info!(group, node, change = ?kind, "membership change proposed");
    }
    true
}

/// How long a read waits for the group to confirm its leader.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

fn no_leader() -> Error {
    Error::Raft("no leader confirmed the read in time (the tablet is unavailable)".into())
}

fn propose_error(e: ProposeError) -> Error {
    match e {
        // Nothing was proposed: safe to retry once a leader is known.
        ProposeError::NotLeader { .. } | ProposeError::Dropped(_) => Error::Conflict {
            key: Vec::new(),
            reason: format!("{e}; retry"),
        },
        ProposeError::UnknownGroup(_) | ProposeError::TooLarge { .. } => Error::Raft(e.to_string()),
    }
}

/// Writes a store's batches through one Raft group and waits until they are applied.
pub struct GroupReplicator {
    tx: parking_lot::Mutex<mpsc::Sender<Input>>,
    group: u64,
    next_id: Arc<AtomicU64>,
    failure: Failure,
    timeout: Duration,
    node_id: u64,
    leaders: Leaders,
}

impl GroupReplicator {
    /// Refuse to serve unless this node leads the group and its driver runs.
    fn check_leader(&self) -> Result<()> {
        if let Some(why) = self.failure.read().as_ref() {
            return Err(Error::Raft(format!("replication has stopped: {why}")));
        }
        match self.leaders.read().get(&self.group) {
            Some((l, _)) if *l == self.node_id => Ok(()),
            Some((l, _)) => Err(Error::NotLeaseholder { leader: Some(*l) }),
            None => Err(Error::NotLeaseholder { leader: None }),
        }
    }
}

impl Replicator for GroupReplicator {
    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn leader(&self) -> Option<u64> {
        self.leaders.read().get(&self.group).map(|(l, _)| *l)
    }

    fn replicas(&self) -> Vec<u64> {
        let (reply, rx) = mpsc::channel();
        if self
            .tx
            .lock()
            .send(Input::Voters(self.group, reply))
            .is_err()
        {
            return Vec::new();
        }
        rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
    }

    fn lease_term(&self) -> u64 {
        match self.leaders.read().get(&self.group) {
            Some((l, term)) if *l == self.node_id => *term,
            _ => 0,
        }
    }

    fn read_barrier(&self) -> Result<()> {
        self.check_leader()?;
        let (reply, rx) = mpsc::channel();
        self.tx
            .lock()
            .send(Input::ReadBarrier {
                group: self.group,
                reply,
            })
            .map_err(|_| Error::Raft("the replication thread has stopped".into()))?;
        rx.recv_timeout(READ_TIMEOUT + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(no_leader()))
    }

    fn replicate(&self, writes: WriteBatch) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        self.propose(writes, None)
    }

    fn split(&self, right: u64, key: &[u8], writes: WriteBatch) -> Result<()> {
        let trigger = SplitTrigger {
            right,
            key: key.to_vec(),
        };
        self.propose(writes, Some(trigger))
    }
}

impl GroupReplicator {
    /// Propose a command and wait until it is applied here; see [`Replicator::replicate`].
    fn propose(&self, writes: WriteBatch, split: Option<SplitTrigger>) -> Result<()> {
        self.check_leader()?;
        let term = self.lease_term();
        let cmd = Command {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            writes,
            split,
        };
        let (reply, rx) = mpsc::channel();
        self.tx
            .lock()
            .send(Input::Propose {
                group: self.group,
                cmd,
                reply,
            })
            .map_err(|_| Error::Raft("the replication thread has stopped".into()))?;
        // Past the timeout the proposal may still apply, and the caller's latches must
        // stay held while it can: otherwise later commits would validate against state
        // without it. So the answer is awaited for as long as this node leads the group
        // in the term it proposed in (a leader cut off from its quorum steps down within
        // an election timeout); once that lease is gone, nothing this node serves can be
        // validated before the proposal's fate is settled (a new leaseholder applies the
        // old term's log before it serves), and the outcome is reported unknown.
        let deadline = Instant::now() + self.timeout;
        let mut warned = false;
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            match rx.recv_timeout(wait) {
                Ok(r) => return r,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Ambiguous(
                        "the replication thread stopped before the proposal was settled".into(),
                    ))
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.lease_term() != term || self.failure.read().is_some() {
                        return Err(Error::Ambiguous(format!(
                            "no answer from group {} within {:?}, and the lease was lost",
                            self.group, self.timeout
                        )));
                    }
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            group = self.group,
                            timeout = ?self.timeout,
                            "a proposal is still unanswered; waiting while this node holds the lease"
                        );
                    }
                }
            }
        }
    }
}
