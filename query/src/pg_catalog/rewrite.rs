//! Rewrites of the catalog spellings of PostgreSQL clients into SQL the planner takes.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;

pub(crate) fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// A scalar subquery over catalog tables only, selecting one plain value (psql's
/// `(SELECT pg_get_expr(d.adbin, ...) FROM pg_catalog.pg_attrdef d WHERE ...)`): the
/// planner only decorrelates aggregated subqueries whose correlated conditions are
/// equalities, and such a lookup finds at most one row. So its value is wrapped in
/// `max()`; conditions on the outer row alone are returned, to guard the subquery from
/// outside; and an outer expression that an equality ties to an inner column is
/// replaced by that column in the other conditions. The planner cannot read the outer
/// row in the select list either: key/value pairs of a `json_build_object` there whose
/// value is the outer row's are returned as well, for the caller to build outside and
/// merge with the subquery's object.
fn wrap_catalog_lookup(q: &mut ast::Query) -> (Vec<ast::Expr>, Vec<ast::Expr>) {
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return (Vec::new(), Vec::new());
    };
    let catalog_only = !sel.from.is_empty()
        && sel.from.iter().all(|f| {
            std::iter::once(&f.relation)
                .chain(f.joins.iter().map(|j| &j.relation))
                .all(|r| match r {
                    ast::TableFactor::Table { name, .. } => {
                        let first = name.0.first().and_then(|p| p.as_ident());
                        let last = name.0.last().and_then(|p| p.as_ident());
                        first.is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"))
                            || last.is_some_and(|i| i.value.starts_with("pg_"))
                    }
                    _ => false,
                })
        });
    let grouped = !matches!(&sel.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if !catalog_only || grouped || sel.projection.len() != 1 {
        return (Vec::new(), Vec::new());
    }
    let inner: Vec<String> = sel
        .from
        .iter()
        .flat_map(|f| std::iter::once(&f.relation).chain(f.joins.iter().map(|j| &j.relation)))
        .filter_map(|r| match r {
            ast::TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => a.name.value.to_lowercase(),
                None => name.0.last()?.as_ident()?.value.to_lowercase(),
            }),
            _ => None,
        })
        .collect();
    let mut guards = Vec::new();
    let mut outer_pairs = Vec::new();
    if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } =
        &mut sel.projection[0]
    {
        outer_pairs = hoist_outer_json_pairs(e, &inner);
    }
    if let Some(selection) = sel.selection.take() {
        let mut conjuncts = Vec::new();
        split_and(selection, &mut conjuncts);
        // Outer expressions tied to inner columns by an equality.
        let mut ties: Vec<(String, ast::Expr)> = Vec::new();
        for c in &conjuncts {
            if let ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } = c
            {
                match (refs(left, &inner), refs(right, &inner)) {
                    (Refs::Inner, Refs::Outer) => {
                        ties.push((right.to_string(), left.as_ref().clone()))
                    }
                    (Refs::Outer, Refs::Inner) => {
                        ties.push((left.to_string(), right.as_ref().clone()))
                    }
                    _ => {}
                }
            }
        }
        let mut kept = Vec::new();
        for mut c in conjuncts {
            match refs(&c, &inner) {
                Refs::Outer => guards.push(c),
                Refs::Mixed
                    if !matches!(
                        &c,
                        ast::Expr::BinaryOp {
                            op: ast::BinaryOperator::Eq,
                            ..
                        }
                    ) =>
                {
                    substitute(&mut c, &ties);
                    kept.push(c);
                }
                _ => kept.push(c),
            }
        }
        sel.selection = kept.into_iter().reduce(|a, b| ast::Expr::BinaryOp {
            left: Box::new(a),
            op: ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    let aggregate = |e: &ast::Expr| {
        matches!(e, ast::Expr::Function(f) if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
            matches!(i.value.to_lowercase().as_str(), "count" | "max" | "min" | "sum" | "avg" | "array_agg" | "string_agg" | "bool_and" | "bool_or")
        }))
    };
    match &mut sel.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. }
            if !aggregate(e) =>
        {
            *e = call("max", vec![e.clone()]);
        }
        _ => {}
    }
    (guards, outer_pairs)
}

