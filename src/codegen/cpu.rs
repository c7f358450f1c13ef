//! CPU code: lower the tensor-level module to LLVM and JIT it with MLIR's ExecutionEngine.
//!
//! The entry keeps the C interface (`_mlir_ciface_main`), with results turned into out
//! parameters, so the JIT and the AOT library share one calling convention:
//! `void _mlir_ciface_main(Memref *in0, ..., Memref *out0, ...)`.

use melior::ir::Module;
use melior::ExecutionEngine;

use crate::error::{Error, Result};
use crate::graph::{tensor::Tensor, DType, TensorType};
use crate::ir::Mlir;
use crate::pass::run_upstream;

/// Tensor-level module -> LLVM dialect in one pipeline (what `bonsai-opt --lower-to-llvm`
/// runs). Results become caller-provided out parameters. [`lower_to_llvm`] runs the same
/// steps with floating-point contraction allowed between bufferization and the tail.
pub const LOWER_TO_LLVM: &str = concat!("builtin.module(", dense_head!(), ",", lower_tail!(), ")");

/// Bufferization for modules without sparse tensors. `cse,canonicalize` after it drop the
/// copies of a slice onto itself that an in-place `extract_slice`/`fill`/`insert_slice`
/// leaves (the padded planes fill only their borders).
macro_rules! dense_head {
    () => {
        "func.func(linalg-fuse-elementwise-ops),\
one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map},\
func.func(cse,canonicalize)"
    };
}
use dense_head;

/// For modules with `#sparse_tensor` weights: the sparsifier generates the (vectorised)
/// loops over their non-zeros while bufferizing, from constant buffers assembled in place
/// (no sparse runtime library). No elementwise fusion first: it folds producers and
/// reshapes into the sparse kernels, which the sparsifier then densifies.
macro_rules! sparse_head {
    () => {
        "sparse-reinterpret-map,sparsification-and-bufferization{vl=16},sparse-storage-specifier-to-llvm"
    };
}

/// The steps after bufferization, shared by both: results to out parameters and buffer
/// deallocation, then the rest down to the LLVM dialect.
macro_rules! lower_tail {
    () => {
        concat!(dealloc!(), ",", to_llvm!())
    };
}
use lower_tail;

macro_rules! dealloc {
    () => {
        "buffer-results-to-out-params{modify-public-functions hoist-static-allocs},\
buffer-deallocation-pipeline"
    };
}
use dealloc;

macro_rules! to_llvm {
    () => {
        concat!("func.func(convert-linalg-to-loops),", loops_to_llvm!())
    };
}
use to_llvm;

macro_rules! loops_to_llvm {
    () => {
        "expand-strided-metadata,\
lower-affine,\
convert-scf-to-cf,\
convert-vector-to-llvm,\
convert-math-to-llvm,\
convert-math-to-libm,\
finalize-memref-to-llvm,\
convert-to-llvm,\
reconcile-unrealized-casts"
    };
}
use loops_to_llvm;

/// The same for modules with `#sparse_tensor` weights.
pub const SPARSE_LOWER_TO_LLVM: &str =
    concat!("builtin.module(", sparse_head!(), ",", lower_tail!(), ")");

/// Lower a tensor-level module to the LLVM dialect (`sparse`: it has `#sparse_tensor`
/// weights). Between bufferization and the rest, every `arith.mulf`/`arith.addf` is marked
/// `contract`, so that LLVM fuses multiply-adds into FMA instructions (as C compilers do by
/// default); the sparsifier drops fast-math flags, so they are set after it has run.
pub fn lower_to_llvm(mlir: &Mlir, module: &mut Module, sparse: bool) -> Result<()> {
    let head = if sparse {
        concat!("builtin.module(", sparse_head!(), ")")
    } else {
        concat!("builtin.module(", dense_head!(), ")")
    };
    run_upstream(mlir, module, head)?;
    allow_contraction(mlir, module);
    run_upstream(mlir, module, concat!("builtin.module(", dealloc!(), ")"))?;
    early_deallocs(module);
    super::gpu_math::define_math(mlir, module)?;
    run_upstream(
        mlir,
        module,
        "builtin.module(func.func(convert-linalg-to-loops))",
    )?;
    vectorize_scalar_loops(mlir, module);
    run_upstream(
        mlir,
        module,
        concat!("builtin.module(", loops_to_llvm!(), ")"),
    )?;
    loop_annotations_to_branches(module);
    Ok(())
}

