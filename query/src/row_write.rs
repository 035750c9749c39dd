//! Checking and writing rows: each value against its column (NOT NULL, lengths,
//! padding), a new row against the primary key and every unique index, then the row
//! and its index entries through the session's transaction.
//!
//! - A row is written only once every check has passed: a row refused (or skipped, by
//!   ON CONFLICT DO NOTHING) for its second unique index leaves nothing in its first.
//! - The primary keys of many new rows, and the parent rows their foreign keys name,
//!   are looked up together ([`write_new_rows`]): one read per tablet and batch instead
//!   of one per row, with the same answers as row by row.
//! - The foreign keys of the rows of an INSERT (or of one batch of COPY rows) are
//!   checked once all of them are written, as PostgreSQL checks them at the end of the
//!   statement: a row may name a parent that a later row inserts. A row written alone
//!   (an upsert, an UPDATE) is checked as it is written; a row skipped by ON CONFLICT
//!   DO NOTHING is not checked at all.
//! - Uniqueness checks do not record reads (the rows are written, and the write-write
//!   check at commit covers them); a row skipped because it exists is read and
//!   recorded, as its absence would change the outcome.

use std::collections::HashSet;

use datafusion::common::ScalarValue;

use crate::catalog::TableDesc;
use crate::codec;
use crate::error::{Error, Result, SqlState};
use crate::session::Session;
use crate::types::SqlType;

/// Check and normalise one value for its column (lengths, padding, uuid, jsonb).
pub(crate) fn check_value(t: &TableDesc, pos: usize, v: ScalarValue) -> Result<ScalarValue> {
    let col = &t.columns[pos];
    if v.is_null() {
        if !col.nullable {
            return Err(Error::new(
                SqlState::NotNullViolation,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    col.name, t.name
                ),
            )
            .with_table(&t.name)
            .with_column(&col.name));
        }
        return Ok(v);
    }
    let too_long = |n: u32| {
        Error::new(
            SqlState::StringDataRightTruncation,
            format!("value too long for type {}", col.ty.pg_name()),
        )
        .with_table(&t.name)
        .with_column(&col.name)
        .with_detail(format!(
            "column \"{}\" allows at most {n} characters",
            col.name
        ))
    };
    Ok(match (col.ty, v) {
        (SqlType::Varchar(Some(n)), ScalarValue::Utf8(Some(s))) => {
            if s.chars().count() > n as usize {
                let trimmed = s.trim_end_matches(' ');
                if trimmed.chars().count() > n as usize {
                    return Err(too_long(n));
                }
                ScalarValue::Utf8(Some(trimmed.chars().take(n as usize).collect()))
            } else {
                ScalarValue::Utf8(Some(s))
            }
        }
        (SqlType::Char(n), ScalarValue::Utf8(Some(s))) => ScalarValue::Utf8(Some(
            crate::bpchar::stored(&s, n).ok_or_else(|| too_long(n))?,
        )),
        (SqlType::Uuid, ScalarValue::Utf8(Some(s))) => ScalarValue::Utf8(Some(
            uuid::Uuid::from_bytes(codec::parse_uuid(&s)?)
                .hyphenated()
                .to_string(),
        )),
        (SqlType::Jsonb, ScalarValue::Utf8(Some(s))) => {
            let v: serde_json::Value = serde_json::from_str(&s).map_err(|e| {
                Error::new(
                    SqlState::InvalidTextRepresentation,
                    "invalid input syntax for type json",
                )
                .with_detail(e.to_string())
            })?;
            ScalarValue::Utf8(Some(crate::json::to_pg_text(&v)))
        }
        (SqlType::Float4 | SqlType::Float8, v) => v,
        (_, v) => v,
    })
}

fn describe_key(t: &TableDesc, cols: &[(u32, bool)], row: &[ScalarValue]) -> String {
    let names: Vec<&str> = cols
        .iter()
        .filter_map(|(id, _)| t.column_by_id(*id))
        .map(|c| c.name.as_str())
        .collect();
    let vals: Vec<String> = cols
        .iter()
        .filter_map(|(id, _)| t.position(*id))
        .map(|p| crate::json::display_scalar(&row[p]))
        .collect();
    format!(
        "Key ({})=({}) already exists.",
        names.join(", "),
        vals.join(", ")
    )
}

fn unique_violation(
    t: &TableDesc,
    index: &crate::catalog::IndexDesc,
    row: &[ScalarValue],
) -> Error {
    Error::new(
        SqlState::UniqueViolation,
        format!(
            "duplicate key value violates unique constraint \"{}\"",
            index.name
        ),
    )
    .with_detail(describe_key(t, &index.columns, row))
    .with_table(&t.name)
    .with_constraint(&index.name)
}

/// Write a new row and its index entries, checking uniqueness. `Ok(false)` when the
/// primary key already exists and `skip_existing` asked to skip it.
pub(crate) fn write_new_row(
    session: &Session,
    t: &TableDesc,
    row: &[ScalarValue],
    skip_existing: bool,
) -> Result<bool> {
    let key = codec::primary_key(t, row)?;
    // A row that is skipped is read, not written: record the read so that a change to
    // it conflicts with this transaction. A row that is written is covered by the
    // write-write check at commit.
    let existing = session.slot.with(|txn| {
        if skip_existing {
            txn.get(&key)
        } else {
            txn.get_for_write(&key)
        }
        .map_err(Error::from)
    })?;
    if existing.is_some() {
        if skip_existing {
            return Ok(false);
        }
        return Err(unique_violation(t, &t.primary, row));
    }
    write_row_with_free_key(session, t, row, key, skip_existing, true)
}

/// How many rows' primary keys [`write_new_rows`] looks up together.
const KEYS_PER_LOOKUP: usize = 1024;

