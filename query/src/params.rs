//! Prepared-statement parameters: their inferred types and their binding.
//!
//! A statement with `$n` placeholders is described by planning it once: DataFusion
//! infers each placeholder's type from its context (`aid = $1` gets the column's type).
//! Binding replaces every placeholder in the parsed statement with a typed literal, so
//! a bound statement runs through exactly the same path as a simple query.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::logical_expr::{Expr as PlanExpr, LogicalPlan};
use datafusion::sql::sqlparser::ast::{self, visit_expressions_mut, Expr, Statement, Value};

use crate::catalog::Catalog;
use crate::error::{Error, Result, SqlState};

/// The zero-based index of placeholder `$n`, if it is one of `len` parameters.
pub(crate) fn placeholder_index(name: &str, len: usize) -> Option<usize> {
    let n = name.strip_prefix('$')?.parse::<usize>().ok()?;
    (1..=len).contains(&n).then(|| n - 1)
}

/// A placeholder compared with a column takes the column's field, whose metadata names
/// its SQL type: in `u = $1` over a uuid column, `$1` is a uuid, not text.
pub(crate) fn column_hints(plan: &LogicalPlan, params: &mut [Option<Field>]) {
    fn unwrap_casts(e: &PlanExpr) -> &PlanExpr {
        match e {
            PlanExpr::Cast(c) => unwrap_casts(&c.expr),
            PlanExpr::TryCast(c) => unwrap_casts(&c.expr),
            other => other,
        }
    }
    let _ = plan.apply(|node| {
        let mut schemas = vec![node.schema().clone()];
        schemas.extend(node.inputs().iter().map(|i| i.schema().clone()));
        node.apply_expressions(|e| {
            e.apply(|sub| {
                if let PlanExpr::BinaryExpr(b) = sub {
                    for (l, r) in [(&b.left, &b.right), (&b.right, &b.left)] {
                        let (PlanExpr::Column(col), PlanExpr::Placeholder(p)) =
                            (unwrap_casts(l), unwrap_casts(r))
                        else {
                            continue;
                        };
                        let Some(i) = placeholder_index(&p.id, params.len()) else {
                            continue;
                        };
                        if let Some(f) = schemas.iter().find_map(|s| s.field_from_column(col).ok())
                        {
                            params[i] = Some(f.as_ref().clone().with_name(""));
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
}

/// In `INSERT ... VALUES`, a bare placeholder takes the type of its target column.
pub(crate) fn insert_hints(catalog: &Catalog, ins: &ast::Insert, params: &mut [Option<Field>]) {
    let ast::TableObject::TableName(name) = &ins.table else {
        return;
    };
    let Ok(t) = catalog.table(&crate::dml::object_name(name)) else {
        return;
    };
    let Some(source) = &ins.source else {
        return;
    };
    let ast::SetExpr::Values(values) = source.body.as_ref() else {
        return;
    };
    let targets: Vec<&crate::catalog::ColumnDesc> = if ins.columns.is_empty() {
        t.columns.iter().filter(|c| !c.hidden).collect()
    } else {
        ins.columns
            .iter()
            .filter_map(|c| {
                let n = crate::dml::object_name(c);
                t.columns.iter().find(|col| col.name == n)
            })
            .collect()
    };
    for row in &values.rows {
        for (e, col) in row.iter().zip(&targets) {
            if let Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    if let Some(i) = placeholder_index(p, params.len()) {
                        params[i] = Some(col.ty.field("", true));
                    }
                }
            }
        }
    }
}

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
        ScalarValue::TimestampMicrosecond(Some(us), tz) => {
            let Some(t) = chrono::DateTime::from_timestamp_micros(*us) else {
                return quoted(&v.to_string());
            };
            let text = t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            match tz {
                None => cast(text, "TIMESTAMP"),
                Some(_) => cast(format!("{text}+00:00"), "TIMESTAMPTZ"),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_spelled_in_utc() {
        let us = 1_704_164_645_500_000; // 2024-01-02 03:04:05.5 UTC
        assert_eq!(
            literal_sql(&ScalarValue::TimestampMicrosecond(
                Some(us),
                Some("+00:00".into())
            )),
            "CAST('2024-01-02 03:04:05.500000+00:00' AS TIMESTAMPTZ)"
        );
        assert_eq!(
            literal_sql(&ScalarValue::TimestampMicrosecond(Some(us), None)),
            "CAST('2024-01-02 03:04:05.500000' AS TIMESTAMP)"
        );
    }
}
