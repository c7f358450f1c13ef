//! `refit`: sequential least-squares reconstruction towards the original model. Layer by
//! layer in graph order, each weight's kept entries (its zeros stay zeros) and its bias are
//! refitted so that the layer's output on the calibration inputs, fed by the model as the
//! earlier layers left it, matches the ORIGINAL model's output of that layer:
//! min ||X W'^T + b' - Y W^T - b||^2 over the kept entries, X the layer's inputs in the
//! compressed model and Y in the original. The error each pruned layer adds is absorbed by the
//! layers after it instead of accumulating. Runs after the pruning passes and before sharing
//! or quantisation; needs `--calib` and runs from `bonsai compress`, which hands it the
//! original model.
//!
//! Options: `damp=0.001` (ridge towards the current weights, as a fraction of the mean input
//! power; raised to k/rows - 1 where a layer has fewer calibration rows than inputs),
//! `bias=true` (refit constant biases too), `reassign=false` (after `share-kmeans`: first
//! re-assign each weight's centroid, by refitting its row and rounding it back onto the
//! codebook with OBS error feedback on the layer's current inputs; then refit the centroids),
//! `exclude=a,b` or `only=a,b`.

use std::collections::BTreeMap;

use bonsai::encoding::{Codebook, Encoding};
use bonsai::graph::{Data, Tensor};
use bonsai::ir::weights::bias_of;
use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use melior::ir::Module;

use crate::common::{flag, row_view, write_rows};

pub struct Refit {
    damp: f64,
    bias: bool,
    /// Shared weights: re-assign each weight's centroid (OBS rounding of the refitted row
    /// onto the codebook, on the layer's current inputs) before refitting the centroids.
    reassign: bool,
    sel: crate::common::Sel,
}

/// Kept entries per row above which the solve is iterative (conjugate gradients) instead of
/// one Cholesky factorisation per row.
const DIRECT_MAX: usize = 384;

impl Refit {
    pub const SUMMARY: &'static str =
        "refit kept weights layer by layer towards the original model's layer outputs; needs --calib (from bonsai compress)";
    pub const GRID: &'static [&'static str] = &[];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["damp", "bias", "reassign", "exclude", "only"])?;
        let damp = opts.f64_or("damp", 0.001)?;
        if !(damp > 0.0 && damp <= 1.0) {
            return Err(Error::option("damp", format!("must be in (0, 1], got {damp}")));
        }
        Ok(Box::new(Refit {
            damp,
            bias: flag(opts, "bias", true)?,
            reassign: flag(opts, "reassign", false)?,
            sel: crate::common::Sel::parse(opts)?,
        }))
    }
}

