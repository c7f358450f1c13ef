//! Elementwise ops: activations, arithmetic, comparisons, Cast, Clip, Where.

use super::{broadcast, Ctx, Registry};
use crate::error::Result;
use crate::graph::fold;
use crate::graph::{tensor::Tensor, Attr, DType, TensorType};

/// Float unary ops (the name doubles as the lowering key).
pub const FLOAT_UNARY: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Erf",
    "Softplus",
    "Softsign",
    "Elu",
    "Selu",
    "Sin",
    "Cos",
];

/// Unary ops defined for ints and floats.
pub const ANY_UNARY: &[&str] = &["Neg", "Abs", "Identity", "Sign"];

pub const ARITH: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "PRelu"];
pub const VARIADIC: &[&str] = &["Max", "Min", "Sum", "Mean"];
pub const COMPARE: &[&str] = &["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"];
pub const LOGIC: &[&str] = &["And", "Or", "Xor"];

pub(super) fn register(r: &mut Registry) {
    for &op in FLOAT_UNARY {
        r.insert(op, 1, infer_float_unary, Some(fold_unary));
    }
    for &op in ANY_UNARY {
        r.insert(op, 1, infer_unary, Some(fold_unary));
    }
    r.insert("Not", 1, infer_not, Some(fold_unary));
    r.insert("Clip", 1, infer_clip, Some(fold_unary));
    r.insert("Cast", 1, infer_cast, Some(fold_cast));
    for &op in ARITH {
        r.insert(op, 1, infer_arith, Some(fold_nary));
    }
    for &op in VARIADIC {
        r.insert(op, 1, infer_arith, Some(fold_nary));
    }
    for &op in COMPARE {
        r.insert(op, 1, infer_compare, Some(fold_nary));
    }
    for &op in LOGIC {
        r.insert(op, 1, infer_logic, Some(fold_nary));
    }
    r.insert("Where", 9, infer_where, Some(fold_where));
}

fn infer_unary(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    let t = ctx.ty(0)?.clone();
    if ctx.node.op != "Identity" && t.dtype == DType::Bool {
        return Err(ctx.unsupported("bool input"));
    }
    if (ctx.node.op == "Abs" || ctx.node.op == "Sign" || ctx.node.op == "Neg")
        && t.dtype == DType::U8
    {
        return Err(ctx.unsupported("uint8 input"));
    }
    Ok(vec![t])
}

fn infer_not(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    let t = ctx.ty(0)?.clone();
    if t.dtype != DType::Bool {
        return Err(ctx.err("Not takes a bool tensor"));
    }
    Ok(vec![t])
}

fn infer_float_unary(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    ctx.float_input(0)?;
    let (alpha, beta) = match ctx.node.op.as_str() {
        "LeakyRelu" => (0.01, 0.0),
        "HardSigmoid" => (0.2, 0.5),
        "Elu" => (1.0, 0.0),
        "Selu" => (1.673_263_2, 1.050_701),
        _ => (0.0, 0.0),
    };
    if ctx.node.op == "Selu" {
        let g = ctx.node.attrs.float_or("gamma", beta);
        ctx.set("beta", Attr::Float(g));
    } else {
        let b = ctx.node.attrs.float_or("beta", beta);
        ctx.set("beta", Attr::Float(b));
    }
    let a = ctx.node.attrs.float_or("alpha", alpha);
    ctx.set("alpha", Attr::Float(a));
    Ok(vec![ctx.ty(0)?.clone()])
}

fn infer_clip(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 3)?;
    let t = ctx.ty(0)?.clone();
    if t.dtype == DType::Bool {
        return Err(ctx.unsupported("bool input"));
    }
    let (lo, hi) = if ctx.opset < 11 {
        (
            ctx.node.attrs.float_or("min", f32::MIN) as f64,
            ctx.node.attrs.float_or("max", f32::MAX) as f64,
        )
    } else {
        let lo = if ctx.has(1) {
            ctx.need_const(1)?.to_f64_vec()[0]
        } else {
            f64::NEG_INFINITY
        };
        let hi = if ctx.has(2) {
            ctx.need_const(2)?.to_f64_vec()[0]
        } else {
            f64::INFINITY
        };
        (lo, hi)
    };
    ctx.keep_inputs(1);
    ctx.set("min", Attr::Floats(vec![lo as f32]));
    ctx.set("max", Attr::Floats(vec![hi as f32]));
    // Exact bounds for integer clips (f32 cannot hold every i64).
    ctx.set("min_i", Attr::Int(clamp_i64(lo)));
    ctx.set("max_i", Attr::Int(clamp_i64(hi)));
    Ok(vec![t])
}

