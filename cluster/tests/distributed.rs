//! Transactions that write several tablets: the commit through the transaction record,
//! rollback, conflicts, where the record lies, and what a reader or writer does when it
//! meets an intent whose record lies on another tablet.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestEngine;
use tessera_cluster::{Db, Error, Hlc, ManualClock, Store, StoreConfig, TxnOptions};
use tessera_storage::mvcc::{self, TxnRecord};

/// A store split at `\x10m` over a test engine (also returned), with no clock
/// uncertainty. Values above 512 bytes overflow the write buffer: their writes go out
/// as intents at once.
fn split_store() -> (Db, Arc<TestEngine>, Arc<ManualClock>) {
    split_store_with(true)
}

/// [`split_store`]; without `threads`, a commit's rounds run in range order and what
/// follows its commit point runs in the commit's own thread, so a test can count writes.
fn split_store_with(threads: bool) -> (Db, Arc<TestEngine>, Arc<ManualClock>) {
    let engine = Arc::new(TestEngine::default());
    let physical = Arc::new(ManualClock::new(1_000_000_000));
    let clock = Arc::new(Hlc::new(physical.clone()));
    let config = StoreConfig {
        write_buffer_bytes: 512,
        max_clock_offset_nanos: 0,
        threads,
        ..StoreConfig::default()
    };
    let store = Store::open(engine.clone(), clock, config).unwrap();
    store.split(b"\x10m").unwrap();
    (Db::new(store), engine, physical)
}

/// A key on the first tablet and one on the second. A transaction's record is anchored
/// at the first key of its first flush (or of its commit): writing `LEFT` first puts
/// the record on the first tablet.
const LEFT: &[u8] = b"\x10a";
const RIGHT: &[u8] = b"\x10x";
/// Another key on the first tablet, written by no test's main transaction.
const OTHER: &[u8] = b"\x10c";

/// A value large enough to be flushed as an intent when written.
fn large(tag: u8) -> Vec<u8> {
    vec![tag; 600]
}

fn read(db: &Db, key: &[u8]) -> Option<Vec<u8>> {
    let mut t = db.begin(TxnOptions::default());
    let v = t.get(key).unwrap();
    t.commit().unwrap();
    v
}

/// Claim: a transaction that writes both tablets commits, and its writes appear
/// together: a reader that began before the commit sees neither, one after sees both.
#[test]
fn a_transaction_writing_two_tablets_commits_atomically() {
    let (db, _, _) = split_store();
    let mut before = db.begin(TxnOptions::default());
    let mut t = db.begin(TxnOptions::default());
    t.put(LEFT.to_vec(), b"l".to_vec()).unwrap();
    t.put(RIGHT.to_vec(), b"r".to_vec()).unwrap();
    let ts = t.commit().unwrap();
    assert!(ts > before.read_ts());
    assert_eq!(before.get(LEFT).unwrap(), None);
    assert_eq!(before.get(RIGHT).unwrap(), None);
    assert_eq!(read(&db, LEFT), Some(b"l".to_vec()));
    assert_eq!(read(&db, RIGHT), Some(b"r".to_vec()));
}