/// `convert-scf-to-cf` carries a loop's `llvm.loop_annotation` to its latch branch as a
/// discardable attribute, which translation to LLVM IR ignores: make it the branch's own
/// `loop_annotation` (LLVM's `!llvm.loop` metadata).
fn loop_annotations_to_branches(module: &mut Module) {
    use crate::ir::capi::{attr, ops_named, sref};
    use mlir_sys::*;
    // SAFETY: the module is live while we hold it mutably.
    unsafe {
        let mut brs = Vec::new();
        ops_named(module.as_operation().to_raw(), "llvm.br", &mut brs);
        for op in brs {
            if let Some(a) = attr(op, "llvm.loop_annotation") {
                mlirOperationSetAttributeByName(op, sref("loop_annotation"), a);
                mlirOperationRemoveAttributeByName(op, sref("llvm.loop_annotation"));
            }
        }
    }
}

/// Innermost `scf.for` loops of scalar code (no vector ops: the elementwise, padding,
/// quantisation and pooling loops that linalg lowers to) with at least 4 iterations, or an
/// unknown count, are marked for LLVM's loop vectoriser and kept from full unrolling.
/// Otherwise LLVM unrolls the short rows (a 14-pixel row of a 14x14 feature map) before
/// the vectoriser runs, and its SLP pass leaves the unrolled copies scalar.
fn vectorize_scalar_loops(mlir: &Mlir, module: &mut Module) {
    use crate::ir::capi::{ops_named, sref, string};
    use mlir_sys::*;
    let ctx = mlir.context.to_raw();
    // SAFETY: the module is live while we hold it mutably; the attribute text is valid.
    unsafe {
        let attr = mlirAttributeParseGet(
            ctx,
            sref(
                "#llvm.loop_annotation<vectorize = #llvm.loop_vectorize<disable = false>, \
unroll = #llvm.loop_unroll<disable = true>>",
            ),
        );
        let mut loops = Vec::new();
        ops_named(module.as_operation().to_raw(), "scf.for", &mut loops);
        for op in loops {
            let mut names = Vec::new();
            collect_names(op, &mut names);
            if names
                .iter()
                .skip(1)
                .any(|n| n == "scf.for" || n.starts_with("vector.") || !vectorisable(n))
                || !stores_move_with_loop(op)
            {
                continue;
            }
            let bound = |i: isize| -> Option<i64> {
                let v = mlirOperationGetOperand(op, i);
                if !mlirValueIsAOpResult(v) {
                    return None;
                }
                let d = mlirOpResultGetOwner(v);
                if string(mlirIdentifierStr(mlirOperationGetName(d))) != "arith.constant" {
                    return None;
                }
                let a = crate::ir::capi::attr(d, "value")?;
                mlirAttributeIsAInteger(a).then(|| mlirIntegerAttrGetValueInt(a))
            };
            if let (Some(lo), Some(hi), Some(st)) = (bound(0), bound(1), bound(2)) {
                if st <= 0 || (hi - lo) / st < 4 {
                    continue;
                }
            }
            mlirOperationSetAttributeByName(op, sref("llvm.loop_annotation"), attr);
        }
    }
}

/// Whether LLVM can vectorise an op of this name: calls cannot, nor math functions that
/// become libm calls or intrinsics without vector forms (no vector math library), only the
/// ones with vector instructions.
fn vectorisable(name: &str) -> bool {
    match name.strip_prefix("math.") {
        Some(f) => matches!(
            f,
            "sqrt"
                | "absf"
                | "absi"
                | "floor"
                | "ceil"
                | "roundeven"
                | "round"
                | "trunc"
                | "fma"
                | "copysign"
        ),
        None => !name.ends_with(".call") && !name.starts_with("llvm."),
    }
}

