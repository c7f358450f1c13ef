//! GPU code: the same tensor-level module mapped onto CUDA threads and compiled to PTX for
//! sm_90 by MLIR's NVVM pipeline (no CUDA installation needed to generate it).
//!
//! Each linalg op becomes a parallel loop nest; its outer parallel loops are mapped to the
//! grid and blocks (`gpu-map-parallel-loops`), outlined into one kernel each, and the NVVM
//! pipeline serialises every kernel module as PTX text (`cubin-format=isa`).

use melior::ir::Module;
use mlir_sys::*;

use crate::error::{Error, Result};
use crate::ir::capi::{ops_named, sref, string};
use crate::ir::Mlir;
use crate::pass::run_upstream;

/// Tensor-level module -> host code launching kernels, with every kernel module as PTX.
pub const TO_PTX: &str = "builtin.module(\
func.func(linalg-fuse-elementwise-ops),\
one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map},\
buffer-results-to-out-params{modify-public-functions hoist-static-allocs},\
func.func(convert-linalg-to-parallel-loops),\
func.func(gpu-map-parallel-loops),\
func.func(convert-parallel-loops-to-gpu),\
gpu-kernel-outlining,\
gpu-lower-to-nvvm-pipeline{cubin-chip=sm_90 cubin-features=+ptx80 cubin-format=isa})";

/// Lower `module` (in place) and return each kernel module's PTX as (name, text), in order.
pub fn ptx(mlir: &Mlir, module: &mut Module) -> Result<Vec<(String, String)>> {
    run_upstream(mlir, module, TO_PTX)?;
    let mut bins = Vec::new();
    // SAFETY: walking a live module; attributes are read while it lives.
    unsafe { ops_named(module.as_operation().to_raw(), "gpu.binary", &mut bins) };
    let mut out = Vec::new();
    for b in bins {
        // SAFETY: `b` is a live gpu.binary op.
        unsafe {
            let name = mlirOperationGetAttributeByName(b, sref("sym_name"));
            let objs = mlirOperationGetAttributeByName(b, sref("objects"));
            if name.ptr.is_null() || objs.ptr.is_null() {
                return Err(Error::Mlir("gpu.binary without name or objects".into()));
            }
            let name = string(mlirStringAttrGetValue(name));
            for i in 0..mlirArrayAttrGetNumElements(objs) {
                let o = mlirArrayAttrGetElement(objs, i);
                if !mlirAttributeIsAGPUObjectAttr(o) {
                    continue;
                }
                out.push((name.clone(), string(mlirGPUObjectAttrGetObject(o))));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Mlir("the GPU pipeline produced no kernels".into()));
    }
    Ok(out)
}
