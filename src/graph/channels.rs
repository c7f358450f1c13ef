//! Structured pruning plans: for a Conv/Gemm layer, every tensor that must shrink when some of
//! its output channels are removed, so the model stays consistent and genuinely smaller.
//!
//! From the layer's output the walk follows channel-preserving ops (activations, pools,
//! BatchNormalization, depthwise convolutions) to the layers that consume the channels
//! (Conv input channels, or Gemm/MatMul rows after Flatten). A layer whose channels reach
//! anything else (a graph output, Add, Concat, Reshape, ...) has no plan: removing its
//! channels would need partners kept in step, which this first version does not do.

use std::collections::HashMap;

use super::{Graph, ValueId};

/// One tensor to shrink: along `axis`, remove entries [c * block, (c + 1) * block) for every
/// removed channel c.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// Initializer (or Constant output) name.
    pub tensor: String,
    pub axis: usize,
    pub block: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Output channels of the layer.
    pub channels: usize,
    pub slices: Vec<Slice>,
    /// Depthwise Conv nodes on the way whose `group` attribute shrinks with the channels.
    pub groups: Vec<String>,
    /// Weights that read the channels directly (no depthwise convolution on the way), with
    /// how many consecutive reduction entries each channel spans in their row view
    /// (kernel size for a Conv, spatial size after Flatten, 1 for a Gemm): their remaining
    /// inputs can be refitted to make up for the removed ones.
    pub consumers: Vec<(String, usize)>,
}

const PASS_THROUGH: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "MaxPool",
    "AveragePool",
    "Identity",
    "Dropout",
];

/// Plans for every prunable layer, keyed by the layer's node name.
pub fn plans(g: &Graph) -> HashMap<String, Plan> {
    let mut users: HashMap<ValueId, Vec<(petgraph::graph::NodeIndex, usize)>> = HashMap::new();
    for ix in g.nodes.node_indices() {
        for (pos, v) in g.nodes[ix].inputs.iter().enumerate() {
            if let Some(v) = v {
                users.entry(*v).or_default().push((ix, pos));
            }
        }
    }
    let mut out = HashMap::new();
    for ix in g.nodes.node_indices() {
        let n = &g.nodes[ix];
        let Some(Some(w)) = n.inputs.get(1) else {
            continue;
        };
        let Some(wt) = g.konst(*w) else { continue };
        let (axis, channels) = match n.op.as_str() {
            "Conv" if n.attrs.int_or("group", 1) == 1 => (0, wt.shape[0]),
            "Gemm" if wt.shape.len() == 2 => {
                let a = if n.attrs.int_or("transB", 0) != 0 {
                    0
                } else {
                    1
                };
                (a, wt.shape[a])
            }
            _ => continue,
        };
        if channels < 2 {
            continue;
        }
        let mut plan = Plan {
            channels,
            ..Plan::default()
        };
        plan.slices.push(Slice {
            tensor: g.values[*w].name.clone(),
            axis,
            block: 1,
        });
        if let Some(Some(b)) = n.inputs.get(2) {
            if g.konst(*b).is_none() {
                continue;
            }
            plan.slices.push(Slice {
                tensor: g.values[*b].name.clone(),
                axis: 0,
                block: 1,
            });
        }
        if walk(g, &users, n.outputs[0], channels, &mut plan) {
            out.insert(n.name.clone(), plan);
        }
    }
    out
}

/// Follow value `v` (channels on axis 1) to its consumers; false if one is not rewritable.
fn walk(
    g: &Graph,
    users: &HashMap<ValueId, Vec<(petgraph::graph::NodeIndex, usize)>>,
    v: ValueId,
    channels: usize,
    plan: &mut Plan,
) -> bool {
    if g.outputs.contains(&v) {
        return false;
    }
    let Some(us) = users.get(&v) else {
        return false;
    };
    let konst = |n: &super::Node, i: usize| {
        n.inputs
            .get(i)
            .copied()
            .flatten()
            .filter(|x| g.konst(*x).is_some())
    };
    for &(ix, pos) in us {
        let n = &g.nodes[ix];
        if pos != 0 {
            return false; // the channels are a weight or parameter of something
        }
        let name = |x: ValueId| g.values[x].name.clone();
        match n.op.as_str() {
            op if PASS_THROUGH.contains(&op) => {
                if !walk(g, users, n.outputs[0], channels, plan) {
                    return false;
                }
            }
            "BatchNormalization" => {
                for i in 1..5 {
                    let Some(p) = konst(n, i) else { return false };
                    plan.slices.push(Slice {
                        tensor: name(p),
                        axis: 0,
                        block: 1,
                    });
                }
                if !walk(g, users, n.outputs[0], channels, plan) {
                    return false;
                }
            }
            "Conv" => {
                let Some(w) = konst(n, 1) else { return false };
                let wt = g.konst(w).expect("constant");
                let group = n.attrs.int_or("group", 1) as usize;
                if group == 1 {
                    plan.slices.push(Slice {
                        tensor: name(w),
                        axis: 1,
                        block: 1,
                    });
                    if plan.groups.is_empty() {
                        plan.consumers
                            .push((name(w), wt.shape[2..].iter().product()));
                    }
                } else if group == channels && wt.shape[0] == channels && wt.shape[1] == 1 {
                    // Depthwise: its filters go with the channels, and so does its output.
                    plan.slices.push(Slice {
                        tensor: name(w),
                        axis: 0,
                        block: 1,
                    });
                    match n.inputs.get(2).copied().flatten() {
                        Some(b) if g.konst(b).is_some() => plan.slices.push(Slice {
                            tensor: name(b),
                            axis: 0,
                            block: 1,
                        }),
                        Some(_) => return false,
                        None => {}
                    }
                    plan.groups.push(n.name.clone());
                    if !walk(g, users, n.outputs[0], channels, plan) {
                        return false;
                    }
                } else {
                    return false;
                }
            }
            "Gemm" | "MatMul" if g.ty(v).is_some_and(|t| t.rank() == 2) => {
                let Some(w) = konst(n, 1) else { return false };
                let axis = match n.op.as_str() {
                    "Gemm" if n.attrs.int_or("transA", 0) != 0 => return false,
                    "Gemm" if n.attrs.int_or("transB", 0) != 0 => 1,
                    _ => 0,
                };
                plan.slices.push(Slice {
                    tensor: name(w),
                    axis,
                    block: 1,
                });
                if plan.groups.is_empty() {
                    plan.consumers.push((name(w), 1));
                }
            }
            "Flatten" if n.attrs.int_or("axis", 1) == 1 => {
                let Some(t) = g.ty(v) else { return false };
                let block: usize = t.shape[2..].iter().product();
                let Some(fus) = users.get(&n.outputs[0]) else {
                    return false;
                };
                if g.outputs.contains(&n.outputs[0]) {
                    return false;
                }
                for &(fx, fpos) in fus {
                    let f = &g.nodes[fx];
                    let Some(w) = konst(f, 1) else { return false };
                    if fpos != 0 {
                        return false;
                    }
                    let axis = match f.op.as_str() {
                        "Gemm" if f.attrs.int_or("transA", 0) == 0 => {
                            if f.attrs.int_or("transB", 0) != 0 {
                                1
                            } else {
                                0
                            }
                        }
                        "MatMul" => 0,
                        _ => return false,
                    };
                    plan.slices.push(Slice {
                        tensor: name(w),
                        axis,
                        block,
                    });
                    if plan.groups.is_empty() {
                        plan.consumers.push((name(w), block));
                    }
                }
            }
            _ => return false,
        }
    }
    true
}
