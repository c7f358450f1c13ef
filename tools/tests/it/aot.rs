//! `bonsai compile` artifacts: the shared library, run by the LLVM-free `bonsai-rt` and by a C
//! program, reproduces the JIT's outputs bit for bit.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{bonsai_ok, bonsai_rt, python_ok, root, run_ok, s, tempdir};

/// JIT (`bonsai run`) and library (`bonsai-rt`) outputs of `model` on `input`.
fn jit_and_library(model: &Path, lib: &Path, input: &Path, d: &Path) -> (PathBuf, PathBuf) {
    let (jit, rt) = (d.join("jit.npz"), d.join("rt.npz"));
    bonsai_ok(&["run", s(model), "--input", s(input), "--output", s(&jit)]);
    run_ok(
        Command::new(bonsai_rt())
            .arg(lib)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&rt),
    );
    (jit, rt)
}

#[test]
fn compiled_library_matches_the_jit_bit_for_bit_from_rust_and_c() {
    let d = tempdir("aot");
    let model = root().join("testdata/models/mnist_cnn_ccexam.onnx");
    let lib = d.join("build");
    bonsai_ok(&[
        "compile",
        s(&model),
        "-o",
        s(&lib),
        "--shape",
        "input=1x1x28x28",
    ]);
    // The runtime links no LLVM.
    let ldd = run_ok(Command::new("ldd").arg(bonsai_rt()));
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
    python_ok(prep, &[&root().join("testdata/data/mnist_5k.csv.gz"), &d]);
    let (jit, rt) = jit_and_library(&model, &lib, &d.join("in.npz"), &d);
    // The C example, built against model.h and libmodel.so.
    let app = d.join("run_model");
    run_ok(
        Command::new("cc")
            .arg(root().join("tools/examples/run_model.c"))
            .arg(format!("-I{}", lib.display()))
            .arg(format!("-L{}", lib.display()))
            .arg("-lmodel")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(&app),
    );
    run_ok(
        Command::new(&app)
            .arg(d.join("in.raw"))
            .arg(d.join("c.raw")),
    );
    let cmp = r#"
import sys, numpy as np
a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); c = np.fromfile(sys.argv[3], np.float32)
(k,) = a.files
assert a[k].tobytes() == b[k].tobytes(), "bonsai-rt differs from the JIT"
assert a[k].reshape(-1).tobytes() == c.tobytes(), "the C example differs from the JIT"
"#;
    python_ok(cmp, &[&jit, &rt, &d.join("c.raw")]);
}

#[test]
fn sparse_kernels_match_onnxruntime_and_the_library() {
    // sparse_fc: a 96%-sparse Gemm on 2 rows (row-wise CSR). sparse_cnn: a stride-1 conv in
    // two pixel tiles, a stride-2 conv and a Gemm on 16 rows (the transposed product), all
    // about 90% sparse. The libraries get the sparse kernels; the JIT runs them dense.
    for (name, shape) in [("sparse_fc", "2, 25"), ("sparse_cnn", "16, 4, 12, 12")] {
        let d = tempdir(name);
        let model = root().join(format!("testdata/small/{name}.onnx"));
        let prep = format!(
            r#"
import sys, numpy as np, onnxruntime as ort
x = np.random.default_rng(3).standard_normal(({shape})).astype(np.float32)
np.savez(sys.argv[2] + "/in.npz", x=x)
np.save(sys.argv[2] + "/ort.npy", ort.InferenceSession(sys.argv[1]).run(None, {{"x": x}})[0])
"#
        );
        python_ok(&prep, &[&model, &d]);
        let lib = d.join("build");
        let o = bonsai_ok(&["compile", s(&model), "-o", s(&lib), "--sparse-min", "0.8"]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            text.contains("sparse"),
            "{name}: no sparse kernels reported: {text}"
        );
        let (jit, rt) = jit_and_library(&model, &lib, &d.join("in.npz"), &d);
        // The dense JIT and the sparse library must both match onnxruntime (summation
        // order and fused multiply-adds differ, hence the tolerance).
        let cmp = r#"
import sys, numpy as np
a, b, r = np.load(sys.argv[1])["y"], np.load(sys.argv[2])["y"], np.load(sys.argv[3])
assert np.allclose(a, r, rtol=1e-5, atol=1e-5), (a, r)
assert np.allclose(b, r, rtol=1e-5, atol=1e-5), (b, r)
"#;
        python_ok(cmp, &[&jit, &rt, &d.join("ort.npy")]);
    }
}

