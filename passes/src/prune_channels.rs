//! `prune-channels{sparsity=0.5 criterion=l1}`: structured pruning. Removes whole output
//! channels (filters) of the layers lowering marked `bonsai.channels_prunable` (those whose
//! consumers — bias, BatchNormalization, depthwise convolutions, the next Conv's input
//! channels, the next Gemm's rows after Flatten — can all be rewritten to match).
//!
//! In the IR the removed filters and their biases become zero and the weight is tagged
//! `bonsai.pruned_channels`; the ONNX writer then deletes them, with every consumer's
//! matching slice, so the output model is genuinely smaller dense code.
//!
//! Criteria: `l1` / `l2` norm of the filter, or `act-variance` (needs `--calib`): the
//! variance of the channel's output on the calibration inputs, w^T Cov(x) w — a channel that
//! barely varies carries little information. `sparsity` is the fraction of each layer's
//! channels removed (at least one channel stays).

use bonsai::graph::{Data, Tensor};
use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use bonsai::ir::weights::Weight;

use crate::common::{fraction, list, row_view, select, smallest, write_rows, RowView};

pub struct PruneChannels {
    sparsity: f64,
    criterion: Criterion,
    exclude: Vec<String>,
    /// None: refit consumers when calibration data is present.
    compensate: Option<bool>,
    damp: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Criterion {
    L1,
    L2,
    ActVariance,
}

impl PruneChannels {
    pub const SUMMARY: &'static str =
        "remove whole output channels (l1|l2|act-variance) and every consumer's matching slice";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["sparsity=0.25", "sparsity=0.5", "sparsity=0.75"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["sparsity", "criterion", "exclude", "compensate", "damp"])?;
        let criterion = match opts.get("criterion").unwrap_or("l1") {
            "l1" => Criterion::L1,
            "l2" => Criterion::L2,
            "act-variance" => Criterion::ActVariance,
            c => {
                return Err(Error::option(
                    "criterion",
                    format!("'{c}' is not l1, l2 or act-variance"),
                ))
            }
        };
        Ok(Box::new(PruneChannels {
            sparsity: fraction(opts, "sparsity")?.unwrap_or(0.5),
            criterion,
            exclude: list(opts, "exclude"),
            compensate: match opts.get("compensate") {
                None => None,
                Some(_) => Some(crate::common::flag(opts, "compensate", true)?),
            },
            damp: opts.f64_or("damp", 0.01)?,
        }))
    }
}

impl Pass for PruneChannels {
    fn name(&self) -> &'static str {
        "prune-channels"
    }

    fn needs_calibration(&self) -> bool {
        self.criterion == Criterion::ActVariance || self.compensate == Some(true)
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        // Layers of one group (residual partners) remove the same channels; a group with an
        // excluded member is left alone.
        let all = bonsai::ir::weights::weights(module);
        let chosen = select(module, &self.exclude)?;
        let mut groups: std::collections::BTreeMap<String, Vec<Weight>> = Default::default();
        for w in chosen.into_iter().filter(|w| w.has_tag("bonsai.channels_prunable")) {
            let g = w.channel_group().unwrap_or_else(|| w.layer.clone());
            groups.entry(g).or_default().push(w);
        }
        for (group, members) in groups {
            let size = all.iter().filter(|w| w.channel_group().as_deref() == Some(&group)).count();
            if members.len() < size {
                continue;
            }
            let mut views = members.iter().map(row_view).collect::<Result<Vec<_>>>()?;
            let rows = views[0].rows;
            if views.iter().any(|v| v.rows != rows) {
                continue;
            }
            // Each member's scores scaled to mean 1, summed over the group.
            let mut total = vec![0.0f64; rows];
            for (w, view) in members.iter().zip(&views) {
                let sc = self.scores(cx, w, view)?;
                let mean = sc.iter().sum::<f64>() / rows as f64;
                for (t, x) in total.iter_mut().zip(&sc) {
                    *t += if mean > 0.0 { x / mean } else { 0.0 };
                }
            }
            let total: Vec<f32> = total.iter().map(|&x| x as f32).collect();
            let remove = ((self.sparsity * rows as f64).floor() as usize).min(rows - 1);
            let mut gone = smallest(&total, remove);
            gone.sort_unstable();
            for (w, view) in members.iter().zip(views.iter_mut()) {
                let k = view.cols;
                for &r in &gone {
                    view.v[r * k..(r + 1) * k].iter_mut().for_each(|x| *x = 0.0);
                }
                write_rows(w, view)?;
                if let Some(b) = bonsai::ir::weights::bias_of(module, &w.name) {
                    let mut bv = b.read()?.to_f64_vec();
                    if bv.len() == rows {
                        for &r in &gone {
                            bv[r] = 0.0;
                        }
                        b.write(&Tensor::new(
                            b.shape.clone(),
                            Data::F32(bv.iter().map(|&x| x as f32).collect()),
                        ))?;
                    }
                }
            }
            if self.compensate.unwrap_or(cx.calib.is_some()) && !gone.is_empty() {
                for c in bonsai::ir::weights::weights(module) {
                    match c.channels_of() {
                        Some((of, block)) if of == group => {
                            let calib = cx.calib_for(self.name(), &c.name)?;
                            refit(&c, calib, &gone, block, self.damp)?;
                        }
                        _ => {}
                    }
                }
            }
            let list: Vec<String> = gone.iter().map(|r| r.to_string()).collect();
            let tag = if list.is_empty() {
                "dense<> : tensor<0xi64>".to_string()
            } else {
                format!("dense<[{}]> : tensor<{}xi64>", list.join(", "), list.len())
            };
            for w in &members {
                w.set_tag("bonsai.pruned_channels", &tag)?;
            }
        }
        Ok(())
    }
}

