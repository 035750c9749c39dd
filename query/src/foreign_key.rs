//! Foreign keys: declared with `REFERENCES` or `FOREIGN KEY (...) REFERENCES t (...)`
//! (in CREATE TABLE or ALTER TABLE ... ADD CONSTRAINT), and enforced on every write.
//!
//! ## Rules
//!
//! - The referenced columns are the referenced table's primary key, or columns with a
//!   unique index on exactly them (42830 otherwise).
//! - Writing a row whose key columns are all non-null requires the referenced row to
//!   exist (23503 otherwise). The lookup is a tracked read of the transaction, so a
//!   concurrent delete of that row conflicts with it: serializability keeps the
//!   reference valid.
//! - Deleting a referenced row, or changing its referenced columns, fails (23503) while
//!   a referencing row exists (the `NO ACTION` / `RESTRICT` behaviour; `CASCADE` and
//!   `SET NULL` are not built). The search uses an index of the referencing table that
//!   starts with the key columns when there is one, else scans it.
//! - Adding a constraint to a table checks the rows already there.
//! - A referenced table cannot be dropped while a table outside the same DROP
//!   references it (2BP01).

use std::collections::{BTreeSet, HashSet};

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast;
use tessera_storage::keycode::prefix_end;

use crate::catalog::{Catalog, ForeignKeyDesc, IndexDesc, TableDesc};
use crate::codec;
use crate::dml::ident;
use crate::error::{Error, Result, SqlState};
use crate::session::Session;

