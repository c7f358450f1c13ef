//! The integer convolution: a stride-1 convolution whose input comes straight from a
//! per-tensor DequantizeLinear (8-bit activations, as `quantize_static` and bonsai's
//! `quantize-activations` write them) and whose weight lies on a per-channel int8 grid
//! (`grid_rows`) is computed on the integers, exactly, in 32-bit accumulators: the input
//! is taken back to its integers (`x / scale`, exact), stored as 16-bit pairs of adjacent
//! channels, and each step multiplies one such pair per pixel by a pair of weights and adds
//! both products (`vpmaddwd` on x86, which LLVM forms from the extend / multiply / even-odd
//! add below): 16 multiply-adds per instruction against the f32 kernel's 8. One multiply
//! by `x_scale * w_scale[o]` then adds the bias.

use super::gemv::grid_rows;
use super::kernels::{block_loops, conv_init, plane_to_out, KernelConv, KERNEL_LANES, KERNEL_ROWS};
use super::N;
use crate::graph::{tensor::Data, DType, Tensor};
use crate::ir::emit::{amap, d, tty_of, Emitter, Operand};

/// i32 lanes of one accumulator (a 256-bit register); a 16-pixel block is two of them.
const LANES: usize = 8;

/// What the integer convolution needs: the input's scale, and the weight as integers
/// `[M, J]` (J = Cg*K..., ONNX order; at most 255 steps from zero, so that asymmetric int8
/// fits) with one scale per output channel.
pub(super) struct Int8Conv {
    pub(super) x_scale: f32,
    /// What makes the input's integers `x / scale` unsigned bytes: the zero point (u8
    /// input), or zero point + 128 (i8).
    pub(super) x_offset: i32,
    pub(super) q: Vec<i16>,
    pub(super) w_scales: Vec<f32>,
}

/// The scale of `n`'s first input if it is a dequantised run-time value
/// (`Emitter::dequantized`): `(q - zero_point) * scale` with `|q - zero_point| <= 255`, so
/// `x / scale` gives those integers back exactly.
pub(super) fn quantised_input_scale(e: &Emitter, n: &N) -> Option<f32> {
    e.dequantized.get(&n.node.inputs[0]?).map(|d| d.scale)
}

/// The integers of `n`'s first input `x` (of `shape`), a DequantizeLinear's output
/// (`dequantized_from`), as i16: `q - zero_point`, read from the DequantizeLinear's own
/// input, so that no float work is left (and a QuantizeLinear before it fuses in).
pub(super) fn to_integers(e: &mut Emitter, n: &N, shape: &[usize]) -> Option<String> {
    let dq = e.dequantized.get(&n.node.inputs[0]?)?.clone();
    let (qt, zp) = (dq.dtype, dq.zero_point);
    let q = e.reshape(&dq.q, qt, &dq.shape, shape);
    let r = shape.len();
    let ident: Vec<String> = (0..r).map(d).collect();
    let dims: Vec<String> = shape.iter().map(|v| v.to_string()).collect();
    let qty = format!("tensor<{}xi16>", dims.join("x"));
    let empty = e.fresh();
    e.line(&format!("{empty} = tensor.empty() : {qty}"));
    let elem = qt.mlir();
    let ins = [Operand {
        ssa: q,
        ty: tty_of(qt, shape),
        map: amap(r, &ident),
        elem,
    }];
    let out = Operand {
        ssa: empty,
        ty: qty,
        map: amap(r, &ident),
        elem: "i16",
    };
    let ext = if qt == DType::U8 {
        "arith.extui"
    } else {
        "arith.extsi"
    };
    Some(e.generic(&ins, &out, &vec!["parallel"; r], |b, a| {
        let x = b.op(&format!("{ext} {} : {elem} to i16", a[0]));
        if zp == 0 {
            return x;
        }
        let z = b.op(&format!("arith.constant {zp} : i16"));
        b.op(&format!("arith.subi {x}, {z} : i16"))
    }))
}

