//! `prune-wanda`: activation-aware pruning (Wanda): score |W_ij| x ||X_j||, compared within each
//! output channel, no weight update. Needs `--calib`.
//!
//! Options: `sparsity=S` (default 0.5), `granularity=layer|global|sensitivity` or
//! `layers=a:0.5,b:0.9` (see prune-sparsegpt), `pattern=unstructured|N:M`, `exclude=a,b`,
//! `correct_bias=true`.

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::Result;
use melior::ir::Module;

use crate::common::{alloc, correct_bias, per_layer, Alloc, flag, fraction, list, pattern, smallest, write_rows, RowView};

pub struct PruneWanda {
    sparsity: f64,
    alloc: Alloc,
    nm: Option<(usize, usize)>,
    exclude: Vec<String>,
    correct_bias: bool,
}

impl PruneWanda {
    pub const SUMMARY: &'static str = "activation-aware pruning, |W| x ||X|| per output channel (Wanda); needs --calib";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["sparsity=0.5 granularity=layer", "sparsity=0.7 granularity=layer", "sparsity=0.8 granularity=layer", "sparsity=0.9 granularity=layer"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["sparsity", "granularity", "layers", "pattern", "exclude", "correct_bias"])?;
        Ok(Box::new(PruneWanda {
            sparsity: fraction(opts, "sparsity")?.unwrap_or(0.5),
            alloc: alloc(opts)?,
            nm: pattern(opts)?,
            exclude: list(opts, "exclude"),
            correct_bias: flag(opts, "correct_bias", true)?,
        }))
    }
}

impl Pass for PruneWanda {
    fn name(&self) -> &'static str {
        "prune-wanda"
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        let (ws, mut views) = crate::common::views_for(module, &self.exclude, &self.alloc)?;
        let per = per_layer(cx, self.name(), &ws, &views, self.sparsity, &self.alloc)?;
        for ((w, view), s) in ws.iter().zip(views.iter_mut()).zip(per) {
            let c = cx.calib_for(self.name(), &w.name)?;
            let rows_per_group = view.rows / c.groups;
            let k = view.cols;
            let before = RowView { rows: view.rows, cols: view.cols, v: view.v.clone() };
            for r in 0..view.rows {
                let norms = c.col_sq_norms(r / rows_per_group);
                let row = &mut view.v[r * k..(r + 1) * k];
                let score: Vec<f32> = row.iter().zip(&norms).map(|(w, n)| (w.abs() * n.sqrt()) as f32).collect();
                match self.nm {
                    None => {
                        for i in smallest(&score, (s * k as f64).floor() as usize) {
                            row[i] = 0.0;
                        }
                    }
                    Some((n, m)) => {
                        for start in (0..k).step_by(m) {
                            let span = m.min(k - start);
                            for i in smallest(&score[start..start + span], span.saturating_sub(n)) {
                                row[start + i] = 0.0;
                            }
                        }
                    }
                }
            }
            write_rows(w, view)?;
            if self.correct_bias {
                correct_bias(cx, self.name(), module, w, &before, view)?;
            }
        }
        Ok(())
    }
}
