//! Deterministic Raft scenarios: whole clusters of `RaftStore`s in one process, on the
//! in-memory network, driven step by step (deliver, tick, handle ready). Every scenario
//! states its claim first. A step is one tick on every live node; with the default
//! configuration an election takes 10–20 steps.

mod common;

use common::{key, put_cmd, Cluster};
use raft::prelude::ConfChangeType;
use tessera_cluster::replication::{Command, GroupDesc, ProposeError, SplitTrigger};
use tessera_storage::mvcc::intent_key;
use tessera_storage::{Cf, WriteBatch};

/// Claim: a fresh group elects exactly one leader, and a command proposed there is applied,
/// byte for byte, on every replica; followers refuse proposals and name the leader.
#[test]
fn elects_one_leader_and_replicates() {
    let mut c = Cluster::new(3, &[1], 1);
    let leader = c.elect(1);
    for i in 0..10 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, 0..10)));
    assert_eq!(c.data(1, 1), c.data(2, 1));
    assert_eq!(c.data(1, 1), c.data(3, 1));
    assert_eq!(c.value(2, &key(1, 3)), Some(b"value3".to_vec()));
    assert_eq!(c.applied_ids(leader, 1), (0..10).collect::<Vec<_>>());
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let err = c
        .stores
        .get_mut(&follower)
        .unwrap()
        .propose(1, &put_cmd(1, 99))
        .unwrap_err();
    assert_eq!(
        err,
        ProposeError::NotLeader {
            group: 1,
            leader: Some(leader)
        }
    );
}

/// Claim: several groups on the same stores are independent: each has its own log and
/// leader, and a command of one group only writes that group's span.
#[test]
fn groups_on_one_store_are_independent() {
    let mut c = Cluster::new(3, &[1, 2, 3], 2);
    for g in 1..=3 {
        c.elect(g);
    }
    for g in 1..=3 {
        for i in 0..5 {
            c.propose(g, &put_cmd(g, i + g * 100)).unwrap();
        }
    }
    assert!(c.run_until(100, |c| (1..=3).all(|g| c.all_have(
        &[1, 2, 3],
        g,
        (0..5).map(|i| i + g * 100)
    ))));
    for g in 1..=3 {
        assert_eq!(c.data(1, g).len(), 5, "group {g}");
        assert_eq!(c.stores[&1].applied_index(g), c.stores[&2].applied_index(g));
    }
}

/// Claim: when the leader dies, the other two elect a new leader within an election
/// timeout or two, keep every committed command, and accept new ones; the old leader
/// restarts from its disk and catches up.
#[test]
fn leader_loss_elects_new_leader_and_keeps_commits() {
    let mut c = Cluster::new(3, &[1], 3);
    let old = c.elect(1);
    for i in 0..5 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, 0..5)));
    c.stop(old);
    let new = c.elect(1);
    assert_ne!(new, old);
    for i in 5..10 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    let alive: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
    assert!(c.run_until(100, |c| c.all_have(&alive, 1, 0..10)));
    c.start(old);
    assert!(c.run_until(200, |c| c.all_have(&[old], 1, 0..10)));
    assert_eq!(c.data(old, 1), c.data(new, 1));
}

/// Claim: a leader cut off from the majority commits nothing (its proposals are never
/// applied anywhere) and steps down (check-quorum); the majority elects a leader and
/// commits; after the partition heals everyone converges on the majority's log.
#[test]
fn minority_side_cannot_commit() {
    let mut c = Cluster::new(3, &[1], 4);
    let old = c.elect(1);
    let others: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
    c.net.isolate(old, &others);
    c.stores
        .get_mut(&old)
        .unwrap()
        .propose(1, &put_cmd(1, 666))
        .unwrap();
    // The isolated leader steps down once it misses a quorum for an election timeout.
    assert!(c.run_until(200, |c| !c.stores[&old].is_leader(1)));
    let new = loop {
        c.step();
        if let Some(n) = others.iter().find(|n| c.stores[n].is_leader(1)) {
            break *n;
        }
    };
    c.stores
        .get_mut(&new)
        .unwrap()
        .propose(1, &put_cmd(1, 7))
        .unwrap();
    assert!(c.run_until(100, |c| c.all_have(&others, 1, [7])));
    assert!(c.value(old, &key(1, 7)).is_none());
    c.net.heal();
    assert!(c.run_until(300, |c| c.all_have(&[1, 2, 3], 1, [7])));
    for n in 1..=3 {
        assert!(
            c.value(n, &key(1, 666)).is_none(),
            "node {n} applied a proposal made without a quorum"
        );
    }
}

