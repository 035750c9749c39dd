//! `information_schema`: the SQL-standard views of the schema, derived from the same
//! catalog version as `pg_catalog`, with PostgreSQL 15's columns and spellings (type names
//! such as `character varying`, `YES`/`NO` flags, precisions and radixes), so that tools
//! that read the standard views see what PostgreSQL would show them.
//!
//! Everything lives in the database the client connected to and the schema `public`.
//! Views with nothing to show in tessera (views, routines, triggers) exist and are empty.

use datafusion::common::ScalarValue;

use super::tables::{i32v, null_text, table, text, Table};
use super::*;
use crate::catalog::Catalog;

fn yes_no(v: bool) -> ScalarValue {
    text(if v { "YES" } else { "NO" })
}

fn opt_i32(v: Option<i32>) -> ScalarValue {
    ScalarValue::Int32(v)
}

/// `data_type` of a column type: its name without modifiers.
fn data_type(ty: SqlType) -> String {
    match ty {
        SqlType::Numeric(_) => "numeric".into(),
        SqlType::Varchar(_) => "character varying".into(),
        SqlType::Char(_) => "character".into(),
        other => other.pg_name(),
    }
}

/// (character_maximum_length, character_octet_length) as PostgreSQL computes them for a
/// UTF-8 database.
fn char_lengths(ty: SqlType) -> (Option<i32>, Option<i32>) {
    const UNBOUNDED_OCTETS: i32 = 1_073_741_824;
    match ty {
        SqlType::Varchar(Some(n)) | SqlType::Char(n) => (Some(n as i32), Some(4 * n as i32)),
        SqlType::Varchar(None) | SqlType::Text => (None, Some(UNBOUNDED_OCTETS)),
        _ => (None, None),
    }
}

/// (numeric_precision, numeric_precision_radix, numeric_scale, datetime_precision).
fn precisions(ty: SqlType) -> [Option<i32>; 4] {
    match ty {
        SqlType::Int2 => [Some(16), Some(2), Some(0), None],
        SqlType::Int4 => [Some(32), Some(2), Some(0), None],
        SqlType::Int8 => [Some(64), Some(2), Some(0), None],
        SqlType::Float4 => [Some(24), Some(2), None, None],
        SqlType::Float8 => [Some(53), Some(2), None, None],
        SqlType::Numeric(Some((p, s))) => [Some(p as i32), Some(10), Some(s as i32), None],
        SqlType::Numeric(None) => [None, Some(10), None, None],
        SqlType::Date => [None, None, None, Some(0)],
        SqlType::Timestamp | SqlType::TimestampTz | SqlType::Interval => {
            [None, None, None, Some(6)]
        }
        _ => [None; 4],
    }
}

/// The `udt_name` of a column type (`pg_type.typname`).
fn udt_name(ty: SqlType) -> &'static str {
    let oid = type_oid(ty);
    TYPES
        .iter()
        .find(|t| t.0 == oid)
        .map(|t| t.1)
        .unwrap_or("text")
}

