//! Calibration: run the model on calibration inputs and collect, for every layer weight, the
//! Gram matrix X^T X of the rows its weight multiplies (im2col patches for convolutions).
//! Activation-aware criteria (Wanda: |W| x ||X_j||) and second-order reconstruction
//! (OBS/SparseGPT: H = X^T X) both read it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use faer::Mat;

use crate::error::{Error, Result};
use crate::graph::{fold::for_each_index, tensor::strides, Tensor, ValueId};
use crate::session::{load_bound, Compiled};

/// Calibration statistics of one weight, in the ONNX layout's reduction order
/// (conv: (c, k...) within a group; gemm/matmul: the K axis).
#[derive(Clone, Debug)]
pub struct LayerCalib {
    /// Convolution groups (1 for gemm/matmul); each group has its own Gram matrix.
    pub groups: usize,
    /// Reduction length per group.
    pub k: usize,
    /// Row-major k x k Gram matrix per group, summed over `rows` rows.
    pub gram: Vec<Vec<f64>>,
    /// Column sums per group (divide by `rows` for the mean input, used by bias correction).
    pub sum: Vec<Vec<f64>>,
    pub rows: usize,
    /// The layer input's values seen: range, and an evenly strided sample of at most
    /// `ACT_SAMPLE` of them (for percentile / MSE activation ranges).
    pub act: ActStats,
}

/// Range and a sample of a layer input's values on the calibration data.
#[derive(Clone, Debug, Default)]
pub struct ActStats {
    pub min: f32,
    pub max: f32,
    pub sample: Vec<f32>,
    /// Values seen in total.
    pub seen: usize,
}

/// Largest activation sample kept per layer.
pub const ACT_SAMPLE: usize = 1 << 20;

impl ActStats {
    fn add(&mut self, v: &[f64]) {
        if self.seen == 0 {
            self.min = f32::INFINITY;
            self.max = f32::NEG_INFINITY;
        }
        for &x in v {
            self.min = self.min.min(x as f32);
            self.max = self.max.max(x as f32);
        }
        // Keep every k-th value, k chosen so a batch adds at most ACT_SAMPLE / 8 of them.
        let k = (v.len() / (ACT_SAMPLE / 8)).max(1);
        self.sample.extend(v.iter().step_by(k).map(|&x| x as f32));
        if self.sample.len() > ACT_SAMPLE {
            let s: Vec<f32> = self.sample.iter().step_by(2).copied().collect();
            self.sample = s;
        }
        self.seen += v.len();
    }
}

impl LayerCalib {
    /// Per-column squared norm of the inputs, ||X_j||^2 (the Gram diagonal).
    pub fn col_sq_norms(&self, group: usize) -> Vec<f64> {
        (0..self.k)
            .map(|j| self.gram[group][j * self.k + j])
            .collect()
    }

    /// Relative output error of replacing a [rows, cols] row view `w` by `w2` on the
    /// calibration inputs: sum_g trace(dW H dW^T) / trace(W H W^T).
    pub fn output_error(&self, rows: usize, w: &[f32], w2: &[f32]) -> f64 {
        let k = self.k;
        if w.len() != rows * k || self.groups == 0 {
            return f64::NAN;
        }
        let rpg = rows / self.groups;
        let (mut num, mut den) = (0.0, 0.0);
        for g in 0..self.groups {
            let h = Mat::<f64>::from_fn(k, k, |i, j| self.gram[g][i * k + j]);
            let quad = |m: &Mat<f64>| -> f64 {
                let mh = m * &h;
                (0..rpg)
                    .map(|r| (0..k).map(|j| mh[(r, j)] * m[(r, j)]).sum::<f64>())
                    .sum()
            };
            let at = |r: usize, j: usize| (g * rpg + r) * k + j;
            let wm = Mat::<f64>::from_fn(rpg, k, |r, j| w[at(r, j)] as f64);
            let dm = Mat::<f64>::from_fn(rpg, k, |r, j| (w[at(r, j)] - w2[at(r, j)]) as f64);
            num += quad(&dm);
            den += quad(&wm);
        }
        if den > 0.0 {
            num / den
        } else {
            0.0
        }
    }

