//! `pg_catalog`: PostgreSQL's system catalogs, derived from the tessera catalog, so that
//! psql's backslash commands, ORMs and drivers can look at the schema.
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

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast;
use parking_lot::Mutex;

use crate::catalog::{Catalog, IndexDesc, TableDesc};
use crate::error::{Error, Result};
use crate::types::SqlType;

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

/// A column default as PostgreSQL's `pg_get_expr` prints it: string constants carry
/// a cast to the column's type (`'x'::text`), numbers given as strings are numbers, and
/// a sequence name passed to `nextval` is a `regclass`.
fn default_text(sql: &str, ty: SqlType) -> String {
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let parsed = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(sql)
    .and_then(|mut p| p.parse_expr());
    let Ok(expr) = parsed else {
        return sql.to_string();
    };
    match &expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => match ty {
                SqlType::Text => format!("{}::text", quoted(s)),
                SqlType::Varchar(_) => format!("{}::character varying", quoted(s)),
                SqlType::Char(_) => format!("{}::bpchar", quoted(s)),
                SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Numeric(_)
                    if s.trim().parse::<f64>().is_ok() =>
                {
                    s.trim().to_string()
                }
                other => format!("{}::{}", quoted(s), other.pg_name()),
            },
            _ => sql.to_string(),
        },
        ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("nextval") => {
            match &f.args {
                ast::FunctionArguments::List(l) => match l.args.as_slice() {
                    [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v)))] => {
                        match &v.value {
                            ast::Value::SingleQuotedString(name) => {
                                format!("nextval({}::regclass)", quoted(name))
                            }
                            _ => sql.to_string(),
                        }
                    }
                    _ => sql.to_string(),
                },
                _ => sql.to_string(),
            }
        }
        _ => sql.to_string(),
    }
}

struct Table {
    name: &'static str,
    fields: Vec<Field>,
    rows: Vec<Vec<ScalarValue>>,
}

fn i64v(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}
fn i32v(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}
fn i16v(v: i16) -> ScalarValue {
    ScalarValue::Int16(Some(v))
}
fn text(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_string()))
}
fn boolv(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}
fn null_text() -> ScalarValue {
    ScalarValue::Utf8(None)
}
fn int2_list(v: &[i16]) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list_nullable(
        &v.iter().map(|x| i16v(*x)).collect::<Vec<_>>(),
        &DataType::Int16,
    ))
}

/// Columns of a catalog table, by a compact spec: `name:type` with types
/// o (oid, int8), i4, i2, f4, b (bool), t (text), l2 (int2[]), lt (text[]).
fn fields(spec: &str) -> Vec<Field> {
    spec.split_whitespace()
        .map(|c| {
            let (name, ty) = c.split_once(':').expect("name:type");
            let dt = match ty {
                "o" => DataType::Int64,
                "i4" => DataType::Int32,
                "i2" => DataType::Int16,
                "f4" => DataType::Float32,
                "b" => DataType::Boolean,
                "t" => DataType::Utf8,
                "l2" => DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
                "lt" => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                other => panic!("catalog column type {other}"),
            };
            Field::new(name, dt, true)
        })
        .collect()
}

fn table(name: &'static str, spec: &str, rows: Vec<Vec<ScalarValue>>) -> Table {
    Table {
        name,
        fields: fields(spec),
        rows,
    }
}

