//! Windows and reductions: pooling, Reduce*, Softmax.

use super::elementwise::{dequantize_map, map, operands, qdq_params, quantize_map};
use super::nn::{fill_scalar, op};
use super::shape::pad_with;
use super::{scalar, N};
use crate::error::Result;
use crate::graph::{DType, Tensor, ValueId};
use crate::ir::emit::{amap, bcast_map, d, flit, tty_of, Dequantized, Emitter};

/// Max/average pooling over (n, c, out..., k...), with a window operand giving the kernel
/// loop bounds (as linalg's pooling ops do).
/// Pooling windows of at most this many cells are read cell by cell in one elementwise map
/// (larger ones reduce in a loop).
const MAX_UNROLLED_WINDOW: usize = 9;

/// MaxPool commutes with quantisation, which is monotone: `MaxPool(DQ(Q(x)))` is
/// `DQ(Q(MaxPool(x)))` exactly, and quantises a quarter of the values (a 2x2 window). For a
/// MaxPool (CPU form) of a per-tensor DequantizeLinear of a QuantizeLinear with the same
/// scale, zero point and type, returns Q's f32 input and the DequantizeLinear.
fn requantized_source(e: &Emitter, n: &N) -> Option<(ValueId, Dequantized)> {
    if !e.cpu_kernels {
        return None;
    }
    let dq = e.dequantized.get(&n.node.inputs[0]?)?.clone();
    let qv = dq.q_value?;
    let qn = n.g.nodes.node_weights().find(|m| m.outputs.contains(&qv))?;
    if qn.op != "QuantizeLinear" {
        return None;
    }
    let xv = qn.inputs[0]?;
    let qnode = N { node: qn, g: n.g };
    let (s, z) = qdq_params(&qnode);
    let same = n.g.ty(xv)?.dtype == DType::F32
        && n.g.ty(qv)?.dtype == dq.dtype
        && s == dq.scale
        && z == dq.zero_point;
    same.then_some((xv, dq))
}

/// Output columns per step of `pool_2x2`.
const POOL_LANES: usize = 16;

/// 2x2 pooling with stride 2 (no padding, f32, NCHW; the CPU form), the windows of CNNs
/// like MNIST's: per output row, 16 outputs at a time from two 32-column input vectors (its
/// two input rows), combined, then the even and odd columns (two static shuffles) combined.
/// Rows narrower than 16 outputs read and write masked vectors. Returns the max (`is_max`)
/// or the sum of each window. The elementwise form of the same windows read every cell as a
/// stride-2 slice, which LLVM vectorised lane by lane: MNIST's 32x28x28 -> 32x14x14 took
/// 5.1 us, onnxruntime's 6.2 us.
pub(super) fn pool_2x2(
    e: &mut Emitter,
    x: &str,
    xs: &[usize],
    ys: &[usize],
    is_max: bool,
) -> String {
    let (nc, len) = (xs[0] * xs[1], xs[2] * xs[3]);
    let v = e.fresh();
    e.line(&format!(
        "{v} = tensor.collapse_shape {x} [[0, 1], [2, 3]] : {} into tensor<{nc}x{len}xf32>",
        tty_of(DType::F32, xs)
    ));
    let src = PoolSource {
        x: &v,
        len,
        row: xs[3],
        relu: false,
    };
    pool_2x2_rows(e, &src, ys, is_max)
}

/// The input of `pool_2x2_rows`: `[N*C, len]` planes whose rows start every `row` elements
/// (the image's width, or a convolution kernel's padded plane width); `relu`: `max(y, 0)` on
/// the pooled values (which a max commutes with: the Relu between a convolution and its
/// pool).
pub(super) struct PoolSource<'a> {
    pub(super) x: &'a str,
    pub(super) len: usize,
    pub(super) row: usize,
    pub(super) relu: bool,
}

/// Whether `n` is a 2x2 stride-2 pooling that `pool_2x2` computes (f32, NCHW, no padding or
/// dilation, the last row and column of odd sizes unused).
pub(super) fn halving_pool(n: &N) -> bool {
    let (x, out) = (n.in_ty(0), n.out_ty(0));
    x.dtype == DType::F32
        && x.rank() == 4
        && n.ints("kernel") == [2, 2]
        && n.ints("strides") == [2, 2]
        && n.ints("dilations") == [1, 1]
        && n.ints("pads").iter().all(|&p| p == 0)
        && (0..2).all(|i| out.shape[2 + i] * 2 <= x.shape[2 + i])
}

