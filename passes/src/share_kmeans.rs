//! `share-kmeans{bits=4 scope=layer}`: weight sharing (Deep Compression). The non-zero
//! weights of a layer (`scope=layer`) or of each output channel (`scope=channel`) are
//! clustered by 1-D k-means into at most 2^bits centroids; each weight becomes its centroid,
//! so it is stored as a b-bit index plus a shared codebook. Zeros (pruned connections) stay
//! zeros and take no centroid.
//!
//! `init=kmeans++` (default; deterministic, `seed=N`) or `init=linear` (centroids spread
//! evenly over [min, max], as Deep Compression recommends for keeping large weights).
//! `refine=true` (default when `--calib` is given) then re-solves the centroid values, with
//! the assignments fixed, for the least squared error of the layer's outputs on the
//! calibration inputs: minimise trace(dW H dW^T), H = X^T X, a k x k linear system.
//!
//! `assign=nearest` (default) gives each weight its nearest centroid. `assign=obs` (needs
//! `--calib`) assigns column by column and spreads each weight's rounding error onto the row's
//! later weights through the inverse Hessian (GPTQ / OBQ, `damp` as for `prune-sparsegpt`):
//! a weight may take a farther centroid when that lets the layer's output on the calibration
//! inputs stay closer. Pruned weights stay zero; the centroids are k-means' (then refined).
//!
//! `granularity=sensitivity` (needs `--calib`) gives each layer its own bit width (1..=8) so
//! that the layers take no more bytes than at `bits` each (indices of the non-zeros plus the
//! codebooks), spending them where a bit lowers the estimated relative output error most.

use bonsai::encoding::{Codebook, Encoding};
use bonsai::pass::{Options, Pass, PassContext};
use bonsai::{Error, Result};
use melior::ir::Module;

use crate::common::{flag, write_rows, RowView};

pub struct ShareKmeans {
    bits: u32,
    per_channel: bool,
    linear_init: bool,
    seed: u64,
    /// None: refine when calibration data is present.
    refine: Option<bool>,
    /// Assign by OBS rounding (with this damping) instead of to the nearest centroid.
    obs: Option<f64>,
    /// Per-layer bit widths by estimated output error, `bits` on average (in bytes).
    sensitivity: bool,
    sel: crate::common::Sel,
}

impl ShareKmeans {
    pub const SUMMARY: &'static str =
        "k-means weight sharing into 2^bits centroids per layer or channel (zeros stay zeros)";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &["bits=6", "bits=5", "bits=4", "bits=3", "bits=2"];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&[
            "bits",
            "scope",
            "init",
            "seed",
            "refine",
            "assign",
            "damp",
            "granularity",
            "exclude",
            "only",
        ])?;
        let bits = opts.u64_or("bits", 4)?;
        if !(1..=8).contains(&bits) {
            return Err(Error::option("bits", format!("must be 1..=8, got {bits}")));
        }
        let per_channel = match opts.get("scope").unwrap_or("layer") {
            "layer" => false,
            "channel" => true,
            s => return Err(Error::option("scope", format!("'{s}' is not layer or channel"))),
        };
        let linear_init = match opts.get("init").unwrap_or("kmeans++") {
            "kmeans++" => false,
            "linear" => true,
            s => return Err(Error::option("init", format!("'{s}' is not kmeans++ or linear"))),
        };
        let obs = crate::common::assign(opts)?;
        let sensitivity = match opts.get("granularity").unwrap_or("layer") {
            "layer" => false,
            "sensitivity" => true,
            s => {
                return Err(Error::option(
                    "granularity",
                    format!("'{s}' is not layer or sensitivity"),
                ))
            }
        };
        Ok(Box::new(ShareKmeans {
            obs,
            sensitivity,
            bits: bits as u32,
            per_channel,
            linear_init,
            seed: opts.u64_or("seed", 0)?,
            refine: match opts.get("refine") {
                None => None,
                Some(_) => Some(flag(opts, "refine", true)?),
            },
            sel: crate::common::Sel::parse(opts)?,
        }))
    }
}