/// Whether every `memref.store` in the body of the `scf.for` `op` writes along its last
/// dimension with the induction variable: a loop that keeps storing to one place is a
/// reduction (the reduction dimension innermost), which LLVM cannot vectorise without
/// reassociating float adds, and strided stores it may not either; a forced attempt that
/// fails ends in a warning on stderr. Nor do gathers (an index computed from loaded
/// data). Loops that only move data (fills, copies,
/// transposes: no arithmetic but on indices) are left to LLVM, which turns the simple ones
/// into memset / memcpy and cannot always vectorise the rest.
///
/// # Safety
/// `op` must be a live `scf.for` operation.
unsafe fn stores_move_with_loop(op: mlir_sys::MlirOperation) -> bool {
    use crate::ir::capi::string;
    use mlir_sys::*;
    unsafe {
        let body = mlirRegionGetFirstBlock(mlirOperationGetRegion(op, 0));
        if body.ptr.is_null() || mlirBlockGetNumArguments(body) == 0 {
            return false;
        }
        let mut dep: Vec<MlirValue> = vec![mlirBlockGetArgument(body, 0)];
        let mut computes = false;
        // Values computed from loaded data: an index among them is a gather or scatter.
        let mut data: Vec<MlirValue> = Vec::new();
        let depends = |dep: &[MlirValue], v: MlirValue| dep.iter().any(|d| mlirValueEqual(*d, v));
        let mut o = mlirBlockGetFirstOperation(body);
        while !o.ptr.is_null() {
            let name = string(mlirIdentifierStr(mlirOperationGetName(o)));
            let n = mlirOperationGetNumOperands(o);
            let first_index = match name.as_str() {
                "memref.store" => 2,
                "memref.load" => 1,
                _ => n,
            };
            if (first_index..n).any(|i| depends(&data, mlirOperationGetOperand(o, i))) {
                return false;
            }
            if name == "memref.load"
                || (0..n).any(|i| depends(&data, mlirOperationGetOperand(o, i)))
            {
                for r in 0..mlirOperationGetNumResults(o) {
                    data.push(mlirOperationGetResult(o, r));
                }
            }
            if name == "memref.store" {
                // Operands: value, memref, indices...: the last index (the contiguous one)
                // must move with the loop.
                if n < 3 || !depends(&dep, mlirOperationGetOperand(o, n - 1)) {
                    return false;
                }
            } else if (0..n).any(|i| depends(&dep, mlirOperationGetOperand(o, i))) {
                for r in 0..mlirOperationGetNumResults(o) {
                    dep.push(mlirOperationGetResult(o, r));
                }
            }
            if (name.starts_with("arith.") || name.starts_with("math."))
                && name != "arith.constant"
                && mlirOperationGetNumResults(o) > 0
                && !mlirTypeIsAIndex(mlirValueGetType(mlirOperationGetResult(o, 0)))
            {
                computes = true;
            }
            o = mlirOperationGetNextInBlock(o);
        }
        computes
    }
}

/// The names of `op` and every op nested in it, in program order.
///
/// # Safety
/// `op` must be a live operation.
unsafe fn collect_names(op: mlir_sys::MlirOperation, out: &mut Vec<String>) {
    use mlir_sys::*;
    unsafe {
        out.push(crate::ir::capi::string(mlirIdentifierStr(
            mlirOperationGetName(op),
        )));
        for r in 0..mlirOperationGetNumRegions(op) {
            let mut block = mlirRegionGetFirstBlock(mlirOperationGetRegion(op, r));
            while !block.ptr.is_null() {
                let mut o = mlirBlockGetFirstOperation(block);
                while !o.ptr.is_null() {
                    collect_names(o, out);
                    o = mlirOperationGetNextInBlock(o);
                }
                block = mlirBlockGetNextInRegion(block);
            }
        }
    }
}

