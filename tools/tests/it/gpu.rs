//! `bonsai compile --target cuda`: a library of host code and PTX kernels that opens the CUDA
//! driver at run time. Without a GPU, a stand-in driver (tools/tests/fake_cuda.c) checks
//! everything but the kernels themselves: every module loads, every kernel is launched once
//! per run within the hardware limits, on pointers into live managed memory, and every
//! allocation is freed. On a machine with a driver, the GPU's outputs must match the CPU's.

use std::path::Path;
use std::process::Command;

use super::{bonsai_ok, bonsai_rt, python_ok, root, run_ok, s, tempdir};

/// The stand-in driver's summary: (modules, launches, allocations, freed, problems).
fn fake_summary(stderr: &str) -> (usize, usize, usize, usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("fake cuda: ") && l.contains("modules"))
        .unwrap_or_else(|| panic!("no summary from the stand-in driver: {stderr}"));
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 5, "{line}");
    (n[0], n[1], n[2], n[3], n[4])
}

#[test]
fn cuda_library_launches_every_kernel_on_managed_memory() {
    let d = tempdir("cuda");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    let (gpu, cpu) = (d.join("gpu"), d.join("cpu"));
    let shape = "input=2x1x28x28";
    let o = bonsai_ok(&[
        "compile",
        s(&model),
        "--target",
        "cuda",
        "-o",
        s(&gpu),
        "--shape",
        shape,
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("PTX kernel modules for sm_90"));
    bonsai_ok(&["compile", s(&model), "-o", s(&cpu), "--shape", shape]);
    let ptx = std::fs::read_to_string(gpu.join("model.ptx")).unwrap();
    let kernels = ptx.matches(".visible .entry").count();
    assert!(kernels > 5, "{kernels} kernels");
    // Self-contained: no libdevice calls, nothing the driver would have to resolve.
    assert!(!ptx.contains(".extern") && !ptx.contains("__nv_"));
    let manifest = std::fs::read_to_string(gpu.join("model.json")).unwrap();
    assert!(manifest.contains(r#""target": "cuda""#), "{manifest}");

    let prep = r#"
import sys, numpy as np
np.savez(sys.argv[1] + "/in.npz", input=np.random.default_rng(5).standard_normal((2, 1, 28, 28)).astype(np.float32))
"#;
    python_ok(prep, &[&d]);
    let input = d.join("in.npz");

    // The stand-in driver, found by the library's dlopen("libcuda.so.1").
    let fake = d.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(fake.join("libcuda.so.1"))
            .arg(root().join("tools/tests/fake_cuda.c")),
    );
    let o = run_ok(
        Command::new(bonsai_rt())
            .arg(&gpu)
            .arg("--input")
            .arg(&input)
            .args(["--runs", "2"])
            .env("LD_LIBRARY_PATH", &fake),
    );
    let (modules, launches, allocs, freed, problems) =
        fake_summary(&String::from_utf8_lossy(&o.stderr));
    assert_eq!(problems, 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(modules, kernels, "every PTX module loads once");
    assert_eq!(launches, 3 * kernels, "every kernel launched once per run");
    assert!(
        allocs > 0 && allocs == freed,
        "{allocs} allocations, {freed} freed"
    );

    // The real driver, if this machine has one.
    let out = d.join("out.npz");
    let o = Command::new(bonsai_rt())
        .arg(&gpu)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("no CUDA driver") {
        assert!(!o.status.success());
        assert!(
            err.contains("libcuda.so.1") && err.contains("--target cpu"),
            "{err}"
        );
        assert!(!out.exists(), "no output after a failed run");
    } else {
        let reference = d.join("cpu.npz");
        let run_cpu = |dir: &Path, extra: &[&str]| {
            run_ok(
                Command::new(bonsai_rt())
                    .arg(dir)
                    .arg("--input")
                    .arg(&input)
                    .args(extra),
            )
        };
        run_cpu(&cpu, &["--output", s(&reference)]);
        run_cpu(&gpu, &["--expect", s(&reference)]);
    }
}
