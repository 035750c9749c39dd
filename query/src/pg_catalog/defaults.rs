//! Column defaults as PostgreSQL's `pg_get_expr` prints them, for `pg_attrdef` and
//! `information_schema.columns`.

use datafusion::sql::sqlparser::ast;

use crate::types::SqlType;

/// A column default as PostgreSQL's `pg_get_expr` prints it. A constant prints as a
/// bare number only where reading it back gives the same type and value: a non-negative
/// `integer`, or a non-negative `numeric` with a decimal point; every other constant is
/// quoted with a cast (`'x'::text`, `'7'::bigint`, `'-4'::integer`, `'1'::numeric`). A
/// sequence name passed to `nextval` is a `regclass`.
pub(super) fn default_text(sql: &str, ty: SqlType) -> String {
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let parsed = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(sql)
    .and_then(|mut p| p.parse_expr());
    let Ok(expr) = parsed else {
        return sql.to_string();
    };
    match &expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => match ty {
                SqlType::Text => format!("{}::text", quoted(s)),
                SqlType::Varchar(_) => format!("{}::character varying", quoted(s)),
                SqlType::Char(_) => format!("{}::bpchar", quoted(s)),
                SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => match s.trim().parse::<i64>() {
                    Ok(v) => number_const(&v.to_string(), ty),
                    Err(_) => sql.to_string(),
                },
                SqlType::Numeric(_) => number_const(s.trim(), ty),
                other => format!("{}::{}", quoted(s), other.pg_name()),
            },
            _ => sql.to_string(),
        },
        // A negative number is a constant of its own type, printed with its cast.
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr: inner,
        } => match inner.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) if n.contains('.') => format!("'-{n}'::numeric"),
                ast::Value::Number(n, _) if n.parse::<i32>().is_ok() => {
                    format!("'-{n}'::integer")
                }
                ast::Value::Number(n, _) => format!("'-{n}'::bigint"),
                _ => sql.to_string(),
            },
            _ => sql.to_string(),
        },
        ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("nextval") => {
            match &f.args {
                ast::FunctionArguments::List(l) => match l.args.as_slice() {
                    [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v)))] => {
                        match &v.value {
                            ast::Value::SingleQuotedString(name) => {
                                format!("nextval({}::regclass)", quoted(name))
                            }
                            _ => sql.to_string(),
                        }
                    }
                    _ => sql.to_string(),
                },
                _ => sql.to_string(),
            }
        }
        _ => sql.to_string(),
    }
}

/// A number constant of a column of type `ty`, given its text, as `pg_get_expr` prints it.
fn number_const(n: &str, ty: SqlType) -> String {
    let bare = !n.starts_with('-')
        && match ty {
            SqlType::Int4 => true,
            SqlType::Numeric(_) => {
                n.contains('.') && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            }
            _ => false,
        };
    if bare {
        return n.to_string();
    }
    let name = match ty {
        SqlType::Numeric(_) => "numeric".to_string(),
        other => other.pg_name(),
    };
    format!("'{n}'::{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every expectation is what PostgreSQL 15's `pg_get_expr` printed for the same
    /// default on a column of the same type.
    #[test]
    fn defaults_print_as_postgresql_prints_them() {
        let cases = [
            ("'5'", SqlType::Int4, "5"),
            ("'-3'", SqlType::Int4, "'-3'::integer"),
            ("'0'", SqlType::Numeric(None), "'0'::numeric"),
            ("'1'", SqlType::Numeric(Some((10, 2))), "'1'::numeric"),
            ("'1.5'", SqlType::Numeric(Some((10, 2))), "1.5"),
            ("'-1.5'", SqlType::Numeric(None), "'-1.5'::numeric"),
            ("'7'", SqlType::Int8, "'7'::bigint"),
            ("'2'", SqlType::Int2, "'2'::smallint"),
            ("'1.5'", SqlType::Float4, "'1.5'::real"),
            ("5", SqlType::Int4, "5"),
            ("7", SqlType::Int8, "7"),
            ("0", SqlType::Numeric(None), "0"),
            ("1.5", SqlType::Numeric(None), "1.5"),
            ("-1", SqlType::Numeric(None), "'-1'::integer"),
            ("-4", SqlType::Int4, "'-4'::integer"),
            ("'none'", SqlType::Text, "'none'::text"),
            ("nextval('s')", SqlType::Int8, "nextval('s'::regclass)"),
        ];
        for (sql, ty, want) in cases {
            assert_eq!(default_text(sql, ty), want, "DEFAULT {sql} on {ty:?}");
        }
    }
}