impl Table {
    fn into_mem(self) -> Result<MemTable> {
        let schema = Arc::new(Schema::new(self.fields));
        let batch = if self.rows.is_empty() {
            RecordBatch::new_empty(schema.clone())
        } else {
            let columns = (0..schema.fields().len())
                .map(|c| {
                    let f = schema.field(c);
                    let values = self.rows.iter().map(|r| {
                        let v = r[c].clone();
                        if v.is_null() {
                            ScalarValue::try_from(f.data_type()).unwrap_or(v)
                        } else {
                            v
                        }
                    });
                    ScalarValue::iter_to_array(values).map_err(Error::from)
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            RecordBatch::try_new(schema.clone(), columns).map_err(Error::internal)?
        };
        Ok(MemTable::try_new(schema, vec![vec![batch]])?)
    }
}

/// Build every catalog table for `catalog` as seen by a session of `user` in `database`.
fn tables(
    catalog: &Catalog,
    user: &str,
    database: &str,
    settings: &BTreeMap<String, String>,
) -> (Vec<Table>, CatalogFacts) {
    let mut facts = CatalogFacts::default();
    let mut class = Vec::new();
    let mut attribute = Vec::new();
    let mut attrdef = Vec::new();
    let mut index = Vec::new();
    let mut constraint = Vec::new();
    let mut sequence = Vec::new();
    let class_row = |oid: i64, name: &str, kind: &str, am: i64, natts: i16, has_index: bool| {
        vec![
            i64v(oid),
            text(name),
            i64v(PUBLIC_NS),
            i64v(0),
            i64v(0),
            i64v(OWNER),
            i64v(am),
            i64v(oid),
            i64v(0),
            i32v(0),
            ScalarValue::Float32(Some(-1.0)),
            i32v(0),
            i64v(0),
            boolv(has_index),
            boolv(false),
            text("p"),
            text(kind),
            i16v(natts),
            i16v(0),
            boolv(false),
            boolv(false),
            boolv(false),
            boolv(false),
            boolv(false),
            boolv(true),
            text("d"),
            boolv(false),
            i64v(0),
            null_text(),
            null_text(),
            null_text(),
        ]
    };
    for t in catalog.tables.values() {
        let oid = table_oid(t);
        facts
            .relations
            .insert(oid, ("public".into(), t.name.clone()));
        let visible: Vec<_> = t.columns.iter().filter(|c| !c.hidden).collect();
        class.push(class_row(
            oid,
            &t.name,
            "r",
            HEAP_AM,
            visible.len() as i16,
            !t.has_rowid() || !t.indexes.is_empty(),
        ));
        for (n, c) in visible.iter().enumerate() {
            let num = n as i16 + 1;
            attribute.push(attribute_row(
                oid,
                &c.name,
                type_oid(c.ty),
                num,
                type_mod(c.ty),
                !c.nullable,
                c.default.is_some(),
            ));
            if let Some(d) = &c.default {
                attrdef.push(vec![
                    i64v(oid * 1000 + num as i64),
                    i64v(oid),
                    i16v(num),
                    text(&default_text(d, c.ty)),
                ]);
            }
        }
        let attnum = |id: u32| -> i16 {
            visible
                .iter()
                .position(|c| c.id == id)
                .map_or(0, |p| p as i16 + 1)
        };
        let indexes: Vec<&IndexDesc> = if t.has_rowid() {
            t.indexes.iter().collect()
        } else {
            t.all_indexes().collect()
        };
        for i in indexes {
            let ioid = index_oid(t, i);
            let primary = std::ptr::eq(i, &t.primary);
            facts
                .relations
                .insert(ioid, ("public".into(), i.name.clone()));
            class.push(class_row(
                ioid,
                &i.name,
                "i",
                BTREE_AM,
                i.columns.len() as i16,
                false,
            ));
            let keys: Vec<i16> = i.columns.iter().map(|(id, _)| attnum(*id)).collect();
            for (n, (id, _)) in i.columns.iter().enumerate() {
                if let Some(c) = t.column_by_id(*id) {
                    attribute.push(attribute_row(
                        ioid,
                        &c.name,
                        type_oid(c.ty),
                        n as i16 + 1,
                        type_mod(c.ty),
                        false,
                        false,
                    ));
                }
            }
            let unique = primary || i.unique;
            facts.indexdefs.insert(
                ioid,
                format!(
                    "CREATE {}INDEX {} ON public.{} USING btree ({})",
                    if unique { "UNIQUE " } else { "" },
                    quote_ident(&i.name),
                    quote_ident(&t.name),
                    index_columns(t, i)
                ),
            );
            index.push(vec![
                i64v(ioid),
                i64v(oid),
                i16v(keys.len() as i16),
                i16v(keys.len() as i16),
                boolv(unique),
                boolv(false),
                boolv(primary),
                boolv(false),
                boolv(true),
                boolv(false),
                boolv(true),
                boolv(false),
                boolv(true),
                boolv(true),
                boolv(false),
                int2_list(&keys),
                null_text(),
                null_text(),
                int2_list(
                    &i.columns
                        .iter()
                        .map(|(_, d)| if *d { 3 } else { 0 })
                        .collect::<Vec<_>>(),
                ),
                null_text(),
                null_text(),
            ]);
            if primary || i.constraint {
                let kind = if primary { "p" } else { "u" };
                let def = format!(
                    "{} ({})",
                    if primary { "PRIMARY KEY" } else { "UNIQUE" },
                    index_columns(t, i)
                );
                facts.constraintdefs.insert(ioid, def);
                constraint.push(vec![
                    i64v(ioid),
                    text(&i.name),
                    i64v(PUBLIC_NS),
                    text(kind),
                    boolv(false),
                    boolv(false),
                    boolv(true),
                    i64v(oid),
                    i64v(0),
                    i64v(ioid),
                    i64v(0),
                    i64v(0),
                    text(" "),
                    text(" "),
                    text(" "),
                    boolv(true),
                    i16v(0),
                    boolv(true),
                    int2_list(&keys),
                    ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Int16)),
                    null_text(),
                ]);
            }
        }
    }
    for t in catalog.tables.values() {
        for (n, fk) in t.foreign_keys.iter().enumerate() {
            let oid = table_oid(t) + 1000 + n as i64;
            let Some(parent) = catalog.table_by_id(fk.table) else {
                continue;
            };
            let names = |table: &TableDesc, cols: &[u32]| {
                cols.iter()
                    .filter_map(|id| table.column_by_id(*id))
                    .map(|c| quote_ident(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let attnums = |table: &TableDesc, cols: &[u32]| -> Vec<i16> {
                let visible: Vec<_> = table.columns.iter().filter(|c| !c.hidden).collect();
                cols.iter()
                    .map(|id| {
                        visible
                            .iter()
                            .position(|c| c.id == *id)
                            .map_or(0, |p| p as i16 + 1)
                    })
                    .collect()
            };
            facts.constraintdefs.insert(
                oid,
                format!(
                    "FOREIGN KEY ({}) REFERENCES {}({})",
                    names(t, &fk.columns),
                    quote_ident(&parent.name),
                    names(parent, &fk.ref_columns)
                ),
            );
            constraint.push(vec![
                i64v(oid),
                text(&fk.name),
                i64v(PUBLIC_NS),
                text("f"),
                boolv(false),
                boolv(false),
                boolv(true),
                i64v(table_oid(t)),
                i64v(0),
                i64v(0),
                i64v(0),
                i64v(table_oid(parent)),
                text("a"),
                text("a"),
                text("s"),
                boolv(true),
                i16v(0),
                boolv(true),
                int2_list(&attnums(t, &fk.columns)),
                int2_list(&attnums(parent, &fk.ref_columns)),
                null_text(),
            ]);
        }
    }
    for s in catalog.sequences.values() {
        let oid = sequence_oid(s.id);
        facts
            .relations
            .insert(oid, ("public".into(), s.name.clone()));
        class.push(class_row(oid, &s.name, "S", 0, 3, false));
        sequence.push(vec![
            i64v(oid),
            i64v(20),
            i64v(s.start),
            i64v(s.increment),
            i64v(s.max),
            i64v(s.min),
            i64v(1),
            boolv(false),
        ]);
    }
    let types = TYPES
        .iter()
        .map(|&(oid, name, _, len, cat, elem, array)| {
            vec![
                i64v(oid),
                text(name),
                i64v(PG_CATALOG_NS),
                i64v(OWNER),
                i16v(len),
                boolv(len > 0 && len <= 8),
                text("b"),
                text(cat),
                boolv(false),
                boolv(true),
                text(","),
                i64v(0),
                i64v(elem),
                i64v(array),
                text(&format!("{name}in")),
                text(&format!("{name}out")),
                text(&format!("{name}recv")),
                text(&format!("{name}send")),
                text(if len > 0 { "c" } else { "i" }),
                text(if len > 0 { "p" } else { "x" }),
                boolv(false),
                i64v(0),
                i32v(-1),
                i32v(0),
                i64v(if matches!(oid, 25 | 1042 | 1043) {
                    100
                } else {
                    0
                }),
                null_text(),
                null_text(),
            ]
        })
        .collect();
    let mut roles = vec![role_row(OWNER, "root")];
    if user != "root" {
        roles.push(role_row(16_383, user));
    }
    let mut databases = vec![database_row(16_381, database)];
    if database != "tessera" {
        databases.push(database_row(16_382, "tessera"));
    }
    let settings_rows = settings
        .iter()
        .map(|(k, v)| {
            vec![
                text(k),
                text(v),
                null_text(),
                text("Client Connection Defaults"),
                text(""),
                text("user"),
                text("string"),
                text("session"),
                null_text(),
                null_text(),
                text(v),
                text(v),
            ]
        })
        .collect();
    let out = vec![
        table(
            "pg_namespace",
            "oid:o nspname:t nspowner:o nspacl:lt",
            vec![
                vec![i64v(PG_CATALOG_NS), text("pg_catalog"), i64v(OWNER), ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Utf8))],
                vec![i64v(PUBLIC_NS), text("public"), i64v(DATABASE_OWNER), ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Utf8))],
                vec![i64v(INFORMATION_SCHEMA_NS), text("information_schema"), i64v(OWNER), ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Utf8))],
            ],
        ),
        table(
            "pg_class",
            "oid:o relname:t relnamespace:o reltype:o reloftype:o relowner:o relam:o \
             relfilenode:o reltablespace:o relpages:i4 reltuples:f4 relallvisible:i4 \
             reltoastrelid:o relhasindex:b relisshared:b relpersistence:t relkind:t \
             relnatts:i2 relchecks:i2 relhasrules:b relhastriggers:b relhassubclass:b \
             relrowsecurity:b relforcerowsecurity:b relispopulated:b relreplident:t \
             relispartition:b relrewrite:o relacl:t reloptions:t relpartbound:t",
            class,
        ),
        table(
            "pg_attribute",
            "attrelid:o attname:t atttypid:o attstattarget:i4 attlen:i2 attnum:i2 \
             attndims:i4 attcacheoff:i4 atttypmod:i4 attbyval:b attalign:t attstorage:t \
             attcompression:t attnotnull:b atthasdef:b atthasmissing:b attidentity:t \
             attgenerated:t attisdropped:b attislocal:b attinhcount:i4 attcollation:o \
             attacl:t attoptions:t attfdwoptions:t",
            attribute,
        ),
        table("pg_attrdef", "oid:o adrelid:o adnum:i2 adbin:t", attrdef),
        table(
            "pg_index",
            "indexrelid:o indrelid:o indnatts:i2 indnkeyatts:i2 indisunique:b \
             indnullsnotdistinct:b indisprimary:b indisexclusion:b indimmediate:b \
             indisclustered:b indisvalid:b indcheckxmin:b indisready:b indislive:b \
             indisreplident:b indkey:l2 indcollation:t indclass:t indoption:l2 \
             indexprs:t indpred:t",
            index,
        ),
        table(
            "pg_constraint",
            "oid:o conname:t connamespace:o contype:t condeferrable:b condeferred:b \
             convalidated:b conrelid:o contypid:o conindid:o conparentid:o confrelid:o \
             confupdtype:t confdeltype:t confmatchtype:t conislocal:b coninhcount:i2 \
             connoinherit:b conkey:l2 confkey:l2 conbin:t",
            constraint,
        ),
        table(
            "pg_sequence",
            "seqrelid:o seqtypid:o seqstart:o seqincrement:o seqmax:o seqmin:o seqcache:o seqcycle:b",
            sequence,
        ),
        table(
            "pg_type",
            "oid:o typname:t typnamespace:o typowner:o typlen:i2 typbyval:b typtype:t \
             typcategory:t typispreferred:b typisdefined:b typdelim:t typrelid:o \
             typelem:o typarray:o typinput:t typoutput:t typreceive:t typsend:t \
             typalign:t typstorage:t typnotnull:b typbasetype:o typtypmod:i4 \
             typndims:i4 typcollation:o typdefaultbin:t typdefault:t",
            types,
        ),
        table(
            "pg_am",
            "oid:o amname:t amhandler:t amtype:t",
            vec![
                vec![i64v(HEAP_AM), text("heap"), text("heap_tableam_handler"), text("t")],
                vec![i64v(BTREE_AM), text("btree"), text("bthandler"), text("i")],
            ],
        ),
        table(
            "pg_database",
            "oid:o datname:t datdba:o encoding:i4 datlocprovider:t datistemplate:b \
             datallowconn:b datconnlimit:i4 datcollate:t datctype:t daticulocale:t \
             datacl:lt",
            databases,
        ),
        table(
            "pg_roles",
            "oid:o rolname:t rolsuper:b rolinherit:b rolcreaterole:b rolcreatedb:b \
             rolcanlogin:b rolreplication:b rolconnlimit:i4 rolpassword:t \
             rolvaliduntil:t rolbypassrls:b rolconfig:lt",
            roles,
        ),
        table(
            "pg_settings",
            "name:t setting:t unit:t category:t short_desc:t context:t vartype:t \
             source:t min_val:t max_val:t boot_val:t reset_val:t",
            settings_rows,
        ),
        table(
            "pg_collation",
            "oid:o collname:t collnamespace:o",
            vec![
                vec![i64v(100), text("default"), i64v(PG_CATALOG_NS)],
                vec![i64v(950), text("C"), i64v(PG_CATALOG_NS)],
            ],
        ),
        table(
            "pg_tablespace",
            "oid:o spcname:t spcowner:o",
            vec![vec![i64v(1663), text("pg_default"), i64v(OWNER)]],
        ),
        table("pg_auth_members", "roleid:o member:o grantor:o admin_option:b", vec![]),
        table("pg_description", "objoid:o classoid:o objsubid:i4 description:t", vec![]),
        table("pg_inherits", "inhrelid:o inhparent:o inhseqno:i4 inhdetachpending:b", vec![]),
        table(
            "pg_trigger",
            "oid:o tgrelid:o tgparentid:o tgname:t tgfoid:o tgtype:i2 tgenabled:t \
             tgisinternal:b tgconstrrelid:o tgconstrindid:o tgconstraint:o",
            vec![],
        ),
        table(
            "pg_policy",
            "oid:o polname:t polrelid:o polcmd:t polpermissive:b polroles:l2 polqual:t \
             polwithcheck:t",
            vec![],
        ),
        table(
            "pg_statistic_ext",
            "oid:o stxrelid:o stxname:t stxnamespace:o stxowner:o stxstattarget:i4 \
             stxkeys:l2 stxkind:lt",
            vec![],
        ),
        table(
            "pg_publication",
            "oid:o pubname:t pubowner:o puballtables:b pubinsert:b pubupdate:b \
             pubdelete:b pubtruncate:b pubviaroot:b",
            vec![],
        ),
        table("pg_publication_namespace", "oid:o pnpubid:o pnnspid:o", vec![]),
        table(
            "pg_publication_rel",
            "oid:o prpubid:o prrelid:o prqual:t prattrs:l2",
            vec![],
        ),
        table(
            "pg_partitioned_table",
            "partrelid:o partstrat:t partnatts:i2 partdefid:o",
            vec![],
        ),
        table("pg_enum", "oid:o enumtypid:o enumsortorder:f4 enumlabel:t", vec![]),
        table("pg_range", "rngtypid:o rngsubtype:o rngmultitypid:o", vec![]),
        table("pg_foreign_table", "ftrelid:o ftserver:o", vec![]),
        table(
            "pg_proc",
            "oid:o proname:t pronamespace:o proowner:o prokind:t prorettype:o",
            vec![],
        ),
        table(
            "pg_views",
            "schemaname:t viewname:t viewowner:t definition:t",
            vec![],
        ),
        table(
            "pg_matviews",
            "schemaname:t matviewname:t matviewowner:t definition:t",
            vec![],
        ),
        table(
            "pg_tables",
            "schemaname:t tablename:t tableowner:t tablespace:t hasindexes:b \
             hasrules:b hastriggers:b rowsecurity:b",
            catalog
                .tables
                .values()
                .map(|t| {
                    vec![
                        text("public"),
                        text(&t.name),
                        text("root"),
                        null_text(),
                        boolv(true),
                        boolv(false),
                        boolv(false),
                        boolv(false),
                    ]
                })
                .collect(),
        ),
    ];
    (out, facts)
}