/// The integer form of convolution `n`, if it has one: its input produced by a
/// DequantizeLinear of 8-bit integers with a constant scalar scale, its weight constant on a
/// per-channel int8 grid, an even number of channels per group (channels go in pairs).
pub(super) fn int8_conv_of(e: &Emitter, n: &N, cg: usize) -> Option<Int8Conv> {
    if !cg.is_multiple_of(2) {
        return None;
    }
    let x_scale = quantised_input_scale(e, n)?;
    let dq = e.dequantized.get(&n.node.inputs[0]?)?;
    let x_offset = match dq.dtype {
        DType::U8 => dq.zero_point as i32,
        _ => dq.zero_point as i32 + 128,
    };
    let w = n.g.konst(n.node.inputs[1]?)?;
    let m = w.shape[0];
    // Signed bytes where the weight allows (what the VNNI kernel multiplies), else up to 255
    // steps (asymmetric int8; the 16-bit kernel).
    let rows = w.reshaped(vec![m, w.len() / m]);
    let (q, w_scales) = grid_rows(&rows, 127).or_else(|| grid_rows(&rows, 255))?;
    Some(Int8Conv {
        x_scale,
        x_offset,
        q,
        w_scales,
    })
}

/// The padded input plane `s.xg_s` `[N, G, Cg, L]` (f32 on the input's integer grid) as
/// integers packed `per` channels to an i32 (2: 16-bit fields, 4: bytes; field k holds
/// channel per*c + k): `round(x / scale) + offset` in each field. One map whose innermost
/// dimension is contiguous, so that it vectorises; returns the packed plane flattened to
/// `[N, G, Cg/per * L]` and its type. (x / scale is within a few ulp of an integer of at most
/// 255, so the rounding is exact.)
fn pack_input(
    e: &mut Emitter,
    s: &KernelConv,
    x_scale: f32,
    (per, offset): (usize, i32),
) -> (String, String) {
    let (nb, group, cg, len) = (s.xg[0], s.xg[1], s.xg[2], s.xg[3]);
    let words = cg / per;
    let width = 32 / per;
    let qty = format!("tensor<{nb}x{group}x{words}x{len}xi32>");
    let fty = format!("tensor<{nb}x{group}x{}xi32>", words * len);
    let empty = e.fresh();
    e.line(&format!("{empty} = tensor.empty() : {qty}"));
    let field = |k: usize| Operand {
        ssa: s.xg_s.to_string(),
        ty: tty_of(DType::F32, s.xg),
        map: amap(4, &[d(0), d(1), format!("d2 * {per} + {k}"), d(3)]),
        elem: "f32",
    };
    let ins: Vec<Operand> = (0..per).map(field).collect();
    let out = Operand {
        ssa: empty,
        ty: qty.clone(),
        map: amap(4, &(0..4).map(d).collect::<Vec<_>>()),
        elem: "i32",
    };
    let inv = crate::ir::emit::flit(DType::F32, (1.0 / x_scale) as f64);
    let xq = e.generic(&ins, &out, &["parallel"; 4], |b, a| {
        let c = b.op(&format!("arith.constant {inv} : f32"));
        let mut acc = String::new();
        for (k, x) in a.iter().take(per).enumerate() {
            let q = b.op(&format!("arith.mulf {x}, {c} : f32"));
            let q = b.op(&format!("math.roundeven {q} : f32"));
            let mut u = b.op(&format!("arith.fptosi {q} : f32 to i32"));
            if offset != 0 {
                let o = b.op(&format!("arith.constant {offset} : i32"));
                u = b.op(&format!("arith.addi {u}, {o} : i32"));
            }
            if k + 1 < per {
                let m = b.op(&format!("arith.constant {} : i32", (1u64 << width) - 1));
                u = b.op(&format!("arith.andi {u}, {m} : i32"));
            }
            if k > 0 {
                let sh = b.op(&format!("arith.constant {} : i32", width * k));
                u = b.op(&format!("arith.shli {u}, {sh} : i32"));
                u = b.op(&format!("arith.ori {acc}, {u} : i32"));
            }
            acc = u;
        }
        acc
    });
    let xf = e.fresh();
    e.line(&format!(
        "{xf} = tensor.collapse_shape {xq} [[0], [1], [2, 3]] : {qty} into {fty}"
    ));
    (xf, fty)
}

