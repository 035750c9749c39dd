//! A store cut into several tablets: routing, snapshots across tablets, commits whose
//! reads lie on other tablets than their writes, and splits under load. Commits that
//! write several tablets are in `distributed.rs`.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::TestEngine;
use tessera_cluster::{
    Db, Hlc, ManualClock, Store, StoreConfig, SystemClock, TxnOptions, FIRST_RANGE,
};

/// A store over a test engine with no clock uncertainty, split at `\x10m`.
fn split_store() -> Db {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let config = StoreConfig {
        write_buffer_bytes: 512,
        intent_batch_bytes: 256,
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(engine, clock, config).unwrap();
    store.split(b"\x10m").unwrap();
    Db::new(store)
}

/// A key on the first tablet and one on the second.
const LEFT: &[u8] = b"\x10a";

/// A one-node replicated cluster over a test engine: every tablet a Raft group.
fn single_node(clock: Arc<Hlc>, max_clock_offset_nanos: u64) -> tessera_cluster::ClusterNode {
    let options = tessera_cluster::NodeOptions {
        rpc_listen: "127.0.0.1:0".parse().unwrap(),
        join: Vec::new(),
        single: true,
        raft: tessera_cluster::replication::RaftConfig::default(),
        tick: Duration::from_millis(10),
        store: StoreConfig {
            max_clock_offset_nanos,
            ..StoreConfig::default()
        },
    };
    let engine: Arc<dyn tessera_storage::Engine> = Arc::new(TestEngine::default());
    tessera_cluster::ClusterNode::start(engine, clock, options).unwrap()
}
const RIGHT: &[u8] = b"\x10x";

fn put(db: &Db, key: &[u8], value: &[u8]) {
    let mut t = db.begin(TxnOptions::default());
    t.put(key.to_vec(), value.to_vec()).unwrap();
    t.commit().unwrap();
}

/// Claim: a split leaves two tablets that cover the key space, with the right one
/// starting at the split key and the left one's generation bumped; splitting at an
/// existing boundary changes nothing.
#[test]
fn a_split_cuts_one_tablet_in_two() {
    let db = split_store();
    let ranges = db.store().ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    let (left, right) = (&ranges[0].desc, &ranges[1].desc);
    assert_eq!(left.range_id, FIRST_RANGE);
    assert_eq!(left.start, b"");
    assert_eq!(left.end, b"\x10m");
    assert_eq!(left.generation, 2);
    assert_eq!(right.start, b"\x10m");
    assert_eq!(right.end, [0xFF, 0xFF, 0xFF, 0xFF]);
    assert_ne!(right.range_id, left.range_id);
    assert_eq!(db.store().split(b"\x10m").unwrap(), *right);
    assert_eq!(db.store().ranges().len(), 2);
}

/// Claim: a scan over both tablets returns the rows of both in key order, at one
/// snapshot: a write committed on either side after the reader began is invisible.
#[test]
fn a_scan_across_tablets_reads_one_snapshot() {
    let db = split_store();
    for k in [b"\x10a", b"\x10l", b"\x10m", b"\x10z"] {
        put(&db, k, b"old");
    }
    let mut reader = db.begin(TxnOptions::default());
    // Fix the snapshot with a first read.
    assert_eq!(reader.get(b"\x10l").unwrap(), Some(b"old".to_vec()));
    put(&db, b"\x10a", b"new");
    put(&db, b"\x10z", b"new");
    let rows = reader.scan(b"\x10", Some(b"\x11"), 100).unwrap();
    let keys: Vec<&[u8]> = rows.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [b"\x10a", b"\x10l", b"\x10m", b"\x10z"]);
    assert!(rows.iter().all(|(_, v)| v == b"old"), "{rows:?}");
    // A limited scan stops at the limit, wherever the boundary is.
    let rows = reader.scan(b"\x10b", Some(b"\x11"), 2).unwrap();
    let keys: Vec<&[u8]> = rows.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [b"\x10l", b"\x10m"]);
}

/// Write skew across the two tablets: two transactions each read both keys with `read`
/// and write one; the second to commit must fail (retryably) and leave its key as it
/// was. `check` looks at what the reads left behind, given the store and the later
/// transaction.
fn refuse_write_skew(
    read: impl Fn(&mut tessera_cluster::Txn),
    check: impl Fn(&Db, &tessera_cluster::Txn),
) {
    let db = split_store();
    put(&db, LEFT, b"1");
    put(&db, RIGHT, b"1");
    let mut a = db.begin(TxnOptions::default());
    let mut b = db.begin(TxnOptions::default());
    for t in [&mut a, &mut b] {
        read(t);
    }
    check(&db, &b);
    a.put(LEFT.to_vec(), b"0".to_vec()).unwrap();
    b.put(RIGHT.to_vec(), b"0".to_vec()).unwrap();
    a.commit().unwrap();
    let err = b.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let mut after = db.begin(TxnOptions::default());
    assert_eq!(after.get(RIGHT).unwrap(), Some(b"1".to_vec()));
}

