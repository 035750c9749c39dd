//! The functions clients' catalog queries call (`format_type`, `pg_get_indexdef`, ...),
//! reading the [`CatalogFacts`] of the registered catalog version.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use parking_lot::Mutex;

use super::*;

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
    /// Definitions of objects tessera never has (triggers): NULL.
    NoSuchObject,
    SerialSequence,
    JsonBuildObject,
    /// The union of two JSON objects (NULL if either is): what a rewritten
    /// `json_build_object` split around a subquery puts back together.
    JsonMerge,
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

/// A relation name as written (`public."T"`), without schema or quotes.
fn unqualified(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches('"')
        .to_string()
}

fn to_json(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        v if v.is_null() => J::Null,
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(i)) => J::from(*i),
        ScalarValue::Int16(Some(i)) => J::from(*i),
        ScalarValue::Int32(Some(i)) => J::from(*i),
        ScalarValue::Int64(Some(i)) => J::from(*i),
        ScalarValue::UInt64(Some(i)) => J::from(*i),
        ScalarValue::Float32(Some(f)) => J::from(*f as f64),
        ScalarValue::Float64(Some(f)) => J::from(*f),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => J::String(s.clone()),
        other => J::String(other.to_string()),
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
            Kind::Description | Kind::StatisticsColumns | Kind::NoSuchObject => {
                ScalarValue::Utf8(None)
            }
            Kind::SerialSequence => {
                let column = as_text(&scalar(args, 1, row)?);
                ScalarValue::Utf8(as_text(&a0).zip(column).and_then(|(table, column)| {
                    let table = unqualified(&table);
                    facts
                        .serial_sequences
                        .get(&(table, column))
                        .map(|seq| format!("public.{}", quote_ident(seq)))
                }))
            }
            Kind::JsonBuildObject => {
                let mut map = serde_json::Map::new();
                for i in (0..args.len()).step_by(2) {
                    let key = as_text(&scalar(args, i, row)?).ok_or_else(|| {
                        datafusion::error::DataFusionError::Execution(
                            "json_build_object: a key is NULL".into(),
                        )
                    })?;
                    map.insert(key, to_json(&scalar(args, i + 1, row)?));
                }
                ScalarValue::Utf8(Some(serde_json::Value::Object(map).to_string()))
            }
            Kind::JsonMerge => {
                let object =
                    |v: Option<String>| -> Option<serde_json::Map<String, serde_json::Value>> {
                        match serde_json::from_str(&v?).ok()? {
                            serde_json::Value::Object(m) => Some(m),
                            _ => None,
                        }
                    };
                let b = object(as_text(&scalar(args, 1, row)?));
                ScalarValue::Utf8(object(as_text(&a0)).zip(b).map(|(mut a, b)| {
                    a.extend(b);
                    serde_json::Value::Object(a).to_string()
                }))
            }
            Kind::RegclassName => ScalarValue::Utf8(as_i64(&a0).map(|o| {
                facts
                    .relations
                    .get(&o)
                    .map(|(_, n)| quote_ident(n))
                    .unwrap_or_else(|| o.to_string())
            })),
            Kind::ToRegclass => ScalarValue::Int64(as_text(&a0).and_then(|name| {
                // A number is an oid already ('16384'::regclass).
                if let Ok(oid) = name.trim().parse::<i64>() {
                    return Some(oid);
                }
                let name = unqualified(&name);
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
        (Kind::TableIsVisible, "pg_collation_is_visible"),
        (Kind::SerialSequence, "pg_get_serial_sequence"),
        (Kind::JsonBuildObject, "json_build_object"),
        (Kind::JsonMerge, "tessera_json_merge"),
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
        (Kind::NoSuchObject, "pg_get_triggerdef"),
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
