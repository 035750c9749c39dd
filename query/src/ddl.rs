//! Schema changes: CREATE/DROP TABLE, CREATE/DROP INDEX, ALTER TABLE, TRUNCATE,
//! CREATE/DROP SEQUENCE.
//!
//! Every change is a write of descriptors through the session's transaction, so it
//! commits or rolls back with the data written beside it. Index creation backfills
//! from the table's rows in the same transaction; ADD PRIMARY KEY rewrites the rows
//! under their new keys. TRUNCATE gives every index of the table fresh ids (new key
//! prefixes), so it costs the same for any table size. Left out for now: reclaiming the
//! key spans of dropped or truncated tables (they are unreachable but stay on disk),
//! CHECK constraints and foreign keys (refused with 0A000).

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{self, ColumnOption, Statement, TableConstraint};
use tessera_storage::keycode::{prefix_end, KeyKind};

use crate::catalog::{
    Catalog, CatalogWriter, ColumnDesc, Descriptor, IndexDesc, SequenceDesc, TableDesc,
    PRIMARY_INDEX_ID,
};
use crate::codec;
use crate::dml::{ident, object_name};
use crate::error::{Error, Result, SqlState};
use crate::session::{Output, Session};
use crate::types::SqlType;

/// Run a DDL statement.
pub async fn execute(session: &mut Session, catalog: &Catalog, stmt: &Statement) -> Result<Output> {
    match stmt {
        Statement::CreateTable(ct) => create_table(session, catalog, ct),
        Statement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => drop(session, catalog, *object_type, *if_exists, names),
        Statement::CreateIndex(ci) => create_index(session, catalog, ci),
        Statement::AlterTable(at) => alter_table(session, catalog, at).await,
        Statement::Truncate(tr) => truncate(session, catalog, tr),
        Statement::CreateSequence {
            if_not_exists,
            name,
            sequence_options,
            ..
        } => crate::sequence::create_sequence(
            session,
            catalog,
            *if_not_exists,
            name,
            sequence_options,
        ),
        other => Err(Error::unsupported(format!(
            "statement {}",
            crate::session::statement_name(other)
        ))),
    }
}

