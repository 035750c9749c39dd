//! A SQL session: statements in, results out, with PostgreSQL's transaction rules.
//!
//! ```text
//!   text ──sqlparser──▶ Statement ──┬─ BEGIN/COMMIT/ROLLBACK, SET/SHOW ── here
//!                                   ├─ DDL ─────────────── ddl.rs (catalog in KV)
//!                                   ├─ INSERT/UPDATE/DELETE ─ dml.rs (DataFusion reads)
//!                                   └─ SELECT/EXPLAIN ─── DataFusion over KvTable
//! ```
//!
//! Transaction modes: outside BEGIN each statement runs in its own (implicit)
//! transaction, retried here on a serialization failure since no row has reached the
//! client yet; inside BEGIN the statements share one transaction and a failure puts the
//! session in the failed state, where everything but ROLLBACK gets 25P02. Weaker
//! isolation levels are accepted and run as SERIALIZABLE.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use parking_lot::Mutex;
use tessera_cluster::{Db, TxnOptions};

use crate::catalog::{Catalog, CatalogCache};
use crate::copy::{copy_booleans, is_copy_from_stdin};
use crate::error::{Error, Result, SqlState};
use crate::provider::KvTable;
use crate::result_columns::{explain_lines, explain_schema, pg_column_names, UniqueOutputNames};
use crate::sequence::{self, SequenceCache, SequenceContext};
use crate::txn_slot::TxnSlot;

/// How often an implicit transaction is retried after a serialization failure.
const IMPLICIT_RETRIES: usize = 20;

/// The pause before retry `attempt` (from 1) of an implicit transaction: between half
/// and all of 2^attempt ms, at most 64 ms, so that transactions contending for the same
/// rows fall out of step instead of failing each other again and again.
fn retry_backoff(attempt: usize) -> std::time::Duration {
    let cap = 1000u64 << attempt.min(6);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    std::time::Duration::from_micros(cap / 2 + jitter % (cap / 2 + 1))
}

/// Node-wide state shared by all sessions.
#[derive(Debug)]
pub struct QueryNode {
    /// The KV client.
    pub db: Db,
    /// Decoded catalogs.
    pub catalogs: CatalogCache,
    /// Reserved sequence values.
    pub sequences: Arc<SequenceCache>,
    /// Numbers sessions on this node (advisory lock owners).
    sessions: std::sync::atomic::AtomicU64,
    /// Whether this node's store epoch is published for advisory lock owners.
    advisory_published: Arc<std::sync::atomic::AtomicBool>,
}

impl QueryNode {
    /// A query node over a KV client.
    pub fn new(db: Db) -> Arc<Self> {
        Arc::new(QueryNode {
            db,
            catalogs: CatalogCache::default(),
            sequences: Arc::default(),
            sessions: Default::default(),
            advisory_published: Arc::default(),
        })
    }
}

/// The result of one statement.
#[derive(Debug)]
pub enum Output {
    /// Rows, with the command tag to send after them.
    Rows {
        /// Result schema.
        schema: SchemaRef,
        /// Result rows.
        batches: Vec<RecordBatch>,
        /// Command tag (e.g. `SELECT 3`, `INSERT 0 2` with RETURNING).
        tag: String,
    },
    /// A command without rows and its tag (e.g. `CREATE TABLE`, `UPDATE 4`).
    Command(String),
    /// An empty query string.
    Empty,
    /// COPY FROM STDIN has begun: the client sends the data for `columns` columns next,
    /// through [`Session::copy_data`] and [`Session::copy_done`].
    CopyIn {
        /// How many columns each row holds.
        columns: usize,
    },
    /// COPY TO STDOUT: rows to send as COPY data in `format`; the tag is `COPY n`.
    CopyOut {
        /// Result schema.
        schema: SchemaRef,
        /// Result rows.
        batches: Vec<RecordBatch>,
        /// How to lay the rows out.
        format: crate::copy::CopyFormat,
    },
}

impl Output {
    /// The command tag.
    pub fn tag(&self) -> &str {
        match self {
            Output::Rows { tag, .. } | Output::Command(tag) => tag,
            Output::Empty | Output::CopyIn { .. } | Output::CopyOut { .. } => "",
        }
    }
}

