//! Sequences: `CREATE SEQUENCE` and the SQL functions over them (`nextval`, `currval`,
//! `setval`), plus `unique_rowid` for tables without a primary key.
//!
//! As in PostgreSQL, sequence updates are not transactional: `nextval` never hands out
//! the same value twice, even to transactions that roll back, and values can have gaps.
//! A node reserves values in blocks of [`BLOCK`] with one small KV transaction of its
//! own per block, so inserts into a SERIAL column do not write the sequence key for
//! every row. Values are unique and increasing per node; after a restart the unused
//! rest of a reserved block is skipped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::sql::sqlparser::ast;
use parking_lot::Mutex;
use tessera_cluster::{Db, TxnOptions};

use crate::catalog::{sequence_key, Catalog, Descriptor, SequenceDesc};
use crate::ddl::{already_exists, with_writer};
use crate::dml::object_name;
use crate::error::{Error, Result, SqlState};
use crate::session::{Output, Session};

/// Values a node reserves at a time.
pub const BLOCK: i64 = 32;

/// Reserved sequence values per node.
#[derive(Debug, Default)]
pub struct SequenceCache {
    /// seq id -> (next value to hand out, values left in the block)
    blocks: Mutex<HashMap<u64, (i64, i64)>>,
}

impl SequenceCache {
    /// The next value of `seq`.
    pub fn nextval(&self, db: &Db, seq: &SequenceDesc) -> Result<i64> {
        let mut blocks = self.blocks.lock();
        if let Some((next, left)) = blocks.get_mut(&seq.id) {
            if *left > 0 {
                let v = *next;
                *next += seq.increment;
                *left -= 1;
                return Ok(v);
            }
        }
        let first = reserve(db, seq, BLOCK)?;
        blocks.insert(seq.id, (first + seq.increment, BLOCK - 1));
        Ok(first)
    }

    /// Set the current value of `seq` (the next `nextval` returns `value + increment`).
    pub fn setval(&self, db: &Db, seq: &SequenceDesc, value: i64) -> Result<()> {
        let mut blocks = self.blocks.lock();
        blocks.remove(&seq.id);
        for _ in 0..100 {
            let mut txn = db.begin(TxnOptions::default());
            txn.put(sequence_key(seq.id), value.to_be_bytes().to_vec())?;
            match crate::txn_slot::may_block(|| txn.commit()) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::new(
            SqlState::SerializationFailure,
            format!("could not set sequence \"{}\"", seq.name),
        ))
    }

    /// Forget reserved values (the sequence was dropped or reset).
    pub fn forget(&self, id: u64) {
        self.blocks.lock().remove(&id);
    }
}

/// Reserve `n` values; returns the first.
fn reserve(db: &Db, seq: &SequenceDesc, n: i64) -> Result<i64> {
    for _ in 0..100 {
        let mut txn = db.begin(TxnOptions::default());
        let key = sequence_key(seq.id);
        let current = match crate::txn_slot::may_block(|| txn.get(&key))? {
            Some(v) if v.len() == 8 => i64::from_be_bytes(v.try_into().expect("8 bytes")),
            _ => seq.start - seq.increment,
        };
        let first = current.checked_add(seq.increment);
        let last = current.checked_add(seq.increment.saturating_mul(n));
        let (Some(first), Some(last)) = (first, last) else {
            return Err(exhausted(seq));
        };
        if first > seq.max || first < seq.min {
            return Err(exhausted(seq));
        }
        let last = last.clamp(seq.min, seq.max);
        txn.put(key, last.to_be_bytes().to_vec())?;
        match crate::txn_slot::may_block(|| txn.commit()) {
            Ok(_) => return Ok(first),
            Err(e) if e.is_retryable() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::new(
        SqlState::SerializationFailure,
        format!("could not reserve values of sequence \"{}\"", seq.name),
    ))
}

fn exhausted(seq: &SequenceDesc) -> Error {
    Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!(
            "nextval: reached maximum value of sequence \"{}\" ({})",
            seq.name, seq.max
        ),
    )
}

/// What a session shares with its sequence functions.
#[derive(Debug)]
pub struct SequenceContext {
    /// The KV client.
    pub db: Db,
    /// The node's reserved values.
    pub cache: Arc<SequenceCache>,
    /// The catalog the current statement runs against.
    pub catalog: Mutex<Arc<Catalog>>,
    /// `currval` per sequence name, for this session.
    pub current: Mutex<HashMap<String, i64>>,
}

impl SequenceContext {
    fn sequence(&self, name: &str) -> Result<Arc<SequenceDesc>> {
        let name = name
            .trim_matches('"')
            .rsplit('.')
            .next()
            .unwrap_or(name)
            .to_lowercase();
        self.catalog
            .lock()
            .sequences
            .get(&name)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    SqlState::UndefinedTable,
                    format!("relation \"{name}\" does not exist"),
                )
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Nextval,
    Currval,
    Setval,
    UniqueRowid,
}

/// A sequence function bound to a session.
#[derive(Debug)]
struct SeqFn {
    kind: Kind,
    signature: Signature,
    ctx: Arc<SequenceContext>,
}

impl PartialEq for SeqFn {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.ctx, &other.ctx)
    }
}
impl Eq for SeqFn {}
impl Hash for SeqFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

fn to_df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn string_arg(args: &[ColumnarValue], row: usize) -> DfResult<String> {
    match &args[0] {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))) => Ok(s.clone()),
        ColumnarValue::Array(a) => match ScalarValue::try_from_array(a, row)? {
            ScalarValue::Utf8(Some(s)) => Ok(s),
            _ => Err(DataFusionError::Execution(
                "sequence name must not be null".into(),
            )),
        },
        _ => Err(DataFusionError::Execution(
            "sequence name must be text".into(),
        )),
    }
}

