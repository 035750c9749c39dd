//! Assignment casts: turning the value an expression produced into the value a column
//! stores, as PostgreSQL's assignment cast would. A cast exists between numbers, between
//! dates and timestamps, into text, and from quoted literals into anything they parse as;
//! anything else is 42804. bytea and interval text are parsed here in PostgreSQL's own
//! syntax, which arrow's casts do not accept.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, IntervalMonthDayNanoArray, StringArray,
};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano};

use crate::catalog::TableDesc;
use crate::error::{Error, Result, SqlState};
use crate::types::SqlType;

/// Cast a result column to a column's type, as PostgreSQL's assignment cast would.
pub(crate) fn cast_column(
    array: &ArrayRef,
    ty: SqlType,
    table: &TableDesc,
    column: &str,
) -> Result<ArrayRef> {
    let target = ty.arrow();
    if matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        // Types whose text input arrow cannot parse the way PostgreSQL does.
        match ty {
            SqlType::Bytea => {
                let vals = parse_each(array, parse_bytea)?;
                return Ok(Arc::new(BinaryArray::from_iter(vals)));
            }
            SqlType::Interval => {
                let vals = parse_each(array, |s| {
                    let (m, d, us) = crate::interval::parse_interval(s).ok_or_else(|| {
                        Error::new(
                            SqlState::InvalidDatetimeFormat,
                            format!("invalid input syntax for type interval: \"{s}\""),
                        )
                        .with_table(&table.name)
                        .with_column(column)
                    })?;
                    Ok(IntervalMonthDayNano::new(m, d, us.saturating_mul(1000)))
                })?;
                return Ok(Arc::new(IntervalMonthDayNanoArray::from(vals)));
            }
            _ => {}
        }
    }
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    if !assignable(array.data_type(), ty) {
        return Err(Error::new(
            SqlState::DatatypeMismatch,
            format!(
                "column \"{column}\" is of type {} but expression is of type {}",
                ty.pg_name(),
                pg_name_of(array.data_type())
            ),
        )
        .with_table(&table.name)
        .with_column(column));
    }
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, &target, &opts).map_err(|e| {
        let msg = e.to_string();
        let m = msg.to_lowercase();
        let datetime = matches!(
            ty,
            SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz | SqlType::Interval
        );
        let state = if m.contains("overflow")
            || m.contains("can't cast value")
            || m.contains("too large")
            || m.contains("out of range")
        {
            SqlState::NumericValueOutOfRange
        } else if datetime
            && (m.contains("cannot cast string") || m.contains("parse") || m.contains("invalid"))
        {
            SqlState::InvalidDatetimeFormat
        } else if m.contains("cannot cast string") || m.contains("parse") || m.contains("invalid") {
            SqlState::InvalidTextRepresentation
        } else {
            SqlState::DatatypeMismatch
        };
        let message = match state {
            SqlState::NumericValueOutOfRange => format!(
                "value out of range for type {} (column \"{column}\")",
                ty.pg_name()
            ),
            SqlState::InvalidTextRepresentation | SqlState::InvalidDatetimeFormat => {
                format!(
                    "invalid input syntax for type {} (column \"{column}\"): {msg}",
                    ty.pg_name()
                )
            }
            _ => format!(
                "column \"{column}\" is of type {} but expression is of type {}",
                ty.pg_name(),
                array.data_type()
            ),
        };
        Error::new(state, message)
            .with_table(&table.name)
            .with_column(column)
    })
}

/// Whether PostgreSQL would store a value of arrow type `src` into a column of type `ty`
/// (an implicit or assignment cast exists). Strings are accepted everywhere because
/// quoted literals arrive as strings; they are then parsed, and fail with 22P02/22007.
fn assignable(src: &DataType, ty: SqlType) -> bool {
    use DataType as D;
    let numeric = |d: &DataType| {
        matches!(
            d,
            D::Int8
                | D::Int16
                | D::Int32
                | D::Int64
                | D::UInt8
                | D::UInt16
                | D::UInt32
                | D::UInt64
                | D::Float16
                | D::Float32
                | D::Float64
                | D::Decimal128(..)
                | D::Decimal256(..)
        )
    };
    if matches!(src, D::Null | D::Utf8 | D::LargeUtf8 | D::Utf8View) {
        return true;
    }
    match ty {
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => true,
        SqlType::Int2
        | SqlType::Int4
        | SqlType::Int8
        | SqlType::Float4
        | SqlType::Float8
        | SqlType::Numeric(_) => numeric(src),
        SqlType::Bool => matches!(src, D::Boolean),
        SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz => {
            matches!(src, D::Date32 | D::Date64 | D::Timestamp(..))
        }
        SqlType::Interval => matches!(src, D::Interval(_) | D::Duration(_)),
        SqlType::Bytea => matches!(src, D::Binary | D::LargeBinary | D::BinaryView),
        SqlType::Uuid | SqlType::Jsonb => false,
    }
}

/// PostgreSQL's name for the type of an expression, for error messages.
fn pg_name_of(dt: &DataType) -> &'static str {
    use DataType as D;
    match dt {
        D::Boolean => "boolean",
        D::Int8 | D::Int16 | D::UInt8 => "smallint",
        D::Int32 | D::UInt16 => "integer",
        D::Int64 | D::UInt32 | D::UInt64 => "bigint",
        D::Float16 | D::Float32 => "real",
        D::Float64 => "double precision",
        D::Decimal128(..) | D::Decimal256(..) => "numeric",
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "text",
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => "bytea",
        D::Date32 | D::Date64 => "date",
        D::Timestamp(_, None) => "timestamp without time zone",
        D::Timestamp(_, Some(_)) => "timestamp with time zone",
        D::Interval(_) | D::Duration(_) => "interval",
        _ => "unknown",
    }
}

fn parse_bytea(s: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::new(
            SqlState::InvalidTextRepresentation,
            format!("invalid input syntax for type bytea: \"{s}\""),
        )
    };
    if let Some(hex) = s.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return Err(bad());
        }
        return hex
            .chunks(2)
            .map(|c| {
                u8::from_str_radix(std::str::from_utf8(c).map_err(|_| bad())?, 16)
                    .map_err(|_| bad())
            })
            .collect();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else if i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from_str_radix(
                    std::str::from_utf8(&b[i + 1..i + 4]).map_err(|_| bad())?,
                    8,
                )
                .map_err(|_| bad())?;
                out.push(u8::try_from(v).map_err(|_| bad())?);
                i += 4;
            } else {
                return Err(bad());
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Parse every non-NULL string of a string array with `parse`.
fn parse_each<T>(array: &ArrayRef, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<Option<T>>> {
    let strings = cast_with_options(array, &DataType::Utf8, &CastOptions::default())
        .map_err(Error::internal)?;
    let strings = strings
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to utf8 gives a string array");
    strings.iter().map(|s| s.map(&parse).transpose()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_input_formats() {
        assert_eq!(parse_bytea("\\x0aff").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(parse_bytea("ab\\\\c\\001").unwrap(), b"ab\\c\x01".to_vec());
        assert_eq!(
            parse_bytea("\\x0").unwrap_err().state,
            SqlState::InvalidTextRepresentation
        );
    }
}
