//! `bonsai`: the model compression compiler's command line.

mod bench;
mod conformance;
mod plot;
mod recipe;
mod sensitivity;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bonsai::session::{load_bound, shapes_of, Compiled};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bonsai",
    version,
    about = "Compress ONNX models (prune, share, quantise) and compile them to native code",
    long_about = "bonsai compiles an ONNX model through MLIR to native code and, as the compression \
passes land, prunes, shares and quantises it under a fidelity budget.\n\n\
Examples:\n  bonsai run model.onnx --input in.npz --output out.npz\n  \
bonsai bench model.onnx --shape input=1x1x28x28\n  \
bonsai import model.onnx --shape x=1x3x48x192 > model.mlir"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ShapeArgs {
    /// Bind an input's shape, e.g. --shape x=1x3x48x192 (repeatable). Symbolic dims must be
    /// bound unless `run` takes them from the input file.
    #[arg(long = "shape", value_name = "NAME=DxDx..")]
    shapes: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a model to native code and run it on the tensors of an .npz file.
    Run {
        model: PathBuf,
        /// Inputs keyed by graph input name (np.savez). Shapes bind symbolic dims.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the outputs, keyed by graph output name. Not written on error.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Run Gemm weights at least this sparse as CSR kernels (default: all dense).
        #[arg(long, value_name = "SPARSITY")]
        sparse_min: Option<f64>,
        #[command(flatten)]
        shapes: ShapeArgs,
    },
    /// Print the model lowered to MLIR (tensor level: linalg, tensor, arith, math).
    Import {
        model: PathBuf,
        #[command(flatten)]
        shapes: ShapeArgs,
        /// Write to a file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Show the CPU code-generation form (what `run`, `bench` and `compile` lower):
        /// register-blocked convolution kernels instead of the plain linalg form that the
        /// compression passes and the GPU pipeline see.
        #[arg(long)]
        cpu: bool,
        /// With the CPU form (implied): weights at least this sparse get sparse kernels
        /// (Gemm: CSR `#sparse_tensor` constants; stride-1 Conv: the direct kernel; other
        /// Conv: im2col and CSR), as `bench` and `compile` use with --sparse-min.
        #[arg(long, value_name = "SPARSITY")]
        sparse_min: Option<f64>,
        /// With the CPU form: the x86 vector extensions its kernels assume (default: this
        /// machine's, which `run`, `bench` and `compile` always target). Sparse Gemms on a
        /// few rows use 16-lane permutes with avx512, 8-lane with avx2, gathers with none;
        /// integer convolutions use 8-bit dot products with avx512vnni.
        /// For reading or pinning the code another machine gets.
        #[arg(long, value_enum, default_value_t = X86Arg::Host)]
        x86: X86Arg,
    },
    /// Compile time and median single-thread latency, next to onnxruntime's on the same input.
    Bench(bench::BenchArgs),
    /// Compress a model with a pass pipeline, write the compressed ONNX, verify it against the
    /// original on held-out inputs and report sizes, sparsity, FLOPs and fidelity.
    #[command(
        long_about = "Compress a model with a pass pipeline, write the compressed ONNX, \
verify it against the original on held-out inputs and report sizes three ways (dense f32, \
as stored in the output ONNX, entropy-coded) and fidelity.\n\nExamples:\n  \
bonsai compress mnist.onnx -o small.onnx --prune 0.9 --share 4 --calib calib.npz --eval heldout.npz\n  \
bonsai compress mnist.onnx -o small.onnx --passes 'prune-magnitude{sparsity=0.9 granularity=sensitivity},share-kmeans{bits=4}' --calib calib.npz --eval heldout.npz\n  \
bonsai compress model.onnx -o int8.onnx --quantize 8 --eval heldout.npz\n  \
bonsai compress model.onnx -o out.onnx --recipe recipe.toml --report r.json\n\n\
--eval takes an .npz keyed by graph input names (first dim = samples) and an optional \
'labels' array; without it bonsai verifies on 8 pseudo-random samples and says so. \
--calib (same format, different samples) feeds the calibration-aware passes. The output is \
written only after it has been run and compared with the original. \
Passes and their options: bonsai-opt --list-passes."
    )]
    Compress {
        /// The ONNX model to compress (never overwritten).
        model: PathBuf,
        /// Where to write the compressed ONNX (only once it has been verified).
        #[arg(long, short)]
        output: PathBuf,
        /// Pass pipeline, e.g. 'prune-magnitude{sparsity=0.9 granularity=global}'. Empty: a
        /// faithful copy.
        #[arg(long, default_value = "")]
        passes: String,
        /// A TOML recipe: the pipeline as [[pass]] tables plus calib/eval paths (see
        /// README, "Recipes"). Flags given on the command line win over its paths.
        #[arg(long, conflicts_with = "passes")]
        recipe: Option<PathBuf>,
        /// Shorthand: prune this fraction of weights by magnitude (allocated by estimated
        /// output error with --calib, else by one global ranking).
        #[arg(long, value_name = "SPARSITY", conflicts_with_all = ["passes", "recipe"])]
        prune: Option<f64>,
        /// Shorthand: k-means weight sharing with 2^BITS centroids per layer.
        #[arg(long, value_name = "BITS", conflicts_with_all = ["passes", "recipe"])]
        share: Option<u32>,
        /// Shorthand: BITS-bit symmetric per-channel weight quantisation.
        #[arg(long, value_name = "BITS", conflicts_with_all = ["passes", "recipe"])]
        quantize: Option<u32>,
        /// Held-out inputs (and optional 'labels') to verify on; not used for calibration.
        #[arg(long)]
        eval: Option<PathBuf>,
        /// Calibration inputs (np.savez keyed by graph input name, first dim = samples) for the
        /// activation-aware and second-order passes. Must differ from --eval.
        #[arg(long)]
        calib: Option<PathBuf>,
        /// Samples per compiled call when verifying.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Gradual schedule: reach each pass's `sparsity` in STEPS steps (cubic ramp), with
        /// calibration statistics captured again on the partly pruned model before each step,
        /// so reconstruction sees what upstream pruning did; `refit` runs after every step.
        /// Needs --calib. Default 1 (one shot), or the recipe's `gradual`.
        #[arg(long, value_name = "STEPS")]
        gradual: Option<usize>,
        /// Write the report as JSON too.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Output form: `onnx` stores each weight in the smallest standard-ONNX form its
        /// encoding allows (int8 + DequantizeLinear, codebook indices + Gather, non-zeros +
        /// position gaps + ScatterElements); `dense-onnx` writes plain f32 initializers.
        #[arg(long, default_value = "onnx", value_parser = ["onnx", "dense-onnx"])]
        emit: String,
        /// The original model MODEL was derived from (say, a pruned checkpoint's source):
        /// `refit` reconstructs towards it and the output is verified against it, so sharing
        /// or quantising a checkpoint reports fidelity to the real original. Its inputs,
        /// outputs, ops and weight names and shapes must match MODEL's. Default: MODEL.
        #[arg(long, value_name = "ORIGINAL")]
        reference: Option<PathBuf>,
        #[command(flatten)]
        shapes: ShapeArgs,
    },
    /// Propose mode: for each lossy pass of a pipeline, try its settings on every layer
    /// and list the candidates (layer, setting, error, bytes) the optimiser chooses from;
    /// the model is not rewritten.
    #[command(
        long_about = "Propose mode: for each lossy pass of the pipeline, try each setting of its \
grid (sparsities for pruning, bit widths for sharing and quantisation) on every layer it \
touches, measure the layer's relative output error on the calibration inputs \
(trace(dW H dW^T) / trace(W H W^T); without --calib, the relative weight error) and its \
entropy-coded bytes, and list them. Each candidate carries the pipeline text that applies \
exactly it. Later passes see the pipeline's own result of earlier ones.\n\nExample:\n  \
bonsai propose mnist.onnx --passes 'prune-magnitude,share-kmeans' --calib calib.npz -o cands.json"
    )]
    Propose {
        /// The ONNX model.
        model: PathBuf,
        /// The pipeline whose passes to propose for (their options are the base settings).
        #[arg(long)]
        passes: String,
        /// Calibration inputs (np.savez keyed by graph input name).
        #[arg(long)]
        calib: Option<PathBuf>,
        /// Write the candidates as JSON.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[command(flatten)]
        shapes: ShapeArgs,
    },
    /// Compile a model ahead of time: DIR/libmodel.so (the same code the JIT runs, weights
    /// inside), DIR/model.h (C entry point) and DIR/model.json (inputs, outputs) for
    /// `bonsai-rt`, the runtime that links no LLVM.
    #[command(
        long_about = "Compile a model ahead of time into DIR: libmodel.so (the JIT's own object \
code, weights included, linked with the system C compiler), model.h (the C entry point \
bonsai_model_run(inputs, outputs) on row-major buffers, plus MLIR's _mlir_ciface_main) and \
model.json (input/output names, dtypes, shapes).\n\nExamples:\n  \
bonsai compile mnist.onnx -o build/mnist --shape input=1x1x28x28\n  \
bonsai-rt build/mnist --input in.npz --output out.npz\n  \
cc app.c -Ibuild/mnist -Lbuild/mnist -lmodel -Wl,-rpath,build/mnist"
    )]
    Compile {
        /// The ONNX model (compressed or not).
        model: PathBuf,
        /// Output folder (created; its libmodel.so, model.h and model.json are replaced).
        #[arg(long, short)]
        output: PathBuf,
        /// Compile weights at least this sparse as sparse kernels (default: all dense), each
        /// kernel only above the sparsity where it beats the dense code (direct convolution
        /// 0.5, batched CSR Gemm 0.7, Gemm on a few rows 0.5 with AVX2 or AVX-512 permutes,
        /// 0.85 with gathers): 0 means "wherever it pays"
        /// (measure with `bonsai bench --kernels` or `bonsai bench MODEL --sparse-min`).
        #[arg(long, value_name = "SPARSITY")]
        sparse_min: Option<f64>,
        /// `cpu`: native code for this machine. `cuda`: host code that launches PTX kernels
        /// for sm_90 (one `.entry` per parallel loop nest, also written to DIR/model.ptx)
        /// through the CUDA driver, which the library opens when it first runs: it builds
        /// without CUDA, and on a machine without a GPU a run fails with a clear error.
        #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
        target: String,
        #[command(flatten)]
        shapes: ShapeArgs,
    },
    /// List the ONNX operators bonsai supports.
    Ops,
    /// Run ONNX backend node tests and count passed / failed / unsupported cases.
    Conformance(conformance::ConformanceArgs),
    /// Measure each layer's output error against its sparsity on calibration data (table,
    /// JSON candidates, SVG plot) and suggest per-layer sparsities for a target.
    Sensitivity(sensitivity::SensitivityArgs),
}

