//! Transactions whose writes were flushed early as intents, against faults and races at
//! the store: the commit point decides, a commit never removes another transaction's
//! write, and two transactions never both hold an intent on one key.
//!
//! The store runs over the test engine with hooks: it fails the writes that follow a
//! commit point (as a full disk or a lost proposal would) and holds a write in flight
//! while another transaction runs.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::TestEngine;
use tessera_cluster::{Db, Hlc, ManualClock, Store, StoreConfig, Txn, TxnOptions};
use tessera_storage::mvcc::{TxnRecord, TxnStatus};

/// A store over a test engine whose transactions flush intents after a few hundred
/// bytes, with no clock uncertainty (reads at a snapshot see exactly that snapshot).
fn store() -> (Db, Arc<TestEngine>) {
    let engine = Arc::new(TestEngine::default());
    let clock = Arc::new(Hlc::new(Arc::new(ManualClock::new(1_000_000_000))));
    let config = StoreConfig {
        write_buffer_bytes: 512,
        intent_batch_bytes: 256,
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(engine.clone(), clock, config).unwrap();
    (Db::new(store), engine)
}

fn key(i: u32) -> Vec<u8> {
    format!("\x10k{i:05}").into_bytes()
}

fn value(tag: &str, i: u32) -> Vec<u8> {
    format!("{tag}-{i}").into_bytes()
}

/// Write `n` keys tagged `tag` in one transaction (large enough to flush intents).
fn write_many(db: &Db, tag: &str, n: u32) -> Txn {
    let mut t = db.begin(TxnOptions::default());
    for i in 0..n {
        t.put(key(i), value(tag, i)).unwrap();
    }
    t
}

fn read(db: &Db, i: u32) -> Option<Vec<u8>> {
    let mut t = db.begin(TxnOptions::default());
    let v = t.get(&key(i)).unwrap();
    t.commit().unwrap();
    v
}

/// Claim: a commit whose record reached COMMITTED has succeeded, even when resolving its
/// intents afterwards fails: it is not reported as a conflict, not rolled back, and every
/// one of its writes is visible afterwards.
#[test]
fn a_commit_whose_resolution_fails_still_succeeds() {
    let (db, engine) = store();
    let mut t = write_many(&db, "a", 200);
    engine.fail_unsynced_writes(true);
    let committed = t.commit();
    engine.fail_unsynced_writes(false);
    assert!(committed.is_ok(), "commit failed: {committed:?}");
    for i in 0..200 {
        assert_eq!(read(&db, i), Some(value("a", i)), "key {i}");
    }
}

/// Claim: a commit never removes another transaction's committed write. Transaction A
/// reaches its commit point but its intents stay unresolved (every write after the
/// commit batch fails); B, which began after A, then overwrites the same keys (buffered
/// in one batch, or flushed as intents). A snapshot taken between
/// the two commits still reads A's values, and the latest reads B's.
#[test]
fn a_commit_keeps_committed_but_unresolved_intents_of_others() {
    for b_rows in [1, 200] {
        let (db, engine) = store();
        let mut a = write_many(&db, "a", 200);
        let a_id = a.id();
        let anchor = a.record_anchor().expect("flushed: A has a record").to_vec();
        engine.fail_unsynced_writes(true);
        let _ = a.commit();
        engine.fail_unsynced_writes(false);
        let record = TxnRecord::read(&*engine, &anchor, a_id).unwrap();
        assert!(matches!(record, TxnStatus::Committed(_)), "A is {record:?}");
        let mut between = db.begin(TxnOptions::default());
        let mut b = write_many(&db, "b", b_rows);
        b.commit().unwrap();
        for i in 0..b_rows {
            assert_eq!(
                between.get(&key(i)).unwrap(),
                Some(value("a", i)),
                "{b_rows} rows: key {i} at the snapshot between A and B"
            );
            assert_eq!(read(&db, i), Some(value("b", i)), "{b_rows} rows: key {i}");
        }
        between.commit().unwrap();
    }
}

/// Claim: two transactions that flush intents on the same key at the same time cannot
/// both commit. A's first intent write is held in flight; B then flushes an intent on
/// one of A's keys. Either B's conflict check waits for A's write (and sees A's
/// intent), or B fails; both committing would mean one of two acknowledged writes of
/// the key was lost.
#[test]
fn concurrent_flushes_of_one_key_conflict() {
    let (db, engine) = store();
    let db = Arc::new(db);
    // B begins first: a transaction's start waits for a write in flight.
    let mut b_txn = db.begin(TxnOptions::default());
    let (started_tx, started_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    engine.pause_next_write(started_tx, resume_rx);
    let a = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut t = db.begin(TxnOptions::default());
            for i in 0..40 {
                t.put(key(i), value("a", i))?;
            }
            t.commit().map(|_| ())
        })
    };
    started_rx.recv().unwrap();
    let (scan_tx, scan_rx) = mpsc::channel();
    engine.watch_scans(Some(scan_tx));
    // One write larger than the buffer: B flushes it as an intent at once.
    let big = vec![b'b'; 1024];
    let b = {
        let big = big.clone();
        std::thread::spawn(move || {
            b_txn.put(key(0), big)?;
            b_txn.commit().map(|_| ())
        })
    };
    // B checks for conflicts now if it may check while A's write is in flight; if it
    // must wait for A, no check comes within the grace period.
    let _ = scan_rx.recv_timeout(Duration::from_secs(2));
    engine.watch_scans(None);
    resume_tx.send(()).unwrap();
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    assert!(
        a.is_err() || b.is_err(),
        "both transactions wrote key 0 and committed"
    );
    let expected = if a.is_ok() { value("a", 0) } else { big };
    assert_eq!(read(&db, 0), Some(expected));
}

/// Claim: latches cover only the spans a request touches. While A's commit of key 1 is
/// in flight (its write held), B commits key 2 without waiting for it; a transaction
/// that began after A chose its timestamp and reads key 1 waits for A's write and sees
/// it (a stable snapshot), instead of reading around it.
#[test]
fn commits_on_other_keys_go_ahead_while_readers_of_the_key_wait() {
    let (db, engine) = store();
    let db = Arc::new(db);
    let (started_tx, started_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    engine.pause_next_write(started_tx, resume_rx);
    let a = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut t = db.begin(TxnOptions::default());
            t.put(key(1), value("a", 1))?;
            t.commit()
        })
    };
    started_rx.recv().unwrap();

    let (done_tx, done_rx) = mpsc::channel();
    {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut t = db.begin(TxnOptions::default());
            let r = t.put(key(2), value("b", 2)).and_then(|_| t.commit());
            let _ = done_tx.send(r);
        });
    }
    let b = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a commit of another key waited for the one in flight");
    b.unwrap();

    let (read_tx, read_rx) = mpsc::channel();
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut t = db.begin(TxnOptions::default());
            let began = t.read_ts();
            let _ = read_tx.send(());
            let v = t.get(&key(1));
            (began, v)
        })
    };
    read_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !reader.is_finished(),
        "a read went past a commit in flight on its key"
    );
    resume_tx.send(()).unwrap();
    let committed_at = a.join().unwrap().unwrap();
    let (began, seen) = reader.join().unwrap();
    assert!(
        began > committed_at,
        "the reader began at {began}, below the commit at {committed_at}"
    );
    assert_eq!(seen.unwrap(), Some(value("a", 1)));
}
