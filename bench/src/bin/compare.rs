//! Side by side with PostgreSQL: pgbench workloads on PostgreSQL 15 (at its default
//! isolation and at SERIALIZABLE), a single tessera node and a three-node tessera
//! cluster, one after another on this machine. See the crate docs.
//!
//! Usage: `compare [--scale N] [--seconds S] [--out DIR] [--allow-noisy]`
//! (defaults: scale 10, 30 s per run, `bench/results`). Build tessera in release mode
//! first; the program uses the `tessera` of its own profile, or `TESSERA_BIN`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tessera_bench::{busy_fraction, percentile, start_cluster, svg_bar_chart};
use tessera_tests::{free_port, Node};

struct Options {
    scale: u32,
    seconds: u32,
    out: PathBuf,
    allow_noisy: bool,
}

fn options() -> Options {
    let mut o = Options {
        scale: 10,
        seconds: 30,
        out: PathBuf::from("bench/results"),
        allow_noisy: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--scale" => o.scale = value().parse().expect("--scale N"),
            "--seconds" => o.seconds = value().parse().expect("--seconds S"),
            "--out" => o.out = PathBuf::from(value()),
            "--allow-noisy" => {
                o.allow_noisy = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other} (see the program's docs)"),
        }
        i += 2;
    }
    o
}

/// A PostgreSQL 15 server with its own data directory on a loopback port, fsync and
/// synchronous commit on. Stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(cmd: &str) -> Command {
    // initdb and postgres refuse to run as root.
    let mut c = if unsafe_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    };
    c.stdout(std::process::Stdio::null());
    c
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    fn start() -> Postgres {
        let bin = PathBuf::from(PG_BIN);
        if !bin.join("postgres").exists() {
            eprintln!("installing postgresql-15 ...");
            let ok = Command::new("apt-get")
                .args(["install", "-y", "-qq", "postgresql-15"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "could not install postgresql-15 (apt-get install postgresql-15)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("pg-compare")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if unsafe_is_root() {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let port = free_port();
        let init = as_postgres(&format!(
            "{}/initdb -D {} -A trust -U root >/dev/null",
            bin.display(),
            data.display()
        ))
        .status()
        .unwrap();
        assert!(init.success(), "initdb failed");
        let start = as_postgres(&format!(
            "{}/pg_ctl -D {} -w -l {}/log -o \"-p {port} -k {} -c fsync=on -c synchronous_commit=on -c max_connections=50\" start",
            bin.display(),
            data.display(),
            dir.path().display(),
            dir.path().display()
        ))
        .status()
        .unwrap();
        assert!(start.success(), "PostgreSQL did not start");
        Postgres { dir, port, bin }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {} -m fast stop",
            self.bin.display(),
            self.dir.path().join("data").display()
        ))
        .status();
    }
}

/// One system under test, as pgbench reaches it.
struct Target {
    name: &'static str,
    port: u16,
    database: &'static str,
    /// PGOPTIONS for every connection (the isolation level).
    options: &'static str,
}

struct Workload {
    name: &'static str,
    args: &'static [&'static str],
    clients: u32,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "tpcb-1",
        args: &["--max-tries=10"],
        clients: 1,
    },
    Workload {
        name: "tpcb-8",
        args: &["--max-tries=10"],
        clients: 8,
    },
    Workload {
        name: "tpcb-16",
        args: &["--max-tries=10"],
        clients: 16,
    },
    Workload {
        name: "select-1",
        args: &["-S", "-M", "prepared"],
        clients: 1,
    },
    Workload {
        name: "select-8",
        args: &["-S", "-M", "prepared"],
        clients: 8,
    },
];

#[derive(Clone, Debug, Default)]
struct Result {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    noisy: bool,
}

fn pgbench(t: &Target, args: &[String], logs: Option<&Path>) -> String {
    let mut c = Command::new("pgbench");
    c.args(["-h", "127.0.0.1", "-U", "root", "-p", &t.port.to_string()])
        .args(args)
        .env("PGOPTIONS", t.options);
    if let Some(dir) = logs {
        c.arg("-l")
            .arg(format!("--log-prefix={}", dir.join("tx").display()));
    }
    let out = c.arg(t.database).output().expect("pgbench runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench {args:?} on {}:\n{text}",
        t.name
    );
    text
}

