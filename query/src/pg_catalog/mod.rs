//! `pg_catalog` and `information_schema`: PostgreSQL's system catalogs, derived from the
//! tessera catalog, so that psql's backslash commands, ORMs and drivers can look at the
//! schema.
//!
//! ## Model
//!
//! - The tables are rebuilt (as in-memory tables of one session) whenever the session
//!   loads a new catalog version, so they always describe the schema the session's
//!   transaction sees. Catalogs tessera has nothing for exist and are empty.
//! - Object ids are stable across rebuilds: a table's oid is `16384 + 1024 * id`, an
//!   index's is its table's plus the index id, a sequence's is `16384 + 1024 * id + 1023`.
//!   Built-in types, namespaces and access methods have PostgreSQL's own oids.
//! - Functions that describe objects by oid (`pg_get_indexdef`, `pg_get_constraintdef`,
//!   `::regclass`, ...) read the same snapshot through [`CatalogFacts`].
//!
//! The tables are built in [`tables`], the functions in [`functions`], and
//! [`rewrite`] turns clients' catalog spellings into SQL the planner takes.

mod defaults;
mod functions;
mod information_schema;
mod rewrite;
mod tables;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::prelude::SessionContext;
use parking_lot::Mutex;

use crate::catalog::{Catalog, IndexDesc, TableDesc};
use crate::error::{Error, Result};
use crate::types::SqlType;

pub use functions::functions;
pub(crate) use rewrite::call;
pub use rewrite::CatalogSpellings;

const PG_CATALOG_NS: i64 = 11;
const PUBLIC_NS: i64 = 2200;
const INFORMATION_SCHEMA_NS: i64 = 13_000;
const OWNER: i64 = 10;
/// The role that owns `public` in PostgreSQL 15: whoever owns the database.
const DATABASE_OWNER: i64 = 6171;
const HEAP_AM: i64 = 2;
const BTREE_AM: i64 = 403;

/// The oid of a table.
pub fn table_oid(t: &TableDesc) -> i64 {
    16_384 + 1024 * t.id as i64
}

fn index_oid(t: &TableDesc, i: &IndexDesc) -> i64 {
    table_oid(t) + (i.id as i64).min(1022)
}

fn sequence_oid(id: u64) -> i64 {
    16_384 + 1024 * id as i64 + 1023
}

/// Built-in types: oid, name, `format_type` name, length, category, element, array.
const TYPES: &[(i64, &str, &str, i16, &str, i64, i64)] = &[
    (16, "bool", "boolean", 1, "B", 0, 1000),
    (17, "bytea", "bytea", -1, "U", 0, 1001),
    (18, "char", "\"char\"", 1, "Z", 0, 1002),
    (19, "name", "name", 64, "S", 0, 1003),
    (20, "int8", "bigint", 8, "N", 0, 1016),
    (21, "int2", "smallint", 2, "N", 0, 1005),
    (22, "int2vector", "int2vector", -1, "A", 21, 0),
    (23, "int4", "integer", 4, "N", 0, 1007),
    (25, "text", "text", -1, "S", 0, 1009),
    (26, "oid", "oid", 4, "N", 0, 1028),
    (700, "float4", "real", 4, "N", 0, 1021),
    (701, "float8", "double precision", 8, "N", 0, 1022),
    (1042, "bpchar", "character", -1, "S", 0, 1014),
    (1043, "varchar", "character varying", -1, "S", 0, 1015),
    (1082, "date", "date", 4, "D", 0, 1182),
    (
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        "D",
        0,
        1115,
    ),
    (
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        "D",
        0,
        1185,
    ),
    (1186, "interval", "interval", 16, "T", 0, 1187),
    (1700, "numeric", "numeric", -1, "N", 0, 1231),
    (2205, "regclass", "regclass", 4, "N", 0, 2210),
    (2206, "regtype", "regtype", 4, "N", 0, 2211),
    (2950, "uuid", "uuid", 16, "U", 0, 2951),
    (3802, "jsonb", "jsonb", -1, "U", 0, 3807),
    (1000, "_bool", "boolean[]", -1, "A", 16, 0),
    (1001, "_bytea", "bytea[]", -1, "A", 17, 0),
    (1005, "_int2", "smallint[]", -1, "A", 21, 0),
    (1007, "_int4", "integer[]", -1, "A", 23, 0),
    (1009, "_text", "text[]", -1, "A", 25, 0),
    (1014, "_bpchar", "character[]", -1, "A", 1042, 0),
    (1015, "_varchar", "character varying[]", -1, "A", 1043, 0),
    (1016, "_int8", "bigint[]", -1, "A", 20, 0),
    (1021, "_float4", "real[]", -1, "A", 700, 0),
    (1022, "_float8", "double precision[]", -1, "A", 701, 0),
    (1028, "_oid", "oid[]", -1, "A", 26, 0),
    (
        1115,
        "_timestamp",
        "timestamp without time zone[]",
        -1,
        "A",
        1114,
        0,
    ),
    (1182, "_date", "date[]", -1, "A", 1082, 0),
    (
        1185,
        "_timestamptz",
        "timestamp with time zone[]",
        -1,
        "A",
        1184,
        0,
    ),
    (1187, "_interval", "interval[]", -1, "A", 1186, 0),
    (1231, "_numeric", "numeric[]", -1, "A", 1700, 0),
    (2951, "_uuid", "uuid[]", -1, "A", 2950, 0),
    (3807, "_jsonb", "jsonb[]", -1, "A", 3802, 0),
];

