//! Durability: every acknowledged commit survives `kill -9` and a full disk, and nothing
//! of an unacknowledged transaction is half there.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_tests::Node;

/// Several clients commit three-row transactions until the server is killed; after a
/// restart every acknowledged transaction is there, whole, and every transaction that
/// is there at all is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_kill_9() {
    let mut node = Node::start();
    let c = node.connect().await;
    c.batch_execute("CREATE TABLE d (grp INT, part INT, payload TEXT, PRIMARY KEY (grp, part))")
        .await
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<i32>>> = Arc::default();
    let mut tasks = Vec::new();
    for client_no in 0..4 {
        let client = node.connect().await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let grp = client_no * 1_000_000 + i;
                let sql = if i % 2 == 0 {
                    format!(
                        "BEGIN; INSERT INTO d VALUES ({grp}, 1, 'a'); INSERT INTO d VALUES ({grp}, 2, 'b'); INSERT INTO d VALUES ({grp}, 3, 'c'); COMMIT"
                    )
                } else {
                    format!("INSERT INTO d VALUES ({grp}, 1, 'a'), ({grp}, 2, 'b'), ({grp}, 3, 'c')")
                };
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        acked.lock().unwrap().insert(grp);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let start = Instant::now();
    while acked.lock().unwrap().len() < 40 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 40,
        "too few commits before the kill: {}",
        acked.len()
    );
    node.restart();
    let c = node.connect().await;
    let rows = c
        .query("SELECT grp, count(*) FROM d GROUP BY grp", &[])
        .await
        .unwrap();
    let mut present = BTreeSet::new();
    for r in rows {
        let grp: i32 = r.get(0);
        let n: i64 = r.get(1);
        assert_eq!(n, 3, "transaction {grp} is half there");
        present.insert(grp);
    }
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged transactions lost: {lost:?}");
}

/// A clean shutdown on SIGTERM exits with success, and the data is there afterwards.
#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut node = Node::start();
    let c = node.connect().await;
    c.batch_execute("CREATE TABLE s (k INT PRIMARY KEY); INSERT INTO s VALUES (1), (2)")
        .await
        .unwrap();
    assert!(node.terminate(), "tessera did not exit cleanly on SIGTERM");
    node.restart();
    let c = node.connect().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", node.log()))
        .get(0);
    assert_eq!(n, 2);
}

/// Large transactions: a write set far over the buffer bound goes out as intents and
/// commits; a rolled-back one leaves nothing behind; both survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_commit_and_roll_back() {
    let mut node = Node::start();
    let c = node.connect().await;
    c.batch_execute("CREATE TABLE big (id INT PRIMARY KEY, filler TEXT)")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO big SELECT x, repeat('x', 200) FROM generate_series(1, 60000) AS t(x); COMMIT")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO big SELECT x, repeat('y', 200) FROM generate_series(100001, 160000) AS t(x); ROLLBACK")
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 60000);
    node.restart();
    let c = node.connect().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM big WHERE filler LIKE 'x%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 60000);
    let n: i64 = c
        .query_one("SELECT count(*) FROM big WHERE id > 100000", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

/// A tmpfs of `size` mounted at a directory, unmounted when dropped.
struct Tmpfs {
    at: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        Tmpfs {
            at: at.to_path_buf(),
        }
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.at)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// A full disk: the node stops serving (fail-stop) instead of going on from state it
/// could not write, exits with an error that says why, and after space is freed and it
/// restarts, every acknowledged row is there and no row is half there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_node_and_loses_nothing_acknowledged() {
    let mut fs = None;
    let mut node = Node::start_prepared(|data| fs = Some(Tmpfs::mount(data, "48m")));
    let fs = fs.expect("mounted");
    let c = node.connect().await;
    c.batch_execute("CREATE TABLE f (id INT PRIMARY KEY, a TEXT, b TEXT)")
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut failed = None;
    for id in 0..100_000 {
        let sql = format!("INSERT INTO f VALUES ({id}, repeat('a', 20000), repeat('b', 20000))");
        match c.batch_execute(&sql).await {
            Ok(()) => acked.push(id),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let failed = failed.expect("the disk never filled up");
    assert!(!acked.is_empty(), "nothing was written: {failed:?}");
    let status = node
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the node kept running on a full disk: {}", node.log()));
    assert!(!status.success(), "exited with success on a full disk");
    assert!(
        node.log().contains("replication failed"),
        "the log does not say why it stopped: {}",
        node.log()
    );
    fs.resize("512m");
    node.restart();
    let c = node.connect().await;
    let rows = c
        .query("SELECT id, length(a), length(b) FROM f ORDER BY id", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", node.log()));
    let mut present = BTreeSet::new();
    for r in rows {
        let (id, a, b): (i32, i32, i32) = (r.get(0), r.get(1), r.get(2));
        assert_eq!((a, b), (20000, 20000), "row {id} is half there");
        present.insert(id);
    }
    let lost: Vec<_> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    c.batch_execute("INSERT INTO f VALUES (-1, 'x', 'y')")
        .await
        .expect("serving again after the restart");
}
