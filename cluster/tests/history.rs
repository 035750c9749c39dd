//! Serializability from the outside: threads run random list-append transactions
//! against one store, and the checker of [`common::history`] looks for a dependency
//! cycle in the history of the ones that committed. Some transactions hold enough
//! writes to flush intents early, so both commit paths are exercised. Threads give no
//! real-time order here. A failing seed prints itself; `TESSERA_HISTORY_SEEDS=N` runs
//! seeds 1..=N (20 by default).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::history::{check, decode_list, encode_list, list_key, Committed, Op, Rng};
use common::TestEngine;
use tessera_cluster::{Db, Hlc, ManualClock, Store, StoreConfig, TxnOptions};

const KEYS: u32 = 6;
const THREADS: usize = 4;
const TXNS_PER_THREAD: usize = 120;

/// Run the workload, on one tablet or (with `split`) on two, cut between lists 2 and
/// 3; returns the committed transactions, the failed ones' appended elements, and the
/// final lists.
fn run(seed: u64, split: bool) -> (Vec<Committed>, Vec<u32>, BTreeMap<u32, Vec<u32>>) {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let config = StoreConfig {
        // Transactions with a few appends flush intents before they commit.
        write_buffer_bytes: 160,
        intent_batch_bytes: 96,
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let db = Db::new(Store::open(engine, clock, config).unwrap());
    if split {
        db.store().split(&list_key(3)).unwrap();
    }
    let next_value = Arc::new(AtomicU32::new(1));
    let committed = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            let next_value = next_value.clone();
            let committed = committed.clone();
            let failed = failed.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(t as u64 + 1) | 1);
                for i in 0..TXNS_PER_THREAD {
                    let id = t * TXNS_PER_THREAD + i;
                    let mut txn = db.begin(TxnOptions::default());
                    let mut ops = Vec::new();
                    let mut appended = Vec::new();
                    let n = 1 + rng.below(5);
                    let outcome = (|| {
                        for _ in 0..n {
                            let k = rng.below(KEYS as u64) as u32;
                            let list = decode_list(txn.get(&list_key(k))?);
                            if rng.below(2) == 0 {
                                ops.push(Op::Read(k, list));
                            } else {
                                let v = next_value.fetch_add(1, Ordering::SeqCst);
                                appended.push(v);
                                let mut list = list;
                                list.push(v);
                                txn.put(list_key(k), encode_list(&list))?;
                                ops.push(Op::Append(k, v));
                            }
                        }
                        txn.commit()
                    })();
                    match outcome {
                        Ok(_) => committed.lock().unwrap().push(Committed {
                            id,
                            ops,
                            began: 0,
                            ended: None,
                        }),
                        Err(e) => {
                            assert!(e.is_retryable(), "seed {seed}: {e}");
                            failed.lock().unwrap().extend(appended);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut last = db.begin(TxnOptions::default());
    let finals = (0..KEYS)
        .map(|k| (k, decode_list(last.get(&list_key(k)).unwrap())))
        .collect();
    let committed = committed.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    (committed, failed, finals)
}

/// Claim: concurrent random transactions over a few keys commit a serializable history
/// (no dependency cycle, no lost or phantom append, every read a real version), with
/// both one-batch commits and commits of flushed intents.
#[test]
fn random_list_appends_are_serializable() {
    check_seeds(false);
}

/// Claim: the same holds with the lists on two tablets, where transactions read and
/// write both: commits on one tablet with reads refreshed on the other, and commits
/// through the transaction record with intents on both.
#[test]
fn random_list_appends_over_two_tablets_are_serializable() {
    check_seeds(true);
}

fn check_seeds(split: bool) {
    let seeds: Vec<u64> = match std::env::var("TESSERA_HISTORY_SEEDS") {
        Ok(n) => (1..=n.parse().expect("a number of seeds")).collect(),
        Err(_) => (1..=20).collect(),
    };
    for seed in seeds {
        let (committed, failed, finals) = run(seed, split);
        assert!(
            committed.len() > THREADS * TXNS_PER_THREAD / 10,
            "seed {seed}: only {} of {} transactions committed",
            committed.len(),
            THREADS * TXNS_PER_THREAD
        );
        if let Err(anomaly) = check(&committed, &failed, &finals) {
            panic!("seed {seed}: {anomaly}");
        }
    }
}

/// Claim: the checker finds what it looks for: a lost update (two transactions that
/// both read a list and both appended to it, one append lost), a write-skew cycle and
/// a read that misses a write committed before it began.
#[test]
fn the_checker_rejects_anomalies() {
    let t = |id, ops| Committed {
        id,
        ops,
        began: 0,
        ended: None,
    };
    // Lost update: 1 and 2 both read [] and appended; only 2's append survived.
    let lost = [
        t(1, vec![Op::Read(0, vec![]), Op::Append(0, 10)]),
        t(2, vec![Op::Read(0, vec![]), Op::Append(0, 11)]),
    ];
    let finals = BTreeMap::from([(0, vec![11])]);
    assert!(check(&lost, &[], &finals).unwrap_err().contains("lost"));
    // Write skew: each read the other's key empty, then appended to its own.
    let skew = [
        t(1, vec![Op::Read(1, vec![]), Op::Append(0, 10)]),
        t(2, vec![Op::Read(0, vec![]), Op::Append(1, 11)]),
    ];
    let finals = BTreeMap::from([(0, vec![10]), (1, vec![11])]);
    assert!(check(&skew, &[], &finals).unwrap_err().contains("cycle"));
    // A stale read: 2 began after 1's commit returned and did not see its append.
    let stale = [
        Committed {
            id: 1,
            ops: vec![Op::Append(0, 10)],
            began: 1,
            ended: Some(2),
        },
        Committed {
            id: 2,
            ops: vec![Op::Read(0, vec![])],
            began: 3,
            ended: Some(4),
        },
    ];
    let finals0 = BTreeMap::from([(0, vec![10])]);
    assert!(check(&stale, &[], &finals0)
        .unwrap_err()
        .contains("real time"));
    // A serial history passes.
    let serial = [
        t(1, vec![Op::Read(1, vec![]), Op::Append(0, 10)]),
        t(2, vec![Op::Read(0, vec![10]), Op::Append(1, 11)]),
    ];
    assert!(check(&serial, &[], &finals).is_ok());
}
