//! The row codec: table rows to keys and values, and back.
//!
//! ```text
//!   primary entry   /t/<table>/<primary index>/<key columns>    -> row value
//!   index entry     /t/<table>/<index>/<index columns><key columns> -> (empty)
//!   row value       [version 1] ( <column id: LEB128> <value: keycode> )*
//! ```
//!
//! A row value lists the non-key columns by *column id*, never by position, so that
//! adding a column does not rewrite old rows (a missing id reads as the column's
//! `missing` value, or NULL) and dropping one only stops reading its id. Values reuse the
//! order-preserving key encoding, which is self-delimiting and round-trips every type.
//! In memory a row is a `Vec<ScalarValue>` in the table's column order.

use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::common::ScalarValue;
use tessera_storage::keycode::{self, KeyKind, KeyValue};

use crate::catalog::{IndexDesc, TableDesc};
use crate::error::{Error, Result, SqlState};
use crate::types::{SqlType, UTC};

const ROW_VERSION: u8 = 1;

/// Convert a value of column type `ty` to its key form.
pub fn to_key_value(v: &ScalarValue, ty: SqlType) -> Result<KeyValue> {
    if v.is_null() {
        return Ok(KeyValue::Null);
    }
    use ScalarValue as S;
    Ok(match (v, ty) {
        (S::Boolean(Some(b)), _) => KeyValue::Bool(*b),
        (S::Int16(Some(i)), _) => KeyValue::Int(*i as i64),
        (S::Int32(Some(i)), _) => KeyValue::Int(*i as i64),
        (S::Int64(Some(i)), _) => KeyValue::Int(*i),
        (S::Float32(Some(f)), _) => KeyValue::Float(*f as f64),
        (S::Float64(Some(f)), _) => KeyValue::Float(*f),
        (S::Decimal128(Some(i), _, s), _) => KeyValue::Decimal(*i, *s as u8),
        (S::Utf8(Some(s)), SqlType::Uuid) => KeyValue::Bytes(parse_uuid(s)?.to_vec()),
        (S::Utf8(Some(s)), _) => KeyValue::Text(s.clone()),
        (S::Binary(Some(b)), _) => KeyValue::Bytes(b.clone()),
        (S::Date32(Some(d)), _) => KeyValue::Int(*d as i64),
        (S::TimestampMicrosecond(Some(t), _), _) => KeyValue::Int(*t),
        (S::IntervalMonthDayNano(Some(i)), _) => {
            KeyValue::Interval(i.months, i.days, i.nanoseconds)
        }
        (other, ty) => {
            return Err(Error::internal(format!(
                "value {other:?} does not fit column type {}",
                ty.pg_name()
            )))
        }
    })
}

/// Convert a key form back to a value of column type `ty`.
pub fn from_key_value(v: KeyValue, ty: SqlType) -> Result<ScalarValue> {
    use ScalarValue as S;
    let null = || ScalarValue::try_from(&ty.arrow()).map_err(Error::from);
    Ok(match (v, ty) {
        (KeyValue::Null, _) => null()?,
        (KeyValue::Bool(b), SqlType::Bool) => S::Boolean(Some(b)),
        (KeyValue::Int(i), SqlType::Int2) => S::Int16(Some(i as i16)),
        (KeyValue::Int(i), SqlType::Int4) => S::Int32(Some(i as i32)),
        (KeyValue::Int(i), SqlType::Int8) => S::Int64(Some(i)),
        (KeyValue::Float(f), SqlType::Float4) => S::Float32(Some(f as f32)),
        (KeyValue::Float(f), SqlType::Float8) => S::Float64(Some(f)),
        (KeyValue::Decimal(i, s), SqlType::Numeric(_)) => {
            let datafusion::arrow::datatypes::DataType::Decimal128(p, scale) = ty.arrow() else {
                return Err(Error::internal("numeric is not decimal"));
            };
            let i = rescale(i, s as i8, scale)?;
            S::Decimal128(Some(i), p, scale)
        }
        (
            KeyValue::Text(s),
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Jsonb,
        ) => S::Utf8(Some(s)),
        (KeyValue::Bytes(b), SqlType::Uuid) => S::Utf8(Some(format_uuid(&b)?)),
        (KeyValue::Bytes(b), SqlType::Bytea) => S::Binary(Some(b)),
        (KeyValue::Int(d), SqlType::Date) => S::Date32(Some(d as i32)),
        (KeyValue::Int(t), SqlType::Timestamp) => S::TimestampMicrosecond(Some(t), None),
        (KeyValue::Int(t), SqlType::TimestampTz) => {
            S::TimestampMicrosecond(Some(t), Some(UTC.into()))
        }
        (KeyValue::Interval(m, d, n), SqlType::Interval) => {
            S::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(m, d, n)))
        }
        (v, ty) => {
            return Err(Error::internal(format!(
                "stored {v:?} is not a {}",
                ty.pg_name()
            )))
        }
    })
}