fn attribute_row(
    rel: i64,
    name: &str,
    ty: i64,
    num: i16,
    typmod: i32,
    notnull: bool,
    hasdef: bool,
) -> Vec<ScalarValue> {
    let len = TYPES.iter().find(|t| t.0 == ty).map_or(-1, |t| t.3);
    vec![
        i64v(rel),
        text(name),
        i64v(ty),
        i32v(-1),
        i16v(len),
        i16v(num),
        i32v(0),
        i32v(-1),
        i32v(typmod),
        boolv(len > 0 && len <= 8),
        text("i"),
        text(if len > 0 { "p" } else { "x" }),
        text(""),
        boolv(notnull),
        boolv(hasdef),
        boolv(false),
        text(""),
        text(""),
        boolv(false),
        boolv(true),
        i32v(0),
        i64v(if matches!(ty, 25 | 1042 | 1043) {
            100
        } else {
            0
        }),
        null_text(),
        null_text(),
        null_text(),
    ]
}

fn role_row(oid: i64, name: &str) -> Vec<ScalarValue> {
    let superuser = oid == OWNER;
    vec![
        i64v(oid),
        text(name),
        boolv(superuser),
        boolv(true),
        boolv(superuser),
        boolv(superuser),
        boolv(true),
        boolv(superuser),
        i32v(-1),
        text("********"),
        null_text(),
        boolv(superuser),
        ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Utf8)),
    ]
}

