//! Three replicas of one group on real TCP sockets and RocksDB, each driven by its own
//! driver thread: the claim is that a write acknowledged by the leader is on every
//! replica, that followers refuse writes and reads naming the leader, that after the
//! leader's node stops the other two elect a leader and keep accepting writes, and that a
//! leader left alone refuses reads. And that a commit whose replication outlives its
//! timeout keeps later commits from validating without it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cluster::replication::{
    Envelope, GroupDesc, Limits, RaftConfig, RaftDriver, RaftStore, TcpTransport, Transport,
};
use tessera_cluster::{
    Db, Error, Hlc, KvPeers, Replicator, Store, StoreConfig, SystemClock, TcpPeers, TxnOptions,
};
use tessera_storage::{Cf, Engine, RocksEngine, WriteBatch};

struct TestNode {
    engine: Arc<RocksEngine>,
    driver: Option<RaftDriver>,
    _dir: tempfile::TempDir,
    /// While set, the node's Raft messages are dropped before they reach TCP.
    mute: Arc<AtomicBool>,
}

/// A node's TCP transport that can be muted (it then sends nothing, as if cut off).
struct Mutable {
    inner: Arc<TcpTransport>,
    mute: Arc<AtomicBool>,
}

impl Transport for Mutable {
    fn send(&self, batch: Vec<Envelope>) {
        if !self.mute.load(Ordering::SeqCst) {
            self.inner.send(batch);
        }
    }
}

fn put(k: &[u8]) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(Cf::Data, k.to_vec(), b"v".to_vec());
    b
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn leader(nodes: &BTreeMap<u64, TestNode>) -> Option<u64> {
    nodes
        .iter()
        .find(|(id, n)| {
            n.driver
                .as_ref()
                .is_some_and(|d| d.leader_of(1) == Some(**id))
        })
        .map(|(id, _)| *id)
}

