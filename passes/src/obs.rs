//! Second-order pruning with reconstruction (OBS, as SparseGPT does it): prune column by column
//! and spread each removed weight's error onto the not-yet-visited columns through the inverse
//! Hessian H^-1 of the layer's reconstruction loss ||WX - W'X||^2 (H = 2 X^T X).

use bonsai::{Error, Result};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};

/// The upper Cholesky factor U of H^-1 (H^-1 = U^T U) for the k x k Gram matrix `h`, after
/// giving always-zero inputs a unit diagonal and adding `damp` x the mean diagonal.
fn inverse_hessian_factor(h: &[f64], k: usize, damp: f64, pass: &str) -> Result<Mat<f64>> {
    let mut hm = Mat::<f64>::from_fn(k, k, |i, j| h[i * k + j]);
    for i in 0..k {
        if hm[(i, i)] == 0.0 {
            hm[(i, i)] = 1.0;
        }
    }
    let mean_diag = (0..k).map(|i| hm[(i, i)]).sum::<f64>() / k.max(1) as f64;
    for i in 0..k {
        hm[(i, i)] += damp * mean_diag;
    }
    let fail = |what: &str, e: String| Error::Pass {
        pass: pass.into(),
        msg: format!("{what} ({e}); raise damp"),
    };
    let llt = hm
        .llt(Side::Lower)
        .map_err(|e| fail("Hessian not positive definite", format!("{e:?}")))?;
    let hinv = llt.inverse();
    let l = hinv
        .llt(Side::Lower)
        .map_err(|e| fail("inverse Hessian factorisation failed", format!("{e:?}")))?;
    Ok(l.L().transpose().to_owned())
}

/// Write a finished block of columns `w1` (from column `i1`) back into `w` (rows x k) and
/// spread its errors `err1` onto the later columns (GPTQ's lazy batch update).
fn write_block(w: &mut [f64], k: usize, i1: usize, w1: &Mat<f64>, err1: &Mat<f64>, u: &Mat<f64>) {
    let (rows, cnt) = (w1.nrows(), w1.ncols());
    let i2 = i1 + cnt;
    for r in 0..rows {
        for c in 0..cnt {
            w[r * k + i1 + c] = w1[(r, c)];
        }
    }
    if i2 < k {
        let upd = err1 * u.submatrix(i1, i2, cnt, k - i2);
        for r in 0..rows {
            for c in 0..k - i2 {
                w[r * k + i2 + c] -= upd[(r, c)];
            }
        }
    }
}

/// Prune `w` (rows x k, row-major) in place. `h` is the k x k Gram matrix X^T X. Either
/// `sparsity` (per block of columns, as SparseGPT's adaptive mask) or `nm` = (N kept, M).
/// With `rowblock` > 1 (dividing `rows`) the adaptive mask removes whole blocks of `rowblock`
/// rows x 1 column (BSR), ranked by the sum of their entries' OBS scores.
#[allow(clippy::too_many_arguments)]
pub fn sparsegpt(
    w: &mut [f64],
    rows: usize,
    k: usize,
    h: &[f64],
    sparsity: f64,
    nm: Option<(usize, usize)>,
    rowblock: usize,
    damp: f64,
    block: usize,
) -> Result<()> {
    let rb = rowblock.max(1);
    debug_assert!(rows.is_multiple_of(rb));
    // Inputs that are always zero carry no information: their weights go.
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            for r in 0..rows {
                w[r * k + i] = 0.0;
            }
        }
    }
    let u = inverse_hessian_factor(h, k, damp, "prune-sparsegpt")?;

    let mut i1 = 0;
    while i1 < k {
        let i2 = (i1 + block).min(k);
        let cnt = i2 - i1;
        let mut w1 = Mat::<f64>::from_fn(rows, cnt, |r, c| w[r * k + i1 + c]);
        let mut err1 = Mat::<f64>::zeros(rows, cnt);
        let mut mask = vec![false; rows * cnt];
        if nm.is_none() {
            // Scores per (block of rows, column), row-major over the blocks.
            let mut tmp: Vec<f32> = Vec::with_capacity(rows / rb * cnt);
            for b in 0..rows / rb {
                for c in 0..cnt {
                    let d = u[(i1 + c, i1 + c)];
                    let s: f64 = (b * rb..(b + 1) * rb)
                        .map(|r| w1[(r, c)] * w1[(r, c)] / (d * d))
                        .sum();
                    tmp.push(s as f32);
                }
            }
            let kk = (sparsity * tmp.len() as f64).floor() as usize;
            for i in crate::common::smallest(&tmp, kk) {
                let (b, c) = (i / cnt, i % cnt);
                for r in b * rb..(b + 1) * rb {
                    mask[r * cnt + c] = true;
                }
            }
        }
        for c in 0..cnt {
            if let Some((n, m)) = nm {
                if c % m == 0 {
                    let span = m.min(cnt - c);
                    let prune = span.saturating_sub(n.min(span));
                    for r in 0..rows {
                        let tmp: Vec<f32> = (0..span)
                            .map(|j| {
                                let d = u[(i1 + c + j, i1 + c + j)];
                                (w1[(r, c + j)] * w1[(r, c + j)] / (d * d)) as f32
                            })
                            .collect();
                        for j in crate::common::smallest(&tmp, prune) {
                            mask[r * cnt + c + j] = true;
                        }
                    }
                }
            }
            let d = u[(i1 + c, i1 + c)];
            for r in 0..rows {
                let wv = w1[(r, c)];
                let q = if mask[r * cnt + c] { 0.0 } else { wv };
                let e = (wv - q) / d;
                w1[(r, c)] = q;
                for j in c + 1..cnt {
                    let uj = u[(i1 + c, i1 + j)];
                    w1[(r, j)] -= e * uj;
                }
                err1[(r, c)] = e;
            }
        }
        write_block(w, k, i1, &w1, &err1, &u);
        i1 = i2;
    }
    Ok(())
}