/// What a Describe of a prepared statement reports.
#[derive(Debug, Clone)]
pub struct Description {
    /// Inferred type of each `$n` (index n-1) as a field whose metadata may name the SQL
    /// type (a uuid column compared with `$1`); `None` where the context says nothing.
    pub params: Vec<Option<datafusion::arrow::datatypes::Field>>,
    /// The result columns, or `None` for a statement without rows.
    pub schema: Option<SchemaRef>,
}

/// Where the session stands with respect to transactions (ReadyForQuery status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// No explicit transaction (`I`).
    Idle,
    /// Inside BEGIN (`T`).
    Open,
    /// Inside a failed explicit transaction (`E`).
    Failed,
}

/// One client session.
pub struct Session {
    pub(crate) node: Arc<QueryNode>,
    pub(crate) ctx: SessionContext,
    pub(crate) slot: TxnSlot,
    pub(crate) state: TxnState,
    pub(crate) registered: Option<Arc<Catalog>>,
    pub(crate) seq: Arc<SequenceContext>,
    pub(crate) info: Arc<crate::builtins::SessionInfo>,
    pub(crate) notices: Vec<String>,
    /// Open savepoints, innermost last.
    pub(crate) savepoints: Vec<(String, tessera_cluster::Savepoint)>,
    /// Whether [`Session::set_client`] has run.
    pub(crate) client_known: bool,
    /// Advisory locks held by this session.
    advisory: Arc<crate::advisory::AdvisoryLocks>,
    /// The open transaction is the implicit one of a multi-statement query string.
    block_txn: bool,
    /// What the catalog functions know of the registered `pg_catalog`.
    catalog_facts: Arc<Mutex<Arc<crate::pg_catalog::CatalogFacts>>>,
    /// The COPY FROM STDIN in progress.
    pub(crate) copy: Option<crate::copy::CopyIn>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .finish()
    }
}

/// The words of a `SHOW` statement's variable, lower-cased.
pub(crate) fn words(variable: &[ast::Ident]) -> Vec<String> {
    variable.iter().map(|i| i.value.to_lowercase()).collect()
}

/// Parse SQL text into statements (PostgreSQL dialect).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let sql = copy_booleans(sql);
    Parser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.trim_start_matches("sql parser error: ");
        Error::new(SqlState::SyntaxError, format!("syntax error: {msg}"))
    })
}

impl Session {
    /// A new session on `node`.
    pub fn new(node: Arc<QueryNode>) -> Self {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema("tessera", "public")
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(false)
            .with_target_partitions(1)
            // Text is Utf8 throughout tessera (storage, casts, the wire layer).
            .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
        let ctx = SessionContext::new_with_config(config);
        ctx.add_analyzer_rule(Arc::new(crate::bpchar::CharSemantics));
        ctx.add_analyzer_rule(Arc::new(crate::checked::CheckedArithmetic::default()));
        let seq = Arc::new(SequenceContext {
            db: node.db.clone(),
            cache: node.sequences.clone(),
            catalog: Mutex::new(Arc::new(Catalog::default())),
            current: Mutex::new(Default::default()),
        });
        for f in sequence::functions(seq.clone()) {
            ctx.register_udf(f);
        }
        let info = Arc::new(crate::builtins::SessionInfo::default());
        for f in crate::builtins::functions(info.clone()) {
            ctx.register_udf(f);
        }
        let advisory = Arc::new(crate::advisory::AdvisoryLocks::new(
            node.db.clone(),
            node.sessions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            node.advisory_published.clone(),
        ));
        for f in crate::advisory::functions(advisory.clone()) {
            ctx.register_udf(f);
        }
        let catalog_facts: Arc<Mutex<Arc<crate::pg_catalog::CatalogFacts>>> = Arc::default();
        for f in crate::pg_catalog::functions(catalog_facts.clone()) {
            ctx.register_udf(f);
        }
        let mut settings = BTreeMap::new();
        for (k, v) in [
            ("application_name", ""),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
            ("default_transaction_isolation", "serializable"),
            ("extra_float_digits", "1"),
            ("search_path", "\"$user\", public"),
            ("server_version", crate::builtins::SERVER_VERSION),
            ("standard_conforming_strings", "on"),
            ("statement_timeout", "0"),
            ("timezone", "UTC"),
            ("transaction_isolation", "serializable"),
        ] {
            settings.insert(k.to_string(), v.to_string());
        }
        *info.defaults.lock() = settings.clone();
        *info.settings.lock() = settings;
        *info.user.lock() = "root".into();
        *info.database.lock() = "tessera".into();
        Session {
            node,
            ctx,
            slot: TxnSlot::default(),
            state: TxnState::Idle,
            registered: None,
            seq,
            info,
            notices: Vec::new(),
            savepoints: Vec::new(),
            copy: None,
            client_known: false,
            advisory,
            block_txn: false,
            catalog_facts,
        }
    }

