//! The permute kernel for sparse FCs on a few rows (`perm_gemv`, x86 with AVX2 or AVX-512):
//! features grouped into vector lanes, each group's non-zeros covered by windows of input
//! columns that one `vpermps` moves into the lanes. `nn.rs` decides when it applies.

use super::gemv::bias_rows;
use super::N;
use crate::graph::{tensor::Data, DType, Tensor};
use crate::ir::emit::{tty_of, Emitter};

/// Slices per step of `perm_gemv` (each into its own accumulator: four FMA chains hide the
/// FMA latency). Every group's slice list is padded to a multiple.
const PERM_UNROLL: usize = 4;
const _: () = assert!(PERM_UNROLL == 4, "perm_gemv sums four accumulators");
/// Where `perm_gemv` overtakes the dense code (see `bench --kernels`).
pub(super) const PERM_GEMV_FLOOR: f64 = 0.5;

/// The x86 vector extensions kernels may use (`lower::Options::x86`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum X86 {
    /// None assumed: portable vector code only.
    #[default]
    None,
    /// AVX2: 8-lane permutes (`vpermps` ymm).
    Avx2,
    /// AVX-512F: 16-lane permutes (`vpermps` zmm).
    Avx512,
    /// AVX-512F and VNNI: also 8-bit dot products (`vpdpbusd` zmm).
    Avx512Vnni,
}

impl X86 {
    /// `perm_gemv`'s lanes (features per group, columns per window); 0 without a permute.
    pub fn perm_lanes(self) -> usize {
        match self {
            X86::None => 0,
            X86::Avx2 => 8,
            X86::Avx512 | X86::Avx512Vnni => 16,
        }
    }
}

/// `perm_gemv`'s encoding of a sparse weight `[n, k]` (`k >= lanes`): features in groups of
/// `lanes` (one vector lane each). A slice covers one group and a window of `lanes` input
/// columns `[base, base + lanes)`; in it each lane holds at most one of its feature's
/// non-zeros, as a position in the window and a value (zero where the lane has none).
/// Windows are chosen greedily: each starts at the group's smallest column not yet covered
/// and takes from every feature its next non-zero if it falls inside. On uniformly random 90%
/// sparsity that packs about 4 non-zeros into an 8-lane slice and 9 into a 16-lane one
/// (windows aligned to multiples of 8: 3).
pub(super) struct PermSlices {
    /// Slice range of each group, `[groups + 1]`.
    pub(super) groups: Vec<i32>,
    pub(super) base: Vec<i32>,
    /// Each lane's position in the window, `[slices, lanes]`.
    pub(super) pos: Vec<u8>,
    /// `[slices, lanes]`.
    pub(super) vals: Vec<f32>,
}

pub(super) fn perm_slices(w: &[f64], n: usize, k: usize, lanes: usize) -> PermSlices {
    assert!(
        lanes > 0 && k >= lanes,
        "perm_gemv needs at least {lanes} columns"
    );
    let mut out = PermSlices {
        groups: vec![0],
        base: Vec::new(),
        pos: Vec::new(),
        vals: Vec::new(),
    };
    for g in 0..n.div_ceil(lanes) {
        let rows: Vec<Vec<(usize, f32)>> = (0..lanes)
            .map(|r| {
                let j = g * lanes + r;
                if j >= n {
                    return Vec::new();
                }
                let row = &w[j * k..(j + 1) * k];
                (0..k)
                    .filter(|&c| row[c] != 0.0)
                    .map(|c| (c, row[c] as f32))
                    .collect()
            })
            .collect();
        let mut at = vec![0usize; lanes];
        let mut count = 0;
        while let Some(first) = (0..lanes)
            .filter_map(|r| rows[r].get(at[r]).map(|&(c, _)| c))
            .min()
        {
            // The last window ends at column k (an input read never leaves the row).
            let base = first.min(k - lanes);
            for r in 0..lanes {
                match rows[r].get(at[r]) {
                    Some(&(c, v)) if c < base + lanes => {
                        out.pos.push((c - base) as u8);
                        out.vals.push(v);
                        at[r] += 1;
                    }
                    _ => {
                        out.pos.push(0);
                        out.vals.push(0.0);
                    }
                }
            }
            out.base.push(base as i32);
            count += 1;
        }
        while count % PERM_UNROLL != 0 {
            out.base.push(0);
            out.pos.extend(std::iter::repeat_n(0, lanes));
            out.vals.extend(std::iter::repeat_n(0.0, lanes));
            count += 1;
        }
        out.groups.push(out.base.len() as i32);
    }
    if out.base.is_empty() {
        out.base.push(0);
        out.pos.extend(std::iter::repeat_n(0, lanes));
        out.vals.extend(std::iter::repeat_n(0.0, lanes));
    }
    out
}

