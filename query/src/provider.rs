//! Tables as DataFusion `TableProvider`s over the KV transaction API.
//!
//! A [`KvTable`] plans a [`KvScanExec`]: the filters DataFusion pushes down become key
//! spans where they constrain a prefix of the primary key (or an equality on the first
//! column of a secondary index, which is then read through that index), and every
//! pushed filter is evaluated again on the decoded rows, so pushdown is exact whatever
//! the spans cover. The limit is applied after the filters, so it is pushed too. Rows
//! stream out page by page (a page is [`PAGE_ROWS`] keys); the table is never
//! materialised. All reads go through the session's current transaction.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use tessera_storage::keycode::{self, prefix_end, KeyKind};

use crate::catalog::{IndexDesc, TableDesc};
use crate::codec;
use crate::error::Error;
use crate::txn_slot::TxnSlot;
use crate::types::schema_of;

/// Keys read from the KV layer per page.
pub const PAGE_ROWS: usize = 1024;

/// The Arrow schema of a table: visible columns, or every column when `hidden`.
pub fn table_schema(t: &TableDesc, hidden: bool) -> SchemaRef {
    schema_of(
        t.columns
            .iter()
            .filter(|c| hidden || !c.hidden)
            .map(|c| (c.name.as_str(), c.ty, c.nullable)),
    )
}

/// A table, read through the session's transaction.
#[derive(Debug)]
pub struct KvTable {
    desc: Arc<TableDesc>,
    /// Positions in `desc.columns` of the columns this provider exposes.
    exposed: Vec<usize>,
    schema: SchemaRef,
    txn: TxnSlot,
}

impl KvTable {
    /// A provider for `desc`; with `hidden`, hidden columns (the row id) are exposed too.
    pub fn new(desc: Arc<TableDesc>, txn: TxnSlot, hidden: bool) -> Self {
        let exposed = (0..desc.columns.len())
            .filter(|i| hidden || !desc.columns[*i].hidden)
            .collect();
        let schema = table_schema(&desc, hidden);
        KvTable {
            desc,
            exposed,
            schema,
            txn,
        }
    }
}