/// [`write_new_row`] for each of `rows` in order (no skipping), with the primary keys
/// of up to [`KEYS_PER_LOOKUP`] rows, and the parent rows they refer to, looked up
/// together: one read per tablet instead of one per row. A key repeated within `rows`
/// is a violation at its second row, as it is row by row; foreign keys are checked
/// once every row is written. An error comes with the index of its row.
pub(crate) fn write_new_rows(
    session: &Session,
    t: &TableDesc,
    rows: &[Vec<ScalarValue>],
) -> std::result::Result<(), (usize, Error)> {
    for (chunk_no, chunk) in rows.chunks(KEYS_PER_LOOKUP).enumerate() {
        let first = chunk_no * KEYS_PER_LOOKUP;
        // Earlier chunks are written when this one is looked up, so the lookup sees
        // them; only this chunk's own repeats are caught here.
        let mut written = HashSet::new();
        let keys = chunk
            .iter()
            .enumerate()
            .map(|(i, row)| codec::primary_key(t, row).map_err(|e| (first + i, e)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let existing = session
            .slot
            .with(|txn| txn.get_many_for_write(&keys).map_err(Error::from))
            .map_err(|e| (first, e))?;
        for (i, ((row, key), existing)) in chunk.iter().zip(keys).zip(existing).enumerate() {
            if existing.is_some() || written.contains(&key) {
                return Err((first + i, unique_violation(t, &t.primary, row)));
            }
            written.insert(key.clone());
            write_row_with_free_key(session, t, row, key, false, false)
                .map_err(|e| (first + i, e))?;
        }
    }
    // Foreign keys once every row is in, as PostgreSQL checks them at the end of the
    // statement: a row may name a parent that a later row of the statement inserts.
    for (chunk_no, chunk) in rows.chunks(KEYS_PER_LOOKUP).enumerate() {
        let first = chunk_no * KEYS_PER_LOOKUP;
        crate::foreign_key::check_parents_of_rows(session, t, chunk)
            .map_err(|(i, e)| (first + i, e))?;
    }
    Ok(())
}

/// The rest of [`write_new_row`] once its primary key `key` is known to be free:
/// unique indexes, foreign keys (with `check_references`; otherwise the caller checks
/// them), then the row and its index entries.
fn write_row_with_free_key(
    session: &Session,
    t: &TableDesc,
    row: &[ScalarValue],
    key: Vec<u8>,
    skip_existing: bool,
    check_references: bool,
) -> Result<bool> {
    let value = codec::encode_row(t, row)?;
    // Every check passes before anything is written: a row skipped for its second
    // unique index leaves no entry in its first.
    let free = session.slot.with(|txn| {
        for index in t.indexes.iter().filter(|i| i.unique) {
            let values: Vec<ScalarValue> = index
                .columns
                .iter()
                .map(|(id, _)| row[t.position(*id).expect("index column")].clone())
                .collect();
            if values.iter().all(|v| !v.is_null()) {
                let prefix = codec::index_prefix(t, index, &values)?;
                let end = tessera_storage::keycode::prefix_end(&prefix).expect("bounded");
                if !txn.scan(&prefix, Some(&end), 1)?.is_empty() {
                    if skip_existing {
                        return Ok(false);
                    }
                    return Err(unique_violation(t, index, row));
                }
            }
        }
        Ok(true)
    })?;
    if !free {
        return Ok(false);
    }
    if check_references {
        crate::foreign_key::check_parents(session, t, row)?;
    }
    session.slot.with(|txn| {
        for index in &t.indexes {
            txn.put(codec::index_key(t, index, row)?, Vec::new())?;
        }
        txn.put(key, value)?;
        Ok(true)
    })
}

/// Remove a row and its index entries.
pub(crate) fn delete_row(session: &Session, t: &TableDesc, row: &[ScalarValue]) -> Result<()> {
    session.slot.with(|txn| {
        for index in &t.indexes {
            txn.delete(codec::index_key(t, index, row)?)?;
        }
        txn.delete(codec::primary_key(t, row)?)?;
        Ok(())
    })
}

/// A whole row of `t` from the values given for some of its columns (by position),
/// the others NULL; every value checked for its column.
pub(crate) fn complete(
    t: &TableDesc,
    partial: Vec<(usize, ScalarValue)>,
) -> Result<Vec<ScalarValue>> {
    let mut row: Vec<Option<ScalarValue>> = vec![None; t.columns.len()];
    for (pos, v) in partial {
        row[pos] = Some(check_value(t, pos, v)?);
    }
    row.into_iter()
        .enumerate()
        .map(|(pos, v)| match v {
            Some(v) => Ok(v),
            None => check_value(t, pos, ScalarValue::try_from(&t.columns[pos].ty.arrow())?),
        })
        .collect()
}

/// Complete each of `rows` and write it as new ([`write_new_rows`]), in order: the
/// first bad row fails, once the rows before it are checked, as they are one by one.
/// The rows written; an error comes with the index of its row.
pub(crate) fn insert_new_rows(
    session: &Session,
    t: &TableDesc,
    rows: Vec<Vec<(usize, ScalarValue)>>,
) -> std::result::Result<Vec<Vec<ScalarValue>>, (usize, Error)> {
    let mut complete_rows = Vec::with_capacity(rows.len());
    let mut bad = None;
    for (i, partial) in rows.into_iter().enumerate() {
        match complete(t, partial) {
            Ok(row) => complete_rows.push(row),
            Err(e) => {
                bad = Some((i, e));
                break;
            }
        }
    }
    write_new_rows(session, t, &complete_rows)?;
    match bad {
        Some(bad) => Err(bad),
        None => Ok(complete_rows),
    }
}
