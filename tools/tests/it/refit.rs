//! `refit` and OBS codebook assignment: reconstruction towards the original model keeps the
//! compressed structure (every zero, every codebook) and recovers fidelity, as onnxruntime
//! measures it.

use super::compress::{compress_and_check, mnist_npz};
use super::{bonsai_ok, python_ok, root, tempdir};

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
