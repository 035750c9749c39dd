//! Multi-version concurrency control over an [`Engine`]: pure functions, no state.
//!
//! ## Model
//!
//! Every user key has a history of versions `key @ ts`; a version holds a value or a
//! tombstone. A transaction that has not committed yet may own an *intent* on a key: a
//! provisional value that names its transaction. The transaction's record (see
//! [`TxnRecord`]) says whether the intent is pending, committed at some timestamp, or
//! aborted. A record is a tablet-local entry anchored at a user key the transaction
//! writes (its *anchor*, [`TxnRecord::key`]), and every intent names that anchor: the
//! record is replicated, snapshotted and moved by splits with the anchor's tablet, and
//! whoever meets an intent knows where to ask about it.
//!
//! ## Layout in [`Cf::Data`]
//!
//! ```text
//!   escaped(user key) 00 01                 -> intent  (txn id, ts, anchor, value|tombstone)
//!   escaped(user key) 00 01 !ts (12 bytes)  -> version (value|tombstone)
//!   escaped(user key) 00 02 suffix          -> tablet-local entry (a record: "txn/" id)
//! ```
//!
//! The user key is escaped (`00` becomes `00 FF`) and terminated with `00 01`, so user
//! key order is preserved and no key's encoding is a prefix of another's. The intent
//! sorts before all versions of its key; versions sort newest first because the
//! timestamp is stored inverted.
//!
//! ## Rules
//!
//! - A read at `read_ts` by transaction `T` sees, per key: `T`'s own intent if any;
//!   else a foreign intent whose transaction committed at or below `read_ts`; else the
//!   newest version at or below `read_ts`. Tombstones read as absent.
//! - A read at `read_ts` with an uncertainty limit `u > read_ts` that meets a committed
//!   version (or an intent committed) in `(read_ts, u]` fails with
//!   [`Error::Uncertain`]: that write may have happened before the read began, on a node
//!   whose clock is ahead, so the reader must restart above it.
//! - A read span is *valid* over `(read_ts, commit_ts]` when no committed version and no
//!   live foreign intent lies in that window ([`find_conflict`]).
//! - A write by `T` conflicts when a version newer than `T`'s `read_ts`, or a live foreign
//!   intent, exists on the key ([`write_conflict`]): first committer wins.
//! - A write never erases another transaction's committed write: a committed foreign
//!   intent on the key becomes a version at its commit timestamp in the same batch
//!   ([`prepare_write`]).
//! - GC below a threshold keeps, per key, only the newest version at or below the
//!   threshold, and drops even that when it is a tombstone: reads at or above the
//!   threshold are unaffected ([`gc`]).

use crate::engine::Visit;
use crate::{Cf, Engine, Error, Result, Timestamp, WriteBatch};

/// A transaction identifier.
pub type TxnId = u128;

/// The fate of a transaction as recorded in its transaction record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnStatus {
    /// Still running (or abandoned without a record of its end).
    Pending,
    /// Committing at the timestamp: the record and the transaction's last writes went
    /// out in one round. It has committed exactly when every write the record lists as
    /// in flight holds its intent at or below the timestamp; until that is settled it
    /// counts as pending, and only its coordinator or a status recovery moves it on.
    Staging(Timestamp),
    /// Committed at the timestamp.
    Committed(Timestamp),
    /// Rolled back.
    Aborted,
}

/// Where MVCC-encoded keys begin. Below lies the system region of raw keys that the
/// cluster writes itself: node addresses and the range id counter.
pub const MVCC_START: &[u8] = &[0x02];

/// A transaction record, stored in [`Cf::Data`] under [`TxnRecord::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnRecord;

impl TxnRecord {
    /// What follows the anchor in every record's key ([`local_key`]).
    pub const SUFFIX: &'static [u8] = b"txn/";

    /// The key of `txn`'s record, anchored at user key `anchor`: a tablet-local entry
    /// that lies in the tablet owning `anchor` and moves with it.
    pub fn key(anchor: &[u8], txn: TxnId) -> Vec<u8> {
        local_key(anchor, &[Self::SUFFIX, &txn.to_be_bytes()].concat())
    }