fn clamp_i64(x: f64) -> i64 {
    if x.is_infinite() {
        if x > 0.0 {
            i64::MAX
        } else {
            i64::MIN
        }
    } else {
        x as i64
    }
}

fn infer_cast(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    let t = ctx.ty(0)?.clone();
    let to = ctx
        .node
        .attrs
        .int("to")
        .ok_or_else(|| ctx.err("missing attribute 'to'"))?;
    let dtype = DType::from_onnx(to as i32)
        .ok_or_else(|| ctx.unsupported(format!("cast to {}", DType::onnx_name(to as i32))))?;
    Ok(vec![TensorType::new(dtype, t.shape)])
}

fn out_shape(ctx: &Ctx) -> Result<Vec<usize>> {
    let mut shapes = Vec::new();
    for i in 0..ctx.n_in() {
        shapes.push(ctx.ty(i)?.shape.as_slice());
    }
    broadcast(&shapes).ok_or_else(|| {
        ctx.err(format!(
            "input shapes {:?} do not broadcast",
            shapes.iter().map(|s| s.to_vec()).collect::<Vec<_>>()
        ))
    })
}

fn same_dtype(ctx: &Ctx) -> Result<DType> {
    let d = ctx.ty(0)?.dtype;
    for i in 1..ctx.n_in() {
        let di = ctx.ty(i)?.dtype;
        if di != d && (ctx.node.op != "Pow") {
            return Err(ctx.err(format!("input {i} is {di}, input 0 is {d}")));
        }
    }
    Ok(d)
}

fn infer_arith(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    if ctx.n_in() == 0 || ctx.node.inputs.iter().any(|i| i.is_none()) {
        return Err(ctx.err("needs at least one input and no empty inputs"));
    }
    if !super::super::ops::elementwise::VARIADIC.contains(&ctx.node.op.as_str()) {
        ctx.expect_inputs(2, 2)?;
    }
    let d = same_dtype(ctx)?;
    if d == DType::Bool {
        return Err(ctx.unsupported("bool arithmetic"));
    }
    if ctx.node.op == "Pow" && ctx.ty(1)?.dtype != d {
        return Err(ctx.unsupported("Pow with mixed element types"));
    }
    if ctx.node.op == "Mean" && !d.is_float() {
        return Err(ctx.unsupported("integer Mean"));
    }
    if ctx.node.op == "PRelu" && !d.is_float() {
        return Err(ctx.unsupported("integer PRelu"));
    }
    if ctx.node.op == "Pow" && !d.is_float() {
        return Err(ctx.unsupported("integer Pow"));
    }
    Ok(vec![TensorType::new(d, out_shape(ctx)?)])
}

fn infer_compare(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    same_dtype(ctx)?;
    Ok(vec![TensorType::new(DType::Bool, out_shape(ctx)?)])
}

fn infer_logic(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    if same_dtype(ctx)? != DType::Bool {
        return Err(ctx.err("logical ops take bool tensors"));
    }
    Ok(vec![TensorType::new(DType::Bool, out_shape(ctx)?)])
}

fn infer_where(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(3, 3)?;
    if ctx.ty(0)?.dtype != DType::Bool {
        return Err(ctx.err("condition must be bool"));
    }
    let d = ctx.ty(1)?.dtype;
    if ctx.ty(2)?.dtype != d {
        return Err(ctx.err("X and Y element types differ"));
    }
    Ok(vec![TensorType::new(d, out_shape(ctx)?)])
}

// ---- folding -------------------------------------------------------------------------------