/// Move every `memref.dealloc` up to just after the last use of its buffer.
///
/// MLIR's ownership-based deallocation frees a block's buffers at the end of that block, so
/// in a model's straight-line `main` every intermediate lived until the return: ppocr at
/// batch 64 peaked at 700 MB resident and spent most of its time faulting in fresh pages.
/// A dealloc moves to after the last op of its block that uses the buffer or an alias of
/// it: a memref or tensor result of any op that uses it (views, casts, loops carrying it),
/// the results of any op enclosing such a use (a loop may yield a view it made inside), and
/// the results of ops that take its address.
fn early_deallocs(module: &mut Module) {
    use crate::ir::capi::{ops_named, string};
    use mlir_sys::*;
    // SAFETY: the module is live while we hold it mutably; handles come from its ops.
    unsafe {
        let mut deallocs = Vec::new();
        ops_named(
            module.as_operation().to_raw(),
            "memref.dealloc",
            &mut deallocs,
        );
        for d in deallocs {
            let block = mlirOperationGetBlock(d);
            // The ancestor of `op` that sits in `block`, if any.
            let in_block = |mut op: MlirOperation| -> Option<MlirOperation> {
                while !op.ptr.is_null() {
                    if mlirOperationGetBlock(op).ptr == block.ptr {
                        return Some(op);
                    }
                    op = mlirOperationGetParentOperation(op);
                }
                None
            };
            let aliasing = |v: MlirValue| {
                let t = mlirValueGetType(v);
                mlirTypeIsAMemRef(t) || mlirTypeIsARankedTensor(t) || mlirTypeIsAUnrankedMemRef(t)
            };
            let mut work = vec![mlirOperationGetOperand(d, 0)];
            let mut seen: Vec<MlirValue> = Vec::new();
            let mut last: Option<MlirOperation> = None;
            let mut escapes = false;
            while let Some(v) = work.pop() {
                if seen.iter().any(|&s| mlirValueEqual(s, v)) {
                    continue;
                }
                seen.push(v);
                let mut u = mlirValueGetFirstUse(v);
                while !mlirOpOperandIsNull(u) {
                    let user = mlirOpOperandGetOwner(u);
                    u = mlirOpOperandGetNextUse(u);
                    if mlirOperationEqual(user, d) {
                        continue;
                    }
                    let Some(top) = in_block(user) else {
                        escapes = true;
                        continue;
                    };
                    if last.is_none_or(|l| mlirOperationIsBeforeInBlock(l, top)) {
                        last = Some(top);
                    }
                    let name = string(mlirIdentifierStr(mlirOperationGetName(user)));
                    let address = name.contains("pointer") || name.contains("metadata");
                    // The user and every op enclosing it up to the block may pass it on.
                    let mut op = user;
                    loop {
                        for r in 0..mlirOperationGetNumResults(op) {
                            let res = mlirOperationGetResult(op, r);
                            if address || aliasing(res) {
                                work.push(res);
                            }
                        }
                        if mlirOperationEqual(op, top) {
                            break;
                        }
                        op = mlirOperationGetParentOperation(op);
                    }
                }
            }
            if escapes {
                continue;
            }
            if let Some(l) = last {
                if mlirOperationIsBeforeInBlock(l, d) {
                    mlirOperationMoveAfter(d, l);
                }
            }
        }
    }
}

/// Mark every floating-point multiply and add `fastmath<contract>`.
fn allow_contraction(mlir: &Mlir, module: &mut Module) {
    use mlir_sys::{mlirAttributeParseGet, mlirOperationSetAttributeByName};
    let ctx = mlir.context.to_raw();
    // SAFETY: the module is live while we hold it mutably; the attribute text is valid.
    unsafe {
        let attr = mlirAttributeParseGet(ctx, crate::ir::capi::sref("#arith.fastmath<contract>"));
        let mut ops = Vec::new();
        for name in ["arith.mulf", "arith.addf"] {
            crate::ir::capi::ops_named(module.as_operation().to_raw(), name, &mut ops);
        }
        for op in ops {
            mlirOperationSetAttributeByName(op, crate::ir::capi::sref("fastmath"), attr);
        }
    }
}

/// LLVM optimisation level of the JIT (and so of the AOT object code). At 3, LLVM fully
/// unrolls the small constant-trip loops around the convolution kernels into basic blocks
/// whose scheduling is quadratic: MNIST's CNN took 5.3 s to compile; at 2 it takes 0.3 s and
/// runs as fast (`bonsai bench`, kernels and whole models).
pub const JIT_OPT_LEVEL: usize = 2;

pub struct Jit {
    engine: ExecutionEngine,
    /// The packed entry (`void (void **)`), looked up once: the engine's own
    /// `invoke_packed` looks the symbol up by name on every call (about a microsecond, as
    /// long as a small Gemm takes).
    entry: unsafe extern "C" fn(*mut *mut ()),
    pub inputs: Vec<TensorType>,
    pub outputs: Vec<TensorType>,
}

