//! Graph -> MLIR text: one `func.func @main` on tensors (linalg, tensor, arith, math).
//!
//! Each op family lowers in its own file; the table in [`lower_node`] dispatches by the
//! canonical op name that graph inference left on the node.

mod batch;
mod depthwise;
mod direct;
mod elementwise;
mod gemv;
mod int8conv;
mod kernels;
mod lut;
mod nn;
mod perm;
mod reduce;
mod scalar;
mod shape;

use super::emit::{self, tty, Emitter};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, TensorType};
use petgraph::stable_graph::NodeIndex;

/// Name of the entry function in every module bonsai emits.
pub const ENTRY: &str = "main";

/// Lower a bound, inferred graph to MLIR text.
pub fn lower(g: &Graph) -> Result<String> {
    lower_with(g, &Options::default())
}

/// Lowering choices for code generation (compression passes see the plain form).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Weights at least this sparse get sparse kernels: Gemm weights as CSR
    /// (`#sparse_tensor`, assembled from constant buffers) so the sparsifier generates loops
    /// over the non-zeros only; stride-1 convolutions the direct kernel (with `cpu_kernels`),
    /// others im2col and the sparsifier.
    pub sparse_min: Option<f64>,
    /// Emit bonsai's CPU kernels (register-blocked and direct sparse convolutions, as scf and
    /// vector ops) instead of the plain linalg form that the compression passes and the GPU
    /// pipeline work on.
    pub cpu_kernels: bool,
    /// Use each sparse kernel only above the sparsity where it beats bonsai's dense code
    /// (measured floors in `nn.rs`), whatever `sparse_min` allows. Off only to measure the
    /// sparse kernels themselves (`bench --kernels`).
    pub sparse_floors: bool,
    /// Replace f32 math ops by bonsai's GPU implementations
    /// ([`crate::codegen::gpu_math`]), as the GPU target does, so that the CPU can test them
    /// (`bonsai conformance --gpu-math`). Applied to the parsed module, not to this text.
    pub gpu_math: bool,
    /// The x86 vector extensions the code may use: this host's for `Options::cpu` (the JIT and
    /// the AOT library target the host CPU). Kernels pick their permutes from it
    /// (`perm_gemv`).
    pub x86: X86,
}

pub use perm::X86;

/// The x86 vector extensions this host has (what `Options::cpu` targets).
pub fn host_x86() -> X86 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            X86::Avx512Vnni
        } else if std::arch::is_x86_feature_detected!("avx512f") {
            X86::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2") {
            X86::Avx2
        } else {
            X86::None
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        X86::None
    }
}

impl Options {
    /// The CPU code-generation form.
    pub fn cpu(sparse_min: Option<f64>) -> Options {
        Options {
            sparse_min,
            cpu_kernels: true,
            sparse_floors: true,
            gpu_math: false,
            x86: host_x86(),
        }
    }
}

/// A `--sparse-min` that pays on every kernel bonsai has, measured with
/// `bonsai bench --kernels 128x3136,conv:32x14x14:64x3x3` (batch 1, one thread): the gather
/// FC (no AVX2) breaks even with the dense one near 85% and is 2.4x faster at 95% (the
/// permute FC of AVX2 / AVX-512 below 50%, 3.6x / 6x faster at 90%); the direct sparse
/// convolution breaks even near 50% and is 2.8x faster at 90%.
/// Off by default: sparse kernels are opt-in.
pub const SUGGESTED_SPARSE_MIN: f64 = 0.95;

/// Whether lowered text uses sparse tensors (and so needs the sparsifier).
pub fn uses_sparse(text: &str) -> bool {
    text.contains("sparse_tensor.assemble")
}

/// How many weights lowered text runs as sparse kernels (the sparsifier's and the direct
/// convolutions).
pub fn sparse_weights(text: &str) -> usize {
    text.matches("sparse_tensor.assemble").count()
        + text.matches("bonsai.kernel = \"sparse_direct\"").count()
        + text.matches("bonsai.kernel = \"sparse_rows\"").count()
        + text.matches("bonsai.kernel = \"block_direct\"").count()
        + text.matches("bonsai.kernel = \"sparse_gemv\"").count()
        + text.matches("bonsai.kernel = \"perm_gemv\"").count()
}

