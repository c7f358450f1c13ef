//! `prune-sparsegpt`: second-order pruning with reconstruction (OBS / SparseGPT). Each layer's
//! removed weights are compensated by updating the remaining ones so that the layer output on
//! the calibration inputs changes as little as possible. Needs `--calib`.
//!
//! Options: `sparsity=S` (default 0.5), `granularity=layer|global|sensitivity` (global:
//! per-layer sparsities from a global magnitude ranking; sensitivity: from the estimated output
//! error of each layer on the calibration data), `layers=a:0.5,b:0.9` (explicit per-layer
//! sparsities instead, as `bonsai sensitivity --pass prune-sparsegpt` suggests; other layers
//! untouched), `pattern=unstructured|N:M|Rx1` (Rx1: whole blocks of R output channels x 1
//! input position, ranked by their summed OBS scores: the BSR blocks bonsai's direct kernels
//! run 4 channels at a time), `damp=0.01`
//! (fraction of the mean Hessian diagonal added for stability; raised automatically to
//! k/rows - 1 when a layer has fewer calibration rows than inputs), `blocksize=128`, `exclude=a,b`,
//! `correct_bias=true` (shift biases by (W - W') E[x] so output means stay put),
//! `sequential=false` (true: layer by layer in graph order, each layer is pruned on its inputs
//! in the model as the layers before it were pruned, with the ORIGINAL model's layer output as
//! the target: the weight first absorbs the upstream error by least squares, then OBS prunes
//! it; runs from `bonsai compress`, which hands it the original model).

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{alloc, correct_bias, per_layer, Alloc, flag, fraction, list, pattern, write_rows, RowView};

pub struct PruneSparsegpt {
    sparsity: f64,
    alloc: Alloc,
    nm: Option<(usize, usize)>,
    /// Rows per pruned block (`pattern=Rx1`), else 1.
    rowblock: usize,
    damp: f64,
    block: usize,
    exclude: Vec<String>,
    correct_bias: bool,
    sequential: bool,
}

impl PruneSparsegpt {
    pub const SUMMARY: &'static str = "second-order pruning with reconstruction (OBS/SparseGPT); needs --calib";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["sparsity=0.5 granularity=layer", "sparsity=0.7 granularity=layer", "sparsity=0.8 granularity=layer", "sparsity=0.9 granularity=layer", "sparsity=0.95 granularity=layer"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["sparsity", "granularity", "layers", "pattern", "damp", "blocksize", "exclude", "correct_bias", "sequential"])?;
        // `Rx1`: blocks of R rows; otherwise unstructured or N:M.
        let rowblock = opts
            .get("pattern")
            .and_then(|p| p.strip_suffix("x1"))
            .map(|r| {
                r.parse::<usize>()
                    .ok()
                    .filter(|&r| r >= 1)
                    .ok_or_else(|| Error::option("pattern", format!("'{r}x1' needs a block of R >= 1 rows, e.g. 4x1")))
            })
            .transpose()?;
        let nm = if rowblock.is_some() { None } else { pattern(opts)? };
        let rowblock = rowblock.unwrap_or(1);
        let sparsity = fraction(opts, "sparsity")?.unwrap_or(0.5);
        let damp = opts.f64_or("damp", 0.01)?;
        if !(0.0..=1.0).contains(&damp) {
            return Err(Error::option("damp", format!("must be in [0, 1], got {damp}")));
        }
        let block = opts.u64_or("blocksize", 128)? as usize;
        if block == 0 {
            return Err(Error::option("blocksize", "must be at least 1"));
        }
        if let Some((_, m)) = nm {
            if !block.is_multiple_of(m) {
                return Err(Error::option("blocksize", format!("must be a multiple of M = {m}")));
            }
        }
        let alloc = alloc(opts)?;
        Ok(Box::new(PruneSparsegpt { sparsity, alloc, nm, rowblock, damp, block, exclude: list(opts, "exclude"), correct_bias: flag(opts, "correct_bias", true)?, sequential: flag(opts, "sequential", false)? }))
    }
}

impl Pass for PruneSparsegpt {
    fn name(&self) -> &'static str {
        "prune-sparsegpt"
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn needs_reference(&self) -> bool {
        self.sequential
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        let (ws, mut views) = crate::common::views_for(module, &self.exclude, &self.alloc)?;
        let per = per_layer(cx, self.name(), &ws, &views, self.sparsity, &self.alloc)?;
        if self.sequential {
            return self.run_sequential(cx, module, &ws, &mut views, &per);
        }
        for ((w, view), s) in ws.iter().zip(views.iter_mut()).zip(per) {
            let c = cx.calib_for(self.name(), &w.name)?;
            // With fewer calibration rows than columns the Hessian is rank deficient and
            // compensation would fit the calibration set: damp towards magnitude pruning.
            let damp = self.damp.max(c.k as f64 / c.rows.max(1) as f64 - 1.0).min(100.0);
            let rows_per_group = view.rows / c.groups;
            if c.k != view.cols {
                return Err(Error::Pass {
                    pass: self.name().into(),
                    msg: format!("weight '{}': calibration has {} columns, the weight {}", w.name, c.k, view.cols),
                });
            }
            if !rows_per_group.is_multiple_of(self.rowblock) {
                return Err(Error::Pass {
                    pass: self.name().into(),
                    msg: format!("weight '{}': blocks of {} rows do not divide its {} output channels{}", w.name, self.rowblock, rows_per_group, if c.groups > 1 { " per group" } else { "" }),
                });
            }
            let before = RowView { rows: view.rows, cols: view.cols, v: view.v.clone() };
            for gi in 0..c.groups {
                let (a, b) = (gi * rows_per_group * view.cols, (gi + 1) * rows_per_group * view.cols);
                crate::obs::sparsegpt(&mut view.v[a..b], rows_per_group, view.cols, &c.gram[gi], s, self.nm, self.rowblock, damp, self.block)
                    .map_err(|e| Error::Pass { pass: self.name().into(), msg: format!("weight '{}': {e}", w.name) })?;
            }
            write_rows(w, view)?;
            if self.correct_bias {
                correct_bias(cx, self.name(), module, w, &before, view)?;
            }
        }
        Ok(())
    }
}