fn number_after(report: &str, label: &str) -> f64 {
    report
        .lines()
        .find(|l| l.contains(label))
        .and_then(|l| l.split(label).nth(1))
        .and_then(|v| {
            v.trim_start_matches([' ', '=', ':'])
                .split_whitespace()
                .next()
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Transaction latencies (milliseconds) from pgbench's per-transaction logs.
fn latencies(dir: &Path) -> Vec<f64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for line in std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .lines()
        {
            // client transaction latency_us script epoch_s epoch_us
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
            {
                out.push(us / 1000.0);
            }
        }
    }
    out
}

fn run(t: &Target, w: &Workload, seconds: u32, allow_noisy: bool) -> Result {
    // Other work on the machine would distort the comparison. A system just loaded may
    // still be compacting: give the machine up to two minutes to settle first.
    let mut busy = busy_fraction(Duration::from_secs(2));
    for _ in 0..60 {
        if busy <= 0.15 {
            break;
        }
        busy = busy_fraction(Duration::from_secs(2));
    }
    let noisy = busy > 0.15;
    assert!(
        !noisy || allow_noisy,
        "the machine is busy ({:.0} % CPU used by others): not reporting (use --allow-noisy to mark the run noisy instead)",
        busy * 100.0
    );
    let logs = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = w.args.iter().map(|s| s.to_string()).collect();
    args.extend([
        "-c".into(),
        w.clients.to_string(),
        "-j".into(),
        w.clients.min(2).to_string(),
        "-T".into(),
        seconds.to_string(),
    ]);
    let report = pgbench(t, &args, Some(logs.path()));
    let mut lat = latencies(logs.path());
    lat.sort_by(|a, b| a.total_cmp(b));
    Result {
        tps: number_after(&report, "tps"),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        failed: number_after(&report, "number of failed transactions") as u64,
        noisy,
    }
}

fn main() {
    let o = options();
    std::fs::create_dir_all(&o.out).expect("output folder");
    let mut results: BTreeMap<(&str, &str), Result> = BTreeMap::new();
    let started = Instant::now();
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .nth(1)
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(String::new(), |kb| format!("{} GiB", kb / 1024 / 1024))
    );
    let mut measure =
        |name: &'static str, port: u16, database: &'static str, options: &'static str| {
            let t = Target {
                name,
                port,
                database,
                options,
            };
            eprintln!("{name}: loading scale {} ...", o.scale);
            pgbench(
                &t,
                &["-i".into(), "-s".into(), o.scale.to_string(), "-q".into()],
                None,
            );
            for w in WORKLOADS {
                let r = run(&t, w, o.seconds, o.allow_noisy);
                eprintln!(
                    "{name} {}: {:.0} tps, p50 {:.2} ms, p99 {:.2} ms, {} failed{}",
                    w.name,
                    r.tps,
                    r.p50_ms,
                    r.p99_ms,
                    r.failed,
                    if r.noisy { " (noisy)" } else { "" }
                );
                results.insert((name, w.name), r);
            }
        };
    {
        let pg = Postgres::start();
        let port = pg.port;
        measure("postgres", port, "postgres", "");
        measure(
            "postgres-serializable",
            port,
            "postgres",
            "-c default_transaction_isolation=serializable",
        );
    }
    {
        let node = Node::start();
        measure("tessera-1", node.port, "tessera", "");
    }
    {
        let nodes = start_cluster(3);
        measure("tessera-3", nodes[0].port, "tessera", "");
    }

    // The report: per workload, each system and the ratios to PostgreSQL.
    let systems = [
        "postgres",
        "postgres-serializable",
        "tessera-1",
        "tessera-3",
    ];
    let mut csv = String::from("workload,system,tps,p50_ms,p99_ms,failed,noisy,tps_ratio_to_postgres,tps_ratio_to_postgres_serializable\n");
    let mut json = Vec::new();
    let mut bars = Vec::new();
    println!(
        "{:<10} {:<22} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10}",
        "workload", "system", "tps", "p50 ms", "p99 ms", "failed", "vs pg", "vs pg-ser"
    );
    for w in WORKLOADS {
        let base = results[&("postgres", w.name)].tps;
        let base_ser = results[&("postgres-serializable", w.name)].tps;
        for s in systems {
            let r = &results[&(s, w.name)];
            let ratio = if base > 0.0 { r.tps / base } else { 0.0 };
            let ratio_ser = if base_ser > 0.0 {
                r.tps / base_ser
            } else {
                0.0
            };
            println!(
                "{:<10} {:<22} {:>9.0} {:>9.2} {:>9.2} {:>7} {:>10.3} {:>10.3}{}",
                w.name,
                s,
                r.tps,
                r.p50_ms,
                r.p99_ms,
                r.failed,
                ratio,
                ratio_ser,
                if r.noisy { "  noisy" } else { "" }
            );
            csv.push_str(&format!(
                "{},{},{:.1},{:.3},{:.3},{},{},{:.4},{:.4}\n",
                w.name, s, r.tps, r.p50_ms, r.p99_ms, r.failed, r.noisy, ratio, ratio_ser
            ));
            json.push(format!(
                "{{\"workload\":\"{}\",\"system\":\"{}\",\"tps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"failed\":{},\"noisy\":{},\"tps_ratio_to_postgres\":{:.4}}}",
                w.name, s, r.tps, r.p50_ms, r.p99_ms, r.failed, r.noisy, ratio
            ));
            if s.starts_with("tessera") {
                bars.push((format!("{} {}", w.name, s), ratio));
            }
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = o.out.join(format!("compare-{stamp}"));
    std::fs::write(base.with_extension("csv"), csv).unwrap();
    std::fs::write(
        base.with_extension("json"),
        format!(
            "{{\"machine\":\"{machine}\",\"scale\":{},\"seconds\":{},\"results\":[{}]}}\n",
            o.scale,
            o.seconds,
            json.join(",")
        ),
    )
    .unwrap();
    std::fs::write(
        base.with_extension("svg"),
        svg_bar_chart(
            &format!(
                "tessera tps / PostgreSQL tps (scale {}, {machine})",
                o.scale
            ),
            &bars,
        ),
    )
    .unwrap();
    println!(
        "wrote {}.{{csv,json,svg}} after {:.0} s",
        base.display(),
        started.elapsed().as_secs_f64()
    );
}