/// Three nodes on loopback sockets, each with a replica of group 1 over the whole key
/// space, ticking every `tick`.
fn start(tick: Duration) -> (BTreeMap<u64, Arc<TcpTransport>>, BTreeMap<u64, TestNode>) {
    let transports: BTreeMap<u64, Arc<TcpTransport>> = (1..=3)
        .map(|n| {
            (
                n,
                TcpTransport::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
            )
        })
        .collect();
    let addrs: BTreeMap<u64, SocketAddr> = transports
        .iter()
        .map(|(n, t)| (*n, t.local_addr()))
        .collect();
    let cfg = RaftConfig::default();
    let mut nodes = BTreeMap::new();
    for (&n, t) in &transports {
        for (&peer, &addr) in &addrs {
            if peer != n {
                t.set_peer(peer, addr);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(RocksEngine::open(dir.path()).unwrap());
        let mute = Arc::new(AtomicBool::new(false));
        let transport = Arc::new(Mutable {
            inner: t.clone(),
            mute: mute.clone(),
        });
        let mut store = RaftStore::open(n, engine.clone(), transport, cfg.clone()).unwrap();
        store
            .create_group(
                GroupDesc {
                    id: 1,
                    start: Vec::new(),
                    end: vec![0xFF, 0xFF, 0xFF, 0xFF],
                    generation: 1,
                },
                &[1, 2, 3],
            )
            .unwrap();
        let driver = RaftDriver::start(store, tick);
        t.set_inbox(driver.inbox());
        nodes.insert(
            n,
            TestNode {
                engine,
                driver: Some(driver),
                _dir: dir,
                mute,
            },
        );
    }
    (transports, nodes)
}

#[test]
fn replicates_over_tcp_and_survives_leader_loss() {
    let (_transports, mut nodes) = start(Duration::from_millis(20));
    assert!(wait_for(Duration::from_secs(20), || leader(&nodes).is_some()));
    let first = leader(&nodes).unwrap();
    let via = |nodes: &BTreeMap<u64, TestNode>, n: u64| {
        nodes[&n]
            .driver
            .as_ref()
            .unwrap()
            .replicator(1, Duration::from_secs(10))
    };
    via(&nodes, first).replicate(put(b"a")).unwrap();
    let has = |nodes: &BTreeMap<u64, TestNode>, n: u64, k: &[u8]| {
        nodes[&n].engine.get(Cf::Data, k).unwrap().is_some()
    };
    assert!(wait_for(Duration::from_secs(10), || (1..=3)
        .all(|n| has(&nodes, n, b"a"))));
    let follower = (1..=3).find(|n| *n != first).unwrap();
    // A follower refuses and names the leader.
    let err = via(&nodes, follower).replicate(put(b"x")).unwrap_err();
    assert!(
        matches!(err, Error::NotLeaseholder { leader: Some(l) } if l == first),
        "{err}"
    );

    // The leader's node stops; the other two carry on.
    nodes.get_mut(&first).unwrap().driver = None;
    assert!(wait_for(Duration::from_secs(20), || leader(&nodes)
        .is_some_and(|l| l != first)));
    let second = leader(&nodes).unwrap();
    let mut written = false;
    for _ in 0..50 {
        if via(&nodes, second).replicate(put(b"b")).is_ok() {
            written = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(written, "the new leader never accepted a write");
    let rest: Vec<u64> = (1..=3).filter(|n| *n != first).collect();
    assert!(wait_for(Duration::from_secs(10), || rest
        .iter()
        .all(|n| has(&nodes, *n, b"b"))));
    assert!(!has(&nodes, first, b"b"));

    // Reads are confirmed by the group on the leader; a follower refuses to serve them.
    let third = rest.iter().copied().find(|n| *n != second).unwrap();
    via(&nodes, second).read_barrier().unwrap();
    let err = via(&nodes, third).read_barrier().unwrap_err();
    assert!(
        matches!(err, Error::NotLeaseholder { leader: Some(l) } if l == second),
        "{err}"
    );
    // A leader left without a quorum cannot confirm anything: it refuses to read instead
    // of serving data that may be stale.
    nodes.get_mut(&third).unwrap().driver = None;
    let err = via(&nodes, second).read_barrier().unwrap_err();
    assert!(
        matches!(err, Error::NotLeaseholder { .. } | Error::Raft(_)),
        "{err}"
    );
}

/// Claim: a commit that gets no answer from its group in time does not let later
/// commits on the same leaseholder validate without it while it can still apply. Two
/// transactions read the same key; the first commits while the followers are cut off
/// (its proposal outlives the replication timeout, then applies when they return); the
/// second must see that write at validation and fail, not commit a lost update.
#[test]
fn a_commit_that_outlives_its_timeout_still_holds_back_conflicting_commits() {
    let (_transports, nodes) = start(Duration::from_millis(50));
    assert!(wait_for(Duration::from_secs(20), || leader(&nodes).is_some()));
    let l = leader(&nodes).unwrap();
    let driver = nodes[&l].driver.as_ref().unwrap();
    let replicator: Arc<dyn Replicator> =
        Arc::new(driver.replicator(1, Duration::from_millis(100)));
    let store = Store::open_replicated(
        nodes[&l].engine.clone(),
        Arc::new(Hlc::new(Arc::new(SystemClock))),
        StoreConfig::default(),
        Some(replicator),
    )
    .unwrap();
    let db = Db::new(store);
    // A first write waits out the new lease's floor.
    let mut warm = db.begin(TxnOptions::default());
    warm.put(b"\x10w".to_vec(), b"w".to_vec()).unwrap();
    warm.commit().unwrap();
    let k = b"\x10k".to_vec();
    let mut a = db.begin(TxnOptions::default());
    let mut b = db.begin(TxnOptions::default());
    assert_eq!(a.get(&k).unwrap(), None);
    assert_eq!(b.get(&k).unwrap(), None);
    a.put(k.clone(), b"a".to_vec()).unwrap();
    b.put(k.clone(), b"b".to_vec()).unwrap();

    // The followers' answers are lost: the leader's proposal cannot commit.
    let followers: Vec<Arc<AtomicBool>> = nodes
        .iter()
        .filter(|(n, _)| **n != l)
        .map(|(_, node)| node.mute.clone())
        .collect();
    for m in &followers {
        m.store(true, Ordering::SeqCst);
    }
    // Back well within an election timeout (10 ticks): the leader keeps its term.
    let heal = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        for m in &followers {
            m.store(false, Ordering::SeqCst);
        }
    });
    let first = a.commit();
    assert!(
        matches!(first, Ok(_) | Err(Error::Ambiguous(_))),
        "{first:?}"
    );
    let second = b.commit();
    heal.join().unwrap();
    assert!(
        second.is_err(),
        "the second commit validated without the first write: {second:?}"
    );
    let mut r = db.begin(TxnOptions::default());
    let mut seen = None;
    assert!(wait_for(Duration::from_secs(10), || {
        seen = r.get(&k).ok().flatten();
        seen.is_some()
    }));
    assert_eq!(seen.as_deref(), Some(&b"a"[..]));
}

/// Whether the peer closed `s` within `wait` (as opposed to keeping it open without
/// answering).
fn closed_by_peer(s: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// A transport whose KV service answers every request with its own bytes.
fn echo(limits: Limits) -> (Arc<TcpTransport>, TcpPeers) {
    let t = TcpTransport::bind_with("127.0.0.1:0".parse().unwrap(), limits).unwrap();
    t.set_kv_handler(Arc::new(|req: &[u8]| req.to_vec()));
    let addr = t.local_addr();
    let peers = TcpPeers::new(addr.ip(), Arc::new(move |_| Some(addr)));
    (t, peers)
}

/// Claim: the RPC port survives what an untrusted peer can send. A frame announcing more
/// than the limit, a frame whose checksum fails, garbage on a Raft stream and a
/// connection that never says what it carries are each closed, and the node goes on
/// answering well-formed requests.
#[test]
fn bad_frames_close_only_their_connection() {
    let (t, peers) = echo(Limits::default());
    let addr = t.local_addr();
    assert_eq!(peers.call(1, b"ping").unwrap(), b"ping");

    // 'K', then a header announcing 4 GiB - 1: refused from the header alone.
    let mut huge = raw(addr, &[b'K', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
    assert!(
        closed_by_peer(&mut huge, Duration::from_secs(5)),
        "an oversize frame was not refused"
    );

    // A well-sized frame whose checksum is wrong.
    let mut bad_sum = vec![b'K'];
    bad_sum.extend_from_slice(&4u32.to_be_bytes());
    bad_sum.extend_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
    bad_sum.extend_from_slice(b"ping");
    let mut corrupt = raw(addr, &bad_sum);
    assert!(
        closed_by_peer(&mut corrupt, Duration::from_secs(5)),
        "a corrupt frame was not refused"
    );

    // Garbage where Raft frames belong.
    let mut garbage = raw(addr, b"Rthis is not a frame at all");
    assert!(
        closed_by_peer(&mut garbage, Duration::from_secs(5)),
        "garbage was not refused"
    );

    // Silence: the connection never names its kind.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    assert!(
        closed_by_peer(&mut silent, Duration::from_secs(15)),
        "a silent connection was kept"
    );

    assert_eq!(peers.call(1, b"still here").unwrap(), b"still here");
}

/// Claim: connections beyond the limit are closed as they arrive, and served ones keep
/// being served; once one ends, a new one is accepted.
#[test]
fn connections_beyond_the_limit_are_closed() {
    let (t, peers) = echo(Limits {
        max_connections: 3,
        ..Limits::default()
    });
    let addr = t.local_addr();
    // The pooled client connection is one of the three.
    assert_eq!(peers.call(1, b"a").unwrap(), b"a");
    let mut held: Vec<_> = (0..2).map(|_| raw(addr, b"K")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = raw(addr, b"K");
    assert!(
        closed_by_peer(&mut extra, Duration::from_secs(5)),
        "a fourth connection was served"
    );
    assert_eq!(peers.call(1, b"b").unwrap(), b"b");
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    let mut again = raw(addr, b"K");
    assert!(
        !closed_by_peer(&mut again, Duration::from_secs(1)),
        "no connection was accepted after one ended"
    );
}