/// The type oid of a column type.
pub fn type_oid(ty: SqlType) -> i64 {
    match ty {
        SqlType::Bool => 16,
        SqlType::Int2 => 21,
        SqlType::Int4 => 23,
        SqlType::Int8 => 20,
        SqlType::Float4 => 700,
        SqlType::Float8 => 701,
        SqlType::Numeric(_) => 1700,
        SqlType::Text => 25,
        SqlType::Varchar(_) => 1043,
        SqlType::Char(_) => 1042,
        SqlType::Bytea => 17,
        SqlType::Date => 1082,
        SqlType::Timestamp => 1114,
        SqlType::TimestampTz => 1184,
        SqlType::Interval => 1186,
        SqlType::Uuid => 2950,
        SqlType::Jsonb => 3802,
    }
}

/// `atttypmod` of a column type (-1: none).
fn type_mod(ty: SqlType) -> i32 {
    match ty {
        SqlType::Varchar(Some(n)) | SqlType::Char(n) if n > 0 => n as i32 + 4,
        SqlType::Numeric(Some((p, s))) => ((p as i32) << 16 | (s as i32 & 0xFFFF)) + 4,
        _ => -1,
    }
}

/// `format_type(oid, typmod)`.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let (_, _, name, ..) = TYPES.iter().find(|t| t.0 == oid)?;
    let m = typmod.unwrap_or(-1);
    Some(match oid {
        1043 | 1042 if m >= 4 => format!("{name}({})", m - 4),
        1042 => "bpchar".into(),
        1700 if m >= 4 => format!("numeric({},{})", (m - 4) >> 16, (m - 4) & 0xFFFF),
        _ => name.to_string(),
    })
}

/// What the catalog functions look up by oid or name, for one catalog version.
#[derive(Debug, Default)]
pub struct CatalogFacts {
    /// Relation oid to (namespace name, relation name).
    pub relations: BTreeMap<i64, (String, String)>,
    /// Index oid to its `CREATE INDEX` statement.
    pub indexdefs: BTreeMap<i64, String>,
    /// Constraint oid to its definition (`PRIMARY KEY (a)`).
    pub constraintdefs: BTreeMap<i64, String>,
    /// (table, column) to the sequence a serial column owns.
    pub serial_sequences: BTreeMap<(String, String), String>,
}

fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn index_columns(t: &TableDesc, i: &IndexDesc) -> String {
    i.columns
        .iter()
        .map(|(id, desc)| {
            let name = t
                .column_by_id(*id)
                .map(|c| quote_ident(&c.name))
                .unwrap_or_default();
            if *desc {
                format!("{name} DESC")
            } else {
                name
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// (Re)register the `pg_catalog` schema of a session for `catalog`.
pub fn register(
    ctx: &SessionContext,
    catalog: &Catalog,
    info: &crate::builtins::SessionInfo,
    facts: &Mutex<Arc<CatalogFacts>>,
) -> Result<()> {
    let user = info.user.lock().clone();
    let database = info.database.lock().clone();
    let settings = info.settings.lock().clone();
    let (tables, f) = tables::tables(catalog, &user, &database, &settings);
    let schema = |tables: Vec<tables::Table>| -> Result<Arc<MemorySchemaProvider>> {
        let schema = MemorySchemaProvider::new();
        for t in tables {
            let name = t.name;
            schema.register_table(name.to_string(), Arc::new(t.into_mem()?))?;
        }
        Ok(Arc::new(schema))
    };
    let tessera = ctx
        .catalog("tessera")
        .ok_or_else(|| Error::internal("no tessera catalog"))?;
    tessera.register_schema("pg_catalog", schema(tables)?)?;
    tessera.register_schema(
        "information_schema",
        schema(information_schema::tables(catalog, &user, &database))?,
    )?;
    *facts.lock() = Arc::new(f);
    Ok(())
}