#[test]
fn int8_weights_run_as_int8_and_match_onnxruntime() {
    // testdata/small/int8_fc.onnx: DequantizeLinear(int8 W, per-feature scales) -> Gemm on
    // one row, as onnxruntime's quantize_static writes it. The JIT and the library run the
    // int8 kernel (the weight read as int8, dequantised on the fly).
    let d = tempdir("aot-int8fc");
    let model = root().join("testdata/small/int8_fc.onnx");
    let prep = r#"
import sys, numpy as np, onnxruntime as ort
x = np.random.default_rng(4).standard_normal((1, 64)).astype(np.float32)
np.savez(sys.argv[2] + "/in.npz", x=x)
np.save(sys.argv[2] + "/ort.npy", ort.InferenceSession(sys.argv[1]).run(None, {"x": x})[0])
"#;
    python_ok(prep, &[&model, &d]);
    let lib = d.join("build");
    bonsai_ok(&["compile", s(&model), "-o", s(&lib)]);
    let text =
        String::from_utf8_lossy(&bonsai_ok(&["import", s(&model), "--cpu"]).stdout).to_string();
    assert!(text.contains("int8_gemv") && text.contains("tensor<16x64xi8>"));
    let (jit, rt) = jit_and_library(&model, &lib, &d.join("in.npz"), &d);
    let cmp = r#"
import sys, numpy as np
a, b, r = np.load(sys.argv[1])["y"], np.load(sys.argv[2])["y"], np.load(sys.argv[3])
assert a.tobytes() == b.tobytes(), "the library differs from the JIT"
assert np.allclose(a, r, rtol=1e-5, atol=1e-5), (a, r)
"#;
    python_ok(cmp, &[&jit, &rt, &d.join("ort.npy")]);
}

/// Run the model `testdata/small/{name}.onnx` on `x = {input}` (a numpy expression) from
/// the JIT and the compiled library: both must be bit-identical and within 1e-4 of
/// onnxruntime without graph optimisations (for QDQ models the ONNX semantics; its fused
/// U8S8 kernels saturate 16-bit pair sums on full-range weights and moved int8_conv's
/// outputs by up to 11.5), with outputs above `min_abs`. Returns the CPU-form MLIR text.
fn small_model_matches_onnxruntime(name: &str, input: &str, min_abs: f64) -> String {
    let d = tempdir(&format!("qdq-{name}"));
    let model = root().join(format!("testdata/small/{name}.onnx"));
    let prep = format!(
        r#"
import sys, numpy as np, onnxruntime as ort
x = {input}.astype(np.float32)
np.savez(sys.argv[2] + "/in.npz", x=x)
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
np.save(sys.argv[2] + "/ort.npy", ort.InferenceSession(sys.argv[1], so).run(None, {{"x": x}})[0])
"#
    );
    python_ok(&prep, &[&model, &d]);
    let lib = d.join("build");
    bonsai_ok(&["compile", s(&model), "-o", s(&lib)]);
    let (jit, rt) = jit_and_library(&model, &lib, &d.join("in.npz"), &d);
    let cmp = format!(
        r#"
import sys, numpy as np
a, b, r = np.load(sys.argv[1])["y"], np.load(sys.argv[2])["y"], np.load(sys.argv[3])
assert a.tobytes() == b.tobytes(), "the library differs from the JIT"
assert np.abs(r).max() > {min_abs}, "outputs too small to test"
assert np.allclose(a, r, rtol=1e-5, atol=1e-4), np.abs(a - r).max()
"#
    );
    python_ok(&cmp, &[&jit, &rt, &d.join("ort.npy")]);
    String::from_utf8_lossy(&bonsai_ok(&["import", s(&model), "--cpu"]).stdout).to_string()
}

