//! Structured pruning plans: for a Conv/Gemm layer, every tensor that must shrink when some of
//! its output channels are removed, so the model stays consistent and genuinely smaller.
//!
//! From the layer's output the walk follows channel-preserving ops (activations, pools,
//! BatchNormalization, depthwise convolutions) to the layers that consume the channels
//! (Conv input channels, or Gemm/MatMul rows after Flatten). An Add of two activations
//! couples the layers that produce its two sides (a residual connection): they form one
//! group that must remove the same channels, and the walk goes on past the Add. A Concat along
//! the channels places the layer's channels at an offset in a wider tensor, and the walk goes
//! on with that offset (its consumers lose the same channels, shifted). A layer whose
//! channels reach anything else (a graph output, Reshape, ...) has no plan.

use std::collections::HashMap;

use super::{Graph, ValueId};

/// One tensor to shrink: along `axis`, remove entries [(offset + c) * block,
/// (offset + c + 1) * block) for every removed channel c (`offset`: where the layer's channels
/// start in a Concat's output, else 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// Initializer (or Constant output) name.
    pub tensor: String,
    pub axis: usize,
    pub block: usize,
    pub offset: usize,
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
    /// The layers that must remove the same channels (residual partners), sorted; the first
    /// names the group. Just the layer itself when it has none.
    pub members: Vec<String>,
    /// Partner layers found by this walk (merged into `members` by `plans`).
    coupled: Vec<String>,
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
    let mut failed = Vec::new();
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
            offset: 0,
        });
        if let Some(Some(b)) = n.inputs.get(2) {
            if g.konst(*b).is_none() {
                continue;
            }
            plan.slices.push(Slice {
                tensor: g.values[*b].name.clone(),
                axis: 0,
                block: 1,
                offset: 0,
            });
        }
        let at = At {
            width: channels,
            offset: 0,
        };
        if walk(g, &users, n.outputs[0], at, &mut plan) {
            out.insert(n.name.clone(), plan);
        } else {
            failed.push(n.name.clone());
        }
    }
    group(out, &failed)
}

/// Merge residual partners into groups: one plan per group (the union of the members'
/// slices), given to every member; a group with a member that cannot be rewritten, or whose
/// members disagree on the channel count, is dropped.
fn group(single: HashMap<String, Plan>, failed: &[String]) -> HashMap<String, Plan> {
    let mut names: Vec<String> = single.keys().cloned().collect();
    names.sort();
    // Union-find over layer names.
    let mut parent: HashMap<String, String> =
        names.iter().map(|n| (n.clone(), n.clone())).collect();
    fn find(p: &mut HashMap<String, String>, x: &str) -> String {
        let mut r = x.to_string();
        while let Some(q) = p.get(&r).filter(|q| **q != r).cloned() {
            r = q;
        }
        p.insert(x.to_string(), r.clone());
        r
    }
    let mut bad: std::collections::HashSet<String> = failed.iter().cloned().collect();
    for n in &names {
        for c in &single[n].coupled {
            if !single.contains_key(c) {
                bad.insert(n.clone());
                bad.insert(c.clone());
                parent.entry(c.clone()).or_insert_with(|| c.clone());
            }
            let (a, b) = (find(&mut parent, n), find(&mut parent, c));
            if a != b {
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                parent.insert(hi, lo);
            }
        }
    }
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for n in &names {
        let r = find(&mut parent, n);
        groups.entry(r).or_default().push(n.clone());
    }
    let bad_roots: std::collections::HashSet<String> =
        bad.iter().map(|b| find(&mut parent, b)).collect();
    let mut out = HashMap::new();
    for (root, mut members) in groups {
        members.sort();
        let first = &single[&members[0]];
        if bad_roots.contains(&root) || members.iter().any(|m| single[m].channels != first.channels)
        {
            continue;
        }
        let mut plan = Plan {
            channels: first.channels,
            members: members.clone(),
            ..Plan::default()
        };
        for m in &members {
            let p = &single[m];
            for sl in &p.slices {
                if !plan.slices.contains(sl) {
                    plan.slices.push(sl.clone());
                }
            }
            for gname in &p.groups {
                if !plan.groups.contains(gname) {
                    plan.groups.push(gname.clone());
                }
            }
            for c in &p.consumers {
                if !plan.consumers.contains(c) {
                    plan.consumers.push(c.clone());
                }
            }
        }
        for m in &members {
            out.insert(m.clone(), plan.clone());
        }
    }
    out
}

