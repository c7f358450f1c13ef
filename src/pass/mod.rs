//! Passes: the [`Pass`] trait, one [`Registry`], MLIR-style pipeline text that mixes bonsai
//! passes with upstream ones, and a [`PassManager`] that verifies after every pass and owns
//! the IR dumps.

mod pipeline;

use std::collections::BTreeMap;

use melior::ir::Module;
use melior::pass::PassManager as MlirPassManager;

pub use pipeline::{parse_pipeline, Element, Options};

use crate::calib::{Calibration, LayerCalib};
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
    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()>;
}

/// What a pass may use besides the module.
pub struct PassContext<'a> {
    pub mlir: &'a Mlir,
    /// Layer input statistics from `--calib` data, keyed by weight name.
    pub calib: Option<&'a Calibration>,
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

/// One step of a parsed pipeline.
enum Step {
    Bonsai(Box<dyn Pass>),
    /// A run of consecutive upstream passes, as pipeline text.
    Upstream(String),
}

impl Step {
    fn label(&self) -> String {
        match self {
            Step::Bonsai(p) => p.name().to_string(),
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
                    steps.push(Step::Bonsai((info.factory)(&el.options).map_err(
                        |e| match e {
                            Error::Option { option, msg } => Error::Option {
                                option: format!("{}{{{option}}}", info.name),
                                msg,
                            },
                            e => e,
                        },
                    )?));
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
        })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn needs_calibration(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Bonsai(p) if p.needs_calibration()))
    }

    /// Run every step, verifying the module after each.
    pub fn run(&self, mlir: &Mlir, module: &mut Module) -> Result<()> {
        for step in &self.steps {
            match step {
                Step::Bonsai(p) => {
                    let cx = PassContext {
                        mlir,
                        calib: self.calibration.as_ref(),
                    };
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
