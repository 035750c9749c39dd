//! A whole cluster of `RaftStore`s in one process on the in-memory network, driven step
//! by step (deliver, tick, handle ready): the scaffolding of the deterministic scenarios.
//! A step is one tick on every live node; with the default configuration an election
//! takes 10–20 steps.
#![allow(dead_code)]

// The list-append checker is shared with the process-level tests.
#[path = "../../../tests/src/history.rs"]
pub mod history;
pub mod world;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;

use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, MessageType};
use tessera_cluster::replication::{
    Applied, Command, GroupDesc, MemNetwork, ProposeError, RaftConfig, RaftStore,
};
use tessera_storage::{Cf, Engine, MemoryEngine, Visit, Visitor, WriteBatch, WriteOp};

/// A memory engine with fault and pause hooks: writes of table data can be made to
/// fail, as a broken disk's would (the store must stop, and recover from what it wrote
/// before); so can unsynced writes alone (what follows a commit point); a write can be
/// held in flight while another thread runs, and scans can be watched. A crash of the
/// machine can be staged: it keeps what was written up to the last synced write and
/// any prefix of the writes after it, as a write-ahead log that was not fsynced may.
#[derive(Default)]
pub struct TestEngine {
    inner: MemoryEngine,
    /// For each write since the last synced one, in order, what it overwrote: the
    /// earlier value (or absence) of every key it touched, in the order it touched
    /// them. A synced write makes every earlier write durable and clears this.
    unsynced: Mutex<Vec<Undo>>,
    failing: AtomicBool,
    fail_unsynced: AtomicBool,
    /// When set, how many more writes of data succeed before every later one fails.
    fail_after: Mutex<Option<usize>>,
    /// When set, the next write of data waits for the receiver's signal; the sender
    /// half tells the test that the write has begun.
    pause_next_write: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// When set, signalled on every scan of data.
    on_scan: Mutex<Option<mpsc::Sender<()>>>,
}

impl TestEngine {
    /// Fail (or stop failing) every write that puts a key of the `Data` column family.
    pub fn fail_data_writes(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
        *self.fail_after.lock() = None;
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Let the next `n` writes of data succeed and fail every one after them, until
    /// [`Self::fail_data_writes`]`(false)`.
    pub fn fail_data_writes_after(&self, n: usize) {
        *self.fail_after.lock() = Some(n);
    }

    /// Fail (or stop failing) every unsynced write.
    pub fn fail_unsynced_writes(&self, on: bool) {
        self.fail_unsynced.store(on, Ordering::SeqCst);
    }

    /// Hold the next write of data until `resume` receives; `started` hears when it
    /// begins.
    pub fn pause_next_write(&self, started: mpsc::Sender<()>, resume: mpsc::Receiver<()>) {
        *self.pause_next_write.lock() = Some((started, resume));
    }

    /// Signal `watcher` on every scan of data (`None`: stop).
    pub fn watch_scans(&self, watcher: Option<mpsc::Sender<()>>) {
        *self.on_scan.lock() = watcher;
    }

    /// How many writes since the last synced one a crash could lose.
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.lock().len()
    }

    /// Crash the machine: the engine keeps what was durable and the first `keep` of
    /// the writes since (a write-ahead log loses a suffix), and loses the rest. What
    /// survived is durable when the machine comes back.
    pub fn crash(&self, keep: usize) {
        let mut unsynced = self.unsynced.lock();
        let kept = keep.min(unsynced.len());
        let lost = unsynced.len() - kept;
        for undo in unsynced.drain(kept..).rev() {
            let mut b = WriteBatch::new();
            for (cf, key, old) in undo.into_iter().rev() {
                match old {
                    Some(v) => b.put(cf, key, v),
                    None => b.delete(cf, key),
                }
            }
            self.inner.write(b, true).expect("memory engine");
        }
        unsynced.clear();
        tracing::info!(lost, "engine crashed");
    }

    /// What `batch` would overwrite, key by key in its order.
    fn undo_of(&self, batch: &WriteBatch) -> tessera_storage::Result<Undo> {
        let mut undo = Vec::new();
        for op in batch.ops() {
            match op {
                WriteOp::Put { cf, key, .. } | WriteOp::Delete { cf, key } => {
                    undo.push((*cf, key.clone(), self.inner.get(*cf, key)?));
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    self.inner.scan(*cf, start, Some(end), &mut |k, v| {
                        undo.push((*cf, k.to_vec(), Some(v.to_vec())));
                        Ok(Visit::Continue)
                    })?;
                }
            }
        }
        Ok(undo)
    }
}

/// The earlier state of the keys one write touched: `(cf, key, old value)`.
type Undo = Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>;

