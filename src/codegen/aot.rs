//! Ahead-of-time artifacts: the JIT's own object code linked into a shared library, a C header
//! for its entry point, and a manifest the LLVM-free runtime (`bonsai-rt`) reads.
//!
//! `DIR/libmodel.so` exports
//! * `_mlir_ciface_main(memref *in0, ..., memref *out0, ...)`: MLIR's C interface, the same
//!   code the JIT runs (object dumped from the same engine, so results match bit for bit);
//! * `bonsai_model_run(const void *const *inputs, void *const *outputs)`: the same on flat,
//!   row-major buffers (descriptors built for the static shapes);
//! * `bonsai_model_error()`: NULL, or why the last run failed (GPU libraries);
//! * `memrefCopy`, which the generated code may call (no LLVM runtime library is needed).
//!
//! With [`Target::Cuda`] the library holds host code and PTX kernels, and opens the CUDA
//! driver when it first runs (`cuda_support.c`); it builds and loads without CUDA.
//!
//! The weights are inside the library (constants of the code). `DIR/model.h` declares both
//! entry points with the shapes as comments and macros; `DIR/model.json` lists the inputs and
//! outputs (name, dtype, shape).

use std::path::{Path, PathBuf};
use std::process::Command;

use melior::ir::Module;
use melior::ExecutionEngine;

use crate::error::{Error, Result};
use crate::graph::{DType, TensorType};
use crate::ir::Mlir;

/// The CUDA driver shim linked into GPU libraries.
const CUDA_SUPPORT_C: &str = include_str!("cuda_support.c");

/// C source of the runtime support linked into every library.
const SUPPORT_C: &str = r#"/* bonsai runtime support: what libmlir_c_runner_utils would provide. */
#include <stdint.h>
#include <string.h>

typedef struct { int64_t rank; const int64_t *desc; } bonsai_unranked;

#if defined(__GLIBC__)
#include <malloc.h>
#endif
/* Keep freed temporaries in the heap between runs (glibc returns large blocks to the system,
   so every run would page-fault on fresh memory). Call once before repeated runs. */
void bonsai_keep_freed_memory(void) {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

/* Strided copy between two memrefs of equal shape. */
void memrefCopy(int64_t elem, const bonsai_unranked *src, const bonsai_unranked *dst) {
  int64_t rank = src->rank, idx[16] = {0};
  const int64_t *sd = src->desc, *dd = dst->desc;
  const int64_t *sizes = sd + 3, *ss = sd + 3 + rank, *ds = dd + 3 + rank;
  for (int64_t k = 0; k < rank; k++)
    if (sizes[k] == 0) return;
  const char *sb = (const char *)sd[1];
  char *db = (char *)dd[1];
  /* The innermost dimension is one run when it is contiguous on both sides. */
  int run = rank > 0 && ss[rank - 1] == 1 && ds[rank - 1] == 1;
  int64_t outer = run ? rank - 1 : rank;
  size_t bytes = (size_t)elem * (size_t)(run ? sizes[rank - 1] : 1);
  for (;;) {
    int64_t so = sd[2], dof = dd[2];
    for (int64_t k = 0; k < rank; k++) { so += idx[k] * ss[k]; dof += idx[k] * ds[k]; }
    memcpy(db + dof * elem, sb + so * elem, bytes);
    int64_t k = outer;
    for (;;) {
      if (k == 0) return;
      k--;
      if (++idx[k] < sizes[k]) break;
      idx[k] = 0;
    }
  }
}
"#;

fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I64 => "int64_t",
        DType::I32 => "int32_t",
        DType::I8 => "int8_t",
        DType::U8 | DType::Bool => "uint8_t",
    }
}

fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The C wrapper building descriptors for the static shapes.
fn entry_c(ins: &[(String, TensorType)], outs: &[(String, TensorType)], target: Target) -> String {
    match target {
        Target::Cpu => entry_c_cpu(ins, outs),
        Target::Cuda => entry_c_cuda(ins, outs),
    }
}

/// The descriptor typedefs and the declaration of the generated entry.
fn memref_types(all: &[&TensorType]) -> String {
    let mut s = String::new();
    for (i, t) in all.iter().enumerate() {
        let r = t.rank().max(1);
        s.push_str(&format!(
            "typedef struct {{ void *allocated, *aligned; int64_t offset, sizes[{r}], strides[{r}]; }} memref{i};\n"
        ));
    }
    let params: Vec<String> = (0..all.len()).map(|i| format!("memref{i} *")).collect();
    s.push_str(&format!(
        "void _mlir_ciface_main({});\n\n",
        params.join(", ")
    ));
    s
}

/// `memref{i} m{i} = {buf, buf, 0, {sizes}, {strides}};` for a static row-major shape.
fn descriptor(i: usize, t: &TensorType, buf: &str) -> String {
    let shape: Vec<usize> = if t.shape.is_empty() {
        vec![1]
    } else {
        t.shape.clone()
    };
    let strides = crate::graph::tensor::strides(&shape);
    let sz: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let st: Vec<String> = strides.iter().map(|d| d.to_string()).collect();
    format!(
        "  memref{i} m{i} = {{ {buf}, {buf}, 0, {{ {} }}, {{ {} }} }};\n",
        sz.join(", "),
        st.join(", ")
    )
}

