//! Kernels for Gemms on a few rows (`m < 8`, batch 1 in practice), where the weight's memory
//! traffic dominates: for a sparse weight the gather kernel over its non-zeros
//! (`sparse_gemv`; on x86 with AVX2 or AVX-512 the permute kernel of `perm.rs` instead); and
//! the int8 kernel that reads a weight stored as 8-bit integers and dequantises on the fly
//! (`int8_gemv`). `nn.rs` decides when each applies.

use super::elementwise::map;
use super::nn::{fill_scalar, op};
use super::N;
use crate::graph::{tensor::Data, DType, Tensor};
use crate::ir::emit::{amap, d, row_lists, tty_of, Emitter, Operand};

/// Lanes of `sparse_gemv`'s vectors (8 x f32).
const GATHER_LANES: usize = 8;
/// The gather kernel against the dense code: 128x3136 at 80% 40 us, at 85% 32 us, dense
/// 36 us (256x1152: 30, 24 and 28 us).
pub(super) const GATHER_GEMV_FLOOR: f64 = 0.85;
/// Non-zeros per step of `sparse_gemv`: two vectors, into two accumulators (the loads of
/// one step overlap the other's multiply-adds). Every row's list is padded to a multiple.
const GATHER_STEP: usize = 2 * GATHER_LANES;

/// `A W^T + b` for a few rows (`m < 8`) of `A [m, k]` and a sparse constant `W [n, k]`:
/// each output feature's non-zeros are listed (column, value), padded with zeros to a
/// multiple of 16; per row of `A` and feature, two 8-lane accumulators run over the list,
/// each step reading `A` at eight listed columns (one scalar load each, assembled into a
/// vector) and multiplying by eight values. Work and weight traffic are proportional to the
/// non-zeros. AVX2 has no fast gather (forcing LLVM's `fast-gather` made 70% sparse
/// 128x3136 take 97 us instead of 56), so each non-zero costs an index load and an input
/// load-and-insert (`vinsertps` from memory): at most about two non-zeros per cycle, which
/// bounds this kernel near 2-2.5x the dense code at 90% on the suite's FC shapes (a C version
/// of the same loop, built with clang and gcc, is no faster: 12.4 us on 128x3136 at 90%).
pub(super) fn sparse_gemv(e: &mut Emitter, n: &N, w: &Tensor) -> String {
    let a = n.in_ty(0).clone();
    let nn = n.out_ty(0).shape[1];
    let k = a.shape[1];
    let (pos, mut cols, mut vals) = row_lists(&w.to_f64_vec(), k, GATHER_STEP);
    if cols.is_empty() {
        cols = vec![0; GATHER_STEP];
        vals = vec![0.0; GATHER_STEP];
    }
    let nnz = cols.len();
    let pos_c = e.constant(&Tensor::new(vec![nn + 1], Data::I32(pos)), Some("gemv_pos"));
    let col_c = e.constant(&Tensor::new(vec![nnz], Data::I32(cols)), Some("gemv_col"));
    let val_c = e.constant(&Tensor::f32(vec![nnz], vals), Some("gemv_val"));
    let x = n.input(e, 0);
    let v = e.fresh();
    let xty = tty_of(DType::F32, &a.shape);
    let vt = format!("vector<{GATHER_LANES}xf32>");
    let mut consts = format!(
        "{v}_c8 = arith.constant {GATHER_LANES} : index
{v}_step = arith.constant {GATHER_STEP} : index"
    );
    for l in 1..GATHER_LANES {
        consts += &format!("\n{v}_l{l} = arith.constant {l} : index");
    }
    // Each lane's column is loaded as a scalar and the input read at it: LLVM emits one
    // index load and one `vinsertps` from memory per non-zero. (`vector.gather` with a
    // vector of columns made it widen the indices to 64-bit pointers and extract them lane
    // by lane, twice the vector-unit work: 128x3136 at 90% took 18.6 us instead of 13.)
    let lanes = |h: usize| -> String {
        let base = format!("{v}_e{h}");
        let mut t = String::new();
        let mut names = Vec::new();
        for l in 0..GATHER_LANES {
            let at = if l == 0 {
                base.clone()
            } else {
                t += &format!("{v}_o{h}_{l} = arith.addi {base}, {v}_l{l} : index\n");
                format!("{v}_o{h}_{l}")
            };
            t += &format!(
                "{v}_i{h}_{l} = tensor.extract {col_c}[{at}] : tensor<{nnz}xi32>
{v}_k{h}_{l} = arith.index_cast {v}_i{h}_{l} : i32 to index
{v}_x{h}_{l} = tensor.extract {x}[{v}_b, {v}_k{h}_{l}] : {xty}\n"
            );
            names.push(format!("{v}_x{h}_{l}"));
        }
        t += &format!(
            "{v}_g{h} = vector.from_elements {} : {vt}",
            names.join(", ")
        );
        t
    };
    let body = format!(
        "{v}_j1 = arith.addi {v}_j, {v}_c1 : index
{v}_lo32 = tensor.extract {pos_c}[{v}_j] : tensor<{np1}xi32>
{v}_hi32 = tensor.extract {pos_c}[{v}_j1] : tensor<{np1}xi32>
{v}_lo = arith.index_cast {v}_lo32 : i32 to index
{v}_hi = arith.index_cast {v}_hi32 : i32 to index
{v}_r:2 = scf.for {v}_e0 = {v}_lo to {v}_hi step {v}_step iter_args({v}_s0 = {v}_zv, {v}_s1 = {v}_zv) -> ({vt}, {vt}) {{
{v}_e1 = arith.addi {v}_e0, {v}_c8 : index
{g0}
{g1}
{v}_w0 = vector.transfer_read {val_c}[{v}_e0], {v}_z {{in_bounds = [true]}} : tensor<{nnz}xf32>, {vt}
{v}_w1 = vector.transfer_read {val_c}[{v}_e1], {v}_z {{in_bounds = [true]}} : tensor<{nnz}xf32>, {vt}
{v}_f0 = vector.fma {v}_w0, {v}_g0, {v}_s0 : {vt}
{v}_f1 = vector.fma {v}_w1, {v}_g1, {v}_s1 : {vt}
scf.yield {v}_f0, {v}_f1 : {vt}, {vt}
}}",
        np1 = nn + 1,
        g0 = lanes(0),
        g1 = lanes(1),
    );
    let frame = Frame {
        v: &v,
        vt: &vt,
        consts: &consts,
        body: &body,
        scale: None,
        offset: None,
        kind: "sparse_gemv",
        ints: false,
    };
    gemv_frame(e, n, frame)
}