impl PruneChannels {
    /// Per-output-channel importance of one weight under the criterion.
    fn scores(&self, cx: &PassContext, w: &Weight, view: &RowView) -> Result<Vec<f64>> {
        let (rows, k) = (view.rows, view.cols);
        let row = |r: usize| &view.v[r * k..(r + 1) * k];
        Ok(match self.criterion {
            Criterion::L1 => (0..rows).map(|r| row(r).iter().map(|x| x.abs()).sum()).collect(),
            Criterion::L2 => (0..rows)
                .map(|r| row(r).iter().map(|x| x * x).sum::<f64>().sqrt())
                .collect(),
            Criterion::ActVariance => {
                let c = cx.calib_for(self.name(), &w.name)?;
                if c.groups != 1 || c.k != k {
                    return Err(Error::Pass {
                        pass: self.name().into(),
                        msg: format!("layer '{}': calibration does not match its weight", w.layer),
                    });
                }
                let n = c.rows.max(1) as f64;
                let mu = c.mean(0);
                (0..rows)
                    .map(|r| {
                        let wr = row(r);
                        let mut q = 0.0;
                        for i in 0..k {
                            let hi = &c.gram[0][i * k..(i + 1) * k];
                            q += wr[i] * hi.iter().zip(wr).map(|(h, x)| h * x).sum::<f64>();
                        }
                        let m: f64 = wr.iter().zip(&mu).map(|(a, b)| a * b).sum();
                        (q / n - m * m).max(0.0)
                    })
                    .collect()
            }
        })
    }
}

/// Refit a consumer's remaining inputs for the removed channels' contribution on the
/// calibration inputs: with R the removed reduction entries and K the kept ones,
/// W_K += W_R H[R,K] H[K,K]^-1 (least squares of the layer output; H = X^T X, damped by
/// `damp` x mean diagonal). W_R is then zero (those inputs are gone).
fn refit(
    w: &bonsai::ir::weights::Weight,
    c: &bonsai::calib::LayerCalib,
    gone: &[usize],
    block: usize,
    damp: f64,
) -> Result<()> {
    use faer::linalg::solvers::Solve;
    let mut view = row_view(w)?;
    let (rows, k) = (view.rows, view.cols);
    // With fewer calibration rows than inputs the fit follows the calibration set, not the
    // layer (measured: MNIST's FC, 256 rows for 1568 inputs, lost accuracy): skip it there.
    if c.groups != 1 || c.k != k || c.rows < 4 * k {
        return Ok(());
    }
    let removed: std::collections::HashSet<usize> = gone
        .iter()
        .flat_map(|&ch| ch * block..(ch + 1) * block)
        .collect();
    let r: Vec<usize> = (0..k).filter(|j| removed.contains(j)).collect();
    let kept: Vec<usize> = (0..k).filter(|j| !removed.contains(j)).collect();
    let h = &c.gram[0];
    let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    let lam = damp * mean_diag.max(1e-12);
    let hkk = faer::Mat::<f64>::from_fn(kept.len(), kept.len(), |a, b| {
        h[kept[a] * k + kept[b]] + if a == b { lam } else { 0.0 }
    });
    // rhs = H[K,R] W_R^T  (|K| x rows)
    let hkr = faer::Mat::<f64>::from_fn(kept.len(), r.len(), |a, b| h[kept[a] * k + r[b]]);
    let wr = faer::Mat::<f64>::from_fn(r.len(), rows, |b, o| view.v[o * k + r[b]]);
    let rhs = &hkr * &wr;
    let llt = hkk.llt(faer::Side::Lower).map_err(|e| Error::Pass {
        pass: "prune-channels".into(),
        msg: format!("layer '{}': cannot refit ({e:?}); try a larger damp", w.layer),
    })?;
    let x = llt.solve(&rhs);
    for o in 0..rows {
        for (a, &j) in kept.iter().enumerate() {
            view.v[o * k + j] += x[(a, o)];
        }
        for &j in &r {
            view.v[o * k + j] = 0.0;
        }
    }
    write_rows(w, &view)
}
