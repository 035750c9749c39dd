//! Tablets as SQL shows and shapes them (CockroachDB's statements):
//!
//! - `SHOW RANGES [FROM TABLE t | FROM INDEX t@i]` and the table
//!   `tessera_internal.ranges`: one row per tablet (overlapping the table's or index's
//!   key span when one is named) with `range_id int8`, `table_name text` (the table the
//!   range's first key belongs to; NULL for system ranges), `start_key` and `end_key`
//!   in readable form, `replicas int8[]` (node ids), `lease_holder int8` and
//!   `size_bytes int8` (bytes of keys and values this node stores in the span,
//!   counted by a scan of it).
//! - `ALTER TABLE t SPLIT AT <query>` and `ALTER INDEX t@i SPLIT AT <query>`: every row
//!   of the query gives values for the leading key columns of the index (the primary
//!   key for a table); the tablet holding that key is split there. One row per split:
//!   `key bytea` and `pretty text`. A split is not part of any transaction.
//!
//! Readable keys: `/Min`, `/Max`, `/System/<key>`, `/Table/<table>` for a table's first
//! key, `/Table/<table>/<index id>/<value>/...` inside it.
//!
//! ## Placement
//!
//! As in CockroachDB, the system keys (catalog, sequences, transaction records) have a
//! tablet of their own, and each index of each table (the primary one included) starts
//! in its own: writing a table descriptor splits at the first key of each of its
//! indexes ([`placement`]); the first such split ends the system tablet. Splits at existing
//! boundaries change nothing, and a split that fails (no leaseholder at the moment)
//! only leaves the index sharing a tablet with its neighbour: it is logged, not an
//! error of the statement.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int64Array, Int64Builder, ListBuilder, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{ObjectName, Query, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use tessera_cluster::Store;
use tessera_storage::keycode::{self, prefix_end, KeyKind, KeyValue};
use tessera_storage::{Cf, Visit};

use crate::catalog::{Catalog, IndexDesc, TableDesc};
use crate::error::{Error, SqlState};
use crate::session::{Output, Session};
use crate::types::{schema_of, SqlType};

/// The end of the key space as the cluster names it.
const KEY_MAX: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF];

/// A parsed `ALTER TABLE|INDEX ... SPLIT AT <query>`.
#[derive(Debug)]
pub(crate) struct SplitAt {
    table: String,
    index: Option<String>,
    rows: Box<Query>,
}

fn syntax(e: impl std::fmt::Display) -> Error {
    Error::new(SqlState::SyntaxError, format!("syntax error: {e}"))
}

/// The tablet boundaries table `t` needs: the first key of each of its indexes. (The
/// first of them ever made ends the system tablet, which holds every key below.)
pub(crate) fn placement(t: &TableDesc) -> Vec<Vec<u8>> {
    t.all_indexes()
        .map(|i| KeyKind::index_prefix(t.id, i.id))
        .collect()
}

/// The keys of table `t`: from its first tablet boundary ([`placement`]) to the end of
/// its prefix. (Every key of a table lies in one of its indexes; the tablet before the
/// table ends at the first of them, so the bare prefix is not where the table begins.)
fn table_span(t: &TableDesc) -> (Vec<u8>, Vec<u8>) {
    let start = placement(t)
        .into_iter()
        .min()
        .expect("a table has its primary index");
    let end = prefix_end(&KeyKind::table_prefix(t.id)).unwrap_or_else(|| KEY_MAX.to_vec());
    (start, end)
}

/// Split at each of `keys` (see the module docs, "Placement").
pub(crate) fn place(store: &Arc<Store>, keys: &[Vec<u8>]) {
    for key in keys {
        if let Err(e) = crate::txn_slot::may_block(|| store.split(key)) {
            tracing::warn!(error = %e, key = ?key, "could not give an index its own tablet");
        }
    }
}