/// The output `[m, n]` filled with the Gemm's bias `C` (a row broadcast), or with zeros.
pub(super) fn bias_rows(e: &mut Emitter, n: &N) -> String {
    let out = n.out_ty(0).clone();
    let dt = DType::F32;
    if n.has(2) {
        let wname = n.g.values[n.node.inputs[1].expect("present")].name.clone();
        let bs = e.bias(n.node.inputs[2].expect("present"), &wname);
        let ins = vec![op(bs, dt, &[out.shape[1]], amap(2, &[d(1)]))];
        map(e, ins, dt, &out.shape, |_, x| x[0].clone())
    } else {
        fill_scalar(e, dt, &out.shape, 0.0)
    }
}

/// What `gemv_frame` wraps: the kernel's constants and its accumulation over one row of `A`
/// and one feature `{v}_j` (yielding `{v}_r:2` of type `vt`), and an optional per-feature
/// scale `(tensor, features)` for the sum.
struct Frame<'a> {
    v: &'a str,
    vt: &'a str,
    consts: &'a str,
    body: &'a str,
    scale: Option<(&'a str, usize)>,
    /// Per-feature offsets `[n]` and per-row sums of the input `[m]` (f32): the sum gains
    /// `offset[j] * rowsum[b]` before the scale.
    offset: Option<(&'a str, &'a str)>,
    kind: &'a str,
    /// The body accumulates `vector<8xi32>` (converted to `vt` before the reduction).
    ints: bool,
}