/// The CUDA entry: inputs and outputs go through managed buffers that kernels can address.
fn entry_c_cuda(ins: &[(String, TensorType)], outs: &[(String, TensorType)]) -> String {
    let all: Vec<&TensorType> = ins.iter().chain(outs).map(|(_, t)| t).collect();
    let mut s = String::from(
        "/* Generated by bonsai: flat-buffer entry point (CUDA). */\n#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n\n\
int bonsai_gpu_begin(void);\nint bonsai_gpu_ok(void);\nvoid *bonsai_gpu_malloc(size_t);\nvoid bonsai_gpu_free(void *);\n",
    );
    s.push_str(&memref_types(&all));
    s.push_str("void bonsai_model_run(const void *const *inputs, void *const *outputs) {\n  if (!bonsai_gpu_begin()) return;\n");
    for (i, t) in all.iter().enumerate() {
        let bytes = t.numel().max(1) * t.dtype.size();
        s.push_str(&format!("  void *b{i} = bonsai_gpu_malloc({bytes});\n"));
        if i < ins.len() {
            s.push_str(&format!("  memcpy(b{i}, inputs[{i}], {bytes});\n"));
        }
        s.push_str(&descriptor(i, t, &format!("b{i}")));
    }
    let args: Vec<String> = (0..all.len()).map(|i| format!("&m{i}")).collect();
    s.push_str(&format!(
        "  _mlir_ciface_main({});\n  if (bonsai_gpu_ok()) {{\n",
        args.join(", ")
    ));
    for (j, t) in outs.iter().map(|(_, t)| t).enumerate() {
        let i = ins.len() + j;
        let bytes = t.numel().max(1) * t.dtype.size();
        s.push_str(&format!("    memcpy(outputs[{j}], b{i}, {bytes});\n"));
    }
    s.push_str("  }\n");
    for i in 0..all.len() {
        s.push_str(&format!("  bonsai_gpu_free(b{i});\n"));
    }
    s.push_str("}\n");
    s
}

fn entry_c_cpu(ins: &[(String, TensorType)], outs: &[(String, TensorType)]) -> String {
    let all: Vec<&TensorType> = ins.iter().chain(outs).map(|(_, t)| t).collect();
    let mut s = String::from(
        "/* Generated by bonsai: flat-buffer entry point. */\n#include <stdint.h>\n\n\
const char *bonsai_model_error(void) { return 0; }\n\n",
    );
    s.push_str(&memref_types(&all));
    s.push_str("void bonsai_model_run(const void *const *inputs, void *const *outputs) {\n");
    for (i, t) in all.iter().enumerate() {
        let buf = if i < ins.len() {
            format!("(void *)inputs[{i}]")
        } else {
            format!("outputs[{}]", i - ins.len())
        };
        s.push_str(&descriptor(i, t, &buf));
    }
    let args: Vec<String> = (0..all.len()).map(|i| format!("&m{i}")).collect();
    s.push_str(&format!("  _mlir_ciface_main({});\n}}\n", args.join(", ")));
    s
}

fn header(model: &str, ins: &[(String, TensorType)], outs: &[(String, TensorType)]) -> String {
    let mut s = format!(
        "/* Generated by bonsai from {model}. Link with -lmodel (libmodel.so in this folder). */\n\
#ifndef BONSAI_MODEL_H\n#define BONSAI_MODEL_H\n#include <stdint.h>\n\n\
#define BONSAI_NUM_INPUTS {}\n#define BONSAI_NUM_OUTPUTS {}\n\n",
        ins.len(),
        outs.len()
    );
    for (kind, list) in [("INPUT", ins), ("OUTPUT", outs)] {
        for (i, (name, t)) in list.iter().enumerate() {
            let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            s.push_str(&format!(
                "/* {kind} {i}: '{name}', {} [{}] */\n#define BONSAI_{kind}{i}_{} {}\n",
                c_type(t.dtype),
                dims.join(", "),
                "ELEMENTS",
                t.numel()
            ));
            s.push_str(&format!(
                "typedef {} bonsai_{}{i}_t;\n",
                c_type(t.dtype),
                kind.to_lowercase()
            ));
            let _ = ident(name);
        }
    }
    s.push_str(
        "\n/* Run the model: inputs[i] / outputs[i] are row-major buffers of the sizes above. */\n\
void bonsai_model_run(const void *const *inputs, void *const *outputs);\n\n\
/* NULL if the last run succeeded; otherwise why it failed, and the outputs were not written\n\
   (GPU libraries: no CUDA driver or device, a kernel that failed to load or launch). */\n\
const char *bonsai_model_error(void);\n\n\
/* Optional, once, before repeated runs: keep freed temporaries in the heap (glibc) so that\n\
   later runs do not page-fault on fresh memory (it changes this process's malloc tunables). */\n\
void bonsai_keep_freed_memory(void);\n\n#endif\n",
    );
    s
}

