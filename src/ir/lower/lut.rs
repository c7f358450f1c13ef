//! Lookup tables for 8-bit elementwise chains (CPU form). QDQ models quantise around every
//! op, so an activation like HardSwish becomes DequantizeLinear -> HardSigmoid ->
//! QuantizeLinear -> DequantizeLinear -> Mul -> QuantizeLinear: four exact float divisions
//! and some thirty other operations per element, all a function of one 8-bit input. Such a
//! chain (elementwise ops and scalar constants only, one 8-bit source) is evaluated at
//! compile time on all 256 input values by the graph's constant folders, which follow the
//! ONNX definitions, and runs as one table lookup per element (what onnxruntime's QLinear
//! activations do).

use std::collections::{HashMap, HashSet};

use petgraph::graph::NodeIndex;

use super::N;
use crate::graph::{tensor::Data, DType, Graph, Node, Tensor, ValueId};
use crate::ir::emit::Emitter;

/// Ops a table may stand for: elementwise, with at most one run-time operand each way.
const TABLE_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Relu",
    "LeakyRelu",
    "Clip",
    "HardSigmoid",
    "HardSwish",
    "Sigmoid",
    "Tanh",
    "Neg",
    "Abs",
    "Identity",
    "QuantizeLinear",
    "DequantizeLinear",
];

/// Ops cheap enough on vectors that a chain of only these is left as it is.
const CHEAP_OPS: &[&str] = &[
    "Relu",
    "Clip",
    "Identity",
    "QuantizeLinear",
    "DequantizeLinear",
];

/// Largest chain turned into a table.
const MAX_NODES: usize = 32;

