//! Deterministic snapshot scenarios: a replica that fell behind the others' truncated logs
//! catches up from a snapshot streamed in bounded chunks, while the leader keeps writing,
//! over a lossy network, and across a crash in the middle of the install. Every scenario
//! states its claim first.

mod common;

use common::{group, key, put_cmd, Cluster};
use tessera_cluster::replication::{Command, RaftConfig};
use tessera_storage::{Cf, WriteBatch};

const G: u64 = 1;
const CHUNK: usize = 256;

fn small_chunks() -> RaftConfig {
    RaftConfig {
        snapshot_chunk_bytes: CHUNK,
        snapshot_chunks_per_tick: 1,
        ..RaftConfig::default()
    }
}

/// Three nodes; one is down while the others apply `n` commands (keys 0..n, values of
/// 40 bytes) and truncate their logs. Returns the cluster, the leader, the node that is
/// behind, and the index the others truncated to.
fn one_behind(seed: u64, n: u64) -> (Cluster, u64, u64, u64) {
    let mut c = Cluster::with_config(3, vec![group(G)], seed, small_chunks());
    let leader = c.elect(G);
    let lagging = (1..=3).find(|x| *x != leader).unwrap();
    c.stop(lagging);
    for i in 0..n {
        c.propose(G, &write(i, &[(i, &format!("{i:040}"))], &[]))
            .unwrap();
    }
    let live: Vec<u64> = (1..=3).filter(|x| *x != lagging).collect();
    assert!(c.run_until(300, |c| c.all_have(&live, G, 0..n)));
    let mut compacted = u64::MAX;
    for &x in &live {
        let applied = c.stores[&x].applied_index(G).unwrap();
        c.stores.get_mut(&x).unwrap().compact(G, applied).unwrap();
        compacted = compacted.min(applied);
    }
    (c, leader, lagging, compacted)
}

/// A command that puts `puts` (key number, value) and deletes `deletes`.
fn write(id: u64, puts: &[(u64, &str)], deletes: &[u64]) -> Command {
    let mut writes = WriteBatch::new();
    for (i, v) in puts {
        writes.put(Cf::Data, key(G, *i), v.as_bytes().to_vec());
    }
    for i in deletes {
        writes.delete(Cf::Data, key(G, *i));
    }
    Command {
        id,
        writes,
        split: None,
    }
}

fn installed(c: &Cluster, node: u64, compacted: u64) -> bool {
    c.stores
        .get(&node)
        .and_then(|s| s.truncated_index(G))
        .is_some_and(|t| t >= compacted)
}

/// Claim: a snapshot travels as many messages, none larger than the chunk bound, and the
/// leader goes on applying overwrites, deletes and new keys while it pages through its
/// data; once the replica has replayed the log after the snapshot it holds exactly the
/// leader's data.
#[test]
fn streams_in_bounded_chunks_while_the_leader_writes() {
    let (mut c, leader, lagging, compacted) = one_behind(21, 200);
    c.start(lagging);
    let mut written_while_streaming = 0;
    let mut id = 1000;
    for step in 0..400u64 {
        if installed(&c, lagging, compacted) {
            break;
        }
        if !c.snapshot_messages.is_empty() {
            written_while_streaming += 1;
        }
        id += 1;
        let overwrite = (step * 7) % 200;
        let cmd = write(
            id,
            &[(overwrite, "overwritten"), (1000 + step, "new")],
            &[(step * 13) % 200],
        );
        c.propose(G, &cmd).unwrap();
        c.step();
    }
    assert!(
        installed(&c, lagging, compacted),
        "no snapshot was installed"
    );
    assert!(
        written_while_streaming >= 10,
        "only {written_while_streaming} writes while the snapshot streamed"
    );
    assert!(
        c.snapshot_messages.len() >= 20,
        "{} snapshot messages",
        c.snapshot_messages.len()
    );
    let largest = c.snapshot_messages.iter().max().copied().unwrap();
    assert!(
        largest <= CHUNK + 64,
        "a snapshot message of {largest} bytes"
    );
    assert!(c.run_until(300, |c| c.data(lagging, G) == c.data(leader, G)));
    assert!(c.data(leader, G).len() > 200);
}

/// Claim: when chunks are lost the stream is abandoned and a new one is sent; the replica
/// still ends up with exactly the leader's data.
#[test]
fn a_stream_that_loses_chunks_is_sent_again() {
    let (mut c, _, lagging, compacted) = one_behind(22, 120);
    c.net.set_faults(25, 0, false);
    c.start(lagging);
    c.run(150);
    let (_, dropped) = c.net.counts();
    assert!(dropped > 0);
    c.net.set_faults(0, 0, false);
    assert!(c.run_until(1000, |c| installed(c, lagging, compacted)));
    let leader = c.elect(G);
    c.propose(G, &put_cmd(G, 500)).unwrap();
    assert!(c.run_until(300, |c| c.all_have(&[lagging], G, [500])));
    assert!(c.run_until(300, |c| c.data(lagging, G) == c.data(leader, G)));
}

/// Claim: a replica whose disk fails while it copies a snapshot in stops; restarted, it
/// finishes the install from what it staged before the failure, so it holds the whole
/// snapshot at once, and then follows the log again.
#[test]
fn a_crash_during_install_is_finished_on_restart() {
    let (mut c, leader, lagging, compacted) = one_behind(23, 150);
    c.engines[&lagging].fail_data_writes(true);
    c.start(lagging);
    assert!(c.run_until(500, |c| c.crashed.contains(&lagging)));
    c.engines[&lagging].fail_data_writes(false);
    c.start(lagging);
    assert!(installed(&c, lagging, compacted));
    assert_eq!(c.data(lagging, G), c.data(leader, G));
    c.propose(G, &put_cmd(G, 500)).unwrap();
    assert!(c.run_until(300, |c| c.all_have(&[lagging], G, [500])));
    assert_eq!(c.data(lagging, G), c.data(leader, G));
}