/// `A W^T + b` for a few rows of `A [m, k]` and a sparse constant `W [n, k]` (`k >= lanes`)
/// on x86 with AVX2 (8 lanes) or AVX-512 (16): `lanes` features at a time, one per lane. Each
/// slice (see [`PermSlices`]) loads the inputs of its window as one vector, permutes them
/// into the lanes (`vpermps`) and multiply-adds its values; no horizontal sums, the
/// accumulators are the outputs. Per slice: a window base, the lanes' positions, two vector
/// loads, a permute and an FMA, for about 4 (AVX2) or 9 (AVX-512) non-zeros at 90% sparsity,
/// where the gather kernel (`sparse_gemv`) spends an index load and a scalar input load on
/// each non-zero. AVX2 positions are 4-bit fields of the base's 64-bit word, shifted into the
/// lanes by one `vpsrlvd`; AVX-512 positions are 16 bytes, widened by `vpmovzxbd`. At 90% the
/// kernel streams its slices from L2 at about 25 bytes per cycle (on Zen 4): the zero lanes'
/// values, not the permutes, bound it.
pub(super) fn perm_gemv(e: &mut Emitter, n: &N, w: &Tensor, lanes: usize) -> String {
    let a = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let (m, nn, k) = (out.shape[0], out.shape[1], a.shape[1]);
    let sl = perm_slices(&w.to_f64_vec(), nn, k, lanes);
    let slices = sl.base.len();
    let groups = sl.groups.len() - 1;
    let grp_c = e.constant(
        &Tensor::new(vec![groups + 1], Data::I32(sl.groups)),
        Some("perm_groups"),
    );
    // AVX2: one i64 per slice, the base in its low half and the eight 4-bit positions in its
    // high half. AVX-512: the bases, and 16 position bytes per slice.
    let (idx_c, pos_c) = if lanes == 8 {
        let words: Vec<i64> = sl
            .base
            .iter()
            .zip(sl.pos.chunks(8))
            .map(|(&b, p)| {
                let word = p
                    .iter()
                    .enumerate()
                    .fold(0u32, |w, (r, &c)| w | (c as u32) << (4 * r));
                (b as u32 as i64) | ((word as i64) << 32)
            })
            .collect();
        let c = e.constant(
            &Tensor::new(vec![slices], Data::I64(words)),
            Some("perm_slice"),
        );
        (c, None)
    } else {
        let b = e.constant(
            &Tensor::new(vec![slices], Data::I32(sl.base)),
            Some("perm_base"),
        );
        let bytes: Vec<i8> = sl.pos.iter().map(|&p| p as i8).collect();
        let p = e.constant(
            &Tensor::new(vec![slices, lanes], Data::I8(bytes)),
            Some("perm_pos"),
        );
        (b, Some(p))
    };
    let val_c = e.constant(&Tensor::f32(vec![slices, lanes], sl.vals), Some("perm_val"));
    let x = n.input(e, 0);
    let init = bias_rows(e, n);
    let v = e.fresh();
    let vt = format!("vector<{lanes}xf32>");
    let it = format!("vector<{lanes}xi32>");
    // The permute is an LLVM intrinsic, called through an always-inlined LLVM function: the
    // buffer deallocation passes reject an intrinsic call (unknown memory effects) inside
    // `func.func`, not a call to a function they do not process.
    let (fname, intrinsic) = if lanes == 8 {
        ("bonsai_permps8", "llvm.x86.avx2.permps")
    } else {
        ("bonsai_permps16", "llvm.x86.avx512.permvar.sf.512")
    };
    e.helper(fname, || {
        format!(
            "  llvm.func internal @{fname}(%x: {vt}, %p: {it}) -> {vt} attributes {{always_inline}} {{
    %r = llvm.call_intrinsic \"{intrinsic}\"(%x, %p) : ({vt}, {it}) -> {vt}
    llvm.return %r : {vt}
  }}
"
        )
    });
    let xty = tty_of(DType::F32, &a.shape);
    let yty = tty_of(DType::F32, &out.shape);
    let mut step = String::new();
    let mut accs = Vec::new();
    let mut next = Vec::new();
    for u in 0..PERM_UNROLL {
        let at = if u == 0 {
            format!("{v}_s")
        } else {
            step += &format!("{v}_s{u} = arith.addi {v}_s, {v}_u{u} : index\n");
            format!("{v}_s{u}")
        };
        step += &match pos_c {
            None => format!(
                "{v}_word{u} = tensor.extract {idx_c}[{at}] : tensor<{slices}xi64>
{v}_b32_{u} = arith.trunci {v}_word{u} : i64 to i32
{v}_ph{u} = arith.shrui {v}_word{u}, {v}_c32 : i64
{v}_pw{u} = arith.trunci {v}_ph{u} : i64 to i32
{v}_pb{u} = vector.broadcast {v}_pw{u} : i32 to {it}
{v}_pi{u} = arith.shrui {v}_pb{u}, {v}_sh : {it}
"
            ),
            Some(ref p) => format!(
                "{v}_b32_{u} = tensor.extract {idx_c}[{at}] : tensor<{slices}xi32>
{v}_p8_{u} = vector.transfer_read {p}[{at}, {v}_c0], {v}_z8 {{in_bounds = [true]}} : tensor<{slices}x{lanes}xi8>, vector<{lanes}xi8>
{v}_pi{u} = arith.extui {v}_p8_{u} : vector<{lanes}xi8> to {it}
"
            ),
        };
        step += &format!(
            "{v}_bi{u} = arith.index_cast {v}_b32_{u} : i32 to index
{v}_xw{u} = vector.transfer_read {x}[{v}_b, {v}_bi{u}], {v}_z {{in_bounds = [true]}} : {xty}, {vt}
{v}_xp{u} = llvm.call @{fname}({v}_xw{u}, {v}_pi{u}) : ({vt}, {it}) -> {vt}
{v}_wv{u} = vector.transfer_read {val_c}[{at}, {v}_c0], {v}_z {{in_bounds = [true]}} : tensor<{slices}x{lanes}xf32>, {vt}
{v}_f{u} = vector.fma {v}_wv{u}, {v}_xp{u}, {v}_a{u} : {vt}
"
        );
        accs.push(format!("{v}_a{u} = {v}_zv"));
        next.push(format!("{v}_f{u}"));
    }
    let mut consts: String = (1..PERM_UNROLL)
        .map(|u| format!("{v}_u{u} = arith.constant {u} : index\n"))
        .collect();
    if lanes == 8 {
        let shifts: Vec<String> = (0..lanes).map(|l| (4 * l).to_string()).collect();
        consts += &format!(
            "{v}_sh = arith.constant dense<[{}]> : {it}\n{v}_c32 = arith.constant 32 : i64\n",
            shifts.join(", ")
        );
    } else {
        consts += &format!("{v}_z8 = arith.constant 0 : i8\n");
    }
    let tys = vec![vt.clone(); PERM_UNROLL].join(", ");
    // A last group of fewer than `lanes` features writes only its own lanes.
    let inb = if nn.is_multiple_of(lanes) {
        "true"
    } else {
        "false"
    };
    let text = format!(
        "{v}_c0 = arith.constant 0 : index
{v}_c1 = arith.constant 1 : index
{v}_cl = arith.constant {lanes} : index
{v}_step = arith.constant {PERM_UNROLL} : index
{v}_m = arith.constant {m} : index
{v}_g = arith.constant {groups} : index
{v}_z = arith.constant 0.0 : f32
{v}_zv = arith.constant dense<0.0> : {vt}
{consts}{v} = scf.for {v}_b = {v}_c0 to {v}_m step {v}_c1 iter_args({v}_ya = {init}) -> ({yty}) {{
{v}_y1 = scf.for {v}_q = {v}_c0 to {v}_g step {v}_c1 iter_args({v}_yb = {v}_ya) -> ({yty}) {{
{v}_q1 = arith.addi {v}_q, {v}_c1 : index
{v}_lo32 = tensor.extract {grp_c}[{v}_q] : tensor<{gp1}xi32>
{v}_hi32 = tensor.extract {grp_c}[{v}_q1] : tensor<{gp1}xi32>
{v}_lo = arith.index_cast {v}_lo32 : i32 to index
{v}_hi = arith.index_cast {v}_hi32 : i32 to index
{v}_r:{U} = scf.for {v}_s = {v}_lo to {v}_hi step {v}_step iter_args({accs}) -> ({tys}) {{
{step}scf.yield {next} : {tys}
}}
{v}_h0 = arith.addf {v}_r#0, {v}_r#1 : {vt}
{v}_h1 = arith.addf {v}_r#2, {v}_r#3 : {vt}
{v}_sum = arith.addf {v}_h0, {v}_h1 : {vt}
{v}_j = arith.muli {v}_q, {v}_cl : index
{v}_old = vector.transfer_read {v}_yb[{v}_b, {v}_j], {v}_z {{in_bounds = [{inb}]}} : {yty}, {vt}
{v}_new = arith.addf {v}_old, {v}_sum : {vt}
{v}_yn = vector.transfer_write {v}_new, {v}_yb[{v}_b, {v}_j] {{in_bounds = [{inb}]}} : {vt}, {yty}
scf.yield {v}_yn : {yty}
}}
scf.yield {v}_y1 : {yty}
}} {{bonsai.kernel = \"perm_gemv\"}}",
        gp1 = groups + 1,
        U = PERM_UNROLL,
        accs = accs.join(", "),
        next = next.join(", "),
    );
    for l in text.lines() {
        e.line(l);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every non-zero lands in exactly one slice lane, at its own feature's lane and column;
    /// windows stay inside the row; groups are padded to whole steps.
    #[test]
    fn perm_slices_cover_each_non_zero_once() {
        let (n, k) = (21, 45);
        // A deterministic pattern with dense stretches, empty rows and a last partial group.
        let w: Vec<f64> = (0..n * k)
            .map(|i| {
                let (r, c) = (i / k, i % k);
                if r % 5 == 3 || (r * 7 + c * 3) % 4 != 0 && c % 9 != 2 {
                    0.0
                } else {
                    (i + 1) as f64
                }
            })
            .collect();
        let nnz = w.iter().filter(|v| **v != 0.0).count();
        for lanes in [8, 16] {
            let sl = perm_slices(&w, n, k, lanes);
            let mut back = vec![0.0f64; n * k];
            for g in 0..n.div_ceil(lanes) {
                let (lo, hi) = (sl.groups[g] as usize, sl.groups[g + 1] as usize);
                assert_eq!((hi - lo) % PERM_UNROLL, 0);
                for s in lo..hi {
                    let base = sl.base[s] as usize;
                    assert!(base + lanes <= k);
                    for r in 0..lanes {
                        let v = sl.vals[s * lanes + r];
                        if v == 0.0 {
                            continue;
                        }
                        let c = base + sl.pos[s * lanes + r] as usize;
                        let j = g * lanes + r;
                        assert!(j < n && c < base + lanes);
                        assert_eq!(back[j * k + c], 0.0, "({j}, {c}) twice");
                        back[j * k + c] = v as f64;
                    }
                }
            }
            assert_eq!(back, w, "{lanes} lanes");
            assert!(sl.base.len() * lanes < nnz * 4, "{lanes} lanes pack poorly");
        }
    }
}
