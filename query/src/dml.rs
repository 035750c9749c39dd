//! INSERT, UPDATE and DELETE.
//!
//! Each statement is "a query, then writes": DataFusion evaluates the rows (the VALUES
//! or SELECT of an INSERT with defaults filled in; the old rows plus the new values of
//! an UPDATE; the doomed rows of a DELETE), reading through the session's transaction;
//! then each row is cast to the column types, checked (NOT NULL, lengths, uniqueness)
//! and written with its index entries through the same transaction
//! ([`crate::row_write`]). RETURNING runs one more query over the written rows.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::sql::sqlparser::ast::{self, Expr as SqlExpr, SelectItem, TableObject};

use crate::assign::cast_column;
use crate::catalog::{Catalog, TableDesc};
use crate::codec;
use crate::error::{Error, Result, SqlState};
use crate::provider::{table_schema, KvTable};
use crate::row_write::{check_value, complete, delete_row, insert_new_rows, write_new_row};
use crate::session::{Output, Session};

const DML_TARGET: &str = "__tessera_dml_target";
const RETURNING: &str = "__tessera_returning";

/// Quote an identifier for generated SQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn object_table_name(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .map(|p| p.to_string())
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// Normalise an identifier as PostgreSQL does: unquoted names fold to lower case.
pub(crate) fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub(crate) fn object_name(name: &ast::ObjectName) -> String {
    match name.0.last() {
        Some(ast::ObjectNamePart::Identifier(i)) => ident(i),
        Some(other) => object_table_name(&ast::ObjectName(vec![other.clone()])),
        None => String::new(),
    }
}

/// Rows of the batches, each cast column by column to `types`.
pub(crate) fn rows_of(
    batches: &[RecordBatch],
    t: &TableDesc,
    cols: &[(usize, usize)],
) -> Result<Vec<Vec<(usize, ScalarValue)>>> {
    let mut out = Vec::new();
    for b in batches {
        let mut casted = Vec::with_capacity(cols.len());
        for (src, pos) in cols {
            let col = &t.columns[*pos];
            casted.push((*pos, cast_column(b.column(*src), col.ty, t, &col.name)?));
        }
        for r in 0..b.num_rows() {
            let mut row = Vec::with_capacity(casted.len());
            for (pos, a) in &casted {
                row.push((*pos, ScalarValue::try_from_array(a, r)?));
            }
            out.push(row);
        }
    }
    Ok(out)
}

