//! GPU code: the same tensor-level module mapped onto CUDA threads, every kernel compiled to
//! PTX for sm_90 by MLIR's NVVM pipeline (no CUDA installation needed to generate it), and
//! the host code that launches them.
//!
//! Each linalg op becomes a parallel loop nest; its outer parallel loops are mapped to the
//! grid and blocks (`gpu-map-parallel-loops`), outlined into one kernel each, and the NVVM
//! pipeline serialises every kernel module as PTX text (`cubin-format=isa`). [`lower`] also
//! prepares the host side for a library ([`super::aot::emit_library`] with
//! [`super::aot::Target::Cuda`]):
//! * math ops become bonsai's own functions ([`super::gpu_math`]): the PTX needs no libdevice;
//! * constants (host globals, which kernels cannot read) are copied into allocated buffers;
//! * every allocation goes through `bonsai_gpu_malloc`/`bonsai_gpu_free` (CUDA managed
//!   memory, in `cuda_support.c`), so host copies and kernels address the same buffers.

use melior::ir::Module;
use mlir_sys::*;

use crate::error::{Error, Result};
use crate::ir::capi::{ops_named, sref, string};
use crate::ir::Mlir;
use crate::pass::run_upstream;

/// Tensor level -> buffers, results as out parameters.
const BUFFERIZE: &str = "builtin.module(\
func.func(linalg-fuse-elementwise-ops),\
one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map},\
buffer-results-to-out-params{modify-public-functions hoist-static-allocs})";

/// Frees every buffer after its last use (launches are synchronous).
const DEALLOC: &str = "builtin.module(buffer-deallocation-pipeline)";

/// Buffers -> host code launching kernels, with every kernel module as PTX.
const TO_GPU: &str = "builtin.module(\
func.func(convert-linalg-to-parallel-loops),\
func.func(gpu-map-parallel-loops),\
func.func(convert-parallel-loops-to-gpu),\
gpu-kernel-outlining,\
gpu-lower-to-nvvm-pipeline{cubin-chip=sm_90 cubin-features=+ptx80 cubin-format=isa})";

/// What the host code calls besides `memrefCopy` (all defined in `cuda_support.c`).
pub const HOST_SYMBOLS: &[&str] = &[
    "mgpuModuleLoadJIT",
    "mgpuModuleUnload",
    "mgpuModuleGetFunction",
    "mgpuStreamCreate",
    "mgpuStreamSynchronize",
    "mgpuStreamDestroy",
    "mgpuLaunchKernel",
    "bonsai_gpu_malloc",
    "bonsai_gpu_free",
];

/// Lower `module` (in place) to host code in the LLVM dialect that launches PTX kernels, and
/// return each kernel module's PTX as (name, text), in order.
pub fn lower(mlir: &Mlir, module: &mut Module) -> Result<Vec<(String, String)>> {
    super::gpu_math::expand_math(mlir, module)?;
    run_upstream(mlir, module, BUFFERIZE)?;
    constants_to_buffers(mlir, module)?;
    run_upstream(mlir, module, DEALLOC)?;
    super::gpu_math::define_math(mlir, module)?;
    run_upstream(mlir, module, TO_GPU)?;
    rename_allocator(mlir, module)?;
    let kernels = ptx_of(module)?;
    for (name, text) in &kernels {
        if let Some(line) = text.lines().find(|l| l.contains(".extern")) {
            return Err(Error::Mlir(format!(
                "GPU kernel module {name} needs an external function the driver cannot resolve: {}",
                line.trim()
            )));
        }
    }
    Ok(kernels)
}

/// `memref.get_global` (a constant in host memory) -> a fresh buffer holding a copy, so that
/// kernels can read it. The copy runs on the host, into managed memory, at every run.
fn constants_to_buffers(mlir: &Mlir, module: &mut Module) -> Result<()> {
    let ctx = mlir.context.to_raw();
    let mut gets = Vec::new();
    // SAFETY: the module is live and held mutably; new ops are inserted next to live ones
    // and every use of a constant moves to its copy before the copy op (which reads the
    // constant) is created.
    unsafe {
        ops_named(
            module.as_operation().to_raw(),
            "memref.get_global",
            &mut gets,
        );
        let id = |s: &str| mlirIdentifierGet(ctx, sref(s));
        for g in gets {
            let v = mlirOperationGetResult(g, 0);
            let ty = mlirValueGetType(v);
            let loc = mlirOperationGetLocation(g);
            let block = mlirOperationGetBlock(g);
            let mut st = mlirOperationStateGet(sref("memref.alloc"), loc);
            mlirOperationStateAddResults(&mut st, 1, &ty);
            let segments = [0i32, 0];
            let attrs = [
                mlirNamedAttributeGet(
                    id("operandSegmentSizes"),
                    mlirDenseI32ArrayGet(ctx, 2, segments.as_ptr()),
                ),
                mlirNamedAttributeGet(
                    id("alignment"),
                    mlirIntegerAttrGet(mlirIntegerTypeGet(ctx, 64), 64),
                ),
            ];
            mlirOperationStateAddAttributes(&mut st, 2, attrs.as_ptr());
            let alloc = mlirOperationCreate(&mut st);
            mlirBlockInsertOwnedOperationAfter(block, g, alloc);
            let a = mlirOperationGetResult(alloc, 0);
            mlirValueReplaceAllUsesOfWith(v, a);
            let mut st = mlirOperationStateGet(sref("memref.copy"), loc);
            let operands = [v, a];
            mlirOperationStateAddOperands(&mut st, 2, operands.as_ptr());
            let copy = mlirOperationCreate(&mut st);
            mlirBlockInsertOwnedOperationAfter(block, alloc, copy);
        }
    }
    mlir.verify(module)
}

/// The host code's `malloc`/`free` -> `bonsai_gpu_malloc`/`bonsai_gpu_free`.
fn rename_allocator(mlir: &Mlir, module: &mut Module) -> Result<()> {
    let ctx = mlir.context.to_raw();
    // SAFETY: the module is live and held mutably; only top-level symbols are renamed.
    unsafe {
        let body = mlirModuleGetBody(module.to_raw());
        let top = module.as_operation().to_raw();
        for (from, to) in [("malloc", "bonsai_gpu_malloc"), ("free", "bonsai_gpu_free")] {
            let mut op = mlirBlockGetFirstOperation(body);
            while !op.ptr.is_null() {
                let named = crate::ir::capi::attr(op, "sym_name")
                    .map(|a| string(mlirStringAttrGetValue(a)) == from)
                    .unwrap_or(false);
                if named && string(mlirIdentifierStr(mlirOperationGetName(op))) == "llvm.func" {
                    let r = mlirSymbolTableReplaceAllSymbolUses(sref(from), sref(to), top);
                    if r.value == 0 {
                        return Err(mlir.error(&format!("cannot rename {from} to {to}")));
                    }
                    mlirOperationSetAttributeByName(
                        op,
                        sref("sym_name"),
                        mlirStringAttrGet(ctx, sref(to)),
                    );
                    break;
                }
                op = mlirOperationGetNextInBlock(op);
            }
        }
    }
    mlir.verify(module)
}

/// Each `gpu.binary` object's text.
fn ptx_of(module: &Module) -> Result<Vec<(String, String)>> {
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