impl ScalarUDFImpl for SeqFn {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Nextval => "nextval",
            Kind::Currval => "currval",
            Kind::Setval => "setval",
            Kind::UniqueRowid => "unique_rowid",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let v = match self.kind {
                Kind::UniqueRowid => {
                    let b = *uuid::Uuid::new_v4().as_bytes();
                    (u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) >> 1) as i64
                }
                Kind::Nextval => {
                    let seq = self
                        .ctx
                        .sequence(&string_arg(&args.args, row)?)
                        .map_err(to_df)?;
                    let v = self.ctx.cache.nextval(&self.ctx.db, &seq).map_err(to_df)?;
                    self.ctx.current.lock().insert(seq.name.clone(), v);
                    v
                }
                Kind::Currval => {
                    let seq = self
                        .ctx
                        .sequence(&string_arg(&args.args, row)?)
                        .map_err(to_df)?;
                    *self.ctx.current.lock().get(&seq.name).ok_or_else(|| {
                        to_df(Error::new(
                            SqlState::ObjectNotInPrerequisiteState,
                            format!(
                                "currval of sequence \"{}\" is not yet defined in this session",
                                seq.name
                            ),
                        ))
                    })?
                }
                Kind::Setval => {
                    let seq = self
                        .ctx
                        .sequence(&string_arg(&args.args, row)?)
                        .map_err(to_df)?;
                    let value = match &args.args[1] {
                        ColumnarValue::Scalar(s) => s.clone(),
                        ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row)?,
                    };
                    let value = match value.cast_to(&DataType::Int64)? {
                        ScalarValue::Int64(Some(v)) => v,
                        _ => {
                            return Err(DataFusionError::Execution(
                                "setval value must not be null".into(),
                            ))
                        }
                    };
                    self.ctx
                        .cache
                        .setval(&self.ctx.db, &seq, value)
                        .map_err(to_df)?;
                    self.ctx.current.lock().insert(seq.name.clone(), value);
                    value
                }
            };
            out.push(v);
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}

/// The sequence functions bound to one session's context.
pub fn functions(ctx: Arc<SequenceContext>) -> Vec<ScalarUDF> {
    let text = Signature::exact(vec![DataType::Utf8], Volatility::Volatile);
    let set = Signature::one_of(
        vec![
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Int32]),
        ],
        Volatility::Volatile,
    );
    let none = Signature::nullary(Volatility::Volatile);
    [
        (Kind::Nextval, text.clone()),
        (Kind::Currval, text),
        (Kind::Setval, set),
        (Kind::UniqueRowid, none),
    ]
    .into_iter()
    .map(|(kind, signature)| {
        ScalarUDF::new_from_impl(SeqFn {
            kind,
            signature,
            ctx: ctx.clone(),
        })
    })
    .collect()
}

fn seq_value(e: &ast::Expr) -> Result<i64> {
    let s = e.to_string().replace(' ', "");
    s.parse().map_err(|_| {
        Error::new(
            SqlState::SyntaxError,
            format!("invalid sequence option value {e}"),
        )
    })
}

/// CREATE SEQUENCE: a descriptor with PostgreSQL's defaults for the options not given.
pub(crate) fn create_sequence(
    session: &mut Session,
    catalog: &Catalog,
    if_not_exists: bool,
    name: &ast::ObjectName,
    opts: &[ast::SequenceOptions],
) -> Result<Output> {
    let name = object_name(name);
    if catalog.relation_exists(&name) {
        if if_not_exists {
            session.notice(format!("relation \"{name}\" already exists, skipping"));
            return Ok(Output::Command("CREATE SEQUENCE".into()));
        }
        return Err(already_exists(&name));
    }
    let mut s = SequenceDesc {
        id: 0,
        name,
        start: 1,
        increment: 1,
        min: 1,
        max: i64::MAX,
        owned_by: None,
    };
    let mut start = None;
    for o in opts {
        match o {
            ast::SequenceOptions::IncrementBy(e, _) => s.increment = seq_value(e)?,
            ast::SequenceOptions::MinValue(Some(e)) => s.min = seq_value(e)?,
            ast::SequenceOptions::MaxValue(Some(e)) => s.max = seq_value(e)?,
            ast::SequenceOptions::StartWith(e, _) => start = Some(seq_value(e)?),
            ast::SequenceOptions::Cache(_)
            | ast::SequenceOptions::MinValue(None)
            | ast::SequenceOptions::MaxValue(None) => {}
            ast::SequenceOptions::Cycle(true) => return Err(Error::unsupported("CYCLE sequences")),
            ast::SequenceOptions::Cycle(false) => {}
        }
    }
    if s.increment == 0 {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            "INCREMENT must not be zero",
        ));
    }
    if s.increment < 0
        && !opts
            .iter()
            .any(|o| matches!(o, ast::SequenceOptions::MaxValue(Some(_))))
    {
        s.max = -1;
        if !opts
            .iter()
            .any(|o| matches!(o, ast::SequenceOptions::MinValue(Some(_))))
        {
            s.min = i64::MIN;
        }
    }
    s.start = start.unwrap_or(if s.increment > 0 { s.min } else { s.max });
    with_writer(session, |w| {
        s.id = w.allocate_id()?;
        w.put(&Descriptor::Sequence(s))
    })?;
    Ok(Output::Command("CREATE SEQUENCE".into()))
}