/// Lower `module` (in place) to LLVM and create the engine.
pub fn compile(
    mlir: &Mlir,
    module: &mut Module,
    sparse: bool,
    inputs: Vec<TensorType>,
    outputs: Vec<TensorType>,
) -> Result<Jit> {
    lower_to_llvm(mlir, module, sparse)?;
    let engine = ExecutionEngine::new(module, JIT_OPT_LEVEL, &[], false, false);
    // SAFETY: the symbol has the C signature the generated code expects.
    unsafe { engine.register_symbol("memrefCopy", super::runtime::memref_copy as *mut ()) };
    let entry = engine.lookup("_mlir__mlir_ciface_main");
    if entry.is_null() {
        return Err(mlir.error("JIT compilation failed (entry _mlir_ciface_main not found)"));
    }
    // SAFETY: MLIR's packed wrappers have this signature (one pointer per argument).
    let entry =
        unsafe { std::mem::transmute::<*mut (), unsafe extern "C" fn(*mut *mut ())>(entry) };
    Ok(Jit {
        engine,
        entry,
        inputs,
        outputs,
    })
}

/// One descriptor per input buffer (as `Jit::input_buffers` prepared them), shaped as its
/// tensor: the first arguments of every call.
fn input_descs(bufs: &mut [(Buffer, usize)], inputs: &[&Tensor]) -> Vec<Memref> {
    bufs.iter_mut()
        .zip(inputs)
        .map(|((b, _), t)| Memref::new(b.ptr(), &t.shape))
        .collect()
}

/// A strided memref descriptor over a host buffer, laid out as MLIR's C interface expects:
/// { allocated, aligned, offset, sizes[rank], strides[rank] }.
struct Memref {
    words: Vec<i64>,
}

impl Memref {
    fn new(ptr: *mut u8, shape: &[usize]) -> Memref {
        let mut words = vec![ptr as i64, ptr as i64, 0];
        words.extend(shape.iter().map(|&d| d as i64));
        words.extend(
            crate::graph::tensor::strides(shape)
                .iter()
                .map(|&s| s as i64),
        );
        Memref { words }
    }
}

/// 64-byte aligned host buffer (u64 words keep at least 8-byte alignment).
struct Buffer(Vec<u64>);

impl Buffer {
    fn zeroed(bytes: usize) -> Buffer {
        Buffer(vec![0u64; bytes.div_ceil(8).max(1)])
    }
    fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr() as *mut u8
    }
    fn bytes(&self, n: usize) -> &[u8] {
        // SAFETY: the Vec<u64> holds at least n bytes (see zeroed).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u8, n) }
    }
}

