//! Advisory locks (`pg_advisory_lock` and friends) that exclude across the cluster.
//!
//! ## Model
//!
//! - A held lock is a row in the system key space, `/sys/advisory/<space>/<key>`,
//!   naming its owner: the owning node's store epoch and a session number on that node.
//!   Rows are written and removed by short transactions of their own, so taking or
//!   releasing a lock commits at once and never depends on the caller's transaction.
//! - Taking a lock: read the row; absent or owned by a dead owner, write ours and
//!   commit (two sessions racing both read "absent", but only one commits: the other
//!   sees a conflict and tries again). Held by a live owner: wait and retry (blocking
//!   forms) or return false (`try` forms).
//! - An owner is dead when its node has restarted since: every node publishes its
//!   current store epoch at `/sys/advisory/epoch/<node>`, and a row whose epoch is older
//!   is free. A session releases what it holds when it ends.
//! - Session-level locks nest (taken twice, released twice); transaction-level locks
//!   are released when the session's transaction ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tessera_cluster::{Db, TxnOptions};

use crate::error::{Error, Result, SqlState};
use crate::txn_slot::may_block;

/// A lock's key: the one-`bigint` space (1) or the two-`int` space (2), and the value.
pub type LockKey = (u8, i64);

fn sys(name: &str) -> Vec<u8> {
    tessera_storage::keycode::KeyKind::Sys(name.as_bytes().to_vec()).encode()
}

fn row_key(key: LockKey) -> Vec<u8> {
    [
        sys(&format!("advisory/{}/", key.0)),
        key.1.to_be_bytes().to_vec(),
    ]
    .concat()
}

fn epoch_key(node: u64) -> Vec<u8> {
    [sys("advisory/epoch/"), node.to_be_bytes().to_vec()].concat()
}

/// The locks of one session, and how it identifies itself as their owner.
#[derive(Debug)]
pub struct AdvisoryLocks {
    db: Db,
    /// Store epoch (node id in the high half) and session number.
    owner: [u8; 16],
    published: Arc<AtomicBool>,
    /// Session-level locks held, with how many times each was taken.
    session: Mutex<HashMap<LockKey, u32>>,
    /// Transaction-level locks held.
    xact: Mutex<HashMap<LockKey, u32>>,
    /// Set when the session's statement is cancelled: waiting stops.
    pub interrupted: Arc<AtomicBool>,
}

impl AdvisoryLocks {
    /// The locks of session `session` on this node; `published` is shared by the
    /// node's sessions and says whether its epoch is published.
    pub fn new(db: Db, session: u64, published: Arc<AtomicBool>) -> Self {
        let epoch = db.store().boot_epoch();
        let mut owner = [0u8; 16];
        owner[..8].copy_from_slice(&epoch.to_be_bytes());
        owner[8..].copy_from_slice(&session.to_be_bytes());
        AdvisoryLocks {
            db,
            owner,
            published,
            session: Mutex::default(),
            xact: Mutex::default(),
            interrupted: Arc::default(),
        }
    }

    fn publish_epoch(&self) -> Result<()> {
        if self.published.load(Ordering::Acquire) {
            return Ok(());
        }
        let epoch = self.db.store().boot_epoch();
        let mut t = self.db.begin(TxnOptions::default());
        t.put(epoch_key(epoch >> 32), epoch.to_be_bytes().to_vec())?;
        t.commit()?;
        self.published.store(true, Ordering::Release);
        Ok(())
    }