impl Engine for TestEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> tessera_storage::Result<Option<Vec<u8>>> {
        self.inner.get(cf, key)
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> tessera_storage::Result<()> {
        if cf == Cf::Data {
            if let Some(tx) = self.on_scan.lock().as_ref() {
                let _ = tx.send(());
            }
        }
        self.inner.scan(cf, start, end, visit)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> tessera_storage::Result<()> {
        let data_put = |op: &WriteOp| matches!(op, WriteOp::Put { cf: Cf::Data, .. });
        let data = batch.ops().iter().any(data_put);
        if data {
            let mut after = self.fail_after.lock();
            match *after {
                Some(0) => self.failing.store(true, Ordering::SeqCst),
                Some(n) => *after = Some(n - 1),
                None => {}
            }
        }
        if self.is_failing() && data {
            return Err(tessera_storage::Error::Engine(
                "injected write failure".into(),
            ));
        }
        if data {
            let pause = self.pause_next_write.lock().take();
            if let Some((started, resume)) = pause {
                let _ = started.send(());
                let _ = resume.recv();
            }
        }
        if !sync && self.fail_unsynced.load(Ordering::SeqCst) {
            return Err(tessera_storage::Error::Engine(
                "injected failure of an unsynced write".into(),
            ));
        }
        // Keep the order of writes as the engine saw them.
        let mut unsynced = self.unsynced.lock();
        if sync {
            self.inner.write(batch, sync)?;
            unsynced.clear();
        } else {
            let undo = self.undo_of(&batch)?;
            self.inner.write(batch, sync)?;
            unsynced.push(undo);
        }
        Ok(())
    }
}

pub struct Cluster {
    pub net: MemNetwork,
    pub engines: BTreeMap<u64, Arc<TestEngine>>,
    pub stores: BTreeMap<u64, RaftStore>,
    pub applied: BTreeMap<u64, Vec<Applied>>,
    pub cfg: RaftConfig,
    /// Size of the data of every snapshot message delivered, in order.
    pub snapshot_messages: Vec<usize>,
    /// Nodes stopped because a write their engine was told to fail failed.
    pub crashed: Vec<u64>,
    /// Per node, how many times its machine crashed: what was made for an earlier
    /// incarnation belongs to a process that is gone.
    pub incarnations: BTreeMap<u64, u64>,
    /// Machines crashed and restarted so far, in order.
    pub crashes: Vec<u64>,
    /// A crash to come: the node, after how many more steps, and the share (per mille)
    /// of its engine's unsynced writes that survive.
    pub crash_plan: Option<(u64, usize, usize)>,
}

pub fn group(id: u64) -> GroupDesc {
    GroupDesc {
        id,
        start: vec![id as u8],
        end: vec![id as u8 + 1],
        generation: 1,
    }
}

pub fn key(g: u64, i: u64) -> Vec<u8> {
    let mut k = vec![g as u8];
    k.extend_from_slice(format!("key{i:04}").as_bytes());
    k
}

pub fn put_cmd(g: u64, i: u64) -> Command {
    let mut writes = WriteBatch::new();
    writes.put(Cf::Data, key(g, i), format!("value{i}").into_bytes());
    Command {
        id: i,
        writes,
        split: None,
    }
}

impl Cluster {
    /// `nodes` nodes, each with a replica of every group in `groups` (all voters).
    pub fn new(nodes: u64, groups: &[u64], seed: u64) -> Self {
        Self::with_groups(nodes, groups.iter().map(|g| group(*g)).collect(), seed)
    }

    /// `nodes` nodes, each with a replica of every group described (all voters).
    pub fn with_groups(nodes: u64, groups: Vec<GroupDesc>, seed: u64) -> Self {
        Self::with_config(nodes, groups, seed, RaftConfig::default())
    }

    /// Like [`Cluster::with_groups`], with the given Raft settings on every store.
    pub fn with_config(nodes: u64, groups: Vec<GroupDesc>, seed: u64, cfg: RaftConfig) -> Self {
        let net = MemNetwork::new(seed);
        let mut c = Cluster {
            net,
            engines: BTreeMap::new(),
            stores: BTreeMap::new(),
            applied: BTreeMap::new(),
            cfg,
            snapshot_messages: Vec::new(),
            crashed: Vec::new(),
            incarnations: BTreeMap::new(),
            crashes: Vec::new(),
            crash_plan: None,
        };
        let voters: Vec<u64> = (1..=nodes).collect();
        for n in 1..=nodes {
            c.add_node(n);
            for g in &groups {
                c.stores
                    .get_mut(&n)
                    .unwrap()
                    .create_group(g.clone(), &voters)
                    .unwrap();
            }
        }
        c
    }

    pub fn add_node(&mut self, n: u64) {
        let engine = Arc::new(TestEngine::default());
        self.engines.insert(n, engine);
        self.start(n);
    }

    pub fn start(&mut self, n: u64) {
        let engine: Arc<dyn Engine> = self.engines[&n].clone();
        let store = RaftStore::open(n, engine, self.net.transport(), self.cfg.clone()).unwrap();
        self.stores.insert(n, store);
    }

    /// Crash a node: its process state is gone, its engine stays.
    pub fn stop(&mut self, n: u64) {
        self.stores.remove(&n);
    }