fn rescale(i: i128, from: i8, to: i8) -> Result<i128> {
    let diff = to as i32 - from as i32;
    let f = 10i128
        .checked_pow(diff.unsigned_abs())
        .ok_or_else(|| Error::internal("scale"))?;
    Ok(if diff >= 0 {
        i.checked_mul(f)
            .ok_or_else(|| Error::internal("scale overflow"))?
    } else {
        i / f
    })
}

/// Parse a uuid in any of PostgreSQL's accepted spellings.
pub fn parse_uuid(s: &str) -> Result<[u8; 16]> {
    uuid::Uuid::try_parse(s.trim())
        .map(|u| *u.as_bytes())
        .map_err(|_| {
            Error::new(
                SqlState::InvalidTextRepresentation,
                format!("invalid input syntax for type uuid: \"{s}\""),
            )
        })
}

fn format_uuid(b: &[u8]) -> Result<String> {
    let u = uuid::Uuid::from_slice(b).map_err(|_| Error::internal("corrupt uuid"))?;
    Ok(u.hyphenated().to_string())
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get_varint(input: &mut &[u8]) -> Result<u32> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let (&b, rest) = input
            .split_first()
            .ok_or_else(|| Error::internal("truncated row"))?;
        *input = rest;
        v |= ((b & 0x7F) as u32) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::internal("bad varint in row"))
}

/// Encode one non-key column value as stored for rows written before the column existed.
pub fn encode_single(v: &ScalarValue, ty: SqlType) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    keycode::encode_stored_value(&mut out, &to_key_value(v, ty)?);
    Ok(out)
}

/// The primary-index key of `row`.
pub fn primary_key(t: &TableDesc, row: &[ScalarValue]) -> Result<Vec<u8>> {
    index_key(t, &t.primary, row)
}

/// The key of `row` in `index`: the index columns, then (for a secondary index) the
/// primary-key columns that make the entry unique.
pub fn index_key(t: &TableDesc, index: &IndexDesc, row: &[ScalarValue]) -> Result<Vec<u8>> {
    let mut cols = Vec::new();
    let mut push = |id: u32, desc: bool| -> Result<()> {
        let pos = t
            .position(id)
            .ok_or_else(|| Error::internal("index column missing"))?;
        keycode::encode_value(
            &mut cols,
            &to_key_value(&row[pos], t.columns[pos].ty)?,
            desc,
        );
        Ok(())
    };
    for (id, desc) in &index.columns {
        push(*id, *desc)?;
    }
    if index.id != t.primary.id {
        for (id, desc) in &t.primary.columns {
            push(*id, *desc)?;
        }
    }
    Ok(KeyKind::Table {
        table: t.id,
        index: index.id,
        columns: cols,
    }
    .encode())
}

/// The key prefix of `index` entries whose leading columns equal `values`.
pub fn index_prefix(t: &TableDesc, index: &IndexDesc, values: &[ScalarValue]) -> Result<Vec<u8>> {
    let mut cols = Vec::new();
    for ((id, desc), v) in index.columns.iter().zip(values) {
        let col = t
            .column_by_id(*id)
            .ok_or_else(|| Error::internal("index column missing"))?;
        keycode::encode_value(&mut cols, &to_key_value(v, col.ty)?, *desc);
    }
    Ok(KeyKind::Table {
        table: t.id,
        index: index.id,
        columns: cols,
    }
    .encode())
}

