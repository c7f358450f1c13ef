//! MLIR side of the core: context set-up, lowering from the graph, parsing and verification.

pub mod capi;
pub mod emit;
pub mod lower;
pub mod weights;

use std::sync::{Arc, Mutex};

use melior::dialect::DialectRegistry;
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::utility::{register_all_dialects, register_all_llvm_translations, register_all_passes};
use melior::Context;

use crate::error::{Error, Result};
use crate::graph::Graph;

/// An MLIR context with every upstream dialect, pass and LLVM translation registered, and a
/// diagnostic sink so errors come back as values instead of stderr noise.
pub struct Mlir {
    pub context: Context,
    diags: Arc<Mutex<Vec<String>>>,
}

impl Mlir {
    pub fn new() -> Mlir {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        let context = Context::new();
        context.append_dialect_registry(&registry);
        context.load_all_available_dialects();
        register_all_passes();
        register_all_llvm_translations(&context);
        let diags = Arc::new(Mutex::new(Vec::new()));
        let sink = diags.clone();
        context.attach_diagnostic_handler(move |d| {
            let loc = d.location().to_string();
            sink.lock().expect("diag lock").push(format!("{loc}: {d}"));
            true
        });
        Mlir { context, diags }
    }

    /// Diagnostics collected since the last call.
    pub fn take_diagnostics(&self) -> Vec<String> {
        std::mem::take(&mut *self.diags.lock().expect("diag lock"))
    }

    pub fn error(&self, what: &str) -> Error {
        let d = self.take_diagnostics();
        if d.is_empty() {
            Error::Mlir(what.to_string())
        } else {
            Error::Mlir(format!("{what}:\n  {}", d.join("\n  ")))
        }
    }

    /// Parse and verify MLIR text.
    pub fn parse<'c>(&'c self, text: &str) -> Result<Module<'c>> {
        self.take_diagnostics();
        let m = Module::parse(&self.context, text)
            .ok_or_else(|| self.error("could not parse the module"))?;
        self.verify(&m)?;
        Ok(m)
    }

    pub fn verify(&self, m: &Module) -> Result<()> {
        if m.as_operation().verify() {
            Ok(())
        } else {
            Err(self.error("the module does not verify"))
        }
    }

    /// Lower a bound graph and parse the result.
    pub fn import<'c>(&'c self, g: &Graph) -> Result<Module<'c>> {
        let text = lower::lower(g)?;
        self.parse(&text)
    }
}

impl Default for Mlir {
    fn default() -> Self {
        Mlir::new()
    }
}
