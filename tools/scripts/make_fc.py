"""Write a one-Gemm ONNX model for kernel benchmarks: y = x W^T, W [N, K] with the given
fraction of its entries zero (the smallest |w| of a deterministic normal draw), x [B, K].

    python3 tools/scripts/make_fc.py N K SPARSITY BATCH OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper as nh

n, k, s, b, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
w = np.random.default_rng(n * 7919 + k).standard_normal((n, k)).astype(np.float32)
cut = int(s * w.size)
if cut:
    w.reshape(-1)[np.argsort(np.abs(w).reshape(-1), kind="stable")[:cut]] = 0
g = h.make_graph([h.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "fc",
                 [h.make_tensor_value_info("x", T.FLOAT, [b, k])],
                 [h.make_tensor_value_info("y", T.FLOAT, [b, n])], [nh.from_array(w, "W")])
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8), out)
