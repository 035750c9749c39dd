//! The world of the lease, clock and fault scenarios: three full `Store`s, each over its
//! replicas of the Raft groups on the in-memory network (one group at first, more as
//! tablets split), each with its own skewed clock over one simulated time. Raft
//! advances only when a store waits for it (a proposal to apply, a read to be
//! confirmed, an election), by stepping the whole cluster in the caller's thread; a
//! split applied on a replica adds its tablet to that node's store as the node's split
//! hook would; KV requests between nodes are direct calls; time moves only when a
//! clock is asked to sleep. The stores run no threads of their own, so a seed replays
//! exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tessera_cluster::replication::{Command, GroupDesc, ProposeError, RaftConfig, SplitTrigger};
use tessera_cluster::{
    Db, Descriptor, Error, Hlc, KvPeers, PhysicalClock, Replicator, Result, Store, StoreConfig,
    TxnOptions,
};
use tessera_storage::{Engine, Timestamp, WriteBatch};

use super::Cluster;

pub const GROUP: u64 = 1;
pub const MS: u64 = 1_000_000;
pub const MAX_OFFSET: u64 = 500 * MS;
/// Steps a store waits for Raft before it gives up (an election takes 10–20).
pub const PATIENCE: usize = 300;

/// Simulated real time, shared by every node's clock.
#[derive(Default)]
pub struct Truth(pub AtomicU64);

/// A node's physical clock: real time plus a skew. Sleeping moves real time.
pub struct SkewedClock {
    pub truth: Arc<Truth>,
    pub skew: AtomicI64,
}

impl PhysicalClock for SkewedClock {
    fn now_nanos(&self) -> u64 {
        (self.truth.0.load(Ordering::SeqCst) as i64 + self.skew.load(Ordering::SeqCst)) as u64
    }

    fn sleep_until(&self, nanos: u64) {
        // Real time that puts this clock past `nanos` (never before the epoch).
        let target = (nanos as i64 + 1 - self.skew.load(Ordering::SeqCst)).max(0) as u64;
        self.truth.0.fetch_max(target, Ordering::SeqCst);
    }
}

pub type Sim = Arc<Mutex<Cluster>>;

/// The stores of the world, into which splits are installed as their replicas apply
/// them (what a node's split hook does), each with the incarnation of its machine.
#[derive(Default)]
pub struct SimStores {
    pub stores: Mutex<BTreeMap<u64, (Weak<Store>, u64)>>,
    /// Per node, how many of its applied commands have been looked at for splits.
    seen: Mutex<BTreeMap<u64, usize>>,
    /// Per node, its command ids (shared by its groups).
    counters: Mutex<BTreeMap<u64, Arc<AtomicU64>>>,
    /// A node whose replicators, the next time they are asked, say that it leads their
    /// group whatever it does (a leader map that has not caught up yet).
    pub stale_leader: Mutex<Option<u64>>,
}

impl SimStores {
    /// Node `n`'s store, unless its machine crashed since it opened (the process is
    /// gone; its successor has not opened yet).
    pub fn live(&self, c: &Cluster, n: u64) -> Option<Arc<Store>> {
        let stores = self.stores.lock();
        let (store, incarnation) = stores.get(&n)?;
        (*incarnation == c.incarnation(n))
            .then(|| store.upgrade())
            .flatten()
    }
}

/// A node's writes to one group go through its replica in the stepped cluster.
pub struct SimReplicator {
    pub sim: Sim,
    pub node: u64,
    pub group: u64,
    /// Command ids of the node, shared by its groups.
    pub next: Arc<AtomicU64>,
    pub stores: Arc<SimStores>,
    /// The incarnation of the node's machine this replicator belongs to.
    pub incarnation: u64,
}

impl SimReplicator {
    pub fn new(sim: Sim, node: u64, group: u64, stores: Arc<SimStores>) -> SimReplicator {
        let incarnation = sim.lock().incarnation(node);
        let next = stores
            .counters
            .lock()
            .entry(node)
            .or_insert_with(|| Arc::new(AtomicU64::new(1)))
            .clone();
        SimReplicator {
            sim,
            node,
            group,
            next,
            stores,
            incarnation,
        }
    }

