//! sysbench 1.0 (Debian's package, `--db-driver=pgsql`) against a real node: prepare,
//! `oltp_read_write`, `oltp_point_select` and `oltp_insert` runs, and cleanup. sysbench
//! stops on any error other than the ones it retries (serialization failures, unique
//! violations), so a clean exit means every statement it sent was understood. Afterwards
//! the table holds what the runs left there.

use std::process::Command;

use tessera_tests::Node;

fn sysbench(node: &Node, args: &[&str]) -> String {
    let out = Command::new("sysbench")
        .args(args)
        .args([
            "--db-driver=pgsql",
            "--pgsql-host=127.0.0.1",
            "--pgsql-user=root",
            "--pgsql-db=tessera",
            "--tables=1",
            "--table-size=500",
        ])
        .arg(format!("--pgsql-port={}", node.port))
        .output()
        .expect("sysbench runs (the sysbench package is installed)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && !stdout.contains("FATAL"),
        "sysbench {args:?} failed:\n{stdout}\n{stderr}\n--- node log ---\n{}",
        node.log()
    );
    stdout
}

/// The first number after `label` in sysbench's report.
fn reported(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no \"{label}\" in:\n{report}"))
}

/// How many rows sbtest1 holds.
async fn rows(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM sbtest1", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_workloads() {
    let node = Node::start();
    sysbench(&node, &["oltp_read_write", "prepare"]);
    let c = node.connect().await;
    let count = rows(&c).await;
    assert_eq!(count, 500);

    let report = sysbench(
        &node,
        &[
            "oltp_point_select",
            "run",
            "--threads=2",
            "--events=200",
            "--time=0",
        ],
    );
    assert_eq!(reported(&report, "transactions:"), 200);
    assert_eq!(reported(&report, "ignored errors:"), 0);

    let report = sysbench(
        &node,
        &[
            "oltp_read_write",
            "run",
            "--threads=2",
            "--events=40",
            "--time=0",
        ],
    );
    assert_eq!(reported(&report, "transactions:"), 40);
    // Each transaction deletes a row and inserts it again: the count is unchanged.
    let count = rows(&c).await;
    assert_eq!(count, 500);

    let report = sysbench(
        &node,
        &[
            "oltp_insert",
            "run",
            "--threads=2",
            "--events=50",
            "--time=0",
        ],
    );
    let inserted = reported(&report, "transactions:");
    assert_eq!(inserted, 50);
    let count = rows(&c).await;
    assert_eq!(count, 550);

    sysbench(&node, &["oltp_read_write", "cleanup"]);
    let err = c
        .query_one("SELECT count(*) FROM sbtest1", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
}
