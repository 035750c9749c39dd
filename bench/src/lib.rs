//! Benchmarks of tessera, run by hand (never in the test suite; tests do not time).
//!
//! - `failover` (`cargo run --release -p tessera-bench --bin failover`): a three-node
//!   cluster on this machine, writes through the two nodes that do not hold the lease,
//!   `kill -9` of the leaseholder's node; reports the time to the first successful write
//!   and the time until throughput is back to 80 % of what it was, per trial, with the
//!   median and the maximum. Results are recorded in `docs/performance.md`.
//!
//! The side-by-side comparisons with PostgreSQL (pgbench TPC-B and select-only) will
//! live here too.

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

#[cfg(test)]
mod tests {
    use super::median_max;

    #[test]
    fn median_and_max() {
        assert_eq!(median_max(&[]), None);
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), Some((2.0, 3.0)));
        assert_eq!(median_max(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 4.0)));
    }
}
