//! Three real `tessera` processes on loopback, started through the CLI (`start --join`,
//! `init`). Claims: the cluster is initialised once; the first node's tablet
//! up-replicates to the other two; SQL through any node reads and writes the same data
//! (other nodes forward to the leaseholder); after `kill -9` of the leaseholder's node the
//! others carry on with every acknowledged row; the killed node restarts with its
//! identity, catches up, and keeps serving when another node dies.

use std::process::Command;
use std::time::{Duration, Instant};

use tessera_cluster::control::{ControlRequest, ControlResponse};
use tessera_tests::{tessera_bin, Node, Partition};

/// The clusters of these tests run one at a time: several three-node clusters at once on
/// a two-core machine would turn slow heartbeats into spurious elections.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Wait until `node` answers SQL (its tablet may be electing a leaseholder).
async fn serving(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((client, conn)) =
            tokio_postgres::connect(&node.url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            if client.simple_query("SELECT 1").await.is_ok() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node never served SQL: {}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(node: &Node) -> i64 {
    serving(node).await;
    node.connect()
        .await
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0)
}

/// Insert `keys` through `node`, retrying statements that fail with 40001 (a lease
/// moving); every key is acknowledged exactly once.
async fn insert(node: &Node, keys: std::ops::RangeInclusive<i32>) {
    serving(node).await;
    let c = node.connect().await;
    for k in keys {
        let mut tries = 0;
        loop {
            match c.execute("INSERT INTO kv VALUES ($1, 'v')", &[&k]).await {
                Ok(_) => break,
                Err(e) if tessera_tests::sqlstate(&e).as_deref() == Some("40001") && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("insert {k}: {e:?}"),
            }
        }
    }
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

/// Run `tessera init` against `node`.
fn init(node: &Node) -> std::process::Output {
    Command::new(tessera_bin())
        .args(["init", "--host", &node.rpc_addr()])
        .output()
        .expect("run tessera init")
}

/// Three members started through the CLI (with `settings`) and initialised on the first;
/// returns once all three accept SQL connections and the first serves SQL.
async fn start_cluster(settings: &[&str]) -> Vec<Node> {
    start_skewed_cluster(settings, [0, 0, 0]).await
}

/// [`start_cluster`] with the members' clocks `skews_ms` milliseconds off the machine's.
async fn start_skewed_cluster(settings: &[&str], skews_ms: [i64; 3]) -> Vec<Node> {
    let rpc = tessera_tests::member_addrs(3);
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::start_member_skewed(rpc[i], &rpc, settings, skews_ms[i]))
        .collect();
    let first = init(&nodes[0]);
    assert!(first.status.success(), "{first:?}");
    for n in &mut nodes {
        n.wait_sql();
    }
    serving(&nodes[0]).await;
    nodes
}

/// Wait until the first node has promoted both joiners to voters.
fn wait_promoted(first: &Node) {
    wait_for_log(first, &["node=2 change=AddNode", "node=3 change=AddNode"]);
}

/// Insert `keys` in one statement (one transaction), retrying conflicts.
async fn insert_together(node: &Node, keys: &[i32]) {
    serving(node).await;
    let c = node.connect().await;
    let values: Vec<String> = keys.iter().map(|k| format!("({k}, 'v')")).collect();
    let sql = format!("INSERT INTO kv VALUES {}", values.join(", "));
    let mut tries = 0;
    loop {
        match c.batch_execute(&sql).await {
            Ok(_) => return,
            Err(e) if tessera_tests::sqlstate(&e).as_deref() == Some("40001") && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("insert {keys:?}: {e:?}"),
        }
    }
}

async fn create_kv(node: &Node) {
    node.connect()
        .await
        .batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_survive_losing_the_leaseholder() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut nodes = start_cluster(&[]).await;
    let again = init(&nodes[0]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));

    create_kv(&nodes[0]).await;
    insert(&nodes[0], 1..=10).await;
    // Any node reads and writes the same data.
    insert(&nodes[1], 11..=15).await;
    insert(&nodes[2], 16..=20).await;
    for n in &nodes {
        assert_eq!(count(n).await, 20);
    }
    // Both joiners are promoted to voters (learner first, then voter).
    wait_promoted(&nodes[0]);
    insert(&nodes[1], 21..=21).await;

    // The first leaseholder dies; the other two carry on.
    nodes[0].kill9();
    assert_eq!(count(&nodes[1]).await, 21, "acknowledged rows lost");
    insert(&nodes[2], 22..=30).await;
    assert_eq!(count(&nodes[1]).await, 30);

    // The killed node rejoins with its identity and catches up; then another dies.
    nodes[0].restart();
    nodes[0].wait_sql();
    assert_eq!(count(&nodes[0]).await, 30);
    nodes[1].kill9();
    insert(&nodes[0], 31..=35).await;
    assert_eq!(count(&nodes[2]).await, 35, "acknowledged rows lost");
}

