//! The model graph: a petgraph of ONNX nodes over typed values, with constants attached.
//!
//! Nothing here knows MLIR. The frontend (`crate::onnx`) builds a [`Graph`]; [`Graph::bind`]
//! fixes input shapes, then [`infer::run`] infers static shapes, folds constant subgraphs and
//! rewrites every node into its opset-independent canonical form for lowering.

pub mod attrs;
pub mod channels;
pub mod fold;
pub mod fuse;
pub mod infer;
pub mod ops;
pub mod tensor;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};

pub use attrs::{Attr, Attrs};
pub use tensor::{DType, Data, Tensor};

use crate::error::{Error, Result};

pub type ValueId = usize;

/// A statically shaped tensor type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> TensorType {
        TensorType { dtype, shape }
    }
    pub fn numel(&self) -> usize {
        tensor::numel(&self.shape)
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        write!(f, "{}[{}]", self.dtype, dims.join("x"))
    }
}

/// A dimension of a declared graph input: fixed, or symbolic until bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Sym(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) if s.is_empty() => f.write_str("?"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub ty: Option<TensorType>,
    pub konst: Option<Arc<Tensor>>,
    pub producer: Option<NodeIndex>,
}

#[derive(Clone, Debug)]
pub struct GraphInput {
    pub value: ValueId,
    pub dtype: DType,
    pub dims: Vec<Dim>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: String,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
    pub attrs: Attrs,
}

/// The model graph. Nodes live in a petgraph `StableDiGraph` whose edges are the values
/// flowing from producer to consumer.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The file the model came from, for error messages.
    pub source: String,
    pub name: String,
    /// Opset of the default (`ai.onnx`) domain.
    pub opset: i64,
    pub values: Vec<Value>,
    pub nodes: StableDiGraph<Node, ValueId>,
    pub inputs: Vec<GraphInput>,
    pub outputs: Vec<ValueId>,
}

