//! Passes: the [`Pass`] trait, one [`Registry`], MLIR-style pipeline text that mixes bonsai
//! passes with upstream ones, and a [`PassManager`] that verifies after every pass and owns
//! the IR dumps.

mod pipeline;

use std::collections::BTreeMap;

use melior::ir::Module;
use melior::pass::PassManager as MlirPassManager;

pub use pipeline::{parse_pipeline, Element, Options};

use crate::calib::{Calibration, LayerCalib, Reference};
use crate::candidate::Candidate;
use crate::encoding::Encoding;
use crate::error::{Error, Result};
use crate::ir::Mlir;

/// A bonsai pass: a rewrite of the module. The name is the CLI and lit name
/// (`prune-magnitude`), derived from the type name (`PruneMagnitude`).
pub trait Pass {
    fn name(&self) -> &'static str;
    /// Whether the pass reads calibration statistics (`--calib`).
    fn needs_calibration(&self) -> bool {
        false
    }
    /// Whether the pass reconstructs towards the original model (needs a [`Reference`]).
    fn needs_reference(&self) -> bool {
        false
    }
    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()>;
}

/// What a pass may use besides the module.
pub struct PassContext<'a> {
    pub mlir: &'a Mlir,
    /// Layer input statistics from `--calib` data, keyed by weight name.
    pub calib: Option<&'a Calibration>,
    /// The original model and the calibration inputs, for sequential reconstruction.
    pub reference: Option<&'a Reference>,
}

impl PassContext<'_> {
    /// The statistics of `weight`, or an error naming the pass and the missing `--calib`.
    pub fn calib_for(&self, pass: &str, weight: &str) -> Result<&LayerCalib> {
        let c = self.calib.ok_or_else(|| Error::Pass {
            pass: pass.into(),
            msg: "needs calibration data: give --calib DATA.npz (inputs keyed by graph input name)"
                .into(),
        })?;
        c.get(weight).ok_or_else(|| Error::Pass {
            pass: pass.into(),
            msg: format!("no calibration statistics for weight '{weight}'"),
        })
    }
}

/// Builds a pass from its `{key=value ...}` options (rejecting unknown keys).
pub type Factory = fn(&Options) -> Result<Box<dyn Pass>>;

pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub factory: Factory,
    /// Settings propose mode tries, each as option text overriding the pipeline's
    /// (`sparsity=0.9`, `bits=4`; `-key` drops an option); empty for passes that are not
    /// lossy.
    pub grid: &'static [&'static str],
}

/// Every bonsai pass by name.
#[derive(Default)]
pub struct Registry {
    passes: BTreeMap<&'static str, PassInfo>,
}

impl Registry {
    pub fn register(&mut self, info: PassInfo) {
        let prev = self.passes.insert(info.name, info);
        assert!(prev.is_none(), "pass registered twice");
    }

    pub fn get(&self, name: &str) -> Option<&PassInfo> {
        self.passes.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PassInfo> {
        self.passes.values()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.keys().copied().collect()
    }
}

/// How a bonsai step was built, so propose mode can rebuild it with other settings.
struct Origin {
    factory: Factory,
    options: Options,
    grid: &'static [&'static str],
}

/// One step of a parsed pipeline.
enum Step {
    Bonsai(Box<dyn Pass>, Origin),
    /// A run of consecutive upstream passes, as pipeline text.
    Upstream(String),
}

impl Step {
    fn label(&self) -> String {
        match self {
            Step::Bonsai(p, _) => p.name().to_string(),
            Step::Upstream(t) => t.clone(),
        }
    }
}

pub struct PassManager {
    steps: Vec<Step>,
    /// Print the IR after each step (to stderr), as `--mlir-print-ir-after-all`.
    pub print_after_all: bool,
    /// Calibration statistics handed to the passes that need them.
    pub calibration: Option<Calibration>,
    /// The original model run on the calibration inputs, for the passes that reconstruct
    /// towards it.
    pub reference: Option<std::rc::Rc<Reference>>,
}