impl Pass for ShareKmeans {
    fn name(&self) -> &'static str {
        "share-kmeans"
    }

    fn needs_calibration(&self) -> bool {
        self.refine == Some(true) || self.obs.is_some() || self.sensitivity
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        let (ws, views) = self.sel.views(module)?;
        let refine = self.refine.unwrap_or(cx.calib.is_some());
        let bits = if self.sensitivity {
            let calibs = ws
                .iter()
                .map(|w| cx.calib_for(self.name(), &w.name))
                .collect::<Result<Vec<_>>>()?;
            self.allocate_bits(&views, &calibs)?
        } else {
            vec![self.bits; views.len()]
        };
        for ((w, view), &b) in ws.iter().zip(&views).zip(&bits) {
            let calib = if refine || self.obs.is_some() {
                Some(cx.calib_for(self.name(), &w.name)?)
            } else {
                None
            };
            let (v, cb) = self.share(view, calib, b, refine)?;
            write_rows(w, &RowView { rows: view.rows, cols: view.cols, v })?;
            w.set_encoding(&Encoding::Codebook(Codebook {
                bits: b,
                centroids: cb,
            }))?;
        }
        Ok(())
    }
}

impl ShareKmeans {
    /// One layer shared into 2^bits centroids (per layer or channel): the shared weights
    /// (row-major, as `view`) and the codebooks.
    fn share(
        &self,
        view: &RowView,
        calib: Option<&bonsai::calib::LayerCalib>,
        bits: u32,
        refine: bool,
    ) -> Result<(Vec<f64>, Vec<Vec<f32>>)> {
        let (rows, cols) = (view.rows, view.cols);
        let k = 1usize << bits;
        let groups: Vec<std::ops::Range<usize>> = if self.per_channel {
            (0..rows).map(|r| r * cols..(r + 1) * cols).collect()
        } else {
            std::iter::once(0..rows * cols).collect()
        };
        // Cluster each group's non-zeros; NONE marks a zero.
        let mut assign = vec![NONE; view.v.len()];
        let mut centroids = Vec::with_capacity(groups.len());
        for (gi, range) in groups.iter().enumerate() {
            let vals: Vec<f64> = view.v[range.clone()]
                .iter()
                .copied()
                .filter(|&x| x != 0.0)
                .collect();
            let seed = self.seed ^ (gi as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let c = kmeans_1d(&vals, k, self.linear_init, seed);
            for i in range.clone() {
                if view.v[i] != 0.0 {
                    assign[i] = nearest(&c, view.v[i]) as u32;
                }
            }
            centroids.push(c);
        }
        if let (Some(damp), Some(calib)) = (self.obs, calib) {
            assign_obs(view, calib, &mut assign, &centroids, self.per_channel, damp)?;
        }
        if let (true, Some(calib)) = (refine, calib) {
            refine_centroids(view, calib, &assign, &mut centroids, self.per_channel);
        }
        let cb: Vec<Vec<f32>> = centroids
            .iter()
            .map(|c| c.iter().map(|&x| x as f32).collect())
            .collect();
        let v = (0..view.v.len())
            .map(|i| match assign[i] {
                NONE => 0.0,
                a => cb[if self.per_channel { i / cols } else { 0 }][a as usize] as f64,
            })
            .collect();
        Ok((v, cb))
    }

    /// Per-layer bit widths (1 ..= 8) for `granularity=sensitivity`: every layer starts at
    /// 1 bit and the layer whose next bit lowers the estimated relative output error
    /// (trace(dW H dW^T) / trace(W H W^T)) most per byte it adds gains it, until no bit that
    /// lowers an error fits: the layers may not take more than they would at `bits` each. Bytes: the non-zeros'
    /// indices plus the f32 codebooks.
    fn allocate_bits(
        &self,
        views: &[RowView],
        calibs: &[&bonsai::calib::LayerCalib],
    ) -> Result<Vec<u32>> {
        let books = |v: &RowView| if self.per_channel { v.rows } else { 1 };
        let nnz = |v: &RowView| v.v.iter().filter(|x| **x != 0.0).count() as f64;
        let bytes = |v: &RowView, b: u32| nnz(v) * b as f64 / 8.0 + (books(v) << b) as f64 * 4.0;
        let budget: f64 = views.iter().map(|v| bytes(v, self.bits)).sum();
        let mut curves = Vec::with_capacity(views.len());
        for (v, c) in views.iter().zip(calibs) {
            let w: Vec<f32> = v.v.iter().map(|&x| x as f32).collect();
            let mut e = Vec::with_capacity(8);
            for b in 1..=8u32 {
                let (q, _) = self.share(v, Some(c), b, false)?;
                let q: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                let err = c.output_error(v.rows, &w, &q);
                e.push(if err.is_finite() { err } else { 0.0 });
            }
            curves.push(e);
        }
        let mut at = vec![1u32; views.len()];
        let mut used: f64 = views.iter().map(|v| bytes(v, 1)).sum();
        loop {
            let mut best: Option<(usize, f64, f64)> = None;
            for (l, v) in views.iter().enumerate() {
                if at[l] >= 8 {
                    continue;
                }
                let db = bytes(v, at[l] + 1) - bytes(v, at[l]);
                if used + db > budget {
                    continue;
                }
                let de = curves[l][at[l] as usize - 1] - curves[l][at[l] as usize];
                if de <= 0.0 {
                    continue;
                }
                let gain = de / db.max(1e-9);
                if best.is_none_or(|(_, g, _)| gain > g) {
                    best = Some((l, gain, db));
                }
            }
            let Some((l, _, db)) = best else { break };
            at[l] += 1;
            used += db;
        }
        Ok(at)
    }
}

const NONE: u32 = u32::MAX;

/// Re-assign the non-zeros of `view` (NONE in `assign` marks a zero) by OBS rounding onto
/// `centroids`, group by group of the calibration's Gram matrices.
fn assign_obs(
    view: &RowView,
    calib: &bonsai::calib::LayerCalib,
    assign: &mut [u32],
    centroids: &[Vec<f64>],
    per_channel: bool,
    damp: f64,
) -> Result<()> {
    let (rows, k) = (view.rows, view.cols);
    if calib.k != k || calib.groups == 0 || rows % calib.groups != 0 {
        return Ok(());
    }
    let rpg = rows / calib.groups;
    for g in 0..calib.groups {
        let span = g * rpg * k..(g + 1) * rpg * k;
        let mut w = view.v[span.clone()].to_vec();
        let asg = &mut assign[span];
        crate::obs::round_obs(
            &mut w,
            rpg,
            k,
            &calib.gram[g],
            damp,
            128,
            "share-kmeans",
            |r, c, v| {
                let i = r * k + c;
                if asg[i] == NONE {
                    return 0.0;
                }
                let cb = &centroids[if per_channel { g * rpg + r } else { 0 }];
                let a = nearest(cb, v);
                asg[i] = a as u32;
                cb[a]
            },
        )?;
    }
    Ok(())
}

/// Index of the centroid nearest to `x` (centroids sorted ascending).
fn nearest(c: &[f64], x: f64) -> usize {
    let i = c.partition_point(|&m| m < x);
    if i == 0 {
        0
    } else if i == c.len() || (x - c[i - 1]) <= (c[i] - x) {
        i - 1
    } else {
        i
    }
}

/// 1-D k-means: at most `k` sorted centroids of `vals` (exactly the distinct values when
/// there are no more than `k`). Lloyd iterations on the sorted values with prefix sums, so
/// each iteration costs O(k log n).
pub fn kmeans_1d(vals: &[f64], k: usize, linear: bool, seed: u64) -> Vec<f64> {
    if vals.is_empty() {
        return vec![0.0];
    }
    let mut s = vals.to_vec();
    s.sort_by(f64::total_cmp);
    let mut distinct = s.clone();
    distinct.dedup();
    if distinct.len() <= k {
        return distinct;
    }
    let n = s.len();
    let mut prefix = vec![0.0f64; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + s[i];
    }
    let mut c: Vec<f64> = if linear {
        let (lo, hi) = (s[0], s[n - 1]);
        (0..k)
            .map(|i| lo + (hi - lo) * i as f64 / (k - 1) as f64)
            .collect()
    } else {
        kmeans_pp(&s, k, seed)
    };
    c.sort_by(f64::total_cmp);
    for _ in 0..300 {
        // Boundaries between neighbouring centroids split the sorted values into clusters.
        let mut next = c.clone();
        let mut start = 0;
        for j in 0..k {
            let end = if j + 1 == k {
                n
            } else {
                let mid = 0.5 * (c[j] + c[j + 1]);
                s.partition_point(|&x| x <= mid)
            };
            if end > start {
                next[j] = (prefix[end] - prefix[start]) / (end - start) as f64;
            }
            start = end.max(start);
        }
        next.sort_by(f64::total_cmp);
        if next == c {
            break;
        }
        c = next;
    }
    c.dedup();
    c
}

/// k-means++ seeding (D^2 sampling) with a deterministic xorshift generator.
fn kmeans_pp(s: &[f64], k: usize, seed: u64) -> Vec<f64> {
    let mut state = seed ^ 0x2545_F491_4F6C_DD1D;
    let mut rand = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let n = s.len();
    let mut c = vec![s[((rand() * n as f64) as usize).min(n - 1)]];
    let mut d2: Vec<f64> = s.iter().map(|&x| (x - c[0]).powi(2)).collect();
    while c.len() < k {
        let total: f64 = d2.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut t = rand() * total;
        let mut pick = n - 1;
        for (i, &d) in d2.iter().enumerate() {
            if t < d {
                pick = i;
                break;
            }
            t -= d;
        }
        let x = s[pick];
        c.push(x);
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min((s[i] - x).powi(2));
        }
    }
    c
}

