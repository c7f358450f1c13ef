//! Ops that decode compressed weights in standard ONNX: DequantizeLinear, GatherElements,
//! ScatterElements, CumSum; and QuantizeLinear. bonsai folds them when their inputs are
//! constants (the weight decoders its own writer emits, and those of QDQ models). On run-time
//! values only per-tensor QuantizeLinear/DequantizeLinear are compiled (activation QDQ); the
//! others are rejected at import, naming the input that must be constant.

use super::{norm_axis, Ctx, Registry};
use crate::error::Result;
use crate::graph::fold::for_each_index;
use crate::graph::tensor::{strides, Tensor};
use crate::graph::{Attr, DType, TensorType};

pub(super) fn register(r: &mut Registry) {
    r.insert(
        "DequantizeLinear",
        10,
        infer_dequantize,
        Some(fold_dequantize),
    );
    r.insert("QuantizeLinear", 10, infer_quantize, Some(fold_quantize));
    r.insert(
        "GatherElements",
        11,
        infer_gather_elements,
        Some(fold_gather_elements),
    );
    r.insert(
        "ScatterElements",
        11,
        infer_scatter_elements,
        Some(fold_scatter_elements),
    );
    r.insert("CumSum", 11, infer_cumsum, Some(fold_cumsum));
}

fn constant_only(ctx: &Ctx) -> Result<()> {
    for i in 0..ctx.n_in() {
        if ctx.has(i) {
            ctx.need_const(i)?;
        }
    }
    Ok(())
}

/// Scale and zero point must be constants; a run-time input 0 needs a per-tensor scale.
fn quant_params_const(ctx: &Ctx) -> Result<()> {
    for i in 1..ctx.n_in() {
        if ctx.has(i) {
            ctx.need_const(i)?;
        }
    }
    if ctx.konst(0).is_none() && ctx.ty(1)?.numel() != 1 {
        ctx.need_const(0)?;
    }
    Ok(())
}

fn infer_quantize(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 3)?;
    quant_params_const(ctx)?;
    ctx.reject_attr("block_size", "blocked quantisation")?;
    ctx.reject_attr("output_dtype", "output_dtype")?;
    if ctx.attr_int("saturate", 1) != 1 {
        return Err(ctx.unsupported("saturate=0"));
    }
    let x = ctx.ty(0)?.clone();
    if x.dtype != DType::F32 {
        return Err(ctx.unsupported(format!("input of type {}", x.dtype)));
    }
    let s = ctx.ty(1)?.clone();
    if s.numel() != 1 {
        let a = norm_axis(ctx, ctx.attr_int("axis", 1), x.rank())?;
        if s.rank() != 1 || s.shape[0] != x.shape[a] {
            return Err(ctx.err(format!("scale {s} does not match dim {a} of the input {x}")));
        }
        ctx.set("axis", Attr::Int(a as i64));
    }
    let dt = if ctx.has(2) {
        ctx.ty(2)?.dtype
    } else {
        DType::U8
    };
    if !matches!(dt, DType::U8 | DType::I8) {
        return Err(ctx.unsupported(format!("output type {dt}")));
    }
    Ok(vec![TensorType::new(dt, x.shape)])
}

/// Per-element (scale, zero point) lookup of a Q/DQ node.
fn qparams<'a>(ctx: &Ctx, x: &'a [&'a Tensor]) -> (Vec<f32>, Vec<i64>, usize, usize) {
    let s: Vec<f32> = x[1].to_f64_vec().iter().map(|&v| v as f32).collect();
    let z = if x.len() > 2 {
        x[2].to_i64_vec()
    } else {
        vec![0; s.len()]
    };
    let (axis_len, inner) = if s.len() == 1 {
        (1, 1)
    } else {
        let a = ctx.attr_int("axis", 1) as usize;
        (x[0].shape[a], strides(&x[0].shape)[a])
    };
    (s, z, axis_len, inner)
}