fn fold_unary(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let t = x[0];
    let a = &ctx.node.attrs;
    let op = ctx.node.op.as_str();
    if op == "Identity" {
        return Ok(vec![t.clone()]);
    }
    if op == "Not" {
        let v: Vec<i64> = t.to_i64_vec().iter().map(|&b| (b == 0) as i64).collect();
        return Ok(vec![Tensor::from_i64(DType::Bool, t.shape.clone(), &v)]);
    }
    if !t.dtype().is_float() {
        let v = t.to_i64_vec();
        let (lo, hi) = (a.int_or("min_i", i64::MIN), a.int_or("max_i", i64::MAX));
        let r: Vec<i64> = v
            .iter()
            .map(|&x| match op {
                "Neg" => x.wrapping_neg(),
                "Abs" => x.wrapping_abs(),
                "Sign" => x.signum(),
                "Clip" => x.clamp(lo, hi.max(lo)),
                _ => x,
            })
            .collect();
        if !matches!(op, "Neg" | "Abs" | "Sign" | "Clip") {
            return Err(ctx.unsupported("integer input"));
        }
        return Ok(vec![Tensor::from_i64(t.dtype(), t.shape.clone(), &r)]);
    }
    let alpha = a.float_or("alpha", 0.0) as f64;
    let beta = a.float_or("beta", 0.0) as f64;
    let lo = a
        .floats("min")
        .map(|v| v[0] as f64)
        .unwrap_or(f64::NEG_INFINITY);
    let hi = a
        .floats("max")
        .map(|v| v[0] as f64)
        .unwrap_or(f64::INFINITY);
    let f = |x: f64| -> f64 {
        match op {
            "Relu" => x.max(0.0),
            "LeakyRelu" => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            "Sigmoid" => 1.0 / (1.0 + (-x).exp()),
            "HardSigmoid" => (alpha * x + beta).clamp(0.0, 1.0),
            "HardSwish" => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            "Tanh" => x.tanh(),
            "Exp" => x.exp(),
            "Log" => x.ln(),
            "Sqrt" => x.sqrt(),
            "Reciprocal" => 1.0 / x,
            "Floor" => x.floor(),
            "Ceil" => x.ceil(),
            "Neg" => -x,
            "Abs" => x.abs(),
            "Sign" => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            "Clip" => x.max(lo).min(hi),
            _ => f64::NAN,
        }
    };
    if !matches!(
        op,
        "Relu"
            | "LeakyRelu"
            | "Sigmoid"
            | "HardSigmoid"
            | "HardSwish"
            | "Tanh"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Reciprocal"
            | "Floor"
            | "Ceil"
            | "Neg"
            | "Abs"
            | "Sign"
            | "Clip"
    ) {
        return Err(ctx.unsupported("no folder"));
    }
    let v: Vec<f64> = t.to_f64_vec().into_iter().map(f).collect();
    Ok(vec![Tensor::from_f64(t.dtype(), t.shape.clone(), &v)])
}

fn fold_cast(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let to = DType::from_onnx(ctx.node.attrs.int_or("to", 1) as i32).expect("checked by infer");
    let t = x[0];
    Ok(vec![if t.dtype().is_float() && !to.is_float() {
        let v: Vec<f64> = t.to_f64_vec();
        Tensor::from_f64(to, t.shape.clone(), &v)
    } else if t.dtype().is_float() {
        Tensor::from_f64(to, t.shape.clone(), &t.to_f64_vec())
    } else {
        Tensor::from_i64(to, t.shape.clone(), &t.to_i64_vec())
    }])
}

