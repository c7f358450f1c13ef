//! bonsai's integration tests: one binary (each test binary relinks all of MLIR).
//!
//! Numbers are checked against independent references: onnxruntime (through python3) for
//! the real models, the ONNX conformance data for op semantics.

mod aot;
mod batched;
mod cli;
mod compress;
mod conformance;
mod gpu;
mod models;
mod refit;
mod snapshots;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn bonsai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bonsai"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("spawn bonsai")
}

/// `bonsai ARGS`, which must succeed (its stderr is the failure message).
pub fn bonsai_ok(args: &[&str]) -> Output {
    let o = bonsai(args);
    assert!(
        o.status.success(),
        "bonsai {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Run `cmd`, which must succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `python3 -c SCRIPT ARGS...`, which must succeed (numpy / onnxruntime oracles).
pub fn python_ok(script: &str, args: &[&Path]) -> Output {
    run_ok(Command::new("python3").arg("-c").arg(script).args(args))
}

/// The LLVM-free runtime, built next to `bonsai`.
pub fn bonsai_rt() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_bonsai")).with_file_name("bonsai-rt");
    assert!(
        p.exists(),
        "build the workspace first (cargo build): {} missing",
        p.display()
    );
    p
}

/// `got` equals onnxruntime's `want` (same shape) within `rel` of `1 + |want|` everywhere.
pub fn assert_close(
    got: &bonsai::graph::Tensor,
    want: &bonsai::graph::Tensor,
    rel: f64,
    what: &str,
) {
    assert_eq!(got.shape, want.shape, "{what}");
    for (i, (p, q)) in got.to_f64_vec().iter().zip(&want.to_f64_vec()).enumerate() {
        assert!(
            (p - q).abs() <= rel * (1.0 + q.abs()),
            "{what}[{i}]: {p}, onnxruntime {q}"
        );
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A fresh folder under the system temp dir, removed when the test passes (kept, for a
/// look, when it fails).
pub fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("bonsai-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    TempDir(d)
}

pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