impl Graph {
    pub fn new(source: impl Into<String>, name: impl Into<String>, opset: i64) -> Graph {
        Graph {
            source: source.into(),
            name: name.into(),
            opset,
            values: Vec::new(),
            nodes: StableDiGraph::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    pub fn add_value(&mut self, name: impl Into<String>) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            ty: None,
            konst: None,
            producer: None,
        });
        self.values.len() - 1
    }

    pub fn add_const(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let id = self.add_value(name);
        self.set_const(id, t);
        id
    }

    pub fn set_const(&mut self, id: ValueId, t: Tensor) {
        self.values[id].ty = Some(TensorType::new(t.dtype(), t.shape.clone()));
        self.values[id].konst = Some(Arc::new(t));
    }

    /// Add a node; edges are drawn from each input's producer.
    pub fn add_node(&mut self, node: Node) -> NodeIndex {
        let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        let outputs = node.outputs.clone();
        let ix = self.nodes.add_node(node);
        for v in inputs {
            if let Some(p) = self.values[v].producer {
                self.nodes.add_edge(p, ix, v);
            }
        }
        for v in outputs {
            self.values[v].producer = Some(ix);
        }
        ix
    }

    pub fn remove_node(&mut self, ix: NodeIndex) {
        if let Some(node) = self.nodes.remove_node(ix) {
            for v in node.outputs {
                if self.values[v].producer == Some(ix) {
                    self.values[v].producer = None;
                }
            }
        }
    }

    /// Nodes in a deterministic topological order (ties broken by insertion order).
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>> {
        let mut indeg: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        for ix in self.nodes.node_indices() {
            indeg.insert(ix, 0);
        }
        for e in (&self.nodes).edge_references() {
            *indeg.get_mut(&e.target()).expect("edge target exists") += 1;
        }
        let mut ready: std::collections::BTreeSet<NodeIndex> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&ix, _)| ix)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(ix) = ready.pop_first() {
            order.push(ix);
            for e in self.nodes.edges(ix) {
                let d = indeg.get_mut(&e.target()).expect("edge target exists");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != indeg.len() {
            return Err(Error::Model {
                file: self.source.clone(),
                msg: "the graph has a cycle".into(),
            });
        }
        Ok(order)
    }

    pub fn ty(&self, v: ValueId) -> Option<&TensorType> {
        self.values[v].ty.as_ref()
    }

    pub fn konst(&self, v: ValueId) -> Option<&Arc<Tensor>> {
        self.values[v].konst.as_ref()
    }

    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// Fix the shape of every graph input. `shapes` binds inputs by name; symbolic
    /// dims left unbound are an error naming the input and the dim.
    pub fn bind(&mut self, shapes: &HashMap<String, Vec<usize>>) -> Result<()> {
        for name in shapes.keys() {
            if !self
                .inputs
                .iter()
                .any(|i| &self.values[i.value].name == name)
            {
                let names: Vec<&str> = self
                    .inputs
                    .iter()
                    .map(|i| self.values[i.value].name.as_str())
                    .collect();
                return Err(Error::input(
                    name,
                    format!("the model has no such input (inputs: {})", names.join(", ")),
                ));
            }
        }
        for inp in self.inputs.clone() {
            let name = self.values[inp.value].name.clone();
            let shape = match shapes.get(&name) {
                Some(s) => {
                    if s.len() != inp.dims.len() {
                        return Err(Error::input(
                            &name,
                            format!(
                                "shape {} has rank {}, the model declares rank {} ({})",
                                fmt_shape(s),
                                s.len(),
                                inp.dims.len(),
                                fmt_dims(&inp.dims)
                            ),
                        ));
                    }
                    for (i, (d, &n)) in inp.dims.iter().zip(s).enumerate() {
                        if let Dim::Fixed(f) = d {
                            if *f != n {
                                return Err(Error::input(
                                    &name,
                                    format!(
                                        "dim {i} is {n}, the model declares {f} ({})",
                                        fmt_dims(&inp.dims)
                                    ),
                                ));
                            }
                        }
                    }
                    s.clone()
                }
                None => {
                    let mut out = Vec::new();
                    for (i, d) in inp.dims.iter().enumerate() {
                        match d {
                            Dim::Fixed(n) => out.push(*n),
                            Dim::Sym(s) => {
                                return Err(Error::input(
                                    &name,
                                    format!(
                                        "dim {i} is symbolic ('{}') in {}; bind it, e.g. --shape {name}={}",
                                        if s.is_empty() { "?" } else { s },
                                        fmt_dims(&inp.dims),
                                        inp.dims
                                            .iter()
                                            .map(|d| match d {
                                                Dim::Fixed(n) => n.to_string(),
                                                Dim::Sym(_) => "1".into(),
                                            })
                                            .collect::<Vec<_>>()
                                            .join("x")
                                    ),
                                ))
                            }
                        }
                    }
                    out
                }
            };
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if n.is_none_or(|n| n > crate::onnx::tensor::MAX_ELEMENTS) {
                return Err(Error::input(
                    &name,
                    format!(
                        "shape {} is absurdly large (more than 2^31 elements)",
                        fmt_shape(&shape)
                    ),
                ));
            }
            self.values[inp.value].ty = Some(TensorType::new(inp.dtype, shape));
        }
        Ok(())
    }

    /// Replace a graph input by a constant (e.g. a shape fed as an input).
    pub fn freeze_input(&mut self, name: &str, t: Tensor) -> Result<()> {
        let pos = self
            .inputs
            .iter()
            .position(|i| self.values[i.value].name == name)
            .ok_or_else(|| Error::input(name, "the model has no such input"))?;
        let inp = self.inputs.remove(pos);
        if t.dtype() != inp.dtype {
            return Err(Error::input(
                name,
                format!(
                    "dtype {} does not match the model's {}",
                    t.dtype(),
                    inp.dtype
                ),
            ));
        }
        self.set_const(inp.value, t);
        Ok(())
    }

    pub fn node_err(&self, node: &Node, msg: impl Into<String>) -> Error {
        Error::Node {
            file: self.source.clone(),
            node: node.name.clone(),
            op: node.op.clone(),
            msg: msg.into(),
        }
    }

    pub fn input_names(&self) -> Vec<String> {
        self.inputs
            .iter()
            .map(|i| self.values[i.value].name.clone())
            .collect()
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs
            .iter()
            .map(|&v| self.values[v].name.clone())
            .collect()
    }

    /// The nodes running `op`, in insertion order.
    pub fn nodes_with_op(&self, op: &str) -> Vec<NodeIndex> {
        self.nodes
            .node_indices()
            .filter(|&ix| self.nodes[ix].op == op)
            .collect()
    }

    /// Count of nodes by op, sorted by op name (for reports).
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for n in self.nodes.node_weights() {
            *h.entry(n.op.clone()).or_insert(0) += 1;
        }
        h
    }
}

pub fn fmt_shape(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

pub fn fmt_dims(d: &[Dim]) -> String {
    format!(
        "[{}]",
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
