//! Reductions: ReduceSum/Mean/Max/Min/Prod/SumSquare/L1/L2.

use super::shape::axes_operand;
use super::{norm_axis, Ctx, Registry};
use crate::error::Result;
use crate::graph::{Attr, TensorType};

pub const REDUCE: &[&str] = &[
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
];

pub(super) fn register(r: &mut Registry) {
    for &op in REDUCE {
        r.insert(op, 1, infer_reduce, None);
    }
}

fn infer_reduce(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 2)?;
    let x = ctx.ty(0)?.clone();
    if x.dtype == crate::graph::DType::Bool {
        return Err(ctx.unsupported("bool input"));
    }
    if !x.dtype.is_float()
        && !matches!(
            ctx.node.op.as_str(),
            "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        )
    {
        return Err(ctx.unsupported(format!("{} input", x.dtype)));
    }
    // Axes moved from attribute to input at opset 13 for ReduceSum, 18 for the others.
    let since = if ctx.node.op == "ReduceSum" { 13 } else { 18 };
    let axes = axes_operand(ctx, since)?;
    let noop = ctx.attr_int("noop_with_empty_axes", 0) != 0;
    let keep = ctx.attr_int("keepdims", 1) != 0;
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => {
            let mut v = Vec::new();
            for ax in a {
                let n = norm_axis(ctx, ax, x.rank())?;
                if v.contains(&n) {
                    return Err(ctx.err(format!("axis {n} repeated")));
                }
                v.push(n);
            }
            v.sort();
            v
        }
        _ if noop => vec![],
        _ => (0..x.rank()).collect(),
    };
    if axes.iter().any(|&a| x.shape[a] == 0)
        && matches!(ctx.node.op.as_str(), "ReduceMax" | "ReduceMin")
    {
        return Err(ctx.unsupported("empty reduction of max/min"));
    }
    let mut shape = Vec::new();
    for (i, &d) in x.shape.iter().enumerate() {
        if axes.contains(&i) {
            if keep {
                shape.push(1);
            }
        } else {
            shape.push(d);
        }
    }
    ctx.keep_inputs(1);
    ctx.node.attrs = Default::default();
    ctx.set("axes", Attr::Ints(axes.iter().map(|&a| a as i64).collect()));
    ctx.set("keepdims", Attr::Int(keep as i64));
    Ok(vec![TensorType::new(x.dtype, shape)])
}