/// Re-solve centroid values for least output error on the calibration inputs, assignments
/// fixed: with W' = sum_c c_c M_c, minimise trace((W - W') H (W - W')^T), i.e. solve
/// A c = b with A_cd = sum_r m_rc^T H m_rd and b_c = sum_r m_rc^T H w_r.
fn refine_centroids(
    view: &RowView,
    calib: &bonsai::calib::LayerCalib,
    assign: &[u32],
    centroids: &mut [Vec<f64>],
    per_channel: bool,
) {
    let (rows, k) = (view.rows, view.cols);
    if calib.k != k {
        return;
    }
    let rpg = rows / calib.groups.max(1);
    let nc = centroids.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut a = vec![0.0f64; nc * nc];
    let mut b = vec![0.0f64; nc];
    let mut y = vec![0.0f64; nc * k];
    let mut hw = vec![0.0f64; k];
    for r in 0..rows {
        let h = &calib.gram[(r / rpg.max(1)).min(calib.groups - 1)];
        let w = &view.v[r * k..(r + 1) * k];
        let asg = &assign[r * k..(r + 1) * k];
        y.iter_mut().for_each(|x| *x = 0.0);
        hw.iter_mut().for_each(|x| *x = 0.0);
        for i in 0..k {
            if asg[i] == NONE {
                continue;
            }
            let d = asg[i] as usize;
            let hi = &h[i * k..(i + 1) * k];
            let yd = &mut y[d * k..(d + 1) * k];
            for j in 0..k {
                yd[j] += hi[j];
                hw[j] += w[i] * hi[j];
            }
        }
        // Rows with no calibration signal still need their weights: handled by the ridge.
        for j in 0..k {
            if asg[j] == NONE {
                continue;
            }
            let c = asg[j] as usize;
            for d in 0..nc {
                a[c * nc + d] += y[d * k + j];
            }
            b[c] += hw[j];
        }
        if per_channel {
            solve_into(&mut a, &mut b, &mut centroids[r]);
            a.iter_mut().for_each(|x| *x = 0.0);
            b.iter_mut().for_each(|x| *x = 0.0);
        }
    }
    if !per_channel {
        solve_into(&mut a, &mut b, &mut centroids[0]);
    }
}