/// `pool_2x2` on planes with a row stride (`src`).
pub(super) fn pool_2x2_rows(
    e: &mut Emitter,
    src: &PoolSource,
    ys: &[usize],
    is_max: bool,
) -> String {
    let (nc, len, row) = (ys[0] * ys[1], src.len, src.row);
    let x = src.x;
    let (oh, ow) = (ys[2], ys[3]);
    let v = e.fresh();
    let wide = 2 * POOL_LANES;
    let (vt, wt) = (
        format!("vector<{POOL_LANES}xf32>"),
        format!("vector<{wide}xf32>"),
    );
    let (x2, y3) = (
        format!("tensor<{nc}x{len}xf32>"),
        format!("tensor<{nc}x{oh}x{ow}xf32>"),
    );
    let yty = tty_of(DType::F32, ys);

    let comb = if is_max {
        "arith.maximumf"
    } else {
        "arith.addf"
    };
    let pad = if is_max { "0xFF800000" } else { "0.0" };
    let even: Vec<String> = (0..POOL_LANES).map(|i| (2 * i).to_string()).collect();
    let odd: Vec<String> = (0..POOL_LANES).map(|i| (2 * i + 1).to_string()).collect();
    // Whole vectors when every row's outputs are a multiple of 16 (reads stay in the row).
    // The Relu after the window (`o0`, else the window is `o`).
    let (o0, relu) = if src.relu {
        (
            format!("{v}_o0"),
            format!("{v}_zr = arith.constant dense<0.0> : {vt}\n{v}_o = arith.maximumf {v}_o0, {v}_zr : {vt}\n"),
        )
    } else {
        (format!("{v}_o"), String::new())
    };
    let inb = if ow.is_multiple_of(POOL_LANES) {
        "true"
    } else {
        "false"
    };
    let text = format!(
        "{v}_c0 = arith.constant 0 : index
{v}_c1 = arith.constant 1 : index
{v}_c2 = arith.constant 2 : index
{v}_cl = arith.constant {POOL_LANES} : index
{v}_nc = arith.constant {nc} : index
{v}_oh = arith.constant {oh} : index
{v}_ow = arith.constant {ow} : index
{v}_pad = arith.constant {pad} : f32
{v}_row = arith.constant {row} : index
{v}_e = tensor.empty() : {y3}
{v}_y = scf.for {v}_p = {v}_c0 to {v}_nc step {v}_c1 iter_args({v}_ya = {v}_e) -> ({y3}) {{
{v}_y1 = scf.for {v}_i = {v}_c0 to {v}_oh step {v}_c1 iter_args({v}_yb = {v}_ya) -> ({y3}) {{
{v}_i2 = arith.muli {v}_i, {v}_c2 : index
{v}_r0 = arith.muli {v}_i2, {v}_row : index
{v}_r1 = arith.addi {v}_r0, {v}_row : index
{v}_y2 = scf.for {v}_j = {v}_c0 to {v}_ow step {v}_cl iter_args({v}_yc = {v}_yb) -> ({y3}) {{
{v}_col = arith.muli {v}_j, {v}_c2 : index
{v}_q0 = arith.addi {v}_r0, {v}_col : index
{v}_q1 = arith.addi {v}_r1, {v}_col : index
{v}_a0 = vector.transfer_read {x}[{v}_p, {v}_q0], {v}_pad {{in_bounds = [{inb}]}} : {x2}, {wt}
{v}_a1 = vector.transfer_read {x}[{v}_p, {v}_q1], {v}_pad {{in_bounds = [{inb}]}} : {x2}, {wt}
{v}_m = {comb} {v}_a0, {v}_a1 : {wt}
{v}_ev = vector.shuffle {v}_m, {v}_m [{even}] : {wt}, {wt}
{v}_od = vector.shuffle {v}_m, {v}_m [{odd}] : {wt}, {wt}
{o0} = {comb} {v}_ev, {v}_od : {vt}
{relu}
{v}_yn = vector.transfer_write {v}_o, {v}_yc[{v}_p, {v}_i, {v}_j] {{in_bounds = [{inb}]}} : {vt}, {y3}
scf.yield {v}_yn : {y3}
}}
scf.yield {v}_y2 : {y3}
}}
scf.yield {v}_y1 : {y3}
}} {{bonsai.kernel = \"pool_2x2\"}}
{v} = tensor.expand_shape {v}_y [[0, 1], [2], [3]] output_shape [{n}, {c}, {oh}, {ow}] : {y3} into {yty}",
        even = even.join(", "),
        odd = odd.join(", "),
        n = ys[0],
        c = ys[1],
    );
    for l in text.lines() {
        e.line(l);
    }
    v
}

pub(super) fn pool(e: &mut Emitter, n: &N) -> Result<String> {
    let x = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let dt = x.dtype;
    let r = x.rank() - 2;
    let kernel: Vec<usize> = n.ints("kernel").iter().map(|&k| k as usize).collect();
    let strides = n.ints("strides");
    let dil = n.ints("dilations");
    let pads = n.ints("pads");
    let is_max = n.node.op == "MaxPool";
    // Pad so every window lies inside; ceil mode may need extra room at the end.
    let mut pshape = x.shape.clone();
    let mut full = vec![0i64; 2 * (r + 2)];
    for i in 0..r {
        let need = (out.shape[2 + i] as i64 - 1) * strides[i] + (kernel[i] as i64 - 1) * dil[i] + 1;
        let end = (need - x.shape[2 + i] as i64 - pads[i]).max(pads[i + r]);
        full[2 + i] = pads[i];
        full[r + 2 + 2 + i] = end;
        pshape[2 + i] = (x.shape[2 + i] as i64 + pads[i] + end) as usize;
    }
    let padv = if is_max {
        flit(dt, f64::NEG_INFINITY)
    } else {
        flit(dt, 0.0)
    };
    let requant = if is_max {
        requantized_source(e, n)
    } else {
        None
    };
    let xs = match &requant {
        Some((xv, _)) => e.value(*xv),
        None => n.input(e, 0),
    };
    let xp = pad_with(e, &xs, dt, &x.shape, &full, &padv, &pshape);
    let nl = 2 + 2 * r;
    let mut xe = vec![d(0), d(1)];
    for i in 0..r {
        let a = if strides[i] == 1 {
            d(2 + i)
        } else {
            format!("d{} * {}", 2 + i, strides[i])
        };
        let b = if dil[i] == 1 {
            d(2 + r + i)
        } else {
            format!("d{} * {}", 2 + r + i, dil[i])
        };
        xe.push(format!("{a} + {b}"));
    }
    let t = dt.mlir();
    let kk: usize = kernel.iter().product();
    let halving = e.cpu_kernels
        && dt == DType::F32
        && r == 2
        && kernel == [2, 2]
        && strides == [2, 2]
        && dil == [1, 1]
        && pads.iter().all(|&p| p == 0)
        && (0..2).all(|i| out.shape[2 + i] * 2 <= x.shape[2 + i]);
    let acc = if halving {
        pool_2x2(e, &xp, &x.shape, &out.shape, is_max)
    } else if kk <= MAX_UNROLLED_WINDOW {
        // Small windows: one parallel loop nest over the output, the window's cells read in
        // the body, so the innermost loop runs along an output row (which LLVM vectorises;
        // a reduction loop over a 2-wide window it left scalar).
        // Each cell as a strided slice of the padded input, shaped like the output.
        let mut offs = Vec::with_capacity(kk);
        crate::graph::fold::for_each_index(&kernel, |k| {
            offs.push((0..r).map(|i| k[i] as i64 * dil[i]).collect::<Vec<i64>>());
        });
        let (pty, oty) = (tty_of(dt, &pshape), tty_of(dt, &out.shape));
        let join = |v: &[String]| v.join(", ");
        let sizes: Vec<String> = out.shape.iter().map(|v| v.to_string()).collect();
        let mut steps = vec!["1".to_string(); 2];
        steps.extend(strides.iter().map(|v| v.to_string()));
        let mut ins = Vec::with_capacity(kk);
        for o in offs {
            let mut at = vec!["0".to_string(); 2];
            at.extend(o.iter().map(|v| v.to_string()));
            let c = e.fresh();
            e.line(&format!(
                "{c} = tensor.extract_slice {xp}[{}] [{}] [{}] : {pty} to {oty}",
                join(&at),
                join(&sizes),
                join(&steps)
            ));
            let ident: Vec<String> = (0..2 + r).map(d).collect();
            ins.push(op(c, dt, &out.shape, amap(2 + r, &ident)));
        }
        map(e, ins, dt, &out.shape, |b, a| {
            let mut v = a[0].clone();
            for x in &a[1..kk] {
                v = if is_max {
                    b.op(&format!("arith.maximumf {v}, {x} : {t}"))
                } else {
                    b.op(&format!("arith.addf {v}, {x} : {t}"))
                };
            }
            v
        })
    } else {
        let win = e.empty(dt, &kernel);
        let ke: Vec<String> = (0..r).map(|i| d(2 + r + i)).collect();
        let ins = vec![
            op(xp, dt, &pshape, amap(nl, &xe)),
            op(win, dt, &kernel, amap(nl, &ke)),
        ];
        let init = fill_scalar(
            e,
            dt,
            &out.shape,
            if is_max { f64::NEG_INFINITY } else { 0.0 },
        );
        let ye: Vec<String> = (0..2 + r).map(d).collect();
        let outop = op(init, dt, &out.shape, amap(nl, &ye));
        let mut its = vec!["parallel"; 2 + r];
        its.extend(vec!["reduction"; r]);
        e.generic(&ins, &outop, &its, |b, a| {
            if is_max {
                b.op(&format!("arith.maximumf {}, {} : {t}", a[2], a[0]))
            } else {
                b.op(&format!("arith.addf {}, {} : {t}", a[2], a[0]))
            }
        })
    };
    if let Some((_, dq)) = requant {
        let (s, z) = (dq.scale, dq.zero_point);
        let q = quantize_map(e, &acc, &out.shape, dq.dtype, s, z);
        let y = dequantize_map(e, &q, dq.dtype, &out.shape, s, z);
        e.dequantized.insert(
            n.node.outputs[0],
            Dequantized {
                q,
                q_value: None,
                shape: out.shape.clone(),
                ..dq
            },
        );
        return Ok(y);
    }
    if is_max {
        return Ok(acc);
    }
    // Divisor per output position, computed here: window cells inside the input (or inside
    // the declared padding when count_include_pad).
    let cip = n.node.attrs.int_or("count_include_pad", 0) != 0;
    let osp = &out.shape[2..];
    let mut counts = Vec::with_capacity(osp.iter().product());
    crate::graph::fold::for_each_index(osp, |pos| {
        let mut cnt = 1i64;
        for i in 0..r {
            let (lo, hi) = if cip {
                (-pads[i], x.shape[2 + i] as i64 + pads[i + r])
            } else {
                (0, x.shape[2 + i] as i64)
            };
            let start = pos[i] as i64 * strides[i] - pads[i];
            let c = (0..kernel[i] as i64)
                .map(|k| start + k * dil[i])
                .filter(|&p| p >= lo && p < hi)
                .count() as i64;
            cnt *= c;
        }
        counts.push(cnt.max(1) as f64);
    });
    let mut cshape = vec![1, 1];
    cshape.extend(osp);
    let ct = e.constant(
        &Tensor::from_f64(dt, cshape.clone(), &counts),
        Some("pool_count"),
    );
    let ins = vec![
        op(acc, dt, &out.shape, bcast_map(&out.shape, &out.shape)),
        op(ct, dt, &cshape, bcast_map(&cshape, &out.shape)),
    ];
    Ok(map(e, ins, dt, &out.shape, |b, a| {
        b.op(&format!("arith.divf {}, {} : {t}", a[0], a[1]))
    }))
}

pub(super) fn global_pool(e: &mut Emitter, n: &N) -> Result<String> {
    let x = n.in_ty(0).clone();
    let axes: Vec<usize> = (2..x.rank()).collect();
    let kind = if n.node.op == "GlobalMaxPool" {
        "ReduceMax"
    } else {
        "ReduceMean"
    };
    let s = n.input(e, 0);
    Ok(reduce_impl(e, kind, &s, x.dtype, &x.shape, &axes, true))
}

pub(super) fn reduce(e: &mut Emitter, n: &N) -> Result<String> {
    let x = n.in_ty(0).clone();
    let axes: Vec<usize> = n.ints("axes").iter().map(|&a| a as usize).collect();
    let keep = n.node.attrs.int_or("keepdims", 1) != 0;
    let s = n.input(e, 0);
    if axes.is_empty() {
        // noop_with_empty_axes: the op still applies its elementwise part.
        return Ok(match n.node.op.as_str() {
            "ReduceSumSquare" | "ReduceL1" | "ReduceL2" => {
                let ins = operands(e, n, &[0], &x.shape);
                let t = x.dtype.mlir();
                let o = n.node.op.clone();
                map(e, ins, x.dtype, &x.shape, |b, a| match o.as_str() {
                    "ReduceSumSquare" => b.op(&format!("arith.mulf {}, {} : {t}", a[0], a[0])),
                    _ => b.op(&format!("math.absf {} : {t}", a[0])),
                })
            }
            _ => s,
        });
    }
    Ok(reduce_impl(
        e, &n.node.op, &s, x.dtype, &x.shape, &axes, keep,
    ))
}

/// Reduce `x` over `axes`; keepdims keeps them as size 1.
pub(super) fn reduce_impl(
    e: &mut Emitter,
    kind: &str,
    x: &str,
    dt: DType,
    shape: &[usize],
    axes: &[usize],
    keep: bool,
) -> String {
    let rank = shape.len();
    let mut oshape = Vec::new();
    let mut oe = Vec::new();
    for (i, &n) in shape.iter().enumerate() {
        if axes.contains(&i) {
            if keep {
                oshape.push(1);
                oe.push("0".to_string());
            }
        } else {
            oshape.push(n);
            oe.push(d(i));
        }
    }
    let f = dt.is_float();
    // f32 sums accumulate in f64: long sequential f32 sums lose digits that models computing
    // variance as E[x^2] - E[x]^2 (Magika's LayerNorm) then amplify.
    let summing = matches!(
        kind,
        "ReduceSum" | "ReduceMean" | "ReduceSumSquare" | "ReduceL1" | "ReduceL2"
    );
    let acc_dt = if dt == DType::F32 && summing {
        DType::F64
    } else {
        dt
    };
    let initv: f64 = match kind {
        "ReduceMax" => f64::NEG_INFINITY,
        "ReduceMin" => f64::INFINITY,
        "ReduceProd" => 1.0,
        _ => 0.0,
    };
    let init = if f {
        fill_scalar(e, acc_dt, &oshape, initv)
    } else {
        let v = match (kind, dt) {
            ("ReduceMax", DType::I32) => i32::MIN as i64,
            ("ReduceMax", DType::I8) => i8::MIN as i64,
            ("ReduceMax", DType::U8) => 0,
            ("ReduceMax", _) => i64::MIN,
            ("ReduceMin", DType::I32) => i32::MAX as i64,
            ("ReduceMin", DType::I8) => i8::MAX as i64,
            ("ReduceMin", DType::U8) => -1,
            ("ReduceMin", _) => i64::MAX,
            ("ReduceProd", _) => 1,
            _ => 0,
        };
        let c = e.scalar_i(dt, v);
        e.filled(dt, &oshape, &c)
    };
    let ins = vec![op(x.to_string(), dt, shape, bcast_map(shape, shape))];
    let outop = op(init, acc_dt, &oshape, amap(rank, &oe));
    let its: Vec<&str> = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                "reduction"
            } else {
                "parallel"
            }
        })
        .collect();
    let t = acc_dt.mlir();
    let k = kind.to_string();
    let widen = acc_dt != dt;
    let acc = e.generic(&ins, &outop, &its, |b, a| {
        let acc = &a[1];
        let v = if widen {
            b.op(&format!("arith.extf {} : {} to {t}", a[0], dt.mlir()))
        } else {
            a[0].clone()
        };
        match k.as_str() {
            "ReduceMax" => scalar::binary(b, "Max", dt, acc, &v).expect("max"),
            "ReduceMin" => scalar::binary(b, "Min", dt, acc, &v).expect("min"),
            "ReduceProd" => scalar::binary(b, "Mul", dt, acc, &v).expect("mul"),
            "ReduceSumSquare" | "ReduceL2" => {
                let sq = b.op(&format!("arith.mulf {v}, {v} : {t}"));
                b.op(&format!("arith.addf {acc}, {sq} : {t}"))
            }
            "ReduceL1" => {
                let ab = b.op(&format!("math.absf {v} : {t}"));
                b.op(&format!("arith.addf {acc}, {ab} : {t}"))
            }
            _ => scalar::binary(b, "Add", acc_dt, acc, &v).expect("add"),
        }
    });
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    if !matches!(kind, "ReduceMean" | "ReduceL2") && !widen {
        return acc;
    }
    let ins = vec![op(acc, acc_dt, &oshape, bcast_map(&oshape, &oshape))];
    let k = kind.to_string();
    map(e, ins, dt, &oshape, |b, a| {
        let mut v = a[0].clone();
        if k == "ReduceMean" {
            let c = scalar::cst(b, acc_dt, count as f64);
            v = b.op(&format!("arith.divf {v}, {c} : {t}"));
        } else if k == "ReduceL2" {
            v = b.op(&format!("math.sqrt {v} : {t}"));
        }
        if widen {
            v = b.op(&format!("arith.truncf {v} : {t} to {}", dt.mlir()));
        }
        v
    })
}

