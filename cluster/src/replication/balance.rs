//! Lease balancing: spreading the leaderships (leases) of a node's groups over the nodes
//! that replicate them, so that every node serves its share of the tablets.
//!
//! ## Model
//!
//! Each node decides for the groups it leads, from what its replicas know: who leads
//! every group it has a replica of, and which voters of the groups it leads are caught
//! up (their log matches the commit index). A split leaves the new tablet's lease with
//! the parent's leaseholder, so without balancing one node ends up serving every tablet
//! of a table that grew or was split by hand.
//!
//! ## Rule
//!
//! A node that holds at least two more leases than a caught-up voter of one of its
//! groups hands that group's leadership to the voter with the fewest leases (raft-rs
//! leader transfer), at most one group per round. Every move lowers the spread of the
//! counts, so the rounds converge and then stop: two nodes never trade a lease back and
//! forth (a difference of one is left alone).
//!
//! ## Safety
//!
//! A transfer is an ordinary leadership change: the new leaseholder's timestamp cache
//! and lease floor start above everything the old one served ([`crate::store`], lease
//! floors), and requests in flight on the old one fail retryably. Balancing only ever
//! asks; raft-rs abandons a transfer that does not complete within an election timeout.

use std::collections::BTreeMap;

/// The group whose leadership node `me` should hand over, and to whom: `leaders` maps
/// every group known here to its leader, `caught_up(g)` lists the voters of a group `me`
/// leads that are caught up. `None` when the leases are balanced as far as `me` can move
/// them.
pub fn lease_to_move(
    me: u64,
    leaders: &BTreeMap<u64, u64>,
    caught_up: &dyn Fn(u64) -> Vec<u64>,
) -> Option<(u64, u64)> {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for leader in leaders.values() {
        *count.entry(*leader).or_default() += 1;
    }
    let mine = count.get(&me).copied().unwrap_or(0);
    let mut best: Option<(usize, u64, u64)> = None;
    for (&group, _) in leaders.iter().filter(|(_, l)| **l == me) {
        for to in caught_up(group).into_iter().filter(|n| *n != me) {
            let theirs = count.get(&to).copied().unwrap_or(0);
            if theirs + 2 <= mine && best.is_none_or(|(fewest, _, _)| theirs < fewest) {
                best = Some((theirs, group, to));
            }
        }
    }
    best.map(|(_, group, to)| (group, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the rule on every node until no node moves anything; the final counts and
    /// the number of moves.
    fn settle(nodes: &[u64], mut leaders: BTreeMap<u64, u64>) -> (BTreeMap<u64, usize>, usize) {
        let mut moves = 0;
        loop {
            let mut moved = false;
            for &me in nodes {
                let all = nodes.to_vec();
                if let Some((g, to)) = lease_to_move(me, &leaders, &|_| all.clone()) {
                    assert_eq!(leaders[&g], me, "moved a group it does not lead");
                    leaders.insert(g, to);
                    moves += 1;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
            assert!(moves < 1000, "the rule does not converge");
        }
        let mut count = BTreeMap::new();
        for l in leaders.values() {
            *count.entry(*l).or_insert(0) += 1;
        }
        (count, moves)
    }

    #[test]
    fn leases_of_one_node_spread_evenly_and_then_stay() {
        let leaders: BTreeMap<u64, u64> = (1..=17).map(|g| (g, 1)).collect();
        let (count, moves) = settle(&[1, 2, 3], leaders.clone());
        assert_eq!(count.values().sum::<usize>(), 17);
        let (lo, hi) = (count.values().min().unwrap(), count.values().max().unwrap());
        assert!(hi - lo <= 1, "{count:?}");
        assert_eq!(count.len(), 3, "{count:?}");
        // Exactly as many moves as leases that had to leave node 1.
        assert_eq!(moves, 17 - count[&1]);
        // Balanced leases stay put.
        let balanced: BTreeMap<u64, u64> = (1..=6).map(|g| (g, g % 3 + 1)).collect();
        assert_eq!(settle(&[1, 2, 3], balanced).1, 0);
    }

    #[test]
    fn a_difference_of_one_is_left_alone_and_only_caught_up_voters_receive() {
        let leaders = BTreeMap::from([(1, 1), (2, 1), (3, 2)]);
        assert_eq!(lease_to_move(1, &leaders, &|_| vec![1, 2, 3]), Some((1, 3)));
        let leaders = BTreeMap::from([(1, 1), (2, 1), (3, 2), (4, 3)]);
        assert_eq!(lease_to_move(1, &leaders, &|_| vec![1, 2, 3]), None);
        // Node 3 holds nothing but is behind on every group: nothing moves to it, and
        // node 2 is only one lease behind.
        let leaders = BTreeMap::from([(1, 1), (2, 1), (3, 2)]);
        assert_eq!(lease_to_move(1, &leaders, &|_| vec![1, 2]), None);
        // A node leads nothing: it has nothing to move.
        assert_eq!(lease_to_move(3, &leaders, &|_| vec![1, 2, 3]), None);
    }
}