fn database_row(oid: i64, name: &str) -> Vec<ScalarValue> {
    vec![
        i64v(oid),
        text(name),
        i64v(OWNER),
        i32v(6),
        text("c"),
        boolv(false),
        boolv(true),
        i32v(-1),
        text("C.UTF-8"),
        text("C.UTF-8"),
        null_text(),
        ScalarValue::List(ScalarValue::new_list_nullable(&[], &DataType::Utf8)),
    ]
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
    let (tables, f) = tables(catalog, &user, &database, &settings);
    let schema = MemorySchemaProvider::new();
    for t in tables {
        let name = t.name;
        schema.register_table(name.to_string(), Arc::new(t.into_mem()?))?;
    }
    ctx.catalog("tessera")
        .ok_or_else(|| Error::internal("no tessera catalog"))?
        .register_schema("pg_catalog", Arc::new(schema))?;
    *facts.lock() = Arc::new(f);
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    FormatType,
    GetUserById,
    TableIsVisible,
    GetExpr,
    GetIndexDef,
    GetConstraintDef,
    EncodingToChar,
    Description,
    RelationIsPublishable,
    HasPrivilege,
    RegclassName,
    ToRegclass,
    RegnamespaceName,
    ToRegtype,
    StatisticsColumns,
    ArrayUpper,
}