/// The primary-key values encoded at the end of a secondary index key.
pub fn primary_key_from_index_key(t: &TableDesc, index: &IndexDesc, key: &[u8]) -> Result<Vec<u8>> {
    let KeyKind::Table { columns, .. } = KeyKind::decode(key)? else {
        return Err(Error::internal("not a table key"));
    };
    let mut input = columns.as_slice();
    for (_, desc) in &index.columns {
        keycode::decode_value(&mut input, *desc)?;
    }
    Ok(KeyKind::Table {
        table: t.id,
        index: t.primary.id,
        columns: input.to_vec(),
    }
    .encode())
}

/// The stored value of `row` (its non-key columns).
pub fn encode_row(t: &TableDesc, row: &[ScalarValue]) -> Result<Vec<u8>> {
    let mut out = vec![ROW_VERSION];
    for (col, v) in t.columns.iter().zip(row) {
        if t.is_key_column(col.id) {
            continue;
        }
        put_varint(&mut out, col.id);
        keycode::encode_stored_value(&mut out, &to_key_value(v, col.ty)?);
    }
    Ok(out)
}

/// Rebuild a full row from a primary-index key and its stored value.
pub fn decode_row(t: &TableDesc, key: &[u8], value: &[u8]) -> Result<Vec<ScalarValue>> {
    let mut row: Vec<Option<ScalarValue>> = vec![None; t.columns.len()];
    let KeyKind::Table { columns, .. } = KeyKind::decode(key)? else {
        return Err(Error::internal("not a table key"));
    };
    let mut input = columns.as_slice();
    for (id, desc) in &t.primary.columns {
        let pos = t
            .position(*id)
            .ok_or_else(|| Error::internal("key column missing"))?;
        row[pos] = Some(from_key_value(
            keycode::decode_value(&mut input, *desc)?,
            t.columns[pos].ty,
        )?);
    }
    let (&version, mut input) = value
        .split_first()
        .ok_or_else(|| Error::internal("empty row"))?;
    if version != ROW_VERSION {
        return Err(Error::internal(format!("unknown row version {version}")));
    }
    while !input.is_empty() {
        let id = get_varint(&mut input)?;
        let kv = keycode::decode_value(&mut input, false)?;
        if let Some(pos) = t.position(id) {
            row[pos] = Some(from_key_value(kv, t.columns[pos].ty)?);
        }
    }
    row.into_iter()
        .zip(&t.columns)
        .map(|(v, col)| match v {
            Some(v) => Ok(v),
            None => match &col.missing {
                Some(bytes) => {
                    let mut input = bytes.as_slice();
                    from_key_value(keycode::decode_value(&mut input, false)?, col.ty)
                }
                None => ScalarValue::try_from(&col.ty.arrow()).map_err(Error::from),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDesc, PRIMARY_INDEX_ID};
    use proptest::prelude::*;

    fn col(id: u32, ty: SqlType) -> ColumnDesc {
        ColumnDesc {
            id,
            name: format!("c{id}"),
            ty,
            nullable: true,
            default: None,
            missing: None,
            hidden: false,
        }
    }

    const TYPES: [SqlType; 17] = [
        SqlType::Int8,
        SqlType::Bool,
        SqlType::Int2,
        SqlType::Int4,
        SqlType::Float4,
        SqlType::Float8,
        SqlType::Numeric(Some((12, 3))),
        SqlType::Numeric(None),
        SqlType::Text,
        SqlType::Varchar(Some(10)),
        SqlType::Char(4),
        SqlType::Bytea,
        SqlType::Date,
        SqlType::Timestamp,
        SqlType::TimestampTz,
        SqlType::Interval,
        SqlType::Uuid,
    ];

    fn table() -> TableDesc {
        let mut columns: Vec<ColumnDesc> = TYPES
            .iter()
            .enumerate()
            .map(|(i, t)| col(i as u32 + 1, *t))
            .collect();
        columns.push(col(99, SqlType::Jsonb));
        TableDesc {
            id: 100,
            name: "t".into(),
            columns,
            primary: IndexDesc {
                id: PRIMARY_INDEX_ID,
                name: "t_pkey".into(),
                columns: vec![(1, false), (11, true)],
                unique: true,
                constraint: true,
            },
            indexes: vec![],
            next_column_id: 100,
            next_index_id: 2,
            foreign_keys: vec![],
        }
    }

    fn value_of(ty: SqlType) -> BoxedStrategy<ScalarValue> {
        use ScalarValue as S;
        let v: BoxedStrategy<ScalarValue> = match ty {
            SqlType::Bool => any::<bool>().prop_map(|b| S::Boolean(Some(b))).boxed(),
            SqlType::Int2 => any::<i16>().prop_map(|b| S::Int16(Some(b))).boxed(),
            SqlType::Int4 => any::<i32>().prop_map(|b| S::Int32(Some(b))).boxed(),
            SqlType::Int8 => any::<i64>().prop_map(|b| S::Int64(Some(b))).boxed(),
            SqlType::Float4 => any::<f32>()
                .prop_filter("not nan", |f| !f.is_nan())
                .prop_map(|b| S::Float32(Some(b)))
                .boxed(),
            SqlType::Float8 => any::<f64>()
                .prop_filter("not nan", |f| !f.is_nan())
                .prop_map(|b| S::Float64(Some(b)))
                .boxed(),
            SqlType::Numeric(_) => {
                let datafusion::arrow::datatypes::DataType::Decimal128(p, s) = ty.arrow() else {
                    unreachable!()
                };
                (-999_999_999i128..999_999_999)
                    .prop_map(move |i| S::Decimal128(Some(i), p, s))
                    .boxed()
            }
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Jsonb => {
                ".{0,8}".prop_map(|s| S::Utf8(Some(s))).boxed()
            }
            SqlType::Bytea => proptest::collection::vec(any::<u8>(), 0..10)
                .prop_map(|b| S::Binary(Some(b)))
                .boxed(),
            SqlType::Date => any::<i32>().prop_map(|d| S::Date32(Some(d))).boxed(),
            SqlType::Timestamp => any::<i64>()
                .prop_map(|d| S::TimestampMicrosecond(Some(d), None))
                .boxed(),
            SqlType::TimestampTz => any::<i64>()
                .prop_map(|d| S::TimestampMicrosecond(Some(d), Some(UTC.into())))
                .boxed(),
            SqlType::Interval => (any::<i32>(), any::<i32>(), any::<i64>())
                .prop_map(|(m, d, n)| {
                    S::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
                        m % 10000,
                        d % 10000,
                        n,
                    )))
                })
                .boxed(),
            SqlType::Uuid => any::<[u8; 16]>()
                .prop_map(|b| S::Utf8(Some(uuid::Uuid::from_bytes(b).to_string())))
                .boxed(),
        };
        if matches!(ty, SqlType::Int8 | SqlType::Char(_)) {
            v // key columns: never NULL
        } else {
            prop_oneof![1 => Just(ScalarValue::try_from(&ty.arrow()).unwrap()), 4 => v].boxed()
        }
    }

    fn row() -> impl Strategy<Value = Vec<ScalarValue>> {
        let t = table();
        t.columns.iter().map(|c| value_of(c.ty)).collect::<Vec<_>>()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every supported type round-trips through key + value encoding.
        #[test]
        fn rows_round_trip(row in row()) {
            let t = table();
            let key = primary_key(&t, &row).unwrap();
            let value = encode_row(&t, &row).unwrap();
            prop_assert_eq!(decode_row(&t, &key, &value).unwrap(), row);
        }
    }

    /// Adding a column needs no rewrite: old rows read its `missing` value; dropping a
    /// column ignores its stored id.
    #[test]
    fn schema_changes_do_not_rewrite_rows() {
        let mut t = table();
        t.columns.truncate(3);
        t.primary.columns = vec![(1, false)];
        let row = vec![
            ScalarValue::Int64(Some(7)),
            ScalarValue::Boolean(Some(true)),
            ScalarValue::Int16(Some(3)),
        ];
        let (key, value) = (
            primary_key(&t, &row).unwrap(),
            encode_row(&t, &row).unwrap(),
        );
        let mut added = t.clone();
        let mut c = col(50, SqlType::Text);
        c.missing =
            Some(encode_single(&ScalarValue::Utf8(Some("dflt".into())), SqlType::Text).unwrap());
        added.columns.push(c);
        added.columns.push(col(51, SqlType::Int4));
        let got = decode_row(&added, &key, &value).unwrap();
        assert_eq!(got[3], ScalarValue::Utf8(Some("dflt".into())));
        assert_eq!(got[4], ScalarValue::Int32(None));
        let mut dropped = t.clone();
        dropped.columns.remove(1);
        assert_eq!(
            decode_row(&dropped, &key, &value).unwrap(),
            vec![row[0].clone(), row[2].clone()]
        );
    }
}
