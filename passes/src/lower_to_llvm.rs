//! `lower-to-llvm`: bufferize the tensor-level module (results become out-parameters) and
//! lower it to the LLVM dialect, exactly as the CPU backend does before JIT or AOT.

use bonsai::codegen::cpu::LOWER_TO_LLVM;
use bonsai::pass::{run_upstream, Options, Pass, PassContext};
use bonsai::Result;
use melior::ir::Module;

pub struct LowerToLlvm;

impl LowerToLlvm {
    pub const SUMMARY: &'static str = "bufferize (results as out-params) and lower to the LLVM dialect";
    /// Settings `bonsai propose` tries.
    pub const GRID: &'static [&'static str] = &[];

    pub fn create(opts: &Options) -> Result<Box<dyn Pass>> {
        opts.expect_keys(&[])?;
        Ok(Box::new(LowerToLlvm))
    }
}

impl Pass for LowerToLlvm {
    fn name(&self) -> &'static str {
        "lower-to-llvm"
    }

    fn run(&self, cx: &PassContext, module: &mut Module) -> Result<()> {
        run_upstream(cx.mlir, module, LOWER_TO_LLVM)
    }
}