/// `--sparse-min` must be a fraction.
fn check_sparse_min(v: Option<f64>) -> Result<Option<f64>> {
    match v {
        Some(x) if !(0.0..=1.0).contains(&x) => {
            bail!("option --sparse-min: {x} is not a fraction in [0, 1]")
        }
        v => Ok(v),
    }
}

pub fn parse_shapes(args: &[String]) -> Result<HashMap<String, Vec<usize>>> {
    Ok(bonsai::session::parse_shapes(args)?)
}

/// Write `out` atomically: a temporary file beside it, renamed into place, so a failure never
/// leaves partial output, and never onto one of the inputs.
pub fn guard_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    for i in inputs {
        if let (Ok(a), Ok(b)) = (out.canonicalize(), i.canonicalize()) {
            if a == b {
                bail!(
                    "refusing to overwrite input {} with the output",
                    i.display()
                );
            }
        }
    }
    Ok(())
}

/// `import --x86`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum X86Arg {
    /// This machine's extensions.
    Host,
    None,
    Avx2,
    Avx512,
    /// AVX-512 with VNNI (8-bit dot products).
    Avx512vnni,
}

impl X86Arg {
    fn resolve(self) -> bonsai::ir::lower::X86 {
        use bonsai::ir::lower::X86;
        match self {
            X86Arg::Host => bonsai::ir::lower::host_x86(),
            X86Arg::None => X86::None,
            X86Arg::Avx2 => X86::Avx2,
            X86Arg::Avx512 => X86::Avx512,
            X86Arg::Avx512vnni => X86::Avx512Vnni,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run {
            model,
            input,
            output,
            sparse_min,
            shapes,
        } => {
            let inputs = bonsai::npz::read(&input)?;
            let mut bind = shapes_of(&inputs);
            bind.extend(parse_shapes(&shapes.shapes)?);
            let g = load_bound(&model, &bind)?;
            let sparse_min = check_sparse_min(sparse_min)?;
            let c = Compiled::with_options(g, &bonsai::ir::lower::Options::cpu(sparse_min))?;
            let outs = c.run_named(&inputs)?;
            if let Some(o) = output {
                guard_output(&o, &[&model, &input])?;
                let tmp = o.with_extension("npz.tmp");
                bonsai::npz::write(&tmp, &outs)?;
                std::fs::rename(&tmp, &o)
                    .with_context(|| format!("{}: cannot move output into place", o.display()))?;
            }
            for (n, t) in &outs {
                let v = t.to_f64_vec();
                let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.6}")).collect();
                println!(
                    "{n}: {}{:?} [{}{}]",
                    t.dtype(),
                    t.shape,
                    head.join(", "),
                    if v.len() > 6 { ", ..." } else { "" }
                );
            }
            Ok(())
        }
        Cmd::Import {
            model,
            shapes,
            output,
            cpu,
            sparse_min,
            x86,
        } => {
            let g = load_bound(&model, &parse_shapes(&shapes.shapes)?)?;
            let sparse_min = check_sparse_min(sparse_min)?;
            let opts = bonsai::ir::lower::Options {
                sparse_min,
                cpu_kernels: cpu || sparse_min.is_some(),
                sparse_floors: true,
                gpu_math: false,
                x86: x86.resolve(),
            };
            let text = bonsai::ir::lower::lower_with(&g, &opts)?;
            let mlir = bonsai::ir::Mlir::new();
            let m = mlir.parse(&text)?;
            let s = format!("{}\n", m.as_operation());
            match output {
                Some(o) => {
                    guard_output(&o, &[&model])?;
                    std::fs::write(&o, s).with_context(|| format!("{}", o.display()))?
                }
                None => print!("{s}"),
            }
            Ok(())
        }
        Cmd::Bench(args) => bench::run(args),
        Cmd::Conformance(args) => conformance::run(args),
        Cmd::Sensitivity(args) => sensitivity::run(args),
        Cmd::Compress {
            model,
            output,
            passes,
            recipe,
            prune,
            share,
            quantize,
            eval,
            calib,
            batch,
            gradual,
            report,
            emit,
            reference: original,
            shapes,
        } => {
            let (passes, calib, eval, gradual) = match &recipe {
                Some(path) => {
                    let r = recipe::load(path)?;
                    (
                        r.pipeline,
                        calib.or(r.calib),
                        eval.or(r.eval),
                        gradual.or(r.gradual),
                    )
                }
                None if prune.is_some() || share.is_some() || quantize.is_some() => (
                    recipe::shorthand(prune, share, quantize, calib.is_some())?,
                    calib,
                    eval,
                    gradual,
                ),
                None => (passes, calib, eval, gradual),
            };
            let gradual = gradual.unwrap_or(1);
            let original = original.unwrap_or_else(|| model.clone());
            guard_output(&output, &[&model, &original])?;
            if let Some(r) = &report {
                guard_output(r, &[&model, &original])?;
            }
            if batch == 0 {
                bail!("option --batch: must be at least 1");
            }
            // Shapes: --shape, else those of the data (one sample), else symbolic dims = 1.
            let files: Vec<&std::path::Path> = eval
                .iter()
                .chain(calib.iter())
                .map(|p| p.as_path())
                .collect();
            let mut bind = bonsai::session::sample_shapes(&files)?;
            bind.extend(parse_shapes(&shapes.shapes)?);
            let g = bonsai::session::load_default_bound(&model, &bind)?;
            if original != model {
                let r = bonsai::session::load_default_bound(&original, &bind)?;
                bonsai::compress::check_same_structure(&g, &r)?;
            }
            let registry = bonsai_passes::registry();
            let mut pm = bonsai::pass::PassManager::parse(&registry, &passes)?;
            if let (Some(c), Some(e)) = (&calib, &eval) {
                if c.canonicalize().ok() == e.canonicalize().ok() {
                    bail!("options --calib and --eval: the same file; fidelity must be measured on inputs not used for calibration");
                }
            }
            if gradual == 0 {
                bail!("option --gradual: must be at least 1 step");
            }
            // A gradual schedule prunes steps 1..K-1 into a dense intermediate model; the last
            // step starts from it (and is still verified against the original).
            let work = std::env::temp_dir().join(format!("bonsai-gradual-{}", std::process::id()));
            let mut start = model.clone();
            // Passes that reconstruct towards the original (refit) get it compiled once, with
            // the calibration inputs.
            let reference = match &calib {
                Some(c) if pm.needs_reference() => {
                    let data = bonsai::compress::EvalData::from_npz(c, &g)?;
                    Some(std::rc::Rc::new(bonsai::calib::Reference::new(
                        &original,
                        &data.inputs,
                        batch,
                    )?))
                }
                _ => None,
            };
            if gradual > 1 {
                let Some(c) = &calib else {
                    bail!("option --gradual: needs --calib (each step re-calibrates)");
                };
                let data = bonsai::compress::EvalData::from_npz(c, &g)?;
                std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
                let build = |t: &str| bonsai::pass::PassManager::parse(&registry, t);
                start = bonsai::compress::gradual_prefix(
                    &model,
                    &bind,
                    &passes,
                    gradual,
                    &data.inputs,
                    batch,
                    &build,
                    &work,
                    reference.clone(),
                )?;
                pm = bonsai::pass::PassManager::parse(
                    &registry,
                    &bonsai::compress::schedule_step(&passes, gradual, gradual)?,
                )?;
            }
            match &calib {
                Some(c) => {
                    let data = bonsai::compress::EvalData::from_npz(c, &g)?;
                    pm.calibration = Some(bonsai::calib::capture(&start, &data.inputs, batch)?);
                    // Reconstruction aims at the original model, not a gradual intermediate.
                    pm.reference = reference.clone();
                }
                None if pm.needs_calibration() => {
                    bail!("option --calib: the pipeline '{passes}' needs calibration data (np.savez of inputs keyed by graph input name)")
                }
                None => {}
            }
            let data = match &eval {
                Some(p) => bonsai::compress::EvalData::from_npz(p, &g)?,
                None => bonsai::compress::EvalData::synthetic(&g, 8),
            };
            let emit = if emit == "dense-onnx" {
                bonsai::compress::Emit::DenseOnnx
            } else {
                bonsai::compress::Emit::Onnx
            };
            // The graph whose weights the last step compresses (the intermediate one if gradual).
            let g = if gradual > 1 {
                bonsai::session::load_default_bound(&start, &bind)?
            } else {
                g
            };
            let r = bonsai::compress::compress(
                &start, &original, &g, &pm, &passes, &output, &data, batch, emit,
            );
            if gradual > 1 {
                let _ = std::fs::remove_dir_all(&work);
            }
            let mut r = r?;
            if gradual > 1 {
                r.pipeline = format!("{passes} (gradual, {gradual} steps)");
            }
            print!("{}", bonsai::report::table(&r));
            if data.synthetic {
                println!("note: verified on pseudo-random inputs only; give --eval DATA.npz for a real fidelity figure");
            }
            if let Some(p) = report {
                std::fs::write(&p, serde_json::to_string_pretty(&r)?)
                    .with_context(|| p.display().to_string())?;
            }
            Ok(())
        }
        Cmd::Propose {
            model,
            passes,
            calib,
            output,
            batch,
            shapes,
        } => {
            if let Some(o) = &output {
                guard_output(o, &[&model])?;
            }
            let files: Vec<&std::path::Path> = calib.iter().map(|p| p.as_path()).collect();
            let mut bind = bonsai::session::sample_shapes(&files)?;
            bind.extend(parse_shapes(&shapes.shapes)?);
            let g = bonsai::session::load_default_bound(&model, &bind)?;
            let registry = bonsai_passes::registry();
            let mut pm = bonsai::pass::PassManager::parse(&registry, &passes)?;
            match &calib {
                Some(c) => {
                    let data = bonsai::compress::EvalData::from_npz(c, &g)?;
                    pm.calibration =
                        Some(bonsai::calib::capture(&model, &data.inputs, batch.max(1))?);
                }
                None if pm.needs_calibration() => {
                    bail!("option --calib: the pipeline '{passes}' needs calibration data")
                }
                None => {}
            }
            let mlir = bonsai::ir::Mlir::new();
            let mut m = mlir.parse(&bonsai::ir::lower::lower(&g)?)?;
            let mut cands = pm.propose(&mlir, &mut m)?;
            // Effective FLOPs: the layer's dense FLOPs scaled by the candidate's density.
            let base =
                bonsai::compress::apply(&g, &bonsai::pass::PassManager::parse(&registry, "")?)?;
            for c in cands.iter_mut() {
                if let Some(l) = base.layers.iter().find(|l| l.weight == c.weight) {
                    c.flops = (l.flops_dense as f64 * (1.0 - c.sparsity)).round() as u64;
                }
            }
            println!(
                "{:<24} {:<52} {:<18} {:>8} {:>10} {:>10} {:>10}",
                "layer", "setting", "encoding", "sparsity", "error", "bytes", "MFLOP"
            );
            for c in &cands {
                // The setting without the exclude list that confines it to this layer.
                let setting = match c.pipeline.split_once('{') {
                    Some((name, inner)) => {
                        let kept: Vec<&str> = inner
                            .trim_end_matches('}')
                            .split(' ')
                            .filter(|kv| !kv.starts_with("exclude="))
                            .collect();
                        format!("{name}{{{}}}", kept.join(" "))
                    }
                    None => c.pipeline.clone(),
                };
                println!(
                    "{:<24} {:<52} {:<18} {:>7.1}% {:>10.3e} {:>10} {:>10.3}",
                    c.layer,
                    setting,
                    c.encoding,
                    100.0 * c.sparsity,
                    c.error,
                    c.bytes,
                    c.flops as f64 / 1e6
                );
            }
            if let Some(first) = cands.first() {
                println!("error measured as: {}", first.measured);
            }
            if let Some(o) = output {
                let tmp = o.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_string_pretty(&cands)?)
                    .with_context(|| tmp.display().to_string())?;
                std::fs::rename(&tmp, &o).with_context(|| o.display().to_string())?;
            }
            Ok(())
        }
        Cmd::Compile {
            model,
            output,
            sparse_min,
            target,
            shapes,
        } => {
            guard_output(&output, &[&model])?;
            let g = load_bound(&model, &parse_shapes(&shapes.shapes)?)?;
            let ins: Vec<(String, bonsai::graph::TensorType)> = g
                .inputs
                .iter()
                .map(|i| {
                    (
                        g.values[i.value].name.clone(),
                        g.ty(i.value).expect("bound").clone(),
                    )
                })
                .collect();
            let outs: Vec<(String, bonsai::graph::TensorType)> = g
                .outputs
                .iter()
                .map(|&o| (g.values[o].name.clone(), g.ty(o).expect("inferred").clone()))
                .collect();
            let mlir = bonsai::ir::Mlir::new();
            let name = model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Build in a sibling folder, then move into place: no partial output.
            let tmp = output.with_extension("tmp~");
            let _ = std::fs::remove_dir_all(&tmp);
            let mut files = vec!["libmodel.so", "model.h", "model.json"];
            let (r, kernels) = if target == "cuda" {
                if sparse_min.is_some() {
                    bail!("--sparse-min: the cuda target has no sparse kernels yet (leave it out)");
                }
                let mut m = mlir.parse(&bonsai::ir::lower::lower(&g)?)?;
                let ptx = bonsai::codegen::gpu::lower(&mlir, &mut m)?;
                let mut text = String::new();
                for (name, p) in &ptx {
                    text.push_str(&format!("// ---- bonsai: PTX module {name} ----\n{p}\n"));
                }
                std::fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
                std::fs::write(tmp.join("model.ptx"), text)
                    .with_context(|| tmp.join("model.ptx").display().to_string())?;
                files.push("model.ptx");
                let r = bonsai::codegen::aot::emit_library(
                    &mlir,
                    &mut m,
                    bonsai::codegen::aot::Target::Cuda,
                    &name,
                    &ins,
                    &outs,
                    &tmp,
                );
                (r, format!("{} PTX kernel modules for sm_90", ptx.len()))
            } else {
                let opts = bonsai::ir::lower::Options::cpu(check_sparse_min(sparse_min)?);
                let text = bonsai::ir::lower::lower_with(&g, &opts)?;
                let sparse = bonsai::ir::lower::uses_sparse(&text);
                let mut m = mlir.parse(&text)?;
                let r = bonsai::codegen::aot::compile_library(
                    &mlir, &mut m, sparse, &name, &ins, &outs, &tmp,
                );
                let mut kernels = match bonsai::ir::lower::sparse_weights(&text) {
                    0 => "all weights dense".to_string(),
                    k => format!("{k} weight(s) as sparse kernels"),
                };
                match bonsai::ir::lower::int8_weights(&text) {
                    0 => {}
                    k => kernels.push_str(&format!(", {k} read as int8")),
                }
                (r, kernels)
            };
            if let Err(e) = r {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e.into());
            }
            std::fs::create_dir_all(&output).with_context(|| output.display().to_string())?;
            for f in &files {
                std::fs::rename(tmp.join(f), output.join(f))
                    .with_context(|| output.join(f).display().to_string())?;
            }
            let _ = std::fs::remove_dir_all(&tmp);
            println!(
                "wrote {}/{{{}}}: {} input(s), {} output(s), {kernels}",
                output.display(),
                files.join(", "),
                ins.len(),
                outs.len()
            );
            Ok(())
        }
        Cmd::Ops => {
            for op in bonsai::graph::ops::supported_ops() {
                println!("{op}");
            }
            Ok(())
        }
    }
}