    /// Whether the process this replicator belongs to is gone (its machine crashed).
    fn gone(&self, c: &Cluster) -> bool {
        c.incarnation(self.node) != self.incarnation
    }

    pub fn id(&self) -> u64 {
        (self.node << 48) | self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Add to each store the tablets of the splits its replicas applied since last
    /// looked at (outside the cluster's lock: a store asks its replicators questions).
    pub fn install_splits(&self) {
        let found: Vec<(Arc<Store>, u64, GroupDesc, GroupDesc)> = {
            let c = self.sim.lock();
            let mut seen = self.stores.seen.lock();
            let mut found = Vec::new();
            for (n, applied) in &c.applied {
                let from = seen.entry(*n).or_default();
                for a in &applied[*from..] {
                    if let Some((left, right)) = &a.split {
                        // A store whose process is gone gets nothing: its successor
                        // opens with the groups its engine holds.
                        if let Some(store) = self.stores.live(&c, *n) {
                            found.push((store, *n, left.clone(), right.clone()));
                        }
                    }
                }
                *from = applied.len();
            }
            found
        };
        for (store, n, left, right) in found {
            let r = SimReplicator::new(self.sim.clone(), n, right.id, self.stores.clone());
            store.apply_split(&left, &right, Arc::new(r)).unwrap();
        }
    }

    /// Propose `cmd` in this replicator's group and step until it applies here.
    fn propose(&self, cmd: Command) -> Result<()> {
        let id = cmd.id;
        let node = self.node;
        let group = self.group;
        let applied = {
            let mut c = self.sim.lock();
            if self.gone(&c) {
                return Err(gone());
            }
            c.stores
                .get_mut(&node)
                .unwrap()
                .propose(group, &cmd)
                .map_err(not_leader)?;
            c.run_until(PATIENCE, |c| c.applied_ids(node, group).contains(&id))
        };
        self.install_splits();
        if applied {
            Ok(())
        } else {
            Err(Error::Ambiguous(format!("command {id} not applied")))
        }
    }
}

/// What a replicator of a crashed process answers (nobody hears it).
fn gone() -> Error {
    Error::Raft("the process is gone".into())
}

pub fn not_leader(e: ProposeError) -> Error {
    match e {
        ProposeError::NotLeader { leader, .. } => Error::NotLeaseholder { leader },
        other => Error::Raft(other.to_string()),
    }
}

impl Replicator for SimReplicator {
    fn replicate(&self, writes: WriteBatch) -> Result<()> {
        self.propose(Command {
            id: self.id(),
            writes,
            split: None,
        })
    }

    fn lease_term(&self) -> u64 {
        let c = self.sim.lock();
        if self.gone(&c) {
            return 0;
        }
        match c.stores[&self.node].leaseholder(self.group) {
            Some((l, term)) if l == self.node => term,
            _ => 0,
        }
    }

    fn node_id(&self) -> u64 {
        self.node
    }

    fn leader(&self) -> Option<u64> {
        let c = self.sim.lock();
        if self.gone(&c) {
            return None;
        }
        {
            let mut stale = self.stores.stale_leader.lock();
            if *stale == Some(self.node) {
                *stale = None;
                return Some(self.node);
            }
        }
        c.stores[&self.node].leaseholder(self.group).map(|(l, _)| l)
    }

    /// What the store waits for happens in simulated time: step the cluster (real time
    /// would pass with no one stepping it).
    fn wait_until(&self, _wait: std::time::Duration, done: &mut dyn FnMut() -> bool) -> bool {
        for _ in 0..PATIENCE {
            if done() {
                return true;
            }
            let mut c = self.sim.lock();
            if self.gone(&c) {
                return false;
            }
            c.step();
            drop(c);
            self.install_splits();
        }
        done()
    }

    fn split(&self, right: u64, key: &[u8], writes: WriteBatch) -> Result<()> {
        self.propose(Command {
            id: self.id(),
            writes,
            split: Some(SplitTrigger {
                right,
                key: key.to_vec(),
            }),
        })
    }

    fn replicas(&self) -> Vec<u64> {
        self.sim.lock().stores[&self.node].voters(self.group)
    }

