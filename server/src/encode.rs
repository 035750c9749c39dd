//! Arrow values to PostgreSQL wire values, in text and binary formats.
//!
//! Each result column gets a PostgreSQL type from its Arrow type, refined by the SQL
//! type the query layer put in the field's metadata (uuid, jsonb, char(n), varchar).
//! Each value becomes a [`WireValue`], which writes PostgreSQL's text form or its binary
//! form on request.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{to_sql_checked, IsNull, ToSql};
use tessera_query::{Error as QueryError, SqlState, PG_TYPE_KEY};

use tessera_query::arrow::array::{Array, AsArray, RecordBatch};
use tessera_query::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalMonthDayNanoType, Schema, TimeUnit, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};

/// The format of column `idx` under a Bind's result format codes.
pub fn format_for(format: &Format, idx: usize) -> FieldFormat {
    match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) if codes.len() == 1 => FieldFormat::from(codes[0]),
        Format::Individual(codes) => codes
            .get(idx)
            .map(|c| FieldFormat::from(*c))
            .unwrap_or(FieldFormat::Text),
    }
}

/// The PostgreSQL type of a result field.
pub fn pg_type(field: &Field) -> Type {
    let meta = field.metadata().get(PG_TYPE_KEY).map(|s| s.as_str());
    match field.data_type() {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(..) => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match meta {
            Some("uuid") => Type::UUID,
            Some("jsonb") => Type::JSONB,
            Some("bpchar") => Type::BPCHAR,
            Some("varchar") => Type::VARCHAR,
            _ => Type::TEXT,
        },
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) => Type::INTERVAL,
        DataType::List(f) | DataType::LargeList(f) => match meta {
            Some("int2vector") => Type::INT2_VECTOR,
            Some("oidvector") => Type::OID_VECTOR,
            _ => array_type(&pg_type(f)),
        },
        _ => Type::TEXT,
    }
}

/// The array type whose elements are of type `t`.
fn array_type(t: &Type) -> Type {
    match *t {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::VARCHAR => Type::VARCHAR_ARRAY,
        Type::BPCHAR => Type::BPCHAR_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        Type::JSONB => Type::JSONB_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// An array element's text as PostgreSQL writes it inside `{...}`: quoted when empty,
/// `NULL`-like, or holding a delimiter, brace, quote, backslash or white space.
fn array_element_text(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.eq_ignore_ascii_case("null")
        && !text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if plain {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Field descriptions for a result schema.
pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f),
                format_for(format, i),
            )
        })
        .collect()
}

/// One value on its way to the wire.
#[derive(Debug)]
pub enum WireValue {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// A decimal as (unscaled value, scale).
    Numeric(i128, i8),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    /// months, days, microseconds
    Interval(i32, i32, i64),
    Uuid(uuid::Uuid),
    Jsonb(String),
    /// A one-dimensional array: its element type and elements.
    Array(Type, Vec<WireValue>),
}

type BoxErr = Box<dyn StdError + Sync + Send>;

fn numeric_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return (v * 10i128.pow((-scale) as u32)).to_string();
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale - digits.len() + 1))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

/// PostgreSQL's text for a float, given Rust's shortest round-trip scientific form of it
/// (`{:e}`): plain notation for decimal exponents in `-4..limit` (15 for float8, 6 for
/// float4), otherwise `1.5e+20` / `1e-05`; `Infinity`, `-Infinity`, `NaN`, `-0`.
pub fn float_text(sci: String, nan: bool, limit: i32) -> String {
    if nan {
        return "NaN".into();
    }
    match sci.as_str() {
        "inf" => return "Infinity".into(),
        "-inf" => return "-Infinity".into(),
        _ => {}
    }
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits.chars().all(|c| c == '0') {
        return format!("{sign}0");
    }
    if (-4..limit).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs())
    }
}

/// PostgreSQL's default (`postgres` style) interval text: `1 year 2 mons -3 days +04:05:06`.
/// A unit is plural unless its value is exactly 1; a positive field after a negative one
/// carries a `+`.
pub fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let (years, mons) = (months / 12, months % 12);
    for (value, unit) in [
        (years as i64, "year"),
        (mons as i64, "mon"),
        (days as i64, "day"),
    ] {
        if value == 0 {
            continue;
        }
        if !is_zero {
            out.push(' ');
        }
        if is_before && value > 0 {
            out.push('+');
        }
        out.push_str(&format!(
            "{value} {unit}{}",
            if value != 1 { "s" } else { "" }
        ));
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || micros != 0 {
        let m = micros.unsigned_abs();
        let (h, rem) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rem) = (rem / 60_000_000, rem % 60_000_000);
        let (s, us) = (rem / 1_000_000, rem % 1_000_000);
        let sign = if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        if !is_zero {
            out.push(' ');
        }
        out.push_str(&format!("{sign}{h:02}:{min:02}:{s:02}"));
        if us != 0 {
            out.push_str(format!(".{us:06}").trim_end_matches('0'));
        }
    }
    out
}

