//! How much one large transaction slows everyone else: `SELECT 1` latency on other
//! sessions while one session writes a 100 MB transaction, against the same sessions
//! on an idle node. See the crate docs.
//!
//! Usage: `interference [MEGABYTES] [PROBES]` (defaults: 100 MB, 4 probe sessions).
//! Uses the `tessera` binary of the profile it was built with (or `TESSERA_BIN`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_bench::percentile;
use tessera_tests::Node;

/// Rows per INSERT statement and bytes per row of the large transaction.
const ROWS_PER_STATEMENT: usize = 500;
const ROW_BYTES: usize = 1000;

/// `SELECT 1` on `c` until `stop`, each latency in milliseconds.
async fn probe(c: tokio_postgres::Client, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut ms = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        c.simple_query("SELECT 1").await.expect("SELECT 1");
        ms.push(began.elapsed().as_secs_f64() * 1000.0);
        // A few hundred probes a second per session: the probes themselves must not
        // be the load.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ms
}

/// Run `probes` probe sessions for as long as `during` takes; their latencies, sorted.
async fn measure<F: std::future::Future<Output = ()>>(
    node: &Node,
    probes: usize,
    during: F,
) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..probes {
        let c = node.connect().await;
        handles.push(tokio::spawn(probe(c, stop.clone())));
    }
    during.await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("probe session"));
    }
    all.sort_by(|a, b| a.total_cmp(b));
    all
}

/// One transaction inserting about `megabytes` MB, in statements of
/// [`ROWS_PER_STATEMENT`] rows.
async fn large_transaction(c: &tokio_postgres::Client, megabytes: usize) {
    let rows = megabytes * 1_000_000 / ROW_BYTES;
    let filler = "x".repeat(ROW_BYTES);
    c.batch_execute("BEGIN").await.expect("begin");
    let mut next = 0;
    while next < rows {
        let n = ROWS_PER_STATEMENT.min(rows - next);
        let values: Vec<String> = (next..next + n)
            .map(|i| format!("({i}, '{filler}')"))
            .collect();
        c.batch_execute(&format!("INSERT INTO big VALUES {}", values.join(",")))
            .await
            .expect("insert");
        next += n;
    }
    c.batch_execute("COMMIT").await.expect("commit");
}

fn report(name: &str, ms: &[f64]) -> (f64, f64) {
    let (p50, p99) = (percentile(ms, 0.5), percentile(ms, 0.99));
    println!(
        "{name:<28} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {:>8.2} ms  ({} probes)",
        ms.last().copied().unwrap_or(0.0),
        ms.len()
    );
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let megabytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let probes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let node = Node::start();
    let writer = node.connect().await;
    writer
        .batch_execute("CREATE TABLE big (k BIGINT PRIMARY KEY, v TEXT NOT NULL)")
        .await
        .expect("create");
    let began = Instant::now();
    let mut took = Duration::ZERO;
    let during = measure(&node, probes, async {
        large_transaction(&writer, megabytes).await;
        took = began.elapsed();
    })
    .await;
    // The same probes on the idle node, for as long.
    let idle = measure(
        &node,
        probes,
        tokio::time::sleep(took.max(Duration::from_secs(5))),
    )
    .await;
    println!(
        "one session wrote {megabytes} MB in one transaction in {:.1} s; {probes} other sessions ran SELECT 1",
        took.as_secs_f64()
    );
    let (_, idle_p99) = report("idle", &idle);
    let (_, busy_p99) = report("during the large transaction", &during);
    println!(
        "p99 during / p99 idle: {:.2} (goal: at most 2)",
        busy_p99 / idle_p99.max(f64::MIN_POSITIVE)
    );
}
