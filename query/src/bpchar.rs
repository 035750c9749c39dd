//! `character(n)`: blank-padded strings whose trailing spaces do not count.
//!
//! PostgreSQL stores a `char(n)` value padded with spaces to `n` characters, but treats
//! the padding as insignificant wherever two values meet: `=`, `<`, `IN`, joins,
//! `GROUP BY`, `DISTINCT` and hashing all compare as if trailing spaces were absent, and
//! a cast to `text` or `varchar` drops them. Only pattern matching (`LIKE`, regular
//! expressions), `octet_length` and the value's printed form see them.
//!
//! tessera therefore carries a `char(n)` value *without* its trailing spaces everywhere
//! inside the system: in the row and key encodings and in Arrow arrays during
//! execution. Equal values are then equal bytes, so DataFusion's comparisons, hash
//! joins and hash aggregates are right with no per-row work, and an index over a
//! `char(n)` column sorts as PostgreSQL's `bpchar` operators do. The padding is put back
//! where PostgreSQL shows it:
//! - on output (wire text and binary, COPY TO), from the length in the column's field
//!   metadata ([`CHAR_LEN_KEY`]);
//! - under `LIKE`/`ILIKE`/`SIMILAR TO`/regex matching and `octet_length`, by the
//!   analyzer rule [`CharSemantics`], which pads the operand with `rpad`.
//!
//! The other side of a comparison follows PostgreSQL's operator resolution: an untyped
//! string literal (or a bound parameter) becomes `bpchar`, so its trailing spaces are
//! dropped at plan time; a `varchar` column is coerced to `bpchar`, so it is compared
//! through `rtrim`; a `text` value wins over `bpchar`, so it is compared as is with the
//! stripped value. A cast of a `char(n)` value to a string type yields plain text.
//!
//! Left as they are: a string literal that meets a `char(n)` column only through
//! `UNION`, `CASE` or `COALESCE` keeps its trailing spaces (PostgreSQL would resolve the
//! branch to `bpchar`), and a `::varchar` cast literal compares as `text` (both are Utf8
//! after planning).

use std::cell::Cell;
use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ExprSchema, ScalarValue};
use datafusion::logical_expr::expr::{Cast, InList, Like, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Case, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

use crate::plan_rewrite::rewrite_expressions;
use crate::types::PG_TYPE_KEY;

/// Arrow field metadata key holding `n` of a `char(n)` column.
pub const CHAR_LEN_KEY: &str = "tessera.char_len";

/// The stored form of a value for a `char(n)` column: without trailing spaces, or
/// `None` when it does not fit in `n` characters.
pub(crate) fn stored(s: &str, n: u32) -> Option<String> {
    let trimmed = s.trim_end_matches(' ');
    (trimmed.chars().count() <= n as usize).then(|| trimmed.to_string())
}

/// `n` of a field that carries a `char(n)` column's values.
pub fn padded_len(field: &Field) -> Option<usize> {
    field.metadata().get(CHAR_LEN_KEY)?.parse().ok()
}

/// `s` as PostgreSQL prints a `char(n)` value: padded with spaces to `n` characters.
pub fn pad(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len >= n {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + n - len);
    out.push_str(s);
    out.extend(std::iter::repeat_n(' ', n - len));
    out
}

/// Rewrites expressions over `char(n)` values so that they follow PostgreSQL (see the
/// module documentation). Runs after type coercion.
#[derive(Debug, Default)]
pub(crate) struct CharSemantics;

impl AnalyzerRule for CharSemantics {
    fn name(&self) -> &str {
        "tessera_char_semantics"
    }

    fn analyze(
        &self,
        plan: LogicalPlan,
        _config: &ConfigOptions,
    ) -> datafusion::common::Result<LogicalPlan> {
        let casts = Cell::new(false);
        let plan = rewrite_expressions(plan, may_rewrite, |e, schema| {
            rewrite_expr(e, schema, &casts)
        })?;
        if !casts.get() {
            return Ok(plan);
        }
        // A cast now yields plain text: the schemas above it must stop calling it char(n).
        Ok(plan
            .transform_up_with_subqueries(|p| Ok(Transformed::yes(p.recompute_schema()?)))?
            .data)
    }
}

/// Whether `e` is an expression [`rewrite_expr`] may change.
fn may_rewrite(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(b) => is_comparison(b.op) || is_pattern_match(b.op),
        Expr::Like(_) | Expr::SimilarTo(_) | Expr::InList(_) | Expr::Cast(_) => true,
        Expr::Case(c) => c.expr.is_some(),
        Expr::ScalarFunction(f) => f.name() == "octet_length",
        _ => false,
    }
}

/// What an expression is, as far as `char(n)` rules care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `char(n)` value.
    Char(u32),
    /// A `varchar` column.
    Varchar,
    /// An untyped string literal.
    Literal,
    /// Anything else.
    Other,
}

fn field_kind(f: &Field) -> Kind {
    if let Some(n) = padded_len(f) {
        return Kind::Char(n as u32);
    }
    match f.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("varchar") => Kind::Varchar,
        _ => Kind::Other,
    }
}

/// The kind of `e`: only column references (through aliases) keep a column's type;
/// every computed value, casts included, is plain text.
fn kind(e: &Expr, schema: &DFSchema) -> Kind {
    match e {
        Expr::Column(c) => schema
            .field_from_column(c)
            .map(|f| field_kind(f))
            .unwrap_or(Kind::Other),
        Expr::OuterReferenceColumn(f, _) => field_kind(f),
        Expr::Alias(a) => kind(&a.expr, schema),
        Expr::Literal(ScalarValue::Utf8(Some(_)), _) => Kind::Literal,
        _ => Kind::Other,
    }
}

