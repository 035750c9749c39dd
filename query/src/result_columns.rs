//! The shape of a statement's result as PostgreSQL clients see it: column names chosen
//! as PostgreSQL chooses them, and EXPLAIN's one text column.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{self, Statement};

use crate::error::{Error, Result};

/// The name PostgreSQL gives an unaliased SELECT item.
fn output_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => crate::dml::ident(i),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map(crate::dml::ident).unwrap_or_default()
        }
        ast::Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(crate::dml::ident)
            .unwrap_or_else(|| "?column?".into()),
        ast::Expr::Cast { expr, .. } | ast::Expr::Nested(expr) => match expr.as_ref() {
            e @ (ast::Expr::Identifier(_)
            | ast::Expr::CompoundIdentifier(_)
            | ast::Expr::Function(_)
            | ast::Expr::Nested(_)) => output_name(e),
            _ => "?column?".into(),
        },
        ast::Expr::Case { .. } => "case".into(),
        ast::Expr::Exists { .. } => "exists".into(),
        _ => "?column?".into(),
    }
}

/// DataFusion refuses a projection with two items of the same name (`SELECT x, x`), which
/// PostgreSQL allows: alias the repeats (result names are restored by
/// [`pg_column_names`]).
pub(crate) struct UniqueOutputNames;

impl UniqueOutputNames {
    fn fix(set: &mut ast::SetExpr) {
        match set {
            ast::SetExpr::Select(sel) => {
                let mut seen = std::collections::HashSet::new();
                for (i, item) in sel.projection.iter_mut().enumerate() {
                    match item {
                        ast::SelectItem::UnnamedExpr(e) if !seen.insert(output_name(e)) => {
                            *item = ast::SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: ast::Ident::with_quote('"', format!("__column_{i}")),
                            };
                        }
                        ast::SelectItem::ExprWithAlias { alias, .. } => {
                            seen.insert(crate::dml::ident(alias));
                        }
                        _ => {}
                    }
                }
            }
            ast::SetExpr::SetOperation { left, right, .. } => {
                Self::fix(left);
                Self::fix(right);
            }
            _ => {}
        }
    }
}

impl ast::VisitorMut for UniqueOutputNames {
    type Break = ();

    fn post_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
        Self::fix(&mut q.body);
        std::ops::ControlFlow::Continue(())
    }
}

/// Result column names as PostgreSQL chooses them for a plain SELECT list: an alias, a
/// column's name, a function's name, `?column?` for any other expression (DataFusion
/// would print the expression itself, e.g. `count(*)` or `Int64(1) + Int64(2)`).
pub(crate) fn pg_column_names(stmt: &Statement, schema: SchemaRef) -> SchemaRef {
    let Statement::Query(q) = stmt else {
        return schema;
    };
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return schema;
    };
    if sel.projection.len() != schema.fields().len() {
        return schema;
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    for (item, field) in sel.projection.iter().zip(schema.fields()) {
        let name = match item {
            ast::SelectItem::UnnamedExpr(e) => output_name(e),
            ast::SelectItem::ExprWithAlias { alias, .. } => crate::dml::ident(alias),
            _ => return schema,
        };
        fields.push(field.as_ref().clone().with_name(name));
    }
    Arc::new(
        datafusion::arrow::datatypes::Schema::new(fields).with_metadata(schema.metadata().clone()),
    )
}

/// EXPLAIN's result: one text column, as in PostgreSQL.
pub(crate) fn explain_schema() -> SchemaRef {
    crate::types::schema_of([("QUERY PLAN", crate::types::SqlType::Text, false)].into_iter())
}

/// DataFusion's EXPLAIN rows (plan type, plan text) as PostgreSQL-style lines: the
/// physical plan (with metrics under ANALYZE), one line per row; other plan types only
/// where there is no physical plan (VERBOSE keeps everything).
pub(crate) fn explain_lines(batches: &[RecordBatch]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let mut rows: Vec<(String, String)> = Vec::new();
    for b in batches {
        if b.num_columns() < 2 {
            continue;
        }
        let kinds = cast(b.column(0), &DataType::Utf8).map_err(Error::internal)?;
        let plans = cast(b.column(1), &DataType::Utf8).map_err(Error::internal)?;
        let kinds = kinds.as_any().downcast_ref::<StringArray>().expect("utf8");
        let plans = plans.as_any().downcast_ref::<StringArray>().expect("utf8");
        for i in 0..b.num_rows() {
            if kinds.is_valid(i) && plans.is_valid(i) {
                rows.push((kinds.value(i).to_string(), plans.value(i).to_string()));
            }
        }
    }
    let physical = |k: &str| k == "physical_plan" || k == "Plan with Metrics";
    let keep_all = !rows.iter().any(|(k, _)| physical(k)) || rows.len() > 2;
    let mut lines: Vec<String> = Vec::new();
    for (kind, plan) in &rows {
        if keep_all {
            lines.push(format!("{kind}:"));
            lines.extend(plan.lines().map(|l| format!("  {l}")));
        } else if physical(kind) {
            lines.extend(plan.lines().map(str::to_string));
        }
    }
    lines.retain(|l| !l.trim().is_empty());
    let schema = explain_schema();
    let array = Arc::new(StringArray::from(lines));
    let batch = RecordBatch::try_new(schema.clone(), vec![array]).map_err(Error::internal)?;
    Ok((schema, vec![batch]))
}