/// A one-off table of full rows of `t` (visible columns only), for queries over rows
/// that are not in the key space (RETURNING, the `excluded` row of an upsert).
fn rows_table(t: &TableDesc, rows: &[Vec<ScalarValue>]) -> Result<MemTable> {
    let schema = table_schema(t, false);
    let visible: Vec<usize> = (0..t.columns.len())
        .filter(|p| !t.columns[*p].hidden)
        .collect();
    let batch = if rows.is_empty() {
        RecordBatch::new_empty(schema.clone())
    } else {
        let columns = visible
            .iter()
            .map(|&p| {
                ScalarValue::iter_to_array(rows.iter().map(|r| r[p].clone())).map_err(Error::from)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        RecordBatch::try_new(schema.clone(), columns).map_err(Error::internal)?
    };
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// Evaluate RETURNING items over the written rows.
async fn returning(
    session: &mut Session,
    t: &TableDesc,
    alias: &str,
    items: &[SelectItem],
    rows: Vec<Vec<ScalarValue>>,
    tag: String,
) -> Result<Output> {
    session
        .ctx
        .register_table(RETURNING, Arc::new(rows_table(t, &rows)?))?;
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT {} FROM {RETURNING} AS {}",
        items.join(", "),
        quote(alias)
    );
    let r = session.query_sql(&sql).await;
    session.ctx.deregister_table(RETURNING)?;
    let (schema, batches) = r?;
    Ok(Output::Rows {
        schema,
        batches,
        tag,
    })
}

pub(crate) fn default_sql(t: &TableDesc, pos: usize) -> String {
    match &t.columns[pos].default {
        Some(d) => d.clone(),
        None => "NULL".into(),
    }
}

/// Replace `DEFAULT` in VALUES rows with the column defaults.
fn fill_value_defaults(t: &TableDesc, targets: &[usize], query: &mut ast::Query) -> Result<()> {
    if let ast::SetExpr::Values(values) = query.body.as_mut() {
        for row in &mut values.rows {
            if row.len() != targets.len() {
                let more = if row.len() > targets.len() {
                    "more"
                } else {
                    "fewer"
                };
                return Err(Error::new(
                    SqlState::SyntaxError,
                    format!("INSERT has {more} expressions than target columns"),
                ));
            }
            for (i, e) in row.iter_mut().enumerate() {
                let is_default = matches!(e, SqlExpr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"));
                if is_default {
                    let sql = default_sql(t, targets[i]);
                    *e = crate::session::parse(&format!("SELECT {sql}"))
                        .ok()
                        .and_then(|mut s| match s.pop() {
                            Some(ast::Statement::Query(q)) => match *q.body {
                                ast::SetExpr::Select(sel) => {
                                    match sel.projection.into_iter().next() {
                                        Some(SelectItem::UnnamedExpr(e)) => Some(e),
                                        _ => None,
                                    }
                                }
                                _ => None,
                            },
                            _ => None,
                        })
                        .ok_or_else(|| Error::internal("bad default expression"))?;
                }
            }
        }
    }
    Ok(())
}

/// What an INSERT does when a row collides with an existing one.
enum OnConflict {
    /// Fail with a unique violation.
    Error,
    /// Skip the row: on any collision, or only on one in the given index.
    Nothing(Option<crate::catalog::IndexDesc>),
    /// Update the existing row that collides in `arbiter`.
    Update {
        arbiter: crate::catalog::IndexDesc,
        set: Vec<(usize, String)>,
        selection: Option<String>,
    },
}

/// The unique index (primary key included) named by an ON CONFLICT target.
fn arbiter_index(t: &TableDesc, target: &ast::ConflictTarget) -> Result<crate::catalog::IndexDesc> {
    let all = std::iter::once(&t.primary).chain(t.indexes.iter().filter(|i| i.unique));
    let found = match target {
        ast::ConflictTarget::Columns(cols) => {
            let mut wanted = Vec::new();
            for c in cols {
                let name = ident(c);
                let col = t
                    .columns
                    .iter()
                    .find(|col| col.name == name && !col.hidden)
                    .ok_or_else(|| {
                        Error::new(
                            SqlState::UndefinedColumn,
                            format!("column \"{name}\" does not exist"),
                        )
                        .with_table(&t.name)
                    })?;
                wanted.push(col.id);
            }
            wanted.sort_unstable();
            wanted.dedup();
            all.into_iter().find(|i| {
                let mut ids: Vec<u32> = i.columns.iter().map(|(id, _)| *id).collect();
                ids.sort_unstable();
                ids == wanted
            })
        }
        ast::ConflictTarget::OnConstraint(name) => {
            let name = object_name(name);
            all.into_iter().find(|i| i.name == name)
        }
    };
    found.cloned().ok_or_else(|| {
        Error::new(
            SqlState::InvalidColumnReference,
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        )
        .with_table(&t.name)
    })
}

/// The existing row whose `index` columns equal those of `row`.
fn conflicting_row(
    session: &Session,
    t: &TableDesc,
    index: &crate::catalog::IndexDesc,
    row: &[ScalarValue],
) -> Result<Option<Vec<ScalarValue>>> {
    let values: Vec<ScalarValue> = index
        .columns
        .iter()
        .map(|(id, _)| row[t.position(*id).expect("index column")].clone())
        .collect();
    if values.iter().any(|v| v.is_null()) {
        // NULLs never collide.
        return Ok(None);
    }
    session.slot.with(|txn| {
        let key = if index.id == t.primary.id {
            codec::primary_key(t, row)?
        } else {
            let prefix = codec::index_prefix(t, index, &values)?;
            let end = tessera_storage::keycode::prefix_end(&prefix).expect("bounded");
            match txn.scan(&prefix, Some(&end), 1)?.into_iter().next() {
                Some((entry, _)) => codec::primary_key_from_index_key(t, index, &entry)?,
                None => return Ok(None),
            }
        };
        // Read, not just checked: the caller may leave the row as it is (DO NOTHING,
        // DO UPDATE ... WHERE false), and its decision depends on the row.
        match txn.get(&key)? {
            Some(value) => Ok(Some(codec::decode_row(t, &key, &value)?)),
            None => Ok(None),
        }
    })
}

const EXISTING: &str = "__tessera_existing";
const EXCLUDED: &str = "__tessera_excluded";

/// The DO UPDATE half of an upsert: evaluate SET (and WHERE) with the target alias bound
/// to the existing row and `excluded` to the proposed one, then rewrite the row. `None`
/// when WHERE filtered the row out.
async fn upsert_update(
    session: &mut Session,
    t: &TableDesc,
    alias: &str,
    set: &[(usize, String)],
    selection: Option<&str>,
    existing: Vec<ScalarValue>,
    proposed: &[ScalarValue],
) -> Result<Option<Vec<ScalarValue>>> {
    let mut select: Vec<String> = set.iter().map(|(_, v)| format!("({v})")).collect();
    if select.is_empty() {
        select.push("1".into());
    }
    let mut sql = format!(
        "SELECT {} FROM {EXISTING} AS {} CROSS JOIN {EXCLUDED} AS excluded",
        select.join(", "),
        quote(alias)
    );
    if let Some(w) = selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    session.ctx.register_table(
        EXISTING,
        Arc::new(rows_table(t, std::slice::from_ref(&existing))?),
    )?;
    session
        .ctx
        .register_table(EXCLUDED, Arc::new(rows_table(t, &[proposed.to_vec()])?))?;
    let r = session.query_sql(&sql).await;
    session.ctx.deregister_table(EXISTING)?;
    session.ctx.deregister_table(EXCLUDED)?;
    let (_, batches) = r?;
    let mapping: Vec<(usize, usize)> = set.iter().enumerate().map(|(i, (p, _))| (i, *p)).collect();
    let Some(changes) = rows_of(&batches, t, &mapping)?.into_iter().next() else {
        return Ok(None);
    };
    let mut new = existing.clone();
    for (pos, v) in changes {
        new[pos] = check_value(t, pos, v)?;
    }
    crate::foreign_key::check_children(session, t, &existing, Some(&new))?;
    delete_row(session, t, &existing)?;
    write_new_row(session, t, &new, false)?;
    Ok(Some(new))
}

/// INSERT.
/// Positions of the named columns of `t` (all visible columns when none are named).
pub(crate) fn column_positions(t: &TableDesc, names: &[String]) -> Result<Vec<usize>> {
    if names.is_empty() {
        return Ok((0..t.columns.len())
            .filter(|p| !t.columns[*p].hidden)
            .collect());
    }
    let mut seen = HashSet::new();
    names
        .iter()
        .map(|n| {
            let pos = t
                .columns
                .iter()
                .position(|col| col.name == *n && !col.hidden)
                .ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedColumn,
                        format!("column \"{n}\" of relation \"{}\" does not exist", t.name),
                    )
                })?;
            if !seen.insert(pos) {
                return Err(Error::new(
                    SqlState::DuplicateColumn,
                    format!("column \"{n}\" specified more than once"),
                ));
            }
            Ok(pos)
        })
        .collect()
}