/// softmax(x) = exp(x - max) / sum(exp(x - max)) over `axis` (or axis.. for opset < 13).
pub(super) fn softmax(e: &mut Emitter, n: &N) -> Result<String> {
    let x = n.in_ty(0).clone();
    let dt = x.dtype;
    let t = dt.mlir();
    let axis = n.node.attrs.int_or("axis", 0) as usize;
    let legacy = n.node.attrs.int_or("legacy", 0) != 0;
    let axes: Vec<usize> = if legacy {
        (axis..x.rank()).collect()
    } else {
        vec![axis]
    };
    let s = n.input(e, 0);
    let mx = reduce_impl(e, "ReduceMax", &s, dt, &x.shape, &axes, true);
    let mut rshape = x.shape.clone();
    for &a in &axes {
        rshape[a] = 1;
    }
    let full = bcast_map(&x.shape, &x.shape);
    let ins = vec![
        op(s.clone(), dt, &x.shape, full.clone()),
        op(mx, dt, &rshape, bcast_map(&rshape, &x.shape)),
    ];
    let ex = map(e, ins, dt, &x.shape, |b, a| {
        let d = b.op(&format!("arith.subf {}, {} : {t}", a[0], a[1]));
        b.op(&format!("math.exp {d} : {t}"))
    });
    let sum = reduce_impl(e, "ReduceSum", &ex, dt, &x.shape, &axes, true);
    if n.node.op == "LogSoftmax" {
        // x - max - log(sum)
        let mx2 = reduce_impl(e, "ReduceMax", &s, dt, &x.shape, &axes, true);
        let ins = vec![
            op(s, dt, &x.shape, full),
            op(mx2, dt, &rshape, bcast_map(&rshape, &x.shape)),
            op(sum, dt, &rshape, bcast_map(&rshape, &x.shape)),
        ];
        return Ok(map(e, ins, dt, &x.shape, |b, a| {
            let d = b.op(&format!("arith.subf {}, {} : {t}", a[0], a[1]));
            let l = b.op(&format!("math.log {} : {t}", a[2]));
            b.op(&format!("arith.subf {d}, {l} : {t}"))
        }));
    }
    let ins = vec![
        op(ex, dt, &x.shape, full),
        op(sum, dt, &rshape, bcast_map(&rshape, &x.shape)),
    ];
    Ok(map(e, ins, dt, &x.shape, |b, a| {
        b.op(&format!("arith.divf {}, {} : {t}", a[0], a[1]))
    }))
}
