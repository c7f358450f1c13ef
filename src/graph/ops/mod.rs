//! The op table, keyed by (op, opset): shape inference, canonicalisation and constant folding.
//!
//! Each family registers its ops in its own file. An entry applies from its `since` opset up to
//! the next entry for the same op. Inference rewrites the node into a canonical,
//! opset-independent form (defaults made explicit, constant operands such as axes or pads
//! moved into attributes) so lowering never looks at the opset.

mod decode;
mod elementwise;
pub use elementwise::VARIADIC;
mod nn;
mod reduce;
pub mod shape;

use std::sync::OnceLock;

use super::{tensor::Tensor, Attr, DType, Graph, Node, TensorType};
use crate::error::{Error, Result};

pub type InferFn = fn(&mut Ctx) -> Result<Vec<TensorType>>;
/// Folds a node whose inputs are all constant; gets the inferred output types.
pub type FoldFn = fn(&Ctx, &[&Tensor], &[TensorType]) -> Result<Vec<Tensor>>;

pub struct OpDef {
    pub op: &'static str,
    pub since: i64,
    pub infer: InferFn,
    pub fold: Option<FoldFn>,
}

pub(crate) struct Registry(Vec<OpDef>);

impl Registry {
    pub(crate) fn insert(
        &mut self,
        op: &'static str,
        since: i64,
        infer: InferFn,
        fold: Option<FoldFn>,
    ) {
        self.0.push(OpDef {
            op,
            since,
            infer,
            fold,
        });
    }
}

fn table() -> &'static [OpDef] {
    static TABLE: OnceLock<Vec<OpDef>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut r = Registry(Vec::new());
        elementwise::register(&mut r);
        nn::register(&mut r);
        shape::register(&mut r);
        reduce::register(&mut r);
        decode::register(&mut r);
        r.0
    })
}

/// The entry for `op` at `opset`: the one with the greatest `since` not above `opset`.
pub fn lookup(op: &str, opset: i64) -> Option<&'static OpDef> {
    table()
        .iter()
        .filter(|d| d.op == op && d.since <= opset)
        .max_by_key(|d| d.since)
}

/// Every supported op name, sorted (for `--help` and docs).
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = table().iter().map(|d| d.op).collect();
    v.sort();
    v.dedup();
    v
}

/// What an inference function sees: the graph (read-only) and its own node (mutable, to
/// canonicalise).
pub struct Ctx<'a> {
    pub g: &'a Graph,
    pub node: Node,
    pub opset: i64,
}

impl Ctx<'_> {
    pub fn err(&self, msg: impl Into<String>) -> Error {
        self.g.node_err(&self.node, msg)
    }

    pub fn unsupported(&self, detail: impl Into<String>) -> Error {
        Error::Unsupported {
            file: self.g.source.clone(),
            node: self.node.name.clone(),
            op: self.node.op.clone(),
            opset: self.opset,
            detail: format!(" ({})", detail.into()),
        }
    }

    pub fn n_in(&self) -> usize {
        self.node.inputs.len()
    }

    pub fn has(&self, i: usize) -> bool {
        matches!(self.node.inputs.get(i), Some(Some(_)))
    }

    pub fn ty(&self, i: usize) -> Result<&TensorType> {
        match self.node.inputs.get(i) {
            Some(Some(v)) => self.g.ty(*v).ok_or_else(|| {
                self.err(format!(
                    "input {i} ('{}') has no known type",
                    self.g.values[*v].name
                ))
            }),
            _ => Err(self.err(format!("missing input {i}"))),
        }
    }

    pub fn konst(&self, i: usize) -> Option<&Tensor> {
        match self.node.inputs.get(i) {
            Some(Some(v)) => self.g.konst(*v).map(|t| t.as_ref()),
            _ => None,
        }
    }

    /// An input that must be known at compile time (shape, axes, pads, ...).
    pub fn need_const(&self, i: usize) -> Result<&Tensor> {
        self.konst(i).ok_or_else(|| Error::NotConstant {
            file: self.g.source.clone(),
            node: self.node.name.clone(),
            op: self.node.op.clone(),
            input: match self.node.inputs.get(i) {
                Some(Some(v)) => self.g.values[*v].name.clone(),
                _ => format!("#{i}"),
            },
        })
    }

    pub fn attr_int(&self, k: &str, d: i64) -> i64 {
        self.node.attrs.int_or(k, d)
    }

    pub fn set(&mut self, k: &str, a: Attr) {
        self.node.attrs.set(k, a);
    }

    /// Keep only the first `n` inputs (the rest were moved into attributes).
    pub fn keep_inputs(&mut self, n: usize) {
        self.node.inputs.truncate(n);
    }

    /// Reject attributes this implementation does not honour.
    pub fn reject_attr(&self, k: &str, why: &str) -> Result<()> {
        if self.node.attrs.has(k) {
            return Err(self.unsupported(format!("attribute {k}: {why}")));
        }
        Ok(())
    }

    pub fn expect_inputs(&self, min: usize, max: usize) -> Result<()> {
        let n = self.node.inputs.len();
        if n < min || n > max {
            return Err(self.err(format!("takes {min}..={max} inputs, got {n}")));
        }
        Ok(())
    }

    pub fn float_input(&self, i: usize) -> Result<DType> {
        let t = self.ty(i)?;
        if !t.dtype.is_float() {
            return Err(self.unsupported(format!("input {i} has element type {}", t.dtype)));
        }
        Ok(t.dtype)
    }
}

/// Normalise an axis into [0, rank).
pub fn norm_axis(ctx: &Ctx, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(ctx.err(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Numpy-style broadcast of several shapes.
pub fn broadcast(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}