#[test]
fn int8_convolutions_run_on_integers_and_match_onnxruntime() {
    // Two convolutions on QDQ activations (u8, then i8 with a non-zero zero point) and int8
    // per-channel weights, the second grouped and dilated: both integer kernels.
    let text = small_model_matches_onnxruntime(
        "int8_conv",
        "np.random.default_rng(4).uniform(-2.5, 2.8, (2, 6, 9, 11))",
        10.0,
    );
    assert_eq!(text.matches("bonsai.kernel = \"int8_conv\"").count(), 2);
    assert!(text.contains("xi16>"));
}

#[test]
fn int8_fc_on_quantised_input_multiplies_integers_and_matches_onnxruntime() {
    // QDQ input (u8, zero point 131) and int8 per-feature weights into a Gemm on 2 rows:
    // `int8_gemv` multiplies i16 inputs by i8 weights.
    let text = small_model_matches_onnxruntime(
        "int8_qfc",
        "np.random.default_rng(5).uniform(-4.5, 3.5, (2, 64))",
        1.0,
    );
    assert!(text.contains("int8_gemv") && text.contains("vector<16xi16> to vector<16xi32>"));
}

#[test]
fn qdq_pooling_and_asymmetric_fc_run_on_integers_and_match_onnxruntime() {
    // Conv -> Q/DQ -> MaxPool -> Q/DQ -> Flatten -> Q/DQ -> Gemm with u8 weights and a zero
    // point per feature: the pool runs before the quantisation, the repeated Q(DQ) pairs go,
    // and the FC multiplies integers with a per-feature offset.
    let text = small_model_matches_onnxruntime(
        "int8_pool",
        "np.random.default_rng(6).uniform(-0.5, 4.5, (2, 4, 8, 8))",
        10.0,
    );
    assert_eq!(text.matches("bonsai.kernel = \"int8_conv\"").count(), 1);
    assert!(text.contains("bonsai.kernel = \"int8_gemv\""));
    // Four QuantizeLinear in the source, three divisions here: the input's, the conv
    // output's (dead code, once the pool reads the conv output itself) and the pool's; the
    // requantisations after the pool and the Flatten are gone.
    assert_eq!(text.matches("arith.divf").count(), 3, "{text}");
}

#[test]
fn qdq_activation_chains_run_as_tables_and_match_onnxruntime() {
    // HardSwish (HardSigmoid, Mul) and Sigmoid between QDQ pairs, u8 and i8: each chain is a
    // function of one 8-bit tensor and runs as a 256-entry table, folded at compile time.
    let text = small_model_matches_onnxruntime(
        "int8_act",
        "np.random.default_rng(8).uniform(-4.5, 4.5, (2, 3, 5, 7))",
        0.5,
    );
    assert!(
        text.matches("bonsai.kernel = \"table\"").count() >= 2,
        "{text}"
    );
}

#[test]
fn depthwise_convolutions_keep_accumulators_in_registers_and_match_onnxruntime() {
    // A 3x3 with bias and a dilated 5x5 without, one channel per group: the `depthwise`
    // kernel (four 16-pixel accumulators across the taps).
    let text = small_model_matches_onnxruntime(
        "depthwise",
        "np.random.default_rng(9).standard_normal((2, 8, 9, 13))",
        1.0,
    );
    assert_eq!(text.matches("bonsai.kernel = \"depthwise\"").count(), 2);
}

