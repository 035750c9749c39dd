//! Bind parameters from the wire (text or binary) to typed values.

use bytes::Buf;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use pgwire::api::results::FieldFormat;
use pgwire::api::Type;
use tessera_query::{Error, SqlState};

/// A parameter value as the query layer takes it.
pub type Value = tessera_query::ScalarValue;

/// PostgreSQL days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// PostgreSQL microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn bad(ty: &Type, what: impl std::fmt::Display) -> Error {
    Error::new(
        SqlState::InvalidTextRepresentation,
        format!("invalid input syntax for type {}: {what}", ty.name()),
    )
}

/// Days since 1970-01-01 of a binary date (days since 2000-01-01). A date before
/// 4713 BC (PostgreSQL's first) or past what tessera can print is `22008`; so are the
/// `infinity` values, which tessera does not store.
fn binary_date(days: i32) -> Result<i32, Error> {
    /// 4714-11-24 BC (Julian day 0), in days since 2000-01-01.
    const PG_FIRST_DAY: i32 = -2_451_545;
    days.checked_add(PG_EPOCH_DAYS)
        .filter(|d| {
            days >= PG_FIRST_DAY && NaiveDate::from_num_days_from_ce_opt(d + 719_163).is_some()
        })
        .ok_or_else(|| Error::new(SqlState::DatetimeFieldOverflow, "date out of range"))
}

/// Microseconds since 1970-01-01 of a binary timestamp (microseconds since 2000-01-01),
/// or `22008` outside PostgreSQL's range and what tessera can print.
fn binary_timestamp(micros: i64) -> Result<i64, Error> {
    /// PostgreSQL's first timestamp (4714-11-24 00:00 BC), since 2000-01-01.
    const PG_FIRST_MICROS: i64 = -211_813_488_000_000_000;
    micros
        .checked_add(PG_EPOCH_MICROS)
        .filter(|us| micros >= PG_FIRST_MICROS && DateTime::from_timestamp_micros(*us).is_some())
        .ok_or_else(|| Error::new(SqlState::DatetimeFieldOverflow, "timestamp out of range"))
}

fn parse_ts(s: &str) -> Option<i64> {
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_micros());
        }
    }
    None
}