fn function_name(f: &ast::Function) -> Option<String> {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())
}

fn plain_args(f: &ast::Function) -> Option<Vec<ast::Expr>> {
    let ast::FunctionArguments::List(l) = &f.args else {
        return None;
    };
    l.args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Take the key/value pairs whose value reads only the outer row out of a
/// `json_build_object(...)` select item; returns them (keys and values, in order).
fn hoist_outer_json_pairs(e: &mut ast::Expr, inner: &[String]) -> Vec<ast::Expr> {
    let ast::Expr::Function(f) = e else {
        return Vec::new();
    };
    if function_name(f).as_deref() != Some("json_build_object") {
        return Vec::new();
    }
    let Some(args) = plain_args(f) else {
        return Vec::new();
    };
    if args.len() % 2 != 0 {
        return Vec::new();
    }
    let (mut kept, mut outer) = (Vec::new(), Vec::new());
    for pair in args.chunks(2) {
        if refs(&pair[1], inner) == Refs::Outer {
            outer.extend_from_slice(pair);
        } else {
            kept.extend_from_slice(pair);
        }
    }
    if !outer.is_empty() {
        *e = call("json_build_object", kept);
    }
    outer
}

/// Catalog tables that never hold a row.
const ALWAYS_EMPTY: &[&str] = &[
    "pg_auth_members",
    "pg_description",
    "pg_inherits",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_partitioned_table",
    "pg_enum",
    "pg_range",
    "pg_foreign_table",
    "pg_proc",
    "pg_views",
    "pg_matviews",
];

fn always_empty(r: &ast::TableFactor) -> bool {
    match r {
        ast::TableFactor::Table {
            name, args: None, ..
        } => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| ALWAYS_EMPTY.contains(&i.value.to_lowercase().as_str())),
        _ => false,
    }
}

/// Whether a SELECT can produce no row because it reads an always-empty catalog table
/// through a cross or inner join (or as the left side of an outer one).
fn select_is_empty(sel: &ast::Select) -> bool {
    sel.from.iter().any(|f| {
        always_empty(&f.relation)
            || f.joins.iter().any(|j| {
                matches!(
                    j.join_operator,
                    ast::JoinOperator::Inner(_)
                        | ast::JoinOperator::Join(_)
                        | ast::JoinOperator::CrossJoin(_)
                ) && always_empty(&j.relation)
            })
    })
}

