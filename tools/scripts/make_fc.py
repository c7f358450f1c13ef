"""Write a one-op ONNX model for kernel benchmarks, with the given fraction of its weight
entries zero (the smallest |w| of a deterministic normal draw).

    python3 tools/scripts/make_fc.py N K SPARSITY BATCH OUT.onnx [int8]
        Gemm y = x W^T, W [N, K], x [BATCH, K]; with `int8`, W rounded to a symmetric
        per-row int8 grid (what per-channel int8 quantisation writes).
    python3 tools/scripts/make_fc.py conv C H W M KH KW SPARSITY BATCH OUT.onnx
        Conv (stride 1, zero padding keeping H x W) of x [BATCH, C, H, W] with W [M, C, KH, KW].
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper as nh


def sparsify(w, s):
    cut = int(s * w.size)
    if cut:
        w.reshape(-1)[np.argsort(np.abs(w).reshape(-1), kind="stable")[:cut]] = 0
    return w


if sys.argv[1] == "conv":
    c, hh, ww, m, kh, kw = (int(v) for v in sys.argv[2:8])
    s, b, out = float(sys.argv[8]), int(sys.argv[9]), sys.argv[10]
    w = np.random.default_rng(m * 7919 + c * 31 + kh).standard_normal((m, c, kh, kw)).astype(np.float32)
    w = sparsify(w, s)
    pads = [(kh - 1) // 2, (kw - 1) // 2, kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2]
    g = h.make_graph([h.make_node("Conv", ["x", "W"], ["y"], pads=pads)], "conv",
                     [h.make_tensor_value_info("x", T.FLOAT, [b, c, hh, ww])],
                     [h.make_tensor_value_info("y", T.FLOAT, [b, m, hh, ww])], [nh.from_array(w, "W")])
else:
    n, k, s, b, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    w = sparsify(np.random.default_rng(n * 7919 + k).standard_normal((n, k)).astype(np.float32), s)
    if len(sys.argv) > 6 and sys.argv[6] == "int8":
        scale = (np.abs(w).max(axis=1, keepdims=True) / 127).astype(np.float32)
        scale[scale == 0] = 1
        w = (np.round(w / scale) * scale).astype(np.float32)
    g = h.make_graph([h.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "fc",
                     [h.make_tensor_value_info("x", T.FLOAT, [b, k])],
                     [h.make_tensor_value_info("y", T.FLOAT, [b, n])], [nh.from_array(w, "W")])
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8), out)
