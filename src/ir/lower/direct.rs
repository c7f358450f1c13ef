//! The direct sparse kernels: stride-1 convolutions on the flattened input plane that loop
//! over each output channel's non-zeros (`sparse_direct`), in blocks of output channels that
//! share their non-zero positions where the weight has that structure (BSR with 4x1
//! blocks), and the batched sparse FC as a 1x1 convolution of the transposed input
//! (`sparse_gemm_rows`).

use super::kernels::{
    fc_out, fc_plane, layer_bias, plane_to_out, write_block_and_close, write_values_and_close,
    KernelConv, KERNEL_LANES,
};
use super::{N, X86};
use crate::graph::{tensor::Data, Tensor};
use crate::ir::emit::{tty_of, Emitter};

/// Output channels per block of the block-sparse form: four channels that share their
/// non-zero positions take one input load per position for four FMAs (the unstructured form
/// takes one per FMA, and is load-bound).
pub(super) const BLOCK_ROWS: usize = 4;

/// Zeros the block-sparse form may add: it is used when the blocks' shared positions hold at
/// most this many times the weight's non-zeros (their zeros multiply too).
const BLOCK_FILL: f64 = 1.5;

/// Output pixels of one register block in `sparse_direct` for a plane of `pixels`: 2 to
/// `max` 16-lane vectors, whichever pads the plane least (the larger on ties). Each non-zero
/// then drives up to 14 AVX accumulators, which amortises its offset and weight loads: on the
/// MNIST CNN's pruned 32->64 3x3 conv (224 plane pixels), 112-pixel blocks ran the model in
/// 96 us against 105 us with 64-pixel blocks (256 padded pixels) and 100 us with 32.
pub(super) fn direct_pixels(pixels: usize) -> usize {
    pixel_block(pixels, 7)
}

fn pixel_block(pixels: usize, max: usize) -> usize {
    (2..=max)
        .rev()
        .map(|nv| nv * KERNEL_LANES)
        .min_by_key(|&b| pixels.next_multiple_of(b))
        .expect("non-empty")
}

/// Rows per block for `wv` (`[m, j]` row-major, `og` rows per group): `BLOCK_ROWS` when the
/// target has the registers for it (AVX-512: 4 channels x up to 6 vectors of accumulators),
/// the groups divide into blocks and the blocks' shared positions add few zeros; else 1.
fn block_rows(e: &Emitter, wv: &[f64], m: usize, j: usize, og: usize) -> usize {
    let r = BLOCK_ROWS;
    if e.x86 < X86::Avx512 || !og.is_multiple_of(r) || m == 0 {
        return 1;
    }
    let nnz = wv.iter().filter(|&&w| w != 0.0).count();
    let shared: usize = (0..m / r)
        .map(|b| {
            (0..j)
                .filter(|&c| (0..r).any(|i| wv[(b * r + i) * j + c] != 0.0))
                .count()
        })
        .sum();
    if nnz > 0 && (shared * r) as f64 <= BLOCK_FILL * nnz as f64 {
        r
    } else {
        1
    }
}

