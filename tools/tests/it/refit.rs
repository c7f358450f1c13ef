//! `refit` and OBS codebook assignment: reconstruction towards the original model keeps the
//! compressed structure (every zero, every codebook) and recovers fidelity, as onnxruntime
//! measures it.

use super::compress::{compress_and_check, mnist_npz};
use super::{bonsai, bonsai_ok, python_ok, root, s, tempdir};

#[test]
fn refit_keeps_every_zero_and_recovers_one_shot_pruning() {
    // Magnitude pruning at a uniform 80% costs ccexam about a quarter of its accuracy
    // (onnxruntime: agreement 0.74 on 4744 digits). Refitting the kept weights layer by layer
    // towards the original model's layer outputs brings it back (0.97), with the same zeros.
    let d = tempdir("refit");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    mnist_npz(&d, 256, 1000);
    let (calib, eval) = (d.join("calib.npz"), d.join("eval.npz"));
    for (name, passes) in [
        ("mag.onnx", "prune-magnitude{sparsity=0.8}"),
        ("refit.onnx", "prune-magnitude{sparsity=0.8},refit"),
    ] {
        bonsai_ok(&[
            "compress",
            model.to_str().unwrap(),
            "-o",
            d.join(name).to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--eval",
            eval.to_str().unwrap(),
            "--report",
            d.join(name).with_extension("json").to_str().unwrap(),
            "--passes",
            passes,
        ]);
    }
    let check = r#"
import json, sys, numpy as np, onnx, onnxruntime as ort
sys.path.insert(0, sys.argv[5])
from check_compressed import decoded_weights
orig, mag, refit, ev = sys.argv[1:5]
names = [l["weight"] for l in json.load(open(refit[:-5] + ".json"))["layers"]]
wm, wr = decoded_weights(mag, names), decoded_weights(refit, names)
for n in names:
    assert np.array_equal(wm[n] == 0, wr[n] == 0), f"{n}: refit changed the zeros"
    assert not np.array_equal(wm[n], wr[n]), f"{n}: refit left the weights as they were"
d = np.load(ev)
so = ort.SessionOptions(); so.intra_op_num_threads = 1
run = lambda p: ort.InferenceSession(p, so).run(None, {"input": d["input"]})[0]
yo, ym, yr = run(orig), run(mag), run(refit)
agree = lambda y: float((y.argmax(1) == yo.argmax(1)).mean())
am, ar = agree(ym), agree(yr)
rep = json.load(open(refit[:-5] + ".json"))["fidelity"]
assert abs(rep["top1_agreement"] - ar) < 1e-9, (rep, ar)
assert am < 0.85 and ar > 0.95, (am, ar)
print("ok", am, ar)
"#;
    python_ok(
        check,
        &[
            &model,
            &d.join("mag.onnx"),
            &d.join("refit.onnx"),
            &eval,
            &root().join("tools/scripts"),
        ],
    );
}

#[test]
fn refit_after_sharing_refits_centroids_and_keeps_each_codebook() {
    // Shared weights stay shared: refit solves for the centroid values (assignments fixed),
    // so every layer still has at most 2^3 distinct non-zeros as onnxruntime decodes them.
    // (64 calibration digits: agreement 0.992 without the refit, 1.0 with it, on 128 others.)
    compress_and_check(
        "refit-kmeans",
        &[
            "--passes",
            "prune-sparsegpt{sparsity=0.9 granularity=sensitivity},share-kmeans{bits=3},refit",
        ],
        &["max_centroids=8", "min_agreement=0.98"],
    );
}

#[test]
fn obs_assignment_halves_the_output_error_of_nearest_centroids() {
    // 2-bit codebooks on SparseGPT's 90%: assigning each weight its nearest centroid leaves
    // a logit MSE of about 620 against the original (onnxruntime, 1000 digits); OBS rounding
    // (errors spread through the inverse Hessian) about 330, with the same codebook sizes.
    let d = tempdir("obs-assign");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    mnist_npz(&d, 256, 1000);
    let (calib, eval) = (d.join("calib.npz"), d.join("eval.npz"));
    for a in ["nearest", "obs"] {
        bonsai_ok(&[
            "compress",
            model.to_str().unwrap(),
            "-o",
            d.join(format!("{a}.onnx")).to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--eval",
            eval.to_str().unwrap(),
            "--report",
            d.join(format!("{a}.json")).to_str().unwrap(),
            "--passes",
            &format!(
                "prune-sparsegpt{{sparsity=0.9 granularity=sensitivity}},share-kmeans{{bits=2 assign={a}}}"
            ),
        ]);
    }
    let check = r#"
import json, sys, numpy as np, onnxruntime as ort
sys.path.insert(0, sys.argv[5])
from check_compressed import decoded_weights
orig, near, obs, ev = sys.argv[1:5]
names = [l["weight"] for l in json.load(open(obs[:-5] + ".json"))["layers"]]
for p in (near, obs):
    for n, w in decoded_weights(p, names).items():
        assert len(np.unique(w[w != 0])) <= 4, f"{p} {n}: more than 4 centroids"
x = np.load(ev)["input"]
run = lambda p: ort.InferenceSession(p).run(None, {"input": x})[0]
yo = run(orig)
mse = lambda p: float(((run(p) - yo) ** 2).mean())
en, eo = mse(near), mse(obs)
assert eo < 0.75 * en, (en, eo)
print("ok", en, eo)
"#;
    python_ok(
        check,
        &[
            &model,
            &d.join("nearest.onnx"),
            &d.join("obs.onnx"),
            &eval,
            &root().join("tools/scripts"),
        ],
    );
}