/// Parse `sql` as a split statement; `None` when it is not one.
pub(crate) fn parse_split(sql: &str) -> Option<Result<SplitAt, Error>> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).ok()?;
    if !p.parse_keyword(Keyword::ALTER) {
        return None;
    }
    let of_index = if p.parse_keyword(Keyword::TABLE) {
        false
    } else if p.parse_keyword(Keyword::INDEX) {
        true
    } else {
        return None;
    };
    let name = p.parse_object_name(false).ok()?;
    let index = if of_index {
        if !p.consume_token(&Token::AtSign) {
            return None;
        }
        Some(p.parse_identifier().ok()?.value)
    } else {
        None
    };
    match p.next_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("split") => {}
        _ => return None,
    }
    Some((|| {
        if !p.parse_keyword(Keyword::AT) {
            return Err(syntax("expected AT after SPLIT"));
        }
        let rows = p.parse_query().map_err(syntax)?;
        while p.consume_token(&Token::SemiColon) {}
        if p.peek_token().token != Token::EOF {
            return Err(syntax(format!(
                "unexpected {} after SPLIT AT",
                p.peek_token().token
            )));
        }
        Ok(SplitAt {
            table: object_name(&name),
            index,
            rows,
        })
    })())
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_default()
}

/// A table and, for `FROM INDEX t@i`, one of its indexes.
pub(crate) type RangesOf = Option<(String, Option<String>)>;

/// What `SHOW RANGES` was asked for, from the words after `SHOW` (sqlparser reads
/// `SHOW RANGES FROM TABLE t` as a variable name of several words); `None` when the
/// words are not `RANGES ...`.
pub(crate) fn show_filter(words: &[String]) -> Option<Result<RangesOf, Error>> {
    let words: Vec<&str> = words.iter().map(|w| w.as_str()).collect();
    match words.as_slice() {
        ["ranges"] => Some(Ok(None)),
        ["ranges", "from", "table", t] => Some(Ok(Some((t.to_string(), None)))),
        ["ranges", "from", "index", t, i] => Some(Ok(Some((t.to_string(), Some(i.to_string()))))),
        ["ranges", ..] => Some(Err(syntax(
            "expected SHOW RANGES [FROM TABLE t | FROM INDEX t@i]",
        ))),
        _ => None,
    }
}

/// The index `t@i` (the primary index without `i`).
fn index_of<'a>(t: &'a TableDesc, index: Option<&str>) -> Result<&'a IndexDesc, Error> {
    match index {
        None => Ok(&t.primary),
        Some(i) => t.all_indexes().find(|x| x.name == i).ok_or_else(|| {
            Error::new(
                SqlState::UndefinedObject,
                format!("index \"{i}\" of table \"{}\" does not exist", t.name),
            )
        }),
    }
}

/// The columns of `SHOW RANGES` and `tessera_internal.ranges`.
pub(crate) fn ranges_schema() -> SchemaRef {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
    Arc::new(Schema::new(vec![
        Field::new("range_id", DataType::Int64, false),
        Field::new("table_name", DataType::Utf8, true),
        Field::new("start_key", DataType::Utf8, false),
        Field::new("end_key", DataType::Utf8, false),
        Field::new("replicas", list, false),
        Field::new("lease_holder", DataType::Int64, true),
        Field::new("size_bytes", DataType::Int64, false),
    ]))
}

/// The columns a split answers with.
pub(crate) fn split_schema() -> SchemaRef {
    schema_of(
        [
            ("key", SqlType::Bytea, false),
            ("pretty", SqlType::Text, false),
        ]
        .into_iter(),
    )
}

