//! The end-to-end driver: ONNX file -> bound graph -> MLIR -> JIT -> run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::codegen::cpu::{self, Jit};
use crate::error::{Error, Result};
use crate::graph::{infer, Graph, Tensor, TensorType};
use crate::ir::Mlir;

/// Load a model and fix its input shapes: explicit `shapes` first, else the model's own.
pub fn load_bound(path: &Path, shapes: &HashMap<String, Vec<usize>>) -> Result<Graph> {
    let mut g = crate::onnx::load(path)?;
    g.bind(shapes)?;
    infer::run(&mut g)?;
    Ok(g)
}

/// Shapes of the tensors in `inputs`, for binding symbolic dims from real data.
pub fn shapes_of(inputs: &BTreeMap<String, Tensor>) -> HashMap<String, Vec<usize>> {
    inputs
        .iter()
        .map(|(k, v)| (k.clone(), v.shape.clone()))
        .collect()
}

/// A graph compiled to native code, ready to run.
pub struct Compiled {
    pub jit: Jit,
    pub graph: Graph,
    pub compile_time: Duration,
    // Dropped last: the engine's code was produced in this context.
    _mlir: Mlir,
}

impl Compiled {
    pub fn new(graph: Graph) -> Result<Compiled> {
        let t0 = Instant::now();
        let mlir = Mlir::new();
        let text = crate::ir::lower::lower(&graph)?;
        let mut module = mlir.parse(&text)?;
        let ins: Vec<TensorType> = graph
            .inputs
            .iter()
            .map(|i| graph.ty(i.value).expect("bound").clone())
            .collect();
        let outs: Vec<TensorType> = graph
            .outputs
            .iter()
            .map(|&o| graph.ty(o).expect("inferred").clone())
            .collect();
        let jit = cpu::compile(&mlir, &mut module, ins, outs)?;
        drop(module);
        Ok(Compiled {
            jit,
            graph,
            compile_time: t0.elapsed(),
            _mlir: mlir,
        })
    }

    /// Run with inputs by name; every graph input must be given, with its bound shape.
    pub fn run_named(&self, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
        let names = self.graph.input_names();
        for k in inputs.keys() {
            if !names.contains(k) {
                return Err(Error::input(
                    k,
                    format!("the model has no such input (inputs: {})", names.join(", ")),
                ));
            }
        }
        let mut ordered = Vec::new();
        for (n, ty) in names.iter().zip(&self.jit.inputs) {
            let t = inputs
                .get(n)
                .ok_or_else(|| Error::input(n, "missing from the input file"))?;
            if t.dtype() != ty.dtype {
                return Err(Error::input(
                    n,
                    format!("dtype {} but the model takes {}", t.dtype(), ty.dtype),
                ));
            }
            if t.shape != ty.shape {
                return Err(Error::input(
                    n,
                    format!(
                        "shape {:?} but the model was compiled for {:?}",
                        t.shape, ty.shape
                    ),
                ));
            }
            ordered.push(t);
        }
        let outs = self.jit.run(&ordered)?;
        Ok(self.graph.output_names().into_iter().zip(outs).collect())
    }
}