/// ONNX QuantizeLinear on one value: round half to even, saturate.
pub fn quantize_value(x: f32, s: f32, z: i64, dt: DType) -> i64 {
    let (lo, hi) = if dt == DType::U8 {
        (0.0, 255.0)
    } else {
        (-128.0, 127.0)
    };
    ((x / s).round_ties_even() + z as f32).clamp(lo, hi) as i64
}

fn fold_quantize(ctx: &Ctx, x: &[&Tensor], out: &[TensorType]) -> Result<Vec<Tensor>> {
    let (s, z, axis_len, inner) = qparams(ctx, x);
    let dt = out[0].dtype;
    let v: Vec<i64> = x[0]
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            let p = if s.len() == 1 {
                0
            } else {
                (i / inner) % axis_len
            };
            quantize_value(xi as f32, s[p], z[p], dt)
        })
        .collect();
    Ok(vec![Tensor::from_i64(dt, x[0].shape.clone(), &v)])
}

fn infer_dequantize(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 3)?;
    quant_params_const(ctx)?;
    ctx.reject_attr("block_size", "blocked quantisation")?;
    let x = ctx.ty(0)?.clone();
    if !matches!(x.dtype, DType::I8 | DType::U8 | DType::I32) {
        return Err(ctx.unsupported(format!("input of type {}", x.dtype)));
    }
    let s = ctx.ty(1)?.clone();
    if s.dtype != DType::F32 {
        return Err(ctx.unsupported(format!("scale of type {}", s.dtype)));
    }
    if s.numel() != 1 {
        let a = norm_axis(ctx, ctx.attr_int("axis", 1), x.rank())?;
        if s.rank() != 1 || s.shape[0] != x.shape[a] {
            return Err(ctx.err(format!("scale {s} does not match dim {a} of the input {x}")));
        }
        ctx.set("axis", Attr::Int(a as i64));
    }
    if ctx.has(2) {
        let z = ctx.ty(2)?;
        if z.dtype != x.dtype || z.shape != s.shape {
            return Err(ctx.err(format!(
                "zero point {z} does not match scale {s} / input {x}"
            )));
        }
    }
    Ok(vec![TensorType::new(DType::F32, x.shape)])
}

fn fold_dequantize(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let q = x[0].to_i64_vec();
    let (s, z, axis_len, inner) = qparams(ctx, x);
    let v: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &qi)| {
            let p = if s.len() == 1 {
                0
            } else {
                (i / inner) % axis_len
            };
            (qi - z[p]) as f32 * s[p]
        })
        .collect();
    Ok(vec![Tensor::f32(x[0].shape.clone(), v)])
}

fn index_dtype(ctx: &Ctx, i: usize) -> Result<()> {
    let t = ctx.ty(i)?;
    if !matches!(t.dtype, DType::I64 | DType::I32) {
        return Err(ctx.err(format!("indices are {}, need int32/int64", t.dtype)));
    }
    Ok(())
}

fn infer_gather_elements(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    constant_only(ctx)?;
    index_dtype(ctx, 1)?;
    let d = ctx.ty(0)?.clone();
    let i = ctx.ty(1)?.clone();
    if d.rank() != i.rank() {
        return Err(ctx.err(format!("data {d} and indices {i} differ in rank")));
    }
    let a = norm_axis(ctx, ctx.attr_int("axis", 0), d.rank())?;
    ctx.set("axis", Attr::Int(a as i64));
    Ok(vec![TensorType::new(d.dtype, i.shape)])
}

/// Flat index into `shape` of `pos` with axis `a` replaced by `j` (negative: from the end).
fn flat_with(shape: &[usize], st: &[usize], pos: &[usize], a: usize, j: i64) -> Option<usize> {
    let n = shape[a] as i64;
    let j = if j < 0 { j + n } else { j };
    if !(0..n).contains(&j) {
        return None;
    }
    Some(
        pos.iter()
            .enumerate()
            .map(|(k, &p)| if k == a { j as usize } else { p } * st[k])
            .sum(),
    )
}