/// Run `f` with a catalog writer over the session's transaction, then give the tables
/// it wrote their own tablets ([`crate::ranges::place`]).
pub(crate) fn with_writer<R>(
    session: &Session,
    f: impl FnOnce(&mut CatalogWriter<'_>) -> Result<R>,
) -> Result<R> {
    let (out, splits) = session.slot.with(|txn| {
        let mut w = CatalogWriter::new(txn);
        let out = f(&mut w)?;
        Ok((out, w.splits().to_vec()))
    })?;
    crate::ranges::place(session.node.db.store(), &splits);
    Ok(out)
}

pub(crate) fn already_exists(name: &str) -> Error {
    Error::new(
        SqlState::DuplicateTable,
        format!("relation \"{name}\" already exists"),
    )
}

fn index_columns(t: &TableDesc, cols: &[ast::IndexColumn]) -> Result<Vec<(u32, bool)>> {
    cols.iter()
        .map(|c| {
            let name = match &c.column.expr {
                ast::Expr::Identifier(i) => ident(i),
                other => return Err(Error::unsupported(format!("index on expression {other}"))),
            };
            let col = t.column(&name).filter(|c| !c.hidden).ok_or_else(|| {
                Error::new(
                    SqlState::UndefinedColumn,
                    format!("column \"{name}\" does not exist"),
                )
            })?;
            if !col.ty.keyable() {
                return Err(Error::unsupported(format!(
                    "an index on column \"{name}\" of type {}",
                    col.ty.pg_name()
                )));
            }
            Ok((col.id, c.column.options.asc == Some(false)))
        })
        .collect()
}

/// A column from its definition: the column, and whether it is a primary key, unique,
/// and serial. `REFERENCES` options are left to the caller when `references` is set.
fn new_column(
    id: u32,
    def: &ast::ColumnDef,
    table: &str,
    references: bool,
) -> Result<(ColumnDesc, bool, bool, bool)> {
    let name = ident(&def.name);
    let (ty, serial) = SqlType::from_ast(&def.data_type, &name)?;
    let mut col = ColumnDesc {
        id,
        name: name.clone(),
        ty,
        nullable: true,
        default: None,
        missing: None,
        hidden: false,
    };
    let (mut pk, mut unique, mut identity) = (false, false, false);
    for opt in &def.options {
        match &opt.option {
            ColumnOption::Null => col.nullable = true,
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Default(e) => col.default = Some(e.to_string()),
            ColumnOption::PrimaryKey(_) => pk = true,
            ColumnOption::Unique(_) => unique = true,
            ColumnOption::Generated { .. } => identity = true,
            ColumnOption::Check(_) => return Err(Error::unsupported("CHECK constraints")),
            ColumnOption::ForeignKey(_) if references => {}
            ColumnOption::ForeignKey(_) => {
                return Err(Error::unsupported(
                    "REFERENCES in ALTER TABLE ... ADD COLUMN",
                ))
            }
            other => {
                return Err(Error::unsupported(format!(
                    "column option {other} (column \"{name}\" of \"{table}\")"
                )))
            }
        }
    }
    if pk {
        col.nullable = false;
    }
    Ok((col, pk, unique, serial || identity))
}

fn create_table(session: &mut Session, catalog: &Catalog, ct: &ast::CreateTable) -> Result<Output> {
    let name = object_name(&ct.name);
    if catalog.relation_exists(&name) {
        if ct.if_not_exists {
            session.notice(format!("relation \"{name}\" already exists, skipping"));
            return Ok(Output::Command("CREATE TABLE".into()));
        }
        return Err(already_exists(&name));
    }
    if ct.query.is_some() {
        return Err(Error::unsupported("CREATE TABLE ... AS"));
    }
    let mut columns = Vec::new();
    let mut pk_cols: Option<Vec<ast::IndexColumn>> = None;
    let mut uniques: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut serials = Vec::new();
    let mut fks: Vec<(Vec<String>, ast::ForeignKeyConstraint)> = Vec::new();
    for (i, def) in ct.columns.iter().enumerate() {
        let (col, pk, unique, serial) = new_column(i as u32 + 1, def, &name, true)?;
        for opt in &def.options {
            if let ColumnOption::ForeignKey(fk) = &opt.option {
                fks.push((vec![col.name.clone()], fk.clone()));
            }
        }
        if columns.iter().any(|c: &ColumnDesc| c.name == col.name) {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{}\" specified more than once", col.name),
            ));
        }
        if pk {
            if pk_cols.is_some() {
                return Err(Error::new(
                    SqlState::InvalidTableDefinition,
                    format!("multiple primary keys for table \"{name}\" are not allowed"),
                ));
            }
            pk_cols = Some(vec![index_col(&col.name)]);
        }
        if unique {
            uniques.push((None, vec![col.name.clone()]));
        }
        if serial {
            serials.push(col.name.clone());
        }
        columns.push(col);
    }
    for c in &ct.constraints {
        match c {
            TableConstraint::PrimaryKey(pkc) => {
                if pk_cols.is_some() {
                    return Err(Error::new(
                        SqlState::InvalidTableDefinition,
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                pk_cols = Some(pkc.columns.clone());
            }
            TableConstraint::Unique(u) => {
                let cols = u
                    .columns
                    .iter()
                    .map(|c| match &c.column.expr {
                        ast::Expr::Identifier(i) => Ok(ident(i)),
                        other => Err(Error::unsupported(format!("UNIQUE on expression {other}"))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                uniques.push((u.name.as_ref().map(ident), cols));
            }
            TableConstraint::Check(_) => return Err(Error::unsupported("CHECK constraints")),
            TableConstraint::ForeignKey(fk) => {
                fks.push((fk.columns.iter().map(ident).collect(), fk.clone()));
            }
            other => return Err(Error::unsupported(format!("table constraint {other}"))),
        }
    }
    let mut t = TableDesc {
        id: 0,
        name: name.clone(),
        next_column_id: columns.len() as u32 + 1,
        columns,
        primary: IndexDesc {
            id: PRIMARY_INDEX_ID,
            name: format!("{name}_pkey"),
            columns: vec![],
            unique: true,
            constraint: true,
        },
        indexes: Vec::new(),
        next_index_id: PRIMARY_INDEX_ID + 1,
        foreign_keys: Vec::new(),
    };
    match pk_cols {
        Some(cols) => {
            t.primary.columns = index_columns(&t, &cols)?;
            for (id, _) in t.primary.columns.clone() {
                let pos = t.position(id).expect("column");
                t.columns[pos].nullable = false;
            }
        }
        None => add_rowid(&mut t),
    }
    for (cname, cols) in uniques {
        let idx_cols = index_columns(&t, &cols.iter().map(|c| index_col(c)).collect::<Vec<_>>())?;
        let iname = cname.unwrap_or_else(|| format!("{name}_{}_key", cols.join("_")));
        let id = t.next_index_id;
        t.next_index_id += 1;
        t.indexes.push(IndexDesc {
            id,
            name: iname,
            columns: idx_cols,
            unique: true,
            constraint: true,
        });
    }
    with_writer(session, |w| {
        t.id = w.allocate_id()?;
        for (cols, fk) in &fks {
            let parent_name = object_name(&fk.foreign_table);
            let desc = if parent_name == name {
                crate::foreign_key::resolve(&t, cols, fk, &t)?
            } else {
                crate::foreign_key::resolve(&t, cols, fk, catalog.table(&parent_name)?)?
            };
            t.foreign_keys.push(desc);
        }
        for col_name in &serials {
            let seq_name = format!("{name}_{col_name}_seq");
            let pos = t
                .columns
                .iter()
                .position(|c| &c.name == col_name)
                .expect("column");
            let max = match t.columns[pos].ty {
                SqlType::Int2 => i16::MAX as i64,
                SqlType::Int4 => i32::MAX as i64,
                _ => i64::MAX,
            };
            let seq = SequenceDesc {
                id: w.allocate_id()?,
                name: seq_name.clone(),
                start: 1,
                increment: 1,
                min: 1,
                max,
                owned_by: Some((t.id, t.columns[pos].id)),
            };
            t.columns[pos].default = Some(format!("nextval('{seq_name}')"));
            t.columns[pos].nullable = false;
            w.put(&Descriptor::Sequence(seq))?;
        }
        w.put(&Descriptor::Table(t.clone()))
    })?;
    Ok(Output::Command("CREATE TABLE".into()))
}

fn add_rowid(t: &mut TableDesc) {
    let id = t.next_column_id;
    t.next_column_id += 1;
    t.columns.push(ColumnDesc {
        id,
        name: "rowid".into(),
        ty: SqlType::Int8,
        nullable: false,
        default: Some("unique_rowid()".into()),
        missing: None,
        hidden: true,
    });
    t.primary.columns = vec![(id, false)];
}

fn index_col(name: &str) -> ast::IndexColumn {
    ast::IndexColumn {
        column: ast::OrderByExpr {
            expr: ast::Expr::Identifier(ast::Ident::with_quote('"', name)),
            options: ast::OrderByOptions {
                asc: None,
                nulls_first: None,
            },
            with_fill: None,
        },
        operator_class: None,
    }
}

fn drop(
    session: &mut Session,
    catalog: &Catalog,
    kind: ast::ObjectType,
    if_exists: bool,
    names: &[ast::ObjectName],
) -> Result<Output> {
    let tag = match kind {
        ast::ObjectType::Table => "DROP TABLE",
        ast::ObjectType::Index => "DROP INDEX",
        ast::ObjectType::Sequence => "DROP SEQUENCE",
        other => return Err(Error::unsupported(format!("DROP {other}"))),
    };
    for n in names {
        let name = object_name(n);
        match kind {
            ast::ObjectType::Table => match catalog.tables.get(&name) {
                Some(t) => {
                    let dropping: Vec<String> = names.iter().map(object_name).collect();
                    let refs = crate::foreign_key::referencing(catalog, t, &dropping);
                    if let Some(child) = refs.first() {
                        return Err(Error::new(
                            SqlState::DependentObjectsStillExist,
                            format!("cannot drop table {name} because other objects depend on it"),
                        )
                        .with_detail(format!(
                            "a foreign key of table {child} references table {name}"
                        )));
                    }
                    let owned: Vec<Arc<SequenceDesc>> = catalog
                        .sequences
                        .values()
                        .filter(|s| s.owned_by.is_some_and(|(tid, _)| tid == t.id))
                        .cloned()
                        .collect();
                    with_writer(session, |w| {
                        for s in &owned {
                            w.delete(s.id)?;
                        }
                        w.delete(t.id)
                    })?;
                    for s in owned {
                        session.node.sequences.forget(s.id);
                    }
                }
                None if if_exists => {
                    session.notice(format!("table \"{name}\" does not exist, skipping"))
                }
                None => {
                    return Err(Error::new(
                        SqlState::UndefinedTable,
                        format!("table \"{name}\" does not exist"),
                    ))
                }
            },
            ast::ObjectType::Index => match catalog.index_owner(&name) {
                Some((t, idx)) => {
                    if idx.id == t.primary.id || idx.constraint {
                        return Err(Error::new(
                            SqlState::DependentObjectsStillExist,
                            format!("cannot drop index {name} because constraint {name} on table {} requires it", t.name),
                        ));
                    }
                    let mut nt = (**t).clone();
                    nt.indexes.retain(|i| i.name != name);
                    with_writer(session, |w| w.put(&Descriptor::Table(nt)))?;
                }
                None if if_exists => {
                    session.notice(format!("index \"{name}\" does not exist, skipping"))
                }
                None => {
                    return Err(Error::new(
                        SqlState::UndefinedObject,
                        format!("index \"{name}\" does not exist"),
                    ))
                }
            },
            _ => match catalog.sequences.get(&name) {
                Some(s) => {
                    with_writer(session, |w| w.delete(s.id))?;
                    session.node.sequences.forget(s.id);
                }
                None if if_exists => {
                    session.notice(format!("sequence \"{name}\" does not exist, skipping"))
                }
                None => {
                    return Err(Error::new(
                        SqlState::UndefinedTable,
                        format!("sequence \"{name}\" does not exist"),
                    ))
                }
            },
        }
    }
    Ok(Output::Command(tag.into()))
}

/// Every row of `t`, read through the transaction.
fn all_rows(session: &Session, t: &TableDesc) -> Result<Vec<Vec<ScalarValue>>> {
    let mut rows = Vec::new();
    for_each_row(session, t, |row| {
        rows.push(row);
        Ok(true)
    })?;
    Ok(rows)
}

/// Visit the rows of `t` in primary-key order, a page at a time, until `f` returns
/// `false`. The reads are the transaction's (tracked).
pub(crate) fn for_each_row(
    session: &Session,
    t: &TableDesc,
    mut f: impl FnMut(Vec<ScalarValue>) -> Result<bool>,
) -> Result<()> {
    let prefix = KeyKind::index_prefix(t.id, t.primary.id);
    let end = prefix_end(&prefix).expect("bounded");
    let mut start = prefix;
    loop {
        let page = session
            .slot
            .with(|txn| Ok(txn.scan(&start, Some(&end), 1024)?))?;
        for (k, v) in &page {
            if !f(codec::decode_row(t, k, v)?)? {
                return Ok(());
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == 1024 => start = [k.as_slice(), &[0]].concat(),
            _ => return Ok(()),
        }
    }
}

fn create_index(session: &mut Session, catalog: &Catalog, ci: &ast::CreateIndex) -> Result<Output> {
    let table = object_name(&ci.table_name);
    let t = catalog.table(&table)?;
    let cols = index_columns(t, &ci.columns)?;
    if ci.predicate.is_some() {
        return Err(Error::unsupported("partial indexes"));
    }
    let col_names: Vec<String> = cols
        .iter()
        .map(|(id, _)| t.column_by_id(*id).expect("column").name.clone())
        .collect();
    let name = match &ci.name {
        Some(n) => object_name(n),
        None => format!("{table}_{}_idx", col_names.join("_")),
    };
    if catalog.relation_exists(&name) {
        if ci.if_not_exists {
            session.notice(format!("relation \"{name}\" already exists, skipping"));
            return Ok(Output::Command("CREATE INDEX".into()));
        }
        return Err(already_exists(&name));
    }
    let mut nt = (**t).clone();
    let index = IndexDesc {
        id: nt.next_index_id,
        name,
        columns: cols,
        unique: ci.unique,
        constraint: false,
    };
    nt.next_index_id += 1;
    nt.indexes.push(index.clone());
    // Backfill, checking uniqueness as rows go in.
    let probe = TableDesc {
        indexes: vec![index.clone()],
        ..nt.clone()
    };
    for row in all_rows(session, t)? {
        session.slot.with(|txn| {
            let values: Vec<ScalarValue> = index
                .columns
                .iter()
                .map(|(id, _)| row[probe.position(*id).expect("col")].clone())
                .collect();
            if index.unique && values.iter().all(|v| !v.is_null()) {
                let p = codec::index_prefix(&probe, &index, &values)?;
                let e = prefix_end(&p).expect("bounded");
                if !txn.scan(&p, Some(&e), 1)?.is_empty() {
                    return Err(Error::new(
                        SqlState::UniqueViolation,
                        format!("could not create unique index \"{}\"", index.name),
                    )
                    .with_detail("Key is duplicated."));
                }
            }
            txn.put(codec::index_key(&probe, &index, &row)?, Vec::new())?;
            Ok(())
        })?;
    }
    with_writer(session, |w| w.put(&Descriptor::Table(nt)))?;
    Ok(Output::Command("CREATE INDEX".into()))
}

/// TRUNCATE: every named table gets new, empty key spans. A table referenced by a
/// foreign key may only be truncated together with its referencing tables, which
/// `CASCADE` adds (transitively), as in PostgreSQL.
fn truncate(session: &mut Session, catalog: &Catalog, tr: &ast::Truncate) -> Result<Output> {
    let mut tables = Vec::new();
    for target in &tr.table_names {
        tables.push(catalog.table(&object_name(&target.name))?.clone());
    }
    let cascade = matches!(tr.cascade, Some(ast::CascadeOption::Cascade));
    let mut i = 0;
    while i < tables.len() {
        let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        let others: Vec<String> = crate::foreign_key::referencing(catalog, &tables[i], &names)
            .into_iter()
            .map(String::from)
            .collect();
        for other in others {
            if !cascade {
                return Err(Error::new(
                    SqlState::FeatureNotSupported,
                    "cannot truncate a table referenced in a foreign key constraint",
                )
                .with_detail(format!(
                    "Table \"{other}\" references \"{}\".",
                    tables[i].name
                ))
                .with_hint(format!(
                    "Truncate table \"{other}\" at the same time, or use TRUNCATE ... CASCADE."
                ))
                .with_table(tables[i].name.clone()));
            }
            tables.push(catalog.table(&other)?.clone());
        }
        i += 1;
    }
    with_writer(session, |w| {
        for t in tables {
            let mut nt = (*t).clone();
            nt.primary.id = nt.next_index_id;
            nt.next_index_id += 1;
            for i in &mut nt.indexes {
                i.id = nt.next_index_id;
                nt.next_index_id += 1;
            }
            w.put(&Descriptor::Table(nt))?;
        }
        Ok(())
    })?;
    Ok(Output::Command("TRUNCATE TABLE".into()))
}

async fn alter_table(
    session: &mut Session,
    catalog: &Catalog,
    at: &ast::AlterTable,
) -> Result<Output> {
    let name = object_name(&at.name);
    let t = match catalog.tables.get(&name) {
        Some(t) => t.clone(),
        None if at.if_exists => {
            session.notice(format!("relation \"{name}\" does not exist, skipping"));
            return Ok(Output::Command("ALTER TABLE".into()));
        }
        None => {
            return Err(Error::new(
                SqlState::UndefinedTable,
                format!("relation \"{name}\" does not exist"),
            ))
        }
    };
    let mut nt = (*t).clone();
    for op in &at.operations {
        match op {
            ast::AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                ..
            } => {
                let cname = ident(&column_def.name);
                if nt.column(&cname).is_some() {
                    if *if_not_exists {
                        session.notice(format!(
                            "column \"{cname}\" of relation \"{name}\" already exists, skipping"
                        ));
                        continue;
                    }
                    return Err(Error::new(
                        SqlState::DuplicateColumn,
                        format!("column \"{cname}\" of relation \"{name}\" already exists"),
                    ));
                }
                let (mut col, pk, unique, serial) =
                    new_column(nt.next_column_id, column_def, &name, false)?;
                if pk || unique || serial {
                    return Err(Error::unsupported(
                        "ADD COLUMN with PRIMARY KEY, UNIQUE or SERIAL",
                    ));
                }
                nt.next_column_id += 1;
                // Existing rows read the default evaluated once now (or NULL).
                let value = match &col.default {
                    Some(d) => {
                        let (_, batches) = session
                            .query_sql(&format!("SELECT CAST(({d}) AS {}) AS v", cast_name(col.ty)))
                            .await?;
                        let b = batches
                            .first()
                            .ok_or_else(|| Error::internal("default produced no row"))?;
                        let a = crate::assign::cast_column(b.column(0), col.ty, &nt, &col.name)?;
                        Some(ScalarValue::try_from_array(&a, 0)?)
                    }
                    None => None,
                };
                let has_rows = !all_rows_limit1(session, &nt)?;
                if !col.nullable && value.as_ref().is_none_or(|v| v.is_null()) && has_rows {
                    return Err(Error::new(
                        SqlState::NotNullViolation,
                        format!("column \"{cname}\" of relation \"{name}\" contains null values"),
                    ));
                }
                if let Some(v) = value.filter(|v| !v.is_null()) {
                    col.missing = Some(codec::encode_single(&v, col.ty)?);
                }
                nt.columns.push(col);
            }
            ast::AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                for c in column_names {
                    let cname = ident(c);
                    let Some(col) = nt.column(&cname).filter(|c| !c.hidden).cloned() else {
                        if *if_exists {
                            session.notice(format!("column \"{cname}\" of relation \"{name}\" does not exist, skipping"));
                            continue;
                        }
                        return Err(Error::new(
                            SqlState::UndefinedColumn,
                            format!("column \"{cname}\" of relation \"{name}\" does not exist"),
                        ));
                    };
                    if nt.is_key_column(col.id) {
                        return Err(Error::unsupported(format!(
                            "dropping primary key column \"{cname}\""
                        )));
                    }
                    if nt
                        .indexes
                        .iter()
                        .any(|i| i.columns.iter().any(|(id, _)| *id == col.id))
                    {
                        return Err(Error::new(
                            SqlState::DependentObjectsStillExist,
                            format!(
                                "cannot drop column \"{cname}\" because an index depends on it"
                            ),
                        ));
                    }
                    nt.columns.retain(|c| c.id != col.id);
                }
            }
            ast::AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let (old, new) = (ident(old_column_name), ident(new_column_name));
                if nt.column(&new).is_some() {
                    return Err(Error::new(
                        SqlState::DuplicateColumn,
                        format!("column \"{new}\" of relation \"{name}\" already exists"),
                    ));
                }
                let col = nt
                    .columns
                    .iter_mut()
                    .find(|c| c.name == old && !c.hidden)
                    .ok_or_else(|| {
                        Error::new(
                            SqlState::UndefinedColumn,
                            format!("column \"{old}\" does not exist"),
                        )
                    })?;
                col.name = new;
            }
            ast::AlterTableOperation::RenameTable { table_name } => {
                let new = match table_name {
                    ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => {
                        object_name(n)
                    }
                };
                if catalog.relation_exists(&new) {
                    return Err(already_exists(&new));
                }
                nt.name = new;
            }
            ast::AlterTableOperation::AddConstraint {
                constraint: TableConstraint::PrimaryKey(pk),
                ..
            } => {
                if !nt.has_rowid() {
                    return Err(Error::new(
                        SqlState::InvalidTableDefinition,
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                // The rows move to new key spans (a new primary index id, new ids for the
                // secondary indexes, whose entries end with the primary key); the old
                // spans become unreachable, as after TRUNCATE, so nothing is deleted
                // row by row. The reads are tracked: a concurrent write to a row fails
                // this transaction's commit.
                let rows = all_rows(session, &nt)?;
                let rowid = nt.columns.iter().position(|c| c.hidden).expect("rowid");
                nt.columns.remove(rowid);
                nt.primary.columns = index_columns(&nt, &pk.columns)?;
                nt.primary.id = nt.next_index_id;
                nt.next_index_id += 1;
                for i in &mut nt.indexes {
                    i.id = nt.next_index_id;
                    nt.next_index_id += 1;
                }
                if let Some(n) = &pk.name {
                    nt.primary.name = ident(n);
                }
                for (id, _) in nt.primary.columns.clone() {
                    let pos = nt.position(id).expect("column");
                    nt.columns[pos].nullable = false;
                }
                for mut row in rows {
                    row.remove(rowid);
                    for (pos, v) in row.iter().enumerate() {
                        if v.is_null() && !nt.columns[pos].nullable {
                            return Err(Error::new(
                                SqlState::NotNullViolation,
                                format!(
                                    "column \"{}\" of relation \"{name}\" contains null values",
                                    nt.columns[pos].name
                                ),
                            ));
                        }
                    }
                    crate::row_write::write_new_row(session, &nt, &row, false)?;
                }
            }
            ast::AlterTableOperation::AddConstraint {
                constraint: TableConstraint::Unique(u),
                ..
            } => {
                let cols = index_columns(&nt, &u.columns)?;
                let names: Vec<String> = cols
                    .iter()
                    .map(|(id, _)| nt.column_by_id(*id).expect("col").name.clone())
                    .collect();
                let iname = u
                    .name
                    .as_ref()
                    .map(ident)
                    .unwrap_or_else(|| format!("{name}_{}_key", names.join("_")));
                let ci = ast::CreateIndex {
                    name: Some(ast::ObjectName::from(vec![ast::Ident::with_quote(
                        '"', iname,
                    )])),
                    table_name: ast::ObjectName::from(vec![ast::Ident::with_quote(
                        '"',
                        nt.name.clone(),
                    )]),
                    using: None,
                    columns: u.columns.clone(),
                    unique: true,
                    concurrently: false,
                    if_not_exists: false,
                    include: vec![],
                    nulls_distinct: None,
                    with: vec![],
                    predicate: None,
                    index_options: vec![],
                    alter_options: vec![],
                };
                // Write pending changes first, then reuse CREATE INDEX on them.
                with_writer(session, |w| w.put(&Descriptor::Table(nt.clone())))?;
                let fresh = session.sync_catalog()?;
                create_index(session, &fresh, &ci)?;
                let fresh = session.sync_catalog()?;
                nt = (**fresh.table(&nt.name)?).clone();
                if let Some(i) = nt.indexes.last_mut() {
                    i.constraint = true;
                }
            }
            ast::AlterTableOperation::AddConstraint {
                constraint: TableConstraint::ForeignKey(fk),
                ..
            } => {
                crate::foreign_key::add_constraint(session, catalog, &mut nt, fk)?;
            }
            other => return Err(Error::unsupported(format!("ALTER TABLE {other}"))),
        }
    }
    with_writer(session, |w| w.put(&Descriptor::Table(nt)))?;
    Ok(Output::Command("ALTER TABLE".into()))
}

/// True when the table has no rows.
fn all_rows_limit1(session: &Session, t: &TableDesc) -> Result<bool> {
    let prefix = KeyKind::index_prefix(t.id, t.primary.id);
    let end = prefix_end(&prefix).expect("bounded");
    Ok(session
        .slot
        .with(|txn| Ok(txn.scan(&prefix, Some(&end), 1)?))?
        .is_empty())
}

/// A SQL type name DataFusion can cast to, close to `ty` (exact types follow in Rust).
fn cast_name(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Bool => "BOOLEAN",
        SqlType::Int2 => "SMALLINT",
        SqlType::Int4 => "INT",
        SqlType::Int8 => "BIGINT",
        SqlType::Float4 => "REAL",
        SqlType::Float8 => "DOUBLE",
        SqlType::Numeric(_) => "DECIMAL(38, 10)",
        SqlType::Date => "DATE",
        SqlType::Timestamp | SqlType::TimestampTz => "TIMESTAMP",
        SqlType::Interval => "INTERVAL",
        SqlType::Bytea => "BYTEA",
        _ => "VARCHAR",
    }
}