impl Pass for Refit {
    fn name(&self) -> &'static str {
        "refit"
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn needs_reference(&self) -> bool {
        true
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        let fail = |msg: String| Error::Pass { pass: "refit".into(), msg };
        let chosen = self.sel.weights(module)?;
        let r = cx.reference.ok_or_else(|| {
            fail("needs the original model and calibration data: run it from `bonsai compress MODEL --calib DATA.npz`".into())
        })?;
        let all = bonsai::ir::weights::weights(module);
        // What the model currently runs, in ONNX layout, weights and biases by name.
        let mut current: BTreeMap<String, Tensor> = BTreeMap::new();
        for w in &all {
            current.insert(w.name.clone(), w.read_onnx_layout()?);
            if let Some(b) = bias_of(module, &w.name) {
                current.insert(b.name.clone(), b.read()?);
            }
        }
        for name in r.order() {
            let Some(w) = chosen.iter().find(|w| w.name == name) else { continue };
            let p = r.paired(&name, &current)?;
            let mut view = row_view(w)?;
            let od = if w.transposed { 1 - w.out_dim } else { w.out_dim };
            let orig = r.original.get(&name).expect("reference has every layer weight");
            let (orows, ocols, w0) = bonsai::encoding::row_view(orig, od);
            if (orows, ocols) != (view.rows, view.cols) || p.k != view.cols {
                return Err(fail(format!(
                    "weight '{}' is {}x{} but the original's is {orows}x{ocols}: refit cannot follow prune-channels",
                    w.name, view.rows, view.cols
                )));
            }
            let bias = match (self.bias, r.bias(&name), bias_of(module, &name)) {
                (true, Some(bn), Some(b)) if b.numel() == view.rows => {
                    let b0: Vec<f64> = r.original[bn].to_f64_vec();
                    Some((b, b0))
                }
                _ => None,
            };
            let mut bv = bias.as_ref().map(|(b, _)| b.read().map(|t| t.to_f64_vec())).transpose()?;
            let damp = self.damp.max(p.k as f64 / p.rows.max(1) as f64 - 1.0).min(100.0);
            if let Encoding::Codebook(cb) = w.encoding()? {
                // Shared weights stay shared: refit the centroids, assignments fixed (after
                // re-assigning them with `reassign`).
                if self.reassign {
                    reassign_rows(&p, &mut view, &w0, &cb, damp).map_err(|e| fail(format!("weight '{}': {e}", w.name)))?;
                }
                let w0f: Vec<f64> = w0.iter().map(|&x| x as f64).collect();
                let cb = refit_codebook(&p, &mut view, &w0f, &cb, bias.as_ref().map(|(_, b0)| b0.as_slice()), bv.as_mut(), damp);
                write_rows(w, &view)?;
                w.set_encoding(&Encoding::Codebook(cb))?;
            } else if let Encoding::Quant(q) = w.encoding()? {
                // Quantised weights stay on their grid: each row refitted, then rounded back
                // with OBS error feedback on the layer's current inputs; the bias then matches
                // the original output's mean.
                reassign_quant(&p, &mut view, &w0, &q, damp).map_err(|e| fail(format!("weight '{}': {e}", w.name)))?;
                if let (Some((_, b0)), Some(b)) = (&bias, bv.as_mut()) {
                    match_mean(&p, &view, &w0, b0, b);
                }
                write_rows(w, &view)?;
                w.set_encoding(&Encoding::Quant(q))?;
            } else {
                let b0 = bias.as_ref().map(|(_, b0)| b0.as_slice());
                refit_rows(&p, &mut view, &w0, b0, bv.as_mut(), damp).map_err(|e| fail(format!("weight '{}': {e}", w.name)))?;
                write_rows(w, &view)?;
            }
            current.insert(name.clone(), w.read_onnx_layout()?);
            if let (Some((b, _)), Some(v)) = (&bias, &bv) {
                let t = Tensor::new(b.shape.clone(), Data::F32(v.iter().map(|&x| x as f32).collect()));
                b.write(&t)?;
                current.insert(b.name.clone(), t);
            }
        }
        Ok(())
    }
}

/// Refit one output row in place: min ||X w' + b' - (Y w0 + b0)||^2 + lam ||(w', b') - current||^2
/// over w's non-zeros (and b' when `bias` = Some((b0, current b))), with lam = damp x the mean
/// input power. Returns the new bias.
fn refit_row(p: &bonsai::calib::Paired, g: usize, w: &mut [f64], w0: &[f64], bias: Option<(f64, f64)>, damp: f64) -> std::result::Result<Option<f64>, String> {
    let k = p.k;
    let (h, c) = (&p.gram[g], &p.cross[g]);
    let n = p.rows as f64;
    let s: Vec<usize> = (0..k).filter(|&j| w[j] != 0.0).collect();
    let m = s.len() + bias.is_some() as usize;
    if m == 0 {
        return Ok(None);
    }
    let lam = damp * ((0..k).map(|i| h[i * k + i]).sum::<f64>() / k.max(1) as f64).max(1e-12);
    // Right-hand side: X_S^T (Y w0 + b0) and, for the bias, 1^T (Y w0 + b0).
    let mut t = vec![0.0; m];
    let mut x0 = vec![0.0; m];
    for (a, &i) in s.iter().enumerate() {
        t[a] = (0..k).map(|j| c[i * k + j] * w0[j]).sum::<f64>() + bias.map_or(0.0, |(b0, _)| p.sum[g][i] * b0);
        x0[a] = w[i];
    }
    if let Some((b0, bc)) = bias {
        t[m - 1] = (0..k).map(|j| p.sum_ref[g][j] * w0[j]).sum::<f64>() + n * b0;
        x0[m - 1] = bc;
    }
    let at = |a: usize, b: usize| -> f64 {
        let nb = s.len();
        let v = match (a < nb, b < nb) {
            (true, true) => h[s[a] * k + s[b]],
            (true, false) => p.sum[g][s[a]],
            (false, true) => p.sum[g][s[b]],
            (false, false) => n,
        };
        v + if a == b { lam } else { 0.0 }
    };
    for a in 0..m {
        t[a] += lam * x0[a];
    }
    let x = if m <= DIRECT_MAX {
        let am = Mat::<f64>::from_fn(m, m, at);
        let rhs = Mat::<f64>::from_fn(m, 1, |a, _| t[a]);
        let llt = am.llt(Side::Lower).map_err(|e| format!("normal equations not positive definite ({e:?}); raise damp"))?;
        let sol = llt.solve(&rhs);
        (0..m).map(|a| sol[(a, 0)]).collect()
    } else {
        conjugate_gradients(m, &at, &t, x0)
    };
    for (a, &i) in s.iter().enumerate() {
        // A kept weight stays kept (a refitted value of exactly zero would change the mask).
        w[i] = if x[a] == 0.0 { f64::MIN_POSITIVE } else { x[a] };
    }
    Ok(bias.map(|_| x[m - 1]))
}

