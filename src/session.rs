//! The end-to-end driver: ONNX file -> bound graph -> MLIR -> JIT -> run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::codegen::cpu::{self, Jit};
use crate::error::{Error, Result};
use crate::graph::{infer, Graph, Tensor, TensorType};
use crate::ir::Mlir;

/// Parse `--shape NAME=DxDx..` options.
pub fn parse_shapes(args: &[String]) -> Result<HashMap<String, Vec<usize>>> {
    let mut m = HashMap::new();
    for a in args {
        let (name, dims) = a.split_once('=').ok_or_else(|| {
            Error::option(
                "--shape",
                format!("'{a}' is not NAME=DxDx.. (e.g. x=1x3x224x224)"),
            )
        })?;
        let dims: Vec<usize> = dims
            .split('x')
            .map(|d| d.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::option(
                    "--shape",
                    format!("'{a}': dims must be positive integers separated by 'x'"),
                )
            })?;
        if dims.contains(&0) {
            return Err(Error::option(
                "--shape",
                format!("'{a}': zero-sized dims are not allowed"),
            ));
        }
        m.insert(name.to_string(), dims);
    }
    Ok(m)
}

/// Input shapes of one sample (first dim 1) from npz data files; the first file naming an
/// input wins and a `labels` array is ignored.
pub fn sample_shapes(files: &[&Path]) -> Result<HashMap<String, Vec<usize>>> {
    let mut bind = HashMap::new();
    for p in files {
        for (k, t) in crate::npz::read(p)? {
            if k != "labels" && !t.shape.is_empty() {
                let mut s = t.shape.clone();
                s[0] = 1;
                bind.entry(k).or_insert(s);
            }
        }
    }
    Ok(bind)
}

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
    /// Some weights run as sparse kernels (the sparsifier's or the direct convolutions).
    pub sparse: bool,
    pub graph: Graph,
    pub compile_time: Duration,
    // Dropped last: the engine's code was produced in this context.
    _mlir: Mlir,
}

impl Compiled {
    pub fn new(graph: Graph) -> Result<Compiled> {
        Self::with_options(graph, &crate::ir::lower::Options::cpu(None))
    }

    /// Compile with explicit lowering choices (`sparse_min: None` keeps every weight dense).
    pub fn with_options(graph: Graph, opts: &crate::ir::lower::Options) -> Result<Compiled> {
        let t0 = Instant::now();
        crate::codegen::runtime::keep_freed_memory();
        let mlir = Mlir::new();
        let text = crate::ir::lower::lower_with(&graph, opts)?;
        let sparsifier = crate::ir::lower::uses_sparse(&text);
        let sparse = crate::ir::lower::sparse_weights(&text) > 0;
        let mut module = mlir.parse(&text)?;
        if opts.gpu_math {
            crate::codegen::gpu_math::expand_math(&mlir, &mut module)?;
        }
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
        let jit = cpu::compile(&mlir, &mut module, sparsifier, ins, outs)?;
        drop(module);
        Ok(Compiled {
            jit,
            sparse,
            graph,
            compile_time: t0.elapsed(),
            _mlir: mlir,
        })
    }

    /// `inputs` in graph input order; every graph input must be given, with its bound shape.
    fn ordered<'a>(&self, inputs: &'a BTreeMap<String, Tensor>) -> Result<Vec<&'a Tensor>> {
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
        Ok(ordered)
    }

    /// Run with inputs by name; every graph input must be given, with its bound shape.
    pub fn run_named(&self, inputs: &BTreeMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
        let ordered = self.ordered(inputs)?;
        let outs = self.jit.run(&ordered)?;
        Ok(self.graph.output_names().into_iter().zip(outs).collect())
    }

    /// As [`Compiled::run_named`], writing the outputs (in graph output order) into `outs`,
    /// reused from call to call.
    pub fn run_named_into(
        &self,
        inputs: &BTreeMap<String, Tensor>,
        outs: &mut Vec<Tensor>,
    ) -> Result<()> {
        let ordered = self.ordered(inputs)?;
        self.jit.run_into(&ordered, outs)
    }

    /// Times in microseconds of `runs` calls after `warmup` (see [`Jit::time`]).
    pub fn time_named(
        &self,
        inputs: &BTreeMap<String, Tensor>,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<f64>> {
        self.jit.time(&self.ordered(inputs)?, warmup, runs)
    }
}