fn fold_gather_elements(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let a = ctx.attr_int("axis", 0) as usize;
    let (d, ind) = (x[0], x[1]);
    let iv = ind.to_i64_vec();
    let st = strides(&d.shape);
    let mut idx = Vec::with_capacity(iv.len());
    let mut bad = None;
    let mut i = 0;
    for_each_index(&ind.shape, |pos| {
        match flat_with(&d.shape, &st, pos, a, iv[i]) {
            Some(f) => idx.push(f),
            None => {
                bad.get_or_insert(iv[i]);
                idx.push(0);
            }
        }
        i += 1;
    });
    if let Some(b) = bad {
        return Err(ctx.err(format!(
            "index {b} is out of range for dim {a} of {:?}",
            d.shape
        )));
    }
    Ok(vec![d.take(ind.shape.clone(), &idx)])
}

fn infer_scatter_elements(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(3, 3)?;
    constant_only(ctx)?;
    index_dtype(ctx, 1)?;
    if ctx.node.attrs.str("reduction").is_some_and(|r| r != "none") {
        return Err(ctx.unsupported("attribute reduction other than none"));
    }
    let d = ctx.ty(0)?.clone();
    let (i, u) = (ctx.ty(1)?.clone(), ctx.ty(2)?.clone());
    if i.shape != u.shape || u.dtype != d.dtype || i.rank() != d.rank() {
        return Err(ctx.err(format!("indices {i} / updates {u} do not fit data {d}")));
    }
    let a = norm_axis(ctx, ctx.attr_int("axis", 0), d.rank())?;
    ctx.set("axis", Attr::Int(a as i64));
    Ok(vec![d])
}

fn fold_scatter_elements(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let a = ctx.attr_int("axis", 0) as usize;
    let (d, ind, upd) = (x[0], x[1], x[2]);
    let iv = ind.to_i64_vec();
    let st = strides(&d.shape);
    // Where each element of the result comes from: itself, or an update.
    let mut src: Vec<usize> = (0..d.len()).collect();
    let n = d.len();
    let mut bad = None;
    let mut i = 0;
    for_each_index(&ind.shape, |pos| {
        match flat_with(&d.shape, &st, pos, a, iv[i]) {
            Some(f) => src[f] = n + i,
            None => {
                bad.get_or_insert(iv[i]);
            }
        }
        i += 1;
    });
    if let Some(b) = bad {
        return Err(ctx.err(format!(
            "index {b} is out of range for dim {a} of {:?}",
            d.shape
        )));
    }
    let both = crate::graph::fold::concat_flat(d, upd);
    Ok(vec![both.take(d.shape.clone(), &src)])
}

fn infer_cumsum(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    constant_only(ctx)?;
    let x = ctx.ty(0)?.clone();
    if x.dtype == DType::Bool {
        return Err(ctx.unsupported("bool input"));
    }
    let axis = ctx.need_const(1)?.to_i64_vec();
    let a = norm_axis(ctx, *axis.first().unwrap_or(&0), x.rank())?;
    if ctx.attr_int("exclusive", 0) != 0 || ctx.attr_int("reverse", 0) != 0 {
        return Err(ctx.unsupported("exclusive or reverse"));
    }
    ctx.set("axis", Attr::Int(a as i64));
    Ok(vec![x])
}

fn fold_cumsum(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let a = ctx.attr_int("axis", 0) as usize;
    let t = x[0];
    let st = strides(&t.shape);
    let (len, step) = (t.shape[a], st[a]);
    let float = t.dtype().is_float();
    let (mut fv, mut iv) = (t.to_f64_vec(), t.to_i64_vec());
    for i in 0..t.len() {
        if (i / step) % len != 0 {
            if float {
                fv[i] += fv[i - step];
            } else {
                iv[i] += iv[i - step];
            }
        }
    }
    Ok(vec![if float {
        Tensor::from_f64(t.dtype(), t.shape.clone(), &fv)
    } else {
        Tensor::from_i64(t.dtype(), t.shape.clone(), &iv)
    }])
}
