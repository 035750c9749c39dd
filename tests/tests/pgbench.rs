//! pgbench 15, unmodified, against a real node: `pgbench -i -s 10` with the default
//! steps (a million accounts arrive by COPY), then TPC-B runs in each query mode with
//! eight clients on two threads and `--max-tries=10`, select-only and simple-update runs;
//! and initialisation with every step (`-I dtGvpf`: server-side generation, foreign
//! keys). Conflicts must surface only as retries (pgbench aborts a client on any other
//! error), fewer than 1 % of the transactions may use up their tries, and the TPC-B
//! invariant must hold afterwards.

use std::process::Command;

use tessera_tests::Node;

/// Eight clients on two threads, 25 transactions each.
const LOAD: [&str; 6] = ["-c", "8", "-j", "2", "-t", "25"];
/// Four clients, for the scale-1 run whose one branch row every transaction updates.
const SMALL_LOAD: [&str; 6] = ["-c", "4", "-j", "2", "-t", "25"];

fn pgbench(node: &Node, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-p",
            &node.port.to_string(),
        ])
        .args(args)
        .arg("tessera")
        .output()
        .expect("pgbench runs (postgresql-client is installed)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed:\n{stdout}\n{stderr}\n--- node log ---\n{}",
        node.log()
    );
    stdout + &stderr
}

/// The number after `label` in pgbench's report.
fn report_number(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no \"{label}\" in:\n{report}"));
    line.split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line}"))
}

/// sum(abalance), sum(tbalance), sum(bbalance), sum(delta).
async fn sums(c: &tokio_postgres::Client) -> [i64; 4] {
    let r = c
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts), \
                    (SELECT sum(tbalance) FROM pgbench_tellers), \
                    (SELECT sum(bbalance) FROM pgbench_branches), \
                    (SELECT sum(delta) FROM pgbench_history)",
            &[],
        )
        .await
        .unwrap();
    std::array::from_fn(|i| r.get(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_init_and_tpcb_runs_keep_the_invariant() {
    let node = Node::start();
    let init = pgbench(&node, &["-i", "-s", "10"]);
    assert!(init.contains("done in"), "{init}");
    let c = node.connect().await;
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM pgbench_accounts").await,
        1_000_000
    );
    assert_eq!(count("SELECT count(*) FROM pgbench_tellers").await, 100);
    assert_eq!(count("SELECT count(*) FROM pgbench_branches").await, 10);
    // The primary keys were added (`p` step): a duplicate is refused.
    let dup = c
        .execute(
            "INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(dup.code().map(|c| c.code()), Some("23505"));

    let (mut transactions, mut failures) = (0, 0);
    for mode in ["simple", "extended", "prepared"] {
        // The first run vacuums and truncates the (empty) history as usual; the others
        // keep the history (`-n`) so that the invariant covers all of them.
        let mut args = vec!["-M", mode, "--max-tries=10"];
        args.extend(LOAD);
        if mode != "simple" {
            args.push("-n");
        }
        let report = pgbench(&node, &args);
        let processed = report_number(&report, "number of transactions actually processed");
        let failed = if report.contains("number of failed transactions") {
            report_number(&report, "number of failed transactions")
        } else {
            0
        };
        assert_eq!(processed + failed, 200, "{mode}:\n{report}");
        transactions += processed;
        failures += failed;
    }
    assert!(
        failures * 100 < transactions + failures,
        "{failures} of {} transactions failed",
        transactions + failures
    );
    let history = count("SELECT count(*) FROM pgbench_history").await;
    assert_eq!(history as u64, transactions);
    let [a, t, b, d] = sums(&c).await;
    assert!(
        a == t && t == b && b == d,
        "TPC-B sums differ: {a} {t} {b} {d}"
    );

    // Select-only and the simple update (no tellers or branches) keep their parts.
    for script in [["-S", "-M", "prepared"], ["-N", "-M", "extended"]] {
        let mut args = script.to_vec();
        args.extend(LOAD);
        args.extend(["-n", "--max-tries=10"]);
        pgbench(&node, &args);
    }
    let [a2, t2, b2, d2] = sums(&c).await;
    assert_eq!(a2, d2, "sum(abalance) = sum(delta)");
    assert_eq!((t2, b2), (t, b), "-N leaves tellers and branches alone");

    // Every init step: server-side generation and foreign keys, which then hold.
    let init = pgbench(&node, &["-i", "-I", "dtGvpf", "-s", "1"]);
    assert!(init.contains("creating foreign keys"), "{init}");
    let fks = count("SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'f'").await;
    assert_eq!(fks, 5);
    let mut args = vec!["-M", "prepared", "--max-tries=10", "-n"];
    args.extend(SMALL_LOAD);
    pgbench(&node, &args);
    let err = c
        .execute("DELETE FROM pgbench_branches WHERE bid = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("23503"));
    let err = c
        .execute(
            "INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 100001, 0)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("23503"));
    let [a3, t3, b3, d3] = sums(&c).await;
    assert!(
        a3 == t3 && t3 == b3 && b3 == d3,
        "TPC-B sums differ: {a3} {t3} {b3} {d3}"
    );
}
