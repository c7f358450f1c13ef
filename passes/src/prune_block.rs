//! `prune-block{block=RxC sparsity=S}`: remove whole RxC blocks of the weight viewed as
//! [output channels, reduction], smallest L2 norm first (BSR-friendly sparsity).
//! `granularity=layer|global` ranks blocks per layer or across layers; `exclude=a,b`.
//! A block that does not divide a layer's [rows, cols] is an error naming the layer.

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{fraction, list, row_view, select, smallest, write_rows};

pub struct PruneBlock {
    br: usize,
    bc: usize,
    sparsity: f64,
    global: bool,
    exclude: Vec<String>,
}

impl PruneBlock {
    pub const SUMMARY: &'static str = "remove RxC blocks of smallest norm (BSR-friendly), per layer or global";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["sparsity=0.5 granularity=layer", "sparsity=0.7 granularity=layer", "sparsity=0.8 granularity=layer", "sparsity=0.9 granularity=layer"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["block", "sparsity", "granularity", "exclude"])?;
        let spec = opts.get("block").unwrap_or("1x4");
        let (br, bc) = spec
            .split_once('x')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .filter(|&(a, b)| a > 0 && b > 0)
            .ok_or_else(|| Error::option("block", format!("'{spec}' is not RxC with positive R, C (e.g. 1x4, 4x4)")))?;
        let global = match opts.get("granularity").unwrap_or("layer") {
            "layer" => false,
            "global" => true,
            g => return Err(Error::option("granularity", format!("'{g}' is not one of layer, global"))),
        };
        Ok(Box::new(PruneBlock { br, bc, sparsity: fraction(opts, "sparsity")?.unwrap_or(0.5), global, exclude: list(opts, "exclude") }))
    }
}

impl Pass for PruneBlock {
    fn name(&self) -> &'static str {
        "prune-block"
    }

    fn run(&self, _cx: &PassContext, module: &mut Module) -> Result<()> {
        let ws = select(module, &self.exclude)?;
        let mut views = Vec::new();
        for w in &ws {
            let v = row_view(w)?;
            if v.rows % self.br != 0 || v.cols % self.bc != 0 {
                return Err(Error::option(
                    "block",
                    format!(
                        "{}x{} does not divide layer '{}' viewed as [{}, {}] (exclude={} to skip it)",
                        self.br, self.bc, w.layer, v.rows, v.cols, w.layer
                    ),
                ));
            }
            views.push(v);
        }
        // Block norms, per layer, in row-major block order.
        let norms: Vec<Vec<f32>> = views
            .iter()
            .map(|v| {
                let (nbr, nbc) = (v.rows / self.br, v.cols / self.bc);
                (0..nbr * nbc)
                    .map(|b| {
                        let (r0, c0) = (b / nbc * self.br, b % nbc * self.bc);
                        let mut s = 0.0;
                        for r in r0..r0 + self.br {
                            for c in c0..c0 + self.bc {
                                s += v.v[r * v.cols + c] * v.v[r * v.cols + c];
                            }
                        }
                        s.sqrt() as f32
                    })
                    .collect()
            })
            .collect();
        let mut drop: Vec<Vec<usize>> = vec![Vec::new(); views.len()];
        if self.global {
            let all: Vec<f32> = norms.iter().flatten().copied().collect();
            let offs: Vec<usize> = norms.iter().scan(0, |o, n| {
                let x = *o;
                *o += n.len();
                Some(x)
            }).collect();
            for i in smallest(&all, (self.sparsity * all.len() as f64).floor() as usize) {
                let l = offs.partition_point(|&x| x <= i) - 1;
                drop[l].push(i - offs[l]);
            }
        } else {
            for (l, n) in norms.iter().enumerate() {
                drop[l] = smallest(n, (self.sparsity * n.len() as f64).floor() as usize);
            }
        }
        for ((w, v), blocks) in ws.iter().zip(views.iter_mut()).zip(drop) {
            let nbc = v.cols / self.bc;
            for b in blocks {
                let (r0, c0) = (b / nbc * self.br, b % nbc * self.bc);
                for r in r0..r0 + self.br {
                    for c in c0..c0 + self.bc {
                        v.v[r * v.cols + c] = 0.0;
                    }
                }
            }
            write_rows(w, v)?;
        }
        Ok(())
    }
}