/// Direct sparse convolution (stride 1, plane form), for weights at least `sparse_min`
/// sparse: the non-zeros of each output channel (or block of channels, `block_rows`) are
/// listed with their input offsets (c*len + sum k_i*dil_i*row stride) and values; for each
/// image, group, block of output pixels (`direct_pixels`) and channel (block), the
/// accumulators stay in registers while the loop over the non-zeros reads 16-pixel input
/// vectors at the listed offset. No im2col; work is proportional to the non-zeros. Pixel
/// blocks are the outer loop so that the input window one block reads (its rows of every
/// input channel) stays in L1 across all the channels: each step loads as many input vectors
/// as it multiplies (unstructured), so streaming the whole input plane from L2 once per
/// channel halved the speed.
pub(super) fn sparse_direct(e: &mut Emitter, n: &N, s: KernelConv, wt: &Tensor) -> String {
    let (group, og, j) = (
        s.xg[1],
        s.wshape[1],
        s.xg[2] * s.wshape[3..].iter().product::<usize>(),
    );
    let rb = block_rows(e, &wt.to_f64_vec(), group * og, j, og);
    let blk = if rb > 1 {
        pixel_block(s.pixels, 24 / rb)
    } else {
        direct_pixels(s.pixels)
    };
    if rb == 1 {
        if let Some(phases) = phases(e, &s, &wt.to_f64_vec()) {
            let (v, ys) = phased_plane(e, n, &s, wt, &phases);
            return plane_to_out(e, n, &v, &ys, s.wp);
        }
    }
    let kind = if rb > 1 {
        "block_direct"
    } else {
        "sparse_direct"
    };
    let (v, ys) = direct_plane(e, n, &s, wt, (blk, rb), kind);
    plane_to_out(e, n, &v, &ys, s.wp)
}

/// Most input phases the phased form takes: with `direct_pixels`' blocks of up to 7 vectors,
/// 7 + 2 x 8 accumulators (of AVX-512's 32 registers).
const MAX_PHASES: usize = 3;

/// The input phases (offset mod 16) of the weight's non-zeros, sorted, when the phased form
/// applies: AVX-512, a plane whose rows and channels start on 16-float boundaries, and 2 or
/// 3 phases (kernel columns: 3x3 kernels). Its extra vector per phase then stays inside the
/// plane: the plane covers the last block's reach plus the kernel's width, in whole rows (or
/// 16-float lengths) of 16 floats.
fn phases(e: &Emitter, s: &KernelConv, wv: &[f64]) -> Option<Vec<usize>> {
    let l = KERNEL_LANES;
    let rank = s.wshape.len() - 3;
    if e.x86 < X86::Avx512 || !s.xg[3].is_multiple_of(l) || (rank > 1 && !s.wp.is_multiple_of(l)) {
        return None;
    }
    let j = s.xg[2] * s.wshape[3..].iter().product::<usize>();
    let mut ph: Vec<usize> = (0..j)
        .filter(|&jj| wv.iter().skip(jj).step_by(j).any(|&w| w != 0.0))
        .map(|jj| s.step_offset(jj) % l)
        .collect();
    ph.sort_unstable();
    ph.dedup();
    let p = ph.len();
    (2..=MAX_PHASES).contains(&p).then_some(ph)
}

