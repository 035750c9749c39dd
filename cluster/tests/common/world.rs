//! The world of the lease and clock scenarios: three full `Store`s, each over its
//! replica of one Raft group on the in-memory network, each with its own skewed clock
//! over one simulated time. Raft advances only when a store waits for it (a proposal
//! to apply, a read to be confirmed), by stepping the whole cluster in the caller's
//! thread; KV requests between nodes are direct calls; time moves only when a clock is
//! asked to sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tessera_cluster::replication::{Command, GroupDesc, ProposeError, RaftConfig};
use tessera_cluster::{
    Db, Error, Hlc, KvPeers, PhysicalClock, Replicator, Result, Store, StoreConfig, TxnOptions,
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
        let target = (nanos as i64 + 1 - self.skew.load(Ordering::SeqCst)) as u64;
        self.truth.0.fetch_max(target, Ordering::SeqCst);
    }
}

pub type Sim = Arc<Mutex<Cluster>>;

/// A node's writes go through its replica in the stepped cluster.
pub struct SimReplicator {
    pub sim: Sim,
    pub node: u64,
    pub next: AtomicU64,
}

impl SimReplicator {
    pub fn id(&self) -> u64 {
        (self.node << 48) | self.next.fetch_add(1, Ordering::Relaxed)
    }
}

pub fn not_leader(e: ProposeError) -> Error {
    match e {
        ProposeError::NotLeader { leader, .. } => Error::NotLeaseholder { leader },
        other => Error::Raft(other.to_string()),
    }
}

impl Replicator for SimReplicator {
    fn replicate(&self, writes: WriteBatch) -> Result<()> {
        let id = self.id();
        let mut c = self.sim.lock();
        c.stores
            .get_mut(&self.node)
            .unwrap()
            .propose(
                GROUP,
                &Command {
                    id,
                    writes,
                    split: None,
                },
            )
            .map_err(not_leader)?;
        let node = self.node;
        if c.run_until(PATIENCE, |c| c.applied_ids(node, GROUP).contains(&id)) {
            Ok(())
        } else {
            Err(Error::Ambiguous(format!("command {id} not applied")))
        }
    }

    fn lease_term(&self) -> u64 {
        match self.sim.lock().stores[&self.node].leaseholder(GROUP) {
            Some((l, term)) if l == self.node => term,
            _ => 0,
        }
    }

    fn node_id(&self) -> u64 {
        self.node
    }

    fn leader(&self) -> Option<u64> {
        self.sim.lock().stores[&self.node]
            .leaseholder(GROUP)
            .map(|(l, _)| l)
    }

    fn split(&self, _right: u64, _key: &[u8], _writes: WriteBatch) -> Result<()> {
        Err(tessera_cluster::Error::Unsupported(
            "splits in the simulation".into(),
        ))
    }

    fn replicas(&self) -> Vec<u64> {
        self.sim.lock().stores[&self.node].voters(GROUP)
    }

    fn read_barrier(&self) -> Result<()> {
        let id = self.id();
        let mut c = self.sim.lock();
        c.stores
            .get_mut(&self.node)
            .unwrap()
            .read_index(GROUP, id)
            .map_err(not_leader)?;
        let mut confirmed = None;
        for _ in 0..PATIENCE {
            c.step();
            let s = c.stores.get_mut(&self.node).unwrap();
            if let Some((_, _, index)) = s.take_read_states().into_iter().find(|r| r.1 == id) {
                confirmed = Some(index);
            }
            if let Some(index) = confirmed {
                if s.applied_index(GROUP).unwrap() >= index {
                    return Ok(());
                }
            }
        }
        Err(Error::Raft("no quorum confirmed the read".into()))
    }
}

/// KV requests between the stores, as direct calls; a cut-off node reaches no one.
#[derive(Default)]
pub struct SimPeers {
    pub stores: Mutex<BTreeMap<u64, Weak<Store>>>,
    pub cut: Mutex<BTreeSet<u64>>,
    pub from: u64,
}

impl KvPeers for SimPeers {
    fn call(&self, node: u64, message: &[u8]) -> std::io::Result<Vec<u8>> {
        let cut = self.cut.lock();
        if cut.contains(&node) || cut.contains(&self.from) {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        drop(cut);
        let store = self.stores.lock()[&node].upgrade().unwrap();
        Ok(store.serve_remote(message))
    }
}

pub struct World {
    pub sim: Sim,
    pub dbs: BTreeMap<u64, Db>,
    pub peers: BTreeMap<u64, Arc<SimPeers>>,
    pub clocks: BTreeMap<u64, Arc<SkewedClock>>,
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
            ..config
        };
        let mut w = World {
            sim: sim.clone(),
            dbs: BTreeMap::new(),
            peers: BTreeMap::new(),
            clocks: BTreeMap::new(),
        };
        let mut all = Vec::new();
        for n in 1..=3u64 {
            let engine: Arc<dyn Engine> = sim.lock().engines[&n].clone();
            let physical = Arc::new(SkewedClock {
                truth: truth.clone(),
                skew: AtomicI64::new(0),
            });
            w.clocks.insert(n, physical.clone());
            let clock = Arc::new(Hlc::new(physical));
            let replicator = Arc::new(SimReplicator {
                sim: sim.clone(),
                node: n,
                next: AtomicU64::new(1),
            });
            let store =
                Store::open_replicated(engine, clock, config.clone(), Some(replicator)).unwrap();
            let peers = Arc::new(SimPeers {
                from: n,
                ..SimPeers::default()
            });
            store.set_peers(peers.clone());
            all.push((n, Arc::downgrade(&store)));
            w.peers.insert(n, peers);
            w.dbs.insert(n, Db::new(store));
        }
        for p in w.peers.values() {
            p.stores.lock().extend(all.iter().cloned());
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
        let leader = c.elect(GROUP);
        assert!(c.run_until(PATIENCE, |c| c
            .stores
            .values()
            .all(|s| s.leaseholder(GROUP).map(|l| l.0) == Some(leader))));
        leader
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

    /// Cut `node` off from the others, in Raft and for KV requests.
    pub fn isolate(&self, node: u64) {
        let others: Vec<u64> = (1..=3).filter(|n| *n != node).collect();
        self.sim.lock().net.isolate(node, &others);
        for p in self.peers.values() {
            p.cut.lock().insert(node);
        }
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
