//! SQL types: how each maps onto Arrow for execution, onto the key encoding, and onto
//! PostgreSQL type names for the wire.
//!
//! Every table column has a [`SqlType`]. Arrow (DataFusion's type system) carries the
//! values; where Arrow has no exact counterpart (uuid, jsonb, char(n)), the Arrow field
//! carries the SQL type name in its metadata under [`PG_TYPE_KEY`] so the wire layer
//! can report the right PostgreSQL type.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, CharacterLength, ExactNumberInfo, TimezoneInfo};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SqlState};

/// Arrow field metadata key naming the PostgreSQL type of a column.
pub const PG_TYPE_KEY: &str = "tessera.pg_type";

/// Time zone used for timestamptz values (stored as UTC instants).
pub const UTC: &str = "+00:00";

/// Scale given to `numeric` without an explicit precision and scale.
pub const NUMERIC_DEFAULT_SCALE: i8 = 6;

/// A column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    /// boolean
    Bool,
    /// smallint
    Int2,
    /// integer
    Int4,
    /// bigint
    Int8,
    /// real
    Float4,
    /// double precision
    Float8,
    /// numeric(precision, scale); `None` for unconstrained numeric
    Numeric(Option<(u8, i8)>),
    /// text
    Text,
    /// varchar(n)
    Varchar(Option<u32>),
    /// char(n), blank-padded
    Char(u32),
    /// bytea
    Bytea,
    /// date
    Date,
    /// timestamp without time zone
    Timestamp,
    /// timestamp with time zone
    TimestampTz,
    /// interval
    Interval,
    /// uuid
    Uuid,
    /// jsonb
    Jsonb,
}

impl SqlType {
    /// The Arrow type that carries values of this type.
    pub fn arrow(self) -> DataType {
        match self {
            SqlType::Bool => DataType::Boolean,
            SqlType::Int2 => DataType::Int16,
            SqlType::Int4 => DataType::Int32,
            SqlType::Int8 => DataType::Int64,
            SqlType::Float4 => DataType::Float32,
            SqlType::Float8 => DataType::Float64,
            SqlType::Numeric(Some((p, s))) => DataType::Decimal128(p, s),
            SqlType::Numeric(None) => DataType::Decimal128(38, NUMERIC_DEFAULT_SCALE),
            SqlType::Text
            | SqlType::Varchar(_)
            | SqlType::Char(_)
            | SqlType::Uuid
            | SqlType::Jsonb => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
        }
    }

    /// The PostgreSQL type name, as `format_type` writes it.
    pub fn pg_name(self) -> String {
        match self {
            SqlType::Bool => "boolean".into(),
            SqlType::Int2 => "smallint".into(),
            SqlType::Int4 => "integer".into(),
            SqlType::Int8 => "bigint".into(),
            SqlType::Float4 => "real".into(),
            SqlType::Float8 => "double precision".into(),
            SqlType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            SqlType::Numeric(None) => "numeric".into(),
            SqlType::Text => "text".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Char(n) => format!("character({n})"),
            SqlType::Bytea => "bytea".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Uuid => "uuid".into(),
            SqlType::Jsonb => "jsonb".into(),
        }
    }

