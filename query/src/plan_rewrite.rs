//! Rewriting the expressions of every node of a logical plan, for tessera's analyzer
//! rules ([`crate::bpchar`], [`crate::checked`]).
//!
//! A rule names the expressions it may change (`wants`); a node with none of them is
//! passed over untouched, so a plan the rule has nothing to do with costs one read-only
//! walk of its expressions and no schema merging. Rewritten expressions keep their
//! names, so the node's output schema does not change shape.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// Apply `rewrite` bottom-up to the expressions of every node of `plan` (subqueries
/// included) that holds an expression for which `wants` is true. `rewrite` sees each
/// expression with the merged schema of the node's inputs.
pub(crate) fn rewrite_expressions(
    plan: LogicalPlan,
    wants: impl Fn(&Expr) -> bool,
    mut rewrite: impl FnMut(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up_with_subqueries(|node| {
            let mut found = false;
            node.apply_expressions(|e| {
                found = e.exists(|x| Ok(wants(x)))?;
                Ok(if found {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })?;
            if !found {
                return Ok(Transformed::no(node));
            }
            let schema = merge_schema(&node.inputs());
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                let out = e.transform_up(|e| rewrite(e, &schema))?;
                Ok(if out.transformed {
                    out.update_data(|e| name.restore(e))
                } else {
                    out
                })
            })
        })?
        .data)
}