/// Build a constraint of `child` from its declaration. `columns` are the referencing
/// column names (the column itself for a column-level `REFERENCES`); `parent` is the
/// referenced table (`child` itself for a self-reference).
pub(crate) fn resolve(
    child: &TableDesc,
    columns: &[String],
    fk: &ast::ForeignKeyConstraint,
    parent: &TableDesc,
) -> Result<ForeignKeyDesc> {
    for action in [&fk.on_delete, &fk.on_update].into_iter().flatten() {
        if !matches!(
            action,
            ast::ReferentialAction::NoAction | ast::ReferentialAction::Restrict
        ) {
            return Err(Error::unsupported(format!("foreign key action {action}")));
        }
    }
    let col_ids = columns
        .iter()
        .map(|n| {
            child
                .column(n)
                .filter(|c| !c.hidden)
                .map(|c| c.id)
                .ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedColumn,
                        format!(
                            "column \"{n}\" referenced in foreign key constraint does not exist"
                        ),
                    )
                })
        })
        .collect::<Result<Vec<u32>>>()?;
    let ref_ids: Vec<u32> = if fk.referred_columns.is_empty() {
        if parent.has_rowid() {
            return Err(Error::new(
                SqlState::InvalidForeignKey,
                format!(
                    "there is no primary key for referenced table \"{}\"",
                    parent.name
                ),
            ));
        }
        parent.primary.columns.iter().map(|(id, _)| *id).collect()
    } else {
        fk.referred_columns
            .iter()
            .map(|i| {
                let n = ident(i);
                parent.column(&n).map(|c| c.id).ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedColumn,
                        format!(
                            "column \"{n}\" referenced in foreign key constraint does not exist"
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if col_ids.len() != ref_ids.len() {
        return Err(Error::new(
            SqlState::InvalidForeignKey,
            "number of referencing and referenced columns for foreign key disagree",
        ));
    }
    if unique_index(parent, &ref_ids).is_none() {
        return Err(Error::new(
            SqlState::InvalidForeignKey,
            format!(
                "there is no unique constraint matching given keys for referenced table \"{}\"",
                parent.name
            ),
        ));
    }
    let name = fk
        .name
        .as_ref()
        .map(ident)
        .unwrap_or_else(|| format!("{}_{}_fkey", child.name, columns.join("_")));
    Ok(ForeignKeyDesc {
        name,
        columns: col_ids,
        table: parent.id,
        ref_columns: ref_ids,
    })
}

/// The primary or unique index of `t` on exactly `cols` (in any order).
fn unique_index<'a>(t: &'a TableDesc, cols: &[u32]) -> Option<&'a IndexDesc> {
    let same = |i: &IndexDesc| {
        i.columns.len() == cols.len()
            && cols.iter().all(|c| i.columns.iter().any(|(id, _)| id == c))
    };
    (!t.has_rowid() && same(&t.primary))
        .then_some(&t.primary)
        .or_else(|| t.indexes.iter().find(|i| i.unique && same(i)))
}

fn values(t: &TableDesc, row: &[ScalarValue], cols: &[u32]) -> Option<Vec<ScalarValue>> {
    let v: Vec<ScalarValue> = cols
        .iter()
        .map(|id| row[t.position(*id).expect("column")].clone())
        .collect();
    (!v.iter().any(|x| x.is_null())).then_some(v)
}

fn describe(t: &TableDesc, cols: &[u32], vals: &[ScalarValue]) -> String {
    let names: Vec<&str> = cols
        .iter()
        .filter_map(|id| t.column_by_id(*id))
        .map(|c| c.name.as_str())
        .collect();
    let vals: Vec<String> = vals.iter().map(crate::json::display_scalar).collect();
    format!("Key ({})=({})", names.join(", "), vals.join(", "))
}

/// The primary key of the row of `parent` whose primary key columns (`index`, in its
/// own column order) are `ordered`.
fn parent_primary_key(
    parent: &TableDesc,
    index: &IndexDesc,
    ordered: &[ScalarValue],
) -> Result<Vec<u8>> {
    let mut row: Vec<ScalarValue> = parent
        .columns
        .iter()
        .map(|c| ScalarValue::try_from(&c.ty.arrow()).unwrap_or(ScalarValue::Null))
        .collect();
    for ((id, _), v) in index.columns.iter().zip(ordered) {
        row[parent.position(*id).expect("column")] = v.clone();
    }
    codec::primary_key(parent, &row)
}

/// `vals` (in `ref_cols` order) in `index`'s own column order.
fn in_index_order(index: &IndexDesc, ref_cols: &[u32], vals: &[ScalarValue]) -> Vec<ScalarValue> {
    index
        .columns
        .iter()
        .map(|(id, _)| vals[ref_cols.iter().position(|c| c == id).expect("column")].clone())
        .collect()
}

/// Whether `parent` holds a row with `ref_cols` = `vals`.
fn parent_has(
    session: &Session,
    parent: &TableDesc,
    ref_cols: &[u32],
    vals: &[ScalarValue],
) -> Result<bool> {
    let index = unique_index(parent, ref_cols).ok_or_else(|| {
        Error::internal(format!(
            "no unique index of \"{}\" for a foreign key",
            parent.name
        ))
    })?;
    let ordered = in_index_order(index, ref_cols, vals);
    if std::ptr::eq(index, &parent.primary) {
        let key = parent_primary_key(parent, index, &ordered)?;
        return session.slot.with(|txn| Ok(txn.get(&key)?.is_some()));
    }
    let prefix = codec::index_prefix(parent, index, &ordered)?;
    let end = prefix_end(&prefix).expect("bounded");
    session
        .slot
        .with(|txn| Ok(!txn.scan(&prefix, Some(&end), 1)?.is_empty()))
}

/// The table `fk` of `t` refers to.
fn parent_of<'a>(
    t: &'a TableDesc,
    fk: &ForeignKeyDesc,
    catalog: &'a Catalog,
) -> Result<&'a TableDesc> {
    if fk.table == t.id {
        return Ok(t);
    }
    catalog
        .table_by_id(fk.table)
        .map(|p| &**p)
        .ok_or_else(|| Error::internal("a foreign key names a table that is gone"))
}

