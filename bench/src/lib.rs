//! Benchmarks of tessera, run by hand (never in the test suite; tests do not time).
//!
//! - `failover` (`cargo run --release -p tessera-bench --bin failover`): a three-node
//!   cluster on this machine, writes through the two nodes that do not hold the lease,
//!   `kill -9` of the leaseholder's node; reports the time to the first successful write
//!   and the time until throughput is back to 80 % of what it was, per trial, with the
//!   median and the maximum. Results are recorded in `docs/performance.md`.
//!
//! - `compare` (`cargo build --release --bin tessera && cargo run --release -p
//!   tessera-bench --bin compare`): PostgreSQL 15 (installed with apt when missing, its
//!   own data directory, fsync and synchronous commit on) at its default isolation and
//!   at SERIALIZABLE, a single tessera node and a three-node tessera cluster, one after
//!   another; each loads the same pgbench scale and runs TPC-B at 1, 8 and 16 clients and
//!   select-only (`-S -M prepared`) at 1 and 8 clients. It prints tps, p50 and p99
//!   latency per system and the ratios to PostgreSQL, writes them as CSV and JSON, and
//!   draws the ratios as an SVG bar chart (`bench/results/compare-<time>.*`). It refuses
//!   to report when other work keeps the CPU busy (`--allow-noisy` marks such runs
//!   instead).
//!
//! - `commit_spread` (`cargo run --release -p tessera-bench --bin commit_spread`): one
//!   tessera node, a table split in two tablets; transactions of two single-row UPDATEs,
//!   both rows in one tablet or one row in each, alternating; prints p50 and p99 of each
//!   kind and the ratio of the p50s (a commit over two tablets is one parallel round,
//!   against one command for a single tablet).
//!
//! - `interference` (`cargo run --release -p tessera-bench --bin interference`): one
//!   tessera node; one session writes a 100 MB transaction (multi-row INSERTs between
//!   BEGIN and COMMIT) while four other sessions run `SELECT 1`, then the same four
//!   sessions on the idle node for as long; prints p50, p99 and the maximum of each and
//!   the ratio of the p99s (goal: at most 2).
//!
//! - `split_stall` (`cargo run --release -p tessera-bench --bin split_stall`): one
//!   tessera node with splits by size off, a table of one 64 MiB tablet, four sessions
//!   running single-row UPDATEs over it; the table is split at its middle row. Prints
//!   how long the split took, the longest UPDATE that overlapped it and the longest of
//!   an equally long window before it (goal: the split adds at most 5 ms).

use std::time::Duration;

use tessera_tests::{tessera_bin, Node};

/// Median and maximum of `values` (in the units given); `None` when empty.
pub fn median_max(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((median, v[v.len() - 1]))
}

/// The `q` quantile (0..=1) of sorted `values`; 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (fields.iter().sum(), idle)
}

/// The fraction of CPU time the machine spent busy over `window` (0..=1).
pub fn busy_fraction(window: Duration) -> f64 {
    let (t0, i0) = cpu_times();
    std::thread::sleep(window);
    let (t1, i1) = cpu_times();
    let total = t1.saturating_sub(t0);
    if total == 0 {
        return 0.0;
    }
    1.0 - i1.saturating_sub(i0) as f64 / total as f64
}

/// Start an `n`-node cluster on loopback through the CLI (`start`, then `init` on the
/// first node) and wait until every node serves SQL.
pub fn start_cluster(n: usize) -> Vec<Node> {
    let rpc = tessera_tests::member_addrs(n);
    let mut nodes: Vec<Node> = (0..n).map(|i| Node::start_member(rpc[i], &rpc)).collect();
    let init = std::process::Command::new(tessera_bin())
        .args(["init", "--host", &nodes[0].rpc_addr()])
        .output()
        .expect("tessera init");
    assert!(init.status.success(), "{init:?}");
    for node in &mut nodes {
        node.wait_sql();
    }
    nodes
}

/// A horizontal bar chart of `(label, value)` pairs as an SVG document, with a line at
/// 1.0 (parity).
pub fn svg_bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.1;
    let (left, width, row) = (220.0, 480.0, 26.0);
    let height = 60.0 + row * bars.len() as f64;
    let x = |v: f64| left + width * v / max;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
        left + width + 80.0,
        escape(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"#4a7ab5\"/>\n<text x=\"{:.1}\" y=\"{}\">{v:.2}</text>\n",
            left - 8.0,
            y + 15.0,
            escape(label),
            x(*v) - left,
            row - 8.0,
            x(*v) + 4.0,
            y + 15.0
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{0:.1}\" y1=\"34\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n</svg>\n",
        x(1.0),
        height - 10.0
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::{median_max, percentile, svg_bar_chart};

    #[test]
    fn percentiles_and_chart() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        let svg = svg_bar_chart("t <1>", &[("a".into(), 0.5), ("b".into(), 2.0)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
    }

    #[test]
    fn median_and_max() {
        assert_eq!(median_max(&[]), None);
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), Some((2.0, 3.0)));
        assert_eq!(median_max(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 4.0)));
    }
}
