//! Three replicas of one group on real TCP sockets and RocksDB, each driven by its own
//! driver thread: the claim is that a write acknowledged by the leader is on every
//! replica, that followers refuse writes and reads naming the leader, that after the
//! leader's node stops the other two elect a leader and keep accepting writes, and that a
//! leader left alone refuses reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cluster::replication::{GroupDesc, RaftConfig, RaftDriver, RaftStore, TcpTransport};
use tessera_cluster::{Error, Replicator};
use tessera_storage::{Cf, Engine, RocksEngine, WriteBatch};

struct TestNode {
    engine: Arc<RocksEngine>,
    driver: Option<RaftDriver>,
    _dir: tempfile::TempDir,
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

#[test]
fn replicates_over_tcp_and_survives_leader_loss() {
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
        let mut store = RaftStore::open(n, engine.clone(), t.clone(), cfg.clone()).unwrap();
        store
            .create_group(
                GroupDesc {
                    id: 1,
                    start: Vec::new(),
                    end: vec![0xFF],
                },
                &[1, 2, 3],
            )
            .unwrap();
        let driver = RaftDriver::start(store, Duration::from_millis(20));
        t.set_inbox(driver.inbox());
        nodes.insert(
            n,
            TestNode {
                engine,
                driver: Some(driver),
                _dir: dir,
            },
        );
    }
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
