//! `quantize-weights{bits=8 scheme=sym granularity=channel search=true}`: uniform b-bit
//! weights, value = (q - zero_point) * scale, with one scale per tensor, per output channel or
//! per group of G reduction weights (`granularity=group:G`).
//!
//! `scheme=sym` stores signed integers with zero point 0; `asym` unsigned ones with an integer
//! zero point (so 0, a pruned weight, stays exactly 0 either way). `search=true` (default)
//! tries clipping the range to 100%, 98%, ... 50% of the largest magnitude and keeps the scale
//! with the least squared error per group. `correct_bias=true` (needs `--calib`) moves each
//! output's mean shift on the calibration inputs into the bias.
//!
//! `assign=obs` (needs `--calib`; `damp=0.01`) rounds column by column with OBS error feedback
//! (GPTQ), as `share-kmeans{assign=obs}` does onto its codebook. Pruned weights stay zero.
//! On a pruned layer, a fine per-tensor grid (`bits=5 granularity=tensor`) entropy-codes
//! smaller than 4-bit k-means codebooks at a lower error: its symbols follow the weights'
//! peaked distribution, which Huffman coding exploits, and it has one scale, no codebook.

use bonsai::encoding::{Encoding, Quant};
use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{correct_bias, flag, write_rows, RowView};

pub struct QuantizeWeights {
    /// Round by OBS (with this damping) instead of to the nearest grid point.
    obs: Option<f64>,
    bits: u32,
    signed: bool,
    granularity: Granularity,
    search: bool,
    sel: crate::common::Sel,
    correct_bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Granularity {
    Tensor,
    Channel,
    Group(usize),
}

impl QuantizeWeights {
    pub const SUMMARY: &'static str =
        "uniform b-bit weights (sym|asym, per tensor|channel|group:G) with clipping search";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["bits=8", "bits=6", "bits=4", "bits=3", "bits=2", "bits=6 granularity=tensor search=false", "bits=5 granularity=tensor search=false"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["bits", "scheme", "granularity", "search", "exclude", "only", "correct_bias", "assign", "damp"])?;
        let obs = crate::common::assign(opts)?;
        let bits = opts.u64_or("bits", 8)?;
        if !(2..=8).contains(&bits) {
            return Err(Error::option("bits", format!("must be 2..=8, got {bits}")));
        }
        let signed = match opts.get("scheme").unwrap_or("sym") {
            "sym" => true,
            "asym" => false,
            s => return Err(Error::option("scheme", format!("'{s}' is not sym or asym"))),
        };
        let granularity = match opts.get("granularity").unwrap_or("channel") {
            "tensor" => Granularity::Tensor,
            "channel" => Granularity::Channel,
            g => match g.strip_prefix("group:").map(|n| n.parse::<usize>()) {
                Some(Ok(n)) if n > 0 => Granularity::Group(n),
                _ => {
                    return Err(Error::option(
                        "granularity",
                        format!("'{g}' is not tensor, channel or group:G (G > 0)"),
                    ))
                }
            },
        };
        Ok(Box::new(QuantizeWeights {
            bits: bits as u32,
            signed,
            granularity,
            search: flag(opts, "search", true)?,
            sel: crate::common::Sel::parse(opts)?,
            correct_bias: flag(opts, "correct_bias", false)?,
            obs,
        }))
    }

    /// The quantiser for one view: scales and zero points per parameter group.
    fn fit(&self, view: &RowView) -> Quant {
        let (rows, cols) = (view.rows, view.cols);
        let group = match self.granularity {
            Granularity::Group(g) => g,
            _ => 0,
        };
        let mut q = Quant {
            bits: self.bits,
            signed: self.signed,
            group,
            scales: Vec::new(),
            zero_points: Vec::new(),
        };
        // The elements of each parameter group.
        let members: Vec<Vec<f64>> = match self.granularity {
            Granularity::Tensor => vec![view.v.clone()],
            Granularity::Channel => (0..rows)
                .map(|r| view.v[r * cols..(r + 1) * cols].to_vec())
                .collect(),
            Granularity::Group(g) => (0..rows)
                .flat_map(|r| {
                    (0..cols.div_ceil(g)).map(move |j| {
                        view.v[r * cols + j * g..r * cols + ((j + 1) * g).min(cols)].to_vec()
                    })
                })
                .collect(),
        };
        for m in &members {
            let (s, z) = self.fit_group(m);
            q.scales.push(s);
            q.zero_points.push(z);
        }
        q
    }

    fn fit_group(&self, v: &[f64]) -> (f32, i32) {
        let one = Quant {
            bits: self.bits,
            signed: self.signed,
            group: 0,
            scales: vec![1.0],
            zero_points: vec![0],
        };
        let (qmin, qmax) = (one.qmin() as f64, one.qmax() as f64);
        let lo = v.iter().cloned().fold(0.0f64, f64::min);
        let hi = v.iter().cloned().fold(0.0f64, f64::max);
        let params = |alpha: f64| -> (f32, i32) {
            if self.signed {
                let m = lo.abs().max(hi) * alpha;
                ((m / qmax) as f32, 0)
            } else {
                let (a, b) = (lo * alpha, hi * alpha);
                let s = (b - a) / (qmax - qmin);
                let z = if s > 0.0 { (qmin - a / s).round() } else { 0.0 };
                (s as f32, z.clamp(qmin, qmax) as i32)
            }
        };
        let err = |(s, z): (f32, i32)| -> f64 {
            let q = Quant {
                scales: vec![s],
                zero_points: vec![z],
                ..one.clone()
            };
            v.iter()
                .map(|&x| {
                    let d = x - q.decode(q.quantize(x, 0), 0) as f64;
                    d * d
                })
                .sum()
        };
        let mut best = params(1.0);
        if best.0 == 0.0 {
            return (1.0, best.1); // an all-zero group
        }
        if self.search {
            let mut best_err = err(best);
            for i in 1..=25 {
                let p = params(1.0 - 0.02 * i as f64);
                let e = err(p);
                if e < best_err {
                    (best, best_err) = (p, e);
                }
            }
        }
        best
    }
}