impl PassManager {
    /// Parse `text` (`builtin.module(a, b{k=v}, func.func(c))` or just `a, b`) against the
    /// registry; names not in it are handed to MLIR's own pipeline parser.
    pub fn parse(registry: &Registry, text: &str) -> Result<PassManager> {
        let mut steps = Vec::new();
        let mut upstream: Vec<String> = Vec::new();
        for el in parse_pipeline(text)? {
            match registry.get(&el.name) {
                Some(info) if el.nested.is_none() => {
                    if !upstream.is_empty() {
                        steps.push(Step::Upstream(upstream.join(",")));
                        upstream.clear();
                    }
                    let pass = (info.factory)(&el.options).map_err(|e| match e {
                        Error::Option { option, msg } => Error::Option {
                            option: format!("{}{{{option}}}", info.name),
                            msg,
                        },
                        e => e,
                    })?;
                    let origin = Origin {
                        factory: info.factory,
                        options: el.options.clone(),
                        grid: info.grid,
                    };
                    steps.push(Step::Bonsai(pass, origin));
                }
                _ => upstream.push(el.text.clone()),
            }
        }
        if !upstream.is_empty() {
            steps.push(Step::Upstream(upstream.join(",")));
        }
        Ok(PassManager {
            steps,
            print_after_all: false,
            calibration: None,
            reference: None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn needs_calibration(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Bonsai(p, _) if p.needs_calibration()))
    }

    pub fn needs_reference(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Bonsai(p, _) if p.needs_reference()))
    }

    fn context<'a>(&'a self, mlir: &'a Mlir) -> PassContext<'a> {
        PassContext {
            mlir,
            calib: self.calibration.as_ref(),
            reference: self.reference.as_deref(),
        }
    }

    /// Run every step, verifying the module after each.
    pub fn run(&self, mlir: &Mlir, module: &mut Module) -> Result<()> {
        for step in &self.steps {
            match step {
                Step::Bonsai(p, _) => {
                    let cx = self.context(mlir);
                    p.run(&cx, module).map_err(|e| match e {
                        Error::Option { option, msg } => Error::Option {
                            option: format!("{}{{{option}}}", p.name()),
                            msg,
                        },
                        e => e,
                    })?;
                    mlir.verify(module).map_err(|e| Error::Pass {
                        pass: p.name().into(),
                        msg: format!("left a module that does not verify: {e}"),
                    })?;
                }
                Step::Upstream(t) => run_upstream(mlir, module, &format!("builtin.module({t})"))?,
            }
            if self.print_after_all {
                eprintln!(
                    "// -----// IR Dump After {} //----- //\n{}",
                    step.label(),
                    module.as_operation()
                );
            }
        }
        Ok(())
    }
}

