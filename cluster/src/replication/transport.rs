//! Moving Raft messages between stores.
//!
//! [`Transport`] is all the driver knows: `send` hands over messages and never blocks (a
//! transport that cannot deliver drops, and Raft retransmits). [`MemNetwork`] is the
//! in-memory network for deterministic tests: every message waits in a queue until the
//! test delivers it, and the test can partition nodes, drop, duplicate and reorder
//! messages with a seeded generator, so a failing schedule can be replayed exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use raft::prelude::Message;

/// One Raft message for one group.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The Raft group (tablet) the message belongs to.
    pub group: u64,
    /// The raft-rs message; `from` and `to` are node ids.
    pub msg: Message,
}

/// Sends Raft messages to other nodes.
pub trait Transport: Send + Sync {
    /// Queue messages for delivery; never blocks, may drop.
    fn send(&self, batch: Vec<Envelope>);
}

/// A tiny deterministic generator (xorshift64*), so the tests need no RNG crate.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u32) -> bool {
        pct > 0 && (self.next() % 100) < pct as u64
    }
}

#[derive(Debug)]
struct NetState {
    queues: BTreeMap<u64, VecDeque<Envelope>>,
    /// Pairs (from, to) whose messages are dropped.
    cut: BTreeSet<(u64, u64)>,
    drop_pct: u32,
    duplicate_pct: u32,
    reorder: bool,
    rng: Rng,
    sent: u64,
    dropped: u64,
}

/// The in-memory network of a test cluster. Cloning shares the network.
#[derive(Clone, Debug)]
pub struct MemNetwork {
    state: Arc<Mutex<NetState>>,
}

/// One node's handle on a [`MemNetwork`].
#[derive(Clone, Debug)]
pub struct MemTransport {
    net: MemNetwork,
}

impl MemNetwork {
    /// A network with no faults; `seed` drives every random choice.
    pub fn new(seed: u64) -> Self {
        MemNetwork {
            state: Arc::new(Mutex::new(NetState {
                queues: BTreeMap::new(),
                cut: BTreeSet::new(),
                drop_pct: 0,
                duplicate_pct: 0,
                reorder: false,
                rng: Rng(seed.max(1)),
                sent: 0,
                dropped: 0,
            })),
        }
    }

    /// The transport a node sends through.
    pub fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(MemTransport { net: self.clone() })
    }

    /// Take every message waiting for `node`, in delivery order.
    pub fn take(&self, node: u64) -> Vec<Envelope> {
        let mut s = self.state.lock();
        let mut msgs: Vec<Envelope> = s
            .queues
            .get_mut(&node)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default();
        if s.reorder && msgs.len() > 1 {
            for i in (1..msgs.len()).rev() {
                let j = (s.rng.next() % (i as u64 + 1)) as usize;
                msgs.swap(i, j);
            }
        }
        msgs
    }

    /// Drop every message between the two sides (both directions).
    pub fn partition(&self, side_a: &[u64], side_b: &[u64]) {
        let mut s = self.state.lock();
        for &a in side_a {
            for &b in side_b {
                s.cut.insert((a, b));
                s.cut.insert((b, a));
            }
        }
    }

    /// Cut `node` off from every node in `others`.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        self.partition(&[node], others);
    }

    /// Remove all partitions.
    pub fn heal(&self) {
        self.state.lock().cut.clear();
    }

    /// Drop, duplicate (each in percent) and reorder messages from now on.
    pub fn set_faults(&self, drop_pct: u32, duplicate_pct: u32, reorder: bool) {
        let mut s = self.state.lock();
        s.drop_pct = drop_pct;
        s.duplicate_pct = duplicate_pct;
        s.reorder = reorder;
    }

    /// Messages sent and messages dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.sent, s.dropped)
    }
}

impl Transport for MemTransport {
    fn send(&self, batch: Vec<Envelope>) {
        let mut s = self.net.state.lock();
        for env in batch {
            s.sent += 1;
            let (from, to) = (env.msg.from, env.msg.to);
            let drop_pct = s.drop_pct;
            if s.cut.contains(&(from, to)) || s.rng.chance(drop_pct) {
                s.dropped += 1;
                continue;
            }
            let duplicate_pct = s.duplicate_pct;
            let dup = s.rng.chance(duplicate_pct);
            let q = s.queues.entry(to).or_default();
            if dup {
                q.push_back(env.clone());
            }
            q.push_back(env);
        }
    }
}

/// The transport of a node without peers (a single-node cluster): nothing to send to.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, batch: Vec<Envelope>) {
        if !batch.is_empty() {
            tracing::debug!(messages = batch.len(), "no peers: messages dropped");
        }
    }
}
