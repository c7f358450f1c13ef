//! Elementwise ops as broadcasting `linalg.generic`s.

use super::nn::op;
use super::{scalar, N};
use crate::error::Result;
use crate::graph::{DType, Tensor};
use crate::ir::emit::{amap, bcast_map, d, tty, tty_of, Body, Dequantized, Emitter, Operand};

/// Operands for inputs broadcast onto `out_shape`.
pub(super) fn operands(e: &mut Emitter, n: &N, idx: &[usize], out_shape: &[usize]) -> Vec<Operand> {
    idx.iter()
        .map(|&i| {
            let t = n.in_ty(i).clone();
            Operand {
                ssa: n.input(e, i),
                ty: tty(&t),
                map: bcast_map(&t.shape, out_shape),
                elem: t.dtype.mlir(),
            }
        })
        .collect()
}

pub(super) fn out_operand(e: &mut Emitter, dtype: DType, shape: &[usize]) -> Operand {
    Operand {
        ssa: e.empty(dtype, shape),
        ty: tty_of(dtype, shape),
        map: bcast_map(shape, shape),
        elem: dtype.mlir(),
    }
}

fn parallel(rank: usize) -> Vec<&'static str> {
    vec!["parallel"; rank]
}

/// Generic n-ary elementwise map with a scalar body.
pub(super) fn map(
    e: &mut Emitter,
    ins: Vec<Operand>,
    dtype: DType,
    shape: &[usize],
    body: impl FnOnce(&mut Body, &[String]) -> String,
) -> String {
    let out = out_operand(e, dtype, shape);
    let its = parallel(shape.len());
    e.generic(&ins, &out, &its, body)
}

pub(super) fn lower(e: &mut Emitter, n: &N) -> Result<String> {
    let op = n.node.op.as_str();
    let out = n.out_ty(0).clone();
    let in_dt = n.in_ty(0).dtype;
    let idx: Vec<usize> = (0..n.node.inputs.len()).collect();
    let ins = operands(e, n, &idx, &out.shape);
    let attrs = n.node.attrs.clone();
    let nin = ins.len();
    let mut failed = false;
    let r = map(e, ins, out.dtype, &out.shape, |b, a| {
        let res = if nin == 1 && !crate::graph::ops::VARIADIC.contains(&op) {
            scalar::unary(b, op, in_dt, &a[0], &attrs)
        } else {
            let mut acc = Some(a[0].clone());
            let step = match op {
                "Mean" => "Sum",
                o => o,
            };
            for x in &a[1..nin] {
                acc = acc.and_then(|v| scalar::binary(b, step, in_dt, &v, x));
            }
            if op == "Mean" {
                let c = scalar::cst(b, in_dt, nin as f64);
                acc = acc.map(|v| b.op(&format!("arith.divf {v}, {c} : {}", in_dt.mlir())));
            }
            acc
        };
        res.unwrap_or_else(|| {
            failed = true;
            a[0].clone()
        })
    });
    if failed {
        return Err(n.err(format!("no lowering for {op} on {in_dt}")));
    }
    Ok(r)
}

pub(super) fn cast(e: &mut Emitter, n: &N) -> String {
    let out = n.out_ty(0).clone();
    let from = n.in_ty(0).dtype;
    let ins = operands(e, n, &[0], &out.shape);
    map(e, ins, out.dtype, &out.shape, |b, a| {
        scalar::cast(b, from, out.dtype, &a[0])
    })
}

/// Per-tensor QuantizeLinear (round half to even, saturate) / DequantizeLinear on run-time
/// values; scale and zero point are constants (checked at import).
pub(super) fn qdq(e: &mut Emitter, n: &N) -> String {
    if let Some(q) = requantized(e, n) {
        return q;
    }
    if let Some(q) = super::lut::table_quantize(e, n) {
        return q;
    }
    let out = n.out_ty(0).clone();
    let from = n.in_ty(0).dtype;
    let (s, z) = qdq_params(n);
    let x = n.input(e, 0);
    if n.node.op == "QuantizeLinear" {
        return quantize_map(e, &x, &out.shape, out.dtype, s, z);
    }
    let y = dequantize_map(e, &x, from, &out.shape, s, z);
    if matches!(from, DType::U8 | DType::I8) {
        let q_value = n.node.inputs[0];
        e.dequantized.insert(
            n.node.outputs[0],
            Dequantized {
                q: x,
                q_value,
                dtype: from,
                shape: out.shape.clone(),
                scale: s,
                zero_point: z,
            },
        );
    }
    y
}

