//! bonsai's own CPU kernels, emitted as scf and vector ops on tensors for the code-generation
//! form (`lower::Options::cpu_kernels`): the register-blocked dense convolution and Gemm, the
//! direct sparse convolution, and the sparse forms that go through MLIR's sparsifier
//! (im2col + CSR for strided convolutions, the transposed CSR Gemm for batches that are not
//! whole 16-row vectors; `sparse_rows` for the others). `nn.rs` decides which form an op
//! takes.

use super::elementwise::map;
use super::nn::{fill_scalar, op};
use super::N;
use crate::error::Result;
use crate::graph::DType;
use crate::ir::emit::{amap, d, tty_of, Emitter, Operand, WeightTag};

/// Sparsity below which a sparse kernel is not used even when `--sparse-min` allows it,
/// because bonsai's dense code for the same op is as fast or faster (`bonsai bench --kernels`,
/// one thread, Zen 3): the direct sparse convolution breaks even with the blocked dense one
/// near 50%; the batched sparse Gemm with the blocked dense Gemm near 65% (64x3136x128: CSR
/// 1418 us at 50%, 835 us at 70%, dense 1084 us; `sparse_rows` on the Zen 5 VM of stop 17:
/// 326 us at 50%, 211 at 70%, 101 at 90%, dense 247-273 us); the batch-1 CSR Gemm, which gathers the
/// input at every non-zero, near 90% (128x3136: 35 us at 90%, dense 38-42 us).
pub(super) const SPARSE_CONV_FLOOR: f64 = 0.5;
pub(super) const CSR_BATCHED_FLOOR: f64 = 0.7;
pub(super) const CSR_ROWWISE_FLOOR: f64 = 0.9;

/// Output channels and pixels of one register block in `conv_kernel`: 4 x 16 f32
/// accumulators (eight AVX registers), updated from one input vector and four broadcast
/// weights per reduction step.
pub(super) const KERNEL_ROWS: usize = 4;
pub(super) const KERNEL_LANES: usize = 16;

/// Pixels per register block of the dense blocked kernels (`conv_kernel`, `gemm_kernel`): 16
/// (two AVX2 registers per row: twelve accumulators in a 6-row block), 32 with AVX-512 (two of
/// its 32 registers per row, twelve accumulators again, each broadcast weight feeding two
/// FMAs; with one register per row, six accumulators could not hide the FMA latency of two
/// FMA units).
pub(super) fn blocked_lanes(e: &Emitter) -> usize {
    if e.x86 >= super::X86::Avx512 {
        2 * KERNEL_LANES
    } else {
        KERNEL_LANES
    }
}

/// What `conv_kernel` needs from `conv`.
pub(super) struct KernelConv<'a> {
    pub(super) xg: &'a [usize],
    pub(super) xg_s: &'a str,
    /// The weight as `[G, Og, Cg, K...]`.
    pub(super) w: &'a str,
    pub(super) wshape: &'a [usize],
    pub(super) wp: usize,
    pub(super) pixels: usize,
    pub(super) dil: &'a [i64],
    /// Only these reduction steps (indices in the full (c, k...) order) run, and `w` is then
    /// the weight of those steps only, `[G, Og, steps]` (`wshape` still describes the full
    /// one). Strided convolutions drop the taps that space to depth leaves zero for every
    /// channel.
    pub(super) steps: Option<&'a [usize]>,
}

impl<'a> KernelConv<'a> {
    /// A batched FC `A W^T` (`W [n, k]`, `A [m, k]`) as a 1x1 convolution of its input's
    /// transpose `xg_s` = `A^T` as `[1, 1, k, m]` (`fc_plane`): `k` channels of an `m`-pixel
    /// plane, the form the direct and integer convolution loops take for batches. `wshape`
    /// = `[1, n, k]`.
    pub(super) fn fc(xg: &'a [usize; 4], xg_s: &'a str, wshape: &'a [usize; 3]) -> Self {
        KernelConv {
            xg,
            xg_s,
            w: "",
            wshape,
            wp: xg[3],
            pixels: xg[3],
            dil: &[],
            steps: None,
        }
    }