/// Claim: on a network that drops 20% of messages, duplicates 10% and reorders the rest,
/// every replica still applies the same commands in the same order.
#[test]
fn lossy_reordering_network_converges() {
    let mut c = Cluster::new(3, &[1], 5);
    c.elect(1);
    c.net.set_faults(20, 10, true);
    let mut next = 0;
    for _ in 0..2000 {
        if next < 30 && c.propose(1, &put_cmd(1, next)).is_ok() {
            next += 1;
        }
        c.step();
        if next == 30 && c.all_have(&[1, 2, 3], 1, 0..30) {
            break;
        }
    }
    // Proposals made to a leader that lost its term may be gone; those that were applied
    // are applied everywhere, in one order.
    c.net.set_faults(0, 0, false);
    assert!(c.run_until(300, |c| {
        let a = c.stores[&1].applied_index(1);
        a == c.stores[&2].applied_index(1) && a == c.stores[&3].applied_index(1)
    }));
    let (sent, dropped) = c.net.counts();
    assert!(dropped > 0 && sent > dropped, "faults were not injected");
    let ids = |n| c.applied_ids(n, 1);
    assert!(!ids(1).is_empty());
    assert_eq!(ids(1), ids(2));
    assert_eq!(ids(1), ids(3));
    assert_eq!(c.data(1, 1), c.data(2, 1));
    assert_eq!(c.data(1, 1), c.data(3, 1));
}

/// Claim: a cluster restarted from disk keeps its log, applied index and data, applies
/// nothing twice, elects a leader and accepts new commands.
#[test]
fn restart_from_disk_resumes_after_applied() {
    let mut c = Cluster::new(3, &[1], 6);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, 0..5)));
    c.run(5);
    let before: Vec<Option<u64>> = (1..=3).map(|n| c.stores[&n].applied_index(1)).collect();
    for n in 1..=3 {
        c.stop(n);
    }
    c.applied.clear();
    for n in 1..=3 {
        c.start(n);
    }
    let after: Vec<Option<u64>> = (1..=3).map(|n| c.stores[&n].applied_index(1)).collect();
    assert_eq!(before, after);
    c.elect(1);
    c.propose(1, &put_cmd(1, 5)).unwrap();
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, [5])));
    for n in 1..=3 {
        assert_eq!(
            c.applied_ids(n, 1),
            vec![5],
            "node {n} re-applied old commands"
        );
        assert_eq!(c.data(n, 1).len(), 6);
    }
}

/// Claim: a replica that was down while the others truncated their logs past what it
/// has catches up from a snapshot of the group's data, and then follows the log again.
#[test]
fn truncated_log_catches_up_by_snapshot() {
    let mut c = Cluster::new(3, &[1], 7);
    let leader = c.elect(1);
    let lagging = (1..=3).find(|n| *n != leader).unwrap();
    c.stop(lagging);
    for i in 0..20 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    let live: Vec<u64> = (1..=3).filter(|n| *n != lagging).collect();
    assert!(c.run_until(100, |c| c.all_have(&live, 1, 0..20)));
    let mut compacted = u64::MAX;
    for &n in &live {
        let applied = c.stores[&n].applied_index(1).unwrap();
        c.stores.get_mut(&n).unwrap().compact(1, applied).unwrap();
        assert_eq!(c.stores[&n].truncated_index(1), Some(applied));
        compacted = compacted.min(applied);
    }
    c.start(lagging);
    assert!(c.run_until(300, |c| c.all_have(&[lagging], 1, 0..20)));
    assert!(
        c.stores[&lagging].truncated_index(1).unwrap() >= compacted,
        "caught up from the log, not from a snapshot"
    );
    c.propose(1, &put_cmd(1, 20)).unwrap();
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, [20])));
    assert_eq!(c.data(lagging, 1), c.data(leader, 1));
}

/// Claim: a new node joins as a learner, receives the group's data, is promoted to voter,
/// and the group then survives the loss of an original member with the new one in the
/// quorum.
#[test]
fn a_learner_joins_and_is_promoted() {
    let mut c = Cluster::new(3, &[1], 8);
    c.elect(1);
    for i in 0..10 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, 0..10)));
    c.add_empty_replica(4, 1);
    c.change_members(1, &[(ConfChangeType::AddLearnerNode, 4)]);
    assert!(c.run_until(300, |c| c.all_have(&[4], 1, 0..10)));
    let leader = c.change_members(1, &[(ConfChangeType::AddNode, 4)]);
    assert!(c.run_until(100, |c| (1..=4)
        .all(|n| c.stores[&n].voters(1).contains(&4))));
    // With four voters the quorum is three: losing one original member still leaves a
    // quorum only because node 4 votes.
    let gone = (1..=3).find(|n| *n != leader).unwrap();
    c.stop(gone);
    c.elect(1);
    c.propose(1, &put_cmd(1, 10)).unwrap();
    let rest: Vec<u64> = (1..=4).filter(|n| *n != gone).collect();
    assert!(c.run_until(200, |c| c.all_have(&rest, 1, [10])));
}