/// The integer convolution over the padded input plane `s.xg_s` `[N, G, Cg, L]` (f32
/// values on the input's integer grid): the same register blocks as `conv_kernel` (4 output
/// channels x 16 pixels, now as 8 accumulators of 8 x i32), with reduction steps over
/// channel pairs and kernel positions.
pub(super) fn int8_conv(e: &mut Emitter, n: &N, s: KernelConv, w: Int8Conv) -> String {
    let (nb, group, cg) = (s.xg[0], s.xg[1], s.xg[2]);
    let og = s.wshape[1];
    let ks = &s.wshape[3..];
    let kk: usize = ks.iter().product();
    let cp = cg / 2;
    let pp = s.pixels.next_multiple_of(KERNEL_LANES);

    // The input's integers as i16 channel pairs, two to an i32 (low half: the even channel).
    let (xf, fty) = pack_input(e, &s, w.x_scale, (2, 0));

    // Weights as i32 pairs (low half: even channel), steps in (channel pair, k...) order,
    // and each step's offset into the flattened pairs (in i16 elements; pixel p adds 2p).
    let j = cg * kk;
    let nj = cp * kk;
    let mut pairs = Vec::with_capacity(group * og * nj);
    for o in 0..group * og {
        let row = &w.q[o * j..(o + 1) * j];
        for c in 0..cp {
            for kf in 0..kk {
                let lo = row[2 * c * kk + kf] as u16 as u32;
                let hi = row[(2 * c + 1) * kk + kf] as u16 as u32;
                pairs.push((lo | (hi << 16)) as i32);
            }
        }
    }
    // Step (pair c, tap) starts at pair c*len + tap offset: the f32 plane's offset of step
    // c*kk + tap.
    let offs: Vec<String> = (0..nj).map(|jj| s.step_offset(jj).to_string()).collect();
    let wq = e.constant(
        &Tensor::new(vec![group, og, nj], Data::I32(pairs)),
        Some("int8_conv_weight"),
    );
    let scales: Vec<f32> = w.w_scales.iter().map(|&ws| ws * w.x_scale).collect();
    let sc = e.constant(
        &Tensor::f32(vec![group, og], scales),
        Some("int8_conv_scale"),
    );
    let ys = [nb, group, og, pp];
    let init = conv_init(e, n, DType::F32, &ys);

    let v = e.fresh();
    let yty = tty_of(DType::F32, &ys);
    let wty = format!("tensor<{group}x{og}x{nj}xi32>");
    let sty = format!("tensor<{group}x{og}xf32>");
    let at = format!("vector<{LANES}xi32>");
    let xt = format!("vector<{}xi16>", 2 * LANES);
    let xe = format!("vector<{}xi32>", 2 * LANES);
    let even: Vec<String> = (0..LANES).map(|i| (2 * i).to_string()).collect();
    let odd: Vec<String> = (0..LANES).map(|i| (2 * i + 1).to_string()).collect();
    let (even, odd) = (even.join(", "), odd.join(", "));
    let frame = IntBlock {
        v: &v,
        offs: &offs,
        dims: [nb, group, og, pp],
        half: LANES,
        init: &init,
        yty: &yty,
        xf: (&xf, &fty),
    };
    let (mut text, rows) = frame.open();
    let (nacc, ats) = (2 * KERNEL_ROWS, [at.as_str(); 2 * KERNEL_ROWS].join(", "));
    text += &format!(
        "{v}_x0 = vector.bitcast {v}_i0 : {at} to {xt}
{v}_x1 = vector.bitcast {v}_i1 : {at} to {xt}
{v}_e0 = arith.extsi {v}_x0 : {xt} to {xe}
{v}_e1 = arith.extsi {v}_x1 : {xt} to {xe}
"
    );
    let mut next = Vec::with_capacity(nacc);
    for (i, o) in rows.iter().enumerate() {
        text += &format!(
            "{v}_w{i} = tensor.extract {wq}[{v}_g, {o}, {v}_j] : {wty}
{v}_wb{i} = vector.broadcast {v}_w{i} : i32 to {at}
{v}_wh{i} = vector.bitcast {v}_wb{i} : {at} to {xt}
{v}_we{i} = arith.extsi {v}_wh{i} : {xt} to {xe}
"
        );
        for h in 0..2 {
            let a = 2 * i + h;
            text += &format!(
                "{v}_m{a} = arith.muli {v}_e{h}, {v}_we{i} : {xe}
{v}_ev{a} = vector.shuffle {v}_m{a}, {v}_m{a} [{even}] : {xe}, {xe}
{v}_od{a} = vector.shuffle {v}_m{a}, {v}_m{a} [{odd}] : {xe}, {xe}
{v}_pr{a} = arith.addi {v}_ev{a}, {v}_od{a} : {at}
{v}_n{a} = arith.addi {v}_s{a}, {v}_pr{a} : {at}
"
            );
            next.push(format!("{v}_n{a}"));
        }
    }
    text += &format!("scf.yield {} : {ats}\n}}\n", next.join(", "));
    text += &frame.close(&rows, (&sc, &sty), None);
    for l in text.lines() {
        e.line(l);
    }
    plane_to_out(e, n, &v, &ys, s.wp)
}

