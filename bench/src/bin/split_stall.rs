//! How long a split blocks writes: single-row UPDATEs run on a table of one 64 MiB
//! tablet while it is split at its middle row; the longest UPDATE that overlapped the
//! split, against the longest one of an equally long window before it. See the crate
//! docs.
//!
//! Usage: `split_stall [MEGABYTES] [WRITERS]` (defaults: 64 MiB, 4 writer sessions).
//! Uses the `tessera` binary of the profile it was built with (or `TESSERA_BIN`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_bench::percentile;
use tessera_tests::Node;

const ROW_BYTES: usize = 1000;
const ROWS_PER_STATEMENT: usize = 500;

/// A write: when it began and ended, relative to the start of the run.
type Span = (Duration, Duration);

/// UPDATEs of rows spread over the table until `stop`; when each ran.
async fn writer(
    c: tokio_postgres::Client,
    rows: i64,
    seed: u64,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Span> {
    let update = c
        .prepare("UPDATE t SET n = n + 1 WHERE k = $1")
        .await
        .expect("prepare");
    let mut state = seed | 1;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // xorshift: a cheap spread of keys, no dependency needed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let k = (state % rows as u64) as i64;
        let began = t0.elapsed();
        match c.execute(&update, &[&k]).await {
            Ok(_) => {}
            // A conflict with another writer's row is retried by the next loop.
            Err(e) if tessera_tests::sqlstate(&e).as_deref() == Some("40001") => {}
            Err(e) => panic!("update: {e}"),
        }
        out.push((began, t0.elapsed()));
    }
    out
}

/// The longest write (milliseconds) among `spans` that overlap `[from, to]`.
fn longest(spans: &[Span], from: Duration, to: Duration) -> (f64, usize) {
    let overlapping: Vec<f64> = spans
        .iter()
        .filter(|(b, e)| *e >= from && *b <= to)
        .map(|(b, e)| (*e - *b).as_secs_f64() * 1000.0)
        .collect();
    (
        overlapping.iter().copied().fold(0.0, f64::max),
        overlapping.len(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let megabytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let writers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    // Splits by size would cut the table while it loads: only the measured split runs.
    let node = Node::start_with(&["--range-max-bytes", &(16u64 << 30).to_string()]);
    let c = node.connect().await;
    c.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY, n BIGINT NOT NULL, v TEXT NOT NULL)")
        .await
        .expect("create");
    let rows = (megabytes << 20) / ROW_BYTES;
    let filler = "x".repeat(ROW_BYTES);
    let loading = Instant::now();
    let mut next = 0;
    while next < rows {
        let n = ROWS_PER_STATEMENT.min(rows - next);
        let values: Vec<String> = (next..next + n)
            .map(|i| format!("({i}, 0, '{filler}')"))
            .collect();
        c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(",")))
            .await
            .expect("load");
        next += n;
    }
    eprintln!(
        "loaded {rows} rows ({megabytes} MiB) in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for i in 0..writers {
        let w = node.connect().await;
        handles.push(tokio::spawn(writer(
            w,
            rows as i64,
            0x9E37_79B9 * (i as u64 + 1),
            t0,
            stop.clone(),
        )));
    }
    // Writes settle, then a baseline window, then the split.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let split_from = t0.elapsed();
    c.batch_execute(&format!("ALTER TABLE t SPLIT AT VALUES ({})", rows / 2))
        .await
        .expect("split");
    let split_to = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut spans = Vec::new();
    for h in handles {
        spans.extend(h.await.expect("writer"));
    }
    let window = split_to - split_from;
    let base_from = split_from.saturating_sub(Duration::from_secs(1) + window);
    let (base_max, base_n) = longest(&spans, base_from, base_from + window);
    let (split_max, split_n) = longest(&spans, split_from, split_to);
    let mut all: Vec<f64> = spans
        .iter()
        .map(|(b, e)| (*e - *b).as_secs_f64() * 1000.0)
        .collect();
    all.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{writers} writers, {} UPDATEs: p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
    println!(
        "the split of the {megabytes} MiB tablet took {:.2} ms",
        window.as_secs_f64() * 1000.0
    );
    println!("longest UPDATE overlapping the split:  {split_max:.2} ms ({split_n} UPDATEs)");
    println!("longest UPDATE of a window as long before it: {base_max:.2} ms ({base_n} UPDATEs)");
    println!(
        "split stall (longest during the split less the baseline's): {:.2} ms (goal: at most 5)",
        (split_max - base_max).max(0.0)
    );
}