/// Bind every symbolic dim to 1 unless `shapes` says otherwise (for weight-only work, where
/// the batch size does not matter).
pub fn load_default_bound(path: &Path, shapes: &HashMap<String, Vec<usize>>) -> Result<Graph> {
    let mut g = crate::onnx::load(path)?;
    let mut all = shapes.clone();
    // Inputs whose symbolic dims other than the first (the batch) were set to 1.
    let mut guessed = Vec::new();
    for i in &g.inputs {
        let name = g.values[i.value].name.clone();
        if all.contains_key(&name) {
            continue;
        }
        if i.dims[1.min(i.dims.len())..]
            .iter()
            .any(|d| matches!(d, crate::graph::Dim::Sym(_)))
        {
            guessed.push(format!("'{name}' {}", crate::graph::fmt_dims(&i.dims)));
        }
        let dims = i
            .dims
            .iter()
            .map(|d| match d {
                crate::graph::Dim::Fixed(n) => *n,
                crate::graph::Dim::Sym(_) => 1,
            })
            .collect();
        all.insert(name, dims);
    }
    g.bind(&all)?;
    infer::run(&mut g).map_err(|e| {
        if guessed.is_empty() {
            return e;
        }
        let hint = format!(
            " (symbolic dims of input {} were taken as 1: give the real shape with \
             --shape NAME=DxDx.., or data with --calib / --eval)",
            guessed.join(", ")
        );
        match e {
            Error::Node {
                file,
                node,
                op,
                msg,
            } => Error::Node {
                file,
                node,
                op,
                msg: msg + &hint,
            },
            other => Error::Model {
                file: path.display().to_string(),
                msg: format!("{other}{hint}"),
            },
        }
    })?;
    Ok(g)
}

/// Turn the constants named in `names` into graph inputs (appended in that order); returns
/// their values.
pub(crate) fn constants_as_inputs(
    g: &mut Graph,
    model: &Path,
    names: &[String],
) -> Result<BTreeMap<String, Tensor>> {
    let mut weights = BTreeMap::new();
    for name in names {
        let v = g.value_by_name(name).ok_or_else(|| Error::Model {
            file: model.display().to_string(),
            msg: format!("no weight named '{name}'"),
        })?;
        let t = g.values[v].konst.take().ok_or_else(|| Error::Model {
            file: model.display().to_string(),
            msg: format!("'{name}' is not a constant"),
        })?;
        g.inputs.push(crate::graph::GraphInput {
            value: v,
            dtype: t.dtype(),
            dims: t
                .shape
                .iter()
                .map(|&d| crate::graph::Dim::Fixed(d))
                .collect(),
        });
        weights.insert(name.clone(), (*t).clone());
    }
    Ok(weights)
}

/// A model compiled once with some constant weights turned into extra inputs, so that many
/// variants of those weights run without compiling again (`bonsai sensitivity` measures each
/// layer pruned alone this way). Generic code runs the swappable layers; compare its outputs
/// with its own run on the original weights, not with another build.
pub struct Swappable {
    c: Compiled,
    batch: usize,
    /// The original value of every swappable weight.
    pub weights: BTreeMap<String, Tensor>,
    /// The first output is the input of the model's final Softmax (the logits), not the model's
    /// own output.
    pub logits: bool,
}

impl Swappable {
    /// Compile `model` for `batch` samples per call (other dims from `sample`), with the
    /// constant weights named in `swap` as inputs. With `logits`, a first output computed by a
    /// last-axis Softmax/LogSoftmax (through any Identity) is replaced by that Softmax's input.
    pub fn new(
        model: &Path,
        sample: &BTreeMap<String, Tensor>,
        batch: usize,
        swap: &[String],
        logits: bool,
    ) -> Result<Swappable> {
        let mut g = load_bound(model, &batch_shapes(sample, batch))?;
        let weights = constants_as_inputs(&mut g, model, swap)?;
        let mut found = false;
        if logits {
            if let Some(&out) = g.outputs.first() {
                let mut v = out;
                while let Some(p) = g.values[v].producer {
                    let node = &g.nodes[p];
                    let last = g.ty(v).map_or(0, |t| t.shape.len() as i64 - 1);
                    match node.op.as_str() {
                        "Identity" => v = node.inputs[0].expect("Identity has an input"),
                        "Softmax" | "LogSoftmax"
                            if matches!(node.attrs.int_or("axis", -1), -1)
                                || node.attrs.int_or("axis", -1) == last =>
                        {
                            g.outputs[0] = node.inputs[0].expect("Softmax has an input");
                            found = true;
                            break;
                        }
                        _ => break,
                    }
                }
            }
        }
        Ok(Swappable {
            c: Compiled::new(g)?,
            batch,
            weights,
            logits: found,
        })
    }