/// Round `w` (rows x k, row-major) in place, column by column (GPTQ / OBQ): each entry
/// becomes `round(row, column, value)` and its error is spread onto the row's not-yet-visited
/// columns through the upper Cholesky factor of H^-1, so the layer's output on the
/// calibration inputs (Gram matrix `h` = X^T X) moves as little as the rounding allows.
/// `round` may return 0 for pruned entries, which then stay pruned.
#[allow(clippy::too_many_arguments)]
pub fn round_obs(
    w: &mut [f64],
    rows: usize,
    k: usize,
    h: &[f64],
    damp: f64,
    block: usize,
    pass: &str,
    mut round: impl FnMut(usize, usize, f64) -> f64,
) -> Result<()> {
    let u = inverse_hessian_factor(h, k, damp, pass)?;
    let mut i1 = 0;
    while i1 < k {
        let i2 = (i1 + block).min(k);
        let cnt = i2 - i1;
        let mut w1 = Mat::<f64>::from_fn(rows, cnt, |r, c| w[r * k + i1 + c]);
        let mut err1 = Mat::<f64>::zeros(rows, cnt);
        for c in 0..cnt {
            let d = u[(i1 + c, i1 + c)];
            for r in 0..rows {
                let wv = w1[(r, c)];
                let q = round(r, i1 + c, wv);
                let e = (wv - q) / d;
                w1[(r, c)] = q;
                for j in c + 1..cnt {
                    w1[(r, j)] -= e * u[(i1 + c, i1 + j)];
                }
                err1[(r, c)] = e;
            }
        }
        write_block(w, k, i1, &w1, &err1, &u);
        i1 = i2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With an identity Hessian, OBS reduces to magnitude pruning without updates.
    #[test]
    fn identity_hessian_is_magnitude_pruning() {
        let mut w = vec![1.0, -4.0, 2.0, 3.0];
        let h = vec![
            1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ];
        sparsegpt(&mut w, 1, 4, &h, 0.5, None, 1, 0.0, 128).unwrap();
        assert_eq!(w, vec![0.0, -4.0, 0.0, 3.0]);
    }

    /// With blocks of 4 rows the mask removes whole 4x1 blocks, those of least summed score
    /// (with an identity Hessian, squared L2 norm) across the blocks: columns 1 and 2 of the
    /// first block (16, 0.16), 1 and 3 of the second (0.04, 0.36). Column 0 of the first block
    /// stays whole for its one large entry (25.03), though three of its entries are tiny.
    #[test]
    fn row_blocks_are_pruned_whole() {
        let (rows, k) = (8, 4);
        let mut w: Vec<f64> = vec![
            0.1, 2.0, 0.2, 3.0, //
            0.1, 2.0, 0.2, 3.0, //
            5.0, 2.0, 0.2, 3.0, //
            0.1, 2.0, 0.2, 3.0, //
            4.0, 0.1, 2.1, 0.3, //
            4.0, 0.1, 2.1, 0.3, //
            4.0, 0.1, 2.1, 0.3, //
            4.0, 0.1, 2.1, 0.3,
        ];
        let h: Vec<f64> = (0..k * k)
            .map(|i| if i % (k + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        sparsegpt(&mut w, rows, k, &h, 0.5, None, 4, 0.0, 128).unwrap();
        for r in 0..rows {
            let zeros: Vec<usize> = (0..k).filter(|&c| w[r * k + c] == 0.0).collect();
            assert_eq!(
                zeros,
                if r < 4 { vec![1, 2] } else { vec![1, 3] },
                "row {r}: {w:?}"
            );
        }
    }

    /// Two perfectly correlated inputs: removing one moves its weight onto the other, so the
    /// layer output is unchanged (the "weight merging" of the domain brief).
    #[test]
    fn correlated_inputs_merge_weights() {
        let mut w = vec![1.0, 3.0];
        // X columns equal: X^T X = [[1, 1], [1, 1]] (+ damping keeps it invertible).
        let h = vec![1.0, 1.0, 1.0, 1.0];
        sparsegpt(&mut w, 1, 2, &h, 0.5, None, 1, 1e-6, 128).unwrap();
        assert_eq!(w[0], 0.0);
        assert!((w[1] - 4.0).abs() < 1e-3, "{w:?}");
    }

    /// Rounding to a grid with correlated inputs: the first entry's rounding error moves onto
    /// the second (their sum reaches the output), which plain rounding cannot do.
    #[test]
    fn obs_rounding_compensates_on_correlated_inputs() {
        let mut w = vec![0.4, 0.4];
        let h = vec![1.0, 1.0, 1.0, 1.0];
        let grid = |_: usize, _: usize, v: f64| v.round();
        round_obs(&mut w, 1, 2, &h, 1e-6, 128, "t", grid).unwrap();
        // Nearest rounding gives 0 + 0 (output 0 instead of 0.8); OBS gives 0 + 1.
        assert_eq!(w, vec![0.0, 1.0]);
    }

    #[test]
    fn two_four_keeps_two_of_every_four() {
        let mut w: Vec<f64> = (1..=8).map(|x| x as f64).collect();
        let mut h = vec![0.0; 64];
        for i in 0..8 {
            h[i * 8 + i] = 1.0;
        }
        sparsegpt(&mut w, 1, 8, &h, 0.0, Some((2, 4)), 1, 0.0, 128).unwrap();
        assert_eq!(w, vec![0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 7.0, 8.0]);
    }
}

#[cfg(test)]
mod reconstruction {
    use super::*;

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// On correlated inputs, OBS reconstruction must leave a smaller layer-output error than
    /// magnitude pruning at the same sparsity.
    #[test]
    fn beats_magnitude_on_output_error() {
        let (n, k, rows) = (400, 32, 8);
        let mut s = 7u64;
        let base: Vec<f64> = (0..n * 4).map(|_| lcg(&mut s)).collect();
        // Columns mix 4 latent factors: strongly correlated inputs.
        let mix: Vec<f64> = (0..4 * k).map(|_| lcg(&mut s)).collect();
        let x: Vec<f64> = (0..n * k)
            .map(|i| {
                (0..4)
                    .map(|f| base[(i / k) * 4 + f] * mix[f * k + i % k])
                    .sum::<f64>()
                    + 0.05 * lcg(&mut s)
            })
            .collect();
        let w: Vec<f64> = (0..rows * k).map(|_| lcg(&mut s)).collect();
        let mut h = vec![0.0; k * k];
        for r in 0..n {
            for i in 0..k {
                for j in 0..k {
                    h[i * k + j] += x[r * k + i] * x[r * k + j];
                }
            }
        }
        let err = |wp: &[f64]| -> f64 {
            let mut e = 0.0;
            for r in 0..n {
                for o in 0..rows {
                    let d: f64 = (0..k)
                        .map(|j| (w[o * k + j] - wp[o * k + j]) * x[r * k + j])
                        .sum();
                    e += d * d;
                }
            }
            e
        };
        let mut obs = w.clone();
        sparsegpt(&mut obs, rows, k, &h, 0.5, None, 1, 0.01, 128).unwrap();
        let mut mag = w.clone();
        let scores: Vec<f32> = w.iter().map(|v| v.abs() as f32).collect();
        for i in crate::common::smallest(&scores, rows * k / 2) {
            mag[i] = 0.0;
        }
        let (eo, em) = (err(&obs), err(&mag));
        assert_eq!(obs.iter().filter(|&&v| v == 0.0).count(), rows * k / 2);
        assert!(eo < 0.5 * em, "OBS error {eo} vs magnitude {em}");
    }
}