/// Re-assign a shared weight's centroids: each row is refitted by least squares over its
/// non-zeros (no bias), then rounded onto its codebook column by column with OBS error
/// feedback through the layer's current Gram matrix. Zeros stay zeros.
fn reassign_rows(p: &bonsai::calib::Paired, view: &mut crate::common::RowView, w0: &[f32], cb: &Codebook, damp: f64) -> std::result::Result<(), String> {
    let (rows, k) = (view.rows, view.cols);
    let rpg = rows / p.groups;
    let per_row = cb.centroids.len() > 1;
    let books: Vec<Vec<f64>> = cb
        .centroids
        .iter()
        .map(|c| {
            let mut v: Vec<f64> = c.iter().map(|&x| x as f64).collect();
            v.sort_by(f64::total_cmp);
            v
        })
        .collect();
    let kept: Vec<bool> = view.v.iter().map(|&x| x != 0.0).collect();
    for g in 0..p.groups {
        for o in g * rpg..(g + 1) * rpg {
            let row = &mut view.v[o * k..(o + 1) * k];
            let w0r: Vec<f64> = w0[o * k..(o + 1) * k].iter().map(|&x| x as f64).collect();
            refit_row(p, g, row, &w0r, None, damp)?;
        }
        let span = g * rpg * k..(g + 1) * rpg * k;
        let kept = &kept[span.clone()];
        crate::obs::round_obs(&mut view.v[span], rpg, k, &p.gram[g], 0.01, 128, "refit", |r, c, v| {
            if !kept[r * k + c] {
                return 0.0;
            }
            let b = &books[if per_row { g * rpg + r } else { 0 }];
            let i = b.partition_point(|&m| m < v);
            let near = if i == 0 {
                0
            } else if i == b.len() || (v - b[i - 1]) <= (b[i] - v) {
                i - 1
            } else {
                i
            };
            b[near]
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Refit every row of a plain weight over its non-zeros (and its bias, current values in `bv`,
/// original `b0`).
fn refit_rows(p: &bonsai::calib::Paired, view: &mut crate::common::RowView, w0: &[f32], b0: Option<&[f64]>, mut bv: Option<&mut Vec<f64>>, damp: f64) -> std::result::Result<(), String> {
    let k = p.k;
    let rpg = view.rows / p.groups;
    for g in 0..p.groups {
        for o in g * rpg..(g + 1) * rpg {
            let bias = b0.map(|b| b[o]).zip(bv.as_ref().map(|v| v[o]));
            let w0r: Vec<f64> = w0[o * k..(o + 1) * k].iter().map(|&x| x as f64).collect();
            let nb = refit_row(p, g, &mut view.v[o * k..(o + 1) * k], &w0r, bias, damp)?;
            if let (Some(v), Some(nb)) = (bv.as_mut(), nb) {
                v[o] = nb;
            }
        }
    }
    Ok(())
}

/// Re-round a quantised weight: each row refitted by least squares over its non-zeros (no
/// bias), then rounded onto `q`'s grid column by column with OBS error feedback through the
/// layer's current Gram matrix. Zeros stay zeros.
fn reassign_quant(p: &bonsai::calib::Paired, view: &mut crate::common::RowView, w0: &[f32], q: &bonsai::encoding::Quant, damp: f64) -> std::result::Result<(), String> {
    let (rows, k) = (view.rows, view.cols);
    let rpg = rows / p.groups;
    for g in 0..p.groups {
        for o in g * rpg..(g + 1) * rpg {
            let row = &mut view.v[o * k..(o + 1) * k];
            let w0r: Vec<f64> = w0[o * k..(o + 1) * k].iter().map(|&x| x as f64).collect();
            refit_row(p, g, row, &w0r, None, damp)?;
        }
    }
    crate::quantize_weights::round_grouped(view, q, p.k, p.groups, &p.gram, 0.01, "refit").map_err(|e| e.to_string())
}

/// Set each output's bias so that its mean on the calibration inputs matches the original's.
fn match_mean(p: &bonsai::calib::Paired, view: &crate::common::RowView, w0: &[f32], b0: &[f64], b: &mut [f64]) {
    let (rows, k) = (view.rows, view.cols);
    let rpg = rows / p.groups;
    let n = p.rows.max(1) as f64;
    for o in 0..rows {
        let g = o / rpg;
        let want: f64 = (0..k).map(|j| p.sum_ref[g][j] * w0[o * k + j] as f64).sum();
        let got: f64 = (0..k).map(|j| p.sum[g][j] * view.v[o * k + j]).sum();
        b[o] = b0[o] + (want - got) / n;
    }
}

/// Jacobi-preconditioned conjugate gradients for the symmetric positive definite system
/// `a` x = `b`, from `x`.
fn conjugate_gradients(m: usize, a: &dyn Fn(usize, usize) -> f64, b: &[f64], mut x: Vec<f64>) -> Vec<f64> {
    let am = Mat::<f64>::from_fn(m, m, a);
    let mul = |v: &[f64]| -> Vec<f64> {
        let vm = Mat::<f64>::from_fn(m, 1, |i, _| v[i]);
        let r = &am * &vm;
        (0..m).map(|i| r[(i, 0)]).collect()
    };
    let dinv: Vec<f64> = (0..m).map(|i| 1.0 / am[(i, i)]).collect();
    let ax = mul(&x);
    let mut r: Vec<f64> = (0..m).map(|i| b[i] - ax[i]).collect();
    let mut z: Vec<f64> = (0..m).map(|i| r[i] * dinv[i]).collect();
    let mut d = z.clone();
    let mut rz: f64 = (0..m).map(|i| r[i] * z[i]).sum();
    let b2: f64 = b.iter().map(|v| v * v).sum();
    for _ in 0..500 {
        if (0..m).map(|i| r[i] * r[i]).sum::<f64>() <= 1e-20 * b2 {
            break;
        }
        let ad = mul(&d);
        let alpha = rz / (0..m).map(|i| d[i] * ad[i]).sum::<f64>();
        for i in 0..m {
            x[i] += alpha * d[i];
            r[i] -= alpha * ad[i];
        }
        z = (0..m).map(|i| r[i] * dinv[i]).collect();
        let rz2: f64 = (0..m).map(|i| r[i] * z[i]).sum();
        let beta = rz2 / rz;
        rz = rz2;
        for i in 0..m {
            d[i] = z[i] + beta * d[i];
        }
    }
    x
}

/// Refit a shared weight's centroids (per layer, or per row with one codebook per row), every
/// weight keeping its centroid and every zero staying zero: the least-squares problem of
/// [`refit_row`] over the centroid values, ridge towards the current ones. A bias (current
/// values in `bias`, original `b0`) is then set to match the original output's mean.
fn refit_codebook(p: &bonsai::calib::Paired, view: &mut crate::common::RowView, w0: &[f64], cb: &Codebook, b0: Option<&[f64]>, bias: Option<&mut Vec<f64>>, damp: f64) -> Codebook {
    let (rows, k) = (view.rows, view.cols);
    let rpg = rows / p.groups;
    let n = p.rows.max(1) as f64;
    let per_row = cb.centroids.len() > 1;
    let mut cents: Vec<Vec<f64>> = cb.centroids.iter().map(|c| c.iter().map(|&x| x as f64).collect()).collect();
    // Each non-zero's centroid index.
    let assign: Vec<Option<usize>> = (0..rows * k)
        .map(|i| {
            let x = view.v[i] as f32;
            let c = &cb.centroids[if per_row { i / k } else { 0 }];
            if x == 0.0 { None } else { c.iter().position(|&m| m == x) }
        })
        .collect();
    let nc = cents.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut a = vec![0.0; nc * nc];
    let mut rhs = vec![0.0; nc];
    let mut count = vec![0.0; nc];
    let solve = |a: &mut [f64], rhs: &mut [f64], count: &mut [f64], c: &mut Vec<f64>| {
        let h_mean = (0..nc).map(|i| a[i * nc + i] / count[i].max(1.0)).sum::<f64>() / nc.max(1) as f64;
        let lam = damp * h_mean.max(1e-12);
        let used: Vec<usize> = (0..c.len()).filter(|&i| count[i] > 0.0).collect();
        if !used.is_empty() {
            let m = used.len();
            let am = Mat::<f64>::from_fn(m, m, |x, y| a[used[x] * nc + used[y]] + if x == y { lam * count[used[x]] } else { 0.0 });
            let bm = Mat::<f64>::from_fn(m, 1, |x, _| rhs[used[x]] + lam * count[used[x]] * c[used[x]]);
            if let Ok(llt) = am.llt(Side::Lower) {
                let sol = llt.solve(&bm);
                for (x, &u) in used.iter().enumerate() {
                    let v = sol[(x, 0)] as f32;
                    // A centroid of exactly zero would read as a pruned weight.
                    c[u] = if v == 0.0 { f32::MIN_POSITIVE as f64 } else { v as f64 };
                }
            }
        }
        a.iter_mut().for_each(|x| *x = 0.0);
        rhs.iter_mut().for_each(|x| *x = 0.0);
        count.iter_mut().for_each(|x| *x = 0.0);
    };
    for o in 0..rows {
        let g = o / rpg;
        let (h, c) = (&p.gram[g], &p.cross[g]);
        let s: Vec<usize> = (0..k).filter(|&j| assign[o * k + j].is_some()).collect();
        let shift = match (b0, bias.as_deref()) {
            (Some(b0), Some(b)) => b0[o] - b[o],
            _ => 0.0,
        };
        for &i in &s {
            let ai = assign[o * k + i].expect("kept");
            let t: f64 = (0..k).map(|j| c[i * k + j] * w0[o * k + j]).sum::<f64>() + shift * p.sum[g][i];
            rhs[ai] += t;
            count[ai] += 1.0;
            for &j in &s {
                a[ai * nc + assign[o * k + j].expect("kept")] += h[i * k + j];
            }
        }
        if per_row {
            solve(&mut a, &mut rhs, &mut count, &mut cents[o]);
        }
    }
    if !per_row {
        solve(&mut a, &mut rhs, &mut count, &mut cents[0]);
    }
    let f32s: Vec<Vec<f32>> = cents.iter().map(|c| c.iter().map(|&x| x as f32).collect()).collect();
    for i in 0..rows * k {
        if let Some(ai) = assign[i] {
            view.v[i] = f32s[if per_row { i / k } else { 0 }][ai] as f64;
        }
    }
    if let (Some(b0), Some(b)) = (b0, bias) {
        for o in 0..rows {
            let g = o / rpg;
            let want: f64 = (0..k).map(|j| p.sum_ref[g][j] * w0[o * k + j]).sum();
            let got: f64 = (0..k).map(|j| p.sum[g][j] * view.v[o * k + j]).sum();
            b[o] = b0[o] + (want - got) / n;
        }
    }
    Codebook { bits: cb.bits, centroids: f32s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// Paired statistics of inputs X (model being compressed) and Y (reference), n x k.
    fn paired(x: &[f64], y: &[f64], n: usize, k: usize) -> bonsai::calib::Paired {
        let mut p = bonsai::calib::Paired { groups: 1, k, gram: vec![vec![0.0; k * k]], cross: vec![vec![0.0; k * k]], sum: vec![vec![0.0; k]], sum_ref: vec![vec![0.0; k]], rows: n };
        for r in 0..n {
            for i in 0..k {
                p.sum[0][i] += x[r * k + i];
                p.sum_ref[0][i] += y[r * k + i];
                for j in 0..k {
                    p.gram[0][i * k + j] += x[r * k + i] * x[r * k + j];
                    p.cross[0][i * k + j] += x[r * k + i] * y[r * k + j];
                }
            }
        }
        p
    }

    /// Output error ||X w + b - (Y w0 + b0)||^2 of one row.
    #[allow(clippy::too_many_arguments)]
    fn err(x: &[f64], y: &[f64], n: usize, k: usize, w: &[f64], b: f64, w0: &[f64], b0: f64) -> f64 {
        (0..n)
            .map(|r| {
                let a: f64 = (0..k).map(|j| x[r * k + j] * w[j]).sum::<f64>() + b;
                let t: f64 = (0..k).map(|j| y[r * k + j] * w0[j]).sum::<f64>() + b0;
                (a - t) * (a - t)
            })
            .sum()
    }

    /// The refitted row keeps its zeros, and its output error against the reference is the
    /// least over the kept entries: below the unrefitted row's, and no direction along a
    /// kept entry lowers it further.
    #[test]
    fn refit_row_solves_the_masked_least_squares_problem() {
        let (n, k) = (200, 12);
        let mut s = 3u64;
        let y: Vec<f64> = (0..n * k).map(|_| lcg(&mut s)).collect();
        // The compressed model's inputs: the reference's, distorted by upstream pruning.
        let x: Vec<f64> = y.iter().map(|&v| 0.8 * v + 0.2 * lcg(&mut s) + 0.1).collect();
        let w0: Vec<f64> = (0..k).map(|_| lcg(&mut s)).collect();
        let mut w: Vec<f64> = w0.iter().enumerate().map(|(j, &v)| if j % 3 == 0 { 0.0 } else { v }).collect();
        let before = err(&x, &y, n, k, &w, 0.5, &w0, 0.5);
        let p = paired(&x, &y, n, k);
        let b = refit_row(&p, 0, &mut w, &w0, Some((0.5, 0.5)), 1e-9).unwrap().unwrap();
        assert!((0..k).all(|j| (w[j] == 0.0) == (j % 3 == 0)), "{w:?}");
        let after = err(&x, &y, n, k, &w, b, &w0, 0.5);
        assert!(after < 0.9 * before, "{after} vs {before}");
        for j in (0..k).filter(|j| j % 3 != 0) {
            for d in [-1e-3, 1e-3] {
                let mut w2 = w.clone();
                w2[j] += d;
                assert!(err(&x, &y, n, k, &w2, b, &w0, 0.5) >= after - 1e-9, "entry {j}");
            }
        }
        for d in [-1e-3, 1e-3] {
            assert!(err(&x, &y, n, k, &w, b + d, &w0, 0.5) >= after - 1e-9, "bias");
        }
    }

    /// Without upstream error (X = Y) an unpruned row is already optimal and stays put.
    #[test]
    fn refit_row_is_a_fixed_point_without_upstream_error() {
        let (n, k) = (100, 6);
        let mut s = 5u64;
        let y: Vec<f64> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let w0: Vec<f64> = (0..k).map(|_| lcg(&mut s)).collect();
        let mut w = w0.clone();
        refit_row(&paired(&y, &y, n, k), 0, &mut w, &w0, None, 1e-6).unwrap();
        for j in 0..k {
            assert!((w[j] - w0[j]).abs() < 1e-9, "{w:?} vs {w0:?}");
        }
    }
}