/// The scale (as f32) and zero point of a QuantizeLinear or DequantizeLinear node.
pub(super) fn qdq_params(n: &N) -> (f32, i64) {
    let k = |i: usize| {
        n.node
            .inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|v| n.g.konst(v))
    };
    let s = k(1).expect("constant scale").to_f64_vec()[0] as f32;
    let z = k(2).map(|t| t.to_i64_vec()[0]).unwrap_or(0);
    (s, z)
}

/// QuantizeLinear of f32 `x` (of `shape`) to `dt` (U8 or I8): round half to even, saturate.
pub(super) fn quantize_map(
    e: &mut Emitter,
    x: &str,
    shape: &[usize],
    dt: DType,
    s: f32,
    z: i64,
) -> String {
    let f = DType::F32;
    let ins = vec![op(x.to_string(), f, shape, bcast_map(shape, shape))];
    map(e, ins, dt, shape, |b, a| {
        let t = f.mlir();
        let sc = scalar::cst(b, f, s as f64);
        let zc = scalar::cst(b, f, z as f64);
        let (lo, hi) = if dt == DType::U8 {
            (0.0, 255.0)
        } else {
            (-128.0, 127.0)
        };
        let d = b.op(&format!("arith.divf {}, {sc} : {t}", a[0]));
        let r = b.op(&format!("math.roundeven {d} : {t}"));
        let r = b.op(&format!("arith.addf {r}, {zc} : {t}"));
        let lo = scalar::cst(b, f, lo);
        let hi = scalar::cst(b, f, hi);
        let r = scalar::at_least(b, t, &r, &lo);
        let r = scalar::at_most(b, t, &r, &hi);
        scalar::cast(b, f, dt, &r)
    })
}

/// DequantizeLinear of `q` (of `from`, `shape`) to f32: `(q - z) * s`.
pub(super) fn dequantize_map(
    e: &mut Emitter,
    q: &str,
    from: DType,
    shape: &[usize],
    s: f32,
    z: i64,
) -> String {
    let f = DType::F32;
    let ins = vec![op(q.to_string(), from, shape, bcast_map(shape, shape))];
    map(e, ins, f, shape, |b, a| {
        let t = f.mlir();
        let sc = scalar::cst(b, f, s as f64);
        let zc = scalar::cst(b, f, z as f64);
        let x = scalar::cast(b, from, f, &a[0]);
        let d = b.op(&format!("arith.subf {x}, {zc} : {t}"));
        b.op(&format!("arith.mulf {d}, {sc} : {t}"))
    })
}

/// A QuantizeLinear of a dequantised value (`Emitter::dequantized`), with the same scale,
/// zero point and integer type, through reshapes only, is those integers reshaped:
/// `round((q - z) * s / s) + z = q` exactly for 8-bit `q` (the quotient is within an ulp of
/// an integer below 256). QDQ models repeat such pairs around every layout op
/// (`quantize_static` puts one after a Flatten and a MaxPool); in the CPU form they cost
/// nothing.
fn requantized(e: &mut Emitter, n: &N) -> Option<String> {
    if n.node.op != "QuantizeLinear" || !e.cpu_kernels {
        return None;
    }
    let g = n.g;
    let mut v = n.node.inputs[0]?;
    while !e.dequantized.contains_key(&v) {
        let m = g.nodes.node_weights().find(|m| m.outputs.contains(&v))?;
        if !matches!(
            m.op.as_str(),
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze"
        ) {
            return None;
        }
        v = m.inputs[0]?;
    }
    let d = e.dequantized[&v].clone();
    let out = n.out_ty(0).clone();
    let (s, z) = qdq_params(n);
    if d.dtype != out.dtype || d.scale != s || d.zero_point != z {
        return None;
    }
    Some(e.reshape(&d.q, d.dtype, &d.shape, &out.shape))
}

pub(super) fn select(e: &mut Emitter, n: &N) -> String {
    let out = n.out_ty(0).clone();
    let ins = operands(e, n, &[0, 1, 2], &out.shape);
    let t = out.dtype.mlir();
    map(e, ins, out.dtype, &out.shape, |b, a| {
        b.op(&format!("arith.select {}, {}, {} : {t}", a[0], a[1], a[2]))
    })
}