    /// Mean input row of a group.
    pub fn mean(&self, group: usize) -> Vec<f64> {
        let n = self.rows.max(1) as f64;
        self.sum[group].iter().map(|s| s / n).collect()
    }
}

/// Keyed by weight name.
pub type Calibration = HashMap<String, LayerCalib>;

struct Site {
    weight: String,
    x: ValueId,
    op: String,
    groups: usize,
    trans_a: bool,
    kernel: Vec<usize>,
    strides: Vec<i64>,
    dil: Vec<i64>,
    pads: Vec<i64>,
    k: usize,
}

/// Run `model` on `inputs` (first dim = samples) `batch` samples at a time and gather the
/// statistics of every Conv/Gemm/MatMul with a constant weight.
pub fn capture(
    model: &Path,
    inputs: &BTreeMap<String, Tensor>,
    batch: usize,
) -> Result<Calibration> {
    let n = inputs
        .values()
        .next()
        .map(|t| t.shape.first().copied().unwrap_or(1))
        .unwrap_or(0);
    if n == 0 {
        return Err(Error::input("<calibration>", "no samples"));
    }
    let b = batch.clamp(1, n);
    let shapes: HashMap<String, Vec<usize>> = inputs
        .iter()
        .map(|(k, t)| {
            let mut s = t.shape.clone();
            s[0] = b;
            (k.clone(), s)
        })
        .collect();
    let mut g = load_bound(model, &shapes)?;
    let mut sites = Vec::new();
    for node in g.nodes.node_weights() {
        if !matches!(node.op.as_str(), "Conv" | "Gemm" | "MatMul") {
            continue;
        }
        let (Some(x), Some(w)) = (node.inputs[0], node.inputs.get(1).copied().flatten()) else {
            continue;
        };
        let Some(wt) = g.konst(w) else { continue };
        if !wt.dtype().is_float() || (node.op == "MatMul" && wt.shape.len() != 2) {
            continue;
        }
        let a = &node.attrs;
        let groups = if node.op == "Conv" {
            a.int_or("group", 1) as usize
        } else {
            1
        };
        let k = match node.op.as_str() {
            "Conv" => wt.shape[1..].iter().product(),
            "Gemm" if a.int_or("transB", 0) != 0 => wt.shape[1],
            _ => wt.shape[0],
        };
        let ints = |k: &str| a.ints(k).map(|v| v.to_vec()).unwrap_or_default();
        sites.push(Site {
            weight: g.values[w].name.clone(),
            x,
            op: node.op.clone(),
            groups,
            trans_a: a.int_or("transA", 0) != 0,
            kernel: ints("kernel").iter().map(|&v| v as usize).collect(),
            strides: ints("strides"),
            dil: ints("dilations"),
            pads: ints("pads"),
            k,
        });
    }
    // Expose every layer input as an extra output.
    let first_extra = g.outputs.len();
    let mut extra: Vec<ValueId> = Vec::new();
    for s in &sites {
        if !extra.contains(&s.x) {
            extra.push(s.x);
        }
    }
    g.outputs.extend(&extra);
    let c = Compiled::new(g)?;
    let mut cal: Calibration = sites
        .iter()
        .map(|s| {
            (
                s.weight.clone(),
                LayerCalib {
                    groups: s.groups,
                    k: s.k,
                    gram: vec![vec![0.0; s.k * s.k]; s.groups],
                    sum: vec![vec![0.0; s.k]; s.groups],
                    rows: 0,
                    act: ActStats::default(),
                },
            )
        })
        .collect();
    let mut start = 0;
    while start < n {
        let take = b.min(n - start);
        let chunk: BTreeMap<String, Tensor> = inputs
            .iter()
            .map(|(k, t)| (k.clone(), crate::session::slice_rows(t, start, take, b)))
            .collect();
        let outs = c.run_named(&chunk)?;
        for s in &sites {
            let pos = extra.iter().position(|&v| v == s.x).expect("exposed");
            let x = &outs[first_extra + pos].1;
            let lc = cal.get_mut(&s.weight).expect("site");
            let per_sample = x.len() / x.shape.first().copied().unwrap_or(1).max(1);
            lc.act.add(&x.to_f64_vec()[..take * per_sample]);
            accumulate(s, x, take, lc);
        }
        start += take;
    }
    Ok(cal)
}