#[derive(Debug)]
struct CatalogFn {
    kind: Kind,
    name: &'static str,
    signature: Signature,
    facts: Arc<Mutex<Arc<CatalogFacts>>>,
}

impl PartialEq for CatalogFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.facts, &other.facts)
    }
}
impl Eq for CatalogFn {}
impl Hash for CatalogFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

fn scalar(args: &[ColumnarValue], i: usize, row: usize) -> DfResult<ScalarValue> {
    match args.get(i) {
        Some(ColumnarValue::Scalar(s)) => Ok(s.clone()),
        Some(ColumnarValue::Array(a)) => ScalarValue::try_from_array(a, row),
        None => Ok(ScalarValue::Null),
    }
}

fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

fn as_text(v: &ScalarValue) -> Option<String> {
    match v.cast_to(&DataType::Utf8).ok()? {
        ScalarValue::Utf8(v) => v,
        _ => None,
    }
}

impl CatalogFn {
    fn return_type(&self) -> DataType {
        match self.kind {
            Kind::TableIsVisible | Kind::RelationIsPublishable | Kind::HasPrivilege => {
                DataType::Boolean
            }
            Kind::ToRegclass | Kind::ToRegtype => DataType::Int64,
            Kind::ArrayUpper => DataType::Int32,
            _ => DataType::Utf8,
        }
    }

    fn eval(&self, args: &[ColumnarValue], row: usize) -> DfResult<ScalarValue> {
        let facts = self.facts.lock().clone();
        let a0 = scalar(args, 0, row)?;
        Ok(match self.kind {
            Kind::FormatType => {
                let typmod = as_i64(&scalar(args, 1, row)?);
                ScalarValue::Utf8(as_i64(&a0).and_then(|oid| format_type(oid, typmod)))
            }
            Kind::GetUserById => ScalarValue::Utf8(as_i64(&a0).map(|oid| {
                if oid == OWNER {
                    "root".to_string()
                } else if oid == DATABASE_OWNER {
                    "pg_database_owner".to_string()
                } else {
                    format!("unknown (OID={oid})")
                }
            })),
            Kind::TableIsVisible | Kind::HasPrivilege => ScalarValue::Boolean(Some(true)),
            Kind::RelationIsPublishable => ScalarValue::Boolean(Some(false)),
            Kind::GetExpr => ScalarValue::Utf8(as_text(&a0)),
            Kind::GetIndexDef => {
                ScalarValue::Utf8(as_i64(&a0).and_then(|o| facts.indexdefs.get(&o).cloned()))
            }
            Kind::GetConstraintDef => {
                ScalarValue::Utf8(as_i64(&a0).and_then(|o| facts.constraintdefs.get(&o).cloned()))
            }
            Kind::EncodingToChar => ScalarValue::Utf8(as_i64(&a0).map(|e| {
                if e == 6 {
                    "UTF8".to_string()
                } else {
                    String::new()
                }
            })),
            Kind::Description | Kind::StatisticsColumns => ScalarValue::Utf8(None),
            Kind::RegclassName => ScalarValue::Utf8(as_i64(&a0).map(|o| {
                facts
                    .relations
                    .get(&o)
                    .map(|(_, n)| quote_ident(n))
                    .unwrap_or_else(|| o.to_string())
            })),
            Kind::ToRegclass => ScalarValue::Int64(as_text(&a0).and_then(|name| {
                let name = name
                    .rsplit('.')
                    .next()
                    .unwrap_or(&name)
                    .trim_matches('"')
                    .to_string();
                facts
                    .relations
                    .iter()
                    .find(|(_, (_, n))| *n == name)
                    .map(|(o, _)| *o)
            })),
            Kind::RegnamespaceName => ScalarValue::Utf8(as_i64(&a0).map(|o| match o {
                PG_CATALOG_NS => "pg_catalog".to_string(),
                PUBLIC_NS => "public".to_string(),
                INFORMATION_SCHEMA_NS => "information_schema".to_string(),
                other => other.to_string(),
            })),
            Kind::ToRegtype => ScalarValue::Int64(as_text(&a0).and_then(|name| {
                let name = name.trim().to_lowercase();
                TYPES
                    .iter()
                    .find(|t| t.1 == name || t.2 == name)
                    .map(|t| t.0)
            })),
            Kind::ArrayUpper => match a0 {
                ScalarValue::List(l) if !l.is_null(0) => {
                    let n = l.value(0).len() as i32;
                    ScalarValue::Int32((n > 0).then_some(n))
                }
                _ => ScalarValue::Int32(None),
            },
        })
    }
}