impl Jit {
    /// Check `inputs` against the compiled signature and copy each into a fresh 64-byte
    /// aligned buffer (the compiled code may use its arguments' buffers as scratch).
    fn input_buffers(&self, inputs: &[&Tensor]) -> Result<Vec<(Buffer, usize)>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::input(
                "<inputs>",
                format!(
                    "{} given, the model takes {}",
                    inputs.len(),
                    self.inputs.len()
                ),
            ));
        }
        let mut bufs = Vec::new();
        for (i, (t, ty)) in inputs.iter().zip(&self.inputs).enumerate() {
            if t.dtype() != ty.dtype || t.shape != ty.shape {
                return Err(Error::input(
                    format!("#{i}"),
                    format!("got {}[{:?}], compiled for {ty}", t.dtype(), t.shape),
                ));
            }
            let owned;
            let b: &[u8] = match t.raw_bytes() {
                Some(b) if cfg!(target_endian = "little") => b,
                _ => {
                    owned = t.to_le_bytes();
                    &owned
                }
            };
            let mut buf = Buffer::zeroed(b.len());
            // SAFETY: buffer holds at least b.len() bytes.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), buf.ptr(), b.len()) };
            bufs.push((buf, b.len()));
        }
        Ok(bufs)
    }

    /// Call the compiled entry with one descriptor per input and output buffer.
    ///
    /// # Safety
    /// The buffers must match the compiled signature (sizes from `self.inputs` /
    /// `self.outputs`) and stay alive across the call.
    unsafe fn invoke(&self, descs: &mut [Memref]) -> Result<()> {
        let mut ptrs: Vec<*mut i64> = descs.iter_mut().map(|d| d.words.as_mut_ptr()).collect();
        let mut args: Vec<*mut ()> = ptrs
            .iter_mut()
            .map(|p| p as *mut *mut i64 as *mut ())
            .collect();
        // SAFETY: per the caller; `entry` is the packed wrapper of the C interface.
        unsafe { (self.entry)(args.as_mut_ptr()) };
        Ok(())
    }

    /// Time `runs` calls on `inputs` after `warmup` untimed ones, in microseconds: only the
    /// compiled code, as `bonsai-rt --runs` times the library. Buffers are prepared once;
    /// before each call the inputs are restored from a pristine copy, outside the timing.
    pub fn time(&self, inputs: &[&Tensor], warmup: usize, runs: usize) -> Result<Vec<f64>> {
        let pristine = self.input_buffers(inputs)?;
        let mut work = self.input_buffers(inputs)?;
        let mut outs: Vec<Buffer> = self
            .outputs
            .iter()
            .map(|ty| Buffer::zeroed(ty.numel() * ty.dtype.size()))
            .collect();
        let mut descs = input_descs(&mut work, inputs);
        descs.extend(
            outs.iter_mut()
                .zip(&self.outputs)
                .map(|(b, ty)| Memref::new(b.ptr(), &ty.shape)),
        );
        let mut times = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            for ((w, n), (p, _)) in work.iter_mut().zip(&pristine) {
                // SAFETY: both buffers hold n bytes.
                unsafe { std::ptr::copy_nonoverlapping(p.0.as_ptr() as *const u8, w.ptr(), *n) };
            }
            let t0 = std::time::Instant::now();
            // SAFETY: descriptors over buffers sized from the signature, alive until the end.
            unsafe { self.invoke(&mut descs)? };
            if i >= warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(times)
    }

    /// Run on `inputs` (in graph input order); shapes and dtypes must match exactly.
    pub fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let mut bufs = self.input_buffers(inputs)?;
        let mut descs = input_descs(&mut bufs, inputs);
        // Outputs are written straight into the result tensors (booleans through a buffer).
        let mut outs: Vec<(Tensor, Option<Buffer>)> = Vec::new();
        for ty in &self.outputs {
            let mut t = Tensor::zeros(ty.dtype, ty.shape.clone());
            let mut buf = None;
            let ptr = match t.raw_bytes_mut() {
                Some(b) => b.as_mut_ptr(),
                None => buf
                    .insert(Buffer::zeroed(ty.numel() * ty.dtype.size()))
                    .ptr(),
            };
            descs.push(Memref::new(ptr, &ty.shape));
            outs.push((t, buf));
        }
        // SAFETY: descriptors over buffers that match the compiled signature (checked above)
        // and outlive the call.
        unsafe { self.invoke(&mut descs)? };
        drop(bufs);
        Ok(outs
            .into_iter()
            .zip(&self.outputs)
            .map(|((t, buf), ty)| match buf {
                None => t,
                Some(b) => Tensor::from_le_bytes(
                    ty.dtype,
                    ty.shape.clone(),
                    b.bytes(ty.numel() * ty.dtype.size()),
                )
                .expect("sized buffer"),
            })
            .collect())
    }

    /// As [`Jit::run`], writing into `outs` (allocated on the first call, reused after: a
    /// model run many times with large outputs does not fault in fresh pages every call).
    /// Falls back to [`Jit::run`] for boolean outputs.
    pub fn run_into(&self, inputs: &[&Tensor], outs: &mut Vec<Tensor>) -> Result<()> {
        if self.outputs.iter().any(|ty| ty.dtype == DType::Bool) {
            *outs = self.run(inputs)?;
            return Ok(());
        }
        if outs.len() != self.outputs.len()
            || outs
                .iter()
                .zip(&self.outputs)
                .any(|(t, ty)| t.shape != ty.shape || t.dtype() != ty.dtype)
        {
            *outs = self
                .outputs
                .iter()
                .map(|ty| Tensor::zeros(ty.dtype, ty.shape.clone()))
                .collect();
        }
        let mut bufs = self.input_buffers(inputs)?;
        let mut descs = input_descs(&mut bufs, inputs);
        for t in outs.iter_mut() {
            let shape = t.shape.clone();
            let ptr = t.raw_bytes_mut().expect("not boolean").as_mut_ptr();
            descs.push(Memref::new(ptr, &shape));
        }
        // SAFETY: descriptors over buffers that match the compiled signature (checked above)
        // and outlive the call.
        unsafe { self.invoke(&mut descs)? };
        drop(bufs);
        Ok(())
    }

    /// Write the JIT's object code (for AOT linking).
    pub fn dump_object(&self, path: &str) {
        self.engine.dump_to_object_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The elementwise loop over 14-wide rows reaches LLVM with a vectorise / no-full-unroll
    /// annotation on its latch branch; the reduction loop (storing to one place) does not.
    #[test]
    fn scalar_compute_loops_carry_the_vectoriser_hint() {
        let mlir = Mlir::new();
        let text = "
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
func.func @main(%x: tensor<14x14xf32>) -> (tensor<14x14xf32>, tensor<14xf32>) {
  %e = tensor.empty() : tensor<14x14xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = [\"parallel\", \"parallel\"]}
      ins(%x : tensor<14x14xf32>) outs(%e : tensor<14x14xf32>) {
  ^bb0(%a: f32, %o: f32):
    %z = arith.constant 0.0 : f32
    %c = arith.cmpf olt, %a, %z : f32
    %r = arith.select %c, %z, %a : f32
    linalg.yield %r : f32
  } -> tensor<14x14xf32>
  %zero = arith.constant 0.0 : f32
  %e1 = tensor.empty() : tensor<14xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e1 : tensor<14xf32>) -> tensor<14xf32>
  %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = [\"parallel\", \"reduction\"]}
      ins(%x : tensor<14x14xf32>) outs(%f : tensor<14xf32>) {
  ^bb0(%a: f32, %o: f32):
    %t = arith.addf %a, %o : f32
    linalg.yield %t : f32
  } -> tensor<14xf32>
  return %y, %s : tensor<14x14xf32>, tensor<14xf32>
}";
        let mut m = mlir.parse(text).expect("parses");
        lower_to_llvm(&mlir, &mut m, false).expect("lowers");
        let out = m.as_operation().to_string();
        // One annotated loop (the Relu rows), none for the reduction or the fill (data only).
        // (The printer names the attributes as aliases at the top.)
        assert_eq!(out.matches("{loop_annotation = #").count(), 1, "{out}");
        assert!(
            out.contains("= #llvm.loop_vectorize<disable = false>"),
            "{out}"
        );
        assert!(out.contains("= #llvm.loop_unroll<disable = true>"), "{out}");
        assert!(
            !out.contains("llvm.loop_annotation ="),
            "left a discardable copy: {out}"
        );
    }

    /// A buffer is freed right after its last use through any alias (a loop carrying it, a
    /// view of the loop's result), not at the end of the function.
    #[test]
    fn deallocs_move_up_to_the_last_use_through_aliases() {
        let mlir = Mlir::new();
        let text = "
func.func @f(%x: memref<4xf32>, %out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %a = memref.alloc() : memref<4xf32>
  memref.copy %x, %a : memref<4xf32> to memref<4xf32>
  %r = scf.for %i = %c0 to %c2 step %c1 iter_args(%acc = %a) -> (memref<4xf32>) {
    scf.yield %acc : memref<4xf32>
  }
  %v = memref.subview %r[1] [2] [1] : memref<4xf32> to memref<2xf32, strided<[1], offset: 1>>
  %e = memref.load %v[%c0] : memref<2xf32, strided<[1], offset: 1>>
  %b = memref.alloc() : memref<4xf32>
  memref.store %e, %b[%c0] : memref<4xf32>
  memref.copy %b, %out : memref<4xf32> to memref<4xf32>
  memref.dealloc %a : memref<4xf32>
  memref.dealloc %b : memref<4xf32>
  return
}";
        let mut m = mlir.parse(text).expect("parses");
        early_deallocs(&mut m);
        let out = m.as_operation().to_string();
        let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s} in {out}"));
        let first_free = at("memref.dealloc %alloc :");
        assert!(at("memref.load") < first_free, "{out}");
        assert!(first_free < at("%alloc_0 = memref.alloc"), "{out}");
        assert!(
            at("memref.copy %alloc_0") < at("memref.dealloc %alloc_0"),
            "{out}"
        );
    }
}