impl ToSql for WireValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        match self {
            WireValue::Null => Ok(IsNull::Yes),
            WireValue::Bool(v) => v.to_sql(ty, out),
            WireValue::I16(v) => v.to_sql(ty, out),
            WireValue::I32(v) => v.to_sql(ty, out),
            WireValue::I64(v) => v.to_sql(ty, out),
            WireValue::F32(v) => v.to_sql(ty, out),
            WireValue::F64(v) => v.to_sql(ty, out),
            WireValue::Numeric(v, s) => {
                let d = rust_decimal::Decimal::try_from_i128_with_scale(*v, (*s).max(0) as u32)
                    .map_err(|e| format!("numeric value too large for binary format: {e}"))?;
                d.to_sql(ty, out)
            }
            WireValue::Text(v) | WireValue::Jsonb(v) if *ty != Type::JSONB => {
                v.as_str().to_sql(ty, out)
            }
            WireValue::Text(v) | WireValue::Jsonb(v) => {
                out.put_u8(1);
                out.put_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            WireValue::Bytes(v) => v.as_slice().to_sql(ty, out),
            WireValue::Date(v) => v.to_sql(ty, out),
            WireValue::Timestamp(v) => v.to_sql(ty, out),
            WireValue::TimestampTz(v) => v.to_sql(ty, out),
            WireValue::Interval(m, d, us) => {
                out.put_i64(*us);
                out.put_i32(*d);
                out.put_i32(*m);
                Ok(IsNull::No)
            }
            WireValue::Uuid(u) => {
                out.put_slice(u.as_bytes());
                Ok(IsNull::No)
            }
            WireValue::Array(elem, items) => {
                // ndim, has-nulls flag, element type, then (length, lower bound) per
                // dimension and each element as (length, bytes), -1 for NULL.
                out.put_i32(if items.is_empty() { 0 } else { 1 });
                out.put_i32(items.iter().any(|v| matches!(v, WireValue::Null)) as i32);
                out.put_u32(elem.oid());
                if !items.is_empty() {
                    out.put_i32(items.len() as i32);
                    out.put_i32(1);
                }
                for v in items {
                    let at = out.len();
                    out.put_i32(0);
                    match v.to_sql(elem, out)? {
                        IsNull::Yes => out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
                        IsNull::No => {
                            let n = (out.len() - at - 4) as i32;
                            out[at..at + 4].copy_from_slice(&n.to_be_bytes());
                        }
                    }
                }
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl ToSqlText for WireValue {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        opts: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        let text = match self {
            WireValue::Null => return Ok(IsNull::Yes),
            WireValue::Bool(v) => return v.to_sql_text(ty, out, opts),
            WireValue::I16(v) => v.to_string(),
            WireValue::I32(v) => v.to_string(),
            WireValue::I64(v) => v.to_string(),
            WireValue::F32(v) => float_text(format!("{v:e}"), v.is_nan(), 6),
            WireValue::F64(v) => float_text(format!("{v:e}"), v.is_nan(), 15),
            WireValue::Numeric(v, s) => numeric_text(*v, *s),
            WireValue::Text(v) | WireValue::Jsonb(v) => v.clone(),
            WireValue::Bytes(v) => return v.as_slice().to_sql_text(ty, out, opts),
            WireValue::Date(v) => v.format("%Y-%m-%d").to_string(),
            WireValue::Timestamp(v) => v.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            WireValue::TimestampTz(v) => v.format("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
            WireValue::Interval(m, d, us) => interval_text(*m, *d, *us),
            WireValue::Uuid(u) => u.hyphenated().to_string(),
            WireValue::Array(elem, items) => {
                let mut parts = Vec::with_capacity(items.len());
                for v in items {
                    let mut buf = BytesMut::new();
                    match v.to_sql_text(elem, &mut buf, opts)? {
                        IsNull::Yes => parts.push("NULL".to_string()),
                        IsNull::No => {
                            parts.push(array_element_text(&String::from_utf8_lossy(&buf)))
                        }
                    }
                }
                if *ty == Type::INT2_VECTOR || *ty == Type::OID_VECTOR {
                    parts.join(" ")
                } else {
                    format!("{{{}}}", parts.join(","))
                }
            }
        };
        out.put_slice(text.as_bytes());
        Ok(IsNull::No)
    }
}

fn to_micros(v: i64, unit: &TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    }
}

/// The wire value of row `i` of `array`; `22008` for a date or timestamp beyond the
/// range the wire formats can carry.
pub fn value(array: &dyn Array, i: usize, field: &Field) -> Result<WireValue, QueryError> {
    if array.is_null(i) {
        return Ok(WireValue::Null);
    }
    let meta = field.metadata().get(PG_TYPE_KEY).map(|s| s.as_str());
    Ok(match array.data_type() {
        DataType::Boolean => WireValue::Bool(array.as_boolean().value(i)),
        DataType::Int8 => WireValue::I16(array.as_primitive::<Int8Type>().value(i) as i16),
        DataType::Int16 => WireValue::I16(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => WireValue::I32(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => WireValue::I64(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => WireValue::I16(array.as_primitive::<UInt8Type>().value(i) as i16),
        DataType::UInt16 => WireValue::I32(array.as_primitive::<UInt16Type>().value(i) as i32),
        DataType::UInt32 => WireValue::I64(array.as_primitive::<UInt32Type>().value(i) as i64),
        DataType::UInt64 => WireValue::I64(array.as_primitive::<UInt64Type>().value(i) as i64),
        DataType::Float32 => WireValue::F32(array.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => WireValue::F64(array.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, s) => {
            WireValue::Numeric(array.as_primitive::<Decimal128Type>().value(i), *s)
        }
        DataType::List(f) => {
            let items = array.as_list::<i32>().value(i);
            WireValue::Array(
                pg_type(f),
                (0..items.len())
                    .map(|j| value(items.as_ref(), j, f))
                    .collect::<Result<_, _>>()?,
            )
        }
        DataType::LargeList(f) => {
            let items = array.as_list::<i64>().value(i);
            WireValue::Array(
                pg_type(f),
                (0..items.len())
                    .map(|j| value(items.as_ref(), j, f))
                    .collect::<Result<_, _>>()?,
            )
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().value(i).to_string(),
                DataType::LargeUtf8 => array.as_string::<i64>().value(i).to_string(),
                _ => array.as_string_view().value(i).to_string(),
            };
            match meta {
                Some("uuid") => match uuid::Uuid::parse_str(&s) {
                    Ok(u) => WireValue::Uuid(u),
                    Err(_) => WireValue::Text(s),
                },
                Some("jsonb") => WireValue::Jsonb(s),
                _ => match tessera_query::char_len(field) {
                    Some(n) => WireValue::Text(tessera_query::pad_char(&s, n)),
                    None => WireValue::Text(s),
                },
            }
        }
        DataType::Binary => WireValue::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => WireValue::Bytes(array.as_binary::<i64>().value(i).to_vec()),
        DataType::BinaryView => WireValue::Bytes(array.as_binary_view().value(i).to_vec()),
        DataType::FixedSizeBinary(_) => {
            WireValue::Bytes(array.as_fixed_size_binary().value(i).to_vec())
        }
        DataType::Date32 => {
            let d = array.as_primitive::<Date32Type>().value(i);
            match d
                .checked_add(719_163)
                .and_then(NaiveDate::from_num_days_from_ce_opt)
            {
                Some(d) => WireValue::Date(d),
                None => return Err(out_of_range("date")),
            }
        }
        DataType::Timestamp(unit, tz) => {
            let raw = match unit {
                TimeUnit::Second => array
                    .as_primitive::<tessera_query::arrow::datatypes::TimestampSecondType>()
                    .value(i),
                TimeUnit::Millisecond => array
                    .as_primitive::<tessera_query::arrow::datatypes::TimestampMillisecondType>()
                    .value(i),
                TimeUnit::Microsecond => array
                    .as_primitive::<tessera_query::arrow::datatypes::TimestampMicrosecondType>()
                    .value(i),
                TimeUnit::Nanosecond => array
                    .as_primitive::<tessera_query::arrow::datatypes::TimestampNanosecondType>()
                    .value(i),
            };
            let Some(dt) = to_micros(raw, unit).and_then(DateTime::from_timestamp_micros) else {
                return Err(out_of_range("timestamp"));
            };
            if tz.is_some() {
                WireValue::TimestampTz(dt)
            } else {
                WireValue::Timestamp(dt.naive_utc())
            }
        }
        DataType::Interval(tessera_query::arrow::datatypes::IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(i);
            WireValue::Interval(v.months, v.days, v.nanoseconds / 1_000)
        }
        _ => {
            let opts = tessera_query::arrow::util::display::FormatOptions::default();
            match tessera_query::arrow::util::display::ArrayFormatter::try_new(array, &opts) {
                Ok(f) => WireValue::Text(f.value(i).to_string()),
                Err(_) => WireValue::Null,
            }
        }
    })
}

/// `22008`: a value of type `what` that the wire cannot carry.
fn out_of_range(what: &str) -> QueryError {
    QueryError::new(
        SqlState::DatetimeFieldOverflow,
        format!("{what} out of range"),
    )
}

/// Every row of the batches as a line of COPY data, values in their text form. A header
/// line travels in the first message, so that one message is one row.
pub fn copy_lines(
    schema: &Schema,
    batches: &[RecordBatch],
    format: &tessera_query::CopyFormat,
) -> Result<Vec<Vec<u8>>, QueryError> {
    let opts = FormatOptions::default();
    let mut out = Vec::new();
    if format.header {
        let names: Vec<Option<String>> = schema
            .fields()
            .iter()
            .map(|f| Some(f.name().clone()))
            .collect();
        out.push(format.encode_row(&names));
    }
    for b in batches {
        for r in 0..b.num_rows() {
            let values: Vec<Option<String>> = b
                .columns()
                .iter()
                .enumerate()
                .map(|(c, col)| {
                    let field = schema.field(c);
                    let v = value(col.as_ref(), r, field)?;
                    let mut buf = BytesMut::new();
                    Ok(match v.to_sql_text(&pg_type(field), &mut buf, &opts) {
                        Ok(IsNull::No) => Some(String::from_utf8_lossy(&buf).into_owned()),
                        _ => None,
                    })
                })
                .collect::<Result<_, QueryError>>()?;
            out.push(format.encode_row(&values));
        }
    }
    if format.header && out.len() > 1 {
        let header = out.remove(0);
        out[0].splice(0..0, header);
    }
    Ok(out)
}

/// Encode every row of the batches.
pub fn rows(
    fields: Arc<Vec<FieldInfo>>,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Vec<PgWireResult<DataRow>> {
    let mut out = Vec::new();
    let mut encoder = DataRowEncoder::new(fields);
    for b in batches {
        for r in 0..b.num_rows() {
            let mut failed = None;
            for (c, col) in b.columns().iter().enumerate() {
                let encoded = value(col.as_ref(), r, schema.field(c))
                    .map_err(|e| PgWireError::UserError(Box::new(crate::handler::error_info(&e))))
                    .and_then(|v| encoder.encode_field(&v));
                if let Err(e) = encoded {
                    failed = Some(e);
                    break;
                }
            }
            match failed {
                Some(e) => {
                    out.push(Err(e));
                    return out;
                }
                None => out.push(Ok(encoder.take_row())),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_interval_text() {
        assert_eq!(numeric_text(12345, 2), "123.45");
        assert_eq!(numeric_text(-5, 3), "-0.005");
        assert_eq!(numeric_text(7, 0), "7");
        assert_eq!(
            interval_text(14, 3, 3_723_500_000),
            "1 year 2 mons 3 days 01:02:03.5"
        );
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        // Floats as PostgreSQL 15 prints them.
        let f8 = |v: f64| float_text(format!("{v:e}"), v.is_nan(), 15);
        let f4 = |v: f32| float_text(format!("{v:e}"), v.is_nan(), 6);
        assert_eq!(f8(80.0), "80");
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(1e14), "100000000000000");
        assert_eq!(f8(1.5e-5), "1.5e-05");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(123456.789), "123456.789");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f8(f64::NAN), "NaN");
        assert_eq!(f8(1.2345678901234567e300), "1.2345678901234567e+300");
        assert_eq!(f4(1e6), "1e+06");
        assert_eq!(f4(100000.0), "100000");
        assert_eq!(f4(0.1), "0.1");
        assert_eq!(interval_text(0, -1, 0), "-1 days");
        // Cases checked against PostgreSQL 15.
        assert_eq!(interval_text(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(interval_text(10, 0, 0), "10 mons");
        assert_eq!(interval_text(0, 0, -3_600_000_000), "-01:00:00");
        assert_eq!(interval_text(0, -3, -1_250_000), "-3 days -00:00:01.25");
    }
}