/// Claim: the same holds for a transaction whose writes went out early as intents on
/// both tablets (its record anchored at its first write, on the first tablet).
#[test]
fn flushed_intents_on_two_tablets_commit_atomically() {
    let (db, engine, _) = split_store();
    let mut t = db.begin(TxnOptions::default());
    t.put(LEFT.to_vec(), large(1)).unwrap();
    t.put(RIGHT.to_vec(), large(2)).unwrap();
    let mut during = db.begin(TxnOptions::default());
    assert_eq!(during.get(RIGHT).unwrap(), None);
    t.commit().unwrap();
    assert_eq!(read(&db, LEFT), Some(large(1)));
    assert_eq!(read(&db, RIGHT), Some(large(2)));
    // Resolved on both tablets, in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    for key in [LEFT, RIGHT] {
        while mvcc::get_intent(&*engine, key).unwrap().is_some() {
            assert!(Instant::now() < deadline, "the intent was never resolved");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(t.record_anchor(), Some(LEFT));
    assert!(matches!(
        TxnRecord::read(&*engine, LEFT, t.id()).unwrap(),
        mvcc::TxnStatus::Committed(_)
    ));
}

/// Claim: a large transaction whose writes all lie on the second tablet keeps its
/// record there, beside its first write, and commits there in one command: the record
/// says COMMITTED, nothing of it is written on the first tablet, and every row is
/// there.
#[test]
fn a_large_transaction_on_one_tablet_keeps_its_record_there() {
    let (db, engine, _) = split_store();
    let first_tablet = |engine: &TestEngine| {
        let mut n = 0;
        tessera_storage::Engine::scan(
            engine,
            tessera_storage::Cf::Data,
            b"",
            Some(&mvcc::intent_key(b"\x10m")),
            &mut |_, _| {
                n += 1;
                Ok(tessera_storage::Visit::Continue)
            },
        )
        .unwrap();
        n
    };
    let before = first_tablet(&engine);
    let mut t = db.begin(TxnOptions::default());
    for i in 0..100 {
        t.put(format!("\x10x{i:04}").into_bytes(), vec![7; 64])
            .unwrap();
    }
    let anchor = t
        .record_anchor()
        .expect("flushed: it has a record")
        .to_vec();
    assert_eq!(anchor, b"\x10x0000");
    t.commit().unwrap();
    assert!(matches!(
        TxnRecord::read(&*engine, &anchor, t.id()).unwrap(),
        mvcc::TxnStatus::Committed(_)
    ));
    assert_eq!(first_tablet(&engine), before);
    let mut check = db.begin(TxnOptions::default());
    let rows = check.scan(b"\x10x0", Some(b"\x10x1"), 1000).unwrap();
    assert_eq!(rows.len(), 100);
}

/// Claim: a rolled-back transaction with intents on both tablets leaves nothing: no
/// value, no intent, and its record says aborted.
#[test]
fn a_rollback_over_two_tablets_leaves_nothing() {
    let (db, engine, _) = split_store();
    let mut t = db.begin(TxnOptions::default());
    t.put(LEFT.to_vec(), large(1)).unwrap();
    t.put(RIGHT.to_vec(), large(2)).unwrap();
    assert!(mvcc::get_intent(&*engine, RIGHT).unwrap().is_some());
    let id = t.id();
    assert_eq!(t.record_anchor(), Some(LEFT));
    t.rollback().unwrap();
    assert_eq!(mvcc::get_intent(&*engine, LEFT).unwrap(), None);
    assert_eq!(mvcc::get_intent(&*engine, RIGHT).unwrap(), None);
    assert_eq!(
        TxnRecord::read(&*engine, LEFT, id).unwrap(),
        mvcc::TxnStatus::Aborted
    );
    assert_eq!(read(&db, LEFT), None);
    assert_eq!(read(&db, RIGHT), None);
}

/// Claim: of two transactions that read and write the same keys on both tablets, only
/// the first to commit does; the other fails retryably and leaves nothing.
#[test]
fn conflicting_transactions_over_two_tablets_do_not_both_commit() {
    let (db, _, _) = split_store();
    let mut a = db.begin(TxnOptions::default());
    let mut b = db.begin(TxnOptions::default());
    for t in [&mut a, &mut b] {
        assert_eq!(t.get(LEFT).unwrap(), None);
        assert_eq!(t.get(RIGHT).unwrap(), None);
    }
    a.put(LEFT.to_vec(), b"a".to_vec()).unwrap();
    a.put(RIGHT.to_vec(), b"a".to_vec()).unwrap();
    b.put(LEFT.to_vec(), b"b".to_vec()).unwrap();
    b.put(RIGHT.to_vec(), b"b".to_vec()).unwrap();
    a.commit().unwrap();
    let err = b.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(read(&db, LEFT), Some(b"a".to_vec()));
    assert_eq!(read(&db, RIGHT), Some(b"a".to_vec()));
}

/// Claim: a reader that meets a pending intent on a tablet other than its record's, at
/// or above the intent's timestamp, pushes the writer: the record then forbids a
/// commit at or below the reader's timestamp, and the writer commits above it.
#[test]
fn a_reader_pushes_a_pending_writer_above_its_timestamp() {
    let (db, engine, _) = split_store();
    let mut w = db.begin(TxnOptions::default());
    w.put(LEFT.to_vec(), large(2)).unwrap();
    w.put(RIGHT.to_vec(), large(3)).unwrap();
    let mut r = db.begin(TxnOptions::default());
    assert_eq!(r.get(RIGHT).unwrap(), None);
    let pushed = TxnRecord::pushed(&*engine, LEFT, w.id()).unwrap();
    assert!(
        pushed > r.read_ts(),
        "pushed to {pushed}, reader at {}",
        r.read_ts()
    );
    let committed = w.commit().unwrap();
    assert!(committed >= pushed);
    assert_eq!(r.get(RIGHT).unwrap(), None);
    assert_eq!(read(&db, RIGHT), Some(large(3)));
}

/// Claim: a writer that meets an intent on another tablet than its record's, whose
/// heartbeat has expired, aborts that transaction through its record and goes ahead;
/// the abandoned transaction can no longer commit.
#[test]
fn a_writer_aborts_an_abandoned_transaction_recorded_on_another_tablet() {
    let (db, _, physical) = split_store();
    let mut abandoned = db.begin(TxnOptions::default());
    abandoned.put(LEFT.to_vec(), large(4)).unwrap();
    abandoned.put(RIGHT.to_vec(), large(4)).unwrap();
    // Its gateway stops renewing the heartbeat; the expiry (5 s) passes.
    physical.advance(6_000_000_000);
    let mut w = db.begin(TxnOptions::default());
    w.put(RIGHT.to_vec(), b"w".to_vec()).unwrap();
    w.commit().unwrap();
    let err = abandoned.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(read(&db, RIGHT), Some(b"w".to_vec()));
}

/// Claim: a live pending transaction's intent on another tablet than its record's
/// makes a conflicting writer fail retryably, and the owner still commits.
#[test]
fn a_writer_does_not_abort_a_live_transaction_recorded_elsewhere() {
    let (db, _, physical) = split_store();
    let mut live = db.begin(TxnOptions::default());
    live.put(LEFT.to_vec(), large(5)).unwrap();
    live.put(RIGHT.to_vec(), large(5)).unwrap();
    // Less than the expiry (5 s) passes since its record was written.
    physical.advance(4_500_000_000);
    let mut w = db.begin(TxnOptions::default());
    w.put(RIGHT.to_vec(), b"w".to_vec()).unwrap();
    let err = w.commit().unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    live.commit().unwrap();
    assert_eq!(read(&db, RIGHT), Some(large(5)));
}

/// Claim: once the record says committed, the transaction has committed even when its
/// intents on the other tablet could not be resolved: the commit succeeds, readers see
/// the value through the record, and a later writer keeps it in the history.
#[test]
fn unresolved_intents_of_a_committed_transaction_read_through_the_record() {
    let (db, engine, _) = split_store();
    let mut t = db.begin(TxnOptions::default());
    t.put(LEFT.to_vec(), large(6)).unwrap();
    t.put(RIGHT.to_vec(), large(6)).unwrap();
    let mut before = db.begin(TxnOptions::default());
    assert_eq!(before.get(OTHER).unwrap(), None);
    // What follows the commit point is not synced: resolution fails (reads and
    // synced commits still work).
    engine.fail_unsynced_writes(true);
    let ts = t.commit().unwrap();
    assert!(mvcc::get_intent(&*engine, RIGHT).unwrap().is_some());
    assert_eq!(read(&db, RIGHT), Some(large(6)));
    assert_eq!(before.get(RIGHT).unwrap(), None);
    let mut between = db.begin(TxnOptions::default());
    assert_eq!(between.get(OTHER).unwrap(), None);
    let mut w = db.begin(TxnOptions::default());
    w.put(RIGHT.to_vec(), b"later".to_vec()).unwrap();
    assert!(w.commit().unwrap() > ts);
    assert_eq!(read(&db, RIGHT), Some(b"later".to_vec()));
    assert_eq!(between.get(RIGHT).unwrap(), Some(large(6)));
    engine.fail_unsynced_writes(false);
}

/// Claim: an intent written outside the record's tablet lies above every read of its
/// key there, and the commit never lands below a push left in the record (pushes from
/// readers on nodes whose clocks are ahead can exceed the writer's clock).
#[test]
fn intents_and_commits_land_above_reads_and_pushes() {
    let (db, engine, _) = split_store();
    let mut w = db.begin(TxnOptions::default());
    let mut r = db.begin(TxnOptions::default());
    assert_eq!(r.get(RIGHT).unwrap(), None);
    r.commit().unwrap();
    w.put(LEFT.to_vec(), large(7)).unwrap();
    w.put(RIGHT.to_vec(), large(7)).unwrap();
    let intent = mvcc::get_intent(&*engine, RIGHT).unwrap().unwrap();
    assert!(
        intent.ts > r.read_ts(),
        "intent at {}, read at {}",
        intent.ts,
        r.read_ts()
    );
    // A push from far ahead, as a reader on a fast node would leave it.
    let far = tessera_storage::Timestamp::new(w.read_ts().wall + 3_600_000_000_000, 0);
    let heartbeat = w.read_ts();
    let mut b = tessera_storage::WriteBatch::new();
    b.put(
        tessera_storage::Cf::Data,
        TxnRecord::key(LEFT, w.id()),
        TxnRecord::encode_pending(heartbeat, far),
    );
    tessera_storage::Engine::write(&*engine, b, true).unwrap();
    assert!(w.commit().unwrap() >= far);
}

/// Claim: every tablet collects its old versions under a threshold of its own, and the
/// new tablet of a split starts at its parent's threshold; the newest versions stay.
#[test]
fn every_tablet_collects_garbage_and_a_split_keeps_the_threshold() {
    let engine = Arc::new(TestEngine::default());
    let physical = Arc::new(ManualClock::new(1_000_000_000));
    let clock = Arc::new(Hlc::new(physical.clone()));
    let config = StoreConfig {
        gc_window_nanos: 1_000_000_000,
        max_clock_offset_nanos: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(engine.clone(), clock, config).unwrap();
    store.split(b"\x10m").unwrap();
    let db = Db::new(store.clone());
    for v in [b"1", b"2", b"3"] {
        let mut t = db.begin(TxnOptions::default());
        t.put(RIGHT.to_vec(), v.to_vec()).unwrap();
        t.commit().unwrap();
    }
    physical.advance(10_000_000_000);
    assert_eq!(store.gc_once().unwrap(), 2);
    let threshold = mvcc::GcThreshold::read(&*engine, b"\x10m").unwrap();
    assert!(threshold > tessera_storage::Timestamp::ZERO);
    assert_eq!(read(&db, RIGHT), Some(b"3".to_vec()));
    store.split(b"\x10t").unwrap();
    assert_eq!(
        mvcc::GcThreshold::read(&*engine, b"\x10t").unwrap(),
        threshold
    );
    assert_eq!(read(&db, RIGHT), Some(b"3".to_vec()));
}

/// Claim: a transaction over two tablets is committed once both parts of its staging
/// round succeed, before its record says so. Here every write after the round fails
/// for a while
/// (the record stays STAGING, the intents unresolved): the commit is still reported
/// as such. A reader at a later timestamp waits while the coordinator may still
/// finish, and once the coordinator has been silent past the expiry, recovers the
/// status: every in-flight intent is there, so the record becomes COMMITTED at the
/// staging timestamp and the reader sees both writes.
#[test]
fn a_staged_commit_holds_and_is_recovered_as_committed() {
    let (db, engine, physical) = split_store();
    let db = Arc::new(db);
    let mut t = db.begin(TxnOptions::default());
    t.put(LEFT.to_vec(), b"l".to_vec()).unwrap();
    t.put(RIGHT.to_vec(), b"r".to_vec()).unwrap();
    let id = t.id();
    // The two parts of the staging round succeed; marking the record fails.
    engine.fail_data_writes_after(2);
    let ts = t.commit().expect("both parts staged: committed");
    assert_eq!(
        TxnRecord::read(&*engine, LEFT, id).unwrap(),
        mvcc::TxnStatus::Staging(ts)
    );
    assert!(mvcc::get_intent(&*engine, RIGHT).unwrap().is_some());
    physical.advance(1_000_000);
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || read(&db, RIGHT))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !reader.is_finished(),
        "the reader did not wait for the coordinator"
    );
    // The coordinator's attempt to mark the record has failed by now.
    assert_eq!(
        TxnRecord::read(&*engine, LEFT, id).unwrap(),
        mvcc::TxnStatus::Staging(ts)
    );
    engine.fail_data_writes(false);
    physical.advance(6_000_000_000);
    assert_eq!(reader.join().unwrap(), Some(b"r".to_vec()));
    assert_eq!(
        TxnRecord::read(&*engine, LEFT, id).unwrap(),
        mvcc::TxnStatus::Committed(ts)
    );
    assert_eq!(read(&db, LEFT), Some(b"l".to_vec()));
}

