//! `prune-magnitude`: zero the weights of smallest magnitude.
//!
//! Options (one threshold kind at a time):
//! - `sparsity=S` in [0, 1): the fraction of weights to remove, per layer
//!   (`granularity=layer`, default), ranked across all layers (`granularity=global`), or
//!   allocated per layer by estimated output error on calibration data
//!   (`granularity=sensitivity`, needs `--calib`);
//! - `threshold=T`: remove |w| < T (absolute);
//! - `relative=R`: remove |w| < R x std(w) of the layer (Han et al.'s quality parameter);
//! - `exclude=a,b`: layers (ONNX node names) or weights left alone;
//! - `layers=a:0.5,b:0.9`: explicit per-layer sparsities (what `bonsai sensitivity` suggests).

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{allocate_by_sensitivity, fraction, list, row_view, smallest, RowView};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Sparsity(f64),
    Absolute(f64),
    Relative(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Granularity {
    Layer,
    Global,
    Sensitivity,
}

pub struct PruneMagnitude {
    target: Target,
    granularity: Granularity,
    exclude: Vec<String>,
    /// Explicit per-layer sparsities (`layers=conv1:0.5,fc1:0.9`); other layers untouched.
    layers: Vec<(String, f64)>,
}

impl PruneMagnitude {
    pub const SUMMARY: &'static str = "zero the smallest-magnitude weights (per layer or global; sparsity, absolute or relative threshold)";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["sparsity=0.5 granularity=layer -threshold -relative -layers", "sparsity=0.7 granularity=layer -threshold -relative -layers", "sparsity=0.8 granularity=layer -threshold -relative -layers", "sparsity=0.9 granularity=layer -threshold -relative -layers", "sparsity=0.95 granularity=layer -threshold -relative -layers"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["sparsity", "threshold", "relative", "granularity", "exclude", "layers"])?;
        let given: Vec<&str> = ["sparsity", "threshold", "relative"].into_iter().filter(|k| opts.get(k).is_some()).collect();
        if given.len() > 1 {
            return Err(Error::option(given[1], format!("give one of sparsity, threshold, relative (got {})", given.join(" and "))));
        }
        let target = if let Some(s) = fraction(opts, "sparsity")? {
            Target::Sparsity(s)
        } else if opts.get("threshold").is_some() {
            let t = opts.f64_or("threshold", 0.0)?;
            if t < 0.0 {
                return Err(Error::option("threshold", format!("must be >= 0, got {t}")));
            }
            Target::Absolute(t)
        } else if opts.get("relative").is_some() {
            let r = opts.f64_or("relative", 0.0)?;
            if r < 0.0 {
                return Err(Error::option("relative", format!("must be >= 0, got {r}")));
            }
            Target::Relative(r)
        } else {
            Target::Sparsity(0.5)
        };
        let granularity = match opts.get("granularity").unwrap_or("layer") {
            "layer" => Granularity::Layer,
            "global" => Granularity::Global,
            "sensitivity" => Granularity::Sensitivity,
            g => return Err(Error::option("granularity", format!("'{g}' is not one of layer, global, sensitivity"))),
        };
        if granularity != Granularity::Layer && !matches!(target, Target::Sparsity(_)) {
            return Err(Error::option("granularity", "global and sensitivity allocation need a sparsity target"));
        }
        let layers = crate::common::explicit_layers(opts)?;
        Ok(Box::new(PruneMagnitude { target, granularity, exclude: list(opts, "exclude"), layers }))
    }
}

impl Pass for PruneMagnitude {
    fn name(&self) -> &'static str {
        "prune-magnitude"
    }

    fn needs_calibration(&self) -> bool {
        self.granularity == Granularity::Sensitivity
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        if !self.layers.is_empty() {
            let all = crate::common::select(module, &[])?;
            for (name, s) in &self.layers {
                let w = all.iter().find(|w| &w.layer == name || &w.name == name).ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|w| w.layer.as_str()).collect();
                    Error::option("layers", format!("no layer or weight named '{name}' (layers: {})", names.join(", ")))
                })?;
                let mut v = row_view(w)?;
                let scores: Vec<f32> = v.v.iter().map(|x| x.abs() as f32).collect();
                for i in smallest(&scores, (s * v.v.len() as f64).floor() as usize) {
                    v.v[i] = 0.0;
                }
                crate::common::write_rows(w, &v)?;
            }
            return Ok(());
        }
        let ws = crate::common::select(module, &self.exclude)?;
        let mut vals: Vec<Vec<f32>> = Vec::with_capacity(ws.len());
        for w in &ws {
            match w.read()?.data {
                bonsai::graph::Data::F32(v) => vals.push(v),
                _ => unreachable!("read returns f32"),
            }
        }
        if let (Granularity::Sensitivity, Target::Sparsity(s)) = (self.granularity, self.target) {
            let views: Vec<RowView> = ws.iter().map(row_view).collect::<Result<_>>()?;
            let calibs: Vec<_> = ws.iter().map(|w| cx.calib_for(self.name(), &w.name)).collect::<Result<_>>()?;
            let per = allocate_by_sensitivity(&views, &calibs, s);
            for (v, s) in vals.iter_mut().zip(per) {
                let scores: Vec<f32> = v.iter().map(|x| x.abs()).collect();
                for i in smallest(&scores, (s * v.len() as f64).floor() as usize) {
                    v[i] = 0.0;
                }
            }
        } else {
        match (self.granularity, self.target) {
            (Granularity::Global, Target::Sparsity(s)) => {
                let scores: Vec<f32> = vals.iter().flatten().map(|x| x.abs()).collect();
                let k = (s * scores.len() as f64).floor() as usize;
                let mut offs = Vec::new();
                let mut o = 0;
                for v in &vals {
                    offs.push(o);
                    o += v.len();
                }
                for i in smallest(&scores, k) {
                    let l = offs.partition_point(|&x| x <= i) - 1;
                    vals[l][i - offs[l]] = 0.0;
                }
            }
            (_, target) => {
                for v in &mut vals {
                    let n = v.len();
                    match target {
                        Target::Sparsity(s) => {
                            let scores: Vec<f32> = v.iter().map(|x| x.abs()).collect();
                            for i in smallest(&scores, (s * n as f64).floor() as usize) {
                                v[i] = 0.0;
                            }
                        }
                        Target::Absolute(t) => v.iter_mut().filter(|x| (x.abs() as f64) < t).for_each(|x| *x = 0.0),
                        Target::Relative(r) => {
                            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n.max(1) as f64;
                            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
                            let t = r * var.sqrt();
                            v.iter_mut().filter(|x| (x.abs() as f64) < t).for_each(|x| *x = 0.0);
                        }
                    }
                }
            }
        }
        }
        for (w, v) in ws.iter().zip(vals) {
            let zeros = v.iter().filter(|&&x| x == 0.0).count();
            w.write(&bonsai::graph::Tensor::f32(w.shape.clone(), v))?;
            w.set_tag("bonsai.sparsity", &format!("{:.6} : f64", zeros as f64 / w.numel().max(1) as f64))?;
        }
        Ok(())
    }
}
