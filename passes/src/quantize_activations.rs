//! `quantize-activations{calibration=minmax|percentile|mse}`: uint8 per-tensor ranges for the
//! input of every weighted layer, from the `--calib` data (needs it).
//!
//! `minmax` takes the observed range; `percentile` clips it to the `percentile=99.99`
//! (default) quantile of |x| on each side; `mse` searches the clipping that minimises the
//! squared quantisation error of the calibrated values. The range always contains 0, and the
//! zero point is an integer, so 0 (padding, ReLU outputs) stays exact. The ranges are tagged
//! on the layer's weight (`bonsai.act_scale`, `bonsai.act_zero_point`); the ONNX writer turns
//! them into QuantizeLinear/DequantizeLinear pairs (QDQ) in front of the layer, which int8
//! engines fuse with the quantised weights into integer kernels.

use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{list, select};

pub struct QuantizeActivations {
    method: Method,
    percentile: f64,
    exclude: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    MinMax,
    Percentile,
    Mse,
}

impl QuantizeActivations {
    pub const SUMMARY: &'static str =
        "uint8 ranges for every weighted layer's input from --calib (minmax|percentile|mse), written as QDQ";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &[];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&["calibration", "percentile", "exclude"])?;
        let method = match opts.get("calibration").unwrap_or("minmax") {
            "minmax" => Method::MinMax,
            "percentile" => Method::Percentile,
            "mse" => Method::Mse,
            m => {
                return Err(Error::option(
                    "calibration",
                    format!("'{m}' is not minmax, percentile or mse"),
                ))
            }
        };
        let percentile = opts.f64_or("percentile", 99.99)?;
        if !(50.0..=100.0).contains(&percentile) {
            return Err(Error::option(
                "percentile",
                format!("must be in [50, 100], got {percentile}"),
            ));
        }
        Ok(Box::new(QuantizeActivations {
            method,
            percentile,
            exclude: list(opts, "exclude"),
        }))
    }
}

/// uint8 (scale, zero point) for the range [lo, hi] (widened to contain 0).
pub fn uint8_params(lo: f64, hi: f64) -> (f32, i32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if hi - lo <= 0.0 {
        return (1.0, 0);
    }
    let s = (hi - lo) / 255.0;
    let z = (-lo / s).round().clamp(0.0, 255.0);
    (s as f32, z as i32)
}

fn quant_error(sample: &[f32], (s, z): (f32, i32)) -> f64 {
    sample
        .iter()
        .map(|&x| {
            let q = ((x / s).round_ties_even() + z as f32).clamp(0.0, 255.0);
            let d = (q - z as f32) * s - x;
            (d * d) as f64
        })
        .sum()
}

impl QuantizeActivations {
    fn params(&self, a: &bonsai::calib::ActStats) -> (f32, i32) {
        let (lo, hi) = (a.min as f64, a.max as f64);
        match self.method {
            Method::MinMax => uint8_params(lo, hi),
            Method::Percentile => {
                let mut s: Vec<f32> = a.sample.clone();
                s.sort_by(f32::total_cmp);
                let q = |p: f64| {
                    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
                    s[i.min(s.len() - 1)] as f64
                };
                uint8_params(q(100.0 - self.percentile).max(lo), q(self.percentile).min(hi))
            }
            Method::Mse => {
                let mut best = uint8_params(lo, hi);
                let mut best_e = quant_error(&a.sample, best);
                for i in 1..=48 {
                    let f = 0.92f64.powi(i);
                    let p = uint8_params(lo * f, hi * f);
                    let e = quant_error(&a.sample, p);
                    if e < best_e {
                        (best, best_e) = (p, e);
                    }
                }
                best
            }
        }
    }
}

impl Pass for QuantizeActivations {
    fn name(&self) -> &'static str {
        "quantize-activations"
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        for w in select(module, &self.exclude)? {
            let c = cx.calib_for(self.name(), &w.name)?;
            if c.act.sample.is_empty() {
                continue;
            }
            let (s, z) = self.params(&c.act);
            w.set_tag(
                "bonsai.act_scale",
                &format!("dense<0x{:08X}> : tensor<1xf32>", s.to_bits()),
            )?;
            w.set_tag("bonsai.act_zero_point", &format!("{z} : i64"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_range_keeps_zero_exact() {
        let (s, z) = uint8_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        // ReLU outputs: zero point 0.
        assert_eq!(uint8_params(0.0, 6.0).1, 0);
        // A positive-only range still contains 0.
        assert_eq!(uint8_params(2.0, 4.0), uint8_params(0.0, 4.0));
    }

    #[test]
    fn mse_clipping_beats_minmax_on_heavy_tails() {
        // A large bulk in [0, 1) and one outlier at 3: the 3x finer step over the bulk is worth
        // the outlier's clipping error. (On a genuinely heavy tail MSE keeps the range, and
        // it should.)
        let n = 400_000;
        let mut sample: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
        sample.push(3.0);
        let max = sample.iter().cloned().fold(0.0f32, f32::max);
        let a = bonsai::calib::ActStats { min: 0.0, max, sample: sample.clone(), seen: n + 1 };
        let with = |method| QuantizeActivations { method, percentile: 99.9, exclude: vec![] }.params(&a);
        let (mm, pc, ms) = (with(Method::MinMax), with(Method::Percentile), with(Method::Mse));
        assert_eq!(mm, uint8_params(0.0, max as f64));
        assert!(pc.0 < mm.0, "percentile clips the tail: {pc:?} vs {mm:?}");
        assert!(ms.0 < mm.0, "mse clips the tail: {ms:?} vs {mm:?}");
        assert!(quant_error(&sample, ms) < quant_error(&sample, mm));
    }
}