    /// Encode a status.
    pub fn encode(status: TxnStatus) -> Vec<u8> {
        match status {
            TxnStatus::Pending => vec![0],
            TxnStatus::Committed(ts) => [&[1u8][..], &ts.encode()].concat(),
            TxnStatus::Aborted => vec![2],
            TxnStatus::Staging(ts) => Self::encode_staging(ts, Timestamp::ZERO, &[]),
        }
    }

    /// Encode a staging record: committing at `ts`, its coordinator last heard from at
    /// `heartbeat`, with its writes `in_flight` (keys outside the record's tablet that
    /// must hold its intents at or below `ts` for the commit to have happened).
    pub fn encode_staging(ts: Timestamp, heartbeat: Timestamp, in_flight: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![3u8];
        out.extend_from_slice(&ts.encode());
        out.extend_from_slice(&heartbeat.encode());
        out.extend_from_slice(&(in_flight.len() as u32).to_be_bytes());
        for k in in_flight {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
        }
        out
    }

    /// The writes a staging record lists as in flight (empty for any other record).
    pub fn in_flight(engine: &dyn Engine, anchor: &[u8], txn: TxnId) -> Result<Vec<Vec<u8>>> {
        let Some(v) = engine.get(Cf::Data, &Self::key(anchor, txn))? else {
            return Ok(Vec::new());
        };
        if v.first() != Some(&3) {
            return Ok(Vec::new());
        }
        let bad = || corrupt("staging record");
        let mut rest = v.get(25..).ok_or_else(bad)?;
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(bad());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
        let mut keys = Vec::with_capacity(count.min(1 << 16) as usize);
        for _ in 0..count {
            let len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            keys.push(take(len)?.to_vec());
        }
        Ok(keys)
    }

    /// Encode a pending record whose coordinator was last heard from at `heartbeat` and
    /// that may not commit below `pushed` (readers that met its intents above their
    /// timestamps raised it; [`Timestamp::ZERO`]: never pushed).
    pub fn encode_pending(heartbeat: Timestamp, pushed: Timestamp) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&heartbeat.encode());
        if pushed != Timestamp::ZERO {
            out.extend_from_slice(&pushed.encode());
        }
        out
    }

    /// When the coordinator of a pending or staging transaction was last heard from:
    /// `None` when there is no record, it is final, or it carries no heartbeat (a record
    /// written by a push before any heartbeat carries [`Timestamp::ZERO`]).
    pub fn heartbeat(engine: &dyn Engine, anchor: &[u8], txn: TxnId) -> Result<Option<Timestamp>> {
        Ok(match engine.get(Cf::Data, &Self::key(anchor, txn))? {
            Some(v) if v.first() == Some(&3) && v.len() >= 25 => {
                Some(Timestamp::decode(&v[13..25]).ok_or_else(|| corrupt("txn record heartbeat"))?)
                    .filter(|hb| *hb != Timestamp::ZERO)
            }
            Some(v) if v.first() == Some(&0) && v.len() > 1 => Some(
                Timestamp::decode(&v[1..13.min(v.len())])
                    .ok_or_else(|| corrupt("txn record heartbeat"))?,
            )
            .filter(|hb| *hb != Timestamp::ZERO),
            _ => None,
        })
    }

    /// The lowest timestamp a pending transaction may still commit at, as raised by
    /// pushes ([`Timestamp::ZERO`] when never pushed or not pending).
    pub fn pushed(engine: &dyn Engine, anchor: &[u8], txn: TxnId) -> Result<Timestamp> {
        Ok(match engine.get(Cf::Data, &Self::key(anchor, txn))? {
            Some(v) if v.first() == Some(&0) && v.len() > 13 => {
                Timestamp::decode(&v[13..]).ok_or_else(|| corrupt("txn record push"))?
            }
            _ => Timestamp::ZERO,
        })
    }

    /// Read a transaction's status; no record means pending.
    pub fn read(engine: &dyn Engine, anchor: &[u8], txn: TxnId) -> Result<TxnStatus> {
        match engine.get(Cf::Data, &Self::key(anchor, txn))? {
            None => Ok(TxnStatus::Pending),
            Some(v) => match v.split_first() {
                Some((0, _)) => Ok(TxnStatus::Pending),
                Some((1, ts)) => Ok(TxnStatus::Committed(
                    Timestamp::decode(ts).ok_or_else(|| corrupt("txn record"))?,
                )),
                Some((2, _)) => Ok(TxnStatus::Aborted),
                Some((3, rest)) if rest.len() >= 12 => Ok(TxnStatus::Staging(
                    Timestamp::decode(&rest[..12]).ok_or_else(|| corrupt("txn record"))?,
                )),
                _ => Err(corrupt("txn record")),
            },
        }
    }
}