pub async fn insert(session: &mut Session, catalog: &Catalog, ins: &ast::Insert) -> Result<Output> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(Error::unsupported("INSERT into a table function"));
    };
    let t = catalog.table(&object_name(name))?.clone();
    let alias = ins
        .table_alias
        .as_ref()
        .map(|a| ident(&a.alias))
        .unwrap_or_else(|| t.name.clone());
    let names: Vec<String> = ins.columns.iter().map(object_name).collect();
    let targets = column_positions(&t, &names)?;
    let on_conflict = match &ins.on {
        None => OnConflict::Error,
        Some(ast::OnInsert::OnConflict(c)) => {
            let arbiter = match &c.conflict_target {
                None => None,
                Some(target) => Some(arbiter_index(&t, target)?),
            };
            match &c.action {
                ast::OnConflictAction::DoNothing => OnConflict::Nothing(arbiter),
                ast::OnConflictAction::DoUpdate(u) => {
                    let Some(arbiter) = arbiter else {
                        return Err(Error::new(
                            SqlState::SyntaxError,
                            "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                        ));
                    };
                    OnConflict::Update {
                        arbiter,
                        set: assignments(&t, &u.assignments)?,
                        selection: u.selection.as_ref().map(|e| e.to_string()),
                    }
                }
            }
        }
        Some(_) => return Err(Error::unsupported("this INSERT conflict clause")),
    };
    let missing: Vec<usize> = (0..t.columns.len())
        .filter(|p| !targets.contains(p))
        .collect();
    let defaults: Vec<String> = missing
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{} AS __default_{i}", default_sql(&t, *p)))
        .collect();
    let source_sql = match &ins.source {
        Some(q) => {
            let mut q = q.as_ref().clone();
            fill_value_defaults(&t, &targets, &mut q)?;
            Some(q.to_string())
        }
        None => None,
    };
    // The source's own column names may repeat (`SELECT x, x`): name them afresh before
    // adding the defaults beside them.
    let source_width = match &source_sql {
        Some(src) if !defaults.is_empty() => {
            let stmt = crate::session::parse(src)?
                .pop()
                .ok_or_else(|| Error::internal("empty INSERT source"))?;
            session.plan(&stmt).await?.schema().fields().len()
        }
        _ => 0,
    };
    let sql = match &source_sql {
        Some(src) if defaults.is_empty() => src.clone(),
        Some(src) => format!(
            "SELECT *, {} FROM ({src}) AS __src({})",
            defaults.join(", "),
            (0..source_width)
                .map(|i| format!("__source_{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None if defaults.is_empty() => "SELECT 1 WHERE false".into(),
        None => format!("SELECT {}", defaults.join(", ")),
    };
    let (schema, batches) = session.query_sql(&sql).await?;
    let src_cols = if source_sql.is_some() {
        schema.fields().len() - defaults.len()
    } else {
        0
    };
    if source_sql.is_some() && src_cols != targets.len() {
        let more = if src_cols > targets.len() {
            "more"
        } else {
            "fewer"
        };
        return Err(Error::new(
            SqlState::SyntaxError,
            format!("INSERT has {more} expressions than target columns"),
        ));
    }
    let mut mapping: Vec<(usize, usize)> =
        targets.iter().enumerate().map(|(i, p)| (i, *p)).collect();
    mapping.extend(missing.iter().enumerate().map(|(i, p)| (src_cols + i, *p)));
    let rows = rows_of(&batches, &t, &mapping)?;
    if matches!(on_conflict, OnConflict::Error) {
        return insert_rows(session, &t, &alias, &ins.returning, rows).await;
    }
    let mut written = Vec::new();
    let mut n = 0;
    // Keys this statement inserted or updated: an upsert may not touch a row twice.
    let mut touched = HashSet::new();
    for partial in rows {
        let row = complete(&t, partial)?;
        let outcome = match &on_conflict {
            OnConflict::Error => unreachable!("inserted above"),
            OnConflict::Nothing(None) => write_new_row(session, &t, &row, true)?.then_some(row),
            OnConflict::Nothing(Some(arbiter)) => {
                match conflicting_row(session, &t, arbiter, &row)? {
                    Some(_) => None,
                    None => write_new_row(session, &t, &row, false)?.then_some(row),
                }
            }
            OnConflict::Update {
                arbiter,
                set,
                selection,
            } => match conflicting_row(session, &t, arbiter, &row)? {
                None => write_new_row(session, &t, &row, false)?.then_some(row),
                Some(existing) => {
                    if touched.contains(&codec::primary_key(&t, &existing)?) {
                        return Err(Error::new(
                            SqlState::CardinalityViolation,
                            "ON CONFLICT DO UPDATE command cannot affect row a second time",
                        )
                        .with_table(&t.name));
                    }
                    upsert_update(
                        session,
                        &t,
                        &alias,
                        set,
                        selection.as_deref(),
                        existing,
                        &row,
                    )
                    .await?
                }
            },
        };
        if let Some(row) = outcome {
            n += 1;
            touched.insert(codec::primary_key(&t, &row)?);
            if ins.returning.is_some() {
                written.push(row);
            }
        }
    }
    let tag = format!("INSERT 0 {n}");
    match &ins.returning {
        Some(items) => returning(session, &t, &alias, items, written, tag).await,
        None => Ok(Output::Command(tag)),
    }
}

/// The rows of an INSERT without ON CONFLICT ([`insert_new_rows`]), and its answer.
async fn insert_rows(
    session: &mut Session,
    t: &Arc<TableDesc>,
    alias: &str,
    returning_items: &Option<Vec<SelectItem>>,
    rows: Vec<Vec<(usize, ScalarValue)>>,
) -> Result<Output> {
    let rows = insert_new_rows(session, t, rows).map_err(|(_, e)| e)?;
    let tag = format!("INSERT 0 {}", rows.len());
    match returning_items {
        Some(items) => returning(session, t, alias, items, rows, tag).await,
        None => Ok(Output::Command(tag)),
    }
}

/// The target table and RETURNING items of a DML statement.
pub(crate) fn target_and_returning(
    stmt: &ast::Statement,
) -> (Option<String>, Option<Vec<SelectItem>>) {
    match stmt {
        ast::Statement::Insert(i) => match &i.table {
            TableObject::TableName(n) => (Some(object_name(n)), i.returning.clone()),
            _ => (None, None),
        },
        ast::Statement::Update(u) => (
            target_of(&u.table.relation).ok().map(|t| t.0),
            u.returning.clone(),
        ),
        ast::Statement::Delete(d) => {
            let from = match &d.from {
                ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
            };
            (
                from.first()
                    .and_then(|f| target_of(&f.relation).ok())
                    .map(|t| t.0),
                d.returning.clone(),
            )
        }
        _ => (None, None),
    }
}

/// Remove RETURNING (DataFusion's own DML planner does not take it).
pub(crate) fn strip_returning(stmt: &mut ast::Statement) {
    match stmt {
        ast::Statement::Insert(i) => i.returning = None,
        ast::Statement::Update(u) => u.returning = None,
        ast::Statement::Delete(d) => d.returning = None,
        _ => {}
    }
}

/// Register the DML target with its hidden columns for the duration of a statement.
fn register_target(session: &Session, t: &Arc<TableDesc>) -> Result<()> {
    let provider = Arc::new(KvTable::new(t.clone(), session.slot.clone(), true));
    session.ctx.register_table(DML_TARGET, provider)?;
    Ok(())
}

fn all_columns(t: &TableDesc, alias: &str) -> Vec<String> {
    t.columns
        .iter()
        .map(|c| format!("{}.{}", quote(alias), quote(&c.name)))
        .collect()
}

fn target_of(relation: &ast::TableFactor) -> Result<(String, Option<String>)> {
    match relation {
        ast::TableFactor::Table { name, alias, .. } => {
            Ok((object_name(name), alias.as_ref().map(|a| ident(&a.name))))
        }
        _ => Err(Error::unsupported("UPDATE/DELETE of a non-table")),
    }
}

/// The column positions and value expressions (as SQL) of SET assignments; `DEFAULT`
/// becomes the column's default expression.
fn assignments(t: &TableDesc, list: &[ast::Assignment]) -> Result<Vec<(usize, String)>> {
    let mut assigned: Vec<(usize, String)> = Vec::new();
    for a in list {
        let cols: Vec<String> = match &a.target {
            ast::AssignmentTarget::ColumnName(n) => vec![object_name(n)],
            ast::AssignmentTarget::Tuple(_) => {
                return Err(Error::unsupported("UPDATE of a column tuple"))
            }
        };
        for c in cols {
            let pos = t
                .columns
                .iter()
                .position(|col| col.name == c && !col.hidden)
                .ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedColumn,
                        format!("column \"{c}\" of relation \"{}\" does not exist", t.name),
                    )
                })?;
            if assigned.iter().any(|(p, _)| *p == pos) {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    format!("multiple assignments to same column \"{c}\""),
                ));
            }
            let value = match &a.value {
                SqlExpr::Identifier(id)
                    if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default") =>
                {
                    default_sql(t, pos)
                }
                e => e.to_string(),
            };
            assigned.push((pos, value));
        }
    }
    Ok(assigned)
}

