//! Math for GPU kernels without libdevice.
//!
//! MLIR's NVVM conversion turns every `math` op (even `sqrt` and `absf`) into a call to
//! libdevice (`__nv_expf`, ...), which only a CUDA toolkit provides; without it the PTX keeps
//! `.extern` functions that the driver cannot resolve. [`expand_math`] replaces each f32 math
//! op by a call to bonsai's own implementation (`gpu_math.mlir`: arith ops and generic LLVM
//! intrinsics that the NVPTX backend lowers natively), so the PTX is self-contained.
//!
//! The same functions run on the CPU too, which is how they are tested: `bonsai conformance
//! --gpu-math` runs the ONNX node tests with them.

use melior::ir::Module;
use mlir_sys::*;

use crate::error::{Error, Result};
use crate::ir::capi::{ops_named, sref, string};
use crate::ir::Mlir;

/// bonsai's math functions (MLIR source).
pub const LIBRARY: &str = include_str!("gpu_math.mlir");

/// Each math op and the library function that replaces it: `bonsai_gpu_<name>f` on f32,
/// and `bonsai_gpu_<name>` on f64 where the last field says the library has it.
pub const REPLACED: &[(&str, &str, bool)] = &[
    ("math.exp", "exp", false),
    ("math.exp2", "exp2", false),
    ("math.log", "log", false),
    ("math.log1p", "log1p", false),
    ("math.tanh", "tanh", false),
    ("math.erf", "erf", false),
    ("math.sin", "sin", false),
    ("math.cos", "cos", false),
    ("math.powf", "pow", false),
    ("math.sqrt", "sqrt", true),
    ("math.absf", "fabs", true),
    ("math.floor", "floor", true),
    ("math.ceil", "ceil", true),
    ("math.roundeven", "roundeven", true),
];

/// Replace every math op in `module` that libdevice would implement by a call to bonsai's
/// function (declared here, defined by [`define_math`]). Returns how many ops were
/// replaced. An op on a type the library lacks (f64 transcendentals) is an error naming it.
pub fn expand_math(mlir: &Mlir, module: &mut Module) -> Result<usize> {
    let ctx = mlir.context.to_raw();
    let top = module.as_operation().to_raw();
    let mut declared = std::collections::BTreeMap::new();
    let mut count = 0;
    for &(name, base, has_f64) in REPLACED {
        let mut ops = Vec::new();
        // SAFETY: the module is live and held mutably; each op is replaced and destroyed
        // once, after its uses have moved to the call.
        unsafe {
            ops_named(top, name, &mut ops);
            for op in ops {
                let n = mlirOperationGetNumOperands(op);
                let result = mlirOperationGetResult(op, 0);
                let ty = mlirValueGetType(result);
                let same = (0..n)
                    .all(|i| mlirTypeEqual(mlirValueGetType(mlirOperationGetOperand(op, i)), ty));
                let (callee, scalar) = if mlirTypeIsAF32(ty) && same {
                    (format!("bonsai_gpu_{base}f"), "f32")
                } else if mlirTypeIsAF64(ty) && same && has_f64 {
                    (format!("bonsai_gpu_{base}"), "f64")
                } else {
                    return Err(Error::Model {
                        file: "GPU target".into(),
                        msg: format!(
                            "{name} on {} is not supported: bonsai's GPU math has it on f32{} only (there is no libdevice)",
                            type_text(ty),
                            if has_f64 { " and f64" } else { "" }
                        ),
                    });
                };
                let operands: Vec<MlirValue> =
                    (0..n).map(|i| mlirOperationGetOperand(op, i)).collect();
                let mut st = mlirOperationStateGet(sref("func.call"), mlirOperationGetLocation(op));
                mlirOperationStateAddOperands(&mut st, n, operands.as_ptr());
                mlirOperationStateAddResults(&mut st, 1, &ty);
                let attr = mlirNamedAttributeGet(
                    mlirIdentifierGet(ctx, sref("callee")),
                    mlirFlatSymbolRefAttrGet(ctx, sref(&callee)),
                );
                mlirOperationStateAddAttributes(&mut st, 1, &attr);
                let call = mlirOperationCreate(&mut st);
                mlirBlockInsertOwnedOperationBefore(mlirOperationGetBlock(op), op, call);
                mlirValueReplaceAllUsesOfWith(result, mlirOperationGetResult(call, 0));
                mlirOperationDestroy(op);
                let args = vec![scalar; n as usize].join(", ");
                declared.insert(callee, format!("({args}) -> {scalar}"));
                count += 1;
            }
        }
    }
    if count > 0 {
        // Declarations only: the bodies' generic intrinsic calls have unknown memory effects,
        // which buffer deallocation rejects, so [`define_math`] adds them after it has run.
        let mut decls = String::from("module {\n");
        for (callee, sig) in &declared {
            decls.push_str(&format!("  func.func private @{callee}{sig}\n"));
        }
        decls.push_str("}\n");
        append_functions(mlir, module, &decls)?;
    }
    Ok(count)
}

/// Replace the declarations [`expand_math`] left by the library's definitions (after buffer
/// deallocation, before lowering to LLVM). A module without them is left as it is.
pub fn define_math(mlir: &Mlir, module: &mut Module) -> Result<()> {
    let mut decls = Vec::new();
    // SAFETY: the module is live and held mutably; declarations are destroyed once.
    unsafe {
        let mut op = mlirBlockGetFirstOperation(mlirModuleGetBody(module.to_raw()));
        while !op.ptr.is_null() {
            let is_decl = string(mlirIdentifierStr(mlirOperationGetName(op))) == "func.func"
                && mlirRegionGetFirstBlock(mlirOperationGetRegion(op, 0))
                    .ptr
                    .is_null();
            if is_decl {
                if let Some(a) = crate::ir::capi::attr(op, "sym_name") {
                    if string(mlirStringAttrGetValue(a)).starts_with("bonsai_gpu_") {
                        decls.push(op);
                    }
                }
            }
            op = mlirOperationGetNextInBlock(op);
        }
        if decls.is_empty() {
            return Ok(());
        }
        for d in decls {
            mlirOperationDestroy(d);
        }
    }
    append_functions(mlir, module, LIBRARY)
}

/// Parse `text` (a module of functions) and append clones of its functions to `module`.
fn append_functions(mlir: &Mlir, module: &mut Module, text: &str) -> Result<()> {
    let ctx = mlir.context.to_raw();
    // SAFETY: the text parses in this context; its functions are cloned into the module's
    // body before the parsed module is destroyed.
    unsafe {
        let lib = mlirModuleCreateParse(ctx, sref(text));
        if lib.ptr.is_null() {
            return Err(mlir.error("bonsai's GPU math library does not parse"));
        }
        let body = mlirModuleGetBody(module.to_raw());
        let mut f = mlirBlockGetFirstOperation(mlirModuleGetBody(lib));
        while !f.ptr.is_null() {
            mlirBlockAppendOwnedOperation(body, mlirOperationClone(f));
            f = mlirOperationGetNextInBlock(f);
        }
        mlirModuleDestroy(lib);
    }
    mlir.verify(module)
}

fn type_text(ty: MlirType) -> String {
    let mut s = String::new();
    unsafe extern "C" fn push(r: MlirStringRef, data: *mut std::ffi::c_void) {
        // SAFETY: `data` is the `String` passed below.
        unsafe { (*(data as *mut String)).push_str(&string(r)) };
    }
    // SAFETY: `ty` is a live type; the callback appends to `s`.
    unsafe { mlirTypePrint(ty, Some(push), &mut s as *mut String as *mut _) };
    s
}