/// A tablet's garbage-collection threshold: history at or below it may be gone, so
/// reads and commits with a `read_ts` below it are refused. It is a tablet-local entry
/// anchored at the tablet's first key ([`local_key`]), so it is replicated, snapshotted
/// and known to every future leaseholder of the tablet, and it is written in the same
/// batch as the first deletions it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcThreshold;

impl GcThreshold {
    /// The name the threshold's latch goes by in every tablet's latch manager.
    pub const KEY: &'static [u8] = b"\x01gc/threshold";

    /// The engine key of the threshold of the tablet starting at `start`.
    pub fn key(start: &[u8]) -> Vec<u8> {
        local_key(start, b"gc/threshold")
    }

    /// The stored threshold of the tablet starting at `start` ([`Timestamp::ZERO`]
    /// before the first collection). The first tablet's may still be at [`Self::KEY`],
    /// where stores kept it before every tablet had its own.
    pub fn read(engine: &dyn Engine, start: &[u8]) -> Result<Timestamp> {
        let stored = match engine.get(Cf::Data, &Self::key(start))? {
            None if start.is_empty() => engine.get(Cf::Data, Self::KEY)?,
            other => other,
        };
        match stored {
            None => Ok(Timestamp::ZERO),
            Some(v) => Timestamp::decode(&v).ok_or_else(|| corrupt("gc threshold")),
        }
    }

    /// Queue raising the threshold of the tablet starting at `start` to `ts`.
    pub fn put(batch: &mut WriteBatch, start: &[u8], ts: Timestamp) {
        batch.put(Cf::Data, Self::key(start), ts.encode().to_vec());
    }
}

/// An uncommitted write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The owning transaction.
    pub txn: TxnId,
    /// The user key its record is anchored at ([`TxnRecord::key`]).
    pub anchor: Vec<u8>,
    /// The timestamp the transaction was at when it wrote the intent.
    pub ts: Timestamp,
    /// The value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// Why a read span or a write cannot commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The user key involved.
    pub key: Vec<u8>,
    /// What was found there.
    pub kind: ConflictKind,
}

/// What a [`Conflict`] found on its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// A committed version at this timestamp.
    Version(Timestamp),
    /// An intent of another live (or recently committed) transaction, whose record is
    /// anchored at `anchor`.
    Intent {
        /// The owning transaction.
        txn: TxnId,
        /// Its record's anchor.
        anchor: Vec<u8>,
    },
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("mvcc: {what}"))
}

