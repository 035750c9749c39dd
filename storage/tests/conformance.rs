//! One conformance suite, run against every engine: they must answer identically.

use tessera_storage::{Cf, Engine, MemoryEngine, RocksEngine, Visit, WriteBatch};

fn engines() -> Vec<(&'static str, Box<dyn Engine>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksEngine::open(dir.path()).unwrap();
    vec![
        ("memory", Box::new(MemoryEngine::new()), None),
        ("rocksdb", Box::new(rocks), Some(dir)),
    ]
}

fn collect(e: &dyn Engine, cf: Cf, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    e.scan(cf, start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(Visit::Continue)
    })
    .unwrap();
    out
}

/// Puts, deletes and range deletes in one batch apply in order and atomically.
#[test]
fn batches_apply_in_order() {
    for (name, e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for i in 0u8..10 {
            b.put(Cf::Data, vec![i], vec![i * 2]);
        }
        b.delete(Cf::Data, vec![3u8]);
        b.delete_range(Cf::Data, vec![5u8], vec![8u8]);
        b.put(Cf::Data, vec![6u8], b"back".to_vec());
        e.write(b, true).unwrap();
        let keys: Vec<u8> = collect(&*e, Cf::Data, &[], None)
            .iter()
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(keys, vec![0, 1, 2, 4, 6, 8, 9], "{name}");
        assert_eq!(
            e.get(Cf::Data, &[6]).unwrap(),
            Some(b"back".to_vec()),
            "{name}"
        );
        assert_eq!(e.get(Cf::Data, &[3]).unwrap(), None, "{name}");
    }
}

/// Column families are independent key spaces.
#[test]
fn column_families_are_disjoint() {
    for (name, e, _dir) in engines() {
        let mut b = WriteBatch::new();
        b.put(Cf::Data, b"k".to_vec(), b"data".to_vec());
        b.put(Cf::Raft, b"k".to_vec(), b"raft".to_vec());
        b.put(Cf::Local, b"k".to_vec(), b"local".to_vec());
        e.write(b, false).unwrap();
        for (cf, want) in [(Cf::Data, "data"), (Cf::Raft, "raft"), (Cf::Local, "local")] {
            assert_eq!(
                e.get(cf, b"k").unwrap(),
                Some(want.as_bytes().to_vec()),
                "{name}"
            );
            assert_eq!(collect(&*e, cf, &[], None).len(), 1, "{name}");
        }
    }
}

/// Scans honour bounds, stop when asked, and order keys bytewise.
#[test]
fn scans_are_bounded_and_ordered() {
    for (name, e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for k in [&b"b"[..], b"a", b"ab", b"a\x00", b"\xff", b"c", b""] {
            b.put(Cf::Data, k.to_vec(), k.to_vec());
        }
        e.write(b, true).unwrap();
        let all: Vec<Vec<u8>> = collect(&*e, Cf::Data, &[], None)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted, "{name}");
        assert_eq!(all.len(), 7, "{name}");
        let mid: Vec<Vec<u8>> = collect(&*e, Cf::Data, b"a\x00", Some(b"c"))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            mid,
            vec![b"a\x00".to_vec(), b"ab".to_vec(), b"b".to_vec()],
            "{name}"
        );
        assert!(
            collect(&*e, Cf::Data, b"c", Some(b"b")).is_empty(),
            "{name}"
        );
        let mut seen = 0;
        e.scan(Cf::Data, &[], None, &mut |_, _| {
            seen += 1;
            Ok(if seen == 2 {
                Visit::Stop
            } else {
                Visit::Continue
            })
        })
        .unwrap();
        assert_eq!(seen, 2, "{name}");
    }
}

/// A scan visitor may read the engine while scanning, and large scans see every key.
#[test]
fn scans_allow_reentrant_reads_and_large_spans() {
    for (name, e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for i in 0u32..2000 {
            b.put(Cf::Data, i.to_be_bytes().to_vec(), i.to_le_bytes().to_vec());
        }
        e.write(b, false).unwrap();
        let mut n = 0u32;
        e.scan(Cf::Data, &[], None, &mut |k, v| {
            assert_eq!(e.get(Cf::Data, k).unwrap().as_deref(), Some(v));
            assert_eq!(k, n.to_be_bytes());
            n += 1;
            Ok(Visit::Continue)
        })
        .unwrap();
        assert_eq!(n, 2000, "{name}");
    }
}

/// RocksDB: synced writes survive reopening the store.
#[test]
fn rocksdb_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = RocksEngine::open(dir.path()).unwrap();
        let mut b = WriteBatch::new();
        b.put(Cf::Data, b"durable".to_vec(), b"yes".to_vec());
        b.put(Cf::Local, b"ident".to_vec(), b"node-1".to_vec());
        e.write(b, true).unwrap();
    }
    let e = RocksEngine::open(dir.path()).unwrap();
    assert_eq!(e.get(Cf::Data, b"durable").unwrap(), Some(b"yes".to_vec()));
    assert_eq!(
        e.get(Cf::Local, b"ident").unwrap(),
        Some(b"node-1".to_vec())
    );
}
