//! The ONNX backend node tests: every case bonsai accepts must match its expected outputs.

use super::{bonsai, root};

#[test]
fn onnx_node_conformance() {
    let dir = root().join("testdata/conformance/node");
    assert!(
        dir.exists(),
        "{} missing: run tools/setup.sh",
        dir.display()
    );
    let o = bonsai(&["conformance", dir.to_str().unwrap()]);
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
    let passed: usize = line
        .split(": ")
        .nth(2)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("count");
    // Guard against silently dropping support: the op table covered this many on landing.
    assert!(passed >= 540, "{line}");
}

/// The same cases with exp, log, tanh, erf, sin, cos, pow, sqrt, ... computed by the GPU
/// target's own f32 functions (there is no libdevice), run on the CPU: each must still match
/// the reference outputs.
#[test]
fn onnx_node_conformance_with_gpu_math() {
    let dir = root().join("testdata/conformance/node");
    let o = bonsai(&["conformance", dir.to_str().unwrap(), "--gpu-math"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("conformance:"))
        .expect("summary line");
    let passed: usize = line
        .split(": ")
        .nth(2)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(passed >= 540, "{line}");
}