/// How many weights lowered text reads as int8 (`int8_gemv`: per-feature int8 grids;
/// `int8_conv`: integer convolutions).
pub fn int8_weights(text: &str) -> usize {
    text.matches("bonsai.kernel = \"int8_gemv\"").count()
        + text.matches("bonsai.kernel = \"int8_conv\"").count()
}

pub fn lower_with(g: &Graph, opts: &Options) -> Result<String> {
    // Native code folds BatchNormalization into the preceding convolutions and runs 1x1
    // convolutions of single pixels as matrix-vector products; the compression passes
    // (plain form) keep the model's layers as they are.
    let folded;
    let g = if opts.cpu_kernels {
        let mut f = g.clone();
        crate::graph::fuse::fold_batchnorms(&mut f);
        crate::graph::fuse::convs_on_single_pixels_to_gemm(&mut f);
        folded = f;
        &folded
    } else {
        g
    };
    let mut e = Emitter::new(g);
    e.sparse_min = opts.sparse_min;
    e.cpu_kernels = opts.cpu_kernels;
    e.sparse_floors = opts.sparse_floors;
    e.x86 = opts.x86;
    let mut args = Vec::new();
    for (i, inp) in g.inputs.iter().enumerate() {
        let ty = g
            .ty(inp.value)
            .ok_or_else(|| Error::input(&g.values[inp.value].name, "unbound input"))?;
        let name = format!("%arg{i}");
        args.push((name.clone(), tty(ty)));
        e.bind(inp.value, name);
    }
    let order = g.topo_order()?;
    match batch::batch_region(g, &order).filter(|_| opts.cpu_kernels) {
        Some(split) => {
            lower_nodes(&mut e, &split.pre, opts)?;
            per_image(&mut e, &split, opts)?;
            lower_nodes(&mut e, &split.post, opts)?;
        }
        None => lower_nodes(&mut e, &order, opts)?,
    }
    let mut rets = Vec::new();
    for &o in &g.outputs {
        let ty = g
            .ty(o)
            .ok_or_else(|| Error::Model {
                file: g.source.clone(),
                msg: format!("output '{}' has no type", g.values[o].name),
            })?
            .clone();
        let s = e.value(o);
        rets.push((s, tty(&ty)));
    }
    Ok(e.finish(ENTRY, &args, &rets))
}

/// Lower `nodes` (in topological order) into `e`. With CPU kernels, a Conv whose only reader
/// is a Relu applies it in the kernel's last copy where it can.
fn lower_nodes(e: &mut Emitter, nodes: &[NodeIndex], opts: &Options) -> Result<()> {
    let g = e.g;
    let mut fused = Vec::new();
    for &ix in nodes {
        if fused.contains(&ix) {
            continue;
        }
        let node = &g.nodes[ix];
        let Some(relu) = relu_after_conv(g, ix).filter(|r| opts.cpu_kernels && nodes.contains(r))
        else {
            lower_node(e, node)?;
            continue;
        };
        // Conv, Relu (and a 2x2 MaxPool): the kernel's last copy applies them where it can.
        let pool = only_reader(g, relu)
            .filter(|&p| g.nodes[p].op == "MaxPool" && nodes.contains(&p))
            .filter(|&p| {
                reduce::halving_pool(&N {
                    node: &g.nodes[p],
                    g,
                })
            });
        e.relu_epilogue = true;
        e.pool_epilogue =
            pool.map(|p| g.ty(g.nodes[p].outputs[0]).expect("inferred").shape.clone());
        lower_node(e, node)?;
        let mut y = e.value(node.outputs[0]);
        if let Some(p) = pool.filter(|_| e.pool_epilogue.is_none()) {
            // Pooled: `y` is the pool's output.
            e.bind(g.nodes[p].outputs[0], y);
            fused.push(p);
        } else {
            e.pool_epilogue = None;
            if std::mem::take(&mut e.relu_epilogue) {
                let ty = g.ty(node.outputs[0]).expect("inferred").clone();
                y = elementwise::relu(e, &y, &ty);
            }
            e.bind(g.nodes[relu].outputs[0], y);
        }
        e.relu_epilogue = false;
        fused.push(relu);
    }
    Ok(())
}