#[test]
fn strided_convolutions_run_on_input_phases_and_match_onnxruntime() {
    // A 3x3 stride 2 (asymmetric padding, odd sizes), a grouped 5x5 stride 3 and a depthwise
    // 3x3 stride 2: space to depth, then the register-blocked stride-1 kernel (the
    // one-output-channel kernel for the depthwise one).
    let text = small_model_matches_onnxruntime(
        "strided",
        "np.random.default_rng(10).standard_normal((2, 4, 17, 15))",
        1.0,
    );
    // Two register-blocked convolutions of 8 output channels (4 in each of the grouped one's
    // 2 groups): 6-row blocks plus the 2 leftover rows for the first, 4 leftover rows only
    // for the second.
    assert_eq!(
        text.matches("bonsai.kernel = \"conv_blocked\"").count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches("bonsai.kernel = \"depthwise\"").count(), 1);
    assert_eq!(text.matches("s2d_weight").count(), 6, "{text}");
}

#[test]
fn batchnorms_fold_into_their_convolutions_and_match_onnxruntime() {
    // conv_bn: two Conv -> BatchNormalization pairs (one grouped, without bias) fold into the
    // convolution's weight and bias; a third conv's output is also read by an Add, so its
    // BatchNormalization stays a map.
    let text = small_model_matches_onnxruntime(
        "conv_bn",
        "np.random.default_rng(11).standard_normal((2, 4, 9, 11))",
        1.0,
    );
    // The folded convolutions carry a new bias; the third keeps none and its
    // BatchNormalization's scale and shift stay constants of a map.
    assert!(text.contains("bonsai.bias = \"w1.bias\""), "{text}");
    assert!(text.contains("bonsai.bias = \"w2.bias\""), "{text}");
    assert!(!text.contains("w3.bias"), "{text}");
    assert_eq!(text.matches("]> : tensor<8xf32>").count(), 2, "{text}");
}

#[test]
fn single_pixel_convolutions_run_as_matrix_vector_products_and_match_onnxruntime() {
    // se_block: two 1x1 convolutions on a pooled 1x1 plane (with and without bias) become
    // Gemms in native code; the plain form keeps the convolutions.
    let text = small_model_matches_onnxruntime(
        "se_block",
        "(np.random.default_rng(12).standard_normal((2, 8, 5, 5)) * 3)",
        1.0,
    );
    assert_eq!(text.matches("bonsai.kind = \"gemm\"").count(), 2, "{text}");
    assert!(!text.contains("bonsai.kind = \"conv\""), "{text}");
    let plain = String::from_utf8_lossy(
        &bonsai_ok(&["import", s(&root().join("testdata/small/se_block.onnx"))]).stdout,
    )
    .to_string();
    assert_eq!(
        plain.matches("bonsai.kind = \"conv\"").count(),
        2,
        "{plain}"
    );
}

#[test]
fn kernel_bench_times_dense_and_csr_in_one_run() {
    let d = tempdir("kbench");
    let svg = d.join("k.svg");
    let o = bonsai_ok(&[
        "bench",
        "--kernels",
        "8x16,conv:2x6x6:3x3x3",
        "--sparsities",
        "0,0.9",
        "--runs",
        "3",
        "--no-ort",
        "--json",
        "--svg",
        s(&svg),
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2]["shape"], "conv:2x6x6:3x3x3");
    // The int8 column: the QDQ form of every shape; onnxruntime's only without --no-ort.
    for r in &rows {
        assert!(r["int8_us"].as_f64().unwrap() > 0.0);
        assert!(r["onnxruntime_int8_us"].is_null());
    }
    // The 4x1-block column: sparse rows with whole blocks of 4 output channels only.
    assert!(rows[1]["block4_us"].as_f64().unwrap() > 0.0);
    assert!(rows[0]["block4_us"].is_null() && rows[3]["block4_us"].is_null());
    for r in &rows {
        assert!(r["dense_us"].as_f64().unwrap() > 0.0 && r["csr_us"].as_f64().unwrap() > 0.0);
        assert!(r["csr_speedup_vs_dense"].as_f64().unwrap() > 0.0);
    }
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
}