fn fold_nary(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let shapes: Vec<&[usize]> = x.iter().map(|t| t.shape.as_slice()).collect();
    let shape = broadcast(&shapes).ok_or_else(|| ctx.err("shapes do not broadcast"))?;
    let op = ctx.node.op.as_str();
    let dtype = x[0].dtype();
    let cols: Vec<Vec<usize>> = x
        .iter()
        .map(|t| fold::bcast_index(&t.shape, &shape))
        .collect();
    let n = cols.first().map(|c| c.len()).unwrap_or(0);
    let is_cmp = super::elementwise::COMPARE.contains(&op);
    let out_dtype = if is_cmp || LOGIC.contains(&op) {
        DType::Bool
    } else {
        dtype
    };
    if dtype.is_float() {
        let vals: Vec<Vec<f64>> = x.iter().map(|t| t.to_f64_vec()).collect();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let a = vals[0][cols[0][i]];
            let b = || vals[1][cols[1][i]];
            let r = match op {
                "Add" => a + b(),
                "Sub" => a - b(),
                "Mul" => a * b(),
                "Div" => a / b(),
                "Pow" => a.powf(b()),
                "PRelu" => {
                    if a < 0.0 {
                        a * b()
                    } else {
                        a
                    }
                }
                "Max" | "Min" | "Sum" | "Mean" => {
                    let mut acc = a;
                    for k in 1..x.len() {
                        let v = vals[k][cols[k][i]];
                        acc = match op {
                            "Max" => acc.max(v),
                            "Min" => acc.min(v),
                            _ => acc + v,
                        };
                    }
                    if op == "Mean" {
                        acc / x.len() as f64
                    } else {
                        acc
                    }
                }
                "Equal" => (a == b()) as i64 as f64,
                "Less" => (a < b()) as i64 as f64,
                "Greater" => (a > b()) as i64 as f64,
                "LessOrEqual" => (a <= b()) as i64 as f64,
                "GreaterOrEqual" => (a >= b()) as i64 as f64,
                _ => return Err(ctx.unsupported("no folder")),
            };
            out.push(r);
        }
        return Ok(vec![Tensor::from_f64(out_dtype, shape, &out)]);
    }
    let vals: Vec<Vec<i64>> = x.iter().map(|t| t.to_i64_vec()).collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = vals[0][cols[0][i]];
        let b = || vals[1][cols[1][i]];
        let r = match op {
            "Add" => a.wrapping_add(b()),
            "Sub" => a.wrapping_sub(b()),
            "Mul" => a.wrapping_mul(b()),
            "Div" => {
                let d = b();
                if d == 0 {
                    return Err(ctx.err("integer division by zero in a constant"));
                }
                a.wrapping_div(d)
            }
            "Max" | "Min" | "Sum" => {
                let mut acc = a;
                for k in 1..x.len() {
                    let v = vals[k][cols[k][i]];
                    acc = match op {
                        "Max" => acc.max(v),
                        "Min" => acc.min(v),
                        _ => acc.wrapping_add(v),
                    };
                }
                acc
            }
            "Equal" => (a == b()) as i64,
            "Less" => (a < b()) as i64,
            "Greater" => (a > b()) as i64,
            "LessOrEqual" => (a <= b()) as i64,
            "GreaterOrEqual" => (a >= b()) as i64,
            "And" => ((a != 0) && (b() != 0)) as i64,
            "Or" => ((a != 0) || (b() != 0)) as i64,
            "Xor" => ((a != 0) ^ (b() != 0)) as i64,
            _ => return Err(ctx.unsupported("no folder")),
        };
        out.push(r);
    }
    Ok(vec![Tensor::from_i64(out_dtype, shape, &out)])
}

fn fold_where(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let shapes: Vec<&[usize]> = x.iter().map(|t| t.shape.as_slice()).collect();
    let shape = broadcast(&shapes).ok_or_else(|| ctx.err("shapes do not broadcast"))?;
    let c = x[0].to_i64_vec();
    let ic = fold::bcast_index(&x[0].shape, &shape);
    let ia = fold::bcast_index(&x[1].shape, &shape);
    let ib = fold::bcast_index(&x[2].shape, &shape);
    // Select flat indices into a concatenation of X and Y.
    let cat = fold::concat_flat(x[1], x[2]);
    let off = x[1].len();
    let idx: Vec<usize> = (0..ic.len())
        .map(|i| if c[ic[i]] != 0 { ia[i] } else { off + ib[i] })
        .collect();
    Ok(vec![cat.take(shape, &idx)])
}