fn encode_user(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        if b == 0 {
            out.extend_from_slice(&[0, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

/// The engine key of `key`'s intent; also the lower bound of all of `key`'s entries.
pub fn intent_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    encode_user(&mut out, key);
    out
}

/// The engine key of `key @ ts`.
pub fn version_key(key: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 14);
    encode_user(&mut out, key);
    let inv = Timestamp {
        wall: !ts.wall,
        logical: !ts.logical,
    };
    out.extend_from_slice(&inv.encode());
    out
}

/// The engine key of the tablet-local entry `suffix` anchored at user key `anchor`: it
/// sorts after every entry of `anchor` and before every entry of any greater user key,
/// so it lies in the span of the tablet that owns `anchor` and moves with it. Scans of
/// user keys skip such entries.
pub fn local_key(anchor: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(anchor.len() + suffix.len() + 2);
    encode_user(&mut out, anchor);
    *out.last_mut().expect("terminated") = 2;
    out.extend_from_slice(suffix);
    out
}

/// Split an engine key into the user key and the version timestamp (`None`: intent).
pub fn decode_key(k: &[u8]) -> Result<(Vec<u8>, Option<Timestamp>)> {
    decode_entry(k)?.ok_or_else(|| corrupt("a tablet-local key where a user key was expected"))
}

/// [`decode_key`], or `None` for a tablet-local key ([`local_key`]).
fn decode_entry(k: &[u8]) -> Result<Option<(Vec<u8>, Option<Timestamp>)>> {
    let mut user = Vec::with_capacity(k.len());
    let mut i = 0;
    while i < k.len() {
        if k[i] == 0 {
            match k.get(i + 1) {
                Some(0xFF) => user.push(0),
                Some(1) => {
                    let rest = &k[i + 2..];
                    if rest.is_empty() {
                        return Ok(Some((user, None)));
                    }
                    let inv = Timestamp::decode(rest).ok_or_else(|| corrupt("version suffix"))?;
                    return Ok(Some((
                        user,
                        Some(Timestamp {
                            wall: !inv.wall,
                            logical: !inv.logical,
                        }),
                    )));
                }
                Some(2) => return Ok(None),
                _ => return Err(corrupt("bad escape")),
            }
            i += 2;
        } else {
            user.push(k[i]);
            i += 1;
        }
    }
    Err(corrupt("unterminated key"))
}

fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(v) => [&[1u8][..], v].concat(),
        None => vec![0],
    }
}

fn decode_value(v: &[u8]) -> Result<Option<Vec<u8>>> {
    match v.split_first() {
        Some((1, rest)) => Ok(Some(rest.to_vec())),
        Some((0, _)) => Ok(None),
        _ => Err(corrupt("version value")),
    }
}

/// `txn (16) ts (12) anchor length (4) anchor value|tombstone`.
fn encode_intent(i: &Intent) -> Vec<u8> {
    let value = i.value.as_ref().map_or(0, |v| v.len());
    let mut out = Vec::with_capacity(33 + i.anchor.len() + value);
    out.extend_from_slice(&i.txn.to_be_bytes());
    out.extend_from_slice(&i.ts.encode());
    out.extend_from_slice(&(i.anchor.len() as u32).to_be_bytes());
    out.extend_from_slice(&i.anchor);
    out.extend_from_slice(&encode_value(i.value.as_deref()));
    out
}

fn decode_intent(v: &[u8]) -> Result<Intent> {
    if v.len() < 33 {
        return Err(corrupt("intent"));
    }
    let len = u32::from_be_bytes(v[28..32].try_into().expect("4 bytes")) as usize;
    let anchor = v
        .get(32..32 + len)
        .ok_or_else(|| corrupt("intent anchor"))?;
    Ok(Intent {
        txn: u128::from_be_bytes(v[..16].try_into().expect("16 bytes")),
        ts: Timestamp::decode(&v[16..28]).ok_or_else(|| corrupt("intent ts"))?,
        anchor: anchor.to_vec(),
        value: decode_value(&v[32 + len..])?,
    })
}

/// Queue a committed version `key @ ts` (a value, or a tombstone for `None`).
pub fn put_version(batch: &mut WriteBatch, key: &[u8], ts: Timestamp, value: Option<&[u8]>) {
    batch.put(Cf::Data, version_key(key, ts), encode_value(value));
}

/// Queue an intent on `key`, replacing any earlier intent of the same transaction.
pub fn put_intent(batch: &mut WriteBatch, key: &[u8], intent: &Intent) {
    batch.put(Cf::Data, intent_key(key), encode_intent(intent));
}

/// Read `key`'s intent, if any.
pub fn get_intent(engine: &dyn Engine, key: &[u8]) -> Result<Option<Intent>> {
    engine
        .get(Cf::Data, &intent_key(key))?
        .map(|v| decode_intent(&v))
        .transpose()
}