    /// The reduction steps that run, and the weight as `[G, Og, steps]`.
    pub(super) fn steps_and_weight(&self, e: &mut Emitter, dt: DType) -> (Vec<usize>, String) {
        let (group, og, cg) = (self.xg[1], self.wshape[1], self.xg[2]);
        let all = cg * self.wshape[3..].iter().product::<usize>();
        match self.steps {
            Some(st) => (st.to_vec(), self.w.to_string()),
            None => {
                let w = e.reshape(self.w, dt, self.wshape, &[group, og, all]);
                ((0..all).collect(), w)
            }
        }
    }

    /// Offset in the flattened input plane of reduction step `j` = (channel, kernel tap) of
    /// a group: c*len + sum k_i*dil_i*(row stride), `len` being one channel's plane.
    pub(super) fn step_offset(&self, j: usize) -> usize {
        let ks = &self.wshape[3..];
        let kk: usize = ks.iter().product();
        let r = ks.len();
        let (mut rem, mut o) = (j % kk, (j / kk) * self.xg[3]);
        for i in (0..r).rev() {
            let k = rem % ks[i];
            rem /= ks[i];
            o += k * self.dil[i] as usize * if i + 1 < r { self.wp } else { 1 };
        }
        o
    }
}

/// Dense stride-1 convolution as an explicit register-blocked kernel over the flattened
/// input plane: for each image, group, block of 4 output channels and 16 output pixels,
/// the accumulators stay in registers across the whole reduction (c, k...), each step
/// reading one 16-pixel input vector at a precomputed offset and 4 weights. (The linalg
/// form reloads and stores the output at every step.)
pub(super) fn conv_kernel(e: &mut Emitter, n: &N, s: KernelConv) -> String {
    let x = n.in_ty(0).clone();
    let dt = x.dtype;
    let (nb, group, cg, len) = (s.xg[0], s.xg[1], s.xg[2], s.xg[3]);
    let og = s.wshape[1];
    let lanes = blocked_lanes(e);
    let pp = s.pixels.next_multiple_of(lanes);
    let xf_shape = [nb, group, cg * len];
    let xf = e.reshape(s.xg_s, dt, s.xg, &xf_shape);
    let (steps, wj) = s.steps_and_weight(e, dt);
    let wj_shape = [group, og, steps.len()];
    // Input offset of each reduction step (c, k...).
    let offs: Vec<String> = steps
        .iter()
        .map(|&jj| s.step_offset(jj).to_string())
        .collect();
    let ys = [nb, group, og, pp];
    let bias = layer_bias(e, n, dt, &[group, og]);
    let v = blocked_kernel(
        e,
        dt,
        (&xf, &xf_shape),
        (&wj, &wj_shape),
        &offs,
        bias,
        &ys,
        lanes,
    );
    plane_to_out(e, n, &v, &ys, s.wp)
}

/// Output rows of the register-blocked kernel's main blocks: 6 x 16 pixels, twelve AVX
/// accumulators (BLIS's Haswell shape), so that FMA latency (4 cycles, 2 per cycle) is
/// hidden; the leftover rows (Og mod 6, 2 or 4) run in one more nest.
pub(super) const BLOCK_ROWS: usize = 6;