    /// The transaction state, for ReadyForQuery.
    pub fn txn_state(&self) -> TxnState {
        self.state
    }

    /// Notices raised since the last call (e.g. "table does not exist, skipping").
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    pub(crate) fn notice(&mut self, msg: impl Into<String>) {
        self.notices.push(msg.into());
    }

    /// A session setting (lower-case name).
    pub fn setting(&self, name: &str) -> Option<String> {
        self.info.get(name)
    }

    /// The running statement was abandoned (cancelled) part way: undo what it did. An
    /// implicit transaction rolls back; an explicit one fails, as after an error.
    pub fn abandon_statement(&mut self) {
        self.copy = None;
        if self.block_txn || self.state == TxnState::Idle {
            self.block_txn = false;
            self.end_txn();
        } else {
            self.state = TxnState::Failed;
        }
    }

    /// The flag that interrupts a wait of this session (for a lock) when set.
    pub fn interrupt_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.advisory.interrupted.clone()
    }

    /// Whether the client's startup parameters are known yet.
    pub fn knows_client(&self) -> bool {
        self.client_known
    }

    /// The process id the client was told (BackendKeyData), for `pg_backend_pid()`.
    pub fn set_backend_pid(&mut self, pid: i32) {
        *self.info.pid.lock() = pid;
    }

    /// Run every statement of a simple-protocol query string. Execution stops at the
    /// first error, which is the last element.
    pub async fn execute_sql(&mut self, sql: &str) -> Vec<Result<Output>> {
        if let Some(r) = self.maintenance(sql) {
            return vec![r];
        }
        let stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => {
                // Statements of tessera's own that sqlparser does not know.
                if let Some(split) = crate::ranges::parse_split(sql) {
                    return match split {
                        Ok(split) => vec![self.split_at(split).await],
                        Err(e) => vec![Err(e)],
                    };
                }
                if self.state == TxnState::Open {
                    self.state = TxnState::Failed;
                }
                return vec![Err(e)];
            }
        };
        if stmts.is_empty() {
            return vec![Ok(Output::Empty)];
        }
        if stmts.len() > 1 && stmts.iter().any(is_copy_from_stdin) {
            return vec![Err(Error::unsupported(
                "COPY FROM STDIN together with other statements in one query",
            ))];
        }
        // As in PostgreSQL, several statements sent in one query string run as one
        // implicit transaction unless they manage transactions themselves: an error in
        // any of them undoes them all.
        let block = stmts.len() > 1
            && self.state == TxnState::Idle
            && stmts
                .iter()
                .all(|s| !is_transaction_control(s) && !is_non_transactional(s));
        if block {
            self.slot.set(self.node.db.begin(TxnOptions::default()));
            self.state = TxnState::Open;
            self.block_txn = true;
        }
        let mut out = Vec::with_capacity(stmts.len());
        let mut failed = false;
        for stmt in stmts {
            let r = self.execute(stmt).await;
            failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        if block {
            self.block_txn = false;
            if failed {
                self.end_txn();
            } else if let Err(e) = self.commit() {
                out.push(Err(e));
            }
        }
        out
    }

    /// Run one statement under the session's transaction rules.
    pub async fn execute(&mut self, stmt: Statement) -> Result<Output> {
        self.execute_inner(stmt).await.map_err(|mut e| {
            if let Some(key) = e.extra.conflict_key.take() {
                let what = self.describe_key(&key);
                e.message = format!("{} on {what}", e.message);
                if let Some(t) = what.split('"').nth(1) {
                    e.extra.table = Some(t.to_string());
                }
            }
            e
        })
    }

    /// Name the table and key columns of a raw key, for conflict messages.
    fn describe_key(&self, key: &[u8]) -> String {
        use tessera_storage::keycode::{decode_value, KeyKind};
        let Ok(KeyKind::Table {
            table,
            index,
            columns,
        }) = KeyKind::decode(key)
        else {
            return "a system key (catalog or sequence)".into();
        };
        let catalog = self.seq.catalog.lock().clone();
        let Some(t) = catalog.table_by_id(table) else {
            return format!("table {table}");
        };
        let Some(idx) = t.all_indexes().find(|i| i.id == index) else {
            return format!("table \"{}\"", t.name);
        };
        let mut input = columns.as_slice();
        let mut names = Vec::new();
        let mut values = Vec::new();
        for (col, desc) in &idx.columns {
            let Ok(v) = decode_value(&mut input, *desc) else {
                break;
            };
            let c = t.column_by_id(*col).expect("index column");
            names.push(c.name.clone());
            values.push(match crate::codec::from_key_value(v, c.ty) {
                Ok(v) => crate::json::display_scalar(&v),
                Err(_) => "?".into(),
            });
        }
        format!(
            "table \"{}\", key ({})=({})",
            t.name,
            names.join(", "),
            values.join(", ")
        )
    }

    async fn execute_inner(&mut self, stmt: Statement) -> Result<Output> {
        if is_copy_from_stdin(&stmt) {
            return self.copy_from(&stmt);
        }
        match &stmt {
            Statement::StartTransaction { .. } => return self.begin(),
            Statement::Commit { .. } => return self.commit(),
            Statement::Rollback {
                savepoint: None, ..
            } => return self.rollback(),
            Statement::Savepoint { name } => return self.savepoint(crate::dml::ident(name)),
            Statement::ReleaseSavepoint { name } => {
                return self.release_savepoint(&crate::dml::ident(name))
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => return self.rollback_to_savepoint(&crate::dml::ident(name)),
            _ => {}
        }
        match self.state {
            TxnState::Failed => Err(Error::in_failed_transaction()),
            TxnState::Open => {
                let r = self.run_in_txn(&stmt).await;
                if r.is_err() {
                    self.state = TxnState::Failed;
                }
                r
            }
            TxnState::Idle => {
                if is_non_transactional(&stmt) {
                    return self.run_utility(&stmt);
                }
                let mut attempt = 0;
                loop {
                    self.slot.set(self.node.db.begin(TxnOptions::default()));
                    let r = self.run_in_txn(&stmt).await;
                    let r = match r {
                        Ok(out) => match self.slot.commit() {
                            Some(Err(e)) => Err(Error::from(e)),
                            _ => Ok(out),
                        },
                        Err(e) => {
                            self.slot.rollback();
                            Err(e)
                        }
                    };
                    self.advisory.end_transaction();
                    match r {
                        Err(e) if e.is_retryable() && attempt < IMPLICIT_RETRIES => {
                            attempt += 1;
                            tracing::debug!(attempt, error = %e, "retrying implicit transaction");
                            tokio::time::sleep(retry_backoff(attempt)).await;
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    /// Describe a statement: its parameter types and result columns.
    pub async fn describe(&mut self, stmt: &Statement) -> Result<Description> {
        let temp = !self.slot.is_open();
        if temp {
            self.slot.set(self.node.db.begin(TxnOptions::default()));
        }
        let r = self.describe_inner(stmt).await;
        if temp {
            self.slot.rollback();
        }
        r
    }

    async fn describe_inner(&mut self, stmt: &Statement) -> Result<Description> {
        let n = crate::params::count(stmt);
        let mut params = vec![None; n];
        let catalog = self.sync_catalog()?;
        let fill = |params: &mut Vec<Option<_>>, plan: &LogicalPlan| {
            if let Ok(types) = plan.get_parameter_types() {
                for (name, ty) in types {
                    if let Some(i) = crate::params::placeholder_index(&name, params.len()) {
                        params[i] =
                            ty.map(|ty| datafusion::arrow::datatypes::Field::new("", ty, true));
                    }
                }
            }
            crate::params::column_hints(plan, params);
        };
        let schema = match stmt {
            Statement::Explain { .. } => Some(explain_schema()),
            Statement::Query(_) => {
                let plan = self.plan(stmt).await?;
                fill(&mut params, &plan);
                Some(pg_column_names(stmt, self.result_schema(&plan)))
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                let (table, returning) = crate::dml::target_and_returning(stmt);
                let mut bare = stmt.clone();
                crate::dml::strip_returning(&mut bare);
                if let Ok(plan) = self.plan(&bare).await {
                    fill(&mut params, &plan);
                }
                if let Statement::Insert(ins) = stmt {
                    crate::params::insert_hints(&catalog, ins, &mut params);
                }
                match (table, returning) {
                    (Some(t), Some(items)) => {
                        let t = catalog.table(&t)?;
                        let sql = format!(
                            "SELECT {} FROM {}",
                            items
                                .iter()
                                .map(|i| i.to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            crate::dml::quote(&t.name)
                        );
                        let plan = self.plan(&parse(&sql)?.remove(0)).await?;
                        Some(self.result_schema(&plan))
                    }
                    _ => None,
                }
            }
            Statement::ShowVariable { variable } => {
                let words = words(variable);
                if crate::ranges::show_filter(&words).is_some() {
                    Some(crate::ranges::ranges_schema())
                } else {
                    let name = words.join(" ");
                    Some(crate::types::schema_of(
                        [(name.as_str(), crate::types::SqlType::Text, false)].into_iter(),
                    ))
                }
            }
            _ => None,
        };
        Ok(Description { params, schema })
    }

    fn begin(&mut self) -> Result<Output> {
        match self.state {
            TxnState::Idle => {
                self.slot.set(self.node.db.begin(TxnOptions::default()));
                self.state = TxnState::Open;
            }
            TxnState::Open | TxnState::Failed => {
                self.notice("there is already a transaction in progress");
            }
        }
        Ok(Output::Command("BEGIN".into()))
    }

    fn commit(&mut self) -> Result<Output> {
        match self.state {
            TxnState::Idle => {
                self.notice("there is no transaction in progress");
                Ok(Output::Command("COMMIT".into()))
            }
            TxnState::Failed => {
                self.end_txn();
                Ok(Output::Command("ROLLBACK".into()))
            }
            TxnState::Open => {
                self.state = TxnState::Idle;
                self.savepoints.clear();
                self.advisory.end_transaction();
                let r = self.slot.commit();
                self.registered = None;
                match r {
                    Some(Err(e)) => Err(e.into()),
                    _ => Ok(Output::Command("COMMIT".into())),
                }
            }
        }
    }

    fn rollback(&mut self) -> Result<Output> {
        if self.state == TxnState::Idle {
            self.notice("there is no transaction in progress");
        }
        self.end_txn();
        Ok(Output::Command("ROLLBACK".into()))
    }

    pub(crate) fn end_txn(&mut self) {
        self.savepoints.clear();
        self.advisory.end_transaction();
        self.slot.rollback();
        self.state = TxnState::Idle;
        // A rolled-back schema change must not stay registered.
        self.registered = None;
    }

    /// Load the catalog as the current transaction sees it and register its tables.
    pub(crate) fn sync_catalog(&mut self) -> Result<Arc<Catalog>> {
        let catalog = self.slot.with(|txn| self.node.catalogs.load(txn))?;
        if self
            .registered
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &catalog))
        {
            return Ok(catalog);
        }
        self.registered = None;
        let stale = self
            .ctx
            .catalog("tessera")
            .and_then(|c| c.schema("public"))
            .map(|s| s.table_names())
            .unwrap_or_default();
        for name in stale {
            self.ctx
                .deregister_table(datafusion::common::TableReference::bare(name.as_str()))?;
        }
        for (name, desc) in &catalog.tables {
            let provider = Arc::new(KvTable::new(desc.clone(), self.slot.clone(), false));
            self.ctx
                .register_table(
                    datafusion::common::TableReference::bare(name.as_str()),
                    provider,
                )
                .map_err(Error::from)?;
        }
        crate::pg_catalog::register(&self.ctx, &catalog, &self.info, &self.catalog_facts)?;
        let internal = datafusion::catalog::MemorySchemaProvider::new();
        datafusion::catalog::SchemaProvider::register_table(
            &internal,
            "ranges".into(),
            Arc::new(crate::ranges::RangesTable::new(
                self.node.db.store().clone(),
                catalog.clone(),
            )),
        )?;
        self.ctx
            .catalog("tessera")
            .ok_or_else(|| Error::internal("no tessera catalog"))?
            .register_schema("tessera_internal", Arc::new(internal))?;
        *self.seq.catalog.lock() = catalog.clone();
        self.registered = Some(catalog.clone());
        Ok(catalog)
    }

    async fn run_in_txn(&mut self, stmt: &Statement) -> Result<Output> {
        let catalog = self.sync_catalog()?;
        match stmt {
            Statement::Query(_) | Statement::Explain { .. } => self.query(stmt).await,
            Statement::Copy { .. } => self.copy_to(&catalog, stmt).await,
            Statement::Insert(ins) => crate::dml::insert(self, &catalog, ins).await,
            Statement::Update(upd) => crate::dml::update(self, &catalog, upd).await,
            Statement::Delete(del) => crate::dml::delete(self, &catalog, del).await,
            Statement::CreateTable(_)
            | Statement::Drop { .. }
            | Statement::CreateIndex(_)
            | Statement::AlterTable(_)
            | Statement::Truncate(_)
            | Statement::CreateSequence { .. } => {
                let out = crate::ddl::execute(self, &catalog, stmt).await;
                self.registered = None;
                out
            }
            other => self.run_utility(other),
        }
    }

    /// The schema of the rows `plan` returns, as execution will send them: the analysed
    /// plan's (analysis refines column metadata: a `char(n)` value cast to text is
    /// text). A plan that cannot be analysed before its parameters are bound keeps its
    /// own schema.
    fn result_schema(&self, plan: &LogicalPlan) -> SchemaRef {
        match self.ctx.state().optimize(plan) {
            Ok(analysed) => Arc::new(analysed.schema().as_arrow().clone()),
            Err(_) => Arc::new(plan.schema().as_arrow().clone()),
        }
    }

    /// Plan and run a query (or EXPLAIN) with DataFusion; rows are collected.
    pub(crate) async fn query(&mut self, stmt: &Statement) -> Result<Output> {
        let plan = self.plan(stmt).await?;
        // The result schema is the analysed plan's: analysis refines column metadata (a
        // `char(n)` value cast to text is no longer padded on output).
        let state = self.ctx.state();
        let optimized = state.optimize(&plan)?;
        let schema: SchemaRef = Arc::new(optimized.schema().as_arrow().clone());
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await?;
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).await?;
        let (schema, batches) = if matches!(stmt, Statement::Explain { .. }) {
            explain_lines(&batches)?
        } else {
            let schema = pg_column_names(stmt, schema);
            let batches = batches
                .into_iter()
                .map(|b| {
                    RecordBatch::try_new(schema.clone(), b.columns().to_vec())
                        .map_err(Error::internal)
                })
                .collect::<Result<Vec<_>>>()?;
            (schema, batches)
        };
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        Ok(Output::Rows {
            schema,
            batches,
            tag: format!("SELECT {n}"),
        })
    }

    /// A DataFusion logical plan for a query statement.
    pub(crate) async fn plan(&self, stmt: &Statement) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        let mut stmt = stmt.clone();
        let _ = ast::VisitMut::visit(&mut stmt, &mut crate::pg_catalog::CatalogSpellings);
        let _ = ast::VisitMut::visit(&mut stmt, &mut crate::builtins::PgSpellings);
        let _ = ast::VisitMut::visit(&mut stmt, &mut UniqueOutputNames);
        Ok(state
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await?)
    }

    /// Run SQL text that produces rows, inside the current transaction.
    pub(crate) async fn query_sql(&mut self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut stmts = parse(sql)?;
        if stmts.len() != 1 {
            return Err(Error::internal("expected one statement"));
        }
        let plan = self.plan(&stmts.remove(0)).await?;
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        Ok((schema, df.collect().await?))
    }
}

/// BEGIN, COMMIT, ROLLBACK and savepoint statements.
fn is_transaction_control(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

/// Statements that never touch the key space.
fn is_non_transactional(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::Reset(_)
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
    )
}

/// A short name for a statement kind, for error messages.
pub fn statement_name(stmt: &Statement) -> String {
    let s = stmt.to_string();
    s.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}