impl PruneSparsegpt {
    /// Layer by layer in graph order: with X the layer's inputs in the model pruned so far and
    /// Y the original's, first W_hat = argmin ||X W_hat^T - Y W^T|| (solve H W_hat^T = C W^T,
    /// H = X^T X, C = X^T Y), then OBS-prune W_hat under H; a bias is set so the layer's output
    /// mean matches the original's.
    fn run_sequential(&self, cx: &PassContext, module: &Module, ws: &[bonsai::ir::weights::Weight], views: &mut [RowView], per: &[f64]) -> Result<()> {
        use faer::linalg::solvers::Solve;
        let fail = |msg: String| Error::Pass { pass: self.name().into(), msg };
        let r = cx.reference.ok_or_else(|| fail("sequential=true needs the original model and calibration data: run it from `bonsai compress MODEL --calib DATA.npz`".into()))?;
        let mut current = std::collections::BTreeMap::new();
        for w in bonsai::ir::weights::weights(module) {
            current.insert(w.name.clone(), w.read_onnx_layout()?);
            if let Some(b) = bonsai::ir::weights::bias_of(module, &w.name) {
                current.insert(b.name.clone(), b.read()?);
            }
        }
        for name in r.order() {
            let Some(i) = ws.iter().position(|w| w.name == name) else { continue };
            let (w, view, s) = (&ws[i], &mut views[i], per[i]);
            let p = r.paired(&name, &current)?;
            let od = if w.transposed { 1 - w.out_dim } else { w.out_dim };
            let (orows, ocols, w0) = bonsai::encoding::row_view(&r.original[&name], od);
            if (orows, ocols) != (view.rows, view.cols) || p.k != view.cols {
                return Err(fail(format!("weight '{name}': {}x{} against the original's {orows}x{ocols}", view.rows, view.cols)));
            }
            let (k, rpg) = (p.k, view.rows / p.groups);
            let damp = self.damp.max(k as f64 / p.rows.max(1) as f64 - 1.0).min(100.0);
            for g in 0..p.groups {
                let h = &p.gram[g];
                let mean_diag = (0..k).map(|j| h[j * k + j]).sum::<f64>() / k.max(1) as f64;
                let lam = damp * mean_diag.max(1e-12);
                let hm = faer::Mat::<f64>::from_fn(k, k, |a, b| h[a * k + b] + if a == b { lam } else { 0.0 });
                let w0m = faer::Mat::<f64>::from_fn(k, rpg, |j, o| w0[(g * rpg + o) * k + j] as f64);
                let cm = faer::Mat::<f64>::from_fn(k, k, |a, b| p.cross[g][a * k + b]);
                // Ridge towards the original weight, not towards zero (layers with fewer
                // calibration rows than inputs are damped hard).
                let rhs = &cm * &w0m + faer::Scale(lam) * &w0m;
                let llt = hm.llt(faer::Side::Lower).map_err(|e| fail(format!("weight '{name}': Hessian not positive definite ({e:?}); raise damp")))?;
                let what = llt.solve(&rhs);
                let part = &mut view.v[g * rpg * k..(g + 1) * rpg * k];
                for o in 0..rpg {
                    for j in 0..k {
                        part[o * k + j] = what[(j, o)];
                    }
                }
                if !rpg.is_multiple_of(self.rowblock) {
                    return Err(fail(format!("weight '{name}': blocks of {} rows do not divide its {rpg} output channels", self.rowblock)));
                }
                crate::obs::sparsegpt(part, rpg, k, h, s, self.nm, self.rowblock, damp, self.block).map_err(|e| fail(format!("weight '{name}': {e}")))?;
            }
            write_rows(w, view)?;
            current.insert(name.clone(), w.read_onnx_layout()?);
            if let (true, Some(bn), Some(b)) = (self.correct_bias, r.bias(&name), bonsai::ir::weights::bias_of(module, &name)) {
                if b.numel() == view.rows {
                    let b0 = r.original[bn].to_f64_vec();
                    let n = p.rows.max(1) as f64;
                    let nb: Vec<f32> = (0..view.rows)
                        .map(|o| {
                            let g = o / rpg;
                            let want: f64 = (0..k).map(|j| p.sum_ref[g][j] * w0[o * k + j] as f64).sum();
                            let got: f64 = (0..k).map(|j| p.sum[g][j] * view.v[o * k + j]).sum();
                            (b0[o] + (want - got) / n) as f32
                        })
                        .collect();
                    let t = bonsai::graph::Tensor::new(b.shape.clone(), bonsai::graph::Data::F32(nb));
                    b.write(&t)?;
                    current.insert(b.name.clone(), t);
                }
            }
        }
        Ok(())
    }
}