/// Pixels per block of `int8_conv_vnni`: two 16 x i32 accumulators per output row.
const VNNI_PIXELS: usize = 32;

/// Whether `int8_conv_vnni` applies: AVX-512 VNNI, channels in whole quads, weights within
/// signed bytes.
pub(super) fn vnni_applies(e: &Emitter, cg: usize, w: &Int8Conv) -> bool {
    e.x86 >= super::X86::Avx512Vnni
        && cg.is_multiple_of(4)
        && w.q.iter().all(|&q| (-128..=127).contains(&q))
        && (0..=255).contains(&w.x_offset)
}

/// The integer convolution with 8-bit dot products (`vpdpbusd`: per 32-bit lane, four
/// unsigned bytes times four signed bytes, summed into the lane; 64 multiply-adds per
/// instruction against `vpmaddwd`'s 32). The input's integers, offset to unsigned bytes
/// (`u = x / scale + offset`, `offset` = the zero point for u8), go four channels to an i32;
/// the weights four channels to an i32 of signed bytes. Each output row of a block keeps two
/// 16-lane accumulators (32 pixels); per step (channel quad, kernel tap) one input vector
/// per 16 pixels and one broadcast weight quad per row. The offset comes back out exactly:
/// `acc - offset * sum(w)` (padding reads u = offset, as x = 0 there). Then one multiply by
/// `x_scale * w_scale[o]` onto the bias.
pub(super) fn int8_conv_vnni(e: &mut Emitter, n: &N, s: KernelConv, w: Int8Conv) -> String {
    let (v, ys) = vnni_plane(e, n, &s, w);
    plane_to_out(e, n, &v, &ys, s.wp)
}

/// `A W^T + b` on 8-bit QDQ activations for a batch of `m` rows (a multiple of 32), with
/// VNNI: the transposed input `A^T` (`k` channels of an `m`-pixel plane) through
/// `int8_conv_vnni`'s 1x1 loops, then transposed back. (Fewer than 8 rows: `int8_gemv`.)
pub(super) fn int8_gemm_rows(e: &mut Emitter, n: &N, w: Int8Conv) -> String {
    let (m, k) = (n.in_ty(0).shape[0], n.in_ty(0).shape[1]);
    let nn = n.out_ty(0).shape[1];
    let a = n.input(e, 0);
    let (xg_s, xg) = super::kernels::fc_plane(e, &a, m, k);
    let wshape = [1, nn, k];
    let s = KernelConv::fc(&xg, &xg_s, &wshape);
    let (v, ys) = vnni_plane(e, n, &s, w);
    super::kernels::fc_out(e, &v, &ys, m)
}