/// `tessera demo --nodes 3` starts a local cluster and prints one psql line per node;
/// node 1 serves SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_a_local_cluster() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
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

/// A client of the node at `url`, or `None` (after a pause) when it does not answer.
async fn try_connect(url: &str) -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((c, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Some(c)
        }
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// One round of faults while a workload runs: `kill -9` and restart of node `round`,
/// then the next node frozen (`SIGSTOP`, past an election timeout) and, once resumed,
/// cut off from the others by a partition, and then `split` run through the third
/// node, retried while the cluster recovers. Whether the split went through.
async fn fault_round(nodes: &mut [Node], round: usize, split: &str) -> bool {
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes[round].kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[round].restart();
    nodes[round].wait_sql();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen = &nodes[(round + 1) % 3];
    frozen.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    frozen.resume();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.rpc()).collect();
    let partition = Partition::isolate(frozen.rpc(), &addrs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(partition);
    let splitter = &nodes[(round + 2) % 3];
    for _ in 0..20 {
        let Ok(c) = tokio::time::timeout(Duration::from_secs(5), splitter.connect()).await else {
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), c.simple_query(split)).await {
            Ok(Ok(_)) => return true,
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    false
}

/// The bank on many tablets: accounts (one tablet each, 20 in all) and a ledger;
/// concurrent transfers through all three nodes while a nemesis kills (`kill -9`) and
/// restarts each node in turn, freezes another (`SIGSTOP`, past an election timeout),
/// then cuts that one off by a network partition, and splits the ledger; the nodes'
/// clocks disagree by up to 400 ms (libfaketime). Claims: every read of the total sees the same total; every
/// acknowledged transfer is in the ledger; the final balances are exactly the initial
/// ones plus the ledger's transfers (a transfer with an unknown outcome is either
/// wholly there or wholly absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_on_many_tablets_survives_kills_pauses_partitions_skew_and_splits() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    const ACCOUNTS: i32 = 20;
    const START: i64 = 1000;
    // Clocks apart by up to 400 ms, within the maximum offset (500 ms).
    let mut nodes = start_skewed_cluster(&[], [0, 200, -200]).await;
    let c = nodes[0].connect().await;
    c.batch_execute(
        "CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT NOT NULL); \
         CREATE TABLE ledger (id BIGINT PRIMARY KEY, src INT, dst INT, amount BIGINT)",
    )
    .await
    .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO acct SELECT x, {START} FROM generate_series(1, {ACCOUNTS}) AS t(x)"
    ))
    .await
    .unwrap();
    let at: Vec<String> = (2..=ACCOUNTS).map(|a| format!("({a})")).collect();
    c.batch_execute(&format!(
        "ALTER TABLE acct SPLIT AT VALUES {}",
        at.join(", ")
    ))
    .await
    .unwrap();
    wait_promoted(&nodes[0]);

    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for (w, url) in urls.into_iter().enumerate() {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut totals = Vec::new();
            let mut i: i64 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(c) = try_connect(&url).await else {
                    continue;
                };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let id = (w as i64) * 1_000_000 + i;
                    let src = (i % ACCOUNTS as i64) as i32 + 1;
                    let dst = ((i * 7 + w as i64) % ACCOUNTS as i64) as i32 + 1;
                    if src == dst {
                        continue;
                    }
                    let sql = format!(
                        "BEGIN; \
                         UPDATE acct SET bal = bal - 3 WHERE id = {src}; \
                         UPDATE acct SET bal = bal + 3 WHERE id = {dst}; \
                         INSERT INTO ledger VALUES ({id}, {src}, {dst}, 3); \
                         COMMIT"
                    );
                    match c.batch_execute(&sql).await {
                        Ok(()) => acked.push(id),
                        Err(e) if e.is_closed() => break,
                        Err(_) => {
                            let _ = c.batch_execute("ROLLBACK").await;
                        }
                    }
                    if i % 5 == 0 {
                        if let Ok(r) = c.query_one("SELECT sum(bal) FROM acct", &[]).await {
                            totals.push(r.get::<_, Option<i64>>(0));
                        }
                    }
                }
            }
            (acked, totals)
        }));
    }
    // Each round: kill and restart one node, freeze the next one for longer than an
    // election timeout and then partition it from the others, and split the ledger
    // between the workers' ids, through the third, while the transfers run.
    let mut splits = 0;
    for round in 0..3 {
        let at = (round as i64 + 1) * 1_000_000;
        let split = format!("ALTER TABLE ledger SPLIT AT VALUES ({at})");
        if fault_round(&mut nodes, round, &split).await {
            splits += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut totals = Vec::new();
    for w in workers {
        let (a, t) = w.await.unwrap();
        acked.extend(a);
        totals.extend(t);
    }
    let expected = START * ACCOUNTS as i64;
    eprintln!(
        "{} transfers acknowledged, {} totals read",
        acked.len(),
        totals.len()
    );
    assert!(!totals.is_empty(), "no total was read");
    assert!(
        totals.iter().all(|t| *t == Some(expected)),
        "totals: {totals:?}"
    );
    assert!(acked.len() >= 10, "too few transfers: {}", acked.len());

    serving(&nodes[0]).await;
    let c = nodes[0].connect().await;
    let ledger: std::collections::HashSet<i64> = c
        .query("SELECT id FROM ledger", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &acked {
        assert!(ledger.contains(id), "acknowledged transfer {id} is lost");
    }
    let rows = c
        .query(
            "SELECT a.id, a.bal, \
                    coalesce((SELECT sum(amount) FROM ledger WHERE dst = a.id), 0) \
                  - coalesce((SELECT sum(amount) FROM ledger WHERE src = a.id), 0) \
             FROM acct a ORDER BY a.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), ACCOUNTS as usize);
    for r in rows {
        let (id, bal, delta): (i32, i64, i64) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(bal, START + delta, "account {id} does not match its ledger");
    }
    // Every account is a tablet of its own, and the ledger was split under the faults.
    let ranges = kv_ranges(&nodes[0]).await;
    let of = |table: &str| {
        ranges
            .iter()
            .filter(|r| r.1.starts_with(&format!("/Table/{table}/1")))
            .count()
    };
    eprintln!("{splits} ledger splits; ranges {ranges:?}");
    assert_eq!(of("acct"), ACCOUNTS as usize, "{ranges:?}");
    assert!(of("ledger") > splits, "{ranges:?}");
    assert!(
        splits >= 1,
        "no split of the ledger went through: {ranges:?}"
    );
}

/// List-append on many tablets: 32 lists (a table pre-split into 16 tablets, split
/// further under the faults), transactions of one to three random reads and appends
/// through all three nodes while a nemesis kills (`kill -9`) and restarts a node,
/// freezes another (`SIGSTOP`) and then partitions it, and splits the table; the nodes'
/// clocks disagree by up to 400 ms. Every appended value is unique, so the final lists
/// order every write and each read names the write it saw. Claims (checked as Elle
/// does): no dependency cycle (strict serializability, real time included), every read
/// is a prefix of the final list, every acknowledged append is there, no append of a
/// failed transaction is, and a transaction with an unknown outcome is wholly there or
/// wholly absent. Afterwards the tablets' leases are spread over all three nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_append_on_many_tablets_is_strictly_serializable_under_faults() {
    use tessera_tests::history::{check, Committed, Op, Rng};
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    const LISTS: u32 = 32;
    let mut nodes = start_skewed_cluster(&[], [0, 200, -200]).await;
    let c = nodes[0].connect().await;
    c.batch_execute("CREATE TABLE lists (k INT PRIMARY KEY, v TEXT NOT NULL)")
        .await
        .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO lists SELECT x, '' FROM generate_series(0, {}) AS t(x)",
        LISTS - 1
    ))
    .await
    .unwrap();
    let at: Vec<String> = (1..16).map(|i| format!("({})", i * 2)).collect();
    c.batch_execute(&format!(
        "ALTER TABLE lists SPLIT AT VALUES {}",
        at.join(", ")
    ))
    .await
    .unwrap();
    wait_promoted(&nodes[0]);

    let t0 = Instant::now();
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6u32 {
        let url = urls[w as usize % 3].clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(w + 1) << 17);
            let (mut committed, mut failed, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
            let mut next = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(c) = try_connect(&url).await else {
                    continue;
                };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut ops = Vec::new();
                    let mut sql = String::from("BEGIN;");
                    for _ in 0..=rng.below(3) {
                        let k = rng.below(u64::from(LISTS)) as u32;
                        if rng.below(2) == 0 {
                            sql.push_str(&format!("SELECT v FROM lists WHERE k = {k};"));
                            ops.push(Op::Read(k, Vec::new()));
                        } else {
                            next += 1;
                            let v = w * 10_000_000 + next;
                            sql.push_str(&format!(
                                "UPDATE lists SET v = v || ',{v}' WHERE k = {k};"
                            ));
                            ops.push(Op::Append(k, v));
                        }
                    }
                    sql.push_str("COMMIT");
                    let began = t0.elapsed().as_nanos() as u64;
                    let answer =
                        tokio::time::timeout(Duration::from_secs(30), c.simple_query(&sql)).await;
                    let ended = t0.elapsed().as_nanos() as u64;
                    let appends = || -> Vec<u32> {
                        ops.iter()
                            .filter_map(|o| match o {
                                Op::Append(_, v) => Some(*v),
                                Op::Read(..) => None,
                            })
                            .collect()
                    };
                    match answer {
                        Ok(Ok(messages)) => {
                            let mut rows = messages.iter().filter_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::Row(r) => {
                                    Some(r.get(0).unwrap_or("").to_string())
                                }
                                _ => None,
                            });
                            for op in &mut ops {
                                if let Op::Read(_, seen) = op {
                                    let text = rows.next().expect("a row per read");
                                    *seen = text
                                        .split(',')
                                        .filter(|s| !s.is_empty())
                                        .map(|s| s.parse().unwrap())
                                        .collect();
                                }
                            }
                            committed.push(Committed {
                                id: 0,
                                ops,
                                began,
                                ended: Some(ended),
                            });
                        }
                        Ok(Err(e)) if tessera_tests::sqlstate(&e).as_deref() == Some("40001") => {
                            failed.extend(appends());
                            let _ = c.batch_execute("ROLLBACK").await;
                        }
                        Ok(Err(e)) => {
                            unknown.push((appends(), began));
                            if e.is_closed() {
                                break;
                            }
                            let _ = c.batch_execute("ROLLBACK").await;
                        }
                        Err(_) => {
                            unknown.push((appends(), began));
                            break;
                        }
                    }
                }
            }
            (committed, failed, unknown)
        }));
    }
    // Each round: kill and restart one node, freeze the next and then partition it,
    // and split the table between two lists.
    for round in 0..2 {
        let split = format!("ALTER TABLE lists SPLIT AT VALUES ({})", 4 * round + 1);
        fault_round(&mut nodes, round, &split).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut committed, mut failed, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for w in workers {
        let (c, f, u) = w.await.unwrap();
        committed.extend(c);
        failed.extend(f);
        unknown.extend(u);
    }

    serving(&nodes[0]).await;
    let c = nodes[0].connect().await;
    let finals: std::collections::BTreeMap<u32, Vec<u32>> = c
        .query("SELECT k, v FROM lists", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let v: String = r.get(1);
            let list = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap());
            (r.get::<_, i32>(0) as u32, list.collect())
        })
        .collect();
    assert_eq!(finals.len(), LISTS as usize);
    // A transaction with an unknown outcome committed exactly when its appends are
    // there: all of them, or none.
    let present: std::collections::HashSet<u32> = finals.values().flatten().copied().collect();
    let mut settled = 0;
    for (appends, began) in unknown {
        let there = appends.iter().filter(|v| present.contains(v)).count();
        assert!(
            there == 0 || there == appends.len(),
            "a transaction with an unknown outcome is half there: {appends:?}"
        );
        if there == 0 {
            failed.extend(appends);
        } else {
            settled += 1;
            committed.push(Committed {
                id: 0,
                ops: appends
                    .iter()
                    .map(|v| {
                        let k = *finals.iter().find(|(_, l)| l.contains(v)).unwrap().0;
                        Op::Append(k, *v)
                    })
                    .collect(),
                began,
                ended: None,
            });
        }
    }
    for (i, t) in committed.iter_mut().enumerate() {
        t.id = i;
    }
    eprintln!(
        "{} transactions committed ({settled} of unknown outcome), {} appends failed",
        committed.len(),
        failed.len()
    );
    assert!(
        committed.len() >= 50,
        "too few transactions: {}",
        committed.len()
    );
    if let Err(anomaly) = check(&committed, &failed, &finals) {
        panic!("{anomaly}");
    }
    // The splits left every lease with the node that split; lease balancing spreads
    // them over all three nodes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ranges = kv_ranges(&nodes[0]).await;
        let holders: std::collections::BTreeSet<i64> = ranges
            .iter()
            .filter(|r| r.1.starts_with("/Table/lists/1"))
            .filter_map(|r| r.3)
            .collect();
        if holders.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leases of the lists stay on {holders:?}: {ranges:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A node that was down while the others truncated their logs (`--raft-log-keep 5`)
/// catches up from a snapshot: once it is back, the cluster keeps working with it in the
/// quorum even when the other follower dies, and no acknowledged row is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_truncated_logs_catches_up_by_snapshot() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut nodes = start_cluster(&["--raft-log-keep", "5"]).await;
    create_kv(&nodes[0]).await;
    wait_promoted(&nodes[0]);
    insert(&nodes[0], 1..=5).await;
    nodes[2].kill9();
    // Many more entries than the logs keep.
    insert(&nodes[0], 6..=60).await;
    nodes[2].restart();
    nodes[2].wait_sql();
    assert_eq!(count(&nodes[2]).await, 60);
    wait_for_log(&nodes[2], &["installed a snapshot"]);
    // Lose the other follower: the quorum now needs node 3.
    nodes[1].kill9();
    insert(&nodes[2], 61..=65).await;
    assert_eq!(count(&nodes[0]).await, 65, "acknowledged rows lost");
}

