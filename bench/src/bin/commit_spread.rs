//! Latency of a commit that writes two tablets against one that writes one: see the
//! crate docs.
//!
//! Usage: `commit_spread [ITERATIONS]` (default 1000 of each kind). Uses the `tessera`
//! binary of the profile it was built with (or `TESSERA_BIN`).

use std::time::Instant;

use tessera_bench::percentile;
use tessera_tests::Node;

/// The far key lies in the table's second tablet, the near ones in its first.
const NEAR: [i64; 2] = [1, 2];
const FAR: i64 = 1_000_000;

/// Milliseconds per transaction updating `keys` (each row one UPDATE), sorted.
async fn run(c: &tokio_postgres::Client, keys: [i64; 2], iterations: usize) -> Vec<f64> {
    let update = c
        .prepare("UPDATE t SET v = v + 1 WHERE k = $1")
        .await
        .expect("prepare");
    let mut ms = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let began = Instant::now();
        c.batch_execute("BEGIN").await.expect("begin");
        for k in keys {
            c.execute(&update, &[&k]).await.expect("update");
        }
        c.batch_execute("COMMIT").await.expect("commit");
        ms.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    ms
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let node = Node::start();
    let c = node.connect().await;
    c.batch_execute(&format!(
        "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT NOT NULL);
         INSERT INTO t VALUES ({}, 0), ({}, 0), ({FAR}, 0);",
        NEAR[0], NEAR[1]
    ))
    .await
    .expect("create");
    c.batch_execute("ALTER TABLE t SPLIT AT VALUES (500000)")
        .await
        .expect("split");
    // Warm up both paths, then alternate so that both see the same machine.
    run(&c, NEAR, iterations / 10 + 1).await;
    run(&c, [NEAR[0], FAR], iterations / 10 + 1).await;
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        one.extend(run(&c, NEAR, iterations / 4).await);
        two.extend(run(&c, [NEAR[0], FAR], iterations / 4).await);
    }
    one.sort_by(|a, b| a.total_cmp(b));
    two.sort_by(|a, b| a.total_cmp(b));
    let (p50_1, p50_2) = (percentile(&one, 0.5), percentile(&two, 0.5));
    println!(
        "one tablet:  p50 {p50_1:.2} ms, p99 {:.2} ms ({} transactions)",
        percentile(&one, 0.99),
        one.len()
    );
    println!(
        "two tablets: p50 {p50_2:.2} ms, p99 {:.2} ms ({} transactions)",
        percentile(&two, 0.99),
        two.len()
    );
    println!("two tablets / one tablet, p50: {:.2}", p50_2 / p50_1);
}
