//! `bonsai compile` artifacts: the shared library, run by the LLVM-free `bonsai-rt` and by a C
//! program, reproduces the JIT's outputs bit for bit.

use std::process::Command;

use super::{bonsai, root, tempdir};

fn bonsai_rt() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_bonsai")).with_file_name("bonsai-rt");
    assert!(
        p.exists(),
        "build the workspace first (cargo build): {} missing",
        p.display()
    );
    p
}

#[test]
fn compiled_library_matches_the_jit_bit_for_bit_from_rust_and_c() {
    let d = tempdir("aot");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    let lib = d.join("build");
    let o = bonsai(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        lib.to_str().unwrap(),
        "--shape",
        "input=1x1x28x28",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The runtime links no LLVM.
    let ldd = Command::new("ldd").arg(bonsai_rt()).output().unwrap();
    assert!(!String::from_utf8_lossy(&ldd.stdout)
        .to_lowercase()
        .contains("llvm"));
    // One real digit, as npz and raw bytes.
    let prep = r#"
import gzip, sys, numpy as np
row = np.loadtxt(gzip.open(sys.argv[1]), delimiter=",", max_rows=1)
x = ((row[:784].reshape(1, 1, 28, 28) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
np.savez(sys.argv[2] + "/in.npz", input=x)
x.tofile(sys.argv[2] + "/in.raw")
"#;
    let st = Command::new("python3")
        .args(["-c", prep])
        .arg(root().join("testdata/data/mnist_5k.csv.gz"))
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    let (jit, rt) = (d.join("jit.npz"), d.join("rt.npz"));
    let o = bonsai(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        d.join("in.npz").to_str().unwrap(),
        "--output",
        jit.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(bonsai_rt())
        .arg(&lib)
        .arg("--input")
        .arg(d.join("in.npz"))
        .arg("--output")
        .arg(&rt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The C example, built against model.h and libmodel.so.
    let app = d.join("run_model");
    let o = Command::new("cc")
        .arg(root().join("tools/examples/run_model.c"))
        .arg(format!("-I{}", lib.display()))
        .arg(format!("-L{}", lib.display()))
        .arg("-lmodel")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&app)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(&app)
        .arg(d.join("in.raw"))
        .arg(d.join("c.raw"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cmp = r#"
import sys, numpy as np
a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); c = np.fromfile(sys.argv[3], np.float32)
(k,) = a.files
assert a[k].tobytes() == b[k].tobytes(), "bonsai-rt differs from the JIT"
assert a[k].reshape(-1).tobytes() == c.tobytes(), "the C example differs from the JIT"
print("identical", a[k].shape)
"#;
    let o = Command::new("python3")
        .args(["-c", cmp])
        .arg(&jit)
        .arg(&rt)
        .arg(d.join("c.raw"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sparse_kernels_match_onnxruntime_and_the_library() {
    // testdata/small/sparse_fc.onnx: a 96%-sparse Gemm, compiled with CSR kernels.
    let d = tempdir("sparse");
    let model = root().join("testdata/small/sparse_fc.onnx");
    let prep = r#"
import sys, numpy as np, onnxruntime as ort
x = np.random.default_rng(3).standard_normal((2, 25)).astype(np.float32)
np.savez(sys.argv[2] + "/in.npz", x=x)
np.save(sys.argv[2] + "/ort.npy", ort.InferenceSession(sys.argv[1]).run(None, {"x": x})[0])
"#;
    let st = Command::new("python3")
        .args(["-c", prep])
        .arg(&model)
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success());
    let jit = d.join("jit.npz");
    let o = bonsai(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        d.join("in.npz").to_str().unwrap(),
        "--output",
        jit.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lib = d.join("build");
    let o = bonsai(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        lib.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rt = d.join("rt.npz");
    let o = Command::new(bonsai_rt())
        .arg(&lib)
        .arg("--input")
        .arg(d.join("in.npz"))
        .arg("--output")
        .arg(&rt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cmp = r#"
import sys, numpy as np
a, b, r = np.load(sys.argv[1])["y"], np.load(sys.argv[2])["y"], np.load(sys.argv[3])
assert np.allclose(a, r, rtol=1e-6, atol=1e-6), (a, r)
assert np.allclose(b, r, rtol=1e-6, atol=1e-6), (b, r)
"#;
    let o = Command::new("python3")
        .args(["-c", cmp])
        .arg(&jit)
        .arg(&rt)
        .arg(d.join("ort.npy"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