fn add_gram(gram: &mut [f64], sum: &mut [f64], k: usize, rows: &[f64], nrows: usize) {
    if nrows == 0 {
        return;
    }
    for r in 0..nrows {
        for j in 0..k {
            sum[j] += rows[r * k + j];
        }
    }
    let p = Mat::<f64>::from_fn(nrows, k, |i, j| rows[i * k + j]);
    let g = p.transpose() * &p;
    for i in 0..k {
        for j in 0..k {
            gram[i * k + j] += g[(i, j)];
        }
    }
}

fn accumulate(s: &Site, x: &Tensor, take: usize, lc: &mut LayerCalib) {
    let v = x.to_f64_vec();
    const CHUNK: usize = 4096;
    match s.op.as_str() {
        "Conv" => {
            let (cin, sp) = (x.shape[1], &x.shape[2..]);
            let r = sp.len();
            let cg = cin / s.groups;
            let xs = strides(&x.shape);
            // Output spatial sizes.
            let osp: Vec<usize> = (0..r)
                .map(|i| {
                    let ext = (s.kernel[i] as i64 - 1) * s.dil[i] + 1;
                    ((sp[i] as i64 + s.pads[i] + s.pads[i + r] - ext) / s.strides[i] + 1) as usize
                })
                .collect();
            for gi in 0..s.groups {
                let mut buf = Vec::with_capacity(CHUNK * s.k);
                let mut nrows = 0;
                for nb in 0..take {
                    for_each_index(&osp, |o| {
                        for c in 0..cg {
                            for_each_index(&s.kernel, |kk| {
                                let mut off = nb * xs[0] + (gi * cg + c) * xs[1];
                                let mut inside = true;
                                for i in 0..r {
                                    let p = o[i] as i64 * s.strides[i] + kk[i] as i64 * s.dil[i]
                                        - s.pads[i];
                                    if p < 0 || p >= sp[i] as i64 {
                                        inside = false;
                                        break;
                                    }
                                    off += p as usize * xs[2 + i];
                                }
                                buf.push(if inside { v[off] } else { 0.0 });
                            });
                        }
                        nrows += 1;
                        if nrows == CHUNK {
                            add_gram(&mut lc.gram[gi], &mut lc.sum[gi], s.k, &buf, nrows);
                            buf.clear();
                            nrows = 0;
                        }
                    });
                }
                add_gram(&mut lc.gram[gi], &mut lc.sum[gi], s.k, &buf, nrows);
            }
            lc.rows += take * osp.iter().product::<usize>();
        }
        _ => {
            // Gemm A [B, K] (or [K, B] with transA); MatMul X [B, ..., K].
            let k = s.k;
            let (rows, data): (usize, Vec<f64>) = if s.op == "Gemm" && s.trans_a {
                let bcols = x.shape[1];
                (
                    take,
                    (0..take)
                        .flat_map(|i| (0..k).map(move |j| (i, j)))
                        .map(|(i, j)| v[j * bcols + i])
                        .collect(),
                )
            } else {
                let per_sample = x.len() / x.shape[0].max(1);
                let rows = take * per_sample / k;
                (rows, v[..rows * k].to_vec())
            };
            for c in (0..rows).step_by(CHUNK) {
                let e = (c + CHUNK).min(rows);
                add_gram(
                    &mut lc.gram[0],
                    &mut lc.sum[0],
                    k,
                    &data[c * k..e * k],
                    e - c,
                );
            }
            lc.rows += rows;
        }
    }
}