impl PassManager {
    /// Propose mode: instead of rewriting, try every setting of each lossy pass's grid (the
    /// pipeline's other options kept) on the module as the earlier steps leave it, and
    /// report per layer what each costs and saves. The module ends as `run` leaves it.
    pub fn propose(&self, mlir: &Mlir, module: &mut Module) -> Result<Vec<Candidate>> {
        use crate::ir::weights::{restore, snapshot, weights};
        let mut out = Vec::new();
        for step in &self.steps {
            if let Step::Bonsai(p, origin) = step {
                let before = snapshot(module)?;
                let ws = weights(module);
                let orig: Vec<(crate::graph::Tensor, usize)> = ws
                    .iter()
                    .map(|w| {
                        let od = if w.transposed {
                            1 - w.out_dim
                        } else {
                            w.out_dim
                        };
                        Ok((w.read_onnx_layout()?, od))
                    })
                    .collect::<Result<_>>()?;
                for setting in origin.grid {
                    let mut opts = origin.options.clone();
                    // `key=value` sets an option, `-key` drops one the setting replaces.
                    for kv in setting.split_whitespace() {
                        match kv.strip_prefix('-') {
                            Some(k) => {
                                opts.0.remove(k);
                            }
                            None => {
                                let (k, v) = kv.split_once('=').expect("key=value");
                                opts.0.insert(k.into(), v.into());
                            }
                        }
                    }
                    let pass = (origin.factory)(&opts)?;
                    let cx = self.context(mlir);
                    pass.run(&cx, module)?;
                    for (i, w) in weights(module).iter().enumerate() {
                        let (t0, od) = &orig[i];
                        let t1 = w.read_onnx_layout()?;
                        if t1.to_le_bytes() == t0.to_le_bytes() && w.encoding()? == Encoding::Float
                        {
                            continue; // excluded or untouched
                        }
                        let (rows, cols, v0) = crate::encoding::row_view(t0, *od);
                        let (_, _, v1) = crate::encoding::row_view(&t1, *od);
                        let calib = self.calibration.as_ref().and_then(|c| c.get(&w.name));
                        let (error, measured) = match calib {
                            Some(c) if c.k == cols => {
                                (c.output_error(rows, &v0, &v1), "layer-output")
                            }
                            _ => {
                                let d: f64 = v0
                                    .iter()
                                    .zip(&v1)
                                    .map(|(a, b)| ((a - b) as f64).powi(2))
                                    .sum();
                                let n: f64 = v0.iter().map(|a| (*a as f64).powi(2)).sum();
                                (if n > 0.0 { d / n } else { 0.0 }, "weights")
                            }
                        };
                        let enc = w.encoding()?;
                        let nnz = v1.iter().filter(|x| **x != 0.0).count();
                        let entropy = crate::encoding::entropy_bytes(&enc, rows, cols, &v1);
                        let others: Vec<&str> = ws
                            .iter()
                            .filter(|o| o.layer != w.layer)
                            .map(|o| o.layer.as_str())
                            .collect();
                        let mut o2 = opts.clone();
                        if !others.is_empty() {
                            o2.0.insert("exclude".into(), others.join(","));
                        }
                        let text: Vec<String> =
                            o2.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        out.push(Candidate {
                            layer: w.layer.clone(),
                            weight: w.name.clone(),
                            pipeline: format!("{}{{{}}}", p.name(), text.join(" ")),
                            sparsity: 1.0 - nnz as f64 / v1.len().max(1) as f64,
                            encoding: enc.describe(),
                            error,
                            measured,
                            agreement: None,
                            bytes: entropy,
                            flops: 0,
                        });
                    }
                    restore(module, &before)?;
                }
            }
            // Later passes see what this one really does.
            self.run_step(step, mlir, module)?;
        }
        Ok(out)
    }

    fn run_step(&self, step: &Step, mlir: &Mlir, module: &mut Module) -> Result<()> {
        match step {
            Step::Bonsai(p, _) => {
                let cx = self.context(mlir);
                p.run(&cx, module)
            }
            Step::Upstream(t) => run_upstream(mlir, module, &format!("builtin.module({t})")),
        }
    }
}

/// Run upstream MLIR passes given as full pipeline text (`builtin.module(...)`).
pub fn run_upstream(mlir: &Mlir, module: &mut Module, pipeline: &str) -> Result<()> {
    mlir.take_diagnostics();
    let pm = MlirPassManager::new(&mlir.context);
    pm.enable_verifier(true);
    melior::utility::parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
        .map_err(|e| {
            Error::option(
                "--pass-pipeline",
                format!(
                    "{e}\n(in '{pipeline}'; bonsai's own passes: `bonsai-opt --list-passes`, upstream ones: `mlir-opt-22 --help`)"
                ),
            )
        })?;
    pm.run(module)
        .map_err(|_| mlir.error(&format!("pipeline {pipeline} failed")))
}
