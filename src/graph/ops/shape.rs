//! Data-movement and shape ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
//! Slice, Gather, Shape, Size, ConstantOfShape, Expand, Pad, Range.

use super::{broadcast, norm_axis, Ctx, Registry};
use crate::error::Result;
use crate::graph::fold::{bcast_index, concat_all, for_each_index};
use crate::graph::tensor::{numel, strides, Tensor};
use crate::graph::{Attr, DType, TensorType};

pub(super) fn register(r: &mut Registry) {
    for op in ["Reshape", "Flatten", "Squeeze", "Unsqueeze"] {
        r.insert(op, 1, infer_reshape_like, Some(fold_reshape));
    }
    r.insert("Expand", 8, infer_expand, Some(fold_expand));
    r.insert("Transpose", 1, infer_transpose, Some(fold_transpose));
    r.insert("Concat", 1, infer_concat, Some(fold_concat));
    r.insert("Slice", 1, infer_slice, Some(fold_slice));
    r.insert("Gather", 1, infer_gather, Some(fold_gather));
    r.insert("Shape", 1, infer_shape, Some(fold_shape));
    r.insert("Size", 1, infer_size, Some(fold_shape));
    r.insert(
        "ConstantOfShape",
        9,
        infer_const_of_shape,
        Some(fold_const_of_shape),
    );
    r.insert("Pad", 1, infer_pad, None);
    r.insert("Range", 11, infer_range, Some(fold_range));
}

/// Axes of Squeeze/Unsqueeze/Reduce*: an attribute before `input_since`, then input 1.
pub fn axes_operand(ctx: &Ctx, input_since: i64) -> Result<Option<Vec<i64>>> {
    if ctx.opset < input_since {
        Ok(ctx.node.attrs.ints("axes").map(|a| a.to_vec()))
    } else if ctx.has(1) {
        Ok(Some(ctx.need_const(1)?.to_i64_vec()))
    } else {
        Ok(None)
    }
}

fn infer_reshape_like(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    let x = ctx.ty(0)?.clone();
    let shape: Vec<usize> = match ctx.node.op.as_str() {
        "Reshape" => {
            let spec = if ctx.opset < 5 {
                ctx.node
                    .attrs
                    .ints("shape")
                    .ok_or_else(|| ctx.err("missing attribute shape"))?
                    .to_vec()
            } else {
                ctx.expect_inputs(2, 2)?;
                ctx.need_const(1)?.to_i64_vec()
            };
            let allowzero = ctx.attr_int("allowzero", 0) != 0;
            let mut out = Vec::new();
            let mut infer_at = None;
            for (i, &d) in spec.iter().enumerate() {
                match d {
                    -1 if infer_at.is_none() => {
                        infer_at = Some(i);
                        out.push(1);
                    }
                    0 if !allowzero => out.push(*x.shape.get(i).ok_or_else(|| {
                        ctx.err(format!("shape {spec:?}: 0 at {i} has no input dim"))
                    })?),
                    d if d >= 0 => out.push(d as usize),
                    _ => return Err(ctx.err(format!("bad target shape {spec:?}"))),
                }
            }
            if let Some(i) = infer_at {
                let rest = numel(&out);
                if rest == 0 || x.numel() % rest != 0 {
                    return Err(ctx.err(format!("cannot reshape {x} to {spec:?}")));
                }
                out[i] = x.numel() / rest;
            }
            out
        }
        "Flatten" => {
            let a = ctx.attr_int("axis", 1);
            let r = x.rank() as i64;
            let a = if a < 0 { a + r } else { a };
            if a < 0 || a > r {
                return Err(ctx.err(format!("axis {a} is out of range for {x}")));
            }
            let a = a as usize;
            vec![numel(&x.shape[..a]), numel(&x.shape[a..])]
        }
        "Squeeze" => match axes_operand(ctx, 13)? {
            Some(axes) => {
                let mut ax = Vec::new();
                for a in axes {
                    let n = norm_axis(ctx, a, x.rank())?;
                    if x.shape[n] != 1 {
                        return Err(ctx.err(format!("cannot squeeze dim {n} of {x}")));
                    }
                    ax.push(n);
                }
                x.shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !ax.contains(i))
                    .map(|(_, &d)| d)
                    .collect()
            }
            None => x.shape.iter().copied().filter(|&d| d != 1).collect(),
        },
        _ => {
            let axes = axes_operand(ctx, 13)?.ok_or_else(|| ctx.err("missing axes"))?;
            let r = x.rank() + axes.len();
            let mut ax = Vec::new();
            for a in axes {
                let n = norm_axis(ctx, a, r)?;
                if ax.contains(&n) {
                    return Err(ctx.err("repeated axis"));
                }
                ax.push(n);
            }
            let mut src = x.shape.iter();
            (0..r)
                .map(|i| {
                    if ax.contains(&i) {
                        1
                    } else {
                        *src.next().expect("rank checked")
                    }
                })
                .collect()
        }
    };
    if numel(&shape) != x.numel() {
        return Err(ctx.err(format!(
            "cannot reshape {x} ({} elements) to {:?}",
            x.numel(),
            shape
        )));
    }
    ctx.keep_inputs(1);
    ctx.node.attrs = Default::default();
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn fold_reshape(_ctx: &Ctx, x: &[&Tensor], out: &[TensorType]) -> Result<Vec<Tensor>> {
    Ok(vec![x[0].reshaped(out[0].shape.clone())])
}