/// The layer producing value `v` through channel-preserving ops (activations, pools,
/// BatchNormalization), if it is a Conv (group 1) or Gemm with a constant weight.
fn producer_layer(g: &Graph, mut v: ValueId) -> Option<String> {
    loop {
        let p = g.values[v].producer?;
        let n = &g.nodes[p];
        match n.op.as_str() {
            op if PASS_THROUGH.contains(&op) || op == "BatchNormalization" => {
                v = n.inputs.first().copied().flatten()?;
            }
            "Conv" if n.attrs.int_or("group", 1) == 1 => {
                g.konst(n.inputs.get(1).copied().flatten()?)?;
                return Some(n.name.clone());
            }
            "Gemm" => {
                g.konst(n.inputs.get(1).copied().flatten()?)?;
                return Some(n.name.clone());
            }
            _ => return None,
        }
    }
}

/// Where the layer's channels are in the tensor being walked: `width` channels on axis 1,
/// the layer's starting at `offset` (a Concat puts others around them).
#[derive(Clone, Copy)]
struct At {
    width: usize,
    offset: usize,
}

/// Follow value `v` (channels on axis 1) to its consumers; false if one is not rewritable.
fn walk(
    g: &Graph,
    users: &HashMap<ValueId, Vec<(petgraph::graph::NodeIndex, usize)>>,
    v: ValueId,
    at: At,
    plan: &mut Plan,
) -> bool {
    // Consumers whose inputs are exactly the layer's channels can be refitted.
    let whole = at.offset == 0 && at.width == plan.channels;
    let offset = at.offset;
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
        if n.op == "Concat" {
            // Channels of the inputs before this one come first.
            let Some(rank) = g.ty(v).map(|t| t.rank() as i64) else {
                return false;
            };
            let axis = n.attrs.int_or("axis", 0);
            if (axis + rank) % rank != 1 {
                return false;
            }
            let mut before = 0;
            for x in &n.inputs[..pos] {
                match x.and_then(|x| g.ty(x)) {
                    Some(t) => before += t.shape[1],
                    None => return false,
                }
            }
            let Some(width) = g.ty(n.outputs[0]).map(|t| t.shape[1]) else {
                return false;
            };
            let next = At {
                width,
                offset: before + offset,
            };
            if !walk(g, users, n.outputs[0], next, plan) {
                return false;
            }
            continue;
        }
        if n.op == "Add" && n.inputs.len() == 2 {
            // A residual join: both sides must be activations of the same shape, and the layer
            // producing the other side removes the same channels.
            let other = n.inputs[1 - pos].expect("binary");
            if !whole || g.konst(other).is_some() || g.ty(other) != g.ty(v) {
                return false;
            }
            let Some(p) = producer_layer(g, other) else {
                return false;
            };
            if !plan.coupled.contains(&p) {
                plan.coupled.push(p);
            }
            if !walk(g, users, n.outputs[0], at, plan) {
                return false;
            }
            continue;
        }
        if pos != 0 {
            return false; // the channels are a weight or parameter of something
        }
        let name = |x: ValueId| g.values[x].name.clone();
        match n.op.as_str() {
            op if PASS_THROUGH.contains(&op) => {
                if !walk(g, users, n.outputs[0], at, plan) {
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
                        offset,
                    });
                }
                if !walk(g, users, n.outputs[0], at, plan) {
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
                        offset,
                    });
                    if plan.groups.is_empty() && whole {
                        plan.consumers
                            .push((name(w), wt.shape[2..].iter().product()));
                    }
                } else if group == at.width && wt.shape[0] == at.width && wt.shape[1] == 1 {
                    // Depthwise: its filters go with the channels, and so does its output.
                    plan.slices.push(Slice {
                        tensor: name(w),
                        axis: 0,
                        block: 1,
                        offset,
                    });
                    match n.inputs.get(2).copied().flatten() {
                        Some(b) if g.konst(b).is_some() => plan.slices.push(Slice {
                            tensor: name(b),
                            axis: 0,
                            block: 1,
                            offset,
                        }),
                        Some(_) => return false,
                        None => {}
                    }
                    plan.groups.push(n.name.clone());
                    if !walk(g, users, n.outputs[0], at, plan) {
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
                    offset,
                });
                if plan.groups.is_empty() && whole {
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
                        offset,
                    });
                    if plan.groups.is_empty() && whole {
                        plan.consumers.push((name(w), block));
                    }
                }
            }
            _ => return false,
        }
    }
    true
}