/// What `compile_library` wrote.
pub struct Artifacts {
    pub library: PathBuf,
    pub header: PathBuf,
    pub manifest: PathBuf,
}

/// What a library runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Native code for this machine.
    Cpu,
    /// Host code launching PTX kernels on an NVIDIA GPU (sm_90) through the CUDA driver,
    /// which the library opens at run time.
    Cuda,
}

/// A do-nothing stand-in for the CUDA support functions while the JIT links the host code
/// (the library links the real ones from `cuda_support.c`). Never called with a GPU.
extern "C" fn gpu_stub() -> usize {
    0
}

/// Lower `module` to LLVM, let the JIT engine generate its object code, and link it with the
/// support code into `dir/libmodel.so` (using the system C compiler, `cc`).
#[allow(clippy::too_many_arguments)]
pub fn compile_library(
    mlir: &Mlir,
    module: &mut Module,
    sparse: bool,
    model_name: &str,
    ins: &[(String, TensorType)],
    outs: &[(String, TensorType)],
    dir: &Path,
) -> Result<Artifacts> {
    super::cpu::lower_to_llvm(mlir, module, sparse)?;
    emit_library(mlir, module, Target::Cpu, model_name, ins, outs, dir)
}

/// Link a module already in the LLVM dialect (for `Target::Cuda`, what
/// [`super::gpu::lower`] made) into `dir/libmodel.so`, with `model.h` and `model.json`.
pub fn emit_library(
    mlir: &Mlir,
    module: &mut Module,
    target: Target,
    model_name: &str,
    ins: &[(String, TensorType)],
    outs: &[(String, TensorType)],
    dir: &Path,
) -> Result<Artifacts> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let engine = ExecutionEngine::new(module, super::cpu::JIT_OPT_LEVEL, &[], true, true);
    // SAFETY: the symbols have the C signatures the generated code expects (the GPU stubs
    // are only linked, never called: the object code is taken from the engine, not run).
    unsafe {
        engine.register_symbol("memrefCopy", super::runtime::memref_copy as *mut ());
        if target == Target::Cuda {
            for s in super::gpu::HOST_SYMBOLS {
                engine.register_symbol(s, gpu_stub as *mut ());
            }
        }
    }
    if engine.lookup("_mlir__mlir_ciface_main").is_null() {
        return Err(mlir.error("compilation failed (entry _mlir_ciface_main not found)"));
    }
    let obj = dir.join("model.o");
    engine.dump_to_object_file(
        obj.to_str()
            .ok_or_else(|| Error::io(&obj, "path is not UTF-8"))?,
    );
    if !obj.exists() {
        return Err(Error::io(&obj, "the JIT wrote no object file"));
    }
    let support = dir.join("bonsai_support.c");
    let mut support_c = SUPPORT_C.to_string();
    if target == Target::Cuda {
        support_c.push_str(CUDA_SUPPORT_C);
    }
    std::fs::write(&support, support_c).map_err(|e| Error::io(&support, e))?;
    let entry = dir.join("bonsai_entry.c");
    std::fs::write(&entry, entry_c(ins, outs, target)).map_err(|e| Error::io(&entry, e))?;
    let lib = dir.join("libmodel.so");
    // Export only the entry points, and bind the library's own references locally, so the
    // generated `main` can never be confused with an application's.
    let map = dir.join("exports.map");
    std::fs::write(
        &map,
        "{ global: bonsai_model_run; bonsai_model_error; bonsai_keep_freed_memory; _mlir_ciface_main; local: *; };\n",
    )
    .map_err(|e| Error::io(&map, e))?;
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wl,-Bsymbolic"])
        .arg(format!("-Wl,--version-script={}", map.display()))
        .arg("-o")
        .arg(&lib)
        .arg(&obj)
        .arg(&support)
        .arg(&entry)
        .arg("-lm")
        .arg("-ldl")
        .output()
        .map_err(|e| Error::io("cc", format!("cannot run the C compiler: {e}")))?;
    if !out.status.success() {
        return Err(Error::io(
            &lib,
            format!("linking failed: {}", String::from_utf8_lossy(&out.stderr)),
        ));
    }
    for f in [&obj, &support, &entry, &map] {
        let _ = std::fs::remove_file(f);
    }
    let h = dir.join("model.h");
    std::fs::write(&h, header(model_name, ins, outs)).map_err(|e| Error::io(&h, e))?;
    let j = dir.join("model.json");
    let list = |l: &[(String, TensorType)]| -> Vec<serde_json::Value> {
        l.iter()
            .map(|(n, t)| {
                serde_json::json!({"name": n, "dtype": format!("{}", t.dtype), "shape": t.shape})
            })
            .collect()
    };
    let manifest = serde_json::json!({
        "model": model_name,
        "target": match target {
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
        },
        "library": "libmodel.so",
        "entry": "bonsai_model_run",
        "inputs": list(ins),
        "outputs": list(outs),
    });
    std::fs::write(&j, serde_json::to_string_pretty(&manifest).expect("json"))
        .map_err(|e| Error::io(&j, e))?;
    Ok(Artifacts {
        library: lib,
        header: h,
        manifest: j,
    })
}