/// Claim: a STAGING transaction that is missing one of its in-flight writes has not
/// committed. Here the record's part of the staging round lands and the other part's
/// write fails, and so does the rollback (the disk fails): the record stays STAGING.
/// A reader after the expiry recovers it as ABORTED, sees neither write, and leaves the
/// missing key recorded as read at the staging timestamp, so the write can no longer
/// land there.
#[test]
fn a_staged_transaction_missing_a_write_is_recovered_as_aborted() {
    let (db, engine, physical) = split_store_with(false);
    let mut t = db.begin(TxnOptions::default());
    t.put(LEFT.to_vec(), b"l".to_vec()).unwrap();
    t.put(RIGHT.to_vec(), b"r".to_vec()).unwrap();
    let id = t.id();
    engine.fail_data_writes_after(1);
    let err = t.commit().unwrap_err();
    engine.fail_data_writes(false);
    assert!(!matches!(err, Error::Ambiguous(_)), "{err}");
    let mvcc::TxnStatus::Staging(ts) = TxnRecord::read(&*engine, LEFT, id).unwrap() else {
        panic!("the record should be STAGING");
    };
    assert!(mvcc::get_intent(&*engine, RIGHT).unwrap().is_none());
    physical.advance(6_000_000_000);
    assert_eq!(read(&db, LEFT), None);
    assert_eq!(
        TxnRecord::read(&*engine, LEFT, id).unwrap(),
        mvcc::TxnStatus::Aborted
    );
    assert!(db.store().read_timestamp(RIGHT) >= ts);
    assert_eq!(read(&db, RIGHT), None);
}
