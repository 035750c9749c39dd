//! Integer arithmetic that raises `22003` on overflow, as PostgreSQL's does.
//!
//! DataFusion evaluates `+`, `-`, `*` and unary minus on integers with wrapping
//! kernels, so `9223372036854775807 + 1` would be a large negative number. The analyzer
//! rule [`CheckedArithmetic`] runs after type coercion (both operands then have the same
//! integer type) and replaces each such operation on `smallint`, `integer` or `bigint`
//! with a function that uses Arrow's checked kernels; an overflow becomes
//! "bigint out of range" (or "integer", "smallint") with SQLSTATE `22003`. Constant
//! folding evaluates these functions too, and one that overflows is left in the plan, so
//! the error surfaces when the statement runs, as in PostgreSQL.
//!
//! Division already checks (`i64::MIN / -1` fails in Arrow's kernel, mapped to `22003`;
//! division by zero is `22012`). Aggregates are not covered here: `sum` of `bigint`
//! wraps where PostgreSQL widens to `numeric`.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ExprSchema};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{Error, SqlState};
use crate::plan_rewrite::rewrite_expressions;

/// The checked operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Neg,
}

impl Op {
    fn of(op: Operator) -> Option<Op> {
        match op {
            Operator::Plus => Some(Op::Add),
            Operator::Minus => Some(Op::Sub),
            Operator::Multiply => Some(Op::Mul),
            _ => None,
        }
    }
}

/// One checked integer operation as a scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedFn {
    op: Op,
    signature: Signature,
}

impl CheckedFn {
    fn udf(op: Op) -> Arc<ScalarUDF> {
        let arity = if op == Op::Neg { 1 } else { 2 };
        let signature = Signature::one_of(
            [DataType::Int16, DataType::Int32, DataType::Int64]
                .into_iter()
                .map(|t| TypeSignature::Exact(vec![t; arity]))
                .collect(),
            Volatility::Immutable,
        );
        Arc::new(ScalarUDF::new_from_impl(CheckedFn { op, signature }))
    }
}

/// PostgreSQL's name of an integer type, for "... out of range".
fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    }
}

impl ScalarUDFImpl for CheckedFn {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "int_add",
            Op::Sub => "int_sub",
            Op::Mul => "int_mul",
            Op::Neg => "int_neg",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out: Result<ArrayRef, ArrowError> = match self.op {
            Op::Add => numeric::add(&arrays[0], &arrays[1]),
            Op::Sub => numeric::sub(&arrays[0], &arrays[1]),
            Op::Mul => numeric::mul(&arrays[0], &arrays[1]),
            Op::Neg => numeric::neg(&arrays[0]),
        };
        match out {
            Ok(a) => Ok(ColumnarValue::Array(a)),
            Err(ArrowError::ArithmeticOverflow(_)) => {
                Err(DataFusionError::External(Box::new(Error::new(
                    SqlState::NumericValueOutOfRange,
                    format!("{} out of range", type_name(arrays[0].data_type())),
                ))))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Replaces wrapping integer arithmetic with the checked functions (see the module
/// documentation). Runs after type coercion.
#[derive(Debug)]
pub(crate) struct CheckedArithmetic {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
    neg: Arc<ScalarUDF>,
}

impl Default for CheckedArithmetic {
    fn default() -> Self {
        CheckedArithmetic {
            add: CheckedFn::udf(Op::Add),
            sub: CheckedFn::udf(Op::Sub),
            mul: CheckedFn::udf(Op::Mul),
            neg: CheckedFn::udf(Op::Neg),
        }
    }
}

fn is_checked_int(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

impl CheckedArithmetic {
    fn udf(&self, op: Op) -> &Arc<ScalarUDF> {
        match op {
            Op::Add => &self.add,
            Op::Sub => &self.sub,
            Op::Mul => &self.mul,
            Op::Neg => &self.neg,
        }
    }

    fn rewrite_expr(&self, e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
        let int_type = |e: &Expr| {
            e.get_type(schema as &dyn ExprSchema)
                .ok()
                .filter(is_checked_int)
        };
        Ok(match e {
            Expr::BinaryExpr(b) => match Op::of(b.op) {
                Some(op)
                    if int_type(&b.left).is_some() && int_type(&b.left) == int_type(&b.right) =>
                {
                    Transformed::yes(self.udf(op).call(vec![*b.left, *b.right]))
                }
                _ => Transformed::no(Expr::BinaryExpr(b)),
            },
            Expr::Negative(inner) if int_type(&inner).is_some() => {
                Transformed::yes(self.udf(Op::Neg).call(vec![*inner]))
            }
            other => Transformed::no(other),
        })
    }
}

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "tessera_checked_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let wants = |e: &Expr| match e {
            Expr::BinaryExpr(b) => Op::of(b.op).is_some(),
            Expr::Negative(_) => true,
            _ => false,
        };
        rewrite_expressions(plan, wants, |e, schema| self.rewrite_expr(e, schema))
    }
}