    /// Run over `inputs` (first dim = samples) with the original weights except those in
    /// `replace`; returns the first output over all samples.
    pub fn run(
        &self,
        inputs: &BTreeMap<String, Tensor>,
        replace: &BTreeMap<String, Tensor>,
    ) -> Result<Tensor> {
        let mut weights = self.weights.clone();
        for (k, t) in replace {
            let Some(w) = weights.get_mut(k) else {
                return Err(Error::input(k, "is not one of the swappable weights"));
            };
            if t.shape != w.shape {
                return Err(Error::input(
                    k,
                    format!("shape {:?}, the weight is {:?}", t.shape, w.shape),
                ));
            }
            *w = t.clone();
        }
        let mut outs = run_in_batches(&self.c, inputs, self.batch, &weights)?;
        Ok(outs.remove(0).1)
    }
}

/// Run `model` over inputs whose first dim is the sample axis, `batch` samples per call (the
/// last call zero-padded); returns every output concatenated along the first dim.
pub fn run_batched(
    model: &Path,
    inputs: &BTreeMap<String, Tensor>,
    batch: usize,
) -> Result<Vec<(String, Tensor)>> {
    let n = samples(inputs);
    for (k, t) in inputs {
        if t.shape.first().copied().unwrap_or(1) != n {
            return Err(Error::input(
                k,
                format!(
                    "has {} samples, other inputs {n}",
                    t.shape.first().copied().unwrap_or(1)
                ),
            ));
        }
    }
    let b = batch.clamp(1, n.max(1));
    let c = Compiled::new(load_bound(model, &batch_shapes(inputs, b))?)?;
    run_in_batches(&c, inputs, b, &BTreeMap::new())
}

/// Samples in `inputs`: the first dim of the first input (0 without inputs).
fn samples(inputs: &BTreeMap<String, Tensor>) -> usize {
    inputs
        .values()
        .next()
        .map(|t| t.shape.first().copied().unwrap_or(1))
        .unwrap_or(0)
}

/// `inputs`' shapes with the first (sample) dim set to `b`.
fn batch_shapes(inputs: &BTreeMap<String, Tensor>, b: usize) -> HashMap<String, Vec<usize>> {
    inputs
        .iter()
        .map(|(k, t)| {
            let mut s = t.shape.clone();
            if !s.is_empty() {
                s[0] = b;
            }
            (k.clone(), s)
        })
        .collect()
}

/// Run `c` (compiled for `b` samples per call) over `inputs`, the last call zero-padded, with
/// `fixed` added to every call; every output concatenated along the first dim.
fn run_in_batches(
    c: &Compiled,
    inputs: &BTreeMap<String, Tensor>,
    b: usize,
    fixed: &BTreeMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let n = samples(inputs);
    let mut outs: Vec<(String, Vec<f64>, Vec<usize>, crate::graph::DType)> = Vec::new();
    let mut start = 0;
    while start < n {
        let take = b.min(n - start);
        let chunk: BTreeMap<String, Tensor> = inputs
            .iter()
            .map(|(k, t)| (k.clone(), slice_rows(t, start, take, b)))
            .chain(fixed.iter().map(|(k, t)| (k.clone(), t.clone())))
            .collect();
        for (i, (name, t)) in c.run_named(&chunk)?.into_iter().enumerate() {
            let per = t.len() / b.max(1);
            let v = t.to_f64_vec();
            if outs.len() <= i {
                outs.push((name, Vec::new(), t.shape.clone(), t.dtype()));
            }
            outs[i].1.extend_from_slice(&v[..per * take]);
        }
        start += take;
    }
    Ok(outs
        .into_iter()
        .map(|(name, v, mut shape, dt)| {
            if !shape.is_empty() {
                shape[0] = n;
            }
            (name, Tensor::from_f64(dt, shape, &v))
        })
        .collect())
}

/// Rows [start, start+take) of `t` along dim 0, zero-padded to `rows`.
pub(crate) fn slice_rows(t: &Tensor, start: usize, take: usize, rows: usize) -> Tensor {
    let per = t.len() / t.shape.first().copied().unwrap_or(1).max(1);
    let mut idx: Vec<usize> = (start * per..(start + take) * per).collect();
    let mut shape = t.shape.clone();
    if shape.is_empty() {
        return t.clone();
    }
    shape[0] = rows;
    let pad = (rows - take) * per;
    if pad == 0 {
        return t.take(shape, &idx);
    }
    // Pad by repeating element 0 of the chunk, then zero it through a mask-free rebuild.
    idx.extend(std::iter::repeat_n(start * per, pad));
    let mut out = t.take(shape.clone(), &idx);
    let mut v = out.to_f64_vec();
    for x in &mut v[take * per..] {
        *x = 0.0;
    }
    out = Tensor::from_f64(t.dtype(), shape, &v);
    out
}
