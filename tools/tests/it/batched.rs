//! Batched and sparse CPU code against onnxruntime: the per-image loop over a batch's
//! per-sample layers, block-sparse (BSR 4x1) and phased (aligned) direct kernels, and
//! batched int8 FCs.

use super::{assert_close, python_ok, tempdir};

#[test]
fn per_image_layers_and_batched_sparse_fcs_match_onnxruntime() {
    // A batch of 32: the per-sample layers (convolutions, one of them sparse and direct, one
    // with its Relu and 2x2 MaxPool run on the kernel's plane (15x15: the last row and column
    // unused), pooling, BatchNormalization, Clip, a squeeze-and-excite Mul broadcasting
    // [N, C, 1, 1] computed by a small FC, an Add of a constant) run one image at a time in
    // one `per_image` loop; two of their values are also graph outputs. The 90%-sparse FC
    // (too large to run per image) runs on the whole batch as `sparse_rows`, and no sparse
    // tensor is left in the module.
    use bonsai::ir::lower::{lower_with, uses_sparse, Options};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("per-image");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh
rng = np.random.default_rng(21)
def sparse(shape, keep):
    w = rng.standard_normal(shape).astype(np.float32)
    return w * (rng.random(shape) < keep)
inits = [nh.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5, "w0"),
         nh.from_array(rng.standard_normal(8).astype(np.float32), "b0"),
         nh.from_array(sparse((8, 8, 3, 3), 0.1), "w1"),
         nh.from_array(rng.random(8).astype(np.float32) + 0.5, "g"),
         nh.from_array(rng.standard_normal(8).astype(np.float32), "be"),
         nh.from_array(rng.standard_normal(8).astype(np.float32), "mu"),
         nh.from_array(rng.random(8).astype(np.float32) + 0.5, "var"),
         nh.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), "w2"),
         nh.from_array(rng.standard_normal((8, 1, 1)).astype(np.float32), "c"),
         nh.from_array(np.array(0.0, np.float32), "lo"), nh.from_array(np.array(6.0, np.float32), "hi"),
         nh.from_array(sparse((64, 392), 0.1), "wf"),
         nh.from_array(rng.standard_normal(64).astype(np.float32), "bf")]