impl Pass for QuantizeWeights {
    fn name(&self) -> &'static str {
        "quantize-weights"
    }

    fn needs_calibration(&self) -> bool {
        self.correct_bias || self.obs.is_some()
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        let (ws, views) = self.sel.views(module)?;
        for (w, view) in ws.iter().zip(&views) {
            if let Granularity::Group(g) = self.granularity {
                if view.cols % g != 0 {
                    return Err(Error::option(
                        "granularity",
                        format!(
                            "layer '{}' reduces over {} weights, which group:{g} does not divide (exclude={} to skip it)",
                            w.layer, view.cols, w.layer
                        ),
                    ));
                }
            }
            let q = self.fit(view);
            let cols = view.cols;
            let mut after = RowView {
                rows: view.rows,
                cols,
                v: (0..view.v.len())
                    .map(|i| {
                        let p = q.param_index(i / cols, i % cols, cols);
                        q.decode(q.quantize(view.v[i], p), p) as f64
                    })
                    .collect(),
            };
            if let Some(damp) = self.obs {
                let calib = cx.calib_for(self.name(), &w.name)?;
                after.v.clone_from(&view.v);
                round_obs_onto(&mut after, &q, calib, damp, self.name())?;
            }
            if self.correct_bias {
                correct_bias(cx, self.name(), module, w, view, &after)?;
            }
            write_rows(w, &after)?;
            w.set_encoding(&Encoding::Quant(q))?;
        }
        Ok(())
    }
}

/// Round `view` onto `q`'s grid column by column, spreading each weight's rounding error onto
/// the row's later weights through the inverse Hessian (GPTQ), group by group of the
/// calibration's Gram matrices. Zeros (pruned weights) stay zero; a weight may round to zero.
pub fn round_obs_onto(
    view: &mut RowView,
    q: &Quant,
    calib: &bonsai::calib::LayerCalib,
    damp: f64,
    pass: &str,
) -> Result<()> {
    round_grouped(view, q, calib.k, calib.groups, &calib.gram, damp, pass)
}

/// [`round_obs_onto`] with the Gram matrices given directly (one per group of rows).
pub fn round_grouped(
    view: &mut RowView,
    q: &Quant,
    k: usize,
    groups: usize,
    gram: &[Vec<f64>],
    damp: f64,
    pass: &str,
) -> Result<()> {
    let (rows, cols) = (view.rows, view.cols);
    let snap = |o: usize, c: usize, v: f64| {
        let p = q.param_index(o, c, cols);
        q.decode(q.quantize(v, p), p) as f64
    };
    if k != cols || groups == 0 || rows % groups != 0 {
        // No usable statistics (a layer the calibration did not see): nearest rounding.
        for i in 0..view.v.len() {
            view.v[i] = snap(i / cols, i % cols, view.v[i]);
        }
        return Ok(());
    }
    let rpg = rows / groups;
    let kept: Vec<bool> = view.v.iter().map(|&x| x != 0.0).collect();
    for (g, h) in gram.iter().enumerate().take(groups) {
        let span = g * rpg * k..(g + 1) * rpg * k;
        let kept = &kept[span.clone()];
        crate::obs::round_obs(&mut view.v[span], rpg, k, h, damp, 128, pass, |r, c, v| {
            if kept[r * k + c] {
                snap(g * rpg + r, c, v)
            } else {
                0.0
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_rounding_stays_on_the_grid_keeps_zeros_and_compensates() {
        // Inputs 0 and 1 perfectly correlated, input 2 independent; one scale (0.5) for the
        // tensor. Nearest rounding sends 0.2 + 0.2 to 0 + 0 (output 0 instead of 0.4); OBS
        // carries the first weight's error to the second: 0 + 0.5. The pruned weight stays 0.
        let q = Quant {
            bits: 4,
            signed: true,
            group: 0,
            scales: vec![0.5],
            zero_points: vec![0],
        };
        let h = vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let mut view = RowView {
            rows: 2,
            cols: 3,
            v: vec![0.2, 0.2, 0.0, 1.3, -0.9, 2.2],
        };
        round_grouped(&mut view, &q, 3, 1, &[h], 1e-6, "t").unwrap();
        assert_eq!(view.v[..3], [0.0, 0.5, 0.0]);
        // Every value is a multiple of the scale.
        assert!(view.v.iter().all(|x| (x / 0.5).fract() == 0.0), "{:?}", view.v);
        // Row 1: 1.3 -> 1.5 (error -0.2 moves onto -0.9: -1.1 -> -1.0); 2.2 -> 2.0.
        assert_eq!(view.v[3..], [1.5, -1.0, 2.0]);
    }
}