/// A node cut off from the others (iptables drops the packets between its address and
/// theirs) returns errors rather than stale data, while the others elect a leaseholder and go on; once reconnected it
/// serves the new data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_returns_errors_not_stale_data() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let nodes = start_cluster(&[]).await;
    create_kv(&nodes[0]).await;
    wait_promoted(&nodes[0]);
    insert(&nodes[1], 1..=5).await;

    // Cut off the leaseholder's node: the worst case for stale reads.
    let status = nodes[0].control(ControlRequest::Status);
    let ControlResponse::Status {
        leaseholder: Some(lh),
        ..
    } = status
    else {
        panic!("{status:?}")
    };
    let cut = lh as usize - 1;
    let addrs: Vec<_> = nodes.iter().map(|n| n.rpc()).collect();
    let partition = Partition::isolate(addrs[cut], &addrs);
    let other = (0..3).find(|i| *i != cut).unwrap();
    insert(&nodes[other], 6..=10).await;
    assert_eq!(count(&nodes[other]).await, 10);
    // Every read on the cut-off node fails; none returns the old five rows.
    let c = nodes[cut].connect().await;
    for _ in 0..3 {
        match c.query_one("SELECT count(*) FROM kv", &[]).await {
            Ok(r) => panic!("a cut-off node answered {}", r.get::<_, i64>(0)),
            Err(e) => assert!(e.as_db_error().is_some(), "{e:?}"),
        }
    }
    drop(partition);
    assert_eq!(count(&nodes[cut]).await, 10);
}