#[test]
fn sparse_fc_kernels_for_few_rows_match_onnxruntime() {
    // Gemms on fewer than 8 rows with a sparse weight: the permute kernel (8 lanes on AVX2,
    // 16 on AVX-512, as far as this host has them; partial groups of features and row
    // lengths that are no multiple of the lanes) and the gather kernel (the fallback without
    // either), each against onnxruntime.
    use bonsai::ir::lower::{host_x86, lower_with, Options, X86};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("fc-kernels");
    for (n, k, sparsity, batch) in [(20, 37, 0.7, 3), (130, 300, 0.9, 1)] {
        let model = d.join(format!("fc_{n}x{k}.onnx"));
        let args = [n, k].map(|v| v.to_string());
        run_ok(
            Command::new("python3")
                .arg(root().join("tools/scripts/make_fc.py"))
                .args(&args)
                .args([sparsity.to_string(), batch.to_string()])
                .arg(&model),
        );
        let prep = r#"
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1])
x = np.random.default_rng(8).standard_normal(s.get_inputs()[0].shape).astype(np.float32)
np.savez(sys.argv[2], x=x, y=s.run(None, {"x": x})[0])
"#;
        let data = d.join(format!("fc_{n}x{k}.npz"));
        python_ok(prep, &[&model, &data]);
        let t = bonsai::npz::read(&data).expect("npz");
        let (x, want) = (&t["x"], t["y"].to_f64_vec());
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let kinds = [
            (X86::None, "sparse_gemv"),
            (X86::Avx2, "perm_gemv"),
            (X86::Avx512, "perm_gemv"),
        ];
        for (x86, kind) in kinds.into_iter().filter(|(x, _)| *x <= host_x86()) {
            let opts = Options {
                x86,
                sparse_floors: false,
                ..Options::cpu(Some(0.0))
            };
            let g = load_bound(&model, &Default::default()).expect("model");
            let text = lower_with(&g, &opts).expect("lower");
            assert!(
                text.contains(&format!("bonsai.kernel = \"{kind}\"")),
                "{kind} ({x86:?})"
            );
            let c = Compiled::with_options(g, &opts).expect("compile");
            let got = c.jit.run(&[x]).expect("run")[0].to_f64_vec();
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{kind} ({x86:?}) {n}x{k}: y[{i}] = {a}, onnxruntime {b}"
                );
            }
        }
    }
}

#[test]
fn halving_pools_match_onnxruntime() {
    // 2x2 stride-2 MaxPool and AveragePool run as `pool_2x2` (two input rows, even and odd
    // columns shuffled apart): odd heights and widths (the last row and column unused), rows
    // of a whole vector plus a tail (35 outputs) and of less than one (4), negative inputs.
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("pool2x2");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h
nodes = [h.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("MaxPool", ["z"], ["n"], kernel_shape=[2, 2], strides=[2, 2])]
g = h.make_graph(nodes, "pools",
                 [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 21, 71]),
                  h.make_tensor_value_info("z", T.FLOAT, [1, 5, 8, 9])],
                 [h.make_tensor_value_info(o, T.FLOAT, None) for o in "man"])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