/// [`check_parents`] for each of `rows` (already written: the transaction's own writes
/// count), in row order. References by a parent's primary key are read together, one
/// read per tablet instead of one per row and reference (each a tracked read, as the
/// row-by-row lookup is); others are looked up row by row. An error comes with the
/// index of its row.
pub(crate) fn check_parents_of_rows(
    session: &Session,
    t: &TableDesc,
    rows: &[Vec<ScalarValue>],
) -> std::result::Result<(), (usize, Error)> {
    if t.foreign_keys.is_empty() {
        return Ok(());
    }
    let catalog = session.seq.catalog.lock().clone();
    // Per reference, the parent key of each row when the reference is by primary key.
    let mut by_key: Vec<Option<Vec<Option<Vec<u8>>>>> = Vec::new();
    let mut wanted = BTreeSet::new();
    for fk in &t.foreign_keys {
        let parent = parent_of(t, fk, &catalog).map_err(|e| (0, e))?;
        let index = unique_index(parent, &fk.ref_columns)
            .filter(|index| std::ptr::eq(*index, &parent.primary));
        let Some(index) = index else {
            by_key.push(None);
            continue;
        };
        let mut keys = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let key = match values(t, row, &fk.columns) {
                Some(vals) => {
                    let ordered = in_index_order(index, &fk.ref_columns, &vals);
                    Some(parent_primary_key(parent, index, &ordered).map_err(|e| (i, e))?)
                }
                None => None,
            };
            wanted.extend(key.clone());
            keys.push(key);
        }
        by_key.push(Some(keys));
    }
    let wanted: Vec<Vec<u8>> = wanted.into_iter().collect();
    let found: HashSet<Vec<u8>> = if wanted.is_empty() {
        HashSet::new()
    } else {
        let values = session
            .slot
            .with(|txn| Ok(txn.get_many(&wanted)?))
            .map_err(|e| (0, e))?;
        wanted
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|_| k))
            .collect()
    };
    for (i, row) in rows.iter().enumerate() {
        for (fk, keys) in t.foreign_keys.iter().zip(&by_key) {
            let parent = parent_of(t, fk, &catalog).map_err(|e| (i, e))?;
            match keys.as_ref().map(|keys| &keys[i]) {
                Some(Some(key)) if !found.contains(key) => {
                    let vals = values(t, row, &fk.columns).expect("a key was made of them");
                    return Err((i, violation(t, fk, parent, &vals)));
                }
                Some(_) => {}
                None => check_reference(session, t, row, fk, parent).map_err(|e| (i, e))?,
            }
        }
    }
    Ok(())
}

/// Before writing `row` into `t`: every reference it makes must exist.
pub(crate) fn check_parents(session: &Session, t: &TableDesc, row: &[ScalarValue]) -> Result<()> {
    if t.foreign_keys.is_empty() {
        return Ok(());
    }
    let catalog = session.seq.catalog.lock().clone();
    for fk in &t.foreign_keys {
        let parent = parent_of(t, fk, &catalog)?;
        check_reference(session, t, row, fk, parent)?;
    }
    Ok(())
}

/// The row `fk` of `row` refers to must exist in `parent` (when its key is not null).
fn check_reference(
    session: &Session,
    t: &TableDesc,
    row: &[ScalarValue],
    fk: &ForeignKeyDesc,
    parent: &TableDesc,
) -> Result<()> {
    let Some(vals) = values(t, row, &fk.columns) else {
        return Ok(());
    };
    if parent_has(session, parent, &fk.ref_columns, &vals)? {
        return Ok(());
    }
    Err(violation(t, fk, parent, &vals))
}

/// The error for a row of `t` whose `fk` columns `vals` name no row of `parent`.
fn violation(
    t: &TableDesc,
    fk: &ForeignKeyDesc,
    parent: &TableDesc,
    vals: &[ScalarValue],
) -> Error {
    Error::new(
        SqlState::ForeignKeyViolation,
        format!(
            "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
            t.name, fk.name
        ),
    )
    .with_detail(format!(
        "{} is not present in table \"{}\".",
        describe(t, &fk.columns, vals),
        parent.name
    ))
    .with_table(&t.name)
    .with_constraint(&fk.name)
}