    /// Crash node `n`'s machine, keeping the first `keep` of its engine's unsynced
    /// writes, and start it again from what its engine kept.
    pub fn crash_and_restart(&mut self, n: u64, keep: usize) {
        self.stop(n);
        self.engines[&n].crash(keep);
        *self.incarnations.entry(n).or_default() += 1;
        self.crashes.push(n);
        self.start(n);
    }

    /// How many times node `n`'s machine crashed.
    pub fn incarnation(&self, n: u64) -> u64 {
        self.incarnations.get(&n).copied().unwrap_or(0)
    }

    pub fn step(&mut self) {
        match self.crash_plan.take() {
            Some((n, 0, per_mille)) => {
                let keep = self.engines[&n].unsynced_writes() * per_mille / 1000;
                self.crash_and_restart(n, keep);
            }
            Some((n, left, per_mille)) => self.crash_plan = Some((n, left - 1, per_mille)),
            None => {}
        }
        let nodes: Vec<u64> = self.engines.keys().copied().collect();
        for n in nodes {
            self.step_node(n);
        }
    }

    /// One step of node `n` alone: deliver what waits for it, tick, handle its ready.
    pub fn step_node(&mut self, n: u64) {
        let msgs = self.net.take(n);
        let Some(store) = self.stores.get_mut(&n) else {
            return; // a down node loses what was sent to it
        };
        for m in msgs {
            if m.msg.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshot_messages
                    .push(m.msg.get_snapshot().get_data().len());
            }
            store.step(m);
        }
        store.tick();
        match store.handle_ready() {
            Ok(done) => self.applied.entry(n).or_default().extend(done),
            Err(e) if self.engines[&n].is_failing() => {
                // A failed write is fatal for a store: the node goes down.
                tracing::info!(node = n, error = %e, "store stopped");
                self.stores.remove(&n);
                self.crashed.push(n);
            }
            Err(e) => panic!("node {n}: {e}"),
        }
    }

    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    pub fn run_until(&mut self, max_steps: usize, done: impl Fn(&Cluster) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// The node that leads `g`, if exactly one live node claims it.
    pub fn leader(&self, g: u64) -> Option<u64> {
        let leaders: Vec<u64> = self
            .stores
            .iter()
            .filter(|(_, s)| s.is_leader(g))
            .map(|(n, _)| *n)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    pub fn elect(&mut self, g: u64) -> u64 {
        assert!(
            self.run_until(300, |c| c.leader(g).is_some()),
            "no leader for group {g}"
        );
        self.leader(g).unwrap()
    }

    /// A new node with an empty replica of `g`, waiting to be added.
    pub fn add_empty_replica(&mut self, n: u64, g: u64) {
        self.add_node(n);
        self.stores
            .get_mut(&n)
            .unwrap()
            .create_group(group(g), &[])
            .unwrap();
    }

    /// Propose a membership change of `g` on its leader (several changes: joint
    /// consensus); returns that leader.
    pub fn change_members(&mut self, g: u64, changes: &[(ConfChangeType, u64)]) -> u64 {
        let singles: Vec<ConfChangeSingle> = changes
            .iter()
            .map(|&(t, node)| {
                let mut s = ConfChangeSingle::default();
                s.set_change_type(t);
                s.node_id = node;
                s
            })
            .collect();
        let mut cc = ConfChangeV2::default();
        cc.set_changes(singles.into());
        let leader = self.elect(g);
        self.stores
            .get_mut(&leader)
            .unwrap()
            .propose_conf_change(g, cc)
            .unwrap();
        leader
    }

    pub fn propose(&mut self, g: u64, cmd: &Command) -> Result<(), ProposeError> {
        let leader = self.leader(g).ok_or(ProposeError::NotLeader {
            group: g,
            leader: None,
        })?;
        self.stores.get_mut(&leader).unwrap().propose(g, cmd)
    }

    pub fn value(&self, n: u64, k: &[u8]) -> Option<Vec<u8>> {
        self.engines[&n].get(Cf::Data, k).unwrap()
    }

    pub fn data(&self, n: u64, g: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let d = group(g);
        let mut out = Vec::new();
        self.engines[&n]
            .scan(Cf::Data, &d.start, Some(&d.end), &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(Visit::Continue)
            })
            .unwrap();
        out
    }

    pub fn applied_ids(&self, n: u64, g: u64) -> Vec<u64> {
        self.applied
            .get(&n)
            .map(|v| v.iter().filter(|a| a.group == g).map(|a| a.id).collect())
            .unwrap_or_default()
    }

    pub fn all_have(
        &self,
        nodes: &[u64],
        g: u64,
        ids: impl IntoIterator<Item = u64> + Clone,
    ) -> bool {
        nodes.iter().all(|&n| {
            ids.clone()
                .into_iter()
                .all(|i| self.value(n, &key(g, i)).is_some())
        })
    }
}
