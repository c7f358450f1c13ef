"""Write a one-op ONNX model for kernel benchmarks, with the given fraction of its weight
entries zero (the smallest |w| of a deterministic normal draw).

    python3 tools/scripts/make_fc.py N K SPARSITY BATCH OUT.onnx [int8|block4]
        Gemm y = x W^T, W [N, K], x [BATCH, K]; with `int8`, W rounded to a symmetric
        per-row int8 grid (what per-channel int8 quantisation writes).
    python3 tools/scripts/make_fc.py conv C H W M KH KW SPARSITY BATCH OUT.onnx [int8|block4]
        Conv (stride 1, zero padding keeping H x W) of x [BATCH, C, H, W] with W [M, C, KH, KW].

With `block4` the zeros come in blocks of 4 output channels x 1 reduction entry (the weight
viewed as [M, C*KH*KW] or [N, K]): the blocks of smallest L2 norm (BSR with 4x1 blocks).

With `int8` the model is written as onnxruntime's `quantize_static` writes it (QDQ): the
input through QuantizeLinear/DequantizeLinear (u8, the synthetic inputs' range [-1, 1)),
the weight as int8 with a symmetric per-channel scale and a DequantizeLinear, the output
through QuantizeLinear/DequantizeLinear (u8). onnxruntime runs it as QLinearConv / QGemm.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper as nh


def sparsify(w, s):
    if block:
        rows = w.reshape(w.shape[0] // 4, 4, -1)
        norms = np.sqrt((rows ** 2).sum(axis=1)).reshape(-1)
        cut = int(s * norms.size)
        keep = np.ones(norms.size, bool)
        keep[np.argsort(norms, kind="stable")[:cut]] = False
        rows *= keep.reshape(rows.shape[0], 1, rows.shape[2])
        return w
    cut = int(s * w.size)
    if cut:
        w.reshape(-1)[np.argsort(np.abs(w).reshape(-1), kind="stable")[:cut]] = 0
    return w


def qdq(w, x_shape, y_shape, op, attrs):
    """The one-op model in QDQ form (see the module doc)."""
    scale = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127).astype(np.float32)
    scale[scale == 0] = 1
    q = np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.int8)
    fan_in = w[0].size
    y_scale = np.float32(4 * np.sqrt(fan_in) * 0.58 * float(np.std(w)) / 127 + 1e-6)
    inits = [nh.from_array(q, "Wq"), nh.from_array(scale, "Ws"),
             nh.from_array(np.zeros(w.shape[0], np.int8), "Wz"),
             nh.from_array(np.array(2 / 255, np.float32), "xs"), nh.from_array(np.array(128, np.uint8), "xz"),
             nh.from_array(y_scale, "ys"), nh.from_array(np.array(128, np.uint8), "yz")]
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             h.make_node("DequantizeLinear", ["Wq", "Ws", "Wz"], ["W"], axis=0),
             h.make_node(op, ["xd", "W"], ["yf"], **attrs),
             h.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"]),
             h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    return h.make_graph(nodes, "q" + op.lower(), [h.make_tensor_value_info("x", T.FLOAT, x_shape)],
                        [h.make_tensor_value_info("y", T.FLOAT, y_shape)], inits)


int8 = sys.argv[-1] == "int8"
block = sys.argv[-1] == "block4"
if sys.argv[1] == "conv":
    c, hh, ww, m, kh, kw = (int(v) for v in sys.argv[2:8])
    s, b, out = float(sys.argv[8]), int(sys.argv[9]), sys.argv[10]
    w = np.random.default_rng(m * 7919 + c * 31 + kh).standard_normal((m, c, kh, kw)).astype(np.float32)
    w = sparsify(w, s)
    pads = [(kh - 1) // 2, (kw - 1) // 2, kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2]
    if int8:
        g = qdq(w, [b, c, hh, ww], [b, m, hh, ww], "Conv", {"pads": pads})
    else:
        g = h.make_graph([h.make_node("Conv", ["x", "W"], ["y"], pads=pads)], "conv",
                         [h.make_tensor_value_info("x", T.FLOAT, [b, c, hh, ww])],
                         [h.make_tensor_value_info("y", T.FLOAT, [b, m, hh, ww])], [nh.from_array(w, "W")])
else:
    n, k, s, b, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    w = sparsify(np.random.default_rng(n * 7919 + k).standard_normal((n, k)).astype(np.float32), s)
    if int8:
        g = qdq(w, [b, k], [b, n], "Gemm", {"transB": 1})
    else:
        g = h.make_graph([h.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "fc",
                         [h.make_tensor_value_info("x", T.FLOAT, [b, k])],
                         [h.make_tensor_value_info("y", T.FLOAT, [b, n])], [nh.from_array(w, "W")])
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8), out)