/// Claim: reads on another tablet than the writes are validated at commit: write skew
/// across the two tablets fails the second commit.
#[test]
fn write_skew_across_tablets_is_refused() {
    refuse_write_skew(
        |t| {
            t.get(LEFT).unwrap();
            t.get(RIGHT).unwrap();
        },
        |_, _| {},
    );
}

/// Claim: `get_many` answers, in the order asked, what `get` answers for each key over
/// both tablets: repeated and absent keys, the transaction's own writes and deletes
/// laid over the snapshot, and a write committed after the transaction began unseen.
#[test]
fn get_many_answers_what_get_does_across_tablets() {
    let db = split_store();
    for (k, v) in [
        (LEFT, "l"),
        (RIGHT, "r"),
        (&b"\x10b"[..], "b"),
        (&b"\x10y"[..], "y"),
    ] {
        put(&db, k, v.as_bytes());
    }
    let mut t = db.begin(TxnOptions::default());
    t.put(b"\x10c".to_vec(), b"mine".to_vec()).unwrap();
    t.delete(b"\x10y".to_vec()).unwrap();
    put(&db, LEFT, b"later");
    let keys: Vec<Vec<u8>> = [RIGHT, LEFT, b"\x10z", b"\x10c", b"\x10y", RIGHT, b"\x10b"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    let many = t.get_many(&keys).unwrap();
    let one: Vec<Option<Vec<u8>>> = keys.iter().map(|k| t.get(k).unwrap()).collect();
    assert_eq!(many, one);
    let text: Vec<Option<&str>> = many
        .iter()
        .map(|v| v.as_deref().map(|v| std::str::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(
        text,
        [
            Some("r"),
            Some("l"),
            None,
            Some("mine"),
            None,
            Some("r"),
            Some("b")
        ]
    );
}

/// Claim: the keys `get_many` reads are validated at commit like any read: write skew
/// across the two tablets, read with `get_many`, fails the second commit; and each
/// tablet records its keys as read, so later writes land above them.
#[test]
fn get_many_reads_are_validated_and_recorded() {
    refuse_write_skew(
        |t| {
            let both = t.get_many(&[LEFT.to_vec(), RIGHT.to_vec()]).unwrap();
            assert_eq!(both, [Some(b"1".to_vec()), Some(b"1".to_vec())]);
        },
        |db, later| {
            for key in [LEFT, RIGHT] {
                assert!(db.store().read_timestamp(key) >= later.read_ts());
            }
        },
    );
}

/// Claim: a read on another tablet stays valid up to the commit timestamp: a write
/// there that commits after the read, before the commit, fails the commit.
#[test]
fn a_commit_fails_when_a_read_on_another_tablet_was_overwritten() {
    let db = split_store();
    put(&db, RIGHT, b"1");
    let mut t = db.begin(TxnOptions::default());
    assert_eq!(t.get(RIGHT).unwrap(), Some(b"1".to_vec()));
    put(&db, RIGHT, b"2");
    t.put(LEFT.to_vec(), b"copied 1".to_vec()).unwrap();
    let err = t.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let mut check = db.begin(TxnOptions::default());
    assert_eq!(check.get(LEFT).unwrap(), None);
}

/// Claim: once a commit has refreshed its reads on another tablet, no write there
/// lands at or below its commit timestamp.
#[test]
fn writes_after_a_refresh_land_above_the_commit() {
    let db = split_store();
    let mut t = db.begin(TxnOptions::default());
    t.get(RIGHT).unwrap();
    t.put(LEFT.to_vec(), b"v".to_vec()).unwrap();
    let commit_ts = t.commit().unwrap();
    assert!(db.store().read_timestamp(RIGHT) >= commit_ts);
}

/// Claim: the right-hand side of a split keeps the read history of the keys it takes
/// over: a key read before the split cannot be written at or below that read after.
#[test]
fn a_split_keeps_the_read_history() {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let store = Store::open(engine, clock, StoreConfig::default()).unwrap();
    let db = Db::new(store.clone());
    let mut reader = db.begin(TxnOptions::default());
    reader.get(RIGHT).unwrap();
    let read_at = reader.read_ts();
    reader.commit().unwrap();
    store.split(b"\x10m").unwrap();
    assert!(store.read_timestamp(RIGHT) >= read_at);
}

/// Claim: splits that run while transactions read and commit lose nothing: requests
/// that reach a tablet after its keys moved are routed again. Threads move units
/// between neighbouring accounts (one tablet, or two once a split falls between them)
/// and read them all while the main thread splits; the total is conserved and every
/// account is readable.
#[test]
fn splits_under_load_lose_nothing() {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let config = StoreConfig {
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let db = Db::new(Store::open(engine, clock, config).unwrap());
    let account = |i: u32| format!("\x10acct{i:03}").into_bytes();
    const ACCOUNTS: u32 = 40;
    for i in 0..ACCOUNTS {
        put(&db, &account(i), &100u64.to_be_bytes());
    }
    let total = |db: &Db| -> u64 {
        let mut t = db.begin(TxnOptions::default());
        let rows = t.scan(b"\x10acct", Some(b"\x10acct\xFF"), 1000).unwrap();
        assert_eq!(rows.len(), ACCOUNTS as usize);
        rows.iter()
            .map(|(_, v)| u64::from_be_bytes(v.as_slice().try_into().unwrap()))
            .sum()
    };
    let workers: Vec<_> = (0..3u32)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut committed = 0;
                for n in 0..150u32 {
                    let a = (w * 13 + n * 7) % (ACCOUNTS - 1);
                    let (from, to) = (account(a), account(a + 1));
                    let mut t = db.begin(TxnOptions::default());
                    let result = (|| {
                        let seen = t.scan(b"\x10acct", Some(b"\x10acct\xFF"), 1000)?;
                        assert_eq!(seen.len(), ACCOUNTS as usize);
                        let get = |k: &[u8]| {
                            let v = &seen.iter().find(|(key, _)| key == k).unwrap().1;
                            u64::from_be_bytes(v.as_slice().try_into().unwrap())
                        };
                        let (f, g) = (get(&from), get(&to));
                        if f > 0 {
                            t.put(from.clone(), (f - 1).to_be_bytes().to_vec())?;
                            t.put(to.clone(), (g + 1).to_be_bytes().to_vec())?;
                        }
                        t.commit()
                    })();
                    match result {
                        Ok(_) => committed += 1,
                        Err(e) => assert!(e.is_retryable(), "{e}"),
                    }
                }
                committed
            })
        })
        .collect();
    for i in (2..ACCOUNTS).step_by(3) {
        db.store().split(&account(i)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let committed: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(committed > 0);
    assert_eq!(
        db.store().ranges().len(),
        1 + (2..ACCOUNTS).step_by(3).count()
    );
    assert_eq!(total(&db), 100 * ACCOUNTS as u64);
}

/// Claim: a split waits for the requests in flight on the part that moves, and a
/// request that found the old tablet but reached its latches after the split is served
/// by the new tablet: its read lands in the new tablet's timestamp cache, so no write
/// there can go below it.
#[test]
fn a_request_that_raced_a_split_is_served_by_the_new_tablet() {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let config = StoreConfig {
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(engine.clone(), clock, config).unwrap();
    let db = Db::new(store.clone());
    // A commit on RIGHT is in flight, holding its latch.
    let (started_tx, started_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    engine.pause_next_write(started_tx, resume_rx);
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || put(&db, RIGHT, b"w"))
    };
    started_rx.recv().unwrap();
    let splitter = {
        let store = store.clone();
        std::thread::spawn(move || store.split(b"\x10m").unwrap())
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !splitter.is_finished(),
        "the split went ahead of a commit in flight on the moving keys"
    );
    // A reader routed to the old tablet queues behind the split.
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut t = db.begin(TxnOptions::default());
            let at = t.read_ts();
            t.get(RIGHT).unwrap();
            at
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    resume_tx.send(()).unwrap();
    writer.join().unwrap();
    splitter.join().unwrap();
    let read_at = reader.join().unwrap();
    assert!(
        store.read_timestamp(RIGHT) >= read_at,
        "the read was recorded on the tablet that no longer owns the key"
    );
}

/// Claim: on a running node, a replicated tablet splits through its Raft group: the new
/// tablet gets its own group with this node as leaseholder, and commits on either side
/// (and one that reads both) go through.
#[test]
fn a_node_splits_a_replicated_tablet() {
    let node = single_node(Arc::new(Hlc::new(Arc::new(SystemClock))), 1_000_000);
    let db = Db::new(node.store.clone());
    put(&db, LEFT, b"l");
    let right = node.store.split(b"\x10m").unwrap();
    assert_ne!(right.range_id, FIRST_RANGE);
    let ranges = node.store.ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    for r in &ranges {
        assert_eq!(r.replicas, vec![1]);
        assert_eq!(r.leaseholder, Some(1));
    }
    put(&db, RIGHT, b"r");
    let mut t = db.begin(TxnOptions::default());
    let l = t.get(LEFT).unwrap().unwrap();
    t.put(RIGHT.to_vec(), [l, b"+r".to_vec()].concat()).unwrap();
    t.commit().unwrap();
    let mut check = db.begin(TxnOptions::default());
    assert_eq!(check.get(RIGHT).unwrap(), Some(b"l+r".to_vec()));
    // A second split allocates another id.
    let third = node.store.split(b"\x10t").unwrap();
    assert!(third.range_id != right.range_id && third.range_id != FIRST_RANGE);
}

/// Claim: the new tablet of a split keeps its parent's lease floor when its parent's
/// leaseholder wins its first election, so no write on it waits out a new floor (up
/// to the maximum clock offset): not the first after the split, and not those that
/// reach it while the split is still waiting for that election. The clock here is
/// manual: a wait for a floor shows as a jump of the clock.
#[test]
fn a_split_tablet_inherits_the_lease_floor() {
    const OFFSET: u64 = 60_000_000_000;
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let node = single_node(clock.clone(), OFFSET);
    let db = Db::new(node.store.clone());
    // The first lease's first write waits out its floor.
    let before = clock.physical_nanos();
    put(&db, LEFT, b"l");
    assert!(clock.physical_nanos() >= before + OFFSET);
    let before = clock.physical_nanos();
    // Writers keep writing just right of the split under way, so that they reach
    // each new tablet as soon as it has a leader.
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    const DONE: u32 = u32::MAX;
    let splitting = Arc::new(AtomicU32::new(0));
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let (db, splitting) = (db.clone(), splitting.clone());
            std::thread::spawn(move || loop {
                let at = splitting.load(Relaxed);
                if at == DONE {
                    break;
                }
                let key = format!("\x10s{at:03}w{w}").into_bytes();
                let mut t = db.begin(TxnOptions::default());
                t.put(key, b"v".to_vec()).unwrap();
                if let Err(e) = t.commit() {
                    assert!(e.is_retryable(), "{e}");
                }
            })
        })
        .collect();
    for i in 1..40 {
        splitting.store(i, Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        node.store.split(format!("\x10s{i:03}").as_bytes()).unwrap();
    }
    splitting.store(DONE, Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    node.store.split(b"\x10m").unwrap();
    put(&db, RIGHT, b"r");
    assert!(
        clock.physical_nanos() < before + OFFSET,
        "a new tablet waited for a floor of its own"
    );
    let mut check = db.begin(TxnOptions::default());
    assert_eq!(check.get(RIGHT).unwrap(), Some(b"r".to_vec()));
}

/// Claim: a tablet that grows past the size bound splits by itself, at a row boundary,
/// and every row stays readable in order.
#[test]
fn a_growing_tablet_splits_by_size() {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let config = StoreConfig {
        split_bytes: 4 << 10,
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let db = Db::new(Store::open(engine, clock, config).unwrap());
    let key = |i: u32| format!("\x10row{i:05}").into_bytes();
    for i in 0..400u32 {
        put(&db, &key(i), &[b'v'; 100]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db.store().ranges().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "no split by size: {:?}",
            db.store().ranges()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for r in db.store().ranges() {
        let s = &r.desc.start;
        assert!(s.is_empty() || s.starts_with(b"\x10row"), "{r:?}");
    }
    let mut t = db.begin(TxnOptions::default());
    let rows = t.scan(b"\x10row", Some(b"\x10rox"), 1000).unwrap();
    let keys: Vec<Vec<u8>> = rows.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, (0..400).map(key).collect::<Vec<_>>());
}

/// Claim: writes that reach a tablet a split has just made, before its first leader is
/// elected, wait for the election instead of failing: writers on the right side of a
/// replicated tablet never see an error while it is split again and again.
#[test]
fn writes_wait_for_a_new_tablets_first_election() {
    let node = single_node(Arc::new(Hlc::new(Arc::new(SystemClock))), 1_000_000);
    let db = Db::new(node.store.clone());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("\x10s{:03}w{w}", n % 200).into_bytes();
                    let mut t = db.begin(TxnOptions::default());
                    t.put(key, b"v".to_vec()).unwrap();
                    match t.commit() {
                        Ok(_) => {}
                        Err(e) => {
                            let message = e.to_string();
                            assert!(!message.contains("no leaseholder"), "{message}");
                            assert!(e.is_retryable(), "{message}");
                        }
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in (10..200).step_by(10) {
        node.store.split(format!("\x10s{i:03}").as_bytes()).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: u32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written > 0);
    assert_eq!(node.store.ranges().len(), 20);
}