/// Claim: a read is confirmed (ReadIndex) only by a leader that still has a quorum; a
/// leader cut off from the others never confirms one, even before it steps down, while
/// the majority side confirms reads at an index that covers its latest commit.
#[test]
fn reads_are_confirmed_only_with_a_quorum() {
    let mut c = Cluster::new(3, &[1], 9);
    let old = c.elect(1);
    c.propose(1, &put_cmd(1, 1)).unwrap();
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, [1])));
    let others: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
    c.net.isolate(old, &others);
    c.stores.get_mut(&old).unwrap().read_index(1, 77).unwrap();
    let mut confirmed_on_old = Vec::new();
    for _ in 0..200 {
        c.step();
        confirmed_on_old.extend(c.stores.get_mut(&old).unwrap().take_read_states());
    }
    assert!(confirmed_on_old.is_empty(), "{confirmed_on_old:?}");
    let new = *others
        .iter()
        .find(|n| c.stores[n].is_leader(1))
        .expect("new leader");
    c.stores
        .get_mut(&new)
        .unwrap()
        .propose(1, &put_cmd(1, 2))
        .unwrap();
    assert!(c.run_until(100, |c| c.all_have(&others, 1, [2])));
    let follower = *others.iter().find(|n| **n != new).unwrap();
    c.stores
        .get_mut(&follower)
        .unwrap()
        .read_index(1, 78)
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        c.step();
        got.extend(c.stores.get_mut(&follower).unwrap().take_read_states());
        if !got.is_empty() {
            break;
        }
    }
    let (group, id, index) = got[0];
    assert_eq!((group, id), (1, 78));
    let written_at = c.applied[&new]
        .iter()
        .find(|a| a.group == 1 && a.id == 2)
        .unwrap()
        .index;
    assert!(
        index >= written_at,
        "read index {index} misses the write at {written_at}"
    );
}

/// Claim: a read asked of a new leader before it has committed an entry of its own term
/// (which raft-rs would drop) is held and confirmed once that entry commits.
#[test]
fn a_read_asked_right_after_election_is_confirmed() {
    let mut c = Cluster::new(3, &[1], 13);
    let leader = c.elect(1);
    let first_of_term = c.stores[&leader].last_index(1).unwrap();
    assert!(
        c.stores[&leader].commit_index(1).unwrap() < first_of_term,
        "the scenario needs the leader's first entry still uncommitted"
    );
    c.stores.get_mut(&leader).unwrap().read_index(1, 5).unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        c.step();
        got.extend(c.stores.get_mut(&leader).unwrap().take_read_states());
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "the read was dropped");
    assert_eq!((got[0].0, got[0].1), (1, 5));
    assert!(
        got[0].2 >= first_of_term,
        "confirmed at {} before the leader's own entry {first_of_term}",
        got[0].2
    );
}

/// Claim: replacing a member in one step (add node 4 and remove node 3 at once) goes
/// through joint consensus; afterwards the group commits with {1, 2, 4}, the removed node
/// is no longer a voter anywhere, and its absence does not stop the group.
#[test]
fn joint_consensus_replaces_a_member() {
    let mut c = Cluster::new(3, &[1], 10);
    c.elect(1);
    for i in 0..5 {
        c.propose(1, &put_cmd(1, i)).unwrap();
    }
    assert!(c.run_until(100, |c| c.all_have(&[1, 2, 3], 1, 0..5)));
    c.add_empty_replica(4, 1);
    // Node 4 first catches up as a learner, so the joint configuration can commit.
    c.change_members(1, &[(ConfChangeType::AddLearnerNode, 4)]);
    assert!(c.run_until(300, |c| c.all_have(&[4], 1, 0..5)));
    c.change_members(
        1,
        &[
            (ConfChangeType::AddNode, 4),
            (ConfChangeType::RemoveNode, 3),
        ],
    );
    // The joint configuration is entered and then left automatically.
    assert!(c.run_until(300, |c| [1, 2, 4].iter().all(|n| {
        let v = c.stores[n].voters(1);
        v.contains(&4) && !v.contains(&3) && !c.stores[n].in_joint(1)
    })));
    c.stop(3);
    c.elect(1);
    c.propose(1, &put_cmd(1, 5)).unwrap();
    assert!(c.run_until(300, |c| c.all_have(&[1, 2, 4], 1, [5])));
}