fn infer_expand(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    let x = ctx.ty(0)?.clone();
    let s: Vec<usize> = ctx
        .need_const(1)?
        .to_i64_vec()
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    let shape = broadcast(&[&x.shape, &s])
        .ok_or_else(|| ctx.err(format!("{x} does not broadcast to {s:?}")))?;
    ctx.keep_inputs(1);
    ctx.set(
        "shape",
        Attr::Ints(shape.iter().map(|&d| d as i64).collect()),
    );
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn fold_expand(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let shape: Vec<usize> = ctx
        .node
        .attrs
        .ints("shape")
        .expect("canonical")
        .iter()
        .map(|&d| d as usize)
        .collect();
    let idx = bcast_index(&x[0].shape, &shape);
    Ok(vec![x[0].take(shape, &idx)])
}

fn infer_transpose(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(1, 1)?;
    let x = ctx.ty(0)?.clone();
    let perm: Vec<i64> = match ctx.node.attrs.ints("perm") {
        Some(p) => p.to_vec(),
        None => (0..x.rank() as i64).rev().collect(),
    };
    let mut seen = vec![false; x.rank()];
    if perm.len() != x.rank()
        || perm.iter().any(|&p| {
            p < 0 || p as usize >= x.rank() || std::mem::replace(&mut seen[p as usize], true)
        })
    {
        return Err(ctx.err(format!(
            "perm {perm:?} is not a permutation of {}",
            x.rank()
        )));
    }
    ctx.set("perm", Attr::Ints(perm.clone()));
    let shape = perm.iter().map(|&p| x.shape[p as usize]).collect();
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn fold_transpose(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let perm: Vec<usize> = ctx
        .node
        .attrs
        .ints("perm")
        .expect("canonical")
        .iter()
        .map(|&p| p as usize)
        .collect();
    let t = x[0];
    let st = strides(&t.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let mut idx = Vec::with_capacity(t.len());
    for_each_index(&shape, |pos| {
        idx.push(pos.iter().zip(&perm).map(|(&i, &p)| i * st[p]).sum());
    });
    Ok(vec![t.take(shape, &idx)])
}

fn infer_concat(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    if ctx.n_in() == 0 {
        return Err(ctx.err("needs inputs"));
    }
    let first = ctx.ty(0)?.clone();
    let axis = ctx
        .node
        .attrs
        .int("axis")
        .ok_or_else(|| ctx.err("missing attribute axis"))?;
    let a = norm_axis(ctx, axis, first.rank())?;
    let mut shape = first.shape.clone();
    shape[a] = 0;
    for i in 0..ctx.n_in() {
        let t = ctx.ty(i)?;
        if t.rank() != first.rank()
            || t.dtype != first.dtype
            || t.shape
                .iter()
                .enumerate()
                .any(|(k, &d)| k != a && d != first.shape[k])
        {
            return Err(ctx.err(format!(
                "input {i} {t} does not concatenate with {first} on axis {a}"
            )));
        }
        shape[a] += t.shape[a];
    }
    ctx.set("axis", Attr::Int(a as i64));
    Ok(vec![TensorType::new(first.dtype, shape)])
}

fn fold_concat(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let a = ctx.node.attrs.int_or("axis", 0) as usize;
    let mut shape = x[0].shape.clone();
    shape[a] = x.iter().map(|t| t.shape[a]).sum();
    let cat = concat_all(x);
    let offs: Vec<usize> = x
        .iter()
        .scan(0, |acc, t| {
            let o = *acc;
            *acc += t.len();
            Some(o)
        })
        .collect();
    let mut idx = Vec::with_capacity(numel(&shape));
    for_each_index(&shape, |pos| {
        let mut p = pos[a];
        let mut k = 0;
        while p >= x[k].shape[a] {
            p -= x[k].shape[a];
            k += 1;
        }
        let st = strides(&x[k].shape);
        let f: usize = pos
            .iter()
            .enumerate()
            .map(|(d, &i)| if d == a { p * st[d] } else { i * st[d] })
            .sum();
        idx.push(offs[k] + f);
    });
    Ok(vec![cat.take(shape, &idx)])
}

fn infer_slice(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    let x = ctx.ty(0)?.clone();
    let r = x.rank();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let a = &ctx.node.attrs;
        let s = a
            .ints("starts")
            .ok_or_else(|| ctx.err("missing starts"))?
            .to_vec();
        let e = a
            .ints("ends")
            .ok_or_else(|| ctx.err("missing ends"))?
            .to_vec();
        let ax = a.ints("axes").map(|v| v.to_vec());
        (s, e, ax, None)
    } else {
        ctx.expect_inputs(3, 5)?;
        let s = ctx.need_const(1)?.to_i64_vec();
        let e = ctx.need_const(2)?.to_i64_vec();
        let ax = if ctx.has(3) {
            Some(ctx.need_const(3)?.to_i64_vec())
        } else {
            None
        };
        let st = if ctx.has(4) {
            Some(ctx.need_const(4)?.to_i64_vec())
        } else {
            None
        };
        (s, e, ax, st)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(ctx.err("starts, ends, axes and steps differ in length"));
    }
    let mut st = vec![0i64; r];
    let mut sp = vec![1i64; r];
    let mut shape = x.shape.clone();
    let mut seen = vec![false; r];
    for i in 0..starts.len() {
        let a = norm_axis(ctx, axes[i], r)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(ctx.err(format!("axis {a} repeated")));
        }
        let d = x.shape[a] as i64;
        let step = steps[i];
        if step == 0 {
            return Err(ctx.err("step 0"));
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = if step > 0 {
            (fix(starts[i]).clamp(0, d), fix(ends[i]).clamp(0, d))
        } else {
            (
                fix(starts[i]).clamp(0, d - 1),
                fix(ends[i]).clamp(-1, d - 1),
            )
        };
        let n = if step > 0 {
            ((e - s).max(0) + step - 1) / step
        } else {
            ((s - e).max(0) + (-step) - 1) / (-step)
        };
        st[a] = s;
        sp[a] = step;
        shape[a] = n as usize;
    }
    ctx.keep_inputs(1);
    ctx.node.attrs = Default::default();
    ctx.set("starts", Attr::Ints(st));
    ctx.set("steps", Attr::Ints(sp));
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn fold_slice(ctx: &Ctx, x: &[&Tensor], out: &[TensorType]) -> Result<Vec<Tensor>> {
    let starts = ctx.node.attrs.ints("starts").expect("canonical");
    let steps = ctx.node.attrs.ints("steps").expect("canonical");
    let t = x[0];
    let st = strides(&t.shape);
    let shape = out[0].shape.clone();
    let mut idx = Vec::with_capacity(numel(&shape));
    for_each_index(&shape, |pos| {
        let f: i64 = (0..pos.len())
            .map(|k| (starts[k] + steps[k] * pos[k] as i64) * st[k] as i64)
            .sum();
        idx.push(f as usize);
    });
    Ok(vec![t.take(shape, &idx)])
}

fn infer_gather(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(2, 2)?;
    let d = ctx.ty(0)?.clone();
    let i = ctx.ty(1)?.clone();
    if !matches!(i.dtype, DType::I64 | DType::I32) {
        return Err(ctx.err(format!("indices are {}, need int32/int64", i.dtype)));
    }
    let a = norm_axis(ctx, ctx.attr_int("axis", 0), d.rank())?;
    if let Some(idx) = ctx.konst(1) {
        let n = d.shape[a] as i64;
        if let Some(bad) = idx.to_i64_vec().into_iter().find(|&v| v < -n || v >= n) {
            return Err(ctx.err(format!("index {bad} is out of range for dim {a} of {d}")));
        }
    }
    ctx.set("axis", Attr::Int(a as i64));
    let mut shape = d.shape[..a].to_vec();
    shape.extend(&i.shape);
    shape.extend(&d.shape[a + 1..]);
    Ok(vec![TensorType::new(d.dtype, shape)])
}

fn fold_gather(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let a = ctx.node.attrs.int_or("axis", 0) as usize;
    let (d, ind) = (x[0], x[1]);
    let n = d.shape[a] as i64;
    let iv = ind.to_i64_vec();
    let mut shape = d.shape[..a].to_vec();
    shape.extend(&ind.shape);
    shape.extend(&d.shape[a + 1..]);
    let st = strides(&d.shape);
    let ir = ind.shape.len();
    let ist = strides(&ind.shape);
    let mut idx = Vec::with_capacity(numel(&shape));
    for_each_index(&shape, |pos| {
        let ipos: usize = (0..ir).map(|k| pos[a + k] * ist[k]).sum();
        let mut j = iv[ipos];
        if j < 0 {
            j += n;
        }
        let mut f = j as usize * st[a];
        for k in 0..a {
            f += pos[k] * st[k];
        }
        for k in a + 1..d.shape.len() {
            f += pos[k - 1 + ir] * st[k];
        }
        idx.push(f);
    });
    Ok(vec![d.take(shape, &idx)])
}

fn shape_range(ctx: &Ctx, rank: usize) -> (usize, usize) {
    let r = rank as i64;
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = fix(ctx.attr_int("start", 0));
    let e = fix(ctx.attr_int("end", r));
    (s, e.max(s))
}

fn infer_shape(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    let x = ctx.ty(0)?.clone();
    let (s, e) = shape_range(ctx, x.rank());
    Ok(vec![TensorType::new(DType::I64, vec![e - s])])
}

fn infer_size(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.ty(0)?;
    Ok(vec![TensorType::new(DType::I64, vec![])])
}

fn fold_shape(ctx: &Ctx, _x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let x = ctx.ty(0)?;
    if ctx.node.op == "Size" {
        return Ok(vec![Tensor::i64(vec![], vec![x.numel() as i64])]);
    }
    let (s, e) = shape_range(ctx, x.rank());
    let v: Vec<i64> = x.shape[s..e].iter().map(|&d| d as i64).collect();
    Ok(vec![Tensor::i64(vec![v.len()], v)])
}

fn infer_const_of_shape(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    let s: Vec<usize> = ctx
        .need_const(0)?
        .to_i64_vec()
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    let dt = ctx
        .node
        .attrs
        .tensor("value")
        .map(|t| t.dtype())
        .unwrap_or(DType::F32);
    Ok(vec![TensorType::new(dt, s)])
}

fn fold_const_of_shape(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let s: Vec<usize> = x[0]
        .to_i64_vec()
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    let v = ctx
        .node
        .attrs
        .tensor("value")
        .cloned()
        .unwrap_or_else(|| Tensor::f32(vec![1], vec![0.0]));
    let n = numel(&s);
    Ok(vec![v.take(s, &vec![0; n])])
}

fn infer_pad(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    let x = ctx.ty(0)?.clone();
    let mode = ctx.node.attrs.str("mode").unwrap_or("constant");
    if mode != "constant" {
        return Err(ctx.unsupported(format!("mode {mode}")));
    }
    let r = x.rank();
    let (pads, value) = if ctx.opset < 11 {
        let p = ctx
            .node
            .attrs
            .ints("pads")
            .ok_or_else(|| ctx.err("missing pads"))?
            .to_vec();
        (p, ctx.node.attrs.float_or("value", 0.0) as f64)
    } else {
        let p = ctx.need_const(1)?.to_i64_vec();
        let v = if ctx.has(2) {
            ctx.need_const(2)?.to_f64_vec()[0]
        } else {
            0.0
        };
        (p, v)
    };
    let axes: Vec<usize> = if ctx.has(3) {
        let mut v = Vec::new();
        for a in ctx.need_const(3)?.to_i64_vec() {
            v.push(norm_axis(ctx, a, r)?);
        }
        v
    } else {
        (0..r).collect()
    };
    if pads.len() != 2 * axes.len() {
        return Err(ctx.err(format!(
            "pads has {} values, {} expected",
            pads.len(),
            2 * axes.len()
        )));
    }
    let mut full = vec![0i64; 2 * r];
    for (k, &a) in axes.iter().enumerate() {
        full[a] = pads[k];
        full[a + r] = pads[k + axes.len()];
    }
    if full.iter().any(|&p| p < 0) {
        return Err(ctx.unsupported("negative pads (cropping)"));
    }
    let shape: Vec<usize> = (0..r)
        .map(|i| x.shape[i] + (full[i] + full[i + r]) as usize)
        .collect();
    ctx.keep_inputs(1);
    ctx.node.attrs = Default::default();
    ctx.set("pads", Attr::Ints(full));
    ctx.set("value", Attr::Floats(vec![value as f32]));
    ctx.set("value_i", Attr::Int(value as i64));
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn infer_range(ctx: &mut Ctx) -> Result<Vec<TensorType>> {
    ctx.expect_inputs(3, 3)?;
    let v: Vec<f64> = (0..3)
        .map(|i| ctx.need_const(i).map(|t| t.to_f64_vec()[0]))
        .collect::<Result<_>>()?;
    if v[2] == 0.0 {
        return Err(ctx.err("delta is 0"));
    }
    let n = ((v[1] - v[0]) / v[2]).ceil().max(0.0) as usize;
    Ok(vec![TensorType::new(ctx.ty(0)?.dtype, vec![n])])
}

fn fold_range(ctx: &Ctx, x: &[&Tensor], _out: &[TensorType]) -> Result<Vec<Tensor>> {
    let dt = x[0].dtype();
    if dt.is_float() {
        let (s, l, d) = (
            x[0].to_f64_vec()[0],
            x[1].to_f64_vec()[0],
            x[2].to_f64_vec()[0],
        );
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
        Ok(vec![Tensor::from_f64(dt, vec![n], &v)])
    } else {
        let (s, l, d) = (
            x[0].to_i64_vec()[0],
            x[1].to_i64_vec()[0],
            x[2].to_i64_vec()[0],
        );
        let n = (((l - s) as f64) / d as f64).ceil().max(0.0) as usize;
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        let _ = ctx;
        Ok(vec![Tensor::from_i64(dt, vec![n], &v)])
    }
}