/// Queue the resolution of `txn`'s intent on `key`: with `Some(commit_ts)` it becomes a
/// version at that timestamp, with `None` it is removed. Does nothing when the key holds
/// no intent of `txn`.
pub fn resolve_intent(
    engine: &dyn Engine,
    batch: &mut WriteBatch,
    key: &[u8],
    txn: TxnId,
    commit_ts: Option<Timestamp>,
) -> Result<()> {
    let Some(intent) = get_intent(engine, key)? else {
        return Ok(());
    };
    if intent.txn != txn {
        return Ok(());
    }
    if let Some(ts) = commit_ts {
        put_version(batch, key, ts, intent.value.as_deref());
    }
    batch.delete(Cf::Data, intent_key(key));
    Ok(())
}

/// How a read sees transactions: at which timestamp, as which transaction, and how to
/// learn the fate of other transactions' intents.
pub struct ReadView<'a> {
    /// The snapshot timestamp.
    pub read_ts: Timestamp,
    /// The reading transaction, whose own intents are visible to it.
    pub txn: Option<TxnId>,
    /// Committed writes in `(read_ts, uncertainty_limit]` make the read uncertain (a
    /// limit at or below `read_ts`: no uncertainty).
    pub uncertainty_limit: Timestamp,
    /// Looks up the status of the transaction that owns a foreign intent (the intent
    /// names it, its record's anchor and its timestamp).
    pub status: &'a dyn Fn(&Intent) -> Result<TxnStatus>,
}