/// The loops both kernels share: `y` starts as the bias (or zeros); for each row `{v}_b` of
/// `A` and feature `{v}_j`, the kernel's body accumulates two vectors, and `y[b, j]` gains
/// their sum (times the feature's scale). Returns the result's SSA name.
fn gemv_frame(e: &mut Emitter, n: &N, f: Frame) -> String {
    let out = n.out_ty(0).clone();
    let (m, nn) = (out.shape[0], out.shape[1]);
    let dt = DType::F32;
    let init = bias_rows(e, n);
    let (v, vt) = (f.v, f.vt);
    let yty = tty_of(dt, &out.shape);
    let red = match f.offset {
        Some((o, rs)) => format!(
            "{v}_red0 = vector.reduction <add>, {v}_s fastmath<reassoc> : {vt} into f32
{v}_ofs = tensor.extract {o}[{v}_j] : tensor<{nn}xf32>
{v}_rs = tensor.extract {rs}[{v}_b] : tensor<{m}xf32>
{v}_cor = arith.mulf {v}_ofs, {v}_rs : f32
{v}_red = arith.addf {v}_red0, {v}_cor : f32"
        ),
        // Reassociable: a shuffle tree instead of eight dependent scalar adds per feature.
        None => {
            format!("{v}_red = vector.reduction <add>, {v}_s fastmath<reassoc> : {vt} into f32")
        }
    };
    let sum = match f.scale {
        Some((s, len)) => format!(
            "{v}_sc = tensor.extract {s}[{v}_j] : tensor<{len}xf32>
{v}_sum = arith.mulf {v}_red, {v}_sc : f32"
        ),
        None => format!("{v}_sum = arith.addf {v}_red, {v}_z : f32"),
    };
    let text = format!(
        "{v}_c0 = arith.constant 0 : index
{v}_c1 = arith.constant 1 : index
{v}_m = arith.constant {m} : index
{v}_n = arith.constant {nn} : index
{v}_z = arith.constant 0.0 : f32
{v}_zv = arith.constant dense<0.0> : {vt}
{consts}
{v} = scf.for {v}_b = {v}_c0 to {v}_m step {v}_c1 iter_args({v}_ya = {init}) -> ({yty}) {{
{v}_y1 = scf.for {v}_j = {v}_c0 to {v}_n step {v}_c1 iter_args({v}_yb = {v}_ya) -> ({yty}) {{
{body}
{sum2}
{red}
{sum}
{v}_old = tensor.extract {v}_yb[{v}_b, {v}_j] : {yty}
{v}_new = arith.addf {v}_old, {v}_sum : f32
{v}_yn = tensor.insert {v}_new into {v}_yb[{v}_b, {v}_j] : {yty}
scf.yield {v}_yn : {yty}
}}
scf.yield {v}_y1 : {yty}
}} {{bonsai.kernel = \"{kind}\"}}",
        consts = f.consts,
        body = f.body,
        kind = f.kind,
        sum2 = if f.ints {
            format!(
                "{v}_si = arith.addi {v}_r#0, {v}_r#1 : vector<8xi32>\n{v}_s = arith.sitofp {v}_si : vector<8xi32> to {vt}"
            )
        } else {
            format!("{v}_s = arith.addf {v}_r#0, {v}_r#1 : {vt}")
        }
    );
    for l in text.lines() {
        e.line(l);
    }
    v.to_string()
}

/// Lanes of `int8_gemv`'s vectors; each step covers two (32 weights of a row).
const INT8_LANES: usize = 16;

/// A weight `[n, k]` read as int8: `w[j, :] = (q[j, :] + offset[j]) * scale[j]` exactly.
pub(super) struct Int8Rows {
    pub(super) q: Vec<i8>,
    pub(super) scales: Vec<f32>,
    /// Zero for rows that fit int8 as they are (symmetric quantisation, as onnxruntime's
    /// `quantize_static` writes); asymmetric rows (`(q - zero_point) * scale`, up to 255
    /// steps on one side of zero) are centred.
    pub(super) offsets: Vec<i32>,
}

/// The weight `[n, k]` as 8-bit integers plus a per-row offset and scale, if every row is a
/// multiple of one step spanning at most 255 steps (its largest magnitude 64 steps or more):
/// what symmetric and asymmetric per-channel int8 quantisation write.
pub(super) fn int8_rows(w: &Tensor) -> Option<Int8Rows> {
    let span = |r: &[i16]| {
        let (lo, hi) = r
            .iter()
            .fold((0i16, 0i16), |(a, b), &v| (a.min(v), b.max(v)));
        hi as i32 - lo as i32 <= 255
    };
    let (q, scales) = grid_rows_with(w, 255, span)?;
    let k = w.shape[1];
    let mut offsets = Vec::with_capacity(scales.len());
    let mut out = Vec::with_capacity(q.len());
    for row in q.chunks(k) {
        let (lo, hi) = row
            .iter()
            .fold((0i16, 0i16), |(a, b), &v| (a.min(v), b.max(v)));
        let c = if lo >= -128 && hi <= 127 {
            0
        } else {
            lo as i32 + 128
        };
        offsets.push(c);
        out.extend(row.iter().map(|&v| (v as i32 - c) as i8));
    }
    Some(Int8Rows {
        q: out,
        scales,
        offsets,
    })
}

/// The weight `[n, k]` as integers of at most `max` steps either side of zero and one scale
/// per row, if every row is a multiple of one step with its largest value at 64 steps or
/// more: `w = q * scale` exactly in f32. With `max` 255 this also covers asymmetric int8
/// (`(q - zero_point) * scale`, up to 255 steps from zero).
pub(super) fn grid_rows(w: &Tensor, max: u32) -> Option<(Vec<i16>, Vec<f32>)> {
    grid_rows_with(w, max, |_| true)
}

/// `grid_rows`, taking for each row the finest exact grid whose integers `ok` accepts.
fn grid_rows_with(
    w: &Tensor,
    max: u32,
    ok: impl Fn(&[i16]) -> bool,
) -> Option<(Vec<i16>, Vec<f32>)> {
    if w.shape.len() != 2 || w.dtype() != DType::F32 {
        return None;
    }
    let (n, k) = (w.shape[0], w.shape[1]);
    let v = w.to_f64_vec();
    let (mut q, mut scales) = (Vec::with_capacity(n * k), Vec::with_capacity(n));
    for row in v.chunks(k) {
        let top = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if top == 0.0 {
            scales.push(0.0);
            q.extend(std::iter::repeat_n(0i16, k));
            continue;
        }
        // The row's largest value is some m <= max steps: `max` for min-max quantisation, a
        // little less when the largest step count did not occur.
        let on_grid = |s: f32| -> Option<(f32, Vec<i16>)> {
            if s <= 0.0 || s.is_nan() {
                return None;
            }
            let mut out = Vec::with_capacity(k);
            for &x in row {
                let r = (x / s as f64).round();
                if r.abs() > max as f64 || (r as f32 * s) as f64 != x {
                    return None;
                }
                out.push(r as i16);
            }
            ok(&out).then_some((s, out))
        };
        // `top / m` may land an ulp off the scale that produced the row (the largest value
        // is itself rounded), so its neighbours are tried too.
        let fits = |m: f64| -> Option<(f32, Vec<i16>)> {
            let s0 = (top / m) as f32;
            let b = s0.to_bits();
            [
                s0,
                f32::from_bits(b.saturating_sub(1)),
                f32::from_bits(b + 1),
            ]
            .into_iter()
            .find_map(on_grid)
        };
        let (s, r) = (64..=max).rev().find_map(|m| fits(m as f64))?;
        scales.push(s);
        q.extend(r);
    }
    Some((q, scales))
}

/// `A W^T + b` for a few rows of `A [m, k]` (`k` a multiple of 32) and a weight stored as
/// int8 with a scale per output feature (`int8_rows`): per row of `A` and feature, two
/// 16-lane accumulators over `k`, each step converting 16 weights to f32 on the fly; the
/// feature's scale multiplies the sum. The weight is read as a quarter of the f32 bytes.
///
/// When the input comes from a DequantizeLinear of 8-bit integers (`quantised_input_scale`)
/// the kernel runs on integers: the input is taken back to its integers as i16, each step
/// multiplies 16 of them by 16 int8 weights and adds adjacent products into 8 i32 lanes
/// (`vpmaddwd` on x86), exactly, and the sum is scaled by `x_scale * w_scale[j]`.
pub(super) fn int8_gemv(e: &mut Emitter, n: &N, w: Int8Rows) -> String {
    let sx = super::int8conv::quantised_input_scale(e, n);
    let a = n.in_ty(0).clone();
    let nn = n.out_ty(0).shape[1];
    let k = a.shape[1];
    let q_c = e.constant(
        &Tensor::new(vec![nn, k], Data::I8(w.q)),
        Some("int8_weight"),
    );
    let scales: Vec<f32> = w.scales.iter().map(|&s| sx.map_or(s, |x| s * x)).collect();
    let s_c = e.constant(&Tensor::f32(vec![nn], scales), Some("int8_scale"));
    let x = n.input(e, 0);
    let xi = sx.and_then(|_| super::int8conv::to_integers(e, n, &a.shape));
    // Offset rows add offset[j] * sum_k x[b, k] (on the input's integers when it has them).
    let offset = w.offsets.iter().any(|&c| c != 0).then(|| {
        let offs: Vec<f32> = w.offsets.iter().map(|&c| c as f32).collect();
        let o_c = e.constant(&Tensor::f32(vec![nn], offs), Some("int8_offset"));
        let sums = match &xi {
            Some(xi) => row_sums(e, xi, true, &a.shape),
            None => row_sums(e, &x, false, &a.shape),
        };
        (o_c, sums)
    });
    let v = e.fresh();
    let qty = format!("tensor<{nn}x{k}xi8>");
    let qt = format!("vector<{INT8_LANES}xi8>");
    let mut consts = format!(
        "{v}_c16 = arith.constant {INT8_LANES} : index
{v}_step = arith.constant {step} : index
{v}_k = arith.constant {k} : index
{v}_zi = arith.constant 0 : i8",
        step = 2 * INT8_LANES
    );
    // Loads of the two halves of a step: the weight's, then the input's.
    let reads = |h: usize, xs: &str, xty: &str, xt: &str, zero: &str| {
        let at = if h == 0 {
            format!("{v}_e")
        } else {
            format!("{v}_e1")
        };
        format!(
            "{v}_q{h} = vector.transfer_read {q_c}[{v}_j, {at}], {v}_zi {{in_bounds = [true]}} : {qty}, {qt}
{v}_x{h} = vector.transfer_read {xs}[{v}_b, {at}], {zero} {{in_bounds = [true]}} : {xty}, {xt}
"
        )
    };
    let (vt, body) = match &xi {
        None => {
            let vt = format!("vector<{INT8_LANES}xf32>");
            let xty = tty_of(DType::F32, &a.shape);
            let mut body = format!(
                "{v}_r:2 = scf.for {v}_e = {v}_c0 to {v}_k step {v}_step iter_args({v}_s0 = {v}_zv, {v}_s1 = {v}_zv) -> ({vt}, {vt}) {{
{v}_e1 = arith.addi {v}_e, {v}_c16 : index
"
            );
            for h in 0..2 {
                body += &reads(h, &x, &xty, &vt, &format!("{v}_z"));
                body += &format!(
                    "{v}_w{h} = arith.sitofp {v}_q{h} : {qt} to {vt}
{v}_f{h} = vector.fma {v}_w{h}, {v}_x{h}, {v}_s{h} : {vt}
"
                );
            }
            body += &format!("scf.yield {v}_f0, {v}_f1 : {vt}, {vt}\n}}");
            (vt, body)
        }
        Some(xi) => {
            let at = "vector<8xi32>";
            let xty = format!("tensor<{}x{k}xi16>", a.shape[0]);
            let xt = format!("vector<{INT8_LANES}xi16>");
            let et = format!("vector<{INT8_LANES}xi32>");
            consts += &format!(
                "\n{v}_zx = arith.constant 0 : i16\n{v}_za = arith.constant dense<0> : {at}"
            );
            let mut body = format!(
                "{v}_r:2 = scf.for {v}_e = {v}_c0 to {v}_k step {v}_step iter_args({v}_s0 = {v}_za, {v}_s1 = {v}_za) -> ({at}, {at}) {{
{v}_e1 = arith.addi {v}_e, {v}_c16 : index
"
            );
            for h in 0..2 {
                body += &reads(h, xi, &xty, &xt, &format!("{v}_zx"));
                body += &format!(
                    "{v}_qe{h} = arith.extsi {v}_q{h} : {qt} to {et}
{v}_xe{h} = arith.extsi {v}_x{h} : {xt} to {et}
{v}_m{h} = arith.muli {v}_qe{h}, {v}_xe{h} : {et}
{v}_ev{h} = vector.shuffle {v}_m{h}, {v}_m{h} [0, 2, 4, 6, 8, 10, 12, 14] : {et}, {et}
{v}_od{h} = vector.shuffle {v}_m{h}, {v}_m{h} [1, 3, 5, 7, 9, 11, 13, 15] : {et}, {et}
{v}_p{h} = arith.addi {v}_ev{h}, {v}_od{h} : {at}
{v}_n{h} = arith.addi {v}_s{h}, {v}_p{h} : {at}
"
                );
            }
            body += &format!("scf.yield {v}_n0, {v}_n1 : {at}, {at}\n}}");
            ("vector<8xf32>".to_string(), body)
        }
    };
    let frame = Frame {
        v: &v,
        vt: &vt,
        consts: &consts,
        body: &body,
        scale: Some((&s_c, nn)),
        offset: offset.as_ref().map(|(o, s)| (o.as_str(), s.as_str())),
        kind: "int8_gemv",
        ints: xi.is_some(),
    };
    gemv_frame(e, n, frame)
}

/// `sum_k x[b, k]` over `x [m, k]` (f32, or with `ints` i16 integers summed exactly in i32)
/// as `tensor<m x f32>`.
fn row_sums(e: &mut Emitter, x: &str, ints: bool, shape: &[usize]) -> String {
    let m = shape[0];
    let acc = if ints { DType::I32 } else { DType::F32 };
    let init = fill_scalar(e, acc, &[m], 0.0);
    let (ty, elem) = if ints {
        (format!("tensor<{m}x{}xi16>", shape[1]), "i16")
    } else {
        (tty_of(DType::F32, shape), "f32")
    };
    let ins = [Operand {
        ssa: x.to_string(),
        ty,
        map: amap(2, &[d(0), d(1)]),
        elem,
    }];
    let out = Operand {
        ssa: init,
        ty: tty_of(acc, &[m]),
        map: amap(2, &[d(0)]),
        elem: acc.mlir(),
    };
    let s = e.generic(&ins, &out, &["parallel", "reduction"], |b, a| {
        if ints {
            let x = b.op(&format!("arith.extsi {} : i16 to i32", a[0]));
            b.op(&format!("arith.addi {}, {x} : i32", a[1]))
        } else {
            b.op(&format!("arith.addf {}, {} : f32", a[1], a[0]))
        }
    });
    if !ints {
        return s;
    }
    let ins = vec![op(s, DType::I32, &[m], amap(1, &[d(0)]))];
    map(e, ins, DType::F32, &[m], |b, a| {
        b.op(&format!("arith.sitofp {} : i32 to f32", a[0]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grids are found exactly: asymmetric int8 (`(q - zp) * s`, here 128 steps below zero)
    /// is read as int8 as it is, a row 235 steps above zero with an offset, a row spanning
    /// more than 255 steps or off any grid not at all.
    #[test]
    fn grids_are_found_exactly() {
        let s = 0.0070743416f32;
        let at = |ks: &[i32]| {
            let row: Vec<f32> = ks.iter().map(|&k| k as f32 * s).collect();
            Tensor::f32(vec![1, ks.len()], row)
        };
        let w = at(&[-128, -3, 0, 5, 100]);
        let r = int8_rows(&w).expect("an int8 row");
        assert_eq!(r.q, vec![-128, -3, 0, 5, 100]);
        assert_eq!((r.offsets[0], r.scales[0]), (0, s));
        let (q, sc) = grid_rows(&w, 255).expect("a 255-step grid");
        assert_eq!(q, vec![-128, -3, 0, 5, 100]);
        assert_eq!(sc[0], s);
        // (q - 20) * s for q in 0..=255: centred by 108 steps.
        let r = int8_rows(&at(&[-20, 0, 7, 235])).expect("an offset int8 row");
        assert_eq!((r.offsets[0], r.scales[0]), (108, s));
        assert_eq!(r.q, vec![-128, -108, -101, 127]);
        assert!(int8_rows(&at(&[-200, 1, 100])).is_none());
        let mut off = at(&[-128, -3, 0, 5, 100]).to_f64_vec();
        off[3] += 1e-3;
        let off: Vec<f32> = off.iter().map(|&v| v as f32).collect();
        assert!(grid_rows(&Tensor::f32(vec![1, 5], off), 255).is_none());
    }
}