/// The loops of `int8_conv_vnni`, up to the plane-form result `[N, G, Og, P']` and its shape.
fn vnni_plane(e: &mut Emitter, n: &N, s: &KernelConv, w: Int8Conv) -> (String, [usize; 4]) {
    let (nb, group, cg) = (s.xg[0], s.xg[1], s.xg[2]);
    let og = s.wshape[1];
    let ks = &s.wshape[3..];
    let kk: usize = ks.iter().product();
    let cq = cg / 4;
    let pp = s.pixels.next_multiple_of(VNNI_PIXELS);
    let (xf, fty) = pack_input(e, s, w.x_scale, (4, w.x_offset));
    // Weights as quads of signed bytes (byte k: channel 4c + k), steps in (quad, k...) order;
    // each step's offset into the flattened quads is the f32 plane's offset of step c*kk+tap.
    let j = cg * kk;
    let nj = cq * kk;
    let mut quads = Vec::with_capacity(group * og * nj);
    let mut corr = Vec::with_capacity(group * og);
    for o in 0..group * og {
        let row = &w.q[o * j..(o + 1) * j];
        for c in 0..cq {
            for kf in 0..kk {
                let mut word = 0u32;
                for k in 0..4 {
                    word |= (row[(4 * c + k) * kk + kf] as i8 as u8 as u32) << (8 * k);
                }
                quads.push(word as i32);
            }
        }
        let sum: i64 = row.iter().map(|&q| q as i64).sum();
        corr.push((w.x_offset as i64 * sum) as i32);
    }
    let offs: Vec<String> = (0..nj).map(|jj| s.step_offset(jj).to_string()).collect();
    let wq = e.constant(
        &Tensor::new(vec![group, og, nj], Data::I32(quads)),
        Some("int8_vnni_weight"),
    );
    let cc = e.constant(
        &Tensor::new(vec![group, og], Data::I32(corr)),
        Some("int8_vnni_offset"),
    );
    let scales: Vec<f32> = w.w_scales.iter().map(|&ws| ws * w.x_scale).collect();
    let sc = e.constant(
        &Tensor::f32(vec![group, og], scales),
        Some("int8_conv_scale"),
    );
    let ys = [nb, group, og, pp];
    let init = conv_init(e, n, DType::F32, &ys);
    const L: usize = VNNI_PIXELS / 2;
    let at = format!("vector<{L}xi32>");
    // LLVM 22 takes the byte operands as <64 x i8>.
    let bt = format!("vector<{}xi8>", 4 * L);
    e.helper("bonsai_vpdpbusd", || {
        format!(
            "  llvm.func internal @bonsai_vpdpbusd(%acc: {at}, %u: {at}, %s: {at}) -> {at} attributes {{always_inline}} {{
    %ub = llvm.bitcast %u : {at} to {bt}
    %sb = llvm.bitcast %s : {at} to {bt}
    %r = llvm.call_intrinsic \"llvm.x86.avx512.vpdpbusd.512\"(%acc, %ub, %sb) : ({at}, {bt}, {bt}) -> {at}
    llvm.return %r : {at}
  }}
"
        )
    });
    let v = e.fresh();
    let yty = tty_of(DType::F32, &ys);
    let wty = format!("tensor<{group}x{og}x{nj}xi32>");
    let sty = format!("tensor<{group}x{og}xf32>");
    let cty = format!("tensor<{group}x{og}xi32>");
    let frame = IntBlock {
        v: &v,
        offs: &offs,
        dims: [nb, group, og, pp],
        half: L,
        init: &init,
        yty: &yty,
        xf: (&xf, &fty),
    };
    let (mut text, rows) = frame.open();
    let (nacc, ats) = (2 * KERNEL_ROWS, [at.as_str(); 2 * KERNEL_ROWS].join(", "));
    let mut next = Vec::with_capacity(nacc);
    for (i, o) in rows.iter().enumerate() {
        text += &format!(
            "{v}_w{i} = tensor.extract {wq}[{v}_g, {o}, {v}_j] : {wty}
{v}_wb{i} = vector.broadcast {v}_w{i} : i32 to {at}
"
        );
        for h in 0..2 {
            let a = 2 * i + h;
            text += &format!(
                "{v}_n{a} = llvm.call @bonsai_vpdpbusd({v}_s{a}, {v}_i{h}, {v}_wb{i}) : ({at}, {at}, {at}) -> {at}\n"
            );
            next.push(format!("{v}_n{a}"));
        }
    }
    text += &format!("scf.yield {} : {ats}\n}}\n", next.join(", "));
    text += &frame.close(&rows, (&sc, &sty), Some((&cc, &cty)));
    for l in text.lines() {
        e.line(l);
    }
    (v, ys)
}

/// The loops and epilogue both integer kernels share: blocks of `KERNEL_ROWS` output rows x
/// `2 * half` pixels, with two `half`-lane i32 accumulators per row.
struct IntBlock<'a> {
    v: &'a str,
    offs: &'a [String],
    /// [N, G, Og, P].
    dims: [usize; 4],
    half: usize,
    init: &'a str,
    yty: &'a str,
    /// The integer input plane `[N, G, L']` (i32 words) and its type.
    xf: (&'a str, &'a str),
}