/// One row per tablet overlapping `[lo, hi)` (every tablet without a span).
fn ranges_batch(
    store: &Store,
    catalog: &Catalog,
    span: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<RecordBatch, Error> {
    let mut ids = Vec::new();
    let mut tables = Vec::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    let mut replicas = ListBuilder::new(Int64Builder::new());
    let mut leases = Vec::new();
    let mut sizes = Vec::new();
    for r in store.ranges() {
        let d = &r.desc;
        if let Some((lo, hi)) = &span {
            if d.end.as_slice() <= lo.as_slice() || d.start.as_slice() >= hi.as_slice() {
                continue;
            }
        }
        ids.push(d.range_id as i64);
        tables.push(table_of(&d.start, catalog).map(|t| t.name.clone()));
        starts.push(pretty(&d.start, catalog));
        ends.push(pretty(&d.end, catalog));
        for n in &r.replicas {
            replicas.values().append_value(*n as i64);
        }
        replicas.append(true);
        leases.push(r.leaseholder.map(|l| l as i64));
        let (from, to) = d.engine_span();
        let mut size = 0i64;
        store
            .engine()
            .scan(Cf::Data, &from, Some(&to), &mut |k, v| {
                size += (k.len() + v.len()) as i64;
                Ok(Visit::Continue)
            })
            .map_err(Error::internal)?;
        sizes.push(size);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(tables)),
        Arc::new(StringArray::from(starts)),
        Arc::new(StringArray::from(ends)),
        Arc::new(replicas.finish()),
        Arc::new(Int64Array::from(leases)),
        Arc::new(Int64Array::from(sizes)),
    ];
    RecordBatch::try_new(ranges_schema(), columns).map_err(Error::internal)
}

/// The table whose keys include `key`.
fn table_of<'a>(key: &[u8], catalog: &'a Catalog) -> Option<&'a Arc<TableDesc>> {
    catalog.tables.values().find(|t| {
        let prefix = KeyKind::table_prefix(t.id);
        key.starts_with(&prefix)
    })
}