/// The per-sample region of a batched model (`batch::batch_region`) as one `scf.for` over
/// the images: each iteration cuts its image from the input, runs the region's layers on it
/// (lowered against the one-sample graph) and inserts the region's outputs into the
/// batch-sized results that the loop carries.
fn per_image(e: &mut Emitter, split: &batch::Split, opts: &Options) -> Result<()> {
    let g = e.g;
    let g1 = batch::one_sample(g, split);
    let mut sub = Emitter::new(&g1);
    sub.sparse_min = e.sparse_min;
    sub.cpu_kernels = e.cpu_kernels;
    sub.sparse_floors = e.sparse_floors;
    sub.x86 = e.x86;
    // One numbering of SSA names and resources across both.
    sub.next = e.next;
    sub.resources = std::mem::take(&mut e.resources);
    sub.helpers = std::mem::take(&mut e.helpers);
    sub.ssa = e.ssa.clone();
    sub.dequantized = e.dequantized.clone();
    let v = sub.fresh();
    let xty = g.ty(split.input).expect("bound");
    let x = e.value(split.input);
    let slice = |t: &TensorType, ix: &str| {
        let zeros = vec!["0"; t.rank() - 1].join(", ");
        let mut one = t.shape.clone();
        one[0] = 1;
        let sizes: Vec<String> = one.iter().map(|d| d.to_string()).collect();
        let unit = vec!["1"; t.rank()].join(", ");
        (
            format!("[{ix}, {zeros}] [{}] [{unit}]", sizes.join(", ")),
            emit::tty(&TensorType::new(t.dtype, one)),
        )
    };
    let (at, one_ty) = slice(xty, &format!("{v}_n"));
    sub.line(&format!(
        "{v}_x = tensor.extract_slice {x}{at} : {} to {one_ty}",
        emit::tty(xty)
    ));
    sub.bind(split.input, format!("{v}_x"));
    lower_nodes(&mut sub, &split.region, opts)?;
    let mut yields = Vec::new();
    for (i, &o) in split.outputs.iter().enumerate() {
        let t = g.ty(o).expect("inferred");
        let (at, one_ty) = slice(t, &format!("{v}_n"));
        let y = sub.value(o);
        sub.line(&format!(
            "{v}_u{i} = tensor.insert_slice {y} into {v}_acc{i}{at} : {one_ty} into {}",
            emit::tty(t)
        ));
        yields.push(format!("{v}_u{i}"));
    }
    let body = std::mem::take(&mut sub.body);
    e.next = sub.next;
    e.resources = std::mem::take(&mut sub.resources);
    e.helpers = std::mem::take(&mut sub.helpers);
    let tys: Vec<String> = split
        .outputs
        .iter()
        .map(|&o| emit::tty(g.ty(o).expect("inferred")))
        .collect();
    let mut iters = Vec::new();
    for (i, &o) in split.outputs.iter().enumerate() {
        let init = e.empty(
            g.ty(o).expect("inferred").dtype,
            &g.ty(o).expect("inferred").shape,
        );
        iters.push(format!("{v}_acc{i} = {init}"));
    }
    let k = split.outputs.len();
    e.line(&format!("{v}_c0 = arith.constant 0 : index"));
    e.line(&format!("{v}_c1 = arith.constant 1 : index"));
    e.line(&format!("{v}_nb = arith.constant {} : index", split.batch));
    e.line(&format!(
        "{v}:{k} = scf.for {v}_n = {v}_c0 to {v}_nb step {v}_c1 iter_args({}) -> ({}) {{",
        iters.join(", "),
        tys.join(", ")
    ));
    for l in body.lines() {
        e.line(l.trim_start());
    }
    e.line(&format!(
        "scf.yield {} : {}",
        yields.join(", "),
        tys.join(", ")
    ));
    e.line("} {bonsai.kernel = \"per_image\"}");
    for (i, &o) in split.outputs.iter().enumerate() {
        e.bind(o, format!("{v}#{i}"));
    }
    Ok(())
}

