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
//! `bias=true` (refit constant biases too), `exclude=a,b`.

use std::collections::BTreeMap;

use bonsai::graph::{Data, Tensor};
use bonsai::ir::weights::bias_of;
use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use melior::ir::Module;

use crate::common::{flag, list, row_view, select, write_rows};

pub struct Refit {
    damp: f64,
    bias: bool,
    exclude: Vec<String>,
}

/// Kept entries per row above which the solve is iterative (conjugate gradients) instead of
/// one Cholesky factorisation per row.
const DIRECT_MAX: usize = 384;

impl Refit {
    pub const SUMMARY: &'static str =
        "refit kept weights layer by layer towards the original model's layer outputs; needs --calib (from bonsai compress)";
    pub const GRID: &'static [&'static str] = &[];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["damp", "bias", "exclude"])?;
        let damp = opts.f64_or("damp", 0.001)?;
        if !(damp > 0.0 && damp <= 1.0) {
            return Err(Error::option("damp", format!("must be in (0, 1], got {damp}")));
        }
        Ok(Box::new(Refit { damp, bias: flag(opts, "bias", true)?, exclude: list(opts, "exclude") }))
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
        let chosen = select(module, &self.exclude)?;
        let r = cx.reference.ok_or_else(|| {
            fail("needs the original model and calibration data: run it from `bonsai compress MODEL --calib DATA.npz`".into())
        })?;
        let all = bonsai::ir::weights::weights(module);
        // What the model currently runs, in ONNX layout, weights and biases by name.
        let mut current: BTreeMap<String, Tensor> = BTreeMap::new();
        for w in &all {
            let enc = w.encoding()?;
            if enc != bonsai::encoding::Encoding::Float && chosen.iter().any(|c| c.name == w.name) {
                return Err(fail(format!(
                    "weight '{}' is already {}: refit runs after pruning and before share-kmeans / quantize-weights",
                    w.name,
                    enc.describe()
                )));
            }
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
            let rpg = view.rows / p.groups;
            for g in 0..p.groups {
                for o in g * rpg..(g + 1) * rpg {
                    let b0 = bias.as_ref().map(|(_, b0)| b0[o]);
                    let cur_b = bv.as_ref().map(|v| v[o]);
                    let row = &mut view.v[o * p.k..(o + 1) * p.k];
                    let w0r: Vec<f64> = w0[o * p.k..(o + 1) * p.k].iter().map(|&x| x as f64).collect();
                    let nb = refit_row(&p, g, row, &w0r, b0.zip(cur_b), damp)
                        .map_err(|e| fail(format!("weight '{}': {e}", w.name)))?;
                    if let (Some(v), Some(nb)) = (bv.as_mut(), nb) {
                        v[o] = nb;
                    }
                }
            }
            write_rows(w, &view)?;
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