/// The QuantizeLinear `n` as a table lookup on its chain's 8-bit source, if it is one (see
/// the module doc); returns the result's SSA name.
pub(super) fn table_quantize(e: &mut Emitter, n: &N) -> Option<String> {
    if !e.cpu_kernels || n.node.op != "QuantizeLinear" {
        return None;
    }
    let (src, nodes) = chain(n)?;
    let table = evaluate(n, src, &nodes)?;
    let g = n.g;
    let st = g.ty(src)?.clone();
    let out = n.out_ty(0).clone();
    // The table as i8 (MLIR integers are signless), indexed by the source's bits as u8.
    let bytes: Vec<i8> = table.to_i64_vec().iter().map(|&v| v as u8 as i8).collect();
    let lut = e.constant(&Tensor::new(vec![256], Data::I8(bytes)), Some("qlut"));
    let qs = e.value(src);
    // A plain loop, not a linalg op, so that elementwise fusion pulls neither the source's
    // producer nor the consumers into it: they keep their vector loops, and this one (a
    // gather, which LLVM leaves scalar) is one load, one lookup and one store per element.
    let len: usize = out.shape.iter().product();
    let flat = e.reshape(&qs, st.dtype, &out.shape, &[len]);
    let init = e.empty(out.dtype, &[len]);
    let v = e.fresh();
    let fty = format!("tensor<{len}xi8>");
    let text = format!(
        "{v}_c0 = arith.constant 0 : index
{v}_c1 = arith.constant 1 : index
{v}_n = arith.constant {len} : index
{v} = scf.for {v}_i = {v}_c0 to {v}_n step {v}_c1 iter_args({v}_acc = {init}) -> ({fty}) {{
{v}_q = tensor.extract {flat}[{v}_i] : {fty}
{v}_w = arith.extui {v}_q : i8 to i32
{v}_k = arith.index_cast {v}_w : i32 to index
{v}_t = tensor.extract {lut}[{v}_k] : tensor<256xi8>
{v}_next = tensor.insert {v}_t into {v}_acc[{v}_i] : {fty}
scf.yield {v}_next : {fty}
}} {{bonsai.kernel = \"table\"}}"
    );
    for l in text.lines() {
        e.line(l);
    }
    Some(e.reshape(&v, out.dtype, &[len], &out.shape))
}

/// The chain ending at QuantizeLinear `n`: its one 8-bit source and its nodes in topological
/// order, if every node is a `TABLE_OPS` op on run-time values of the output's shape and
/// scalar constants, and some node is not cheap.
fn chain(n: &N) -> Option<(ValueId, Vec<NodeIndex>)> {
    let g = n.g;
    let shape = &n.out_ty(0).shape;
    let root = g.values[n.node.outputs[0]].producer?;
    let order = g.topo_order().ok()?;
    let mut inside: HashSet<NodeIndex> = HashSet::from([root]);
    // Sources: 8-bit run-time inputs of DequantizeLinear nodes in the chain. While there are
    // several, the one produced last is expanded through its producer.
    loop {
        let mut sources: HashSet<ValueId> = HashSet::new();
        let mut stack = vec![root];
        let mut seen: HashSet<NodeIndex> = HashSet::new();
        while let Some(ix) = stack.pop() {
            if !seen.insert(ix) {
                continue;
            }
            let m = &g.nodes[ix];
            if !TABLE_OPS.contains(&m.op.as_str()) || seen.len() > MAX_NODES {
                return None;
            }
            for &v in m.inputs.iter().flatten() {
                if let Some(t) = g.konst(v) {
                    if t.len() != 1 {
                        return None;
                    }
                    continue;
                }
                if &g.ty(v)?.shape != shape {
                    return None;
                }
                let p = g.values[v].producer;
                if m.op == "DequantizeLinear" && !p.is_some_and(|p| inside.contains(&p)) {
                    if !matches!(g.ty(v)?.dtype, DType::U8 | DType::I8) {
                        return None;
                    }
                    sources.insert(v);
                } else {
                    stack.push(p?);
                }
            }
        }
        if sources.len() == 1 {
            let src = *sources.iter().next()?;
            let nodes: Vec<NodeIndex> = order.into_iter().filter(|ix| seen.contains(ix)).collect();
            let costly = nodes
                .iter()
                .any(|&ix| !CHEAP_OPS.contains(&g.nodes[ix].op.as_str()));
            return costly.then_some((src, nodes));
        }
        // Expand the source produced last (the others may lie upstream of it).
        let pos: HashMap<NodeIndex, usize> =
            order.iter().enumerate().map(|(i, &x)| (x, i)).collect();
        let last = sources
            .iter()
            .filter_map(|&v| g.values[v].producer)
            .max_by_key(|p| pos.get(p).copied().unwrap_or(0))?;
        if !inside.insert(last) || inside.len() > MAX_NODES {
            return None;
        }
    }
}

/// The chain's output for each of the 256 values of `src`, by constant folding a copy of
/// the chain whose source is those values.
fn evaluate(n: &N, src: ValueId, nodes: &[NodeIndex]) -> Option<Tensor> {
    let g = n.g;
    let dt = g.ty(src)?.dtype;
    let all: Vec<i64> = (0..256)
        .map(|b: i64| {
            if dt == DType::I8 {
                b as u8 as i8 as i64
            } else {
                b
            }
        })
        .collect();
    let mut mg = Graph::new(g.source.clone(), "table", g.opset);
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    map.insert(
        src,
        mg.add_const("source", Tensor::from_i64(dt, vec![256], &all)),
    );
    for &ix in nodes {
        let m = &g.nodes[ix];
        let mut inputs = Vec::with_capacity(m.inputs.len());
        for v in &m.inputs {
            inputs.push(match v {
                None => None,
                Some(v) => Some(match map.get(v) {
                    Some(&w) => w,
                    None => {
                        let t = g.konst(*v)?;
                        let w = mg.add_const(g.values[*v].name.clone(), (**t).clone());
                        map.insert(*v, w);
                        w
                    }
                }),
            });
        }
        let outputs: Vec<ValueId> = m
            .outputs
            .iter()
            .map(|&o| {
                let w = mg.add_value(g.values[o].name.clone());
                map.insert(o, w);
                w
            })
            .collect();
        mg.add_node(Node {
            name: m.name.clone(),
            op: m.op.clone(),
            inputs,
            outputs,
            attrs: m.attrs.clone(),
        });
    }
    let out = *map.get(&n.node.outputs[0])?;
    mg.outputs = vec![out];
    crate::graph::infer::run(&mut mg).ok()?;
    let t = mg.konst(out)?;
    (t.len() == 256 && t.dtype() == n.out_ty(0).dtype).then(|| (**t).clone())
}