/// The Relu that is the only reader of Conv node `ix`'s f32 output (not a graph output).
fn relu_after_conv(g: &Graph, ix: NodeIndex) -> Option<NodeIndex> {
    let node = &g.nodes[ix];
    let y = *node.outputs.first()?;
    if node.op != "Conv" || node.outputs.len() != 1 || g.outputs.contains(&y) {
        return None;
    }
    if g.ty(y)?.dtype != crate::graph::DType::F32 {
        return None;
    }
    let r = only_reader(g, ix)?;
    (g.nodes[r].op == "Relu" && g.nodes[r].inputs.len() == 1).then_some(r)
}

/// The one node that reads node `ix`'s single output, if that output has one reader and is
/// not a graph output.
fn only_reader(g: &Graph, ix: NodeIndex) -> Option<NodeIndex> {
    use petgraph::visit::EdgeRef;
    let node = &g.nodes[ix];
    let [y] = node.outputs.as_slice() else {
        return None;
    };
    if g.outputs.contains(y) {
        return None;
    }
    let mut readers = g.nodes.edges(ix).filter(|e| e.weight() == y);
    let r = readers.next()?.target();
    readers.next().is_none().then_some(r)
}

/// Shared view of one node during lowering.
pub(crate) struct N<'a> {
    pub node: &'a Node,
    pub g: &'a Graph,
}

impl N<'_> {
    pub fn in_ty(&self, i: usize) -> &TensorType {
        self.g
            .ty(self.node.inputs[i].expect("present"))
            .expect("inferred")
    }
    pub fn out_ty(&self, i: usize) -> &TensorType {
        self.g.ty(self.node.outputs[i]).expect("inferred")
    }
    pub fn has(&self, i: usize) -> bool {
        matches!(self.node.inputs.get(i), Some(Some(_)))
    }
    pub fn input(&self, e: &mut Emitter, i: usize) -> String {
        e.value(self.node.inputs[i].expect("present"))
    }
    pub fn err(&self, msg: impl Into<String>) -> Error {
        self.g.node_err(self.node, msg)
    }
    pub fn ints(&self, k: &str) -> Vec<i64> {
        self.node
            .attrs
            .ints(k)
            .map(|v| v.to_vec())
            .unwrap_or_default()
    }
}

fn lower_node(e: &mut Emitter, node: &Node) -> Result<()> {
    let g = e.g;
    let n = N { node, g };
    let out = match node.op.as_str() {
        "Identity" => n.input(e, 0),
        "Conv" => nn::conv(e, &n)?,
        "MatMul" => nn::matmul(e, &n)?,
        "Gemm" => nn::gemm(e, &n)?,
        "MaxPool" | "AveragePool" => reduce::pool(e, &n)?,
        "GlobalAveragePool" | "GlobalMaxPool" => reduce::global_pool(e, &n)?,
        "BatchNormalization" => elementwise::batchnorm(e, &n)?,
        "Softmax" | "LogSoftmax" => reduce::softmax(e, &n)?,
        op if op.starts_with("Reduce") => reduce::reduce(e, &n)?,
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => shape::reshape(e, &n),
        "Expand" => shape::expand(e, &n),
        "Transpose" => shape::transpose(e, &n),
        "Concat" => shape::concat(e, &n),
        "Slice" => shape::slice(e, &n),
        "Gather" => shape::gather(e, &n),
        "Pad" => shape::pad(e, &n),
        "Cast" => elementwise::cast(e, &n),
        "QuantizeLinear" | "DequantizeLinear" => elementwise::qdq(e, &n),
        "Where" => elementwise::select(e, &n),
        _ => elementwise::lower(e, &n)?,
    };
    e.bind(node.outputs[0], out);
    Ok(())
}
