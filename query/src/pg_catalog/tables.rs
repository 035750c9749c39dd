//! The catalog tables, as in-memory tables built from one catalog version.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;

use super::*;
use crate::catalog::{Catalog, IndexDesc, TableDesc};
use crate::error::{Error, Result};
use crate::types::SqlType;

pub(super) struct Table {
    pub(super) name: &'static str,
    fields: Vec<Field>,
    rows: Vec<Vec<ScalarValue>>,
}

fn i64v(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}
pub(super) fn i32v(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}
fn i16v(v: i16) -> ScalarValue {
    ScalarValue::Int16(Some(v))
}
pub(super) fn text(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_string()))
}
fn boolv(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}
pub(super) fn null_text() -> ScalarValue {
    ScalarValue::Utf8(None)
}
fn int2_list(v: &[i16]) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list_nullable(
        &v.iter().map(|x| i16v(*x)).collect::<Vec<_>>(),
        &DataType::Int16,
    ))
}

fn oid_list(v: &[i64]) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list_nullable(
        &v.iter().map(|x| i64v(*x)).collect::<Vec<_>>(),
        &DataType::Int64,
    ))
}

/// The default btree operator classes of the built-in types, with PostgreSQL 15's oids:
/// (oid, name, family, input type). `varchar` is indexed with `text_ops`.
const OPCLASSES: &[(i64, &str, i64, i64)] = &[
    (10003, "bool_ops", 424, 16),
    (10006, "bytea_ops", 428, 17),
    (3124, "int8_ops", 1976, 20),
    (1979, "int2_ops", 1976, 21),
    (1978, "int4_ops", 1976, 23),
    (3126, "text_ops", 1994, 25),
    (10012, "float4_ops", 1970, 700),
    (3123, "float8_ops", 1970, 701),
    (10004, "bpchar_ops", 426, 1042),
    (3122, "date_ops", 434, 1082),
    (3128, "timestamp_ops", 434, 1114),
    (3127, "timestamptz_ops", 434, 1184),
    (10022, "interval_ops", 1982, 1186),
    (3125, "numeric_ops", 1988, 1700),
    (10065, "uuid_ops", 2968, 2950),
    (10088, "jsonb_ops", 4033, 3802),
];

/// The operator class an index uses for a column of type `ty`.
fn opclass(ty: SqlType) -> i64 {
    let input = match type_oid(ty) {
        1043 => 25,
        oid => oid,
    };
    OPCLASSES.iter().find(|o| o.3 == input).map_or(0, |o| o.0)
}

/// Columns of a catalog table, by a compact spec: `name:type` with types
/// o (oid, int8), i4, i2, f4, b (bool), t (text), l2 (int2[]), lt (text[]),
/// v2 (int2vector), vo (oidvector).
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
                "vo" => DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                "v2" => DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
                other => panic!("catalog column type {other}"),
            };
            let field = Field::new(name, dt, true);
            // int2vector and oidvector: arrays that print as space-separated lists.
            match ty {
                "v2" | "vo" => field.with_metadata(
                    [(
                        crate::types::PG_TYPE_KEY.to_string(),
                        if ty == "v2" {
                            "int2vector"
                        } else {
                            "oidvector"
                        }
                        .to_string(),
                    )]
                    .into(),
                ),
                _ => field,
            }
        })
        .collect()
}

pub(super) fn table(name: &'static str, spec: &str, rows: Vec<Vec<ScalarValue>>) -> Table {
    Table {
        name,
        fields: fields(spec),
        rows,
    }
}

impl Table {
    pub(super) fn into_mem(self) -> Result<MemTable> {
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
pub(super) fn tables(
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
    let class_row = |oid: i64,
                     name: &str,
                     kind: &str,
                     am: i64,
                     natts: i16,
                     has_index: bool,
                     has_triggers: bool| {
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
            boolv(has_triggers),
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
        // PostgreSQL checks foreign keys with triggers on both tables; psql lists a
        // table's foreign keys (and who references it) only when it has triggers.
        let referenced = catalog
            .tables
            .values()
            .any(|o| o.foreign_keys.iter().any(|fk| fk.table == t.id));
        class.push(class_row(
            oid,
            &t.name,
            "r",
            HEAP_AM,
            visible.len() as i16,
            !t.has_rowid() || !t.indexes.is_empty(),
            referenced || !t.foreign_keys.is_empty(),
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
                    text(&super::defaults::default_text(d, c.ty)),
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
                oid_list(
                    &i.columns
                        .iter()
                        .map(|(id, _)| t.column_by_id(*id).map_or(0, |c| opclass(c.ty)))
                        .collect::<Vec<_>>(),
                ),
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
        if let Some((table, column)) = s.owned_by {
            let owner = catalog.table_by_id(table);
            if let Some((t, c)) = owner.and_then(|t| Some((t, t.column_by_id(column)?))) {
                facts
                    .serial_sequences
                    .insert((t.name.clone(), c.name.clone()), s.name.clone());
            }
        }
        let oid = sequence_oid(s.id);
        facts
            .relations
            .insert(oid, ("public".into(), s.name.clone()));
        class.push(class_row(oid, &s.name, "S", 0, 3, false, false));
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
             indisreplident:b indkey:v2 indcollation:t indclass:vo indoption:v2 \
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
        table(
            "pg_opclass",
            "oid:o opcmethod:o opcname:t opcnamespace:o opcowner:o opcfamily:o opcintype:o \
             opcdefault:b opckeytype:o",
            OPCLASSES
                .iter()
                .map(|(oid, name, family, input)| {
                    vec![
                        i64v(*oid),
                        i64v(BTREE_AM),
                        text(name),
                        i64v(PG_CATALOG_NS),
                        i64v(OWNER),
                        i64v(*family),
                        i64v(*input),
                        boolv(true),
                        i64v(0),
                    ]
                })
                .collect(),
        ),
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