/// A string literal without its trailing spaces.
fn trimmed_literal(e: Expr) -> Expr {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), meta) => {
            let t = s.trim_end_matches(' ');
            let s = if t.len() == s.len() { s } else { t.to_string() };
            Expr::Literal(ScalarValue::Utf8(Some(s)), meta)
        }
        other => other,
    }
}

/// The other operand of a comparison with a `char(n)` value, as PostgreSQL resolves it.
fn as_bpchar(e: Expr, schema: &DFSchema) -> Expr {
    match kind(&e, schema) {
        Kind::Literal => trimmed_literal(e),
        Kind::Varchar => datafusion::functions::string::rtrim().call(vec![e]),
        Kind::Char(_) | Kind::Other => e,
    }
}

/// `e`, a `char(n)` value, with its padding, for operators that see it.
fn padded(e: Expr, n: u32) -> Expr {
    datafusion::functions::unicode::rpad().call(vec![
        e,
        Expr::Literal(ScalarValue::Int64(Some(n as i64)), None),
    ])
}

fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

fn is_pattern_match(op: Operator) -> bool {
    matches!(
        op,
        Operator::RegexMatch
            | Operator::RegexIMatch
            | Operator::RegexNotMatch
            | Operator::RegexNotIMatch
            | Operator::LikeMatch
            | Operator::ILikeMatch
            | Operator::NotLikeMatch
            | Operator::NotILikeMatch
    )
}

/// A plain-text Utf8 target for a cast of a `char(n)` value: explicit metadata, so that
/// the column's `char(n)` metadata is not carried over to the result.
fn text_field() -> std::sync::Arc<Field> {
    let meta = HashMap::from([(PG_TYPE_KEY.to_string(), "text".to_string())]);
    std::sync::Arc::new(Field::new("", DataType::Utf8, true).with_metadata(meta))
}

fn rewrite_expr(
    e: Expr,
    schema: &DFSchema,
    casts: &Cell<bool>,
) -> datafusion::common::Result<Transformed<Expr>> {
    Ok(match e {
        Expr::BinaryExpr(b) if is_comparison(b.op) => {
            let (l, r) = (kind(&b.left, schema), kind(&b.right, schema));
            match (l, r) {
                (Kind::Char(_), Kind::Literal | Kind::Varchar) => {
                    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                        b.left,
                        b.op,
                        Box::new(as_bpchar(*b.right, schema)),
                    )))
                }
                (Kind::Literal | Kind::Varchar, Kind::Char(_)) => {
                    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(as_bpchar(*b.left, schema)),
                        b.op,
                        b.right,
                    )))
                }
                _ => Transformed::no(Expr::BinaryExpr(b)),
            }
        }
        Expr::BinaryExpr(b) if is_pattern_match(b.op) => match kind(&b.left, schema) {
            Kind::Char(n) => Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(padded(*b.left, n)),
                b.op,
                b.right,
            ))),
            _ => Transformed::no(Expr::BinaryExpr(b)),
        },
        Expr::Like(like) => match kind(&like.expr, schema) {
            Kind::Char(n) => Transformed::yes(Expr::Like(Like {
                expr: Box::new(padded(*like.expr, n)),
                ..like
            })),
            _ => Transformed::no(Expr::Like(like)),
        },
        Expr::SimilarTo(like) => match kind(&like.expr, schema) {
            Kind::Char(n) => Transformed::yes(Expr::SimilarTo(Like {
                expr: Box::new(padded(*like.expr, n)),
                ..like
            })),
            _ => Transformed::no(Expr::SimilarTo(like)),
        },
        Expr::InList(list) if matches!(kind(&list.expr, schema), Kind::Char(_)) => {
            Transformed::yes(Expr::InList(InList {
                list: list
                    .list
                    .into_iter()
                    .map(|e| as_bpchar(e, schema))
                    .collect(),
                ..list
            }))
        }
        Expr::Case(case)
            if case
                .expr
                .as_deref()
                .is_some_and(|e| matches!(kind(e, schema), Kind::Char(_))) =>
        {
            Transformed::yes(Expr::Case(Case {
                when_then_expr: case
                    .when_then_expr
                    .into_iter()
                    .map(|(w, t)| (Box::new(as_bpchar(*w, schema)), t))
                    .collect(),
                ..case
            }))
        }
        Expr::ScalarFunction(f)
            if f.name() == "octet_length"
                && f.args.len() == 1
                && matches!(kind(&f.args[0], schema), Kind::Char(_)) =>
        {
            let Kind::Char(n) = kind(&f.args[0], schema) else {
                unreachable!("checked by the guard")
            };
            let mut args = f.args;
            let arg = args.remove(0);
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                f.func,
                vec![padded(arg, n)],
            )))
        }
        Expr::Cast(c)
            if matches!(kind(&c.expr, schema), Kind::Char(_))
                && c.field.data_type() == &DataType::Utf8
                && padded_len(&c.field).is_none() =>
        {
            casts.set(true);
            Transformed::yes(Expr::Cast(Cast::new_from_field(c.expr, text_field())))
        }
        other => Transformed::no(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_drops_trailing_spaces_and_checks_length() {
        assert_eq!(stored("MAIL  ", 4).as_deref(), Some("MAIL"));
        assert_eq!(stored("  x ", 10).as_deref(), Some("  x"));
        assert_eq!(stored("toolong", 3), None);
        assert_eq!(stored("abc      ", 3).as_deref(), Some("abc"));
        assert_eq!(pad("ab", 5), "ab   ");
        assert_eq!(pad("abcdef", 3), "abcdef");
    }
}