fn df_err(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for KvTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                let has_subquery = datafusion::common::tree_node::TreeNode::exists(*f, |e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_)
                            | Expr::Exists(_)
                            | Expr::InSubquery(_)
                            | Expr::OuterReferenceColumn(..)
                    ))
                })
                .unwrap_or(true);
                if has_subquery {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Exact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let mut physical = Vec::with_capacity(filters.len());
        for f in filters {
            physical.push(state.create_physical_expr(f.clone(), &df_schema)?);
        }
        let access = plan_access(&self.desc, &self.exposed, filters).map_err(df_err)?;
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.exposed.len()).collect(),
        };
        let out_schema = Arc::new(self.schema.project(&projection)?);
        let props = PlanProperties::new(
            EquivalenceProperties::new(out_schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(KvScanExec {
            desc: self.desc.clone(),
            exposed: self.exposed.clone(),
            full_schema: self.schema.clone(),
            out_schema,
            projection,
            access,
            filters: physical,
            filter_text: filters.iter().map(|f| f.to_string()).collect(),
            limit,
            txn: self.txn.clone(),
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

/// A key span `[start, end)`.
pub type Span = (Vec<u8>, Vec<u8>);

/// How a scan reaches its rows.
#[derive(Clone, Debug)]
pub enum Access {
    /// Primary-index key spans `[start, end)`.
    Primary(Vec<Span>),
    /// Entries of a secondary index in these spans `[start, end)`, then the rows by
    /// primary key.
    Index(IndexDesc, Vec<Span>),
}

/// One pushed-down constraint on a column.
enum Constraint {
    Eq(Vec<ScalarValue>),
    Range {
        lo: Option<(ScalarValue, bool)>,
        hi: Option<(ScalarValue, bool)>,
    },
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
        Expr::Cast(c) => literal(&c.expr).and_then(|v| v.cast_to(c.field.data_type()).ok()),
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// Cast `v` to the column's type, only when exact (so spans never exclude a match).
fn exact_cast(
    v: &ScalarValue,
    target: &datafusion::arrow::datatypes::DataType,
) -> Option<ScalarValue> {
    let c = v.cast_to(target).ok()?;
    let back = c.cast_to(&v.data_type()).ok()?;
    (back == *v).then_some(c)
}

/// Collect, per column position, the constraints the conjuncts of `filters` impose.
fn constraints(t: &TableDesc, exposed: &[usize], filters: &[Expr]) -> Vec<(usize, Constraint)> {
    let mut out = Vec::new();
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    let pos_of = |name: &str| exposed.iter().copied().find(|p| t.columns[*p].name == name);
    for c in conjuncts {
        match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, lit, op) = match (
                    column_name(left),
                    literal(right),
                    column_name(right),
                    literal(left),
                ) {
                    (Some(c), Some(l), _, _) => (c, l, *op),
                    (_, _, Some(c), Some(l)) => match op.swap() {
                        Some(op) => (c, l, op),
                        None => continue,
                    },
                    _ => continue,
                };
                let Some(pos) = pos_of(col) else { continue };
                let Some(v) = exact_cast(&lit, &t.columns[pos].ty.arrow()) else {
                    continue;
                };
                let con = match op {
                    Operator::Eq => Constraint::Eq(vec![v]),
                    Operator::Gt => Constraint::Range {
                        lo: Some((v, false)),
                        hi: None,
                    },
                    Operator::GtEq => Constraint::Range {
                        lo: Some((v, true)),
                        hi: None,
                    },
                    Operator::Lt => Constraint::Range {
                        lo: None,
                        hi: Some((v, false)),
                    },
                    Operator::LtEq => Constraint::Range {
                        lo: None,
                        hi: Some((v, true)),
                    },
                    _ => continue,
                };
                out.push((pos, con));
            }
            Expr::InList(l) if !l.negated => {
                let Some(pos) = column_name(&l.expr).and_then(pos_of) else {
                    continue;
                };
                let ty = t.columns[pos].ty.arrow();
                let vals: Option<Vec<ScalarValue>> = l
                    .list
                    .iter()
                    .map(|e| literal(e).and_then(|v| exact_cast(&v, &ty)))
                    .collect();
                if let Some(vals) = vals {
                    out.push((pos, Constraint::Eq(vals)));
                }
            }
            Expr::Between(b) if !b.negated => {
                let Some(pos) = column_name(&b.expr).and_then(pos_of) else {
                    continue;
                };
                let ty = t.columns[pos].ty.arrow();
                let lo = literal(&b.low).and_then(|v| exact_cast(&v, &ty));
                let hi = literal(&b.high).and_then(|v| exact_cast(&v, &ty));
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    out.push((
                        pos,
                        Constraint::Range {
                            lo: Some((lo, true)),
                            hi: Some((hi, true)),
                        },
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

const MAX_POINTS: usize = 4096;

/// Key spans over `index` (its own key columns) implied by the constraints, or `None`
/// when its first column is unconstrained.
fn index_spans(
    t: &TableDesc,
    index: &IndexDesc,
    cons: &[(usize, Constraint)],
) -> crate::Result<Option<Vec<Span>>> {
    let base = KeyKind::index_prefix(t.id, index.id);
    let mut prefixes: Vec<Vec<u8>> = vec![base];
    let mut constrained = false;
    for (col_id, desc) in &index.columns {
        let pos = t.position(*col_id).expect("index column exists");
        let ty = t.columns[pos].ty;
        let eq: Option<&Vec<ScalarValue>> = cons.iter().find_map(|(p, c)| match c {
            Constraint::Eq(v) if *p == pos => Some(v),
            _ => None,
        });
        if let Some(vals) = eq {
            if prefixes.len() * vals.len() > MAX_POINTS {
                break;
            }
            let mut next = Vec::new();
            for p in &prefixes {
                for v in vals {
                    let mut k = p.clone();
                    keycode::encode_value(&mut k, &codec::to_key_value(v, ty)?, *desc);
                    next.push(k);
                }
            }
            next.sort();
            next.dedup();
            prefixes = next;
            constrained = true;
            continue;
        }
        // A range on this column ends the prefix (ascending columns only).
        let range = cons.iter().find_map(|(p, c)| match c {
            Constraint::Range { lo, hi } if *p == pos => Some((lo, hi)),
            _ => None,
        });
        if let (Some((lo, hi)), false) = (range, *desc) {
            let mut spans = Vec::new();
            for p in &prefixes {
                let enc = |v: &ScalarValue| -> crate::Result<Vec<u8>> {
                    let mut k = p.clone();
                    keycode::encode_value(&mut k, &codec::to_key_value(v, ty)?, false);
                    Ok(k)
                };
                let start = match lo {
                    Some((v, true)) => enc(v)?,
                    Some((v, false)) => prefix_end(&enc(v)?).expect("bounded"),
                    // Skip NULLs: a comparison never matches them.
                    None => [p.as_slice(), &[0x01]].concat(),
                };
                let end = match hi {
                    Some((v, true)) => prefix_end(&enc(v)?).expect("bounded"),
                    Some((v, false)) => enc(v)?,
                    None => prefix_end(p).expect("bounded"),
                };
                if start < end {
                    spans.push((start, end));
                }
            }
            return Ok(Some(spans));
        }
        break;
    }
    if !constrained {
        return Ok(None);
    }
    Ok(Some(
        prefixes
            .into_iter()
            .map(|p| {
                let end = prefix_end(&p).expect("bounded");
                (p, end)
            })
            .collect(),
    ))
}

fn plan_access(t: &TableDesc, exposed: &[usize], filters: &[Expr]) -> crate::Result<Access> {
    let cons = constraints(t, exposed, filters);
    if let Some(spans) = index_spans(t, &t.primary, &cons)? {
        return Ok(Access::Primary(spans));
    }
    for index in &t.indexes {
        let first = t.position(index.columns[0].0).expect("index column exists");
        let has_eq = cons
            .iter()
            .any(|(p, c)| *p == first && matches!(c, Constraint::Eq(_)));
        if has_eq {
            if let Some(spans) = index_spans(t, index, &cons)? {
                return Ok(Access::Index(index.clone(), spans));
            }
        }
    }
    let p = KeyKind::index_prefix(t.id, t.primary.id);
    let end = prefix_end(&p).expect("bounded");
    Ok(Access::Primary(vec![(p, end)]))
}

/// The physical scan of a table. See the module docs.
#[derive(Debug)]
pub struct KvScanExec {
    desc: Arc<TableDesc>,
    exposed: Vec<usize>,
    full_schema: SchemaRef,
    out_schema: SchemaRef,
    projection: Vec<usize>,
    access: Access,
    filters: Vec<Arc<dyn PhysicalExpr>>,
    filter_text: Vec<String>,
    limit: Option<usize>,
    txn: TxnSlot,
    props: Arc<PlanProperties>,
    /// Rows produced and time spent, for EXPLAIN ANALYZE.
    metrics: ExecutionPlanMetricsSet,
}

fn show_key(t: &TableDesc, index: &IndexDesc, key: &[u8]) -> String {
    let Ok(KeyKind::Table { columns, .. }) = KeyKind::decode(key) else {
        return format!("{key:?}");
    };
    let mut input = columns.as_slice();
    let mut parts = vec![format!("/{}/{}", t.id, index.id)];
    for (_, desc) in &index.columns {
        if input.is_empty() {
            break;
        }
        match keycode::decode_value(&mut input, *desc) {
            Ok(v) => parts.push(format!("{v:?}")),
            Err(_) => {
                parts.push("…".into());
                break;
            }
        }
    }
    if !input.is_empty() {
        parts.push("+".into());
    }
    parts.join("/")
}

impl DisplayAs for KvScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KvScanExec: table={}", self.desc.name)?;
        let (index, spans) = match &self.access {
            Access::Primary(spans) => (&self.desc.primary, spans),
            Access::Index(index, spans) => (index, spans),
        };
        let shown: Vec<String> = spans
            .iter()
            .take(8)
            .map(|(s, e)| {
                format!(
                    "[{} - {})",
                    show_key(&self.desc, index, s),
                    show_key(&self.desc, index, e)
                )
            })
            .collect();
        write!(f, ", index={}, spans={}", index.name, shown.join(" "))?;
        if spans.len() > 8 {
            write!(f, " (+{} more)", spans.len() - 8)?;
        }
        if !self.filter_text.is_empty() {
            write!(f, ", filters=[{}]", self.filter_text.join(", "))?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KvScanExec {
    fn name(&self) -> &str {
        "KvScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "KvScanExec has no children".into(),
            ))
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut cursor = ScanCursor {
            desc: self.desc.clone(),
            exposed: self.exposed.clone(),
            full_schema: self.full_schema.clone(),
            out_schema: self.out_schema.clone(),
            projection: self.projection.clone(),
            access: self.access.clone(),
            span: 0,
            position: None,
            filters: self.filters.clone(),
            remaining: self.limit.unwrap_or(usize::MAX),
            txn: self.txn.clone(),
        };
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let stream = futures::stream::poll_fn(move |_| {
            let timer = baseline.elapsed_compute().timer();
            let next = cursor.next_batch().transpose();
            timer.done();
            baseline.record_poll(std::task::Poll::Ready(next))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.out_schema.clone(),
            stream,
        )))
    }
}

/// The state of one running scan.
struct ScanCursor {
    desc: Arc<TableDesc>,
    exposed: Vec<usize>,
    full_schema: SchemaRef,
    out_schema: SchemaRef,
    projection: Vec<usize>,
    access: Access,
    span: usize,
    /// Where the current span resumes; `None` before it starts.
    position: Option<Vec<u8>>,
    filters: Vec<Arc<dyn PhysicalExpr>>,
    remaining: usize,
    txn: TxnSlot,
}

impl ScanCursor {
    fn spans(&self) -> &[Span] {
        match &self.access {
            Access::Primary(s) | Access::Index(_, s) => s,
        }
    }

    /// Read the next page of rows (decoded, filtered, projected); `None` when done.
    fn next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        loop {
            if self.remaining == 0 || self.span >= self.spans().len() {
                return Ok(None);
            }
            let (start, end) = self.spans()[self.span].clone();
            let from = self.position.clone().unwrap_or(start);
            let desc = self.desc.clone();
            let access = self.access.clone();
            let page = self
                .txn
                .with(|txn| {
                    let entries = txn.scan(&from, Some(&end), PAGE_ROWS)?;
                    let mut rows = Vec::with_capacity(entries.len());
                    match &access {
                        Access::Primary(_) => {
                            for (k, v) in &entries {
                                rows.push(codec::decode_row(&desc, k, v)?);
                            }
                        }
                        Access::Index(index, _) => {
                            // The page's rows, fetched together: one read per tablet.
                            let pks = entries
                                .iter()
                                .map(|(k, _)| codec::primary_key_from_index_key(&desc, index, k))
                                .collect::<crate::error::Result<Vec<Vec<u8>>>>()?;
                            for (pk, v) in pks.iter().zip(txn.get_many(&pks)?) {
                                if let Some(v) = v {
                                    rows.push(codec::decode_row(&desc, pk, &v)?);
                                }
                            }
                        }
                    }
                    Ok((entries.last().map(|(k, _)| k.clone()), entries.len(), rows))
                })
                .map_err(df_err)?;
            let (last, n, rows) = page;
            if n < PAGE_ROWS {
                self.span += 1;
                self.position = None;
            } else {
                self.position = last.map(|k| [k.as_slice(), &[0]].concat());
            }
            if rows.is_empty() {
                continue;
            }
            let batch = self.to_batch(rows)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = if batch.num_rows() > self.remaining {
                batch.slice(0, self.remaining)
            } else {
                batch
            };
            self.remaining -= batch.num_rows();
            return Ok(Some(batch));
        }
    }

    fn to_batch(&self, rows: Vec<Vec<ScalarValue>>) -> DfResult<RecordBatch> {
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.exposed.len());
        for &pos in &self.exposed {
            columns.push(ScalarValue::iter_to_array(
                rows.iter().map(|r| r[pos].clone()),
            )?);
        }
        let mut batch = RecordBatch::try_new_with_options(
            self.full_schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        for f in &self.filters {
            let mask = f.evaluate(&batch)?.into_array(batch.num_rows())?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| DataFusionError::Internal("filter is not boolean".into()))?
                .clone();
            batch = filter_record_batch(&batch, &mask)?;
        }
        let projected = batch.project(&self.projection)?;
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(self.out_schema.fields().clone())),
            projected.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(projected.num_rows())),
        )?)
    }
}
