//! Candidates: one lossy setting of one layer with its measured cost and error, as the
//! compression passes propose them to the allocator (and, next, the e-graph optimiser).

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub layer: String,
    pub weight: String,
    /// The pass and options that produce it, e.g. `prune-magnitude{layers=fc1:0.9}`.
    pub pipeline: String,
    pub sparsity: f64,
    /// The weight encoding it leaves (`f32`, `kmeans 4b/layer`, `int8 sym/channel`).
    pub encoding: String,
    /// Relative squared error with only this layer changed, measured as `measured` says:
    /// `model-output` (||y - y0||^2 / ||y0||^2 of the model on calibration data),
    /// `layer-output` (trace(dW H dW^T) / trace(W H W^T), H = X^T X from calibration) or
    /// `weights` (||dW||^2 / ||W||^2, without calibration data).
    pub error: f64,
    pub measured: &'static str,
    /// Top-1 agreement with the original on calibration data (model-output only).
    pub agreement: Option<f64>,
    /// Weight bytes: in the better of dense and CSR storage (pruning), or entropy-coded.
    pub bytes: usize,
    pub flops: u64,
}

/// Pick one candidate per layer (index into each layer's list; index 0 must be "unchanged")
/// so that at least `budget` weights are removed, greedily by least error added per weight
/// removed. Returns the chosen index per layer.
pub fn allocate(layers: &[Vec<Candidate>], params: &[usize], budget: f64) -> Vec<usize> {
    let mut at = vec![0usize; layers.len()];
    let removed = |at: &[usize]| -> f64 {
        at.iter()
            .enumerate()
            .map(|(l, &i)| layers[l][i].sparsity * params[l] as f64)
            .sum()
    };
    while removed(&at) < budget {
        let mut best: Option<(usize, usize, f64)> = None;
        for (l, cands) in layers.iter().enumerate() {
            let cur = &cands[at[l]];
            for (j, c) in cands.iter().enumerate().skip(at[l] + 1) {
                let dn = (c.sparsity - cur.sparsity) * params[l] as f64;
                if dn <= 0.0 {
                    continue;
                }
                let cost = (c.error - cur.error).max(0.0) / dn;
                if best.is_none_or(|(_, _, b)| cost < b) {
                    best = Some((l, j, cost));
                }
            }
        }
        let Some((l, j, _)) = best else { break };
        at[l] = j;
    }
    at
}