impl ScalarUDFImpl for CatalogFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(CatalogFn::return_type(self))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        if n == 0 {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&CatalogFn::return_type(self)),
            ));
        }
        let values = (0..n)
            .map(|row| self.eval(&args.args, row))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
    }
}

/// The catalog functions of one session, reading `facts`.
pub fn functions(facts: Arc<Mutex<Arc<CatalogFacts>>>) -> Vec<ScalarUDF> {
    let any = || Signature::variadic_any(Volatility::Stable);
    [
        (Kind::FormatType, "format_type"),
        (Kind::GetUserById, "pg_get_userbyid"),
        (Kind::TableIsVisible, "pg_table_is_visible"),
        (Kind::TableIsVisible, "pg_type_is_visible"),
        (Kind::GetExpr, "pg_get_expr"),
        (Kind::GetIndexDef, "pg_get_indexdef"),
        (Kind::GetConstraintDef, "pg_get_constraintdef"),
        (Kind::EncodingToChar, "pg_encoding_to_char"),
        (Kind::Description, "obj_description"),
        (Kind::Description, "col_description"),
        (Kind::Description, "shobj_description"),
        (Kind::RelationIsPublishable, "pg_relation_is_publishable"),
        (Kind::HasPrivilege, "has_table_privilege"),
        (Kind::HasPrivilege, "has_schema_privilege"),
        (Kind::HasPrivilege, "has_database_privilege"),
        (Kind::RegclassName, "tessera_regclass_name"),
        (Kind::ToRegclass, "tessera_regclass_oid"),
        (Kind::RegnamespaceName, "tessera_regnamespace_name"),
        (Kind::ToRegtype, "to_regtype"),
        (Kind::StatisticsColumns, "pg_get_statisticsobjdef_columns"),
        (Kind::ArrayUpper, "array_upper"),
    ]
    .into_iter()
    .map(|(kind, name)| {
        ScalarUDF::new_from_impl(CatalogFn {
            kind,
            name,
            signature: any(),
            facts: facts.clone(),
        })
    })
    .collect()
}

fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// A scalar subquery over catalog tables only, selecting one plain value (psql's
/// `(SELECT pg_get_expr(d.adbin, ...) FROM pg_catalog.pg_attrdef d WHERE ...)`): the
/// planner only decorrelates aggregated subqueries whose correlated conditions are
/// equalities, and such a lookup finds at most one row. So its value is wrapped in
/// `max()`; conditions on the outer row alone are returned, to guard the subquery from
/// outside; and an outer expression that an equality ties to an inner column is
/// replaced by that column in the other conditions.
fn wrap_catalog_lookup(q: &mut ast::Query) -> Vec<ast::Expr> {
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return Vec::new();
    };
    let catalog_only = !sel.from.is_empty()
        && sel.from.iter().all(|f| {
            std::iter::once(&f.relation)
                .chain(f.joins.iter().map(|j| &j.relation))
                .all(|r| match r {
                    ast::TableFactor::Table { name, .. } => {
                        let first = name.0.first().and_then(|p| p.as_ident());
                        let last = name.0.last().and_then(|p| p.as_ident());
                        first.is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"))
                            || last.is_some_and(|i| i.value.starts_with("pg_"))
                    }
                    _ => false,
                })
        });
    let grouped = !matches!(&sel.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if !catalog_only || grouped || sel.projection.len() != 1 {
        return Vec::new();
    }
    let inner: Vec<String> = sel
        .from
        .iter()
        .flat_map(|f| std::iter::once(&f.relation).chain(f.joins.iter().map(|j| &j.relation)))
        .filter_map(|r| match r {
            ast::TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => a.name.value.to_lowercase(),
                None => name.0.last()?.as_ident()?.value.to_lowercase(),
            }),
            _ => None,
        })
        .collect();
    let mut guards = Vec::new();
    if let Some(selection) = sel.selection.take() {
        let mut conjuncts = Vec::new();
        split_and(selection, &mut conjuncts);
        // Outer expressions tied to inner columns by an equality.
        let mut ties: Vec<(String, ast::Expr)> = Vec::new();
        for c in &conjuncts {
            if let ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } = c
            {
                match (refs(left, &inner), refs(right, &inner)) {
                    (Refs::Inner, Refs::Outer) => {
                        ties.push((right.to_string(), left.as_ref().clone()))
                    }
                    (Refs::Outer, Refs::Inner) => {
                        ties.push((left.to_string(), right.as_ref().clone()))
                    }
                    _ => {}
                }
            }
        }
        let mut kept = Vec::new();
        for mut c in conjuncts {
            match refs(&c, &inner) {
                Refs::Outer => guards.push(c),
                Refs::Mixed
                    if !matches!(
                        &c,
                        ast::Expr::BinaryOp {
                            op: ast::BinaryOperator::Eq,
                            ..
                        }
                    ) =>
                {
                    substitute(&mut c, &ties);
                    kept.push(c);
                }
                _ => kept.push(c),
            }
        }
        sel.selection = kept.into_iter().reduce(|a, b| ast::Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    let aggregate = |e: &ast::Expr| {
        matches!(e, ast::Expr::Function(f) if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
            matches!(i.value.to_lowercase().as_str(), "count" | "max" | "min" | "sum" | "avg" | "array_agg" | "string_agg" | "bool_and" | "bool_or")
        }))
    };
    match &mut sel.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. }
            if !aggregate(e) =>
        {
            *e = call("max", vec![e.clone()]);
        }
        _ => {}
    }
    guards
}