/// Inference-mode batch norm: y = x * a + b per channel, with a and b folded at compile time
/// when the statistics are constant.
pub(super) fn batchnorm(e: &mut Emitter, n: &N) -> Result<String> {
    let x = n.in_ty(0).clone();
    let eps = n.node.attrs.float_or("epsilon", 1e-5) as f64;
    let c = x.shape[1];
    let mut bshape = vec![1usize; x.rank()];
    bshape[1] = c;
    let consts: Option<Vec<Vec<f64>>> = (1..5)
        .map(|i| {
            n.g.konst(n.node.inputs[i].expect("present"))
                .map(|t| t.to_f64_vec())
        })
        .collect();
    let dt = x.dtype;
    let t = dt.mlir();
    if let Some(v) = consts {
        let (scale, bias, mean, var) = (&v[0], &v[1], &v[2], &v[3]);
        // Rounded to f32 the same way onnxruntime's kernel computes it.
        let a: Vec<f64> = (0..c)
            .map(|i| (scale[i] as f32 / ((var[i] as f32) + eps as f32).sqrt()) as f64)
            .collect();
        let bb: Vec<f64> = (0..c)
            .map(|i| (bias[i] as f32 - mean[i] as f32 * a[i] as f32) as f64)
            .collect();
        let ta = e.constant(&Tensor::from_f64(dt, bshape.clone(), &a), Some("bn_scale"));
        let tb = e.constant(&Tensor::from_f64(dt, bshape.clone(), &bb), Some("bn_shift"));
        let ins = vec![
            Operand {
                ssa: n.input(e, 0),
                ty: tty(&x),
                map: bcast_map(&x.shape, &x.shape),
                elem: t,
            },
            Operand {
                ssa: ta,
                ty: tty_of(dt, &bshape),
                map: bcast_map(&bshape, &x.shape),
                elem: t,
            },
            Operand {
                ssa: tb,
                ty: tty_of(dt, &bshape),
                map: bcast_map(&bshape, &x.shape),
                elem: t,
            },
        ];
        return Ok(map(e, ins, dt, &x.shape, |b, a| {
            let m = b.op(&format!("arith.mulf {}, {} : {t}", a[0], a[1]));
            b.op(&format!("arith.addf {m}, {} : {t}", a[2]))
        }));
    }
    // Runtime statistics: (x - mean) / sqrt(var + eps) * scale + bias.
    let mut ins = vec![Operand {
        ssa: n.input(e, 0),
        ty: tty(&x),
        map: bcast_map(&x.shape, &x.shape),
        elem: t,
    }];
    for i in 1..5 {
        let s = n.input(e, i);
        let r = e.reshape(&s, dt, &[c], &bshape);
        ins.push(Operand {
            ssa: r,
            ty: tty_of(dt, &bshape),
            map: bcast_map(&bshape, &x.shape),
            elem: t,
        });
    }
    Ok(map(e, ins, dt, &x.shape, |b, a| {
        let ep = scalar::cst(b, dt, eps);
        let d = b.op(&format!("arith.subf {}, {} : {t}", a[0], a[3]));
        let ve = b.op(&format!("arith.addf {}, {ep} : {t}", a[4]));
        let sq = b.op(&format!("math.sqrt {ve} : {t}"));
        let q = b.op(&format!("arith.divf {d}, {sq} : {t}"));
        let m = b.op(&format!("arith.mulf {q}, {} : {t}", a[1]));
        b.op(&format!("arith.addf {m}, {} : {t}", a[2]))
    }))
}

/// `max(x, 0)` over a whole f32 tensor (a Relu fused into the op before it, when that op's
/// kernel could not apply it).
pub(super) fn relu(e: &mut Emitter, x: &str, ty: &crate::graph::TensorType) -> String {
    let dt = ty.dtype;
    let ident: Vec<String> = (0..ty.rank()).map(d).collect();
    let ins = vec![Operand {
        ssa: x.to_string(),
        ty: tty(ty),
        map: amap(ty.rank(), &ident),
        elem: dt.mlir(),
    }];
    map(e, ins, dt, &ty.shape, |b, a| {
        let z = super::scalar::cst(b, dt, 0.0);
        super::scalar::at_least(b, dt.mlir(), &a[0], &z)
    })
}
