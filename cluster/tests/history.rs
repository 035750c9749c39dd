//! Serializability from the outside: threads run random list-append transactions
//! against one store, and a checker looks for a dependency cycle in the history of
//! the ones that committed (the approach of Elle, reduced to what this workload needs).
//!
//! Every key holds a list of unique numbers; a transaction reads lists and appends to
//! them (an append reads the list and writes it back one longer). Because every value
//! is unique and lists only grow, the final list of a key gives the order of the
//! writes to it, and a read names the exact write it saw (its last element):
//! - `ww`: the writer of element i precedes the writer of element i + 1;
//! - `wr`: the writer of the last element a transaction read precedes the reader;
//! - `rw`: a reader precedes the writer of the element after the last one it read.
//!
//! A serializable history has no cycle in that graph; every list a committed
//! transaction read must be a prefix of the final list; no element written by a
//! transaction that failed may appear. Some transactions hold enough writes to flush
//! intents early, so both commit paths are exercised. A failing seed prints itself;
//! `TESSERA_HISTORY_SEEDS=N` runs seeds 1..=N (20 by default).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::TestEngine;
use tessera_cluster::{Db, Hlc, ManualClock, Store, StoreConfig, TxnOptions};

const KEYS: u32 = 6;
const THREADS: usize = 4;
const TXNS_PER_THREAD: usize = 120;

#[derive(Clone, Debug)]
enum Op {
    Read(u32, Vec<u32>),
    Append(u32, u32),
}

#[derive(Clone, Debug)]
struct Committed {
    id: usize,
    ops: Vec<Op>,
}

fn key(k: u32) -> Vec<u8> {
    format!("\x10list{k}").into_bytes()
}

fn decode(v: Option<Vec<u8>>) -> Vec<u32> {
    v.map(|v| {
        v.chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    })
    .unwrap_or_default()
}

fn encode(list: &[u32]) -> Vec<u8> {
    list.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// xorshift64*, seeded per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Run the workload; returns the committed transactions, the failed ones' appended
/// elements, and the final lists.
fn run(seed: u64) -> (Vec<Committed>, Vec<u32>, BTreeMap<u32, Vec<u32>>) {
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
                            let list = decode(txn.get(&key(k))?);
                            if rng.below(2) == 0 {
                                ops.push(Op::Read(k, list));
                            } else {
                                let v = next_value.fetch_add(1, Ordering::SeqCst);
                                appended.push(v);
                                let mut list = list;
                                list.push(v);
                                txn.put(key(k), encode(&list))?;
                                ops.push(Op::Append(k, v));
                            }
                        }
                        txn.commit()
                    })();
                    match outcome {
                        Ok(_) => committed.lock().unwrap().push(Committed { id, ops }),
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
        .map(|k| (k, decode(last.get(&key(k)).unwrap())))
        .collect();
    let committed = committed.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    (committed, failed, finals)
}

/// Check the history; `Err` describes the first anomaly found.
fn check(
    committed: &[Committed],
    failed: &[u32],
    finals: &BTreeMap<u32, Vec<u32>>,
) -> Result<(), String> {
    let mut writer: HashMap<u32, usize> = HashMap::new();
    for t in committed {
        for op in &t.ops {
            if let Op::Append(_, v) = op {
                writer.insert(*v, t.id);
            }
        }
    }
    for (k, list) in finals {
        for v in list {
            if failed.contains(v) {
                return Err(format!(
                    "key {k} holds {v}, written by a failed transaction"
                ));
            }
            if !writer.contains_key(v) {
                return Err(format!("key {k} holds {v}, which no transaction wrote"));
            }
        }
    }
    for t in committed {
        for op in &t.ops {
            if let Op::Append(k, v) = op {
                if !finals[k].contains(v) {
                    return Err(format!("committed append {v} to key {k} was lost"));
                }
            }
        }
    }
    // Edges between committed transactions.
    let mut edges: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
    let mut edge = |from: usize, to: usize, why: String| {
        if from != to {
            edges.entry(from).or_default().push((to, why));
        }
    };
    for (k, list) in finals {
        for pair in list.windows(2) {
            edge(writer[&pair[0]], writer[&pair[1]], format!("ww on key {k}"));
        }
    }
    for t in committed {
        for op in &t.ops {
            let Op::Read(k, seen) = op else { continue };
            let full = &finals[k];
            if !full.starts_with(seen) {
                return Err(format!(
                    "transaction {} read {seen:?} of key {k}, not a prefix of {full:?}",
                    t.id
                ));
            }
            if let Some(last) = seen.last() {
                edge(writer[last], t.id, format!("wr on key {k}"));
            }
            if let Some(next) = full.get(seen.len()) {
                edge(t.id, writer[next], format!("rw on key {k}"));
            }
        }
    }
    // Depth-first search for a cycle.
    let mut state: HashMap<usize, u8> = HashMap::new(); // 1: on the stack, 2: done
    fn visit(
        n: usize,
        edges: &HashMap<usize, Vec<(usize, String)>>,
        state: &mut HashMap<usize, u8>,
        path: &mut Vec<(usize, String)>,
    ) -> Option<String> {
        state.insert(n, 1);
        for (m, why) in edges.get(&n).into_iter().flatten() {
            path.push((n, format!("{n} -{why}-> {m}")));
            match state.get(m) {
                Some(1) => {
                    let from = path.iter().position(|(f, _)| f == m).unwrap_or(0);
                    let cycle: Vec<&str> = path[from..].iter().map(|(_, e)| e.as_str()).collect();
                    return Some(cycle.join(", "));
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(*m, edges, state, path) {
                        return Some(c);
                    }
                }
            }
            path.pop();
        }
        state.insert(n, 2);
        None
    }
    for t in committed {
        if !state.contains_key(&t.id) {
            if let Some(cycle) = visit(t.id, &edges, &mut state, &mut Vec::new()) {
                return Err(format!("dependency cycle: {cycle}"));
            }
        }
    }
    Ok(())
}

/// Claim: concurrent random transactions over a few keys commit a serializable history
/// (no dependency cycle, no lost or phantom append, every read a real version), with
/// both one-batch commits and commits of flushed intents.
#[test]
fn random_list_appends_are_serializable() {
    let seeds: Vec<u64> = match std::env::var("TESSERA_HISTORY_SEEDS") {
        Ok(n) => (1..=n.parse().expect("a number of seeds")).collect(),
        Err(_) => (1..=20).collect(),
    };
    for seed in seeds {
        let (committed, failed, finals) = run(seed);
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
/// both read a list and both appended to it, one append lost) and a write-skew cycle.
#[test]
fn the_checker_rejects_anomalies() {
    let t = |id, ops| Committed { id, ops };
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
    // A serial history passes.
    let serial = [
        t(1, vec![Op::Read(1, vec![]), Op::Append(0, 10)]),
        t(2, vec![Op::Read(0, vec![10]), Op::Append(1, 11)]),
    ];
    assert!(check(&serial, &[], &finals).is_ok());
}
