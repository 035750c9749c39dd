//! Prepared-statement parameters: their inferred types and their binding.
//!
//! A statement with `$n` placeholders is described by planning it once: DataFusion
//! infers each placeholder's type from its context (`aid = $1` gets the column's type).
//! Binding replaces every placeholder in the parsed statement with a typed literal, so
//! a bound statement runs through exactly the same path as a simple query.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Expr, Statement, Value};

use crate::error::{Error, Result, SqlState};

/// SQL text of a literal with the value and type of `v`.
pub fn literal_sql(v: &ScalarValue) -> String {
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let cast = |s: String, ty: &str| format!("CAST({} AS {ty})", quoted(&s));
    if v.is_null() {
        return match v.data_type() {
            DataType::Boolean => "CAST(NULL AS BOOLEAN)".into(),
            DataType::Int16 => "CAST(NULL AS SMALLINT)".into(),
            DataType::Int32 => "CAST(NULL AS INT)".into(),
            DataType::Int64 => "CAST(NULL AS BIGINT)".into(),
            DataType::Float32 | DataType::Float64 => "CAST(NULL AS DOUBLE)".into(),
            _ => "NULL".into(),
        };
    }
    match v {
        ScalarValue::Boolean(Some(b)) => if *b { "TRUE" } else { "FALSE" }.into(),
        ScalarValue::Int16(Some(i)) => format!("CAST({i} AS SMALLINT)"),
        ScalarValue::Int32(Some(i)) => format!("CAST({i} AS INT)"),
        ScalarValue::Int64(Some(i)) => format!("CAST({i} AS BIGINT)"),
        ScalarValue::Float32(Some(f)) => cast(f.to_string(), "REAL"),
        ScalarValue::Float64(Some(f)) => cast(f.to_string(), "DOUBLE"),
        ScalarValue::Decimal128(Some(_), p, s) => {
            cast(v.to_string(), &format!("DECIMAL({p}, {s})"))
        }
        ScalarValue::Utf8(Some(s)) => quoted(s),
        ScalarValue::Binary(Some(b)) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("decode({}, 'hex')", quoted(&hex))
        }
        ScalarValue::Date32(Some(_)) => cast(v.to_string(), "DATE"),
        ScalarValue::TimestampMicrosecond(Some(_), None) => cast(v.to_string(), "TIMESTAMP"),
        ScalarValue::TimestampMicrosecond(Some(_), Some(_)) => cast(v.to_string(), "TIMESTAMPTZ"),
        other => quoted(&other.to_string()),
    }
}

/// Replace `$1..$n` in `stmt` with the literals of `params`.
pub fn bind(stmt: &mut Statement, params: &[ScalarValue]) -> Result<()> {
    let mut literals: HashMap<usize, Expr> = HashMap::new();
    for (i, p) in params.iter().enumerate() {
        let sql = format!("SELECT {}", literal_sql(p));
        let mut parsed = crate::session::parse(&sql)?;
        let expr = match parsed.pop() {
            Some(Statement::Query(q)) => match *q.body {
                datafusion::sql::sqlparser::ast::SetExpr::Select(s) => {
                    match s.projection.into_iter().next() {
                        Some(datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e)) => e,
                        _ => return Err(Error::internal("literal did not parse")),
                    }
                }
                _ => return Err(Error::internal("literal did not parse")),
            },
            _ => return Err(Error::internal("literal did not parse")),
        };
        literals.insert(i + 1, expr);
    }
    let mut missing = None;
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                let n: Option<usize> = p.strip_prefix('$').and_then(|n| n.parse().ok());
                match n.and_then(|n| literals.get(&n)) {
                    Some(lit) => *e = Expr::Nested(Box::new(lit.clone())),
                    None => {
                        missing = Some(p.clone());
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if let Some(p) = missing {
        return Err(Error::new(
            SqlState::ProtocolViolation,
            format!("there is no parameter {p}"),
        ));
    }
    Ok(())
}

/// The highest placeholder number used in `stmt`.
pub fn count(stmt: &Statement) -> usize {
    let mut stmt = stmt.clone();
    let mut max = 0;
    let _ = visit_expressions_mut(&mut stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                    max = max.max(n);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    max
}
