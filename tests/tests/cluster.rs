//! Three real `tessera` processes on loopback, started through the CLI (`start --join`,
//! `init`). Claims: the cluster is initialised once; the first node's tablet
//! up-replicates to the other two; a node that does not hold the lease refuses SQL with a
//! clear error (0A000 naming the leaseholder) rather than serving possibly stale data;
//! after `kill -9` of the leaseholder's node another node takes over with every
//! acknowledged row; the killed node restarts with its identity, catches up, and can
//! itself take over.

use std::process::Command;
use std::time::{Duration, Instant};

use tessera_tests::{free_port, sqlstate, tessera_bin, Node};

/// The index of the node among `candidates` that serves SQL (holds the lease).
async fn leaseholder(nodes: &[Node], candidates: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for &i in candidates {
            let Ok((client, conn)) =
                tokio_postgres::connect(&nodes[i].url(), tokio_postgres::NoTls).await
            else {
                continue;
            };
            tokio::spawn(async move {
                let _ = conn.await;
            });
            if client.simple_query("SELECT 1").await.is_ok() {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no node took the lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(node: &Node) -> i64 {
    node.connect()
        .await
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0)
}

fn wait_for_log(node: &Node, needles: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !needles.iter().all(|n| node.log().contains(n)) {
        assert!(
            Instant::now() < deadline,
            "never logged {needles:?}: {}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_survive_losing_the_leaseholder() {
    let rpc: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<Node> = (0..3).map(|i| Node::start_member(rpc[i], &rpc)).collect();
    let init = |host: String| {
        Command::new(tessera_bin())
            .args(["init", "--host", &host])
            .output()
            .expect("run tessera init")
    };
    let first = init(nodes[0].rpc_addr());
    assert!(first.status.success(), "{first:?}");
    for n in &mut nodes {
        n.wait_sql();
    }
    let again = init(nodes[0].rpc_addr());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));

    let lh = leaseholder(&nodes, &[0, 1, 2]).await;
    assert_eq!(lh, 0, "the initialised node holds the first lease");
    let c = nodes[0].connect().await;
    c.batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    for k in 1..=20 {
        c.execute("INSERT INTO kv VALUES ($1, 'v')", &[&k])
            .await
            .unwrap();
    }
    // Both joiners are promoted to voters (learner first, then voter).
    wait_for_log(
        &nodes[0],
        &["node=2 change=AddNode", "node=3 change=AddNode"],
    );
    c.execute("INSERT INTO kv VALUES (21, 'after promotion')", &[])
        .await
        .unwrap();
    // The others refuse SQL and say where to go.
    for i in [1, 2] {
        let err = nodes[i]
            .connect()
            .await
            .simple_query("SELECT count(*) FROM kv")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err:?}");
        let msg = err.as_db_error().map(|d| d.message()).unwrap_or_default();
        assert!(msg.contains("leaseholder is node 1"), "{msg}");
    }

    nodes[0].kill9();
    let second = leaseholder(&nodes, &[1, 2]).await;
    assert_eq!(count(&nodes[second]).await, 21, "acknowledged rows lost");
    let c = nodes[second].connect().await;
    for k in 22..=30 {
        c.execute("INSERT INTO kv VALUES ($1, 'v')", &[&k])
            .await
            .unwrap();
    }

    // The killed node rejoins with its identity and catches up; then it can take over.
    nodes[0].restart();
    nodes[0].wait_sql();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[second].kill9();
    let third_candidates: Vec<usize> = (0..3).filter(|i| *i != second).collect();
    let third = leaseholder(&nodes, &third_candidates).await;
    assert_eq!(count(&nodes[third]).await, 30, "acknowledged rows lost");
}

/// `tessera demo --nodes 3` starts a local cluster and prints one psql line per node;
/// node 1 serves SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_a_local_cluster() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(tessera_bin())
        .args(["demo", "--nodes", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tessera demo");
    let stdout = child.stdout.take().unwrap();
    // Read the psql lines, then keep draining stdout so the demo never writes to a
    // closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(&format!("node {}: psql ", found + 1)) {
                found += 1;
                let _ = tx.send(rest.trim_matches('"').to_string());
            }
        }
    });
    let urls: Vec<String> = (0..3)
        .filter_map(|_| rx.recv_timeout(Duration::from_secs(60)).ok())
        .collect();
    assert_eq!(urls.len(), 3, "{urls:?}");
    let (c, conn) = tokio_postgres::connect(&urls[0], tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c.batch_execute("CREATE TABLE d (k INT PRIMARY KEY); INSERT INTO d VALUES (1), (2)")
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM d", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let _ = child.kill();
    let _ = child.wait();
}