/// Whether `child` has a row with `cols` = `vals`.
fn child_has(
    session: &Session,
    child: &TableDesc,
    cols: &[u32],
    vals: &[ScalarValue],
) -> Result<bool> {
    // An index that starts with the key columns answers with one seek.
    let leading = child.all_indexes().find(|i| {
        i.columns.len() >= cols.len()
            && i.columns[..cols.len()]
                .iter()
                .all(|(id, _)| cols.contains(id))
            && !(std::ptr::eq(*i, &child.primary) && child.has_rowid())
    });
    if let Some(index) = leading {
        let ordered: Vec<ScalarValue> = index.columns[..cols.len()]
            .iter()
            .map(|(id, _)| vals[cols.iter().position(|c| c == id).expect("column")].clone())
            .collect();
        let prefix = codec::index_prefix(child, index, &ordered)?;
        let end = prefix_end(&prefix).expect("bounded");
        return session
            .slot
            .with(|txn| Ok(!txn.scan(&prefix, Some(&end), 1)?.is_empty()));
    }
    let mut found = false;
    crate::ddl::for_each_row(session, child, |row| {
        found = values(child, &row, cols).is_some_and(|r| r == vals);
        Ok(!found)
    })?;
    Ok(found)
}

/// Before deleting `old` from `t` (or replacing it by `new`): no row may still refer to
/// the values that go away.
pub(crate) fn check_children(
    session: &Session,
    t: &TableDesc,
    old: &[ScalarValue],
    new: Option<&[ScalarValue]>,
) -> Result<()> {
    let catalog = session.seq.catalog.lock().clone();
    for child in catalog.tables.values() {
        let child: &TableDesc = if child.id == t.id { t } else { child };
        for fk in child.foreign_keys.iter().filter(|f| f.table == t.id) {
            let Some(vals) = values(t, old, &fk.ref_columns) else {
                continue;
            };
            if new.is_some_and(|n| values(t, n, &fk.ref_columns).as_deref() == Some(&vals)) {
                continue;
            }
            if child_has(session, child, &fk.columns, &vals)? {
                return Err(Error::new(
                    SqlState::ForeignKeyViolation,
                    format!(
                        "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                        t.name, fk.name, child.name
                    ),
                )
                .with_detail(format!(
                    "{} is still referenced from table \"{}\".",
                    describe(t, &fk.ref_columns, &vals),
                    child.name
                ))
                .with_table(&child.name)
                .with_constraint(&fk.name));
            }
        }
    }
    Ok(())
}

/// ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY on `t`: the rows already there must
/// satisfy it.
pub(crate) fn add_constraint(
    session: &Session,
    catalog: &Catalog,
    t: &mut TableDesc,
    fk: &ast::ForeignKeyConstraint,
) -> Result<()> {
    let cols: Vec<String> = fk.columns.iter().map(ident).collect();
    let parent_name = crate::dml::object_name(&fk.foreign_table);
    let self_reference = parent_name == t.name;
    let parent = if self_reference {
        t.clone()
    } else {
        (**catalog.table(&parent_name)?).clone()
    };
    let desc = resolve(t, &cols, fk, &parent)?;
    if t.foreign_keys.iter().any(|f| f.name == desc.name) {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!(
                "constraint \"{}\" for relation \"{}\" already exists",
                desc.name, t.name
            ),
        ));
    }
    crate::ddl::for_each_row(session, t, |row| {
        check_reference(session, t, &row, &desc, &parent)?;
        Ok(true)
    })?;
    t.foreign_keys.push(desc);
    Ok(())
}

/// Tables outside `dropping` (a DROP or TRUNCATE list) whose foreign keys reference `t`.
pub(crate) fn referencing<'a>(
    catalog: &'a Catalog,
    t: &TableDesc,
    dropping: &[String],
) -> Vec<&'a str> {
    catalog
        .tables
        .values()
        .filter(|c| c.id != t.id && !dropping.contains(&c.name))
        .filter(|c| c.foreign_keys.iter().any(|f| f.table == t.id))
        .map(|c| c.name.as_str())
        .collect()
}