/// Decode one parameter.
pub fn decode(raw: Option<&[u8]>, format: FieldFormat, ty: &Type) -> Result<Value, Error> {
    let Some(raw) = raw else {
        return Ok(match *ty {
            Type::BOOL => Value::Boolean(None),
            Type::INT2 => Value::Int16(None),
            Type::INT4 => Value::Int32(None),
            Type::INT8 => Value::Int64(None),
            Type::FLOAT4 => Value::Float32(None),
            Type::FLOAT8 => Value::Float64(None),
            _ => Value::Utf8(None),
        });
    };
    match format {
        FieldFormat::Text => {
            let s = std::str::from_utf8(raw).map_err(|_| bad(ty, "not UTF-8"))?;
            Ok(match *ty {
                Type::BOOL => match s.trim().to_lowercase().as_str() {
                    "t" | "true" | "yes" | "on" | "1" | "y" => Value::Boolean(Some(true)),
                    "f" | "false" | "no" | "off" | "0" | "n" => Value::Boolean(Some(false)),
                    _ => return Err(bad(ty, format!("\"{s}\""))),
                },
                Type::INT2 => Value::Int16(Some(
                    s.trim().parse().map_err(|_| bad(ty, format!("\"{s}\"")))?,
                )),
                Type::INT4 => Value::Int32(Some(
                    s.trim().parse().map_err(|_| bad(ty, format!("\"{s}\"")))?,
                )),
                Type::INT8 => Value::Int64(Some(
                    s.trim().parse().map_err(|_| bad(ty, format!("\"{s}\"")))?,
                )),
                Type::FLOAT4 => Value::Float32(Some(
                    s.trim().parse().map_err(|_| bad(ty, format!("\"{s}\"")))?,
                )),
                Type::FLOAT8 => Value::Float64(Some(
                    s.trim().parse().map_err(|_| bad(ty, format!("\"{s}\"")))?,
                )),
                Type::DATE => match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                    Ok(d) => Value::Date32(Some((d - NaiveDate::default()).num_days() as i32)),
                    Err(_) => Value::Utf8(Some(s.to_string())),
                },
                Type::TIMESTAMP => match parse_ts(s.trim()) {
                    Some(us) => Value::TimestampMicrosecond(Some(us), None),
                    None => Value::Utf8(Some(s.to_string())),
                },
                Type::TIMESTAMPTZ => match parse_ts(s.trim()) {
                    Some(us) => Value::TimestampMicrosecond(Some(us), Some("+00:00".into())),
                    None => Value::Utf8(Some(s.to_string())),
                },
                _ => Value::Utf8(Some(s.to_string())),
            })
        }
        FieldFormat::Binary => {
            let mut b = raw;
            let need = |n: usize| {
                if raw.len() == n {
                    Ok(())
                } else {
                    Err(bad(ty, format!("binary value of {} bytes", raw.len())))
                }
            };
            Ok(match *ty {
                Type::BOOL => {
                    need(1)?;
                    Value::Boolean(Some(raw[0] != 0))
                }
                Type::INT2 => {
                    need(2)?;
                    Value::Int16(Some(b.get_i16()))
                }
                Type::INT4 | Type::OID => {
                    need(4)?;
                    Value::Int32(Some(b.get_i32()))
                }
                Type::INT8 => {
                    need(8)?;
                    Value::Int64(Some(b.get_i64()))
                }
                Type::FLOAT4 => {
                    need(4)?;
                    Value::Float32(Some(b.get_f32()))
                }
                Type::FLOAT8 => {
                    need(8)?;
                    Value::Float64(Some(b.get_f64()))
                }
                Type::BYTEA => Value::Binary(Some(raw.to_vec())),
                Type::UUID => {
                    let u = uuid::Uuid::from_slice(raw).map_err(|_| bad(ty, "binary uuid"))?;
                    Value::Utf8(Some(u.hyphenated().to_string()))
                }
                Type::DATE => {
                    need(4)?;
                    Value::Date32(Some(binary_date(b.get_i32())?))
                }
                Type::TIMESTAMP => {
                    need(8)?;
                    Value::TimestampMicrosecond(Some(binary_timestamp(b.get_i64())?), None)
                }
                Type::TIMESTAMPTZ => {
                    need(8)?;
                    Value::TimestampMicrosecond(
                        Some(binary_timestamp(b.get_i64())?),
                        Some("+00:00".into()),
                    )
                }
                Type::INTERVAL => {
                    need(16)?;
                    let (micros, days, months) = (b.get_i64(), b.get_i32(), b.get_i32());
                    let sign = if micros < 0 { "-" } else { "" };
                    let m = micros.unsigned_abs();
                    Value::Utf8(Some(format!(
                        "{months} mons {days} days {sign}{}:{:02}:{:02}.{:06}",
                        m / 3_600_000_000,
                        m / 60_000_000 % 60,
                        m / 1_000_000 % 60,
                        m % 1_000_000
                    )))
                }
                Type::NUMERIC => {
                    let d: rust_decimal::Decimal =
                        postgres_types::FromSql::from_sql(ty, raw).map_err(|e| bad(ty, e))?;
                    Value::Utf8(Some(d.to_string()))
                }
                Type::JSONB => Value::Utf8(Some(
                    String::from_utf8_lossy(raw.get(1..).unwrap_or_default()).into_owned(),
                )),
                Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::JSON => Value::Utf8(Some(
                    String::from_utf8(raw.to_vec()).map_err(|_| bad(ty, "not UTF-8"))?,
                )),
                _ => {
                    return Err(Error::new(
                        SqlState::FeatureNotSupported,
                        format!("binary parameters of type {} are not supported", ty.name()),
                    ))
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_and_binary() {
        assert_eq!(
            decode(Some(b"42"), FieldFormat::Text, &Type::INT4).unwrap(),
            Value::Int32(Some(42))
        );
        assert_eq!(
            decode(Some(&7i16.to_be_bytes()), FieldFormat::Binary, &Type::INT2).unwrap(),
            Value::Int16(Some(7))
        );
        assert_eq!(
            decode(Some(&0i32.to_be_bytes()), FieldFormat::Binary, &Type::DATE).unwrap(),
            Value::Date32(Some(10_957))
        );
        assert_eq!(
            decode(Some(b"2000-01-02"), FieldFormat::Text, &Type::DATE).unwrap(),
            Value::Date32(Some(10_958))
        );
        let mut iv = (-3i64).to_be_bytes().to_vec();
        iv.extend_from_slice(&2i32.to_be_bytes());
        iv.extend_from_slice(&14i32.to_be_bytes());
        assert_eq!(
            decode(Some(&iv), FieldFormat::Binary, &Type::INTERVAL).unwrap(),
            Value::Utf8(Some("14 mons 2 days -0:00:00.000003".into()))
        );
        assert_eq!(
            decode(None, FieldFormat::Text, &Type::INT8).unwrap(),
            Value::Int64(None)
        );
        assert_eq!(
            decode(Some(b"x"), FieldFormat::Text, &Type::INT8)
                .unwrap_err()
                .state,
            SqlState::InvalidTextRepresentation
        );
    }

    #[test]
    fn binary_dates_and_timestamps_out_of_range_are_22008() {
        let bin = |raw: &[u8], ty: &Type| decode(Some(raw), FieldFormat::Binary, ty);
        for ty in [Type::DATE] {
            for days in [i32::MAX, i32::MIN, -2_451_546, 200_000_000] {
                let e = bin(&days.to_be_bytes(), &ty).unwrap_err();
                assert_eq!(e.state, SqlState::DatetimeFieldOverflow, "{days}");
            }
            assert_eq!(
                bin(&(-2_451_545i32).to_be_bytes(), &ty).unwrap(),
                Value::Date32(Some(-2_451_545 + 10_957))
            );
        }
        for ty in [Type::TIMESTAMP, Type::TIMESTAMPTZ] {
            for us in [
                i64::MAX,
                i64::MIN,
                -211_813_488_000_000_001,
                9_000_000_000_000_000_000,
            ] {
                let e = bin(&us.to_be_bytes(), &ty).unwrap_err();
                assert_eq!(e.state, SqlState::DatetimeFieldOverflow, "{us}");
            }
            assert!(bin(&0i64.to_be_bytes(), &ty).is_ok());
        }
    }
}