fn has_subquery(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x: &ast::Expr| {
        if matches!(
            x,
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. }
        ) || matches!(x, ast::Expr::Function(f) if matches!(f.args, ast::FunctionArguments::Subquery(_)))
        {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `ARRAY(SELECT x FROM ...)` as `(SELECT array_agg(x) FROM ...)`, or an empty array
/// when the subquery reads an always-empty catalog table.
fn array_of_subquery(mut q: ast::Query) -> ast::Expr {
    if let ast::SetExpr::Select(sel) = q.body.as_mut() {
        if select_is_empty(sel) {
            return call("make_array", Vec::new());
        }
        if sel.projection.len() == 1 {
            if let ast::SelectItem::UnnamedExpr(e)
            | ast::SelectItem::ExprWithAlias { expr: e, .. } = &mut sel.projection[0]
            {
                *e = call("array_agg", vec![e.clone()]);
            }
            q.order_by = None;
        }
    }
    ast::Expr::Subquery(Box::new(q))
}

fn split_and(e: ast::Expr, out: &mut Vec<ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        ast::Expr::Nested(inner)
            if matches!(
                *inner,
                ast::Expr::BinaryOp {
                    op: ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Refs {
    None,
    Inner,
    Outer,
    Mixed,
}

/// Which side's columns an expression reads: qualified names whose qualifier is one of
/// `inner` are the subquery's own; other qualified names are the outer query's.
fn refs(e: &ast::Expr, inner: &[String]) -> Refs {
    let mut seen = Refs::None;
    let _ = ast::visit_expressions(e, |x: &ast::Expr| {
        let side = match x {
            ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                // [schema.]table.column: the qualifier is the table.
                if inner.contains(&parts[parts.len() - 2].value.to_lowercase()) {
                    Refs::Inner
                } else {
                    Refs::Outer
                }
            }
            ast::Expr::Identifier(_) => Refs::Inner,
            _ => return ControlFlow::<()>::Continue(()),
        };
        seen = match (seen, side) {
            (Refs::None, s) => s,
            (a, b) if a == b => a,
            _ => Refs::Mixed,
        };
        ControlFlow::Continue(())
    });
    seen
}

/// Replace every subexpression whose text is a key of `ties` by its inner equivalent.
fn substitute(e: &mut ast::Expr, ties: &[(String, ast::Expr)]) {
    let _ = ast::visit_expressions_mut(e, |x: &mut ast::Expr| {
        let text = x.to_string();
        if let Some((_, inner)) = ties.iter().find(|(k, _)| *k == text) {
            *x = inner.clone();
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_string_literal(e: &ast::Expr) -> bool {
    matches!(
        e,
        ast::Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_))
    )
}

/// Rewrites the catalog spellings of PostgreSQL clients into what the planner knows:
/// `OPERATOR(pg_catalog.~)`, `COLLATE pg_catalog.default`, casts to `regclass`,
/// `regtype`, `regnamespace`, `regproc`, `oid`, `name`, `"char"` and `pg_catalog.`-
/// qualified type names, and `pg_catalog.`-qualified table functions.
pub struct CatalogSpellings;

impl ast::VisitorMut for CatalogSpellings {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        match expr {
            // Tables are never partitions: a relation's only ancestor is itself.
            ast::Expr::Function(f)
                if function_name(f).as_deref() == Some("pg_partition_ancestors") =>
            {
                if let Some([arg]) = plain_args(f).as_deref() {
                    *expr = if is_string_literal(arg) {
                        call("tessera_regclass_oid", vec![arg.clone()])
                    } else {
                        arg.clone()
                    };
                }
            }
            ast::Expr::Function(f)
                if f.name.0.len() == 1
                    && f.name.0[0]
                        .as_ident()
                        .is_some_and(|i| i.value.eq_ignore_ascii_case("array"))
                    && matches!(f.args, ast::FunctionArguments::Subquery(_)) =>
            {
                let ast::FunctionArguments::Subquery(q) = &f.args else {
                    unreachable!("matched above")
                };
                *expr = array_of_subquery(q.as_ref().clone());
            }
            ast::Expr::Function(f)
                if function_name(f).as_deref() == Some("generate_subscripts") =>
            {
                // The subscripts of a one-dimensional array, in step with its unnest.
                if let Some([arr, _dim]) = plain_args(f).as_deref() {
                    let len = ast::Expr::Cast {
                        kind: ast::CastKind::Cast,
                        expr: Box::new(call("cardinality", vec![arr.clone()])),
                        data_type: ast::DataType::BigInt(None),
                        array: false,
                        format: None,
                    };
                    let one = ast::Expr::value(ast::Value::Number("1".into(), false));
                    *expr = call("unnest", vec![call("generate_series", vec![one, len])]);
                }
            }
            ast::Expr::Subquery(q) => {
                let (guards, outer_pairs) = wrap_catalog_lookup(q);
                if !outer_pairs.is_empty() {
                    *expr = call(
                        "tessera_json_merge",
                        vec![call("json_build_object", outer_pairs), expr.clone()],
                    );
                }
                if let Some(guard) = guards.into_iter().reduce(|a, b| ast::Expr::BinaryOp {
                    left: Box::new(a),
                    op: ast::BinaryOperator::And,
                    right: Box::new(b),
                }) {
                    *expr = ast::Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition: guard,
                            result: expr.clone(),
                        }],
                        else_result: None,
                    };
                }
            }
            ast::Expr::Collate { expr: inner, .. } => {
                *expr = inner.as_ref().clone();
            }
            ast::Expr::BinaryOp { op, .. } => {
                if let ast::BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    let new = match parts.last().map(String::as_str) {
                        Some("~") => Some(ast::BinaryOperator::PGRegexMatch),
                        Some("~*") => Some(ast::BinaryOperator::PGRegexIMatch),
                        Some("!~") => Some(ast::BinaryOperator::PGRegexNotMatch),
                        Some("!~*") => Some(ast::BinaryOperator::PGRegexNotIMatch),
                        Some("=") => Some(ast::BinaryOperator::Eq),
                        _ => None,
                    };
                    if let Some(new) = new {
                        *op = new;
                    }
                }
            }
            ast::Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                let name = match data_type {
                    ast::DataType::Custom(name, _) => name
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(|i| i.value.to_lowercase()),
                    ast::DataType::Regclass => Some("regclass".into()),
                    _ => None,
                };
                let inner_expr = inner.as_ref().clone();
                let replacement = match name.as_deref() {
                    Some("regclass") if is_string_literal(&inner_expr) => {
                        Some(call("tessera_regclass_oid", vec![inner_expr]))
                    }
                    Some("regclass") => Some(call("tessera_regclass_name", vec![inner_expr])),
                    Some("regtype") if is_string_literal(&inner_expr) => {
                        Some(call("to_regtype", vec![inner_expr]))
                    }
                    Some("regtype") => Some(call(
                        "format_type",
                        vec![inner_expr, ast::Expr::value(ast::Value::Null)],
                    )),
                    Some("regnamespace") => {
                        Some(call("tessera_regnamespace_name", vec![inner_expr]))
                    }
                    Some("regproc" | "regprocedure") => {
                        *data_type = ast::DataType::Text;
                        None
                    }
                    Some(other) => {
                        let dt = match other {
                            "text" | "name" | "char" | "bpchar" | "varchar" => {
                                Some(ast::DataType::Text)
                            }
                            "oid" | "int8" => Some(ast::DataType::BigInt(None)),
                            "int4" => Some(ast::DataType::Int(None)),
                            "int2" => Some(ast::DataType::SmallInt(None)),
                            "bool" => Some(ast::DataType::Boolean),
                            _ => None,
                        };
                        if let Some(dt) = dt {
                            *data_type = dt;
                        }
                        None
                    }
                    None => None,
                };
                if let Some(r) = replacement {
                    *expr = r;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
        skip_empty_lookups(q.body.as_mut());
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        // `pg_catalog` comes first on the search path: an unqualified `pg_type` is the
        // catalog's.
        if let ast::TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let catalog_name = name.0.len() == 1
                && name.0[0].as_ident().is_some_and(|i| {
                    i.quote_style.is_none() && i.value.to_lowercase().starts_with("pg_")
                });
            if catalog_name {
                name.0.insert(
                    0,
                    ast::ObjectNamePart::Identifier(ast::Ident::new("pg_catalog")),
                );
            }
        }
        // A set-returning function of one column, given a table alias only, names its
        // column after the alias (`generate_series(1, 10) AS aid` has column `aid`).
        if let ast::TableFactor::Table {
            name,
            args: Some(_),
            alias: Some(alias),
            ..
        } = factor
        {
            let scalar_function = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"));
            if scalar_function && alias.columns.is_empty() {
                alias.columns.push(ast::TableAliasColumnDef::from_name(
                    alias.name.value.clone(),
                ));
            }
        }
        if let ast::TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
        {
            let qualified = name.0.len() == 2
                && name.0[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"));
            if qualified {
                name.0.remove(0);
            }
        }
        ControlFlow::Continue(())
    }
}

/// In every SELECT of a set expression that reads an always-empty catalog table, replace
/// select-list items holding subqueries by NULL: no row reaches them, and some of them
/// (correlated on arrays) could not be planned.
fn skip_empty_lookups(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::SetOperation { left, right, .. } => {
            skip_empty_lookups(left);
            skip_empty_lookups(right);
        }
        ast::SetExpr::Select(sel) if select_is_empty(sel) => {
            for item in &mut sel.projection {
                let (e, name) = match item {
                    ast::SelectItem::UnnamedExpr(e) => (e, None),
                    ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                    _ => continue,
                };
                if has_subquery(e) {
                    let null = ast::Expr::value(ast::Value::Null);
                    *item = match name {
                        Some(alias) => ast::SelectItem::ExprWithAlias { expr: null, alias },
                        None => ast::SelectItem::UnnamedExpr(null),
                    };
                }
            }
        }
        _ => {}
    }
}
