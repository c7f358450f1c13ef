//! Batch tiling for native code: the per-sample layers at the start of a batched model (its
//! convolutions, activations and pools, up to the first op that mixes samples or reshapes)
//! run one image at a time inside one `scf.for` over the batch, so that every intermediate
//! map stays in the core's caches; the rest of the model (the FCs, which gain from whole
//! batches) runs on the whole batch after it. On the MNIST CNN at batch 64, each
//! intermediate of the first layers is 6.4 MB for the batch and 100 KB per image.

use std::collections::HashSet;

use petgraph::stable_graph::NodeIndex;

use crate::graph::{DType, Graph, ValueId};

/// Ops that compute each sample from that sample alone (for the inputs `batch_region`
/// allows).
const PER_SAMPLE: &[&str] = &[
    "Conv",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Identity",
    "QuantizeLinear",
    "DequantizeLinear",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Gemm",
    "MatMul",
];

/// Largest constant weight of a Gemm or MatMul that runs inside the loop, one row at a
/// time: the squeeze-and-excitation FCs of mobile CNNs. Larger ones end the region, as they
/// gain from whole batches (each weight read once for all rows).
const PER_IMAGE_FC_MAX: usize = 16384;

/// How a batched model's nodes split around the per-image loop.
pub(super) struct Split {
    /// Nodes that read neither the batch input nor anything computed from it and come
    /// before the loop's last node in topological order: emitted before the loop.
    pub pre: Vec<NodeIndex>,
    /// The per-sample nodes, in topological order: emitted once per image, in the loop.
    pub region: Vec<NodeIndex>,
    /// Everything else, after the loop.
    pub post: Vec<NodeIndex>,
    /// The batch input.
    pub input: ValueId,
    /// Values the loop computes that later nodes or the graph's outputs read.
    pub outputs: Vec<ValueId>,
    pub batch: usize,
}

/// The per-image region of `g` (in topological `order`), if it has one worth a loop: a
/// single f32 graph input batched along its first dimension (more than one sample), and at
/// least one convolution among the per-sample nodes that start from it. A node belongs to
/// the region when its op is in [`PER_SAMPLE`], it reads the input or region values (and
/// other values only without the batch dimension: lower rank, or a first dimension of 1;
/// for convolutions, FCs and reshapes, only the data input), and its outputs keep the batch
/// first (any element type: quantised activations too). The region ends at the first node that
/// reads it and does not qualify.
pub(super) fn batch_region(g: &Graph, order: &[NodeIndex]) -> Option<Split> {
    let [inp] = g.inputs.as_slice() else {
        return None;
    };
    let input = inp.value;
    let ty = g.ty(input)?;
    let batch = *ty.shape.first()?;
    if batch < 2 || ty.rank() < 3 || ty.dtype != DType::F32 {
        return None;
    }
    let mut inside: HashSet<ValueId> = HashSet::from([input]);
    let (mut pre, mut region, mut post) = (Vec::new(), Vec::new(), Vec::new());
    for &ix in order {
        let node = &g.nodes[ix];
        if !post.is_empty() {
            post.push(ix);
            continue;
        }
        let reads: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        if !reads.iter().any(|v| inside.contains(v)) {
            pre.push(ix);
            continue;
        }
        let rank = |v: ValueId| g.ty(v).map(|t| t.rank());
        let out_rank = node.outputs.first().and_then(|&o| rank(o));
        let data_first = || {
            node.inputs
                .first()
                .copied()
                .flatten()
                .is_some_and(|v| inside.contains(&v))
                && reads[1..].iter().all(|v| !inside.contains(v))
        };
        let small_fc = || {
            let w = node
                .inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|v| g.konst(v));
            let bias_1d = node.inputs.get(2).copied().flatten();
            w.is_some_and(|w| w.shape.len() == 2 && w.len() <= PER_IMAGE_FC_MAX)
                && node.attrs.int_or("transA", 0) == 0
                && bias_1d.is_none_or(|b| rank(b) == Some(1))
        };
        let others_unbatched = match node.op.as_str() {
            // Weights, statistics, shapes: the data input is the region's, the others not.
            "Conv" | "BatchNormalization" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                data_first()
            }
            "Gemm" | "MatMul" => data_first() && small_fc(),
            // Elementwise: the region's operands have the output's rank (a lower-rank one
            // would broadcast its batch dimension against another one); the others broadcast
            // without the batch dimension.
            _ => reads.iter().all(|&v| {
                g.ty(v).is_some_and(|t| {
                    if inside.contains(&v) {
                        Some(t.rank()) == out_rank
                    } else {
                        Some(t.rank()) < out_rank || t.shape.first() == Some(&1)
                    }
                })
            }),
        };
        let outs_batched = node.outputs.iter().all(|&o| {
            g.ty(o)
                .is_some_and(|t| t.rank() >= 2 && t.shape[0] == batch)
        });
        let training = node.op == "BatchNormalization"
            && (node.outputs.len() != 1 || node.attrs.int_or("training_mode", 0) != 0);
        if PER_SAMPLE.contains(&node.op.as_str()) && others_unbatched && outs_batched && !training {
            inside.extend(node.outputs.iter().copied());
            region.push(ix);
        } else {
            post.push(ix);
        }
    }
    if !region.iter().any(|&ix| g.nodes[ix].op == "Conv") {
        return None;
    }
    // A DequantizeLinear whose output leaves the loop runs after it, on the loop's
    // integers: the integer kernels after the loop find their input's integers through it.
    let read_after: HashSet<ValueId> = post
        .iter()
        .flat_map(|&ix| g.nodes[ix].inputs.iter().flatten().copied())
        .collect();
    let (moved, kept): (Vec<NodeIndex>, Vec<NodeIndex>) = region.iter().partition(|&&ix| {
        let node = &g.nodes[ix];
        node.op == "DequantizeLinear" && node.outputs.iter().any(|o| read_after.contains(o))
    });
    region = kept;
    post.splice(0..0, moved);
    // Nodes independent of the input that topological order put after the region's
    // last node still go before the loop; those after the region's end stay after it.
    let made: HashSet<ValueId> = region
        .iter()
        .flat_map(|&ix| g.nodes[ix].outputs.iter().copied())
        .collect();
    let mut outputs: Vec<ValueId> = Vec::new();
    let mut need = |v: ValueId| {
        if made.contains(&v) && !outputs.contains(&v) {
            outputs.push(v);
        }
    };
    for &ix in &post {
        g.nodes[ix].inputs.iter().flatten().for_each(|&v| need(v));
    }
    g.outputs.iter().for_each(|&v| need(v));
    Some(Split {
        pre,
        region,
        post,
        input,
        outputs,
        batch,
    })
}

/// `g` with the region's values (and the batch input) cut to one sample: what the loop body
/// is lowered against.
pub(super) fn one_sample(g: &Graph, s: &Split) -> Graph {
    let mut g1 = g.clone();
    let mut cut = |v: ValueId| {
        if let Some(t) = g1.values[v].ty.as_mut() {
            t.shape[0] = 1;
        }
    };
    cut(s.input);
    for &ix in &s.region {
        for &o in &g.nodes[ix].outputs {
            cut(o);
        }
    }
    g1
}