    /// The short name put in Arrow field metadata for the wire layer.
    pub fn wire_name(self) -> &'static str {
        match self {
            SqlType::Bool => "bool",
            SqlType::Int2 => "int2",
            SqlType::Int4 => "int4",
            SqlType::Int8 => "int8",
            SqlType::Float4 => "float4",
            SqlType::Float8 => "float8",
            SqlType::Numeric(_) => "numeric",
            SqlType::Text => "text",
            SqlType::Varchar(_) => "varchar",
            SqlType::Char(_) => "bpchar",
            SqlType::Bytea => "bytea",
            SqlType::Date => "date",
            SqlType::Timestamp => "timestamp",
            SqlType::TimestampTz => "timestamptz",
            SqlType::Interval => "interval",
            SqlType::Uuid => "uuid",
            SqlType::Jsonb => "jsonb",
        }
    }

    /// An Arrow field of this type.
    pub fn field(self, name: &str, nullable: bool) -> Field {
        let mut meta = HashMap::new();
        meta.insert(PG_TYPE_KEY.to_string(), self.wire_name().to_string());
        if let SqlType::Char(n) = self {
            meta.insert(crate::bpchar::CHAR_LEN_KEY.to_string(), n.to_string());
        }
        Field::new(name, self.arrow(), nullable).with_metadata(meta)
    }

    /// Whether values of this type can be part of a primary key or index key.
    pub fn keyable(self) -> bool {
        !matches!(self, SqlType::Jsonb)
    }

    /// The type of a column declared as `dt`, and whether it is a serial (an integer
    /// with a sequence default).
    pub fn from_ast(dt: &ast::DataType, column: &str) -> Result<(SqlType, bool)> {
        use ast::DataType as D;
        let len = |l: &Option<CharacterLength>| match l {
            Some(CharacterLength::IntegerLength { length, .. }) => Some(*length as u32),
            _ => None,
        };
        let t = match dt {
            D::Bool | D::Boolean => SqlType::Bool,
            D::SmallInt(_) | D::Int2(_) => SqlType::Int2,
            D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int4,
            D::BigInt(_) | D::Int8(_) => SqlType::Int8,
            D::Real | D::Float4 => SqlType::Float4,
            D::Float8 | D::DoublePrecision | D::Double(_) => SqlType::Float8,
            D::Float(info) => match info {
                ExactNumberInfo::Precision(p) if *p <= 24 => SqlType::Float4,
                _ => SqlType::Float8,
            },
            D::Numeric(info) | D::Decimal(info) | D::Dec(info) => match info {
                ExactNumberInfo::None => SqlType::Numeric(None),
                ExactNumberInfo::Precision(p) => {
                    SqlType::Numeric(Some((precision(*p, column)?, 0)))
                }
                ExactNumberInfo::PrecisionAndScale(p, s) => {
                    let p = precision(*p, column)?;
                    if *s < 0 || *s > p as i64 {
                        return Err(Error::new(
                            SqlState::InvalidParameterValue,
                            format!("NUMERIC scale {s} must be between 0 and precision {p}"),
                        ));
                    }
                    SqlType::Numeric(Some((p, *s as i8)))
                }
            },
            D::Text | D::String(None) => SqlType::Text,
            D::Varchar(l) | D::CharacterVarying(l) | D::CharVarying(l) => SqlType::Varchar(len(l)),
            D::Char(l) | D::Character(l) => SqlType::Char(len(l).unwrap_or(1)),
            D::Bytea => SqlType::Bytea,
            D::Date => SqlType::Date,
            D::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => SqlType::TimestampTz,
            D::Timestamp(_, _) => SqlType::Timestamp,
            D::Interval { .. } => SqlType::Interval,
            D::Uuid => SqlType::Uuid,
            D::JSONB | D::JSON => SqlType::Jsonb,
            D::Custom(name, args) if args.is_empty() => {
                let n = name.to_string().to_lowercase();
                return match n.as_str() {
                    "serial" | "serial4" => Ok((SqlType::Int4, true)),
                    "bigserial" | "serial8" => Ok((SqlType::Int8, true)),
                    "smallserial" | "serial2" => Ok((SqlType::Int2, true)),
                    "timestamptz" => Ok((SqlType::TimestampTz, false)),
                    "bpchar" => Ok((SqlType::Char(1), false)),
                    "float" => Ok((SqlType::Float8, false)),
                    _ => Err(Error::new(
                        SqlState::UndefinedObject,
                        format!("type \"{n}\" does not exist"),
                    )),
                };
            }
            other => {
                return Err(Error::new(
                    SqlState::FeatureNotSupported,
                    format!("type {other} (column \"{column}\") is not supported"),
                ))
            }
        };
        Ok((t, false))
    }
}

fn precision(p: u64, column: &str) -> Result<u8> {
    if p == 0 || p > 38 {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("NUMERIC precision {p} of column \"{column}\" is not supported (1 to 38)"),
        ));
    }
    Ok(p as u8)
}

/// An Arrow schema for the given (name, type, nullable) columns.
pub fn schema_of<'a>(
    cols: impl Iterator<Item = (&'a str, SqlType, bool)>,
) -> Arc<datafusion::arrow::datatypes::Schema> {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        cols.map(|(n, t, null)| t.field(n, null))
            .collect::<Vec<_>>(),
    ))
}
