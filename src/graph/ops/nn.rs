//! Neural-network ops: Conv, pooling, Gemm/MatMul, BatchNormalization, Softmax.

use super::{broadcast, norm_axis, Ctx, Registry};
use crate::error::Result;
use crate::graph::{Attr, TensorType};

pub(super) fn register(r: &mut Registry) {
    r.insert("Conv", 1, infer_conv, None);
    r.insert("MaxPool", 1, infer_pool, None);
    r.insert("AveragePool", 1, infer_pool, None);
    r.insert("GlobalAveragePool", 1, infer_global_pool, None);
    r.insert("GlobalMaxPool", 1, infer_global_pool, None);
    r.insert("Gemm", 1, infer_gemm, None);
    r.insert("MatMul", 1, infer_matmul, None);
    r.insert("BatchNormalization", 1, infer_batchnorm, None);
    r.insert("Softmax", 1, infer_softmax, None);
    r.insert("LogSoftmax", 1, infer_softmax, None);
    r.insert("Dropout", 1, infer_dropout, None);
}

/// Resolve kernel/strides/dilations/pads (incl. auto_pad) for `rank` spatial dims, write them
/// back as canonical attributes and return the output spatial sizes.
fn window(
    ctx: &mut Ctx,
    spatial: &[usize],
    kernel: Vec<usize>,
    ceil_mode: bool,
) -> Result<Vec<usize>> {
    let r = spatial.len();
    let get = |ctx: &Ctx, k: &str, d: i64, n: usize| -> Result<Vec<i64>> {
        match ctx.node.attrs.ints(k) {
            Some(v) if v.len() == n => Ok(v.to_vec()),
            Some(v) => Err(ctx.err(format!(
                "attribute {k} has {} values, {n} expected",
                v.len()
            ))),
            None => Ok(vec![d; n]),
        }
    };
    let strides = get(ctx, "strides", 1, r)?;
    let dil = get(ctx, "dilations", 1, r)?;
    let mut pads = get(ctx, "pads", 0, 2 * r)?;
    if strides.iter().chain(&dil).any(|&x| x < 1) || pads.iter().any(|&p| p < 0) {
        return Err(ctx.err("strides and dilations must be >= 1 and pads >= 0"));
    }
    let auto = ctx
        .node
        .attrs
        .str("auto_pad")
        .unwrap_or("NOTSET")
        .to_string();
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let (inp, k, s, d) = (spatial[i] as i64, kernel[i] as i64, strides[i], dil[i]);
        let ext = (k - 1) * d + 1;
        match auto.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = (inp + s - 1) / s;
                let total = ((o - 1) * s + ext - inp).max(0);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = b;
                pads[i + r] = e;
            }
            "VALID" => {
                pads[i] = 0;
                pads[i + r] = 0;
            }
            "NOTSET" | "" => {}
            other => return Err(ctx.err(format!("unknown auto_pad '{other}'"))),
        }
        let span = inp + pads[i] + pads[i + r] - ext;
        if span < 0 {
            return Err(ctx.err(format!(
                "window {ext} is larger than the padded input {} along spatial dim {i}",
                inp + pads[i] + pads[i + r]
            )));
        }
        let mut o = if ceil_mode {
            (span + s - 1) / s + 1
        } else {
            span / s + 1
        };
        // A last window that starts inside the end padding is dropped (as onnxruntime does).
        if ceil_mode && (o - 1) * s >= inp + pads[i] {
            o -= 1;
        }
        out.push(o as usize);
    }
    ctx.set(
        "kernel",
        Attr::Ints(kernel.iter().map(|&k| k as i64).collect()),
    );
    ctx.set("strides", Attr::Ints(strides));
    ctx.set("dilations", Attr::Ints(dil));
    ctx.set("pads", Attr::Ints(pads));
    ctx.node.attrs.0.remove("auto_pad");
    Ok(out)
}

fn infer_conv(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 3)?;
    let dt = ctx.float_input(0)?;
    let x = ctx.ty(0)?.clone();
    let w = ctx.ty(1)?.clone();
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(ctx.err(format!(
            "X is {x}, W is {w}: need N x C x spatial and matching W"
        )));
    }
    let group = ctx.attr_int("group", 1);
    let (c, m) = (x.shape[1], w.shape[0]);
    if group < 1
        || c % group as usize != 0
        || m % group as usize != 0
        || w.shape[1] * group as usize != c
    {
        return Err(ctx.err(format!(
            "group {group} does not fit X channels {c} and W {w}"
        )));
    }
    if ctx.has(2) && ctx.ty(2)?.shape != vec![m] {
        return Err(ctx.err(format!("bias is {}, expected [{m}]", ctx.ty(2)?)));
    }
    let kernel: Vec<usize> = w.shape[2..].to_vec();
    if let Some(k) = ctx.node.attrs.ints("kernel_shape") {
        if k.iter().map(|&k| k as usize).collect::<Vec<_>>() != kernel {
            return Err(ctx.err(format!("kernel_shape {k:?} disagrees with W {w}")));
        }
    }
    let sp = window(ctx, &x.shape[2..], kernel, false)?;
    ctx.set("group", Attr::Int(group));
    let mut shape = vec![x.shape[0], m];
    shape.extend(sp);
    Ok(vec![TensorType::new(dt, shape)])
}