/// Catalog tables that never hold a row.
const ALWAYS_EMPTY: &[&str] = &[
    "pg_auth_members",
    "pg_description",
    "pg_inherits",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_partitioned_table",
    "pg_enum",
    "pg_range",
    "pg_foreign_table",
    "pg_proc",
    "pg_views",
    "pg_matviews",
];

fn always_empty(r: &ast::TableFactor) -> bool {
    match r {
        ast::TableFactor::Table {
            name, args: None, ..
        } => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| ALWAYS_EMPTY.contains(&i.value.to_lowercase().as_str())),
        _ => false,
    }
}

/// Whether a SELECT can produce no row because it reads an always-empty catalog table
/// through a cross or inner join (or as the left side of an outer one).
fn select_is_empty(sel: &ast::Select) -> bool {
    sel.from.iter().any(|f| {
        always_empty(&f.relation)
            || f.joins.iter().any(|j| {
                matches!(
                    j.join_operator,
                    ast::JoinOperator::Inner(_)
                        | ast::JoinOperator::Join(_)
                        | ast::JoinOperator::CrossJoin(_)
                ) && always_empty(&j.relation)
            })
    })
}

fn has_subquery(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x: &ast::Expr| {
        if matches!(
            x,
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. }
        ) || matches!(x, ast::Expr::Function(f) if matches!(f.args, ast::FunctionArguments::Subquery(_)))
        {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `ARRAY(SELECT x FROM ...)` as `(SELECT array_agg(x) FROM ...)`, or an empty array
/// when the subquery reads an always-empty catalog table.
fn array_of_subquery(mut q: ast::Query) -> ast::Expr {
    if let ast::SetExpr::Select(sel) = q.body.as_mut() {
        if select_is_empty(sel) {
            return call("make_array", Vec::new());
        }
        if sel.projection.len() == 1 {
            if let ast::SelectItem::UnnamedExpr(e)
            | ast::SelectItem::ExprWithAlias { expr: e, .. } = &mut sel.projection[0]
            {
                *e = call("array_agg", vec![e.clone()]);
            }
            q.order_by = None;
        }
    }
    ast::Expr::Subquery(Box::new(q))
}

fn split_and(e: ast::Expr, out: &mut Vec<ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        ast::Expr::Nested(inner)
            if matches!(
                *inner,
                ast::Expr::BinaryOp {
                    op: ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Refs {
    None,
    Inner,
    Outer,
    Mixed,
}

/// Which side's columns an expression reads: qualified names whose qualifier is one of
/// `inner` are the subquery's own; other qualified names are the outer query's.
fn refs(e: &ast::Expr, inner: &[String]) -> Refs {
    let mut seen = Refs::None;
    let _ = ast::visit_expressions(e, |x: &ast::Expr| {
        let side = match x {
            ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                // [schema.]table.column: the qualifier is the table.
                if inner.contains(&parts[parts.len() - 2].value.to_lowercase()) {
                    Refs::Inner
                } else {
                    Refs::Outer
                }
            }
            ast::Expr::Identifier(_) => Refs::Inner,
            _ => return ControlFlow::<()>::Continue(()),
        };
        seen = match (seen, side) {
            (Refs::None, s) => s,
            (a, b) if a == b => a,
            _ => Refs::Mixed,
        };
        ControlFlow::Continue(())
    });
    seen
}

/// Replace every subexpression whose text is a key of `ties` by its inner equivalent.
fn substitute(e: &mut ast::Expr, ties: &[(String, ast::Expr)]) {
    let _ = ast::visit_expressions_mut(e, |x: &mut ast::Expr| {
        let text = x.to_string();
        if let Some((_, inner)) = ties.iter().find(|(k, _)| *k == text) {
            *x = inner.clone();
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_string_literal(e: &ast::Expr) -> bool {
    matches!(
        e,
        ast::Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_))
    )
}

/// Rewrites the catalog spellings of PostgreSQL clients into what the planner knows:
/// `OPERATOR(pg_catalog.~)`, `COLLATE pg_catalog.default`, casts to `regclass`,
/// `regtype`, `regnamespace`, `regproc`, `oid`, `name`, `"char"` and `pg_catalog.`-
/// qualified type names, and `pg_catalog.`-qualified table functions.
pub struct CatalogSpellings;

impl ast::VisitorMut for CatalogSpellings {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        match expr {
            ast::Expr::Function(f)
                if f.name.0.len() == 1
                    && f.name.0[0]
                        .as_ident()
                        .is_some_and(|i| i.value.eq_ignore_ascii_case("array"))
                    && matches!(f.args, ast::FunctionArguments::Subquery(_)) =>
            {
                let ast::FunctionArguments::Subquery(q) = &f.args else {
                    unreachable!("matched above")
                };
                *expr = array_of_subquery(q.as_ref().clone());
            }
            ast::Expr::Subquery(q) => {
                let guards = wrap_catalog_lookup(q);
                if let Some(guard) = guards.into_iter().reduce(|a, b| ast::Expr::BinaryOp {
                    left: Box::new(a),
                    op: ast::BinaryOperator::And,
                    right: Box::new(b),
                }) {
                    *expr = ast::Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition: guard,
                            result: expr.clone(),
                        }],
                        else_result: None,
                    };
                }
            }
            ast::Expr::Collate { expr: inner, .. } => {
                *expr = inner.as_ref().clone();
            }
            ast::Expr::BinaryOp { op, .. } => {
                if let ast::BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    let new = match parts.last().map(String::as_str) {
                        Some("~") => Some(ast::BinaryOperator::PGRegexMatch),
                        Some("~*") => Some(ast::BinaryOperator::PGRegexIMatch),
                        Some("!~") => Some(ast::BinaryOperator::PGRegexNotMatch),
                        Some("!~*") => Some(ast::BinaryOperator::PGRegexNotIMatch),
                        Some("=") => Some(ast::BinaryOperator::Eq),
                        _ => None,
                    };
                    if let Some(new) = new {
                        *op = new;
                    }
                }
            }
            ast::Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                let name = match data_type {
                    ast::DataType::Custom(name, _) => name
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(|i| i.value.to_lowercase()),
                    ast::DataType::Regclass => Some("regclass".into()),
                    _ => None,
                };
                let inner_expr = inner.as_ref().clone();
                let replacement = match name.as_deref() {
                    Some("regclass") if is_string_literal(&inner_expr) => {
                        Some(call("tessera_regclass_oid", vec![inner_expr]))
                    }
                    Some("regclass") => Some(call("tessera_regclass_name", vec![inner_expr])),
                    Some("regtype") if is_string_literal(&inner_expr) => {
                        Some(call("to_regtype", vec![inner_expr]))
                    }
                    Some("regtype") => Some(call(
                        "format_type",
                        vec![inner_expr, ast::Expr::value(ast::Value::Null)],
                    )),
                    Some("regnamespace") => {
                        Some(call("tessera_regnamespace_name", vec![inner_expr]))
                    }
                    Some("regproc" | "regprocedure") => {
                        *data_type = ast::DataType::Text;
                        None
                    }
                    Some(other) => {
                        let dt = match other {
                            "text" | "name" | "char" | "bpchar" | "varchar" => {
                                Some(ast::DataType::Text)
                            }
                            "oid" | "int8" => Some(ast::DataType::BigInt(None)),
                            "int4" => Some(ast::DataType::Int(None)),
                            "int2" => Some(ast::DataType::SmallInt(None)),
                            "bool" => Some(ast::DataType::Boolean),
                            _ => None,
                        };
                        if let Some(dt) = dt {
                            *data_type = dt;
                        }
                        None
                    }
                    None => None,
                };
                if let Some(r) = replacement {
                    *expr = r;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
        skip_empty_lookups(q.body.as_mut());
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        // `pg_catalog` comes first on the search path: an unqualified `pg_type` is the
        // catalog's.
        if let ast::TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let catalog_name = name.0.len() == 1
                && name.0[0].as_ident().is_some_and(|i| {
                    i.quote_style.is_none() && i.value.to_lowercase().starts_with("pg_")
                });
            if catalog_name {
                name.0.insert(
                    0,
                    ast::ObjectNamePart::Identifier(ast::Ident::new("pg_catalog")),
                );
            }
        }
        // A set-returning function of one column, given a table alias only, names its
        // column after the alias (`generate_series(1, 10) AS aid` has column `aid`).
        if let ast::TableFactor::Table {
            name,
            args: Some(_),
            alias: Some(alias),
            ..
        } = factor
        {
            let scalar_function = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"));
            if scalar_function && alias.columns.is_empty() {
                alias.columns.push(ast::TableAliasColumnDef::from_name(
                    alias.name.value.clone(),
                ));
            }
        }
        if let ast::TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
        {
            let qualified = name.0.len() == 2
                && name.0[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"));
            if qualified {
                name.0.remove(0);
            }
        }
        ControlFlow::Continue(())
    }
}

/// In every SELECT of a set expression that reads an always-empty catalog table, replace
/// select-list items holding subqueries by NULL: no row reaches them, and some of them
/// (correlated on arrays) could not be planned.
fn skip_empty_lookups(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::SetOperation { left, right, .. } => {
            skip_empty_lookups(left);
            skip_empty_lookups(right);
        }
        ast::SetExpr::Select(sel) if select_is_empty(sel) => {
            for item in &mut sel.projection {
                let (e, name) = match item {
                    ast::SelectItem::UnnamedExpr(e) => (e, None),
                    ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                    _ => continue,
                };
                if has_subquery(e) {
                    let null = ast::Expr::value(ast::Value::Null);
                    *item = match name {
                        Some(alias) => ast::SelectItem::ExprWithAlias { expr: null, alias },
                        None => ast::SelectItem::UnnamedExpr(null),
                    };
                }
            }
        }
        _ => {}
    }
}
