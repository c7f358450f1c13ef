//! Shape inference, canonicalisation and constant folding over a bound graph.

use std::collections::HashSet;

use super::ops::{self, Ctx};
use super::{Graph, TensorType};
use crate::error::{Error, Result};

/// Largest tensor (elements) a folder may produce; bigger results stay in the code.
const FOLD_LIMIT: usize = 1 << 22;

/// Infer every value's type in topological order, fold nodes whose inputs are all constant,
/// canonicalise the rest, then drop folded and dead nodes.
pub fn run(g: &mut Graph) -> Result<()> {
    for ix in g.topo_order()? {
        let node = g.nodes[ix].clone();
        let def = ops::lookup(&node.op, g.opset).ok_or_else(|| Error::Unsupported {
            file: g.source.clone(),
            node: node.name.clone(),
            op: node.op.clone(),
            opset: g.opset,
            detail: String::new(),
        })?;
        for (k, a) in &node.attrs.0 {
            if let super::Attr::Unsupported(what) = a {
                return Err(Error::Unsupported {
                    file: g.source.clone(),
                    node: node.name.clone(),
                    op: node.op.clone(),
                    opset: g.opset,
                    detail: format!(" (attribute {k}: {what})"),
                });
            }
        }
        let mut ctx = Ctx {
            g,
            node,
            opset: g.opset,
        };
        let tys: Vec<TensorType> = (def.infer)(&mut ctx)?;
        for t in &tys {
            let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if n.is_none_or(|n| n > crate::onnx::tensor::MAX_ELEMENTS) {
                return Err(ctx.err(format!(
                    "output {t} is absurdly large (more than 2^31 elements)"
                )));
            }
        }
        if tys.len() > ctx.node.outputs.len() {
            return Err(ctx.err(format!(
                "produces {} outputs, the node names {}",
                tys.len(),
                ctx.node.outputs.len()
            )));
        }
        // Fold when every remaining input is constant (Shape/Size need none).
        let all_const = matches!(ctx.node.op.as_str(), "Shape" | "Size")
            || ctx
                .node
                .inputs
                .iter()
                .flatten()
                .all(|&v| g.konst(v).is_some());
        let small = tys.iter().all(|t| t.numel() <= FOLD_LIMIT);
        let folded = match def.fold {
            Some(f) if all_const && small => {
                let ins: Vec<&super::Tensor> = ctx
                    .node
                    .inputs
                    .iter()
                    .flatten()
                    .filter_map(|&v| g.konst(v).map(|t| t.as_ref()))
                    .collect();
                match f(&ctx, &ins, &tys) {
                    Ok(v) => Some(v),
                    Err(Error::Unsupported { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            _ => None,
        };
        let node = ctx.node;
        if let Some(vals) = folded {
            for (t, (&out, ty)) in vals.into_iter().zip(node.outputs.iter().zip(&tys)) {
                debug_assert_eq!(
                    t.shape, ty.shape,
                    "folder of {} disagrees with inference",
                    node.op
                );
                g.set_const(out, t);
            }
        } else {
            for (&out, ty) in node.outputs.iter().zip(tys) {
                g.values[out].ty = Some(ty);
            }
        }
        // Re-draw edges: canonicalisation may have dropped inputs.
        let keep = node.clone();
        let old_edges: Vec<_> = g
            .nodes
            .edges_directed(ix, petgraph::Direction::Incoming)
            .map(|e| petgraph::visit::EdgeRef::id(&e))
            .collect();
        for e in old_edges {
            g.nodes.remove_edge(e);
        }
        for &v in keep.inputs.iter().flatten() {
            if let Some(p) = g.values[v].producer {
                g.nodes.add_edge(p, ix, v);
            }
        }
        g.nodes[ix] = keep;
    }
    prune(g);
    Ok(())
}

/// Remove nodes whose outputs are all constant, and nodes nothing live depends on.
pub fn prune(g: &mut Graph) {
    let folded: Vec<_> = g
        .nodes
        .node_indices()
        .filter(|&ix| {
            g.nodes[ix]
                .outputs
                .iter()
                .all(|&v| g.values[v].konst.is_some())
        })
        .collect();
    for ix in folded {
        g.remove_node(ix);
    }
    // Liveness from the graph outputs.
    let mut live: HashSet<usize> = g.outputs.iter().copied().collect();
    let mut stack: Vec<usize> = g.outputs.clone();
    while let Some(v) = stack.pop() {
        if g.values[v].konst.is_some() {
            continue;
        }
        if let Some(p) = g.values[v].producer {
            for &i in g.nodes[p].inputs.iter().flatten() {
                if live.insert(i) {
                    stack.push(i);
                }
            }
        }
    }
    let dead: Vec<_> = g
        .nodes
        .node_indices()
        .filter(|&ix| !g.nodes[ix].outputs.iter().any(|v| live.contains(v)))
        .collect();
    for ix in dead {
        g.remove_node(ix);
    }
}