fn infer_pool(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    if ctx.node.outputs.len() > 1 && !ctx.g.values[ctx.node.outputs[1]].name.is_empty() {
        return Err(ctx.unsupported("the Indices output"));
    }
    ctx.reject_attr("storage_order", "only row-major")
        .or_else(|e| {
            if ctx.attr_int("storage_order", 0) == 0 {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    let dt = ctx.float_input(0)?;
    let x = ctx.ty(0)?.clone();
    if x.rank() < 3 {
        return Err(ctx.err(format!("X is {x}: need N x C x spatial")));
    }
    let kernel: Vec<usize> = ctx
        .node
        .attrs
        .ints("kernel_shape")
        .ok_or_else(|| ctx.err("missing kernel_shape"))?
        .iter()
        .map(|&k| k as usize)
        .collect();
    if kernel.len() != x.rank() - 2 || kernel.contains(&0) {
        return Err(ctx.err(format!("kernel_shape {kernel:?} does not fit X {x}")));
    }
    let ceil = ctx.attr_int("ceil_mode", 0) != 0;
    let sp = window(ctx, &x.shape[2..], kernel, ceil)?;
    let cip = ctx.attr_int("count_include_pad", 0);
    ctx.set("count_include_pad", Attr::Int(cip));
    let mut shape = x.shape[..2].to_vec();
    shape.extend(sp);
    Ok(vec![TensorType::new(dt, shape)])
}

fn infer_global_pool(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    let dt = ctx.float_input(0)?;
    let x = ctx.ty(0)?.clone();
    if x.rank() < 3 {
        return Err(ctx.err(format!("X is {x}: need N x C x spatial")));
    }
    let mut shape = x.shape.clone();
    for d in &mut shape[2..] {
        *d = 1;
    }
    Ok(vec![TensorType::new(dt, shape)])
}

fn infer_gemm(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 3)?;
    let dt = ctx.float_input(0)?;
    let (a, b) = (ctx.ty(0)?.clone(), ctx.ty(1)?.clone());
    if a.rank() != 2 || b.rank() != 2 {
        return Err(ctx.err(format!("A is {a}, B is {b}: Gemm takes matrices")));
    }
    let ta = ctx.attr_int("transA", 0) != 0;
    let tb = ctx.attr_int("transB", 0) != 0;
    let (m, k) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (k2, n) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k != k2 {
        return Err(ctx.err(format!(
            "inner dims differ: A {a} (transA={ta}), B {b} (transB={tb})"
        )));
    }
    if ctx.has(2) {
        let c = ctx.ty(2)?;
        if broadcast(&[&c.shape, &[m, n]]) != Some(vec![m, n]) {
            return Err(ctx.err(format!("C {c} does not broadcast to [{m}, {n}]")));
        }
    }
    for (k, d) in [("alpha", 1.0), ("beta", 1.0)] {
        let v = ctx.node.attrs.float_or(k, d);
        ctx.set(k, Attr::Float(v));
    }
    ctx.set("transA", Attr::Int(ta as i64));
    ctx.set("transB", Attr::Int(tb as i64));
    Ok(vec![TensorType::new(dt, vec![m, n])])
}

/// numpy matmul shape rule; None when the shapes do not fit.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return None;
    }
    let mut out = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Some(out)
}

fn infer_matmul(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    let dt = ctx.float_input(0)?;
    let (a, b) = (ctx.ty(0)?.clone(), ctx.ty(1)?.clone());
    let shape = matmul_shape(&a.shape, &b.shape)
        .ok_or_else(|| ctx.err(format!("A {a} and B {b} do not multiply")))?;
    Ok(vec![TensorType::new(dt, shape)])
}

fn infer_batchnorm(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(5, 5)?;
    if ctx.attr_int("training_mode", 0) != 0
        || ctx.node.outputs[1..]
            .iter()
            .any(|&v| !ctx.g.values[v].name.is_empty())
    {
        return Err(ctx.unsupported("training mode (running statistics outputs)"));
    }
    let dt = ctx.float_input(0)?;
    let x = ctx.ty(0)?.clone();
    if x.rank() < 2 {
        return Err(ctx.err(format!("X is {x}: need N x C x ...")));
    }
    for i in 1..5 {
        if ctx.ty(i)?.shape != vec![x.shape[1]] {
            return Err(ctx.err(format!(
                "input {i} is {}, expected [{}]",
                ctx.ty(i)?,
                x.shape[1]
            )));
        }
    }
    let eps = ctx.node.attrs.float_or("epsilon", 1e-5);
    ctx.set("epsilon", Attr::Float(eps));
    Ok(vec![TensorType::new(dt, x.shape)])
}

fn infer_softmax(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    let dt = ctx.float_input(0)?;
    let x = ctx.ty(0)?.clone();
    let legacy = ctx.opset < 13;
    let axis = ctx.attr_int("axis", if legacy { 1 } else { -1 });
    let a = norm_axis(ctx, axis, x.rank())?;
    ctx.set("axis", Attr::Int(a as i64));
    ctx.set("legacy", Attr::Int(legacy as i64));
    Ok(vec![TensorType::new(dt, x.shape)])
}

fn infer_dropout(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    if ctx.node.outputs.len() > 1 && !ctx.g.values[ctx.node.outputs[1]].name.is_empty() {
        return Err(ctx.unsupported("the mask output"));
    }
    if ctx.has(2) && ctx.need_const(2)?.to_i64_vec().first() == Some(&1) {
        return Err(ctx.unsupported("training_mode=true"));
    }
    // Inference: Dropout is the identity.
    ctx.keep_inputs(1);
    ctx.node.op = "Identity".into();
    Ok(vec![ctx.ty(0)?.clone()])
}
