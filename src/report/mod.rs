//! Compression reports: per-layer size, sparsity and FLOPs; model size and fidelity.

use serde::Serialize;

use crate::encoding::Encoding;
use crate::graph::{Graph, Tensor};

#[derive(Clone, Debug, Serialize)]
pub struct LayerStats {
    pub layer: String,
    pub weight: String,
    pub kind: String,
    pub shape: Vec<usize>,
    pub params: usize,
    pub nnz: usize,
    pub sparsity: f64,
    /// Dense f32 storage.
    pub bytes_dense: usize,
    /// CSR over [out channels, rest]: f32 values, i32 column indices, i32 row pointers.
    pub bytes_csr: usize,
    pub flops_dense: u64,
    /// Dense FLOPs scaled by density (what a sparse kernel has to do).
    pub flops_effective: u64,
    /// The encoding a pass attached (`f32`, `kmeans 4b/layer`, `int8 sym/channel`).
    pub encoding: String,
    /// How the output ONNX stores it (`sparse kmeans 4b/layer`, `dense f32`, ...).
    pub stored_as: String,
    /// Bytes of the initializers holding it in the output ONNX.
    pub bytes_stored: usize,
    /// Entropy-coded: Huffman-coded symbols and position gaps plus codebooks/scales
    /// (Deep Compression's accounting).
    pub bytes_entropy: usize,
    /// Output channels removed by structured pruning (the output model's tensor is smaller).
    pub channels_removed: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Fidelity {
    pub samples: usize,
    pub top1_agreement: f64,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    pub max_abs_error: f64,
    pub accuracy_original: Option<f64>,
    pub accuracy_compressed: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub pipeline: String,
    pub layers: Vec<LayerStats>,
    /// Layer weights as dense f32.
    pub weight_bytes_before: usize,
    /// Each layer in its smaller in-memory format (dense f32 or CSR f32/i32).
    pub weight_bytes_after: usize,
    /// As stored in the output ONNX.
    pub weight_bytes_stored: usize,
    /// Entropy-coded.
    pub weight_bytes_entropy: usize,
    /// weight_bytes_before / weight_bytes_after.
    pub ratio: f64,
    pub ratio_stored: f64,
    pub ratio_entropy: f64,
    /// The input model file.
    pub model_bytes: usize,
    pub sparsity: f64,
    pub flops_dense: u64,
    pub flops_effective: u64,
    pub fidelity: Option<Fidelity>,
    pub output_file: String,
    pub output_bytes: usize,
    /// model_bytes / output_bytes.
    pub file_ratio: f64,
}

/// Stats of one weight used by node `layer` of the (bound, inferred) graph.
pub fn layer_stats(
    g: &Graph,
    layer: &str,
    weight: &str,
    kind: &str,
    out_dim: usize,
    t: &Tensor,
    enc: &Encoding,
) -> LayerStats {
    let v = t.to_f64_vec();
    let params = v.len();
    let nnz = v.iter().filter(|&&x| x != 0.0).count();
    let rows = t.shape.get(out_dim).copied().unwrap_or(1).max(1);
    let bytes_csr = nnz * 8 + (rows + 1) * 4;
    // MACs per output element = weight elements per output channel.
    let out_numel = g
        .nodes
        .node_weights()
        .find(|n| n.name == layer)
        .and_then(|n| g.ty(n.outputs[0]))
        .map(|t| t.numel())
        .unwrap_or(0);
    let flops_dense = 2 * out_numel as u64 * (params / rows) as u64;
    let density = if params == 0 {
        0.0
    } else {
        nnz as f64 / params as f64
    };
    LayerStats {
        layer: layer.into(),
        weight: weight.into(),
        kind: kind.into(),
        shape: t.shape.clone(),
        params,
        nnz,
        sparsity: 1.0 - density,
        bytes_dense: params * 4,
        bytes_csr,
        flops_dense,
        flops_effective: (flops_dense as f64 * density).round() as u64,
        encoding: enc.describe(),
        stored_as: "dense f32".into(),
        bytes_stored: params * 4,
        bytes_entropy: {
            let (r, c, rv) = crate::encoding::row_view(t, out_dim);
            crate::encoding::entropy_bytes(enc, r, c, &rv)
        },
        channels_removed: 0,
    }
}

/// Sums over the layers.
pub struct Totals {
    pub dense: usize,
    pub best_dense_csr: usize,
    pub stored: usize,
    pub entropy: usize,
    pub sparsity: f64,
    pub flops_dense: u64,
    pub flops_effective: u64,
}

pub fn totals(layers: &[LayerStats]) -> Totals {
    let params: usize = layers.iter().map(|l| l.params).sum();
    let nnz: usize = layers.iter().map(|l| l.nnz).sum();
    Totals {
        dense: layers.iter().map(|l| l.bytes_dense).sum(),
        best_dense_csr: layers.iter().map(|l| l.bytes_dense.min(l.bytes_csr)).sum(),
        stored: layers.iter().map(|l| l.bytes_stored).sum(),
        entropy: layers.iter().map(|l| l.bytes_entropy).sum(),
        sparsity: if params == 0 {
            0.0
        } else {
            1.0 - nnz as f64 / params as f64
        },
        flops_dense: layers.iter().map(|l| l.flops_dense).sum(),
        flops_effective: layers.iter().map(|l| l.flops_effective).sum(),
    }
}

/// Compare outputs [N, C] of the original and compressed model (first output), with labels.
pub fn fidelity(orig: &Tensor, comp: &Tensor, labels: Option<&[i64]>) -> Fidelity {
    let (a, b) = (orig.to_f64_vec(), comp.to_f64_vec());
    let c = *orig.shape.last().unwrap_or(&1).max(&1);
    let n = a.len() / c;
    let argmax = |v: &[f64]| {
        v.iter()
            .enumerate()
            .fold(0, |m, (i, &x)| if x > v[m] { i } else { m })
    };
    let (mut agree, mut cos_sum, mut cos_min, mut max_err) = (0usize, 0.0, f64::INFINITY, 0.0f64);
    let (mut acc_o, mut acc_c) = (0usize, 0usize);
    for r in 0..n {
        let (x, y) = (&a[r * c..(r + 1) * c], &b[r * c..(r + 1) * c]);
        let (ax, ay) = (argmax(x), argmax(y));
        agree += (ax == ay) as usize;
        let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        let nx = x.iter().map(|p| p * p).sum::<f64>().sqrt();
        let ny = y.iter().map(|p| p * p).sum::<f64>().sqrt();
        let cos = if nx * ny > 0.0 { dot / (nx * ny) } else { 1.0 };
        cos_sum += cos;
        cos_min = cos_min.min(cos);
        for (p, q) in x.iter().zip(y) {
            max_err = max_err.max((p - q).abs());
        }
        if let Some(l) = labels {
            acc_o += (ax as i64 == l[r]) as usize;
            acc_c += (ay as i64 == l[r]) as usize;
        }
    }
    let nf = n.max(1) as f64;
    Fidelity {
        samples: n,
        top1_agreement: agree as f64 / nf,
        cosine_mean: cos_sum / nf,
        cosine_min: if n == 0 { 1.0 } else { cos_min },
        max_abs_error: max_err,
        accuracy_original: labels.map(|_| acc_o as f64 / nf),
        accuracy_compressed: labels.map(|_| acc_c as f64 / nf),
    }
}

/// The terminal table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<28} {:>6} {:>9} {:>8} {:>8} {:<26} {:>10} {:>10} {:>10} {:>11} {:>9}\n",
        "layer",
        "kind",
        "params",
        "nnz",
        "sparsity",
        "stored as",
        "dense B",
        "stored B",
        "entropy B",
        "MFLOP dense",
        "MFLOP eff"
    ));
    for l in &r.layers {
        let name: String = if l.layer.chars().count() > 28 {
            let tail: String = l
                .layer
                .chars()
                .rev()
                .take(27)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("~{tail}")
        } else {
            l.layer.clone()
        };
        s.push_str(&format!(
            "{:<28} {:>6} {:>9} {:>8} {:>7.1}% {:<26} {:>10} {:>10} {:>10} {:>11.3} {:>9.3}\n",
            name,
            l.kind,
            l.params,
            l.nnz,
            100.0 * l.sparsity,
            l.stored_as,
            l.bytes_dense,
            l.bytes_stored,
            l.bytes_entropy,
            l.flops_dense as f64 / 1e6,
            l.flops_effective as f64 / 1e6
        ));
    }
    s.push_str(&format!(
        "weights: {} B dense f32 -> {} B stored in the ONNX ({:.2}x) -> {} B entropy-coded ({:.2}x); in memory (best of dense/CSR) {} B ({:.2}x)\n",
        r.weight_bytes_before,
        r.weight_bytes_stored,
        r.ratio_stored,
        r.weight_bytes_entropy,
        r.ratio_entropy,
        r.weight_bytes_after,
        r.ratio,
    ));
    s.push_str(&format!(
        "sparsity {:.1}%, FLOPs {:.2}M -> {:.2}M effective\n",
        100.0 * r.sparsity,
        r.flops_dense as f64 / 1e6,
        r.flops_effective as f64 / 1e6
    ));
    if let Some(f) = &r.fidelity {
        s.push_str(&format!(
            "fidelity on {} held-out samples: top-1 agreement {:.4}, cosine mean {:.6} (min {:.6}), max |err| {:.3e}",
            f.samples, f.top1_agreement, f.cosine_mean, f.cosine_min, f.max_abs_error
        ));
        if let (Some(a), Some(b)) = (f.accuracy_original, f.accuracy_compressed) {
            s.push_str(&format!(
                ", accuracy {:.4} -> {:.4} ({:+.2} pt)",
                a,
                b,
                100.0 * (b - a)
            ));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "wrote {} ({} bytes; the input model is {} bytes: {:.2}x smaller)\n",
        r.output_file, r.output_bytes, r.model_bytes, r.file_ratio
    ));
    if r.layers.iter().any(|l| l.stored_as != "dense f32") {
        s.push_str("note: standard ONNX has no sparse or codebook kernels: onnxruntime decodes the stored weights to dense f32 at load, so the file is smaller, not the arithmetic\n");
    }
    s
}