#[test]
fn a_checkpoint_is_refitted_and_verified_against_its_original() {
    // A pruned checkpoint (no refit: agreement about 0.74) compressed further with
    // `--reference` the original: refit reconstructs towards the original, not towards the
    // checkpoint (where it would be a fixed point), and the report's agreement is the one
    // onnxruntime measures against the original.
    let d = tempdir("reference");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    mnist_npz(&d, 256, 1000);
    let (calib, eval) = (d.join("calib.npz"), d.join("eval.npz"));
    let (ckpt, out) = (d.join("ckpt.onnx"), d.join("out.onnx"));
    let common = ["--calib", s(&calib), "--eval", s(&eval)];
    bonsai_ok(
        &[
            &[
                "compress",
                s(&model),
                "-o",
                s(&ckpt),
                "--emit",
                "dense-onnx",
            ][..],
            &common,
            &["--passes", "prune-magnitude{sparsity=0.8}"],
        ]
        .concat(),
    );
    let report = d.join("out.json");
    bonsai_ok(
        &[
            &[
                "compress",
                s(&ckpt),
                "-o",
                s(&out),
                "--reference",
                s(&model),
            ][..],
            &common,
            &["--passes", "refit", "--report", s(&report)],
        ]
        .concat(),
    );
    let check = r#"
import json, sys, numpy as np, onnxruntime as ort
orig, ckpt, out, ev, rep = sys.argv[1:6]
d = np.load(ev)
so = ort.SessionOptions(); so.intra_op_num_threads = 1
run = lambda p: ort.InferenceSession(p, so).run(None, {"input": d["input"]})[0]
yo, yc, yr = run(orig), run(ckpt), run(out)
agree = lambda a, b: float((a.argmax(1) == b.argmax(1)).mean())
ac, ar = agree(yc, yo), agree(yr, yo)
r = json.load(open(rep))
assert abs(r["fidelity"]["top1_agreement"] - ar) < 1e-9, (r["fidelity"], ar, agree(yr, yc))
assert ac < 0.85 and ar > 0.95, (ac, ar)
print("ok", ac, ar)
"#;
    python_ok(check, &[&model, &ckpt, &out, &eval, &report]);
    // A reference of another shape is refused before anything is written.
    let other = root().join("testdata/models/mnist_cnn_digit_recognizer.onnx");
    let bad = d.join("bad.onnx");
    let o = bonsai(
        &[
            &[
                "compress",
                s(&ckpt),
                "-o",
                s(&bad),
                "--reference",
                s(&other),
            ][..],
            &common,
            &["--passes", "refit"],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("option --reference") && err.contains("is not"),
        "{err}"
    );
    assert!(!bad.exists());
}

#[test]
fn quantised_weights_are_refitted_onto_their_grid() {
    // GPTQ-style rounding onto one 5-bit grid per tensor, then refit: each row re-solved
    // towards the original and rounded back onto the same grid. onnxruntime decodes the file:
    // every layer is still on one uniform grid of at most 32 steps, with the pruned zeros.
    let out = compress_and_check(
        "refit-quant",
        &[
            "--passes",
            "prune-sparsegpt{sparsity=0.9 granularity=sensitivity},quantize-weights{bits=5 granularity=tensor search=false assign=obs},refit",
        ],
        &["int_grid=5", "grid=tensor", "min_agreement=0.98"],
    );
    // And the report counts them as 5-bit integers (refit keeps the encoding, not just the
    // values: plain f32 weights would be skipped by the grid check and cost 32 bits each).
    let layers: Vec<&str> = out
        .lines()
        .filter(|l| {
            matches!(
                l.split_whitespace().nth(1),
                Some("conv" | "gemm" | "matmul")
            )
        })
        .collect();
    assert!(
        !layers.is_empty() && layers.iter().all(|l| l.contains("int5")),
        "{out}"
    );
}
