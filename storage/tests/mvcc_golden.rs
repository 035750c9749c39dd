//! Data-driven MVCC tests: each `testdata/mvcc/*.txt` script states one claim in its
//! header and runs commands against both engines; the output must equal the checked-in
//! `.out` file (regenerate with `UPDATE_GOLDEN=1`, then review the diff).
//!
//! Commands (timestamps are wall times; `txn=N` makes the command act as transaction N):
//! ```text
//! put KEY VALUE @TS            committed version
//! del KEY @TS                  committed tombstone
//! intent KEY VALUE|- txn=N @TS intent of txn N (`-` deletes)
//! status txn=N pending|aborted|committed@TS
//! resolve KEY txn=N commit@TS|abort
//! get KEY @TS [txn=N] [uncertain=TS]
//! scan START END @TS [txn=N] [limit=N] [uncertain=TS]
//! conflict START END read@TS commit@TS [txn=N]
//! write KEY read@TS [txn=N]    would a write conflict?
//! gc @TS                       collect versions below TS
//! dump                         every engine entry
//! ```

use std::collections::HashMap;

use tessera_storage::mvcc::{self, Intent, ReadView, TxnRecord, TxnStatus};
use tessera_storage::{Cf, Engine, MemoryEngine, RocksEngine, Timestamp, Visit, WriteBatch};

/// Where every script's transaction records are anchored: the empty key, whose
/// tablet-local entries sort below [`mvcc::MVCC_START`], outside what `dump` shows.
const ANCHOR: &[u8] = b"";

fn ts(s: &str) -> Timestamp {
    let s = s.trim_start_matches('@');
    let s = s.split('@').next_back().unwrap();
    Timestamp::new(s.parse().unwrap_or_else(|_| panic!("bad timestamp {s}")), 0)
}

fn show(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap_or_else(|_| format!("{b:?}"))
}

fn run(engine: &dyn Engine, script: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        out.push_str(&format!("> {line}\n"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut opts: HashMap<&str, &str> = HashMap::new();
        let mut args = Vec::new();
        for w in &words[1..] {
            match w.split_once('=') {
                Some((k, v)) => {
                    opts.insert(k, v);
                }
                None => args.push(*w),
            }
        }
        let txn: Option<u128> = opts.get("txn").map(|t| t.parse().unwrap());
        let status = |i: &Intent| TxnRecord::read(engine, &i.anchor, i.txn);
        let uncertain = |read_ts| opts.get("uncertain").map_or(read_ts, |u| ts(u));
        let mut batch = WriteBatch::new();
        let result = match words[0] {
            "put" => {
                mvcc::put_version(
                    &mut batch,
                    args[0].as_bytes(),
                    ts(args[2]),
                    Some(args[1].as_bytes()),
                );
                String::new()
            }
            "del" => {
                mvcc::put_version(&mut batch, args[0].as_bytes(), ts(args[1]), None);
                String::new()
            }
            "intent" => {
                let value = (args[1] != "-").then(|| args[1].as_bytes().to_vec());
                let intent = Intent {
                    txn: txn.unwrap(),
                    anchor: ANCHOR.to_vec(),
                    ts: ts(args[2]),
                    value,
                };
                mvcc::put_intent(&mut batch, args[0].as_bytes(), &intent);
                String::new()
            }
            "status" => {
                let s = match args[0] {
                    "pending" => TxnStatus::Pending,
                    "aborted" => TxnStatus::Aborted,
                    c => TxnStatus::Committed(ts(c)),
                };
                batch.put(
                    Cf::Data,
                    TxnRecord::key(ANCHOR, txn.unwrap()),
                    TxnRecord::encode(s),
                );
                String::new()
            }
            "resolve" => {
                let commit = (args[1] != "abort").then(|| ts(args[1]));
                mvcc::resolve_intent(engine, &mut batch, args[0].as_bytes(), txn.unwrap(), commit)
                    .unwrap();
                String::new()
            }
            "get" => {
                let view = ReadView {
                    read_ts: ts(args[1]),
                    txn,
                    status: &status,
                    uncertainty_limit: uncertain(ts(args[1])),
                };
                match mvcc::get(engine, args[0].as_bytes(), &view) {
                    Ok(Some(v)) => show(&v),
                    Ok(None) => "<none>".into(),
                    Err(e) => format!("error: {e}"),
                }
            }
            "scan" => {
                let view = ReadView {
                    read_ts: ts(args[2]),
                    txn,
                    status: &status,
                    uncertainty_limit: uncertain(ts(args[2])),
                };
                let limit = opts.get("limit").map_or(usize::MAX, |l| l.parse().unwrap());
                match mvcc::scan(
                    engine,
                    args[0].as_bytes(),
                    Some(args[1].as_bytes()),
                    &view,
                    limit,
                ) {
                    Ok(rows) => rows
                        .iter()
                        .map(|(k, v)| format!("{}={}", show(k), show(v)))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Err(e) => format!("error: {e}"),
                }
            }
            "conflict" => {
                let view = ReadView {
                    read_ts: ts(args[2]),
                    txn,
                    status: &status,
                    uncertainty_limit: Timestamp::ZERO,
                };
                let c = mvcc::find_conflict(
                    engine,
                    args[0].as_bytes(),
                    Some(args[1].as_bytes()),
                    &view,
                    ts(args[3]),
                )
                .unwrap();
                format!("{c:?}").replace(&format!("{:?}", Vec::<u8>::new()), "[]")
            }
            "write" => {
                let view = ReadView {
                    read_ts: ts(args[1]),
                    txn,
                    status: &status,
                    uncertainty_limit: Timestamp::ZERO,
                };
                format!(
                    "{:?}",
                    mvcc::write_conflict(engine, args[0].as_bytes(), &view).unwrap()
                )
            }
            "gc" => {
                let n = mvcc::gc(engine, &mut batch, mvcc::MVCC_START, None, ts(args[0])).unwrap();
                format!("removed {n}")
            }
            "dump" => {
                let mut rows = Vec::new();
                engine
                    .scan(Cf::Data, mvcc::MVCC_START, None, &mut |k, v| {
                        let (user, t) = mvcc::decode_key(k).unwrap();
                        let what = match t {
                            Some(t) => format!("@{}", t.wall),
                            None => "intent".to_string(),
                        };
                        rows.push(format!("{} {} ({} bytes)", show(&user), what, v.len()));
                        Ok(Visit::Continue)
                    })
                    .unwrap();
                rows.join("\n")
            }
            other => panic!("unknown command {other}"),
        };
        engine.write(batch, true).unwrap();
        if !result.is_empty() {
            out.push_str(&result);
            out.push('\n');
        }
    }
    out
}

#[test]
fn mvcc_histories() {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("testdata/mvcc");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        let mem = run(&MemoryEngine::new(), &text);
        let tmp = tempfile::tempdir().unwrap();
        let rocks = run(&RocksEngine::open(tmp.path()).unwrap(), &text);
        assert_eq!(mem, rocks, "engines disagree on {}", script.display());
        let golden = script.with_extension("out");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &mem).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {} (run with UPDATE_GOLDEN=1)", golden.display()));
        assert_eq!(mem, want, "golden mismatch for {}", script.display());
    }
}
