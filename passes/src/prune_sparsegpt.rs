//! `prune-sparsegpt`: second-order pruning with reconstruction (OBS / SparseGPT). Each layer's
//! removed weights are compensated by updating the remaining ones so that the layer output on
//! the calibration inputs changes as little as possible. Needs `--calib`.
//!
//! Options: `sparsity=S` (default 0.5), `granularity=layer|global|sensitivity` (global:
//! per-layer sparsities from a global magnitude ranking; sensitivity: from the estimated output
//! error of each layer on the calibration data), `layers=a:0.5,b:0.9` (explicit per-layer
//! sparsities instead, as `bonsai sensitivity --pass prune-sparsegpt` suggests; other layers
//! untouched), `pattern=unstructured|N:M`, `damp=0.01`
//! (fraction of the mean Hessian diagonal added for stability; raised automatically to
//! k/rows - 1 when a layer has fewer calibration rows than inputs), `blocksize=128`, `exclude=a,b`,
//! `correct_bias=true` (shift biases by (W - W') E[x] so output means stay put).

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{alloc, correct_bias, per_layer, Alloc, flag, fraction, list, pattern, write_rows, RowView};

pub struct PruneSparsegpt {
    sparsity: f64,
    alloc: Alloc,
    nm: Option<(usize, usize)>,
    damp: f64,
    block: usize,
    exclude: Vec<String>,
    correct_bias: bool,
}

impl PruneSparsegpt {
    pub const SUMMARY: &'static str = "second-order pruning with reconstruction (OBS/SparseGPT); needs --calib";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["sparsity=0.5 granularity=layer", "sparsity=0.7 granularity=layer", "sparsity=0.8 granularity=layer", "sparsity=0.9 granularity=layer", "sparsity=0.95 granularity=layer"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["sparsity", "granularity", "layers", "pattern", "damp", "blocksize", "exclude", "correct_bias"])?;
        let nm = pattern(opts)?;
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
        Ok(Box::new(PruneSparsegpt { sparsity, alloc, nm, damp, block, exclude: list(opts, "exclude"), correct_bias: flag(opts, "correct_bias", true)? }))
    }
}

impl Pass for PruneSparsegpt {
    fn name(&self) -> &'static str {
        "prune-sparsegpt"
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        let (ws, mut views) = crate::common::views_for(module, &self.exclude, &self.alloc)?;
        let per = per_layer(cx, self.name(), &ws, &views, self.sparsity, &self.alloc)?;
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
            let before = RowView { rows: view.rows, cols: view.cols, v: view.v.clone() };
            for gi in 0..c.groups {
                let (a, b) = (gi * rows_per_group * view.cols, (gi + 1) * rows_per_group * view.cols);
                crate::obs::sparsegpt(&mut view.v[a..b], rows_per_group, view.cols, &c.gram[gi], s, self.nm, damp, self.block)
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
