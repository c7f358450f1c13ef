//! Small helpers over MLIR's C API, for code that reads modules op by op (weights, GPU
//! binaries).

use mlir_sys::*;

pub fn sref(s: &str) -> MlirStringRef {
    MlirStringRef {
        data: s.as_ptr() as *const _,
        length: s.len(),
    }
}

pub fn string(r: MlirStringRef) -> String {
    if r.data.is_null() {
        return String::new();
    }
    // SAFETY: MLIR string refs point at `length` valid bytes.
    let b = unsafe { std::slice::from_raw_parts(r.data as *const u8, r.length) };
    String::from_utf8_lossy(b).into_owned()
}

/// The attribute `name` of `op`, if present.
///
/// # Safety
/// `op` must be a live operation.
pub unsafe fn attr(op: MlirOperation, name: &str) -> Option<MlirAttribute> {
    // SAFETY: the caller guarantees `op` is live.
    let a = unsafe { mlirOperationGetAttributeByName(op, sref(name)) };
    (!a.ptr.is_null()).then_some(a)
}

/// Every op named `name` at or below `op`, in program order.
///
/// # Safety
/// `op` must be a live operation; the handles are valid while it lives.
pub unsafe fn ops_named(op: MlirOperation, name: &str, out: &mut Vec<MlirOperation>) {
    unsafe {
        if string(mlirIdentifierStr(mlirOperationGetName(op))) == name {
            out.push(op);
        }
        for r in 0..mlirOperationGetNumRegions(op) {
            let mut block = mlirRegionGetFirstBlock(mlirOperationGetRegion(op, r));
            while !block.ptr.is_null() {
                let mut o = mlirBlockGetFirstOperation(block);
                while !o.ptr.is_null() {
                    ops_named(o, name, out);
                    o = mlirOperationGetNextInBlock(o);
                }
                block = mlirBlockGetNextInRegion(block);
            }
        }
    }
}