/// UPDATE.
pub async fn update(session: &mut Session, catalog: &Catalog, upd: &ast::Update) -> Result<Output> {
    if !upd.table.joins.is_empty() {
        return Err(Error::unsupported("UPDATE with JOIN"));
    }
    let (name, alias) = target_of(&upd.table.relation)?;
    let t = catalog.table(&name)?.clone();
    let alias = alias.unwrap_or_else(|| t.name.clone());
    let assigned = assignments(&t, &upd.assignments)?;
    let mut select: Vec<String> = all_columns(&t, &alias);
    select.extend(assigned.iter().map(|(_, v)| format!("({v})")));
    let mut sql = format!(
        "SELECT {} FROM {DML_TARGET} AS {}",
        select.join(", "),
        quote(&alias)
    );
    if let Some(from) = &upd.from {
        let tables = match from {
            ast::UpdateTableFromKind::BeforeSet(t) | ast::UpdateTableFromKind::AfterSet(t) => t,
        };
        for f in tables {
            sql.push_str(&format!(", {f}"));
        }
    }
    if let Some(w) = &upd.selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    register_target(session, &t)?;
    let r = session.query_sql(&sql).await;
    session.ctx.deregister_table(DML_TARGET)?;
    let (_, batches) = r?;
    let n_cols = t.columns.len();
    let mut mapping: Vec<(usize, usize)> = (0..n_cols).map(|p| (p, p)).collect();
    let old_rows = rows_of(&batches, &t, &mapping)?;
    mapping = assigned
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (n_cols + i, *p))
        .collect();
    let new_vals = rows_of(&batches, &t, &mapping)?;
    let mut written = Vec::new();
    let mut seen_keys = HashSet::new();
    for (old, changes) in old_rows.into_iter().zip(new_vals) {
        let old: Vec<ScalarValue> = old.into_iter().map(|(_, v)| v).collect();
        let old_key = codec::primary_key(&t, &old)?;
        // A row joined to several FROM rows is updated once, as in PostgreSQL.
        if !seen_keys.insert(old_key.clone()) {
            continue;
        }
        let mut new = old.clone();
        for (pos, v) in changes {
            new[pos] = check_value(&t, pos, v)?;
        }
        let new_key = codec::primary_key(&t, &new)?;
        crate::foreign_key::check_children(session, &t, &old, Some(&new))?;
        delete_row(session, &t, &old)?;
        if new_key != old_key {
            seen_keys.insert(new_key.clone());
        }
        write_new_row(session, &t, &new, false)?;
        written.push(new);
    }
    let tag = format!("UPDATE {}", written.len());
    match &upd.returning {
        Some(items) => returning(session, &t, &alias, items, written, tag).await,
        None => Ok(Output::Command(tag)),
    }
}

