//! `prune-nm{n=2 m=4}`: at most N non-zeros in every M consecutive weights along the
//! reduction dimension (the layout sparse tensor cores want), keeping the largest |w|.
//! `exclude=a,b` leaves layers alone; a reduction length that M does not divide is an error
//! naming the layer unless `exclude`d.

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{list, row_view, select, smallest, write_rows};

pub struct PruneNm {
    n: usize,
    m: usize,
    exclude: Vec<String>,
}

impl PruneNm {
    pub const SUMMARY: &'static str = "N:M pruning along the reduction dimension (e.g. 2:4), by magnitude";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["n=2 m=4", "n=1 m=4", "n=4 m=8", "n=2 m=8"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["n", "m", "exclude"])?;
        let n = opts.u64_or("n", 2)? as usize;
        let m = opts.u64_or("m", 4)? as usize;
        if m == 0 {
            return Err(Error::option("m", "must be at least 1"));
        }
        if n > m {
            return Err(Error::option("n", format!("n = {n} exceeds m = {m}")));
        }
        Ok(Box::new(PruneNm { n, m, exclude: list(opts, "exclude") }))
    }
}

impl Pass for PruneNm {
    fn name(&self) -> &'static str {
        "prune-nm"
    }

    fn run(&self, _cx: &PassContext, module: &mut Module) -> Result<()> {
        let ws = select(module, &self.exclude)?;
        for w in &ws {
            let mut view = row_view(w)?;
            if view.cols % self.m != 0 {
                return Err(Error::option(
                    "m",
                    format!("layer '{}' reduces over {} weights, which m = {} does not divide (exclude={} to skip it)", w.layer, view.cols, self.m, w.layer),
                ));
            }
            let k = view.cols;
            for r in 0..view.rows {
                for start in (0..k).step_by(self.m) {
                    let row = &mut view.v[r * k + start..r * k + start + self.m];
                    let scores: Vec<f32> = row.iter().map(|x| x.abs() as f32).collect();
                    for i in smallest(&scores, self.m - self.n) {
                        row[i] = 0.0;
                    }
                }
            }
            write_rows(w, &view)?;
        }
        Ok(())
    }
}