onnx.save(m, sys.argv[1])
rng = np.random.default_rng(11)
x = rng.standard_normal((2, 3, 21, 71)).astype(np.float32) - 1
z = rng.standard_normal((1, 5, 8, 9)).astype(np.float32)
o = ort.InferenceSession(sys.argv[1]).run(None, {"x": x, "z": z})
np.savez(sys.argv[2], x=x, z=z, m=o[0], a=o[1], n=o[2])
"#;
    let (model, data) = (d.join("pools.onnx"), d.join("pools.npz"));
    python_ok(make, &[&model, &data]);
    let g = load_bound(&model, &Default::default()).expect("model");
    let text =
        bonsai::ir::lower::lower_with(&g, &bonsai::ir::lower::Options::cpu(None)).expect("lower");
    assert_eq!(text.matches("bonsai.kernel = \"pool_2x2\"").count(), 3);
    let t = bonsai::npz::read(&data).expect("npz");
    let c = Compiled::new(g).expect("compile");
    let got = c.jit.run(&[&t["x"], &t["z"]]).expect("run");
    for (y, k) in got.iter().zip(["m", "a", "n"]) {
        assert_eq!(y.shape, t[k].shape, "{k}");
        let (a, b) = (y.to_f64_vec(), t[k].to_f64_vec());
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() <= 1e-6, "{k}[{i}]: {p}, onnxruntime {q}");
        }
    }
}

#[test]
fn vnni_integer_convolutions_match_onnxruntime() {
    // QDQ convolutions with channels in quads: u8 input (zero point 128, as quantize_static
    // writes it) and i8 input (zero point -3, padded borders, a bias). With AVX-512 VNNI they
    // multiply unsigned by signed bytes (`vpdpbusd`), the offset taken back out exactly;
    // without, 16-bit pairs. Both against onnxruntime's reference kernels.
    use bonsai::ir::lower::{host_x86, lower_with, Options, X86};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("vnni");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh
rng = np.random.default_rng(12)
w = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
ws = (np.abs(w).reshape(12, -1).max(1) / 127).astype(np.float32)
wq = np.round(w / ws[:, None, None, None]).astype(np.int8)
inits = [nh.from_array(wq, "wq"), nh.from_array(ws, "ws"), nh.from_array(np.zeros(12, np.int8), "wz"),
         nh.from_array(np.array(0.031, np.float32), "xs"), nh.from_array(np.array(-3, np.int8), "xz"),
         nh.from_array(rng.standard_normal(12).astype(np.float32), "b")]
nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
         h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
         h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
         h.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1])]
g = h.make_graph(nodes, "vnni", [h.make_tensor_value_info("x", T.FLOAT, [2, 8, 10, 13])],
                 [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), sys.argv[1])
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
for path, out, shape in ((sys.argv[1], sys.argv[2], (2, 8, 10, 13)), (sys.argv[3], sys.argv[4], (1, 16, 9, 9))):
    x = rng.uniform(-3, 3, shape).astype(np.float32)
    np.savez(out, x=x, y=ort.InferenceSession(path, so).run(None, {"x": x})[0])
"#;
    let (m1, d1) = (d.join("i8.onnx"), d.join("i8.npz"));
    let (m2, d2) = (d.join("u8.onnx"), d.join("u8.npz"));
    run_ok(
        Command::new("python3")
            .arg(root().join("tools/scripts/make_fc.py"))
            .args(["conv", "16", "9", "9", "8", "3", "3", "0", "1"])
            .arg(&m2)
            .arg("int8"),
    );
    python_ok(make, &[&m1, &d1, &m2, &d2]);
    for (model, data) in [(&m1, &d1), (&m2, &d2)] {
        let t = bonsai::npz::read(data).expect("npz");
        let want = t["y"].to_f64_vec();
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for x86 in [X86::Avx2, X86::Avx512Vnni] {
            if x86 > host_x86() {
                continue;
            }
            let opts = Options {
                x86,
                ..Options::cpu(None)
            };
            let g = load_bound(model, &Default::default()).expect("model");
            let text = lower_with(&g, &opts).expect("lower");
            assert_eq!(text.contains("vpdpbusd"), x86 == X86::Avx512Vnni, "{x86:?}");
            assert!(text.contains("bonsai.kernel = \"int8_conv\""), "{x86:?}");
            let c = Compiled::with_options(g, &opts).expect("compile");
            let got = c.jit.run(&[&t["x"]]).expect("run")[0].to_f64_vec();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{} ({x86:?}): y[{i}] = {a}, onnxruntime {b}",
                    model.display()
                );
            }
        }
    }
}