/// The loops of the register-blocked kernel: `y [N, G, Og, P] += w [G, Og, J] * x`, where
/// step j of output pixel p reads `x [N, G, L]` at `offs[j] + p`. Blocks of 6 output rows
/// (then the leftover rows) x `lanes` pixels are accumulated in registers over all J steps
/// (each: one input vector and a broadcast weight per row), starting from the bias
/// `[G, Og]` (or zeros); every element of y is written, so y starts empty (no pass over
/// memory to broadcast the bias first). P must be a multiple of `lanes`, and Og of 2.
#[allow(clippy::too_many_arguments)]
fn blocked_kernel(
    e: &mut Emitter,
    dt: DType,
    x: (&str, &[usize]),
    w: (&str, &[usize]),
    offs: &[String],
    bias: Option<String>,
    ys: &[usize],
    lanes: usize,
) -> String {
    let og = ys[2];
    let main = og - og % BLOCK_ROWS;
    let mut y = e.empty(dt, ys);
    let b = bias.as_deref();
    if main > 0 {
        y = blocked_nest(
            e,
            dt,
            x,
            w,
            offs,
            (&y, b),
            ys,
            [BLOCK_ROWS, lanes],
            [0, main],
        );
    }
    if main < og {
        y = blocked_nest(
            e,
            dt,
            x,
            w,
            offs,
            (&y, b),
            ys,
            [og - main, lanes],
            [main, og],
        );
    }
    y
}

/// One nest of [`blocked_kernel`] over rows `span` in blocks of `nrows`, writing into `init`
/// from accumulators that start at `bias [G, Og]` (or zero).
#[allow(clippy::too_many_arguments)]
fn blocked_nest(
    e: &mut Emitter,
    dt: DType,
    (xf, xf_shape): (&str, &[usize]),
    (wj, wj_shape): (&str, &[usize]),
    offs: &[String],
    (init, bias): (&str, Option<&str>),
    ys: &[usize],
    block: [usize; 2],
    span: [usize; 2],
) -> String {
    let [nrows, lanes] = block;
    let t = dt.mlir();
    let (nb, group, og, pp) = (ys[0], ys[1], ys[2], ys[3]);
    let j = offs.len();
    let v = e.fresh();
    let yty = tty_of(dt, ys);
    let xty = tty_of(dt, xf_shape);
    let wty = tty_of(dt, wj_shape);
    let vt = format!("vector<{lanes}x{t}>");
    let (mut text, rows) = block_loops(&v, offs, [nb, group, og, pp], block, span, init, &yty, t);
    let at: Vec<String> = rows
        .iter()
        .map(|o| format!("{v}_n, {v}_g, {o}, {v}_p"))
        .collect();
    match bias {
        Some(b) => {
            let bty = tty_of(dt, &[group, og]);
            for (i, o) in rows.iter().enumerate() {
                text += &format!(
                    "{v}_bb{i} = tensor.extract {b}[{v}_g, {o}] : {bty}
{v}_a{i} = vector.broadcast {v}_bb{i} : {t} to {vt}
"
                );
            }
        }
        None => {
            text += &format!("{v}_zv = arith.constant dense<0.0> : {vt}\n");
            for i in 0..nrows {
                text += &format!("{v}_a{i} = arith.addf {v}_zv, {v}_zv : {vt}\n");
            }
        }
    }
    let accs: Vec<String> = (0..nrows).map(|i| format!("{v}_s{i} = {v}_a{i}")).collect();
    let vts = vec![vt.as_str(); nrows].join(", ");
    text += &format!(
        "{v}_r:{nrows} = scf.for {v}_j = {v}_c0 to {v}_nj step {v}_c1 iter_args({}) -> ({vts}) {{
{v}_off = tensor.extract {v}_offs[{v}_j] : tensor<{j}xindex>
{v}_q = arith.addi {v}_off, {v}_p : index
{v}_xv = vector.transfer_read {xf}[{v}_n, {v}_g, {v}_q], {v}_z {{in_bounds = [true]}} : {xty}, {vt}
",
        accs.join(", ")
    );
    for (i, o) in rows.iter().enumerate() {
        text += &format!(
            "{v}_w{i} = tensor.extract {wj}[{v}_g, {o}, {v}_j] : {wty}
{v}_b{i} = vector.broadcast {v}_w{i} : {t} to {vt}
{v}_m{i} = vector.fma {v}_b{i}, {v}_xv, {v}_s{i} : {vt}
"
        );
    }
    let ms: Vec<String> = (0..nrows).map(|i| format!("{v}_m{i}")).collect();
    text += &format!("scf.yield {} : {vts}\n}}\n", ms.join(", "));
    text += &write_block_and_close(&v, &at, &yty, &vt, "conv_blocked");
    for l in text.lines() {
        e.line(l);
    }
    v
}