    /// One attempt to take `key`: `true` when it is ours now.
    fn try_take(&self, key: LockKey) -> Result<bool> {
        self.publish_epoch()?;
        let mut t = self.db.begin(TxnOptions::default());
        let row = row_key(key);
        if let Some(owner) = t.get(&row)? {
            if owner.as_slice() == self.owner {
                return Ok(true);
            }
            let epoch = u64::from_be_bytes(owner[..8].try_into().map_err(Error::internal)?);
            let current = t
                .get(&epoch_key(epoch >> 32))?
                .and_then(|v| v.try_into().ok().map(u64::from_be_bytes));
            if current == Some(epoch) {
                return Ok(false);
            }
            tracing::info!(?key, "taking an advisory lock from an owner that restarted");
        }
        t.put(row, self.owner.to_vec())?;
        match t.commit() {
            Ok(_) => Ok(true),
            Err(e) if e.is_retryable() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn release_row(&self, key: LockKey) -> Result<()> {
        loop {
            let mut t = self.db.begin(TxnOptions::default());
            let row = row_key(key);
            if t.get(&row)?.as_deref() == Some(&self.owner[..]) {
                t.delete(row)?;
            }
            match t.commit() {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn held(&self, xact: bool) -> &Mutex<HashMap<LockKey, u32>> {
        if xact {
            &self.xact
        } else {
            &self.session
        }
    }

    /// Take `key` (session- or transaction-level), waiting while another owner holds it
    /// when `wait`. Returns whether it was taken.
    pub fn lock(&self, key: LockKey, xact: bool, wait: bool) -> Result<bool> {
        let already = self.session.lock().contains_key(&key) || self.xact.lock().contains_key(&key);
        if !already {
            self.interrupted.store(false, Ordering::Relaxed);
            let mut pause = Duration::from_millis(2);
            while !self.try_take(key)? {
                if !wait {
                    return Ok(false);
                }
                if self.interrupted.swap(false, Ordering::Relaxed) {
                    return Err(Error::new(
                        SqlState::QueryCanceled,
                        "canceling statement due to user request",
                    ));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        *self.held(xact).lock().entry(key).or_insert(0) += 1;
        Ok(true)
    }

    /// Release one session-level hold of `key`; `false` when the session holds none.
    pub fn unlock(&self, key: LockKey) -> Result<bool> {
        let gone = {
            let mut held = self.session.lock();
            match held.get_mut(&key) {
                None => return Ok(false),
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    held.remove(&key);
                    true
                }
            }
        };
        if gone && !self.xact.lock().contains_key(&key) {
            self.release_row(key)?;
        }
        Ok(true)
    }

    /// Release every session-level lock.
    pub fn unlock_all(&self) -> Result<()> {
        let keys: Vec<LockKey> = self.session.lock().drain().map(|(k, _)| k).collect();
        for k in keys {
            if !self.xact.lock().contains_key(&k) {
                self.release_row(k)?;
            }
        }
        Ok(())
    }

    /// The session's transaction ended: release its transaction-level locks.
    pub fn end_transaction(&self) {
        let keys: Vec<LockKey> = self.xact.lock().drain().map(|(k, _)| k).collect();
        for k in keys {
            if !self.session.lock().contains_key(&k) {
                if let Err(e) = self.release_row(k) {
                    tracing::warn!(error = %e, "releasing a transaction's advisory lock failed");
                }
            }
        }
    }
}

impl Drop for AdvisoryLocks {
    fn drop(&mut self) {
        self.end_transaction();
        if let Err(e) = self.unlock_all() {
            tracing::warn!(error = %e, "releasing a session's advisory locks failed");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Lock,
    TryLock,
    XactLock,
    TryXactLock,
    Unlock,
    UnlockAll,
}

#[derive(Debug)]
struct LockFn {
    kind: Kind,
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
    locks: Arc<AdvisoryLocks>,
}

impl PartialEq for LockFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.locks, &other.locks)
    }
}
impl Eq for LockFn {}
impl std::hash::Hash for LockFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

fn to_df(e: Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// The lock key of one row of arguments: `(bigint)` or `(int, int)`.
fn key_of(
    args: &[datafusion::logical_expr::ColumnarValue],
    row: usize,
) -> datafusion::error::Result<LockKey> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::ColumnarValue;
    let value = |i: usize| -> datafusion::error::Result<i64> {
        let v = match &args[i] {
            ColumnarValue::Scalar(s) => s.clone(),
            ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row)?,
        };
        match v.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(v)) => Ok(v),
            _ => Err(to_df(Error::new(
                SqlState::InvalidParameterValue,
                "advisory lock keys must not be null",
            ))),
        }
    };
    Ok(match args.len() {
        1 => (1, value(0)?),
        _ => (2, (value(0)? << 32) | (value(1)? & 0xFFFF_FFFF)),
    })
}

impl datafusion::logical_expr::ScalarUDFImpl for LockFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        use datafusion::arrow::datatypes::DataType;
        Ok(match self.kind {
            // PostgreSQL's `void` prints as an empty string.
            Kind::Lock | Kind::XactLock | Kind::UnlockAll => DataType::Utf8,
            _ => DataType::Boolean,
        })
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{BooleanArray, StringArray};
        use datafusion::logical_expr::ColumnarValue;
        let n = args.number_rows;
        let mut flags = Vec::with_capacity(n);
        for row in 0..n {
            let ok = match self.kind {
                Kind::UnlockAll => {
                    self.locks.unlock_all().map_err(to_df)?;
                    true
                }
                Kind::Unlock => {
                    let key = key_of(&args.args, row)?;
                    let held = self.locks.unlock(key).map_err(to_df)?;
                    if !held {
                        tracing::debug!(?key, "advisory lock not held");
                    }
                    held
                }
                kind => {
                    let key = key_of(&args.args, row)?;
                    let xact = matches!(kind, Kind::XactLock | Kind::TryXactLock);
                    let wait = matches!(kind, Kind::Lock | Kind::XactLock);
                    may_block(|| self.locks.lock(key, xact, wait)).map_err(to_df)?
                }
            };
            flags.push(ok);
        }
        Ok(ColumnarValue::Array(match self.kind {
            Kind::Lock | Kind::XactLock | Kind::UnlockAll => {
                Arc::new(StringArray::from(vec![""; n]))
            }
            _ => Arc::new(BooleanArray::from(flags)),
        }))
    }
}

/// The advisory lock functions of one session.
pub fn functions(locks: Arc<AdvisoryLocks>) -> Vec<datafusion::logical_expr::ScalarUDF> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
    let key = || {
        Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Int64]),
                TypeSignature::Exact(vec![DataType::Int32, DataType::Int32]),
            ],
            Volatility::Volatile,
        )
    };
    [
        (Kind::Lock, "pg_advisory_lock", key()),
        (Kind::TryLock, "pg_try_advisory_lock", key()),
        (Kind::XactLock, "pg_advisory_xact_lock", key()),
        (Kind::TryXactLock, "pg_try_advisory_xact_lock", key()),
        (Kind::Unlock, "pg_advisory_unlock", key()),
        (
            Kind::UnlockAll,
            "pg_advisory_unlock_all",
            Signature::nullary(Volatility::Volatile),
        ),
    ]
    .into_iter()
    .map(|(kind, name, signature)| {
        datafusion::logical_expr::ScalarUDF::new_from_impl(LockFn {
            kind,
            name,
            signature,
            locks: locks.clone(),
        })
    })
    .collect()
}
