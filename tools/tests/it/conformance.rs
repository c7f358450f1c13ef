//! The ONNX backend node tests: every case bonsai accepts must match its expected outputs.

use super::{bonsai, root};

/// Run `bonsai conformance` over the node tests (plus `extra` options); it must pass, and
/// the number of passing cases is returned.
fn conformance_passes(extra: &[&str]) -> usize {
    let dir = root().join("testdata/conformance/node");
    assert!(
        dir.exists(),
        "{} missing: run tools/setup.sh",
        dir.display()
    );
    let mut args = vec!["conformance", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = bonsai(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    println!("{out}");
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("conformance:"))
        .expect("summary line");
    line.split(": ")
        .nth(2)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("count")
}

#[test]
fn onnx_node_conformance() {
    // Guard against silently dropping support: the op table covered this many on landing.
    let passed = conformance_passes(&[]);
    assert!(passed >= 540, "{passed} passed");
}

/// The same cases with exp, log, tanh, erf, sin, cos, pow, sqrt, ... computed by the GPU
/// target's own f32 functions (there is no libdevice), run on the CPU: each must still match
/// the reference outputs.
#[test]
fn onnx_node_conformance_with_gpu_math() {
    let passed = conformance_passes(&["--gpu-math"]);
    assert!(passed >= 540, "{passed} passed");
}