/// A key in readable form (see the module docs).
pub(crate) fn pretty(key: &[u8], catalog: &Catalog) -> String {
    if key.is_empty() {
        return "/Min".into();
    }
    if key == KEY_MAX {
        return "/Max".into();
    }
    if let Some(t) = table_of(key, catalog) {
        let prefix = KeyKind::table_prefix(t.id);
        if key.len() == prefix.len() {
            return format!("/Table/{}", t.name);
        }
        if let Ok(KeyKind::Table { index, columns, .. }) = KeyKind::decode(key) {
            let mut out = format!("/Table/{}/{index}", t.name);
            let desc: Vec<bool> = t
                .all_indexes()
                .find(|i| i.id == index)
                .map(|i| i.columns.iter().map(|(_, d)| *d).collect())
                .unwrap_or_default();
            let mut rest = columns.as_slice();
            let mut n = 0;
            while !rest.is_empty() {
                match keycode::decode_value(&mut rest, desc.get(n).copied().unwrap_or(false)) {
                    Ok(v) => out.push_str(&format!("/{}", value_text(&v))),
                    Err(_) => {
                        out.push_str(&format!("/0x{}", hex(rest)));
                        break;
                    }
                }
                n += 1;
            }
            return out;
        }
    }
    match KeyKind::decode(key) {
        Ok(KeyKind::Sys(rest)) => format!("/System/{}", String::from_utf8_lossy(&rest)),
        _ => format!("/0x{}", hex(key)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value_text(v: &KeyValue) -> String {
    match v {
        KeyValue::Null => "NULL".into(),
        KeyValue::Bool(b) => b.to_string(),
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Float(f) => f.to_string(),
        KeyValue::Text(s) => format!("{s:?}"),
        KeyValue::Bytes(b) => format!("0x{}", hex(b)),
        other => format!("{other:?}"),
    }
}

/// `tessera_internal.ranges`: computed when scanned.
pub(crate) struct RangesTable {
    store: Arc<Store>,
    catalog: Arc<Catalog>,
}

impl RangesTable {
    pub(crate) fn new(store: Arc<Store>, catalog: Arc<Catalog>) -> Self {
        RangesTable { store, catalog }
    }
}

impl std::fmt::Debug for RangesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RangesTable")
    }
}

#[async_trait]
impl TableProvider for RangesTable {
    fn schema(&self) -> SchemaRef {
        ranges_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = ranges_batch(&self.store, &self.catalog, None)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        MemTable::try_new(ranges_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

impl Session {
    /// The catalog as of now, read in a transaction of its own (splits and `SHOW
    /// RANGES` run outside of transactions).
    fn current_catalog(&self) -> Result<Arc<Catalog>, Error> {
        let mut txn = self.node.db.begin(tessera_cluster::TxnOptions::default());
        let catalog = crate::txn_slot::may_block(|| self.node.catalogs.load(&mut txn))?;
        crate::txn_slot::may_block(|| txn.commit())?;
        Ok(catalog)
    }

    /// `SHOW RANGES [FROM TABLE t | FROM INDEX t@i]`.
    pub(crate) fn show_ranges(&mut self, filter: RangesOf) -> Result<Output, Error> {
        let catalog = self.current_catalog()?;
        let span = match &filter {
            None => None,
            Some((table, index)) => Some({
                let t = catalog.table(table)?;
                match index {
                    None => table_span(t),
                    Some(_) => {
                        let prefix = KeyKind::index_prefix(t.id, index_of(t, index.as_deref())?.id);
                        let end = prefix_end(&prefix).unwrap_or_else(|| KEY_MAX.to_vec());
                        (prefix, end)
                    }
                }
            }),
        };
        let store = self.node.db.store().clone();
        let batch = crate::txn_slot::may_block(|| ranges_batch(&store, &catalog, span))?;
        let n = batch.num_rows();
        Ok(Output::Rows {
            schema: ranges_schema(),
            batches: vec![batch],
            tag: format!("SHOW {n}"),
        })
    }

    /// `ALTER TABLE t SPLIT AT <query>` / `ALTER INDEX t@i SPLIT AT <query>`.
    pub(crate) async fn split_at(&mut self, split: SplitAt) -> Result<Output, Error> {
        let rows = match self.execute(Statement::Query(split.rows)).await? {
            Output::Rows { batches, .. } => batches,
            _ => return Err(Error::internal("SPLIT AT: the query returned no rows")),
        };
        let catalog = self.current_catalog()?;
        let t = catalog.table(&split.table)?.clone();
        let index = index_of(&t, split.index.as_deref())?.clone();
        let mut keys = Vec::new();
        for batch in &rows {
            if batch.num_columns() > index.columns.len() {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    format!(
                        "SPLIT AT data has {} columns, but index \"{}\" has only {}",
                        batch.num_columns(),
                        index.name,
                        index.columns.len()
                    ),
                ));
            }
            let mut cast = Vec::new();
            for (c, (id, _)) in batch.columns().iter().zip(&index.columns) {
                let col = t
                    .column_by_id(*id)
                    .ok_or_else(|| Error::internal("index column missing"))?;
                cast.push(crate::assign::cast_column(c, col.ty, &t, &col.name)?);
            }
            for row in 0..batch.num_rows() {
                let values = cast
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, row).map_err(Error::internal))
                    .collect::<Result<Vec<_>, Error>>()?;
                keys.push(crate::codec::index_prefix(&t, &index, &values)?);
            }
        }
        let store = self.node.db.store().clone();
        let mut pretty_keys = Vec::new();
        for key in &keys {
            crate::txn_slot::may_block(|| store.split(key))?;
            pretty_keys.push(pretty(key, &catalog));
        }
        let batch = RecordBatch::try_new(
            split_schema(),
            vec![
                Arc::new(BinaryArray::from_iter_values(keys.iter())),
                Arc::new(StringArray::from(pretty_keys)),
            ],
        )
        .map_err(Error::internal)?;
        let n = batch.num_rows();
        Ok(Output::Rows {
            schema: split_schema(),
            batches: vec![batch],
            tag: format!("SPLIT {n}"),
        })
    }
}