/// DELETE.
pub async fn delete(session: &mut Session, catalog: &Catalog, del: &ast::Delete) -> Result<Output> {
    let from = match &del.from {
        ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
    };
    if from.len() != 1 || !from[0].joins.is_empty() {
        return Err(Error::unsupported("DELETE from several tables"));
    }
    let (name, alias) = target_of(&from[0].relation)?;
    let t = catalog.table(&name)?.clone();
    let alias = alias.unwrap_or_else(|| t.name.clone());
    let mut sql = format!(
        "SELECT {} FROM {DML_TARGET} AS {}",
        all_columns(&t, &alias).join(", "),
        quote(&alias)
    );
    if let Some(using) = &del.using {
        for u in using {
            sql.push_str(&format!(", {u}"));
        }
    }
    if let Some(w) = &del.selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    register_target(session, &t)?;
    let r = session.query_sql(&sql).await;
    session.ctx.deregister_table(DML_TARGET)?;
    let (_, batches) = r?;
    let mapping: Vec<(usize, usize)> = (0..t.columns.len()).map(|p| (p, p)).collect();
    let mut deleted = Vec::new();
    let mut seen = HashSet::new();
    for row in rows_of(&batches, &t, &mapping)? {
        let row: Vec<ScalarValue> = row.into_iter().map(|(_, v)| v).collect();
        if seen.insert(codec::primary_key(&t, &row)?) {
            crate::foreign_key::check_children(session, &t, &row, None)?;
            delete_row(session, &t, &row)?;
            deleted.push(row);
        }
    }
    let tag = format!("DELETE {}", deleted.len());
    match &del.returning {
        Some(items) => returning(session, &t, &alias, items, deleted, tag).await,
        None => Ok(Output::Command(tag)),
    }
}