    fn read_barrier(&self) -> Result<()> {
        let id = self.id();
        let node = self.node;
        let group = self.group;
        let confirmed = {
            let mut c = self.sim.lock();
            if self.gone(&c) {
                return Err(gone());
            }
            c.stores
                .get_mut(&node)
                .unwrap()
                .read_index(group, id)
                .map_err(not_leader)?;
            let mut confirmed = None;
            let mut done = false;
            for _ in 0..PATIENCE {
                c.step();
                let s = c.stores.get_mut(&node).unwrap();
                if let Some((_, _, index)) = s.take_read_states().into_iter().find(|r| r.1 == id) {
                    confirmed = Some(index);
                }
                if let Some(index) = confirmed {
                    if s.applied_index(group).unwrap() >= index {
                        done = true;
                        break;
                    }
                }
            }
            done
        };
        self.install_splits();
        if confirmed {
            Ok(())
        } else {
            Err(Error::Raft("no quorum confirmed the read".into()))
        }
    }
}

/// KV requests between the stores, as direct calls; a cut-off node reaches no one, nor
/// does a crashed process, and a node that crashes while it serves a request never
/// answers it.
pub struct SimPeers {
    pub sim: Sim,
    pub stores: Arc<SimStores>,
    pub cut: Mutex<BTreeSet<u64>>,
    pub from: u64,
    /// When set, how many more calls are answered before one whose answer is lost
    /// (the request is served; the caller hears that the connection broke).
    pub lose_after: Mutex<Option<usize>>,
    /// How many calls this node has made.
    pub calls: AtomicUsize,
}

impl KvPeers for SimPeers {
    fn call(&self, node: u64, message: &[u8]) -> std::io::Result<Vec<u8>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let cut = self.cut.lock();
        if cut.contains(&node) || cut.contains(&self.from) {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        drop(cut);
        let (from, to, before) = {
            let c = self.sim.lock();
            let from = self.stores.live(&c, self.from);
            (from, self.stores.live(&c, node), c.incarnation(node))
        };
        let (Some(_), Some(store)) = (from, to) else {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        };
        let answer = store.serve_remote(message);
        if self.sim.lock().incarnation(node) != before {
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        let mut lose = self.lose_after.lock();
        match *lose {
            Some(0) => {
                *lose = None;
                Err(std::io::ErrorKind::ConnectionReset.into())
            }
            Some(n) => {
                *lose = Some(n - 1);
                Ok(answer)
            }
            None => Ok(answer),
        }
    }
}

pub struct World {
    pub sim: Sim,
    pub dbs: BTreeMap<u64, Db>,
    pub peers: BTreeMap<u64, Arc<SimPeers>>,
    pub clocks: BTreeMap<u64, Arc<SkewedClock>>,
    pub stores: Arc<SimStores>,
    pub config: StoreConfig,
}

impl World {
    /// Three nodes whose clocks agree, until [`World::skew`] says otherwise.
    pub fn new(seed: u64) -> World {
        Self::with_config(seed, StoreConfig::default())
    }