/// `count`, retried while a tablet has no leaseholder yet (40001) after a failure.
async fn count_settled(node: &Node) -> i64 {
    serving(node).await;
    let c = node.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.query_one("SELECT count(*) FROM kv", &[]).await {
            Ok(r) => return r.get(0),
            Err(e)
                if tessera_tests::sqlstate(&e).as_deref() == Some("40001")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("count: {e:?}"),
        }
    }
}

/// The ranges of the cluster (the first one holds the system keys and the start of
/// `kv`), as `SHOW RANGES` has them.
async fn kv_ranges(node: &Node) -> Vec<(i64, String, Vec<i64>, Option<i64>)> {
    serving(node).await;
    node.connect()
        .await
        .query(
            "SELECT range_id, start_key, replicas, lease_holder FROM tessera_internal.ranges \
             ORDER BY start_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// A split through a node that does not hold the lease is served by the leaseholder;
/// the new tablet is a Raft group on all three nodes; rows on both sides are written
/// through every node, and survive `kill -9` of the leaseholder's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_tablet_is_replicated_and_survives_losing_the_leaseholder() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut nodes = start_cluster(&[]).await;
    create_kv(&nodes[0]).await;
    wait_promoted(&nodes[0]);
    insert(&nodes[0], 1..=10).await;
    serving(&nodes[2]).await;
    let split = nodes[2]
        .connect()
        .await
        .simple_query("ALTER TABLE kv SPLIT AT VALUES (100)")
        .await;
    assert!(split.is_ok(), "{split:?}");
    // The system tablet, the table's own, and the split.
    let ranges = kv_ranges(&nodes[1]).await;
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[1].1, "/Table/kv/1");
    assert_eq!(ranges[2].1, "/Table/kv/1/100");
    for (_, _, replicas, _) in &ranges {
        assert_eq!(replicas, &vec![1, 2, 3], "{ranges:?}");
    }
    // Both sides take writes through every node.
    insert(&nodes[1], 101..=110).await;
    insert(&nodes[2], 11..=20).await;
    insert(&nodes[2], 111..=120).await;
    // And transactions that write both, through every node.
    for (i, n) in nodes.iter().enumerate() {
        let k = 26 + i as i32;
        insert_together(n, &[k, k + 100]).await;
    }
    for n in &nodes {
        assert_eq!(count_settled(n).await, 46);
    }
    nodes[0].kill9();
    assert_eq!(count_settled(&nodes[1]).await, 46, "acknowledged rows lost");
    insert(&nodes[1], 21..=25).await;
    insert(&nodes[2], 121..=125).await;
    insert_together(&nodes[1], &[29, 129]).await;
    assert_eq!(count_settled(&nodes[2]).await, 58);
    let after = kv_ranges(&nodes[2]).await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.iter().all(|(_, _, _, l)| l.is_some_and(|l| l != 1)),
        "{after:?}"
    );
}