/// `direct_plane` (one output channel at a time) with every input load aligned: a non-zero
/// whose input offset is `phase` floats past a 16-float boundary (a kernel column) adds
/// into its phase's own accumulators, read at the aligned offset `offset - phase`; at the
/// end each phase's accumulators, shifted down `phase` lanes (one shuffle across two
/// neighbouring vectors, hence one vector more for phases above 0), are summed onto the bias.
/// On this Zen 5 an unaligned 64-byte load costs two aligned ones, and the direct kernel is
/// load-bound: a C model of the MNIST CNN's sparse conv ran in 7.8 us against 10.2 us.
fn phased_plane(
    e: &mut Emitter,
    n: &N,
    s: &KernelConv,
    wt: &Tensor,
    phases: &[usize],
) -> (String, [usize; 4]) {
    let dt = n.in_ty(0).dtype;
    let t = dt.mlir();
    let l = KERNEL_LANES;
    let (nb, group, cg, len) = (s.xg[0], s.xg[1], s.xg[2], s.xg[3]);
    let og = s.wshape[1];
    let j = cg * s.wshape[3..].iter().product::<usize>();
    let np = phases.len();
    // The blocks `conv` padded the plane for; nv vectors for phase 0 and nv + 1 for each
    // other phase, all in registers.
    let blk = direct_pixels(s.pixels);
    let nv = blk / l;
    let pp = s.pixels.next_multiple_of(blk);
    let xf_shape = [nb, group, cg * len];
    let xf = e.reshape(s.xg_s, dt, s.xg, &xf_shape);
    let wv = wt.to_f64_vec();
    // Per channel and phase: the aligned offsets and values of its non-zeros.
    let (mut pos, mut offs, mut vals) = (vec![0i32], Vec::new(), Vec::new());
    for m in 0..group * og {
        for &ph in phases {
            for jj in 0..j {
                let (w, off) = (wv[m * j + jj], s.step_offset(jj));
                if w != 0.0 && off % l == ph {
                    offs.push((off - ph) as i32);
                    vals.push(w as f32);
                }
            }
            pos.push(offs.len() as i32);
        }
    }
    let (nnz, np1) = (offs.len().max(1), pos.len());
    let [pos_c, off_c, val_c] = list_constants(e, &pos, offs, vals, 1);
    let ys = [nb, group, og, pp];
    let init = e.empty(dt, &ys);
    let bias = layer_bias(e, n, dt, &[group * og]);
    let v = e.fresh();
    let yty = tty_of(dt, &ys);
    let xty = tty_of(dt, &xf_shape);
    let vt = format!("vector<{l}x{t}>");
    let mut text = open_loops(&v, ys, (blk, 1), &init, &yty, t);
    text += &format!(
        "{v}_np = arith.constant {np} : index
{v}_zv = arith.constant dense<0.0> : {vt}
{v}_mp = arith.muli {v}_m, {v}_np : index
"
    );
    for i in 0..=nv {
        text += &format!(
            "{v}_l{i} = arith.constant {} : index\n{v}_p{i} = arith.addi {v}_p, {v}_l{i} : index\n",
            i * l
        );
    }
    text += &match &bias {
        Some(b) => format!(
            "{v}_bs = tensor.extract {b}[{v}_m] : {}\n{v}_a = vector.broadcast {v}_bs : {t} to {vt}\n",
            tty_of(dt, &[group * og])
        ),
        None => format!("{v}_a = arith.constant dense<0.0> : {vt}\n"),
    };
    // One loop per phase over its non-zeros, into its own accumulators.
    for (q, &ph) in phases.iter().enumerate() {
        let na = nv + usize::from(ph > 0);
        let accs: Vec<String> = (0..na).map(|i| format!("{v}_s{q}x{i} = {v}_zv")).collect();
        let vts = vec![vt.as_str(); na].join(", ");
        text += &format!(
            "{v}_k{q} = arith.constant {q} : index
{v}_i{q} = arith.addi {v}_mp, {v}_k{q} : index
{v}_j{q} = arith.addi {v}_i{q}, {v}_c1 : index
{v}_lo{q}w = tensor.extract {pos_c}[{v}_i{q}] : tensor<{np1}xi32>
{v}_hi{q}w = tensor.extract {pos_c}[{v}_j{q}] : tensor<{np1}xi32>
{v}_lo{q} = arith.index_cast {v}_lo{q}w : i32 to index
{v}_hi{q} = arith.index_cast {v}_hi{q}w : i32 to index
{v}_R{q}:{na} = scf.for {v}_e{q} = {v}_lo{q} to {v}_hi{q} step {v}_c1 iter_args({}) -> ({vts}) {{
{v}_off{q}w = tensor.extract {off_c}[{v}_e{q}] : tensor<{nnz}xi32>
{v}_off{q} = arith.index_cast {v}_off{q}w : i32 to index
{v}_w{q} = tensor.extract {val_c}[{v}_e{q}] : tensor<{nnz}x{t}>
{v}_b{q} = vector.broadcast {v}_w{q} : {t} to {vt}
",
            accs.join(", ")
        );
        let mut fs = Vec::with_capacity(na);
        for i in 0..na {
            text += &format!(
                "{v}_q{q}x{i} = arith.addi {v}_off{q}, {v}_p{i} : index
{v}_x{q}x{i} = vector.transfer_read {xf}[{v}_n, {v}_g, {v}_q{q}x{i}], {v}_z {{in_bounds = [true]}} : {xty}, {vt}
{v}_f{q}x{i} = vector.fma {v}_b{q}, {v}_x{q}x{i}, {v}_s{q}x{i} : {vt}
"
            );
            fs.push(format!("{v}_f{q}x{i}"));
        }
        text += &format!("scf.yield {} : {vts}\n}}\n", fs.join(", "));
    }
    // Sum the phases, each shifted down by its phase, onto the bias.
    let mut outs = Vec::with_capacity(nv);
    let mut at = Vec::with_capacity(nv);
    for i in 0..nv {
        let mut acc = format!("{v}_a");
        for (q, &ph) in phases.iter().enumerate() {
            let part = if ph == 0 {
                format!("{v}_R{q}#{i}")
            } else {
                let idx: Vec<String> = (ph..ph + l).map(|k| k.to_string()).collect();
                text += &format!(
                    "{v}_h{q}x{i} = vector.shuffle {v}_R{q}#{i}, {v}_R{q}#{} [{}] : {vt}, {vt}\n",
                    i + 1,
                    idx.join(", ")
                );
                format!("{v}_h{q}x{i}")
            };
            text += &format!("{v}_u{q}x{i} = arith.addf {acc}, {part} : {vt}\n");
            acc = format!("{v}_u{q}x{i}");
        }
        outs.push(acc);
        at.push(format!("{v}_n, {v}_g, {v}_o, {v}_p{i}"));
    }
    text += &write_values_and_close(&v, &at, &outs, &yty, &vt, "sparse_direct");
    for line in text.lines() {
        e.line(line);
    }
    (v, ys)
}

/// The loops of `sparse_direct`, up to the plane-form result `[N, G, Og, P']` (and its shape),
/// with blocks of `blk` pixels and `rb` output channels: also the batched sparse FC
/// (`sparse_gemm_rows`), as a 1x1 convolution of the transposed input.
fn direct_plane(
    e: &mut Emitter,
    n: &N,
    s: &KernelConv,
    wt: &Tensor,
    (blk, rb): (usize, usize),
    kind: &str,
) -> (String, [usize; 4]) {
    let x = n.in_ty(0).clone();
    let dt = x.dtype;
    let t = dt.mlir();
    let (nb, group, cg, len) = (s.xg[0], s.xg[1], s.xg[2], s.xg[3]);
    let og = s.wshape[1];
    let ks = &s.wshape[3..];
    let kk: usize = ks.iter().product();
    let j = cg * kk;
    let pp = s.pixels.next_multiple_of(blk);
    let xf_shape = [nb, group, cg * len];
    let xf = e.reshape(s.xg_s, dt, s.xg, &xf_shape);
    let wv = wt.to_f64_vec();
    // Per block of `rb` channels: the positions where any of them is non-zero, each with
    // the block's `rb` values.
    let (mut pos, mut offs, mut vals) = (vec![0i32], Vec::new(), Vec::new());
    for b in 0..group * og / rb {
        for jj in 0..j {
            let col = |i: usize| wv[(b * rb + i) * j + jj];
            if (0..rb).any(|i| col(i) != 0.0) {
                offs.push(s.step_offset(jj) as i32);
                vals.extend((0..rb).map(|i| col(i) as f32));
            }
        }
        pos.push(offs.len() as i32);
    }
    let (nnz, np1) = (offs.len().max(1), pos.len());
    let [pos_c, off_c, val_c] = list_constants(e, &pos, offs, vals, rb);
    let ys = [nb, group, og, pp];
    // Every output element is written: y starts empty, the accumulators at the bias.
    let init = e.empty(dt, &ys);
    let bias = layer_bias(e, n, dt, &[group * og]);
    let v = e.fresh();
    let yty = tty_of(dt, &ys);
    let xty = tty_of(dt, &xf_shape);
    let vt = format!("vector<{KERNEL_LANES}x{t}>");
    let nv = blk / KERNEL_LANES;
    let mut text = open_loops(&v, ys, (blk, rb), &init, &yty, t);
    text += &format!(
        "{v}_mb = arith.divui {v}_m, {v}_os : index
{v}_mb1 = arith.addi {v}_mb, {v}_c1 : index
{v}_lo32 = tensor.extract {pos_c}[{v}_mb] : tensor<{np1}xi32>
{v}_hi32 = tensor.extract {pos_c}[{v}_mb1] : tensor<{np1}xi32>
{v}_lo = arith.index_cast {v}_lo32 : i32 to index
{v}_hi = arith.index_cast {v}_hi32 : i32 to index
"
    );
    for i in 0..nv {
        text += &format!(
            "{v}_l{i} = arith.constant {} : index\n{v}_p{i} = arith.addi {v}_p, {v}_l{i} : index\n",
            i * KERNEL_LANES
        );
    }
    // Accumulator r*nv + i: channel o + r, pixels p_i.
    let mut at = Vec::with_capacity(rb * nv);
    let mut accs = Vec::with_capacity(rb * nv);
    for r in 0..rb {
        text += &format!(
            "{v}_k{r} = arith.constant {r} : index\n{v}_o{r} = arith.addi {v}_o, {v}_k{r} : index\n{v}_m{r} = arith.addi {v}_m, {v}_k{r} : index\n"
        );
        text += &match &bias {
            Some(b) => format!(
                "{v}_bs{r} = tensor.extract {b}[{v}_m{r}] : {}\n{v}_a{r} = vector.broadcast {v}_bs{r} : {t} to {vt}\n",
                tty_of(dt, &[group * og])
            ),
            None => format!("{v}_a{r} = arith.constant dense<0.0> : {vt}\n"),
        };
        for i in 0..nv {
            at.push(format!("{v}_n, {v}_g, {v}_o{r}, {v}_p{i}"));
            accs.push(format!("{v}_s{} = {v}_a{r}", r * nv + i));
        }
    }
    let na = rb * nv;
    let vts = vec![vt.as_str(); na].join(", ");
    text += &format!(
        "{v}_r:{na} = scf.for {v}_e = {v}_lo to {v}_hi step {v}_c1 iter_args({}) -> ({vts}) {{
{v}_off32 = tensor.extract {off_c}[{v}_e] : tensor<{nnz}xi32>
{v}_off = arith.index_cast {v}_off32 : i32 to index
{v}_e0 = arith.muli {v}_e, {v}_os : index
",
        accs.join(", ")
    );
    for r in 0..rb {
        text += &format!(
            "{v}_ei{r} = arith.addi {v}_e0, {v}_k{r} : index
{v}_w{r} = tensor.extract {val_c}[{v}_ei{r}] : tensor<{}x{t}>
{v}_b{r} = vector.broadcast {v}_w{r} : {t} to {vt}
",
            nnz * rb
        );
    }
    for i in 0..nv {
        text += &format!(
            "{v}_q{i} = arith.addi {v}_off, {v}_p{i} : index
{v}_x{i} = vector.transfer_read {xf}[{v}_n, {v}_g, {v}_q{i}], {v}_z {{in_bounds = [true]}} : {xty}, {vt}
"
        );
        for r in 0..rb {
            let a = r * nv + i;
            text += &format!("{v}_f{a} = vector.fma {v}_b{r}, {v}_x{i}, {v}_s{a} : {vt}\n");
        }
    }
    let fs: Vec<String> = (0..na).map(|a| format!("{v}_f{a}")).collect();
    text += &format!("scf.yield {} : {vts}\n}}\n", fs.join(", "));
    text += &write_block_and_close(&v, &at, &yty, &vt, kind);
    for l in text.lines() {
        e.line(l);
    }
    (v, ys)
}

/// The direct kernels' non-zero lists as constants: list starts `pos` (one past the last
/// too), input offsets, and `per` values per offset (a block's channels). An empty weight
/// gets one zero entry so that the constants are not empty.
fn list_constants(
    e: &mut Emitter,
    pos: &[i32],
    mut offs: Vec<i32>,
    mut vals: Vec<f32>,
    per: usize,
) -> [String; 3] {
    if offs.is_empty() {
        offs.push(0);
        vals.resize(per, 0.0);
    }
    let n = offs.len();
    [
        e.constant(
            &Tensor::new(vec![pos.len()], Data::I32(pos.to_vec())),
            Some("direct_pos"),
        ),
        e.constant(&Tensor::new(vec![n], Data::I32(offs)), Some("direct_off")),
        e.constant(&Tensor::f32(vec![n * per], vals), Some("direct_val")),
    ]
}

/// The constants and the four loops of the direct kernels: images, groups, pixel blocks of
/// `blk`, output channels by `rows` (`{v}_os`), the channel's row `{v}_m` = g * og + o; the
/// body yields into `{v}_yd` (`write_values_and_close` closes them).
fn open_loops(
    v: &str,
    [nb, group, og, pp]: [usize; 4],
    (blk, rows): (usize, usize),
    init: &str,
    yty: &str,
    t: &str,
) -> String {
    format!(
        "{v}_c0 = arith.constant 0 : index
{v}_c1 = arith.constant 1 : index
{v}_os = arith.constant {rows} : index
{v}_blk = arith.constant {blk} : index
{v}_nb = arith.constant {nb} : index
{v}_ng = arith.constant {group} : index
{v}_og = arith.constant {og} : index
{v}_pp = arith.constant {pp} : index
{v}_z = arith.constant 0.0 : {t}
{v} = scf.for {v}_n = {v}_c0 to {v}_nb step {v}_c1 iter_args({v}_ya = {init}) -> ({yty}) {{
{v}_y1 = scf.for {v}_g = {v}_c0 to {v}_ng step {v}_c1 iter_args({v}_yb = {v}_ya) -> ({yty}) {{
{v}_y2 = scf.for {v}_p = {v}_c0 to {v}_pp step {v}_blk iter_args({v}_yc = {v}_yb) -> ({yty}) {{
{v}_y3 = scf.for {v}_o = {v}_c0 to {v}_og step {v}_os iter_args({v}_yd = {v}_yc) -> ({yty}) {{
{v}_gm = arith.muli {v}_g, {v}_og : index
{v}_m = arith.addi {v}_gm, {v}_o : index
"
    )
}

/// `A W^T + b` for a sparse constant weight `W [n, k]` and a batch of `m` rows (a multiple
/// of 16), computed transposed as a 1x1 convolution of `A^T` (`k` channels of an `m`-pixel
/// plane) by `sparse_direct`'s loops: per output feature, a loop over its non-zeros, each
/// multiplying one broadcast weight into up to seven 16-row vectors of `A^T`. Unlike the
/// sparsifier's CSR form (`sparse_gemm_batched`), it leaves the module free of sparse tensors,
/// so the rest of the model keeps the dense bufferization and elementwise fusion.
pub(super) fn sparse_gemm_rows(e: &mut Emitter, n: &N, a: &str, wt: &Tensor) -> String {
    let (m, k) = (n.in_ty(0).shape[0], n.in_ty(0).shape[1]);
    let nn = wt.shape[0];
    let (xg_s, xg) = fc_plane(e, a, m, k);
    let wshape = [1, nn, k];
    let s = KernelConv::fc(&xg, &xg_s, &wshape);
    // Features in blocks of 4 where they share their columns; row blocks of up to seven
    // 16-row vectors (24 accumulators in all with feature blocks), dividing the batch.
    let rb = block_rows(e, &wt.to_f64_vec(), nn, k, nn);
    let nv = (1..=(24 / rb).min(7))
        .rev()
        .find(|v| (m / KERNEL_LANES).is_multiple_of(*v))
        .expect("1 divides");
    let (v, ys) = direct_plane(e, n, &s, wt, (nv * KERNEL_LANES, rb), "sparse_rows");
    fc_out(e, &v, &ys, m)
}