    /// Like [`World::new`], every store with `config` (and the test's clock offset).
    pub fn with_config(seed: u64, config: StoreConfig) -> World {
        let whole = GroupDesc {
            id: GROUP,
            start: Vec::new(),
            end: vec![0xFF, 0xFF, 0xFF, 0xFF],
            generation: 1,
        };
        // Elections at fixed timeouts: raft-rs draws its jitter from an unseeded
        // generator, and the world must replay exactly from its seed.
        let raft = RaftConfig {
            max_election_tick: RaftConfig::default().election_tick + 1,
            ..RaftConfig::default()
        };
        let sim: Sim = Arc::new(Mutex::new(Cluster::with_config(3, vec![whole], seed, raft)));
        let truth = Arc::new(Truth(AtomicU64::new(1_000_000 * MS)));
        let config = StoreConfig {
            max_clock_offset_nanos: MAX_OFFSET,
            threads: false,
            ..config
        };
        let mut w = World {
            sim: sim.clone(),
            dbs: BTreeMap::new(),
            peers: BTreeMap::new(),
            clocks: BTreeMap::new(),
            stores: Arc::default(),
            config: config.clone(),
        };
        for n in 1..=3u64 {
            let engine: Arc<dyn Engine> = sim.lock().engines[&n].clone();
            let physical = Arc::new(SkewedClock {
                truth: truth.clone(),
                skew: AtomicI64::new(0),
            });
            w.clocks.insert(n, physical.clone());
            let clock = Arc::new(Hlc::new(physical));
            let replicator = Arc::new(SimReplicator::new(sim.clone(), n, GROUP, w.stores.clone()));
            let store =
                Store::open_replicated(engine, clock, config.clone(), Some(replicator)).unwrap();
            let peers = Arc::new(SimPeers {
                sim: sim.clone(),
                stores: w.stores.clone(),
                cut: Mutex::default(),
                from: n,
                lose_after: Mutex::default(),
                calls: AtomicUsize::new(0),
            });
            store.set_peers(peers.clone());
            w.stores
                .stores
                .lock()
                .insert(n, (Arc::downgrade(&store), 0));
            w.peers.insert(n, peers);
            w.dbs.insert(n, Db::new(store));
        }
        w
    }

    /// Set `node`'s clock `ms` milliseconds ahead of real time (behind when negative).
    pub fn skew(&self, node: u64, ms: i64) {
        self.clocks[&node]
            .skew
            .store(ms * MS as i64, Ordering::SeqCst);
    }

    /// Elect a leader and let every node learn who it is.
    pub fn leader(&self) -> u64 {
        let mut c = self.sim.lock();
        c.elect(GROUP);
        // (A lease transfer under way may still move it.)
        let agreed = |c: &Cluster| {
            let seen: BTreeSet<_> = c
                .stores
                .values()
                .map(|s| s.leaseholder(GROUP).map(|l| l.0))
                .collect();
            match seen.into_iter().collect::<Vec<_>>()[..] {
                [Some(l)] => Some(l),
                _ => None,
            }
        };
        assert!(c.run_until(PATIENCE, |c| agreed(c).is_some()));
        agreed(&c).unwrap()
    }

    /// Step until a node other than `old` serves as leaseholder; that node.
    pub fn leaseholder_besides(&self, old: u64) -> u64 {
        let mut c = self.sim.lock();
        let others: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
        let serving = |c: &Cluster| {
            others
                .iter()
                .copied()
                .find(|n| c.stores[n].leaseholder(GROUP).map(|l| l.0) == Some(*n))
        };
        assert!(c.run_until(PATIENCE, |c| serving(c).is_some()));
        serving(&c).unwrap()
    }

    /// Split the tablet holding `key` at `key`, through `node`.
    pub fn split(&self, node: u64, key: &[u8]) -> Result<()> {
        self.dbs[&node].store().split(key).map(|_| ())
    }

    /// Ask the leader of each group to hand its lease to `to`; the groups asked.
    pub fn transfer_leases(&self, to: u64) -> usize {
        let mut c = self.sim.lock();
        let groups: Vec<u64> = c.stores[&to].groups().iter().map(|g| g.id).collect();
        let mut asked = 0;
        for g in groups {
            if let Some(l) = c.leader(g).filter(|l| *l != to) {
                c.stores
                    .get_mut(&l)
                    .unwrap()
                    .transfer_leader(g, to)
                    .unwrap();
                asked += 1;
            }
        }
        asked
    }

    /// Cut `node` off from the others, in Raft and for KV requests.
    pub fn isolate(&self, node: u64) {
        let others: Vec<u64> = (1..=3).filter(|n| *n != node).collect();
        self.sim.lock().net.isolate(node, &others);
        for p in self.peers.values() {
            p.cut.lock().insert(node);
        }
    }

    /// Crash `node`'s machine and start it again: its store, Raft state and clock are
    /// gone, and its engine keeps only what was synced and the first `keep` writes
    /// after that (see [`super::TestEngine::crash`]). The node comes back with the
    /// tablets its engine recorded; transactions it coordinated are abandoned.
    pub fn restart(&mut self, node: u64, keep: usize) {
        self.sim.lock().crash_and_restart(node, keep);
        self.reopen(node);
    }

