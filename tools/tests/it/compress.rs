//! `bonsai compress` end to end: the pruned ONNX runs in onnxruntime, its weights really are
//! sparse, and bonsai's fidelity report agrees with numpy's own measurement.

use std::process::Command;

use super::{bonsai, bonsai_ok, python_ok, root, tempdir};

/// `dir/calib.npz` with `calib` mnist_5k digits and `dir/eval.npz` with `total - calib` others
/// (and their labels), all spread evenly over the file: it is sorted by label, so its first
/// rows are all zeros.
pub(crate) fn mnist_npz(dir: &std::path::Path, calib: usize, total: usize) {
    let prep = r#"
import gzip, sys, numpy as np
n, total = int(sys.argv[3]), int(sys.argv[4])
rows = np.loadtxt(gzip.open(sys.argv[1]), delimiter=",")
rows = rows[np.linspace(0, len(rows) - 1, total).round().astype(int)]
x = ((rows[:, :784].reshape(-1, 1, 28, 28) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
y = rows[:, 784].astype(np.int64)
c = np.linspace(0, total - 1, n).round().astype(int)
rest = np.setdiff1d(np.arange(total), c)
np.savez(sys.argv[2] + "/calib.npz", input=x[c])
np.savez(sys.argv[2] + "/eval.npz", input=x[rest], labels=y[rest])
"#;
    let st = Command::new("python3")
        .arg("-c")
        .arg(prep)
        .arg(root().join("testdata/data/mnist_5k.csv.gz"))
        .arg(dir)
        .arg(calib.to_string())
        .arg(total.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "preparing MNIST data");
}

#[test]
fn pruned_mnist_runs_in_onnxruntime_and_report_is_honest() {
    let d = tempdir("compress");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    assert!(model.exists(), "run tools/setup.sh");
    // 64 calibration digits and 128 other held-out ones, with labels.
    mnist_npz(&d, 64, 192);
    let out = d.join("pruned.onnx");
    let rep = d.join("report.json");
    let o = bonsai(&[
        "compress",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--passes",
        "prune-sparsegpt{sparsity=0.6}",
        "--calib",
        d.join("calib.npz").to_str().unwrap(),
        "--eval",
        d.join("eval.npz").to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
        "--emit",
        "dense-onnx",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let check = r#"
import json, sys, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper as nh
orig, comp, ev, rep = sys.argv[1:5]
r = json.load(open(rep))
m = onnx.load(comp)
w = {t.name: nh.to_array(t) for t in m.graph.initializer}
for l in r["layers"]:
    a = w[l["weight"]]
    sp = float((a == 0).mean())
    assert abs(sp - l["sparsity"]) < 1e-9, (l["weight"], sp, l["sparsity"])
    assert sp >= 0.6 - 4.0 / a.size, (l["weight"], sp)  # floor(s * n) per column block
d = np.load(ev)
so = ort.SessionOptions(); so.intra_op_num_threads = 1
yo = ort.InferenceSession(orig, so).run(None, {"input": d["input"]})[0]
yc = ort.InferenceSession(comp, so).run(None, {"input": d["input"]})[0]
f = r["fidelity"]
acc = float((yc.argmax(1) == d["labels"]).mean())
agree = float((yc.argmax(1) == yo.argmax(1)).mean())
assert f["samples"] == len(d["labels"])
assert abs(f["accuracy_compressed"] - acc) < 1e-9, (f, acc)
assert abs(f["top1_agreement"] - agree) < 1e-9, (f, agree)
assert f["top1_agreement"] >= 0.95, f
print("ok", acc, agree)
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(check)
        .arg(&model)
        .arg(&out)
        .arg(d.join("eval.npz"))
        .arg(&rep)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Run `bonsai compress` on mnist_5k digits and check the result independently
/// (tools/scripts/check_compressed.py: onnxruntime decodes the weights and runs the model).
pub(crate) fn compress_and_check(tag: &str, args: &[&str], expect: &[&str]) -> String {
    let d = tempdir(tag);
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    mnist_npz(&d, 64, 192);
    let out = d.join("out.onnx");
    let rep = d.join("report.json");
    let (calib, eval) = (d.join("calib.npz"), d.join("eval.npz"));
    let mut all = vec![
        "compress",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--eval",
        eval.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = bonsai(&all);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tools/scripts/check_compressed.py"))
        .arg(&model)
        .arg(&out)
        .arg(&eval)
        .arg(&rep)
        .arg("--expect")
        .args(expect);
    let c = cmd.output().unwrap();
    assert!(
        c.status.success(),
        "{stdout}\n{}{}",
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&c.stderr)
    );
    stdout
}

#[test]
fn deep_compression_pipeline_is_small_and_runs_in_onnxruntime() {
    let out = compress_and_check(
        "deep",
        &["--prune", "0.9", "--share", "4"],
        &["max_centroids=16", "min_file_ratio=8", "min_agreement=0.9"],
    );
    assert!(out.contains("sparse kmeans 4b/layer"), "{out}");
    assert!(out.contains("entropy-coded"), "{out}");
}

/// Issue 4's bar on the suite's second MNIST CNN, with its per-layer recipe: at least 40x
/// smaller (entropy-coded, recomputed independently) for at most 0.5 pt of accuracy, on
/// the 4744 digits not used for calibration, as onnxruntime measures on the written file.
#[test]
fn digit_recognizer_recipe_is_40x_smaller_within_half_a_point() {
    let d = tempdir("digit40");
    let model = root().join("testdata/models/mnist_cnn_digit_recognizer.onnx");
    mnist_npz(&d, 256, 5000);
    let (out, rep) = (d.join("out.onnx"), d.join("report.json"));
    let recipe = root().join("tools/recipes/digit-recognizer-40x.toml");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    bonsai_ok(&[
        "compress",
        &path(&model),
        "-o",
        &path(&out),
        "--recipe",
        &path(&recipe),
        "--calib",
        &path(&d.join("calib.npz")),
        "--eval",
        &path(&d.join("eval.npz")),
        "--report",
        &path(&rep),
    ]);
    let c = Command::new("python3")
        .arg(root().join("tools/scripts/check_compressed.py"))
        .args([&model, &out, &d.join("eval.npz"), &rep])
        .args([
            "--expect",
            "max_centroids=16",
            "min_entropy_ratio=40",
            "max_accuracy_drop=0.005",
            "min_agreement=0.99",
        ])
        .output()
        .unwrap();
    assert!(
        c.status.success(),
        "{}{}",
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&c.stderr)
    );
}

#[test]
fn int8_weights_are_dequantize_linear_in_onnx() {
    let out = compress_and_check(
        "int8",
        &["--passes", "quantize-weights{bits=8 granularity=channel}"],
        &[
            "int_grid=8",
            "op=DequantizeLinear",
            "min_file_ratio=3.5",
            "min_agreement=0.98",
        ],
    );
    assert!(out.contains("int8 sym/channel"), "{out}");
}

#[test]
fn recipe_composes_prune_and_quantise_and_names_bad_keys() {
    let d = tempdir("recipe");
    std::fs::write(
        d.join("r.toml"),
        "[[pass]]\nname = \"prune-magnitude\"\nsparsity = 0.5\nexclude = [\"Conv_0\"]\n\n[[pass]]\nname = \"quantize-weights\"\nbits = 4\ngranularity = \"group:32\"\nexclude = [\"Conv_0\"]\n",
    )
    .unwrap();
    let recipe = d.join("r.toml");
    let out = compress_and_check(
        "recipe-run",
        &["--recipe", recipe.to_str().unwrap()],
        &["int_grid=4", "group=32", "min_agreement=0.95"],
    );
    assert!(out.contains("int4 sym/group32"), "{out}");
    std::fs::write(
        d.join("bad.toml"),
        "[[pass]]\nname = \"share-kmeans\"\nbitz = 4\n",
    )
    .unwrap();
    std::fs::write(d.join("bad2.toml"), "passes = 3\n").unwrap();
    let x = d.join("x.onnx");
    for (file, want) in [
        ("bad.toml", "option share-kmeans{bitz}: unknown option"),
        ("bad2.toml", "unknown or mistyped key 'passes'"),
    ] {
        let o = bonsai(&[
            "compress",
            "testdata/models/mnist_cnn_ccexam.onnx",
            "-o",
            x.to_str().unwrap(),
            "--recipe",
            d.join(file).to_str().unwrap(),
        ]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(want), "{file}: {e}");
        assert!(!x.exists());
    }
}

#[test]
fn compress_refuses_bad_options_and_writes_nothing() {
    let d = tempdir("compress-bad");
    let out = d.join("x.onnx");
    let model = "testdata/small/tiny_cnn.onnx";
    for (passes, want) in [
        (
            "prune-magnitude{sparsity=1.0}",
            "option prune-magnitude{sparsity}: must be in [0, 1)",
        ),
        ("prune-nothing", "does not refer to a registered pass"),
        ("prune-sparsegpt{sparsity=0.5}", "option --calib"),
        (
            "quantize-weights{scheme=affine}",
            "option quantize-weights{scheme}: 'affine' is not sym or asym",
        ),
        (
            "share-kmeans{scope=row}",
            "option share-kmeans{scope}: 'row' is not layer or channel",
        ),
    ] {
        let o = bonsai(&[
            "compress",
            model,
            "-o",
            out.to_str().unwrap(),
            "--passes",
            passes,
            "--shape",
            "x=1x1x8x8",
        ]);
        assert!(!o.status.success(), "{passes}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{passes}: {e}");
        assert!(!out.exists(), "{passes}: no output on error");
    }
}

#[test]
fn sensitivity_measures_each_layer_and_suggests_an_allocation() {
    let d = tempdir("sens");
    mnist_npz(&d, 64, 64);
    let (json, svg) = (d.join("c.json"), d.join("s.svg"));
    let o = bonsai(&[
        "sensitivity",
        "testdata/models/mnist_cnn_ccexam.onnx",
        "--calib",
        d.join("calib.npz").to_str().unwrap(),
        "--sparsities",
        "0.5,0.95",
        "--target",
        "0.8",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("suggested for 80%"), "{out}");
    let c: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(c.len(), 8, "4 layers x 2 sparsities");
    for pair in c.chunks(2) {
        // Pruning a layer harder never helps its output on the same data.
        assert!(
            pair[1]["error"].as_f64().unwrap() > pair[0]["error"].as_f64().unwrap(),
            "{pair:?}"
        );
    }
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

#[test]
fn sensitivity_of_sparsegpt_matches_onnxruntime_and_its_allocation_applies() {
    let d = tempdir("sens-sgpt");
    mnist_npz(&d, 64, 128);
    let calib = d.join("calib.npz");
    let json = d.join("c.json");
    let o = bonsai_ok(&[
        "sensitivity",
        "testdata/models/mnist_cnn_ccexam.onnx",
        "--calib",
        calib.to_str().unwrap(),
        "--pass",
        "prune-sparsegpt{damp=0.01}",
        "--sparsities",
        "0.6,0.9",
        "--target",
        "0.7",
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let c: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(c.len(), 8, "4 layers x 2 sparsities");
    // Each measured error is the model output's when that layer alone is pruned by the pass:
    // prune it with the candidate's own pipeline and let onnxruntime run both models.
    let worst = c
        .iter()
        .max_by(|a, b| {
            a["error"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["error"].as_f64().unwrap())
        })
        .unwrap();
    let pipeline = worst["pipeline"].as_str().unwrap();
    assert!(
        pipeline.starts_with("prune-sparsegpt{damp=0.01 layers="),
        "{pipeline}"
    );
    let one = d.join("one.onnx");
    bonsai_ok(&[
        "compress",
        "testdata/models/mnist_cnn_ccexam.onnx",
        "-o",
        one.to_str().unwrap(),
        "--passes",
        pipeline,
        "--calib",
        calib.to_str().unwrap(),
        "--eval",
        d.join("eval.npz").to_str().unwrap(),
    ]);
    let check = r#"
import sys, numpy as np, onnxruntime as ort
x = dict(np.load(sys.argv[3]))
run = lambda m: ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, x)[0].astype(np.float64)
y0, y = run(sys.argv[1]), run(sys.argv[2])
err = ((y - y0) ** 2).sum() / (y0 ** 2).sum()
want = float(sys.argv[4])
assert want > 1e-6 and abs(err - want) <= 0.02 * want, (err, want)
"#;
    let want = format!("{}", worst["error"].as_f64().unwrap());
    python_ok(
        check,
        &[
            &root().join("testdata/models/mnist_cnn_ccexam.onnx"),
            &one,
            &calib,
            std::path::Path::new(&want),
        ],
    );
    // The suggestion is a pipeline `compress` runs, gradually, to the suggested sparsities.
    let line = out
        .lines()
        .find(|l| l.starts_with("suggested for 70%"))
        .expect("suggestion");
    let passes = line.split('\'').nth(1).expect("quoted pipeline");
    assert!(
        passes.starts_with("prune-sparsegpt{damp=0.01 layers="),
        "{passes}"
    );
    let (small, report) = (d.join("s.onnx"), d.join("r.json"));
    bonsai_ok(&[
        "compress",
        "testdata/models/mnist_cnn_ccexam.onnx",
        "-o",
        small.to_str().unwrap(),
        "--passes",
        passes,
        "--gradual",
        "2",
        "--calib",
        calib.to_str().unwrap(),
        "--eval",
        d.join("eval.npz").to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let list = passes
        .split("layers=")
        .nth(1)
        .unwrap()
        .trim_end_matches('}');
    for item in list.split(',') {
        let (layer, sp) = item.rsplit_once(':').unwrap();
        let l = r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["layer"] == layer)
            .unwrap();
        let got = l["sparsity"].as_f64().unwrap();
        let want: f64 = sp.parse().unwrap();
        assert!((got - want).abs() < 0.01, "{layer}: {got} vs {want}");
    }
    // Options the command chooses itself, and unknown layers, are named.
    for (pass, want) in [
        ("prune-sparsegpt{sparsity=0.5}", "option --pass: 'sparsity'"),
        (
            "prune-magnitude,prune-wanda",
            "option --pass: give one pruning pass",
        ),
    ] {
        let o = bonsai(&[
            "sensitivity",
            "testdata/models/mnist_cnn_ccexam.onnx",
            "--calib",
            calib.to_str().unwrap(),
            "--pass",
            pass,
        ]);
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{e}");
    }
    let o = bonsai(&[
        "compress",
        "testdata/models/mnist_cnn_ccexam.onnx",
        "-o",
        d.join("bad.onnx").to_str().unwrap(),
        "--passes",
        "prune-sparsegpt{layers=Conv_9:0.5}",
        "--calib",
        calib.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("layers") && e.contains("no layer or weight named 'Conv_9'"),
        "{e}"
    );
    assert!(!d.join("bad.onnx").exists());
}

#[test]
fn sensitivity_measures_softmax_classifiers_on_their_centred_logits() {
    // tiny_cnn ends in Gemm -> Softmax: the error is the logits' (centred per sample).
    let d = tempdir("sens-logits");
    let calib = d.join("calib.npz");
    let prep = r#"
import sys, numpy as np
np.savez(sys.argv[1], x=np.random.default_rng(3).normal(size=(16, 1, 8, 8)).astype(np.float32))
"#;
    python_ok(prep, &[&calib]);
    let json = d.join("c.json");
    let o = bonsai_ok(&[
        "sensitivity",
        "testdata/small/tiny_cnn.onnx",
        "--calib",
        calib.to_str().unwrap(),
        "--sparsities",
        "0.5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("measuring the logits"));
    let c: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let gemm = c
        .iter()
        .find(|c| c["layer"].as_str().unwrap().starts_with("Gemm"))
        .unwrap();
    assert_eq!(gemm["measured"], "model-logits");
    let one = d.join("one.onnx");
    bonsai_ok(&[
        "compress",
        "testdata/small/tiny_cnn.onnx",
        "-o",
        one.to_str().unwrap(),
        "--passes",
        gemm["pipeline"].as_str().unwrap(),
        "--shape",
        "x=1x1x8x8",
    ]);
    let check = r#"
import sys, onnx, numpy as np, onnxruntime as ort
x = dict(np.load(sys.argv[3]))
def logits(path):
    m = onnx.load(path)
    sm = [n for n in m.graph.node if n.op_type == "Softmax"][0]
    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(sm.input[0]))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    l = s.run([sm.input[0]], x)[0].astype(np.float64)
    return l - l.mean(axis=-1, keepdims=True)
y0, y = logits(sys.argv[1]), logits(sys.argv[2])
err = ((y - y0) ** 2).sum() / (y0 ** 2).sum()
want = float(sys.argv[4])
assert want > 1e-6 and abs(err - want) <= 0.02 * want, (err, want)
"#;
    let want = format!("{}", gemm["error"].as_f64().unwrap());
    python_ok(
        check,
        &[
            &root().join("testdata/small/tiny_cnn.onnx"),
            &one,
            &calib,
            std::path::Path::new(&want),
        ],
    );
}

#[test]
fn calibration_data_with_wrong_names_or_shapes_is_named() {
    let d = tempdir("calib-bad");
    let out = d.join("x.onnx");
    let bad_name = d.join("name.npz");
    let x = bonsai::graph::Tensor::f32(vec![2, 1, 8, 8], vec![0.5; 128]);
    bonsai::npz::write(&bad_name, &[("foo".into(), x)]).unwrap();
    let bad_shape = d.join("shape.npz");
    let x = bonsai::graph::Tensor::f32(vec![2, 1, 8, 7], vec![0.5; 112]);
    bonsai::npz::write(&bad_shape, &[("x".into(), x)]).unwrap();
    for (file, want) in [
        (&bad_name, "input 'foo'"),
        (&bad_shape, "input 'x': dim 3 is 7, the model declares 8"),
    ] {
        let o = bonsai(&[
            "compress",
            "testdata/small/tiny_cnn.onnx",
            "-o",
            out.to_str().unwrap(),
            "--passes",
            "prune-wanda{sparsity=0.5}",
            "--calib",
            file.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{e}");
        assert!(!out.exists());
    }
}

#[test]
fn propose_lists_candidates_that_apply_to_one_layer() {
    let d = tempdir("propose");
    mnist_npz(&d, 64, 96);
    let json = d.join("c.json");
    let model = "testdata/models/mnist_cnn_ccexam.onnx";
    let o = bonsai(&[
        "propose",
        model,
        "--passes",
        "share-kmeans",
        "--calib",
        d.join("calib.npz").to_str().unwrap(),
        "-o",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(c.len(), 4 * 5, "4 layers x bits 6,5,4,3,2");
    for layer in ["Conv_0", "Conv_3", "Gemm_7", "Gemm_9"] {
        let mine: Vec<&serde_json::Value> = c.iter().filter(|x| x["layer"] == layer).collect();
        for pair in mine.windows(2) {
            // Fewer bits: smaller, and a larger output error on the calibration inputs.
            let (a, b) = (pair[0], pair[1]);
            assert!(b["bytes"].as_u64() < a["bytes"].as_u64(), "{a} {b}");
            assert!(b["error"].as_f64() > a["error"].as_f64(), "{a} {b}");
            assert_eq!(a["measured"], "layer-output");
        }
    }
    // A candidate's pipeline touches its layer only.
    let pick = c
        .iter()
        .find(|x| x["layer"] == "Conv_3" && x["encoding"] == "kmeans 3b/layer")
        .unwrap();
    let out = d.join("one.onnx");
    let rep = d.join("r.json");
    let o = bonsai(&[
        "compress",
        model,
        "-o",
        out.to_str().unwrap(),
        "--passes",
        pick["pipeline"].as_str().unwrap(),
        "--eval",
        d.join("eval.npz").to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    for l in r["layers"].as_array().unwrap() {
        let want = if l["layer"] == "Conv_3" {
            "kmeans 3b/layer"
        } else {
            "f32"
        };
        assert_eq!(l["encoding"], want, "{l}");
    }
}

#[test]
fn channel_pruning_writes_a_genuinely_smaller_model() {
    // The checker asserts the removed channels are gone from the tensors onnxruntime sees.
    let out = compress_and_check(
        "channels",
        &[
            "--passes",
            "prune-channels{sparsity=0.5 criterion=l2 exclude=Gemm_7}",
        ],
        &["shrunk=1", "min_file_ratio=1.9", "min_agreement=0.9"],
    );
    assert!(out.contains("(-16 channels)"), "{out}");
}

#[test]
fn gradual_schedule_reaches_the_target_and_verifies_against_the_original() {
    // (Wanda at a uniform 80% collapses this model, -70 pt on mnist_5k: allocate by
    // sensitivity.)
    let out = compress_and_check(
        "gradual",
        &[
            "--passes",
            "prune-wanda{sparsity=0.8 granularity=sensitivity}",
            "--gradual",
            "2",
        ],
        &["min_agreement=0.95"],
    );
    // Each step allocates afresh and zeros stay zero, so the result may pass the target a
    // little; Wanda's per-row floor(s * k) may land a hair under it.
    let s: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("sparsity "))
        .and_then(|t| t.split('%').next())
        .and_then(|t| t.parse().ok())
        .expect("sparsity in the summary");
    assert!((79.0..83.0).contains(&s), "{out}");
}

#[test]
fn channel_pruning_keeps_residual_partners_in_step() {
    // testdata/small/residual_cnn.onnx: Add(relu(conv a), conv b). a and b must lose the same
    // channels, b and c their matching inputs; onnxruntime must accept the result.
    let d = tempdir("residual");
    let out = d.join("r.onnx");
    bonsai_ok(&[
        "compress",
        "testdata/small/residual_cnn.onnx",
        "-o",
        out.to_str().unwrap(),
        "--passes",
        "prune-channels{sparsity=0.5}",
    ]);
    let check = r#"
import sys, numpy as np, onnx, onnxruntime as ort
m = onnx.load(sys.argv[1])
dims = {i.name: list(i.dims) for i in m.graph.initializer}
assert dims["wa"] == [3, 2, 3, 3] and dims["ba"] == [3], dims
assert dims["wb"] == [3, 3, 3, 3] and dims["bb"] == [3], dims
assert dims["wc"] == [3, 3, 1, 1], dims
y = ort.InferenceSession(sys.argv[1]).run(None, {"x": np.ones((1, 2, 6, 6), np.float32)})[0]
assert y.shape == (1, 3)
"#;
    python_ok(check, &[&out]);
}

#[test]
fn channel_pruning_cuts_concat_inputs_at_their_offsets() {
    // testdata/small/concat_cnn.onnx: Concat(relu(conv a), relu(conv b)) -> conv c. Each
    // branch loses half its channels; c must lose the matching input columns, b's shifted by
    // a's 4 channels. onnxruntime on the written model must equal the original with the
    // removed channels zeroed.
    let d = tempdir("concat");
    let out = d.join("c.onnx");
    bonsai_ok(&[
        "compress",
        "testdata/small/concat_cnn.onnx",
        "-o",
        out.to_str().unwrap(),
        "--passes",
        "prune-channels{sparsity=0.5}",
    ]);
    let check = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper as nh
orig, comp = onnx.load(sys.argv[1]), onnx.load(sys.argv[2])
o = {i.name: nh.to_array(i) for i in orig.graph.initializer}
c = {i.name: nh.to_array(i) for i in comp.graph.initializer}
assert c["wa"].shape == (2, 2, 3, 3) and c["wb"].shape == (3, 2, 3, 3), (c["wa"].shape, c["wb"].shape)
assert c["wc"].shape == (3, 5, 1, 1), c["wc"].shape
# Which rows each branch kept, found by value; the consumer must keep the same columns.
def kept(name):
    return [next(i for i in range(len(o[name])) if np.array_equal(o[name][i], r)) for r in c[name]]
ka, kb = kept("wa"), kept("wb")
cols = ka + [4 + j for j in kb]
assert np.array_equal(c["wc"], o["wc"][:, cols]), "consumer columns do not match the kept channels"
# The original with the removed channels zeroed gives the same outputs.
z = onnx.load(sys.argv[1])
for init in z.graph.initializer:
    a = nh.to_array(init).copy()
    if init.name in ("wa", "ba"):
        a[[i for i in range(4) if i not in ka]] = 0
    if init.name in ("wb", "bb"):
        a[[i for i in range(6) if i not in kb]] = 0
    init.CopyFrom(nh.from_array(a, init.name))
x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
y1 = ort.InferenceSession(z.SerializeToString()).run(None, {"x": x})[0]
y2 = ort.InferenceSession(sys.argv[2]).run(None, {"x": x})[0]
assert np.allclose(y1, y2, rtol=1e-5, atol=1e-6), (y1, y2)
print("ok", ka, kb)
"#;
    python_ok(
        check,
        &[&root().join("testdata/small/concat_cnn.onnx"), &out],
    );
}
