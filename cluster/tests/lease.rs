//! Deterministic scenarios for leases, clocks and crashes in the simulated three-node
//! world of [`common::world`]. Every scenario states its claim first.

mod common;

use common::world::*;
use tessera_cluster::{Error, Result, StoreConfig, TxnOptions};
use tessera_storage::mvcc::TxnRecord;

/// Claim: a write acknowledged before a transaction began is visible to it, even when
/// the transaction's gateway clock is behind the leaseholder's by almost the maximum
/// offset (so the write's timestamp is above the transaction's `read_ts`): the read is
/// uncertain and restarts above the write instead of missing it.
#[test]
fn a_lagging_gateway_still_sees_acknowledged_writes() {
    let w = World::new(1);
    let leader = w.leader();
    w.skew(leader, 400);
    let gateway = follower_of(leader);
    let written = w.write(leader, b"\x10k", b"v1").unwrap();
    let mut t = w.dbs[&gateway].begin(TxnOptions::default());
    let began_at = t.read_ts();
    assert!(
        began_at < written,
        "the scenario needs a read_ts below the write"
    );
    assert_eq!(t.get(b"\x10k").unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(t.read_ts() >= written, "restarted at {}", t.read_ts());
    t.commit().unwrap();
}

/// Claim: a transaction that began on the leaseholder itself has no uncertainty there:
/// a write committed after it began, even within the offset, is not in its snapshot
/// and does not restart it.
#[test]
fn a_transaction_begun_on_the_leaseholder_keeps_its_snapshot() {
    let w = World::new(2);
    let leader = w.leader();
    w.write(leader, b"\x10k", b"old").unwrap();
    let mut reader = w.dbs[&leader].begin(TxnOptions::default());
    let read_ts = reader.read_ts();
    let later = w.write(leader, b"\x10k", b"new").unwrap();
    assert!(later > read_ts && later.wall <= read_ts.wall + MAX_OFFSET);
    assert_eq!(reader.get(b"\x10k").unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(reader.read_ts(), read_ts);
}

/// Claim: when the leaseholder is cut off, a new leaseholder takes over; the old one
/// then serves no reads (it answers with errors, not stale data); the new one writes no
/// value at or below a timestamp at which the old one served a read, even though the
/// old one's clock was ahead by most of the maximum offset; after the partition heals,
/// the old node forwards to the new leaseholder and sees its writes.
#[test]
fn lease_handover_without_stale_reads() {
    let w = World::new(3);
    let old = w.leader();
    w.skew(old, 450);
    w.write(old, b"\x10k", b"v1").unwrap();
    let (seen, read_at) = w.read(old, b"\x10k").unwrap();
    assert_eq!(seen.as_deref(), Some(&b"v1"[..]));

    w.isolate(old);
    let stale = w.read(old, b"\x10k");
    assert!(stale.is_err(), "a cut-off leaseholder served {stale:?}");
    let new = w.leaseholder_besides(old);
    let written = w.write(new, b"\x10k", b"v2").unwrap();
    assert!(
        written > read_at,
        "new leaseholder wrote at {written}, at or below the old one's read at {read_at}"
    );
    assert!(w.read(old, b"\x10k").is_err());
    assert_eq!(
        w.read(new, b"\x10k").unwrap().0.as_deref(),
        Some(&b"v2"[..])
    );

    w.heal();
    {
        let mut c = w.sim.lock();
        assert!(c.run_until(PATIENCE, |c| c.stores[&old].leader(GROUP) == Some(new)));
    }
    assert_eq!(
        w.read(old, b"\x10k").unwrap().0.as_deref(),
        Some(&b"v2"[..])
    );
}

/// Claim: a node refuses a request from a node whose clock is ahead of its own by more
/// than the maximum offset, and the request changes nothing.
#[test]
fn a_clock_beyond_the_maximum_offset_is_refused() {
    let w = World::new(4);
    let leader = w.leader();
    let fast = follower_of(leader);
    w.skew(fast, 2_000);
    let err = w.write(fast, b"\x10k", b"v").unwrap_err();
    assert!(err.to_string().contains("ahead"), "{err}");
    assert_eq!(w.read(leader, b"\x10k").unwrap().0, None);
}

/// Claim: transaction records live in the tablet's data span: a replica that catches
/// up from a snapshot has the records of transactions that committed through one.
#[test]
fn transaction_records_travel_in_snapshots() {
    let w = World::new(5);
    let leader = w.leader();
    let lagging = follower_of(leader);
    w.isolate(lagging);
    // Past the write buffer: the writes go out as intents and commit by their record.
    let store = w.dbs[&leader].store().clone();
    let mut t = w.dbs[&leader].begin(TxnOptions::default());
    let big = vec![7u8; 1024];
    let rows = store.config().write_buffer_bytes / big.len() + 10;
    for i in 0..rows {
        t.put(format!("\x10row{i:06}").into_bytes(), big.clone())
            .unwrap();
    }
    let id = t.id();
    let anchor = t
        .record_anchor()
        .expect("flushed: it has a record")
        .to_vec();
    let ts = t.commit().unwrap();
    let compacted = {
        let mut c = w.sim.lock();
        let applied = c.stores[&leader].applied_index(GROUP).unwrap();
        for n in c.stores.keys().copied().collect::<Vec<_>>() {
            if n != lagging {
                c.stores
                    .get_mut(&n)
                    .unwrap()
                    .compact(GROUP, applied)
                    .unwrap();
            }
        }
        applied
    };
    w.heal();
    let mut c = w.sim.lock();
    assert!(
        c.run_until(PATIENCE, |c| c.stores[&lagging].applied_index(GROUP)
            >= Some(compacted))
    );
    assert!(
        c.stores[&lagging].truncated_index(GROUP).unwrap() >= compacted,
        "caught up from the log, not from a snapshot"
    );
    let engine = c.engines[&lagging].clone();
    drop(c);
    let status = TxnRecord::read(&*engine, &anchor, id).unwrap();
    assert_eq!(status, tessera_storage::mvcc::TxnStatus::Committed(ts));
}

/// Claim: a transaction whose snapshot lies below the GC threshold cannot commit, even
/// when the leaseholder that collected the garbage did not know of it (its gateway is
/// another node): the deletion it would have to validate against is gone, so it must
/// restart (retryable), not commit on a read that is no longer true.
#[test]
fn a_commit_below_the_gc_threshold_is_refused() {
    let w = World::new(6);
    let leader = w.leader();
    let gateway = follower_of(leader);
    w.write(leader, b"\x10k", b"v1").unwrap();
    let mut t = w.dbs[&gateway].begin(TxnOptions::default());
    assert_eq!(t.get(b"\x10k").unwrap().as_deref(), Some(&b"v1"[..]));
    let mut d = w.dbs[&leader].begin(TxnOptions::default());
    d.delete(b"\x10k".to_vec()).unwrap();
    d.commit().unwrap();
    // Past the GC window: the leaseholder collects the deleted key's history.
    w.advance(11 * 60 * 1000);
    let removed = w.dbs[&leader].store().gc_once().unwrap();
    assert!(removed > 0, "nothing was collected");
    t.put(b"\x10other".to_vec(), b"x".to_vec()).unwrap();
    let err = t.commit().expect_err("committed on a collected read");
    assert!(matches!(err, Error::TooOld { .. }), "{err}");
    assert!(err.is_retryable(), "{err}");
}

/// Claim: the GC threshold is part of the tablet's replicated state: after the lease
/// moves, the new leaseholder refuses a read below the threshold the old one set
/// instead of serving a snapshot whose history is gone.
#[test]
fn the_gc_threshold_survives_a_lease_change() {
    let w = World::new(7);
    let old = w.leader();
    let next = follower_of(old);
    w.write(old, b"\x10k", b"v1").unwrap();
    let mut t = w.dbs[&next].begin(TxnOptions::default());
    w.write(old, b"\x10k", b"v2").unwrap();
    let mut d = w.dbs[&old].begin(TxnOptions::default());
    d.delete(b"\x10k".to_vec()).unwrap();
    d.commit().unwrap();
    w.advance(11 * 60 * 1000);
    assert!(w.dbs[&old].store().gc_once().unwrap() > 0);
    w.isolate(old);
    {
        let mut c = w.sim.lock();
        let others: Vec<u64> = (1..=3).filter(|n| *n != old).collect();
        assert!(c.run_until(PATIENCE, |c| others.iter().any(|n| {
            others
                .iter()
                .all(|m| c.stores[m].leaseholder(GROUP).map(|l| l.0) == Some(*n))
        })));
    }
    // `t` began on a node that is still connected; its read goes to the new leaseholder.
    let err = t
        .get(b"\x10k")
        .expect_err("served a snapshot below the GC threshold");
    assert!(matches!(err, Error::TooOld { .. }), "{err}");
}

/// Claim: after the lease moves away from a node whose clock ran ahead, a transaction on
/// the new leaseholder that meets one of that node's writes in its uncertainty interval
/// (after reading something, so it cannot restart in place) fails, and its retry
/// succeeds and sees the write: the failure moved the clock past it. Otherwise every
/// retry would be uncertain again until real time caught up with the fast clock.
#[test]
fn a_retry_after_an_uncertain_read_succeeds() {
    let w = World::new(8);
    let old = w.leader();
    w.skew(old, 400);
    let written = w.write(old, b"\x10k", b"v1").unwrap();
    w.isolate(old);
    let new = w.leaseholder_besides(old);
    let attempt = || -> Result<Option<Vec<u8>>> {
        let mut t = w.dbs[&new].begin(TxnOptions::default());
        assert!(
            t.read_ts() < written,
            "the scenario needs a read_ts below the write"
        );
        t.get(b"\x10a")?;
        let v = t.get(b"\x10k")?;
        t.commit()?;
        Ok(v)
    };
    let first = attempt().expect_err("the first attempt should meet the write as uncertain");
    assert!(matches!(first, Error::Uncertain { .. }), "{first}");
    let mut t = w.dbs[&new].begin(TxnOptions::default());
    assert!(
        t.read_ts() > written,
        "the retry began at {} below the write at {written}",
        t.read_ts()
    );
    t.get(b"\x10a").unwrap();
    assert_eq!(t.get(b"\x10k").unwrap().as_deref(), Some(&b"v1"[..]));
    t.commit().unwrap();
}

/// Claim: a scan served by the leaseholder for another node's transaction is recorded
/// in the leaseholder's timestamp cache, where the writes it must precede are checked.
#[test]
fn forwarded_scans_are_recorded_at_the_leaseholder() {
    let w = World::new(9);
    let leader = w.leader();
    let gateway = follower_of(leader);
    // The lease is in use, and real time is past its floor: the cache's low-water mark
    // says nothing about the scan.
    w.write(leader, b"\x11x", b"v").unwrap();
    w.advance(2 * MAX_OFFSET / MS);
    let mut t = w.dbs[&gateway].begin(TxnOptions::default());
    let rows = t.scan(b"\x10a", Some(b"\x10z"), 100).unwrap();
    assert!(rows.is_empty());
    let read_ts = t.read_ts();
    t.commit().unwrap();
    let seen = w.dbs[&leader].store().read_timestamp(b"\x10m");
    assert!(
        seen >= read_ts,
        "the leaseholder knows of a read at {seen}, not of the scan at {read_ts}"
    );
}

/// Claim: `get_many` from a node that holds no lease sends each tablet's keys to its
/// leaseholder in one request (two tablets: two requests, for many keys), answers
/// what the leaseholder holds, and each key is recorded in the leaseholder's timestamp
/// cache.
#[test]
fn forwarded_get_many_is_one_request_per_tablet() {
    let w = World::new(13);
    let leader = w.leader();
    let gateway = follower_of(leader);
    w.split(leader, b"\x10m").unwrap();
    let keys: Vec<Vec<u8>> = (0..20u8)
        .map(|i| vec![0x10, if i % 2 == 0 { b'a' } else { b'x' }, i])
        .collect();
    for k in keys.iter().step_by(3) {
        w.write(leader, k, k).unwrap();
    }
    w.advance(2 * MAX_OFFSET / MS);
    let mut t = w.dbs[&gateway].begin(TxnOptions::default());
    let before = w.peers[&gateway]
        .calls
        .load(std::sync::atomic::Ordering::SeqCst);
    let values = t.get_many(&keys).unwrap();
    let calls = w.peers[&gateway]
        .calls
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert_eq!(calls, 2, "requests for 20 keys on two tablets");
    for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
        assert_eq!(v.as_ref(), (i % 3 == 0).then_some(k), "key {k:?}");
    }
    let read_ts = t.read_ts();
    t.commit().unwrap();
    for k in &keys {
        let seen = w.dbs[&leader].store().read_timestamp(k);
        assert!(
            seen >= read_ts,
            "{k:?} recorded at {seen}, read at {read_ts}"
        );
    }
}

/// Claim: a commit that a node starts serving itself, believing it still holds the
/// lease, and that its replica then refuses (the lease had just moved; nothing was
/// proposed) goes to the new leaseholder instead of failing the statement.
#[test]
fn a_request_refused_for_a_lease_that_just_moved_is_routed_again() {
    let w = World::new(14);
    let old = w.leader();
    let new = follower_of(old);
    assert_eq!(w.transfer_leases(new), 1);
    assert_eq!(w.leaseholder_besides(old), new);
    w.write(new, b"\x10k", b"v1").unwrap();
    let mut t = w.dbs[&old].begin(TxnOptions::default());
    assert_eq!(t.get(b"\x10k").unwrap().as_deref(), Some(&b"v1"[..]));
    t.put(b"\x10k".to_vec(), b"v2".to_vec()).unwrap();
    *w.stores.stale_leader.lock() = Some(old);
    t.commit().unwrap();
    assert_eq!(
        w.read(new, b"\x10k").unwrap().0.as_deref(),
        Some(&b"v2"[..])
    );
}

/// A store config whose transactions flush intents after a few hundred bytes.
fn small_buffers() -> StoreConfig {
    StoreConfig {
        write_buffer_bytes: 256,
        intent_batch_bytes: 128,
        ..StoreConfig::default()
    }
}

/// Open a transaction on `node` that holds intents on `\x10k` and more keys.
fn with_intents(w: &World, node: u64, tag: &str) -> tessera_cluster::Txn {
    let mut t = w.dbs[&node].begin(TxnOptions::default());
    t.put(b"\x10k".to_vec(), tag.as_bytes().to_vec()).unwrap();
    for i in 0..20 {
        t.put(format!("\x10k{i:03}").into_bytes(), vec![b'x'; 32])
            .unwrap();
    }
    t
}

/// Claim: the intents of a transaction whose gateway stopped renewing its heartbeat
/// (it crashed, or is cut off) do not lock their keys for ever. While the heartbeat is
/// fresh, a conflicting writer fails (retryably); once it is older than the expiry, a
/// writer aborts the abandoned transaction and goes ahead, and the abandoned
/// transaction can no longer commit: none of its writes ever becomes visible.
#[test]
fn intents_whose_heartbeat_expired_are_pushed_aside() {
    let w = World::with_config(10, small_buffers());
    let leader = w.leader();
    let gateway = follower_of(leader);
    let other = (1..=3).find(|n| *n != leader && *n != gateway).unwrap();
    let abandoned = with_intents(&w, gateway, "abandoned");
    let err = w.write(other, b"\x10k", b"early").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // Its gateway never heartbeats again.
    w.advance(6_000);
    w.write(other, b"\x10k", b"later").unwrap();
    let mut abandoned = abandoned;
    let err = abandoned.commit().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        w.read(leader, b"\x10k").unwrap().0.as_deref(),
        Some(&b"later"[..])
    );
    assert_eq!(w.read(leader, b"\x10k005").unwrap().0, None);
}