impl ReadView<'_> {
    /// The value an intent contributes to this view: `Some(v)` when visible (where
    /// `v = None` is a delete), `None` when the reader must look at versions instead.
    fn intent_value(&self, key: &[u8], intent: Intent) -> Result<Option<Option<Vec<u8>>>> {
        if Some(intent.txn) == self.txn {
            return Ok(Some(intent.value));
        }
        match (self.status)(&intent)? {
            TxnStatus::Committed(ts) if ts <= self.read_ts => Ok(Some(intent.value)),
            TxnStatus::Committed(ts) => {
                self.check_uncertain(key, ts)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A committed write at `ts` above `read_ts` is uncertain when it is within the limit.
    fn check_uncertain(&self, key: &[u8], ts: Timestamp) -> Result<()> {
        if ts > self.read_ts && ts <= self.uncertainty_limit {
            return Err(Error::Uncertain {
                key: key.to_vec(),
                ts,
            });
        }
        Ok(())
    }
}

/// The engine key range holding the entries of user keys in `[start, end)`.
fn engine_span(start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    (intent_key(start), end.map(intent_key))
}

/// Visible values of user keys in `[start, end)` in key order, at most `limit` of them.
pub fn scan(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
    view: &ReadView<'_>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let (from, to) = engine_span(start, end);
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut done = false;
    if limit == 0 {
        return Ok(out);
    }
    engine.scan(Cf::Data, &from, to.as_deref(), &mut |k, v| {
        let Some((user, ts)) = decode_entry(k)? else {
            return Ok(Visit::Continue);
        };
        if current.as_deref() != Some(user.as_slice()) {
            current = Some(user.clone());
            done = false;
        }
        if done {
            return Ok(Visit::Continue);
        }
        let visible = match ts {
            None => view.intent_value(&user, decode_intent(v)?)?,
            Some(ts) if ts <= view.read_ts => Some(decode_value(v)?),
            Some(ts) => {
                view.check_uncertain(&user, ts)?;
                None
            }
        };
        if let Some(value) = visible {
            done = true;
            if let Some(value) = value {
                out.push((user, value));
                if out.len() >= limit {
                    return Ok(Visit::Stop);
                }
            }
        }
        Ok(Visit::Continue)
    })?;
    Ok(out)
}

/// The visible value of `key`.
pub fn get(engine: &dyn Engine, key: &[u8], view: &ReadView<'_>) -> Result<Option<Vec<u8>>> {
    let end = [key, &[0u8][..]].concat();
    Ok(scan(engine, key, Some(&end), view, 1)?
        .pop()
        .map(|(_, v)| v))
}

/// The first reason, in key order, why a read of `[start, end)` at `read_ts` would not
/// have seen the same data at `commit_ts`: a committed version in `(read_ts, commit_ts]`
/// or an intent of another transaction that is pending or committed after `read_ts`.
pub fn find_conflict(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
    view: &ReadView<'_>,
    commit_ts: Timestamp,
) -> Result<Option<Conflict>> {
    let (from, to) = engine_span(start, end);
    let mut found = None;
    engine.scan(Cf::Data, &from, to.as_deref(), &mut |k, v| {
        let Some((user, ts)) = decode_entry(k)? else {
            return Ok(Visit::Continue);
        };
        let kind = match ts {
            Some(ts) if ts > view.read_ts && ts <= commit_ts => Some(ConflictKind::Version(ts)),
            Some(_) => None,
            None => {
                let intent = decode_intent(v)?;
                if Some(intent.txn) == view.txn {
                    None
                } else {
                    match (view.status)(&intent)? {
                        TxnStatus::Aborted => None,
                        TxnStatus::Committed(ts) if ts <= view.read_ts => None,
                        _ => Some(ConflictKind::Intent {
                            txn: intent.txn,
                            anchor: intent.anchor,
                        }),
                    }
                }
            }
        };
        if let Some(kind) = kind {
            found = Some(Conflict { key: user, kind });
            return Ok(Visit::Stop);
        }
        Ok(Visit::Continue)
    })?;
    Ok(found)
}

/// Whether a write of `key` by the viewing transaction conflicts: a version newer than
/// its `read_ts`, or a live foreign intent, already exists.
pub fn write_conflict(
    engine: &dyn Engine,
    key: &[u8],
    view: &ReadView<'_>,
) -> Result<Option<Conflict>> {
    let end = [key, &[0u8][..]].concat();
    find_conflict(engine, key, Some(&end), view, Timestamp::MAX)
}

/// Check a write of `key` by the viewing transaction (the conflicts of [`write_conflict`],
/// in one pass over the key) and, when it may go ahead, queue what must happen first to
/// an intent already on the key, so that the write erases no one's history: an intent of
/// a transaction that committed becomes its version at its commit timestamp; the
/// viewer's own intent and an aborted one are dropped. With `intent_follows` the caller
/// is about to put its own intent on the key, which replaces the old one: no delete.
pub fn prepare_write(
    engine: &dyn Engine,
    batch: &mut WriteBatch,
    key: &[u8],
    view: &ReadView<'_>,
    intent_follows: bool,
) -> Result<Option<Conflict>> {
    // One pass over the key's entries: its intent sorts first, then its versions,
    // newest first, so the first version decides whether a newer write exists.
    let end = [key, &[0u8][..]].concat();
    let (from, to) = engine_span(key, Some(&end));
    let mut intent = None;
    let mut newer = None;
    engine.scan(
        Cf::Data,
        &from,
        to.as_deref(),
        &mut |k, v| match decode_entry(k)?.map(|(_, ts)| ts) {
            None => Ok(Visit::Continue),
            Some(None) => {
                intent = Some(decode_intent(v)?);
                Ok(Visit::Continue)
            }
            Some(Some(ts)) => {
                if ts > view.read_ts {
                    newer = Some(ts);
                }
                Ok(Visit::Stop)
            }
        },
    )?;
    let conflict = |kind| {
        Ok(Some(Conflict {
            key: key.to_vec(),
            kind,
        }))
    };
    if let Some(ts) = newer {
        return conflict(ConflictKind::Version(ts));
    }
    let Some(intent) = intent else {
        return Ok(None);
    };
    if Some(intent.txn) != view.txn {
        match (view.status)(&intent)? {
            TxnStatus::Committed(ts) if ts <= view.read_ts => {
                put_version(batch, key, ts, intent.value.as_deref())
            }
            TxnStatus::Aborted => {}
            TxnStatus::Committed(_) | TxnStatus::Pending | TxnStatus::Staging(_) => {
                return conflict(ConflictKind::Intent {
                    txn: intent.txn,
                    anchor: intent.anchor,
                })
            }
        }
    }
    if !intent_follows {
        batch.delete(Cf::Data, intent_key(key));
    }
    Ok(None)
}

/// Queue the garbage collection of `[start, end)` below `threshold`: per key, every
/// version older than the newest one at or below `threshold` goes, and that one too when
/// it is a tombstone. Intents are left alone. Returns how many versions were queued.
pub fn gc(
    engine: &dyn Engine,
    batch: &mut WriteBatch,
    start: &[u8],
    end: Option<&[u8]>,
    threshold: Timestamp,
) -> Result<usize> {
    let (from, to) = engine_span(start, end);
    let mut current: Option<Vec<u8>> = None;
    let mut seen_base = false;
    let mut removed = 0;
    engine.scan(Cf::Data, &from, to.as_deref(), &mut |k, v| {
        let Some((user, ts)) = decode_entry(k)? else {
            return Ok(Visit::Continue);
        };
        if current.as_deref() != Some(user.as_slice()) {
            current = Some(user);
            seen_base = false;
        }
        let Some(ts) = ts else {
            return Ok(Visit::Continue);
        };
        if ts > threshold {
            return Ok(Visit::Continue);
        }
        if seen_base || decode_value(v)?.is_none() {
            batch.delete(Cf::Data, k.to_vec());
            removed += 1;
        }
        seen_base = true;
        Ok(Visit::Continue)
    })?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_sorts_intent_first_then_newest() {
        let intent = intent_key(b"a");
        let new = version_key(b"a", Timestamp::new(20, 0));
        let old = version_key(b"a", Timestamp::new(10, 5));
        let next = intent_key(b"a\0");
        assert!(intent < new && new < old && old < next);
        assert_eq!(
            decode_key(&old).unwrap(),
            (b"a".to_vec(), Some(Timestamp::new(10, 5)))
        );
        assert_eq!(decode_key(&next).unwrap(), (b"a\0".to_vec(), None));
        assert!(intent_key(b"a") < intent_key(b"ab"));
    }

    #[test]
    fn a_pending_record_keeps_its_heartbeat_and_push() {
        let engine = crate::MemoryEngine::default();
        let (txn, a) = (7, &b"k"[..]);
        let put = |v: Vec<u8>| {
            let mut b = WriteBatch::new();
            b.put(Cf::Data, TxnRecord::key(a, txn), v);
            engine.write(b, true).unwrap();
        };
        let (hb, pushed) = (Timestamp::new(5, 1), Timestamp::new(9, 2));
        put(TxnRecord::encode_pending(hb, Timestamp::ZERO));
        assert_eq!(TxnRecord::heartbeat(&engine, a, txn).unwrap(), Some(hb));
        assert_eq!(TxnRecord::pushed(&engine, a, txn).unwrap(), Timestamp::ZERO);
        put(TxnRecord::encode_pending(hb, pushed));
        assert_eq!(
            TxnRecord::read(&engine, a, txn).unwrap(),
            TxnStatus::Pending
        );
        assert_eq!(TxnRecord::heartbeat(&engine, a, txn).unwrap(), Some(hb));
        assert_eq!(TxnRecord::pushed(&engine, a, txn).unwrap(), pushed);
        // Another anchor is another record.
        assert_eq!(TxnRecord::heartbeat(&engine, b"j", txn).unwrap(), None);
        put(TxnRecord::encode(TxnStatus::Committed(pushed)));
        assert_eq!(TxnRecord::pushed(&engine, a, txn).unwrap(), Timestamp::ZERO);
    }

    #[test]
    fn a_staging_record_keeps_its_timestamp_heartbeat_and_in_flight_writes() {
        let engine = crate::MemoryEngine::default();
        let (txn, a) = (9, &b"\x00k"[..]);
        let (ts, hb) = (Timestamp::new(50, 3), Timestamp::new(40, 1));
        let keys = vec![b"a".to_vec(), Vec::new(), b"\x00zz".to_vec()];
        let mut b = WriteBatch::new();
        b.put(
            Cf::Data,
            TxnRecord::key(a, txn),
            TxnRecord::encode_staging(ts, hb, &keys),
        );
        engine.write(b, true).unwrap();
        assert_eq!(
            TxnRecord::read(&engine, a, txn).unwrap(),
            TxnStatus::Staging(ts)
        );
        assert_eq!(TxnRecord::heartbeat(&engine, a, txn).unwrap(), Some(hb));
        assert_eq!(TxnRecord::pushed(&engine, a, txn).unwrap(), Timestamp::ZERO);
        assert_eq!(TxnRecord::in_flight(&engine, a, txn).unwrap(), keys);
        assert_eq!(
            TxnRecord::in_flight(&engine, a, txn + 1).unwrap(),
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn an_intent_names_its_record_anchor_and_the_record_lies_beside_it() {
        let engine = crate::MemoryEngine::default();
        let intent = Intent {
            txn: 3,
            anchor: b"a\0b".to_vec(),
            ts: Timestamp::new(7, 1),
            value: Some(b"v".to_vec()),
        };
        let mut b = WriteBatch::new();
        put_intent(&mut b, b"x", &intent);
        let tomb = Intent {
            anchor: Vec::new(),
            value: None,
            ..intent.clone()
        };
        put_intent(&mut b, b"y", &tomb);
        engine.write(b, true).unwrap();
        assert_eq!(get_intent(&engine, b"x").unwrap(), Some(intent));
        assert_eq!(get_intent(&engine, b"y").unwrap(), Some(tomb));
        let record = TxnRecord::key(b"a\0b", 3);
        assert!(version_key(b"a\0b", Timestamp::new(1, 0)) < record);
        assert!(record < intent_key(b"a\0b\0"));
    }

    #[test]
    fn local_keys_sit_between_their_anchor_and_the_next_key_and_scans_skip_them() {
        for anchor in [&b""[..], b"a", b"a\0", b"\x10m"] {
            let local = local_key(anchor, b"gc/threshold");
            assert!(version_key(anchor, Timestamp::new(1, 0)) < local);
            for next in [
                [anchor, b"\0"].concat(),
                [anchor, b"\x01"].concat(),
                [anchor, b"b"].concat(),
            ] {
                assert!(local < intent_key(&next), "{anchor:?} {next:?}");
            }
            assert!(decode_key(&local).is_err());
        }
        let engine = crate::MemoryEngine::default();
        let mut b = WriteBatch::new();
        put_version(&mut b, b"a", Timestamp::new(5, 0), Some(b"x"));
        b.put(Cf::Data, local_key(b"a", b"gc/threshold"), vec![9; 12]);
        put_version(&mut b, b"b", Timestamp::new(5, 0), Some(b"y"));
        engine.write(b, true).unwrap();
        let status = |_: &Intent| Ok(TxnStatus::Pending);
        let view = ReadView {
            read_ts: Timestamp::new(9, 0),
            txn: None,
            uncertainty_limit: Timestamp::ZERO,
            status: &status,
        };
        let rows = scan(&engine, b"", None, &view, 10).unwrap();
        assert_eq!(
            rows,
            vec![
                (b"a".to_vec(), b"x".to_vec()),
                (b"b".to_vec(), b"y".to_vec())
            ]
        );
        assert_eq!(
            find_conflict(&engine, b"", None, &view, Timestamp::new(20, 0)).unwrap(),
            None
        );
        let mut gc_batch = WriteBatch::new();
        assert_eq!(
            gc(&engine, &mut gc_batch, b"", None, Timestamp::new(9, 0)).unwrap(),
            0
        );
        let mut w = WriteBatch::new();
        assert_eq!(
            prepare_write(&engine, &mut w, b"a", &view, false).unwrap(),
            None
        );
    }
}