/// Every `information_schema` table for `catalog`, seen from `database`.
pub(super) fn tables(catalog: &Catalog, user: &str, database: &str) -> Vec<Table> {
    let db = || text(database);
    let public = || text("public");
    let mut tables = Vec::new();
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    let mut key_usage = Vec::new();
    let mut referential = Vec::new();
    let mut constraint_usage = Vec::new();
    let mut sequences = Vec::new();
    for t in catalog.tables.values() {
        tables.push(vec![
            db(),
            public(),
            text(&t.name),
            text("BASE TABLE"),
            null_text(),
            null_text(),
            null_text(),
            null_text(),
            null_text(),
            text("YES"),
            text("NO"),
            null_text(),
        ]);
        for (n, c) in t.visible_columns().enumerate() {
            let (max_len, octets) = char_lengths(c.ty);
            let [prec, radix, scale, dt_prec] = precisions(c.ty);
            let default = c
                .default
                .as_ref()
                .map_or_else(null_text, |d| text(&super::defaults::default_text(d, c.ty)));
            columns.push(vec![
                db(),
                public(),
                text(&t.name),
                text(&c.name),
                i32v(n as i32 + 1),
                default,
                yes_no(c.nullable),
                text(&data_type(c.ty)),
                opt_i32(max_len),
                opt_i32(octets),
                opt_i32(prec),
                opt_i32(radix),
                opt_i32(scale),
                opt_i32(dt_prec),
                null_text(),
                db(),
                text("pg_catalog"),
                text(udt_name(c.ty)),
                text(&(n + 1).to_string()),
                text("NO"),
                null_text(),
                text("NEVER"),
                text("YES"),
            ]);
        }
        let names = |ids: &mut dyn Iterator<Item = u32>| -> Vec<String> {
            ids.filter_map(|id| t.column_by_id(id).map(|c| c.name.clone()))
                .collect()
        };
        let mut push_constraint = |name: &str, kind: &str| {
            constraints.push(vec![
                db(),
                public(),
                text(name),
                db(),
                public(),
                text(&t.name),
                text(kind),
                text("NO"),
                text("NO"),
                text("YES"),
                text("YES"),
            ]);
        };
        let keyed: Vec<(&str, &str, Vec<String>)> = if t.has_rowid() {
            t.indexes
                .iter()
                .filter(|i| i.constraint)
                .map(|i| {
                    (
                        i.name.as_str(),
                        "UNIQUE",
                        names(&mut i.columns.iter().map(|c| c.0)),
                    )
                })
                .collect()
        } else {
            t.all_indexes()
                .filter(|i| std::ptr::eq(*i, &t.primary) || i.constraint)
                .map(|i| {
                    let kind = if std::ptr::eq(i, &t.primary) {
                        "PRIMARY KEY"
                    } else {
                        "UNIQUE"
                    };
                    (
                        i.name.as_str(),
                        kind,
                        names(&mut i.columns.iter().map(|c| c.0)),
                    )
                })
                .collect()
        };
        for (name, kind, cols) in &keyed {
            push_constraint(name, kind);
            for (pos, col) in cols.iter().enumerate() {
                key_usage.push(vec![
                    db(),
                    public(),
                    text(name),
                    db(),
                    public(),
                    text(&t.name),
                    text(col),
                    i32v(pos as i32 + 1),
                    opt_i32(None),
                ]);
                constraint_usage.push(vec![
                    db(),
                    public(),
                    text(&t.name),
                    text(col),
                    db(),
                    public(),
                    text(name),
                ]);
            }
        }
        for fk in &t.foreign_keys {
            let Some(parent) = catalog.table_by_id(fk.table) else {
                continue;
            };
            push_constraint(&fk.name, "FOREIGN KEY");
            let cols = names(&mut fk.columns.iter().copied());
            // The unique constraint the reference is checked against.
            let parent_key = parent
                .all_indexes()
                .filter(|i| {
                    (std::ptr::eq(*i, &parent.primary) && !parent.has_rowid()) || i.constraint
                })
                .find(|i| {
                    let mut a: Vec<u32> = i.columns.iter().map(|c| c.0).collect();
                    let mut b = fk.ref_columns.clone();
                    a.sort_unstable();
                    b.sort_unstable();
                    a == b
                });
            for (pos, col) in cols.iter().enumerate() {
                let ref_pos = parent_key.and_then(|k| {
                    k.columns
                        .iter()
                        .position(|c| Some(c.0) == fk.ref_columns.get(pos).copied())
                });
                key_usage.push(vec![
                    db(),
                    public(),
                    text(&fk.name),
                    db(),
                    public(),
                    text(&t.name),
                    text(col),
                    i32v(pos as i32 + 1),
                    opt_i32(ref_pos.map(|p| p as i32 + 1)),
                ]);
            }
            for id in &fk.ref_columns {
                if let Some(c) = parent.column_by_id(*id) {
                    constraint_usage.push(vec![
                        db(),
                        public(),
                        text(&parent.name),
                        text(&c.name),
                        db(),
                        public(),
                        text(&fk.name),
                    ]);
                }
            }
            referential.push(vec![
                db(),
                public(),
                text(&fk.name),
                parent_key.map_or_else(null_text, |_| db()),
                parent_key.map_or_else(null_text, |_| public()),
                parent_key.map_or_else(null_text, |k| text(&k.name)),
                text("NONE"),
                text("NO ACTION"),
                text("NO ACTION"),
            ]);
        }
    }
    for s in catalog.sequences.values() {
        sequences.push(vec![
            db(),
            public(),
            text(&s.name),
            text("bigint"),
            i32v(64),
            i32v(2),
            i32v(0),
            text(&s.start.to_string()),
            text(&s.min.to_string()),
            text(&s.max.to_string()),
            text(&s.increment.to_string()),
            text("NO"),
        ]);
    }
    let schemata = ["information_schema", "pg_catalog", "public"]
        .iter()
        .map(|name| {
            let owner = if *name == "public" {
                "pg_database_owner"
            } else {
                user
            };
            vec![
                db(),
                text(name),
                text(owner),
                null_text(),
                null_text(),
                null_text(),
                null_text(),
            ]
        })
        .collect();
    const ID: &str = "table_catalog:t table_schema:t table_name:t";
    vec![
        table(
            "schemata",
            "catalog_name:t schema_name:t schema_owner:t default_character_set_catalog:t \
             default_character_set_schema:t default_character_set_name:t sql_path:t",
            schemata,
        ),
        table(
            "tables",
            &format!(
                "{ID} table_type:t self_referencing_column_name:t reference_generation:t \
                 user_defined_type_catalog:t user_defined_type_schema:t \
                 user_defined_type_name:t is_insertable_into:t is_typed:t commit_action:t"
            ),
            tables,
        ),
        table(
            "columns",
            &format!(
                "{ID} column_name:t ordinal_position:i4 column_default:t is_nullable:t \
                 data_type:t character_maximum_length:i4 character_octet_length:i4 \
                 numeric_precision:i4 numeric_precision_radix:i4 numeric_scale:i4 \
                 datetime_precision:i4 interval_type:t udt_catalog:t udt_schema:t \
                 udt_name:t dtd_identifier:t is_identity:t identity_generation:t \
                 is_generated:t is_updatable:t"
            ),
            columns,
        ),
        table(
            "table_constraints",
            "constraint_catalog:t constraint_schema:t constraint_name:t table_catalog:t \
             table_schema:t table_name:t constraint_type:t is_deferrable:t \
             initially_deferred:t enforced:t nulls_distinct:t",
            constraints,
        ),
        table(
            "key_column_usage",
            "constraint_catalog:t constraint_schema:t constraint_name:t table_catalog:t \
             table_schema:t table_name:t column_name:t ordinal_position:i4 \
             position_in_unique_constraint:i4",
            key_usage,
        ),
        table(
            "referential_constraints",
            "constraint_catalog:t constraint_schema:t constraint_name:t \
             unique_constraint_catalog:t unique_constraint_schema:t \
             unique_constraint_name:t match_option:t update_rule:t delete_rule:t",
            referential,
        ),
        table(
            "constraint_column_usage",
            &format!(
                "{ID} column_name:t constraint_catalog:t constraint_schema:t constraint_name:t"
            ),
            constraint_usage,
        ),
        table(
            "sequences",
            "sequence_catalog:t sequence_schema:t sequence_name:t data_type:t \
             numeric_precision:i4 numeric_precision_radix:i4 numeric_scale:i4 \
             start_value:t minimum_value:t maximum_value:t increment:t cycle_option:t",
            sequences,
        ),
        table(
            "views",
            &format!(
                "{ID} view_definition:t check_option:t is_updatable:t is_insertable_into:t \
                 is_trigger_updatable:t is_trigger_deletable:t is_trigger_insertable_into:t"
            ),
            Vec::new(),
        ),
        table(
            "routines",
            "specific_catalog:t specific_schema:t specific_name:t routine_catalog:t \
             routine_schema:t routine_name:t routine_type:t data_type:t",
            Vec::new(),
        ),
        table(
            "triggers",
            "trigger_catalog:t trigger_schema:t trigger_name:t event_manipulation:t \
             event_object_catalog:t event_object_schema:t event_object_table:t \
             action_statement:t action_timing:t",
            Vec::new(),
        ),
    ]
}
