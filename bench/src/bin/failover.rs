//! Failover time of a three-node cluster: see the crate docs.
//!
//! Usage: `failover [TRIALS]` (default 5). Uses the `tessera` binary of the profile it
//! was built with (or `TESSERA_BIN`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_bench::{median_max, start_cluster};
use tessera_cluster::control::{control_call, ControlRequest, ControlResponse};
use tessera_tests::Node;

/// Outcomes of writes: (when the write was sent, succeeded, when the answer came).
type Log = Arc<Mutex<Vec<(Instant, bool, Instant)>>>;

async fn writer(url: String, id: usize, stop: Arc<AtomicBool>, log: Log) {
    let mut i: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let k = id as i64 * 10_000_000 + i;
            let sent = Instant::now();
            let ok = c
                .execute("INSERT INTO w VALUES ($1, 'x')", &[&k])
                .await
                .is_ok();
            log.lock().unwrap().push((sent, ok, Instant::now()));
            if c.is_closed() {
                break;
            }
        }
    }
}

fn leaseholder(node: &Node) -> Option<u64> {
    let addr = node.rpc_addr().parse().ok()?;
    match control_call(addr, &ControlRequest::Status, Duration::from_secs(2)).ok()? {
        ControlResponse::Status { leaseholder, .. } => leaseholder,
        _ => None,
    }
}

/// One trial: (seconds from the kill until a write sent after it succeeds,
/// seconds until throughput is back to 80 % of its level before the kill).
async fn trial() -> (f64, f64) {
    let mut nodes = start_cluster(3);
    // Create the table once the first lease is up, then let both joiners become voters.
    loop {
        let c = nodes[0].connect().await;
        if c.batch_execute("CREATE TABLE w (k BIGINT PRIMARY KEY, v TEXT)")
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = (leaseholder(&nodes[0]).expect("a leaseholder") - 1) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    let writers: Vec<_> = (0..3)
        .filter(|i| *i != victim)
        .map(|i| tokio::spawn(writer(nodes[i].url(), i, stop.clone(), log.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = Instant::now();
    nodes[victim].kill9();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let log = log.lock().unwrap().clone();
    let before = log
        .iter()
        .filter(|(t, ok, _)| {
            *ok && *t < killed && killed.duration_since(*t) <= Duration::from_secs(2)
        })
        .count() as f64
        / 2.0;
    let first = log
        .iter()
        .filter(|(t, ok, _)| *ok && *t > killed)
        .map(|(_, _, done)| done.duration_since(killed).as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    // The first 250 ms window after the kill whose rate is 80 % of the rate before.
    let window = 0.25;
    let mut recovered = f64::INFINITY;
    let mut start = 0.0;
    while start < 10.0 {
        let n = log
            .iter()
            .filter(|(t, ok, _)| {
                let s = t.saturating_duration_since(killed).as_secs_f64();
                *ok && *t > killed && s >= start && s < start + window
            })
            .count() as f64;
        if n / window >= 0.8 * before {
            recovered = start + window;
            break;
        }
        start += window;
    }
    (first, recovered)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let mut firsts = Vec::new();
    let mut recoveries = Vec::new();
    for t in 1..=trials {
        let (first, recovered) = trial().await;
        println!(
            "trial {t}: first write after {first:.2} s, throughput back after {recovered:.2} s"
        );
        firsts.push(first);
        recoveries.push(recovered);
    }
    if let (Some((m1, x1)), Some((m2, x2))) = (median_max(&firsts), median_max(&recoveries)) {
        println!("first write:     median {m1:.2} s, max {x1:.2} s");
        println!("throughput back: median {m2:.2} s, max {x2:.2} s");
    }
}