/// Solve (A + ridge) c = b in place of `c`, keeping a centroid whose row of A is empty (no
/// calibration signal) at its k-means value.
fn solve_into(a: &mut [f64], b: &mut [f64], c: &mut [f64]) {
    let n = b.len().min(c.len());
    let nc = b.len();
    let trace: f64 = (0..n).map(|i| a[i * nc + i]).sum();
    if trace <= 0.0 {
        return;
    }
    let ridge = 1e-9 * trace / n as f64;
    // Tikhonov towards the k-means values: (A + rI) c = b + r c0.
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).map(|j| a[i * nc + j]).collect();
            row[i] += ridge;
            row.push(b[i] + ridge * c[i]);
            row
        })
        .collect();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))
            .unwrap();
        if m[piv][col].abs() < 1e-300 {
            return;
        }
        m.swap(col, piv);
        for r in 0..n {
            if r != col {
                let f = m[r][col] / m[col][col];
                if f != 0.0 {
                    let pivot = m[col].clone();
                    for (x, p) in m[r][col..=n].iter_mut().zip(&pivot[col..=n]) {
                        *x -= f * p;
                    }
                }
            }
        }
    }
    for i in 0..n {
        let v = m[i][n] / m[i][i];
        if v.is_finite() {
            c[i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_well_separated_clusters() {
        let v: Vec<f64> = [-1.0, -1.1, -0.9, 2.0, 2.1, 1.9, 5.0, 5.2, 4.8].to_vec();
        for linear in [false, true] {
            let c = kmeans_1d(&v, 3, linear, 7);
            assert_eq!(c.len(), 3);
            for (got, want) in c.iter().zip([-1.0, 2.0, 5.0]) {
                assert!((got - want).abs() < 1e-9, "{c:?}");
            }
        }
        // No more centroids than distinct values.
        assert_eq!(kmeans_1d(&[1.0, 1.0, 2.0], 16, false, 0), vec![1.0, 2.0]);
    }

    /// The bytes go where bits lower the output error: a layer of one repeated value needs
    /// one bit; the spread-out layer takes what the 3-bit average leaves (4 bits).
    #[test]
    fn sensitivity_gives_bits_to_the_layer_that_needs_them() {
        let k = 256;
        let eye = |k: usize| -> Vec<f64> {
            (0..k * k).map(|i| if i % (k + 1) == 0 { 1.0 } else { 0.0 }).collect()
        };
        let calib = bonsai::calib::LayerCalib {
            groups: 1,
            k,
            gram: vec![eye(k)],
            sum: vec![vec![0.0; k]],
            rows: 1,
            act: Default::default(),
        };
        let spread = RowView {
            rows: 4,
            cols: k,
            v: (0..4 * k).map(|i| ((i * 37) % 101) as f64 / 10.0 - 5.0 + 0.01).collect(),
        };
        let flat = RowView { rows: 4, cols: k, v: vec![0.5; 4 * k] };
        let pass = ShareKmeans {
            bits: 3,
            per_channel: false,
            linear_init: false,
            seed: 0,
            refine: Some(false),
            obs: None,
            sensitivity: true,
            sel: Default::default(),
        };
        let bits = pass.allocate_bits(&[spread, flat], &[&calib, &calib]).unwrap();
        assert_eq!(bits[1], 1, "{bits:?}");
        assert_eq!(bits[0], 4, "{bits:?}");
    }

    #[test]
    fn nearest_picks_the_closest_centroid() {
        let c = [-1.0, 0.5, 2.0];
        assert_eq!(nearest(&c, -5.0), 0);
        assert_eq!(nearest(&c, 0.0), 1);
        assert_eq!(nearest(&c, 1.3), 2);
        assert_eq!(nearest(&c, 9.0), 2);
    }

    #[test]
    fn refinement_minimises_output_error_on_correlated_inputs() {
        // Two perfectly correlated inputs: only w0 + w1 of each row reaches the output. Row 0
        // (0.9 + 0.3) uses centroid 1 twice, row 1 (0.1 + 0.7) centroid 0 twice, so the
        // output-optimal centroids are 0.6 and 0.4, not the k-means values.
        let view = RowView { rows: 2, cols: 2, v: vec![0.9, 0.3, 0.1, 0.7] };
        let h = vec![1.0, 1.0, 1.0, 1.0];
        let calib = bonsai::calib::LayerCalib {
            groups: 1,
            k: 2,
            gram: vec![h],
            sum: vec![vec![0.0; 2]],
            rows: 1,
            act: Default::default(),
        };
        let assign = vec![1, 1, 0, 0];
        let mut c = vec![vec![0.2, 0.8]];
        refine_centroids(&view, &calib, &assign, &mut c, false);
        assert!((c[0][0] - 0.4).abs() < 1e-6 && (c[0][1] - 0.6).abs() < 1e-6, "{c:?}");
    }
}