/// A table that grows past the tablet size bound is split by itself: `SHOW RANGES`
/// lists its tablets, each starting at a row of it, and every row is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_table_splits_by_size() {
    let node = Node::start_with(&["--range-max-bytes", "16384"]);
    let c = node.connect().await;
    c.batch_execute(
        "CREATE TABLE grow (id INT PRIMARY KEY, pad TEXT); \
         INSERT INTO grow SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g",
    )
    .await
    .unwrap();
    for i in 0..10 {
        let from = 1001 + i * 100;
        c.batch_execute(&format!(
            "INSERT INTO grow SELECT g, repeat('y', 100) FROM generate_series({from}, {}) g",
            from + 99
        ))
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let starts = loop {
        let starts: Vec<String> = c
            .query(
                "SELECT start_key FROM tessera_internal.ranges WHERE table_name = 'grow' \
                 ORDER BY range_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if starts.len() >= 4 {
            break starts;
        }
        assert!(Instant::now() < deadline, "no split by size: {starts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(starts[0], "/Table/grow/1");
    for s in &starts[1..] {
        let id: i64 = s
            .strip_prefix("/Table/grow/1/")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a row boundary: {s}"));
        assert!((1..=2000).contains(&id), "{s}");
    }
    let shown = c.simple_query("SHOW RANGES FROM TABLE grow").await.unwrap();
    let listed = shown
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert!(listed >= starts.len(), "{listed} ranges shown");
    let n: i64 = c
        .query_one("SELECT count(*) FROM grow", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
}

/// `SHOW RANGES FROM TABLE t` lists the tablets holding `t`'s rows and index entries,
/// and no others: not the system tablet before the first table, not the tablet of the
/// table before it, whose span ends where `t`'s first index begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_ranges_from_a_table_lists_only_its_tablets() {
    let node = Node::start();
    let c = node.connect().await;
    c.batch_execute(
        "CREATE TABLE first (id INT PRIMARY KEY); \
         CREATE TABLE second (id INT PRIMARY KEY, x INT); \
         CREATE INDEX second_x ON second (x)",
    )
    .await
    .unwrap();
    let starts = |sql: &'static str| {
        let c = &c;
        async move {
            let mut out = Vec::new();
            for m in c.simple_query(sql).await.unwrap() {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    let (table, start) = (r.get(1).unwrap_or("NULL"), r.get(2).unwrap_or("NULL"));
                    out.push(format!("{table} {start}"));
                }
            }
            out
        }
    };
    assert_eq!(
        starts("SHOW RANGES FROM TABLE first").await,
        ["first /Table/first/1"]
    );
    assert_eq!(
        starts("SHOW RANGES FROM TABLE second").await,
        ["second /Table/second/1", "second /Table/second/2"]
    );
    assert_eq!(
        starts("SHOW RANGES FROM INDEX second@second_x").await,
        ["second /Table/second/2"]
    );
}