/// Claim: a transaction whose gateway keeps renewing its heartbeat is not aborted by
/// conflicting writers, however long it stays open, and then commits.
#[test]
fn a_transaction_with_a_live_heartbeat_is_not_pushed() {
    let w = World::with_config(11, small_buffers());
    let leader = w.leader();
    let gateway = follower_of(leader);
    let other = (1..=3).find(|n| *n != leader && *n != gateway).unwrap();
    let mut live = with_intents(&w, gateway, "live");
    for _ in 0..8 {
        w.advance(1_000);
        assert_eq!(w.dbs[&gateway].store().heartbeat_once(), 1);
        let err = w.write(other, b"\x10k", b"other").unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
    live.commit().unwrap();
    assert_eq!(
        w.read(leader, b"\x10k").unwrap().0.as_deref(),
        Some(&b"live"[..])
    );
}

/// Claim: nothing is acknowledged before it is durable on a quorum. Writes through
/// every gateway, some of them on a tablet split off meanwhile, then every machine
/// crashes at once, each engine losing every write it had not synced: all the
/// acknowledged writes are there when the cluster comes back.
#[test]
fn acknowledged_writes_survive_every_machine_crashing() {
    let mut w = World::new(11);
    w.leader();
    let key = |i: u64| format!("\x10k{i:02}").into_bytes();
    for i in 0..12 {
        if i == 6 {
            w.split(1, &key(6)).unwrap();
        }
        w.write(1 + i % 3, &key(i), format!("v{i}").as_bytes())
            .unwrap();
    }
    let lost: usize = (1..=3).map(|n| w.unsynced_writes(n)).sum();
    for n in 1..=3 {
        w.restart(n, 0);
    }
    let leader = w.leader();
    for i in 0..12 {
        let (v, _) = (0..20)
            .find_map(|_| w.read(leader, &key(i)).ok())
            .expect("the key can be read");
        assert_eq!(
            v,
            Some(format!("v{i}").into_bytes()),
            "key {i} after crashes that lost {lost} unsynced writes"
        );
    }
    assert_eq!(
        w.dbs[&leader].store().ranges().len(),
        2,
        "the split survived"
    );
}

/// Claim: intents flushed on the record's tablet lie at the transaction's `read_ts`,
/// and a reader there ignores them (the commit checks that tablet's timestamp cache).
/// When a split then moves one of them to a new tablet, the commit still lands above
/// that read, even from a gateway whose clock is behind the reader's: the new tablet
/// takes part in the commit and checks the cache it inherited.
#[test]
fn a_split_after_a_flush_keeps_the_commit_above_reads_of_moved_intents() {
    let w = World::with_config(12, small_buffers());
    let leader = w.leader();
    let gateway = follower_of(leader);
    let reader_node = (1..=3).find(|n| *n != leader && *n != gateway).unwrap();
    let mut t = w.dbs[&gateway].begin(TxnOptions::default());
    t.put(b"\x10a".to_vec(), vec![1; 600]).unwrap();
    t.put(b"\x10b".to_vec(), vec![2; 600]).unwrap();
    assert_eq!(t.record_anchor(), Some(&b"\x10a"[..]));
    // The reader's clock is ahead of the writer's gateway by most of the offset.
    w.skew(reader_node, 400);
    let (seen, read_at) = w.read(reader_node, b"\x10b").unwrap();
    assert_eq!(seen, None);
    w.split(leader, b"\x10b").unwrap();
    let committed = t.commit().unwrap();
    assert!(
        committed > read_at,
        "committed at {committed}, at or below a read of its key at {read_at}"
    );
    assert_eq!(w.read(reader_node, b"\x10b").unwrap().0, Some(vec![2; 600]));
}