/// Claim: a new leader names itself leaseholder (in what the driver publishes, which
/// gates every read and commit) only once it has applied an entry of its own term.
/// Here the old leader acknowledged a write that a quorum had logged and died before
/// telling the others it was committed: the next leader holds the write but learns that
/// it is committed only when its own first entry commits, and until it has applied it
/// its state lacks an acknowledged write.
#[test]
fn a_new_leader_serves_only_after_applying_what_its_predecessor_committed() {
    let mut c = Cluster::new(3, &[1], 21);
    let old = c.elect(1);
    let others: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
    let published = |c: &Cluster, n: u64| c.stores[&n].leaders().find(|(g, _)| *g == 1);
    assert!(c.run_until(100, |c| (1..=3)
        .all(|n| published(c, n).is_some_and(|(_, (l, _))| l == old))));
    c.propose(1, &put_cmd(1, 7)).unwrap();
    // The old leader sends the entry, the followers log and acknowledge it, the old
    // leader commits and applies it: the write is acknowledged.
    c.step_node(old);
    for &n in &others {
        c.step_node(n);
    }
    c.step_node(old);
    assert!(
        c.applied_ids(old, 1).contains(&7),
        "the write was not acknowledged"
    );
    // It dies before the followers hear that the entry is committed.
    c.stop(old);
    for &n in &others {
        c.net.take(n);
    }
    let mut leader_without_the_write = false;
    let mut serving = None;
    for _ in 0..300 {
        c.step();
        for &n in &others {
            let applied = c.applied_ids(n, 1).contains(&7);
            if c.stores[&n].is_leader(1) && !applied {
                leader_without_the_write = true;
            }
            if published(&c, n).is_some_and(|(_, (l, _))| l == n) {
                assert!(
                    applied,
                    "node {n} serves as leaseholder without an acknowledged write"
                );
                serving = Some(n);
            }
        }
        if serving.is_some() {
            break;
        }
    }
    assert!(
        leader_without_the_write,
        "the scenario needs a leader that has not applied the write yet"
    );
    assert!(serving.is_some(), "no new leader began to serve");
}

fn whole() -> GroupDesc {
    GroupDesc {
        id: 1,
        start: Vec::new(),
        end: vec![0xFF, 0xFF, 0xFF, 0xFF],
        generation: 1,
    }
}

fn split_cmd(id: u64, right: u64, key: &[u8]) -> Command {
    Command {
        id,
        writes: WriteBatch::new(),
        split: Some(SplitTrigger {
            right,
            key: key.to_vec(),
        }),
    }
}

fn group_of(c: &Cluster, n: u64, g: u64) -> Option<GroupDesc> {
    c.stores[&n].groups().into_iter().find(|d| d.id == g)
}

/// Claim: a split command cuts the group on every replica at the same point: the
/// parent's span ends at the split key (generation bumped) and a new group with the
/// same members covers the rest, elects a leader and replicates its own commands; the
/// cut survives a restart, and a split key outside the span changes nothing.
#[test]
fn a_split_creates_the_right_group_on_every_replica() {
    let mut c = Cluster::with_groups(3, vec![whole()], 7);
    c.elect(1);
    c.propose(1, &split_cmd(100, 2, b"\x10m")).unwrap();
    assert!(c.run_until(100, |c| (1..=3).all(|n| group_of(c, n, 2).is_some())));
    let at = intent_key(b"\x10m");
    for n in 1..=3 {
        let left = group_of(&c, n, 1).unwrap();
        let right = group_of(&c, n, 2).unwrap();
        assert_eq!(
            (left.start.as_slice(), left.end.as_slice()),
            (&[][..], &at[..])
        );
        assert_eq!(left.generation, 2);
        assert_eq!((right.start.as_slice(), right.generation), (&at[..], 1));
        assert_eq!(right.end, whole().end);
        assert_eq!(c.stores[&n].voters(2), vec![1, 2, 3]);
    }
    c.elect(2);
    let mut writes = WriteBatch::new();
    let k = intent_key(b"\x10x");
    writes.put(Cf::Data, k.clone(), b"right".to_vec());
    c.propose(
        2,
        &Command {
            id: 101,
            writes,
            split: None,
        },
    )
    .unwrap();
    assert!(c.run_until(100, |c| (1..=3).all(|n| c.value(n, &k).is_some())));
    // A restarted node reopens both groups with their spans.
    c.stop(3);
    c.start(3);
    assert_eq!(group_of(&c, 3, 1).unwrap().end, at);
    assert_eq!(group_of(&c, 3, 2).unwrap().start, at);
    // Splitting the right group below its start does nothing, anywhere.
    let leader = c.elect(2);
    c.propose(2, &split_cmd(102, 3, b"\x10a")).unwrap();
    assert!(c.run_until(100, |c| c.applied_ids(leader, 2).contains(&102)));
    c.run(20);
    for n in 1..=3 {
        assert!(group_of(&c, n, 3).is_none());
        assert_eq!(group_of(&c, n, 2).unwrap().generation, 1);
    }
}