nodes = [h.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c0"], ["r0"]),
         h.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("Conv", ["p0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["n1"]),
         h.make_node("Clip", ["n1", "lo", "hi"], ["k1"]),
         h.make_node("GlobalAveragePool", ["k1"], ["s0"]),
         h.make_node("Conv", ["s0", "w2"], ["s1"]),
         h.make_node("HardSigmoid", ["s1"], ["s2"]),
         h.make_node("Mul", ["k1", "s2"], ["e"]),
         h.make_node("Add", ["e", "c"], ["mid"]),
         h.make_node("AveragePool", ["mid"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("Flatten", ["mid"], ["f"]),
         h.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
g = h.make_graph(nodes, "per_image", [h.make_tensor_value_info("x", T.FLOAT, [32, 3, 15, 15])],
                 [h.make_tensor_value_info(o, T.FLOAT, None) for o in ["y", "mid", "p1"]],
                 inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
onnx.save(m, sys.argv[1])
x = rng.standard_normal((32, 3, 15, 15)).astype(np.float32)
o = ort.InferenceSession(sys.argv[1]).run(None, {"x": x})
np.savez(sys.argv[2], x=x, y=o[0], mid=o[1], p1=o[2])
"#;
    let (model, data) = (d.join("per_image.onnx"), d.join("per_image.npz"));
    python_ok(make, &[&model, &data]);
    let g = load_bound(&model, &Default::default()).expect("model");
    let opts = Options::cpu(Some(0.0));
    let text = lower_with(&g, &opts).expect("lower");
    for (kind, count) in [("per_image", 1), ("sparse_direct", 1), ("sparse_rows", 1)] {
        let k = format!("bonsai.kernel = \"{kind}\"");
        assert_eq!(text.matches(&k).count(), count, "{kind}");
    }
    assert!(!uses_sparse(&text), "no sparse tensors");
    let t = bonsai::npz::read(&data).expect("npz");
    let c = Compiled::with_options(g, &opts).expect("compile");
    let got = c.jit.run(&[&t["x"]]).expect("run");
    for (y, k) in got.iter().zip(["y", "mid", "p1"]) {
        assert_close(y, &t[k], 1e-4, k);
    }
}

#[test]
fn block_sparse_kernels_match_onnxruntime() {
    // Weights whose zeros come in blocks of 4 output channels x 1 position (BSR 4x1): with
    // AVX-512's registers the direct kernels run 4 channels per position (a plain conv, a
    // grouped one, and the batched FC, whose features share their columns in fours). With
    // AVX2 the same weights run channel by channel. Both against onnxruntime.
    use bonsai::ir::lower::{lower_with, Options, X86};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("block-sparse");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh
rng = np.random.default_rng(31)
def blocks(shape, keep):
    w = rng.standard_normal(shape).astype(np.float32)
    b = w.reshape(shape[0] // 4, 4, -1)
    b *= (rng.random((b.shape[0], 1, b.shape[2])) < keep)
    return w
inits = [nh.from_array(blocks((16, 8, 3, 3), 0.2), "wa"),
         nh.from_array(rng.standard_normal(16).astype(np.float32), "ba"),
         nh.from_array(blocks((16, 8, 3, 3), 0.25), "wb"),
         nh.from_array(blocks((64, 1600), 0.1), "wf"),
         nh.from_array(rng.standard_normal(64).astype(np.float32), "bf")]
nodes = [h.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["a"], ["r"]),
         h.make_node("Conv", ["r", "wb"], ["b"], pads=[1, 1, 1, 1], group=2),
         h.make_node("Flatten", ["b"], ["f"]),
         h.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
g = h.make_graph(nodes, "blocks", [h.make_tensor_value_info("x", T.FLOAT, [16, 8, 10, 10])],
                 [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
onnx.save(m, sys.argv[1])
x = rng.standard_normal((16, 8, 10, 10)).astype(np.float32)
np.savez(sys.argv[2], x=x, y=ort.InferenceSession(sys.argv[1]).run(None, {"x": x})[0])
"#;
    let (model, data) = (d.join("blocks.onnx"), d.join("blocks.npz"));
    python_ok(make, &[&model, &data]);
    let t = bonsai::npz::read(&data).expect("npz");
    for (x86, block, direct) in [(X86::Avx512, 2, 0), (X86::Avx2, 0, 2)] {
        let g = load_bound(&model, &Default::default()).expect("model");
        let opts = Options {
            x86,
            ..Options::cpu(Some(0.5))
        };
        let text = lower_with(&g, &opts).expect("lower");
        let count = |k: &str| text.matches(&format!("bonsai.kernel = \"{k}\"")).count();
        assert_eq!(count("block_direct"), block, "{x86:?}");
        assert_eq!(count("sparse_direct"), direct, "{x86:?}");
        assert_eq!(count("sparse_rows"), 1, "{x86:?}");
        let c = Compiled::with_options(g, &opts).expect("compile");
        let got = c.jit.run(&[&t["x"]]).expect("run");
        assert_close(&got[0], &t["y"], 1e-4, &format!("{x86:?} y"));
    }
}

#[test]
fn batched_int8_fcs_after_per_image_layers_match_onnxruntime() {
    // A QDQ model as quantize_static writes it, at batch 32: the integer convolution and the
    // quantise steps run per image (`per_image`); the DequantizeLinear feeding the FC runs
    // after the loop, so that with VNNI the batched FC multiplies the loop's integers
    // (`int8_conv`'s 1x1 loops on the transposed input); without VNNI it runs in f32 on the
    // same dequantised values. Against onnxruntime's reference kernels.
    use bonsai::ir::lower::{host_x86, lower_with, Options, X86};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("int8-rows");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh
rng = np.random.default_rng(41)
def q8(w):
    s = (np.abs(w).reshape(w.shape[0], -1).max(1) / 127).astype(np.float32)
    return np.round(w / s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.int8), s
wc, sc = q8(rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
wf, sf = q8(rng.standard_normal((64, 288)).astype(np.float32))
inits = [nh.from_array(wc, "wc"), nh.from_array(sc, "sc"), nh.from_array(np.zeros(8, np.int8), "zc"),
         nh.from_array(wf, "wf"), nh.from_array(sf, "sf"), nh.from_array(np.zeros(64, np.int8), "zf"),
         nh.from_array(rng.standard_normal(64).astype(np.float32), "bf"),
         nh.from_array(np.array(0.05, np.float32), "xs"), nh.from_array(np.array(128, np.uint8), "xz"),
         nh.from_array(np.array(0.4, np.float32), "ys"), nh.from_array(np.array(3, np.uint8), "yz")]
nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
         h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
         h.make_node("DequantizeLinear", ["wc", "sc", "zc"], ["wcd"], axis=0),
         h.make_node("Conv", ["xd", "wcd"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
         h.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["cd"]),
         h.make_node("Flatten", ["cd"], ["f"]),
         h.make_node("QuantizeLinear", ["f", "ys", "yz"], ["fq"]),
         h.make_node("DequantizeLinear", ["fq", "ys", "yz"], ["fd"]),
         h.make_node("DequantizeLinear", ["wf", "sf", "zf"], ["wfd"], axis=0),
         h.make_node("Gemm", ["fd", "wfd", "bf"], ["y"], transB=1)]
g = h.make_graph(nodes, "int8_rows", [h.make_tensor_value_info("x", T.FLOAT, [32, 4, 6, 6])],
                 [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), sys.argv[1])
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
x = rng.uniform(-3, 3, (32, 4, 6, 6)).astype(np.float32)
np.savez(sys.argv[2], x=x, y=ort.InferenceSession(sys.argv[1], so).run(None, {"x": x})[0])
"#;
    let (model, data) = (d.join("int8_rows.onnx"), d.join("int8_rows.npz"));
    python_ok(make, &[&model, &data]);
    let t = bonsai::npz::read(&data).expect("npz");
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
        let g = load_bound(&model, &Default::default()).expect("model");
        let text = lower_with(&g, &opts).expect("lower");
        let count = |k: &str| text.matches(&format!("bonsai.kernel = \"{k}\"")).count();
        assert_eq!(count("per_image"), 1, "{x86:?}");
        let fc_int8 = usize::from(x86 == X86::Avx512Vnni);
        assert_eq!(count("int8_conv"), 1 + fc_int8, "{x86:?}");
        let c = Compiled::with_options(g, &opts).expect("compile");
        let got = c.jit.run(&[&t["x"]]).expect("run")[0].to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{x86:?}: y[{i}] = {a}, onnxruntime {b}"
            );
        }
    }
}

#[test]
fn phased_direct_convolutions_match_onnxruntime() {
    // Sparse stride-1 convolutions on planes whose padded rows are 16 floats wide: with
    // AVX-512 the direct kernel reads every input vector aligned, one accumulator set per
    // input phase (kernel column), then shifts the sets into place. A 3x3 conv (3 phases,
    // bias), a dilated 3x3 (phases 0, 2, 4) and one whose last kernel column is all zero
    // (2 phases); against onnxruntime, and the same without the phases (AVX2).
    use bonsai::ir::lower::{lower_with, Options, X86};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("phased");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh
rng = np.random.default_rng(51)
def sparse(shape, keep):
    w = rng.standard_normal(shape).astype(np.float32)
    return w * (rng.random(shape) < keep)
w3 = sparse((8, 6, 3, 3), 0.2)
w2 = sparse((8, 6, 3, 3), 0.3)
w2[:, :, :, 2] = 0
inits = [nh.from_array(w3, "w3"), nh.from_array(rng.standard_normal(8).astype(np.float32), "b3"),
         nh.from_array(sparse((8, 6, 3, 3), 0.2), "wd"), nh.from_array(w2, "w2")]
nodes = [h.make_node("Conv", ["x", "w3", "b3"], ["a"], pads=[1, 1, 1, 1]),
         h.make_node("Conv", ["z", "wd"], ["b"], pads=[2, 2, 2, 2], dilations=[2, 2]),
         h.make_node("Conv", ["x", "w2"], ["c"], pads=[1, 1, 1, 1])]
g = h.make_graph(nodes, "phased", [h.make_tensor_value_info("x", T.FLOAT, [2, 6, 11, 14]),
                                   h.make_tensor_value_info("z", T.FLOAT, [1, 6, 9, 12])],
                 [h.make_tensor_value_info(o, T.FLOAT, None) for o in "abc"], inits)
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), sys.argv[1])
x = rng.standard_normal((2, 6, 11, 14)).astype(np.float32)
z = rng.standard_normal((1, 6, 9, 12)).astype(np.float32)
o = ort.InferenceSession(sys.argv[1]).run(None, {"x": x, "z": z})
np.savez(sys.argv[2], x=x, z=z, a=o[0], b=o[1], c=o[2])
"#;
    let (model, data) = (d.join("phased.onnx"), d.join("phased.npz"));
    python_ok(make, &[&model, &data]);
    let t = bonsai::npz::read(&data).expect("npz");
    for x86 in [X86::Avx512, X86::Avx2] {
        let g = load_bound(&model, &Default::default()).expect("model");
        let opts = Options {
            x86,
            ..Options::cpu(Some(0.5))
        };
        let text = lower_with(&g, &opts).expect("lower");
        assert_eq!(text.matches("bonsai.kernel = \"sparse_direct\"").count(), 3);
        // Shuffles: 7 vectors x 2 shifted phases, 3 convs (16-float rows: 14 + 2, 12 + 4).
        let shuffles = text.matches("vector.shuffle").count();
        assert_eq!(
            shuffles > 0,
            x86 == X86::Avx512,
            "{x86:?}: {shuffles} shuffles"
        );
        let c = Compiled::with_options(g, &opts).expect("compile");
        let got = c.jit.run(&[&t["x"], &t["z"]]).expect("run");
        for (y, k) in got.iter().zip(["a", "b", "c"]) {
            assert_close(y, &t[k], 1e-4, &format!("{x86:?} {k}"));
        }
    }
}

#[test]
fn per_image_keeps_broadcasts_across_the_batch() {
    // A batch of 3 whose reshaped conv output r [3, 4] is added to a [3, 2, 3, 4] map: ONNX
    // broadcasting aligns r's batch dimension with the map's height (also 3), so the Add mixes
    // images and must run after the per-image loop, on the whole batch.
    use bonsai::ir::lower::{lower_with, Options};
    use bonsai::session::{load_bound, Compiled};
    let d = tempdir("per-image-bcast");
    let make = r#"
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh
rng = np.random.default_rng(61)
inits = [nh.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), "wc"),
         nh.from_array(rng.standard_normal((1, 2, 3, 1)).astype(np.float32), "wr"),
         nh.from_array(np.array([3, 4], np.int64), "shape")]
nodes = [h.make_node("Conv", ["x", "wc"], ["c"]),
         h.make_node("Conv", ["x", "wr"], ["q"]),
         h.make_node("Reshape", ["q", "shape"], ["r"]),
         h.make_node("Add", ["c", "r"], ["y"])]
g = h.make_graph(nodes, "bcast", [h.make_tensor_value_info("x", T.FLOAT, [3, 2, 3, 4])],
                 [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), sys.argv[1])
x = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
np.savez(sys.argv[2], x=x, y=ort.InferenceSession(sys.argv[1]).run(None, {"x": x})[0])
"#;
    let (model, data) = (d.join("bcast.onnx"), d.join("bcast.npz"));
    python_ok(make, &[&model, &data]);
    let g = load_bound(&model, &Default::default()).expect("model");
    let opts = Options::cpu(None);
    let text = lower_with(&g, &opts).expect("lower");
    assert_eq!(text.matches("bonsai.kernel = \"per_image\"").count(), 1);
    let t = bonsai::npz::read(&data).expect("npz");
    let got = Compiled::with_options(g, &opts)
        .expect("compile")
        .jit
        .run(&[&t["x"]])
        .expect("run");
    assert_close(&got[0], &t["y"], 1e-5, "y");
}