/// The opening of a register-blocked plane kernel `{v}`: the reduction steps' input offsets
/// (`{v}_offs`, `{v}_nj` of them), the loops over images, groups, blocks of `pixels` output
/// pixels (`{v}_p`) and of `rows` output channels (`{v}_o`, over `row_span` = [first, end),
/// carrying `y` from `init`, `{v}_yd` inside), and the block's row indices (returned).
/// `dims` = [N, G, Og, P],
/// `block` = [rows, pixels]; `{v}_z` is a zero of type `t`. `write_block_and_close` ends it.
#[allow(clippy::too_many_arguments)]
pub(super) fn block_loops(
    v: &str,
    offs: &[String],
    dims: [usize; 4],
    block: [usize; 2],
    row_span: [usize; 2],
    init: &str,
    yty: &str,
    t: &str,
) -> (String, Vec<String>) {
    let [nb, group, _, pp] = dims;
    let [row0, og] = row_span;
    let [nrows, pixels] = block;
    let nj = offs.len();
    let mut text = format!(
        "{v}_offs = arith.constant dense<[{}]> : tensor<{nj}xindex>
{v}_c0 = arith.constant 0 : index
{v}_c1 = arith.constant 1 : index
{v}_rows = arith.constant {nrows} : index
{v}_lanes = arith.constant {pixels} : index
{v}_nb = arith.constant {nb} : index
{v}_ng = arith.constant {group} : index
{v}_og = arith.constant {og} : index
{v}_row0 = arith.constant {row0} : index
{v}_pp = arith.constant {pp} : index
{v}_nj = arith.constant {nj} : index
{v}_z = arith.constant 0.0 : {t}
{v} = scf.for {v}_n = {v}_c0 to {v}_nb step {v}_c1 iter_args({v}_ya = {init}) -> ({yty}) {{
{v}_y1 = scf.for {v}_g = {v}_c0 to {v}_ng step {v}_c1 iter_args({v}_yb = {v}_ya) -> ({yty}) {{
{v}_y2 = scf.for {v}_p = {v}_c0 to {v}_pp step {v}_lanes iter_args({v}_yc = {v}_yb) -> ({yty}) {{
{v}_y3 = scf.for {v}_o = {v}_row0 to {v}_og step {v}_rows iter_args({v}_yd = {v}_yc) -> ({yty}) {{
",
        offs.join(", ")
    );
    let rows: Vec<String> = (0..nrows).map(|i| format!("{v}_o{i}")).collect();
    text += &format!("{v}_o0 = arith.addi {v}_o, {v}_c0 : index\n");
    for i in 1..nrows {
        text += &format!(
            "{v}_k{i} = arith.constant {i} : index\n{v}_o{i} = arith.addi {v}_o, {v}_k{i} : index\n"
        );
    }
    (text, rows)
}

/// The end of one reduction step of the one-row plane kernels (`depthwise_kernel`,
/// `sparse_direct`): for each pixel vector `pixels[i]`, read the input at the step's offset
/// `{v}_off` plus the pixel and multiply-add it with the broadcast weight `{v}_b` into
/// accumulator `{v}_s{i}`; yield the sums and close the step loop.
pub(super) fn broadcast_fma_step(
    v: &str,
    pixels: &[String],
    xf: &str,
    xty: &str,
    vt: &str,
) -> String {
    let mut text = String::new();
    for (i, p) in pixels.iter().enumerate() {
        text += &format!(
            "{v}_q{i} = arith.addi {v}_off, {p} : index
{v}_x{i} = vector.transfer_read {xf}[{v}_n, {v}_g, {v}_q{i}], {v}_z {{in_bounds = [true]}} : {xty}, {vt}
{v}_f{i} = vector.fma {v}_b, {v}_x{i}, {v}_s{i} : {vt}
"
        );
    }
    let fs: Vec<String> = (0..pixels.len()).map(|i| format!("{v}_f{i}")).collect();
    let vts = vec![vt; pixels.len()].join(", ");
    text + &format!("scf.yield {} : {vts}\n}}\n", fs.join(", "))
}

/// The layer's bias (input 2, tagged as its weight's), reshaped to `shape`, if it has one.
pub(super) fn layer_bias(e: &mut Emitter, n: &N, dt: DType, shape: &[usize]) -> Option<String> {
    n.has(2).then(|| {
        let wname = n.g.values[n.node.inputs[1].expect("present")].name.clone();
        let bs = e.bias(n.node.inputs[2].expect("present"), &wname);
        e.reshape(&bs, dt, &[shape.iter().product()], shape)
    })
}

/// The accumulator of a convolution, `ys = [N, G, Og, ...]`: its bias broadcast over
/// everything but (G, Og), or zeros.
pub(super) fn conv_init(e: &mut Emitter, n: &N, dt: DType, ys: &[usize]) -> String {
    let (group, og) = (ys[1], ys[2]);
    let Some(b3) = layer_bias(e, n, dt, &[group, og]) else {
        return fill_scalar(e, dt, ys, 0.0);
    };
    let ins = vec![op(b3, dt, &[group, og], amap(ys.len(), &[d(1), d(2)]))];
    map(e, ins, dt, ys, |_, a| a[0].clone())
}

/// The accumulators of one register block: `{v}_a{i}` read from `{v}_yd` at `at[i]`.
pub(super) fn read_block(v: &str, at: &[String], yty: &str, vt: &str) -> String {
    at.iter()
        .enumerate()
        .map(|(i, ix)| {
            format!("{v}_a{i} = vector.transfer_read {v}_yd[{ix}], {v}_z {{in_bounds = [true]}} : {yty}, {vt}\n")
        })
        .collect()
}

/// Write the reduction's results `{v}_r#i` back at `at[i]`, then close the four loops
/// (pixel/row blocks, groups, images) of a kernel tagged `bonsai.kernel = kind`.
pub(super) fn write_block_and_close(
    v: &str,
    at: &[String],
    yty: &str,
    vt: &str,
    kind: &str,
) -> String {
    let vals: Vec<String> = (0..at.len()).map(|i| format!("{v}_r#{i}")).collect();
    write_values_and_close(v, at, &vals, yty, vt, kind)
}

/// `write_block_and_close` for any values `vals[i]` (written at `at[i]`).
pub(super) fn write_values_and_close(
    v: &str,
    at: &[String],
    vals: &[String],
    yty: &str,
    vt: &str,
    kind: &str,
) -> String {
    let mut text = String::new();
    let mut cur = format!("{v}_yd");
    for (i, (ix, val)) in at.iter().zip(vals).enumerate() {
        text += &format!(
            "{v}_t{i} = vector.transfer_write {val}, {cur}[{ix}] {{in_bounds = [true]}} : {vt}, {yty}\n"
        );
        cur = format!("{v}_t{i}");
    }
    text + &format!(
        "scf.yield {cur} : {yty}\n}}\nscf.yield {v}_y3 : {yty}\n}}\nscf.yield {v}_y2 : {yty}\n}}\nscf.yield {v}_y1 : {yty}\n}} {{bonsai.kernel = \"{kind}\"}}"
    )
}

/// The plane-form result `[N, G, Og, P']` cut to the output: pixel (h, w) is plane pixel
/// h*wp + w (rank 1: w).
pub(super) fn plane_to_out(e: &mut Emitter, n: &N, y: &str, ys: &[usize], wp: usize) -> String {
    let out = n.out_ty(0).clone();
    let dt = out.dtype;
    let r = out.rank() - 2;
    let mut os = ys[..3].to_vec();
    os.extend(&out.shape[2..]);
    if r == 1 {
        // The first pixels of the plane, as they are.
        let c = e.fresh();
        e.line(&format!(
            "{c} = tensor.extract_slice {y}[0, 0, 0, 0] [{}, {}, {}, {}] [1, 1, 1, 1] : {} to {}",
            os[0],
            os[1],
            os[2],
            os[3],
            tty_of(dt, ys),
            tty_of(dt, &os)
        ));
        return e.reshape(&c, dt, &os, &out.shape);
    }
    if let Some(ps) = e.pool_epilogue.take() {
        // Conv (Relu) MaxPool: pool the plane's rows in place of the copy.
        let (nc, pp) = (ys[0] * ys[1] * ys[2], ys[3]);
        let c = e.fresh();
        e.line(&format!(
            "{c} = tensor.collapse_shape {y} [[0, 1, 2], [3]] : {} into tensor<{nc}x{pp}xf32>",
            tty_of(dt, ys)
        ));
        let src = super::reduce::PoolSource {
            x: &c,
            len: pp,
            row: wp,
            relu: std::mem::take(&mut e.relu_epilogue),
        };
        return super::reduce::pool_2x2_rows(e, &src, &ps, true);
    }
    let q = format!("d3 * {wp} + d4");
    let ins = vec![op(
        y.to_string(),
        dt,
        ys,
        amap(os.len(), &[d(0), d(1), d(2), q]),
    )];
    // A following Relu runs in this copy (one pass less over the output).
    let o = if std::mem::take(&mut e.relu_epilogue) {
        map(e, ins, dt, &os, |b, a| {
            let z = super::scalar::cst(b, dt, 0.0);
            super::scalar::at_least(b, dt.mlir(), &a[0], &z)
        })
    } else {
        map_to(e, ins, dt, &os)
    };
    e.reshape(&o, dt, &os, &out.shape)
}

/// What `sparse_conv` needs from `conv`.
pub(super) struct SparseConv<'a> {
    pub(super) xg: &'a [usize],
    pub(super) xg_s: &'a str,
    pub(super) strides: &'a [i64],
    pub(super) dil: &'a [i64],
    /// The weight as `[G, Og, Cg*K...]` with the last level compressed.
    pub(super) weight: (String, String),
}

/// Strided convolution with a sparse weight: the input patches are laid out as im2col
/// `[N, G, Cg*K..., P]` (P: the output pixels), then multiplied by the CSR weight
/// `[G, Og, Cg*K...]`. The sparsifier emits, per image and output channel, a loop over the
/// channel's non-zeros around the dense, contiguous pixel loop, which it vectorises (no
/// gathers). (Stride-1 convolutions use `sparse_direct`, which needs no im2col.)
pub(super) fn sparse_conv(e: &mut Emitter, n: &N, s: SparseConv) -> Result<String> {
    let x = n.in_ty(0).clone();
    let w = n.in_ty(1).clone();
    let out = n.out_ty(0).clone();
    let dt = x.dtype;
    let r = x.rank() - 2;
    let (nb, group, cg) = (s.xg[0], s.xg[1], s.xg[2]);
    let og = w.shape[0] / group;
    let ks = &w.shape[2..];
    let kk: usize = ks.iter().product();
    let osp = &out.shape[2..];
    let p: usize = osp.iter().product();
    // im2col loops: 0 a unit reduction (see below), 1 n, 2 g, 3 c, 4.. k..., then one per
    // output dim.
    let (kl, pl) = (4, 4 + r);
    let nl = pl + r;
    let mut xe = vec![d(1), d(2), d(3)];
    for i in 0..r {
        let (st, dl) = (s.strides[i], s.dil[i]);
        xe.push(format!("d{} * {st} + d{} * {dl}", pl + i, kl + i));
    }
    let mut cshape = vec![nb, group, cg];
    cshape.extend(ks);
    cshape.extend(osp);
    // The unit reduction loop (over a dummy operand, outermost so that the copy loop stays
    // innermost) keeps linalg-fuse-elementwise-ops from folding the im2col into the sparse
    // product, which the sparsifier would then densify.
    let col0 = e.empty(dt, &cshape);
    let ce: Vec<String> = (1..nl).map(d).collect();
    let unit = fill_scalar(e, dt, &[1], 0.0);
    let ins = vec![
        op(s.xg_s.to_string(), dt, s.xg, amap(nl, &xe)),
        op(unit, dt, &[1], amap(nl, &[d(0)])),
    ];
    let outop = op(col0, dt, &cshape, amap(nl, &ce));
    let mut its = vec!["reduction"];
    its.extend(vec!["parallel"; nl - 1]);
    let col = e.generic(&ins, &outop, &its, |_, a| a[0].clone());
    let cflat = [nb, group, cg * kk, p];
    let col = e.reshape(&col, dt, &cshape, &cflat);

    // Accumulator [N, G, Og, P]: bias broadcast, or zeros.
    let ys = [nb, group, og, p];
    let init = conv_init(e, n, dt, &ys);
    // Loops (n, g, o, j, pixel).
    let (ws, wty) = s.weight;
    let ins = vec![
        op(col, dt, &cflat, amap(5, &[d(0), d(1), d(3), d(4)])),
        Operand {
            ssa: ws,
            ty: wty,
            map: amap(5, &[d(1), d(2), d(3)]),
            elem: dt.mlir(),
        },
    ];
    let outop = op(init, dt, &ys, amap(5, &[d(0), d(1), d(2), d(4)]));
    let t = dt.mlir();
    let y = e.generic(
        &ins,
        &outop,
        &["parallel", "parallel", "parallel", "reduction", "parallel"],
        |b, a| {
            let m = b.op(&format!("arith.mulf {}, {} : {t}", a[0], a[1]));
            b.op(&format!("arith.addf {}, {m} : {t}", a[2]))
        },
    );
    Ok(e.reshape(&y, dt, &ys, &out.shape))
}

/// A copy generic: `ins[0]` (with its own map) into a new tensor of `shape`.
pub(super) fn map_to(e: &mut Emitter, ins: Vec<Operand>, dt: DType, shape: &[usize]) -> String {
    let init = e.empty(dt, shape);
    let ident: Vec<String> = (0..shape.len()).map(d).collect();
    let outop = op(init, dt, shape, amap(shape.len(), &ident));
    e.generic(&ins, &outop, &vec!["parallel"; shape.len()], |_, a| {
        a[0].clone()
    })
}

/// `A W^T + b` with the register-blocked kernel, computed transposed: `out^T [n, m] =
/// W A^T`, with blocks of 4 output features x 16 rows in registers over the whole k
/// reduction (each step: one vector of A^T's row k and four broadcast weights).
pub(super) fn gemm_kernel(e: &mut Emitter, n: &N) -> String {
    let a = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let dt = out.dtype;
    let (m, nn) = (out.shape[0], out.shape[1]);
    let k = a.shape[1];
    let tag = WeightTag {
        layer: n.node.name.clone(),
        kind: "gemm",
        out_dim: 0,
        transposed: false,
    };
    let w = e.weight(n.node.inputs[1].expect("present"), &tag);
    let wj_shape = [1, nn, k];
    let wj = e.reshape(&w, dt, &[nn, k], &wj_shape);
    let as_ = n.input(e, 0);
    let at = map_to(
        e,
        vec![op(as_, dt, &a.shape, amap(2, &[d(1), d(0)]))],
        dt,
        &[k, m],
    );
    let xf_shape = [1, 1, k * m];
    let xf = e.reshape(&at, dt, &[k, m], &xf_shape);
    let offs: Vec<String> = (0..k).map(|i| (i * m).to_string()).collect();
    let ys = [1, 1, nn, m];
    let bias = layer_bias(e, n, dt, &[1, nn]);
    let lanes = if m.is_multiple_of(2 * KERNEL_LANES) {
        blocked_lanes(e)
    } else {
        KERNEL_LANES
    };
    let yt = blocked_kernel(
        e,
        dt,
        (&xf, &xf_shape),
        (&wj, &wj_shape),
        &offs,
        bias,
        &ys,
        lanes,
    );
    map_to(
        e,
        vec![op(
            yt,
            dt,
            &ys,
            amap(2, &["0".into(), "0".into(), d(1), d(0)]),
        )],
        dt,
        &[m, nn],
    )
}

/// `A W^T + b` for a CSR weight `W [n, k]` and a batch of `m >= 8` rows, computed
/// transposed: `out^T [n, m] = W A^T`. The sparsifier then loops, per output feature,
/// over its non-zeros around a dense, contiguous loop along the batch, which it vectorises
/// (row-wise CSR against `A [m, k]` would gather `A` at every non-zero instead).
pub(super) fn sparse_gemm_batched(
    e: &mut Emitter,
    n: &N,
    a: &str,
    ashape: &[usize],
    ta: bool,
    (ws, wty): (String, String),
) -> String {
    let out = n.out_ty(0).clone();
    let dt = out.dtype;
    let (m, nn) = (out.shape[0], out.shape[1]);
    let k = if ta { ashape[0] } else { ashape[1] };
    // A^T [k, m] (a copy; A itself when transA).
    let at = if ta {
        a.to_string()
    } else {
        map_to(
            e,
            vec![op(a.to_string(), dt, ashape, amap(2, &[d(1), d(0)]))],
            dt,
            &[k, m],
        )
    };
    let init = if n.has(2) {
        let ins = vec![op(n.input(e, 2), dt, &[nn], amap(2, &[d(0)]))];
        map(e, ins, dt, &[nn, m], |_, x| x[0].clone())
    } else {
        fill_scalar(e, dt, &[nn, m], 0.0)
    };
    // Loops (n, k, m).
    let ins = vec![
        op(at, dt, &[k, m], amap(3, &[d(1), d(2)])),
        Operand {
            ssa: ws,
            ty: wty,
            map: amap(3, &[d(0), d(1)]),
            elem: dt.mlir(),
        },
    ];
    let outop = op(init, dt, &[nn, m], amap(3, &[d(0), d(2)]));
    let t = dt.mlir();
    let yt = e.generic(
        &ins,
        &outop,
        &["parallel", "reduction", "parallel"],
        |b, x| {
            let p = b.op(&format!("arith.mulf {}, {} : {t}", x[0], x[1]));
            b.op(&format!("arith.addf {}, {p} : {t}", x[2]))
        },
    );
    map_to(
        e,
        vec![op(yt, dt, &[nn, m], amap(2, &[d(1), d(0)]))],
        dt,
        &[m, nn],
    )
}

/// An FC's input `a` `[m, k]` transposed into the plane `[1, 1, k, m]` of `KernelConv::fc`.
pub(super) fn fc_plane(e: &mut Emitter, a: &str, m: usize, k: usize) -> (String, [usize; 4]) {
    let dt = DType::F32;
    let at = map_to(
        e,
        vec![op(a.to_string(), dt, &[m, k], amap(2, &[d(1), d(0)]))],
        dt,
        &[k, m],
    );
    let xg = [1, 1, k, m];
    (e.reshape(&at, dt, &[k, m], &xg), xg)
}

/// The plane-form result `[1, 1, n, P']` of a batched FC (`KernelConv::fc`) as `[m, n]`.
pub(super) fn fc_out(e: &mut Emitter, y: &str, ys: &[usize], m: usize) -> String {
    let ins = vec![op(
        y.to_string(),
        DType::F32,
        ys,
        amap(2, &["0".into(), "0".into(), d(1), d(0)]),
    )];
    map_to(e, ins, DType::F32, &[m, ys[2]])
}