    /// Crash `node`'s machine after `steps` more steps of the cluster (in the middle of
    /// whatever runs then), its engine keeping `per_mille` of its unsynced writes.
    /// [`World::reopen_crashed`] then starts its store again.
    pub fn plan_crash(&self, node: u64, steps: usize, per_mille: usize) {
        self.sim.lock().crash_plan = Some((node, steps, per_mille));
    }

    /// How many machine crashes there have been.
    pub fn crashes(&self) -> usize {
        self.sim.lock().crashes.len()
    }

    /// Whether `node`'s machine crashed after the first `crashes` crashes.
    pub fn crashed_since(&self, crashes: usize, node: u64) -> bool {
        self.sim.lock().crashes[crashes..].contains(&node)
    }

    /// Call off a planned crash that has not happened yet.
    pub fn cancel_crash(&self) {
        self.sim.lock().crash_plan = None;
    }

    /// Open a store again on each node whose machine crashed under the one it has (its
    /// Raft state came back with the machine); those nodes.
    pub fn reopen_crashed(&mut self) -> Vec<u64> {
        let gone: Vec<u64> = {
            let c = self.sim.lock();
            (1..=3)
                .filter(|n| self.stores.live(&c, *n).is_none())
                .collect()
        };
        for n in &gone {
            self.reopen(*n);
        }
        gone
    }

    /// Open node `node`'s store over what its engine holds, after its machine crashed.
    fn reopen(&mut self, node: u64) {
        let groups = self.sim.lock().stores[&node].groups();
        let tablets = groups
            .iter()
            .map(|g| {
                let r = SimReplicator::new(self.sim.clone(), node, g.id, self.stores.clone());
                let r: Arc<dyn Replicator> = Arc::new(r);
                (Descriptor::from_group(g).expect("a descriptor"), Some(r))
            })
            .collect();
        let engine: Arc<dyn Engine> = self.sim.lock().engines[&node].clone();
        let clock = Arc::new(Hlc::new(self.clocks[&node].clone()));
        let store = Store::open_tablets(engine, clock, self.config.clone(), node, tablets)
            .expect("a restarted store opens");
        store.set_peers(self.peers[&node].clone());
        let incarnation = self.sim.lock().incarnation(node);
        self.stores
            .stores
            .lock()
            .insert(node, (Arc::downgrade(&store), incarnation));
        self.dbs.insert(node, Db::new(store));
    }

    /// How many writes since its last synced one `node`'s engine could lose.
    pub fn unsynced_writes(&self, node: u64) -> usize {
        self.sim.lock().engines[&node].unsynced_writes()
    }

    /// Lose the answer to the call from `node` after its next `after` calls.
    pub fn lose_answer(&self, node: u64, after: usize) {
        *self.peers[&node].lose_after.lock() = Some(after);
    }

    pub fn heal(&self) {
        self.sim.lock().net.heal();
        for p in self.peers.values() {
            p.cut.lock().clear();
        }
    }

    /// Read and then write `key = value` through `node` (as an UPDATE does); the
    /// commit timestamp.
    pub fn write(&self, node: u64, key: &[u8], value: &[u8]) -> Result<Timestamp> {
        let mut t = self.dbs[&node].begin(TxnOptions::default());
        t.get(key)?;
        t.put(key.to_vec(), value.to_vec())?;
        t.commit()
    }

    /// Read `key` through `node` in a transaction of its own; the value and the
    /// transaction's read timestamp.
    pub fn read(&self, node: u64, key: &[u8]) -> Result<(Option<Vec<u8>>, Timestamp)> {
        let mut t = self.dbs[&node].begin(TxnOptions::default());
        let v = t.get(key)?;
        let ts = t.read_ts();
        t.commit()?;
        Ok((v, ts))
    }
}

pub fn follower_of(leader: u64) -> u64 {
    (1..=3).find(|n| *n != leader).unwrap()
}

impl World {
    /// Move simulated real time forward by `ms` milliseconds.
    pub fn advance(&self, ms: u64) {
        self.clocks[&1].truth.0.fetch_add(ms * MS, Ordering::SeqCst);
    }
}