impl IntBlock<'_> {
    /// The block loops and the opening of the reduction loop, whose body has read the two
    /// input words `{v}_i0` and `{v}_i1` (pixels p and p + half) of step `{v}_j`; the
    /// accumulators are `{v}_s{2 row + half}`. Returns the text and the block's row indices.
    fn open(&self) -> (String, Vec<String>) {
        let (v, half) = (self.v, self.half);
        let nj = self.offs.len();
        let at = format!("vector<{half}xi32>");
        let (loops, rows) = block_loops(
            v,
            self.offs,
            self.dims,
            [KERNEL_ROWS, 2 * half],
            [0, self.dims[2]],
            self.init,
            self.yty,
            "f32",
        );
        let nacc = 2 * KERNEL_ROWS;
        let accs: Vec<String> = (0..nacc).map(|a| format!("{v}_s{a} = {v}_zv")).collect();
        let ats = vec![at.as_str(); nacc].join(", ");
        let (xf, fty) = self.xf;
        let text = format!(
            "{v}_ch = arith.constant {half} : index
{v}_zq = arith.constant 0 : i32
{v}_zv = arith.constant dense<0> : {at}
{loops}{v}_r:{nacc} = scf.for {v}_j = {v}_c0 to {v}_nj step {v}_c1 iter_args({}) -> ({ats}) {{
{v}_off = tensor.extract {v}_offs[{v}_j] : tensor<{nj}xindex>
{v}_q0 = arith.addi {v}_off, {v}_p : index
{v}_q1 = arith.addi {v}_q0, {v}_ch : index
{v}_i0 = vector.transfer_read {xf}[{v}_n, {v}_g, {v}_q0], {v}_zq {{in_bounds = [true]}} : {fty}, {at}
{v}_i1 = vector.transfer_read {xf}[{v}_n, {v}_g, {v}_q1], {v}_zq {{in_bounds = [true]}} : {fty}, {at}
",
            accs.join(", ")
        );
        (text, rows)
    }

    /// After the reduction (`{v}_r#a`): y[n, g, o_i, p + half h] = y + (acc - correction[o_i])
    /// * scale[o_i] for each row and half, then close the block loops.
    fn close(
        &self,
        rows: &[String],
        (sc, sty): (&str, &str),
        corr: Option<(&str, &str)>,
    ) -> String {
        let (v, half, yty) = (self.v, self.half, self.yty);
        let (at, ft) = (format!("vector<{half}xi32>"), format!("vector<{half}xf32>"));
        let mut text = String::new();
        let mut cur = format!("{v}_yd");
        for (i, o) in rows.iter().enumerate() {
            text += &format!(
                "{v}_sc{i} = tensor.extract {sc}[{v}_g, {o}] : {sty}
{v}_sb{i} = vector.broadcast {v}_sc{i} : f32 to {ft}
"
            );
            if let Some((cc, cty)) = corr {
                text += &format!(
                    "{v}_cc{i} = tensor.extract {cc}[{v}_g, {o}] : {cty}
{v}_cb{i} = vector.broadcast {v}_cc{i} : i32 to {at}
"
                );
            }
            for h in 0..2 {
                let a = 2 * i + h;
                let px = if h == 0 {
                    format!("{v}_p")
                } else {
                    text += &format!("{v}_ph{a} = arith.addi {v}_p, {v}_ch : index\n");
                    format!("{v}_ph{a}")
                };
                let acc = if corr.is_some() {
                    text += &format!("{v}_sub{a} = arith.subi {v}_r#{a}, {v}_cb{i} : {at}\n");
                    format!("{v}_sub{a}")
                } else {
                    format!("{v}_r#{a}")
                };
                text += &format!(
                    "{v}_b{a} = vector.transfer_read {cur}[{v}_n, {v}_g, {o}, {px}], {v}_z {{in_bounds = [true]}} : {yty}, {ft}
{v}_f{a} = arith.sitofp {acc} : {at} to {ft}
{v}_u{a} = vector.fma {v}_f{a}, {v}_sb{i}, {v}_b{a} : {ft}
{v}_t{a} = vector.transfer_write {v}_u{a}, {cur}[{v}_n, {v}_g, {o}, {px}] {{in_bounds = [true]}} : {ft}, {yty}
"
                );
                cur = format!("{v}_t{a}");
            }
        }
        text + &format!(
            "scf.yield {cur} : {yty}\n}}\nscf.yield {v}_y3 : {yty}\n}}\nscf.yield {v}_y2 : {yty}\n}}\nscf.yield {v}_y1 : {yty}\n}} {{bonsai.kernel = \"int8_conv\"}}"
        )
    }
}
