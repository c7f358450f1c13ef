#!/usr/bin/env python3
"""Generate the small committed test models of testdata/small (deterministic)."""
import os
import numpy as np
import onnx
from onnx import helper as h, numpy_helper as nh, TensorProto as T

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "small")
os.makedirs(D, exist_ok=True)
rng = np.random.default_rng(7)


def save(name, nodes, inputs, outputs, inits, opset=13):
    g = h.make_graph(nodes, name, inputs, outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=8, producer_name="bonsai-testdata")
    onnx.save(m, os.path.join(D, name + ".onnx"))


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# A tiny CNN: Conv(pad 1) + Relu + MaxPool + Flatten + Gemm + Softmax.
save("tiny_cnn",
     [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
      h.make_node("Relu", ["c"], ["r"]),
      h.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
      h.make_node("Flatten", ["p"], ["f"]),
      h.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1),
      h.make_node("Softmax", ["y"], ["prob"], axis=1)],
     [h.make_tensor_value_info("x", T.FLOAT, ["N", 1, 8, 8])],
     [h.make_tensor_value_info("prob", T.FLOAT, ["N", 10])],
     [nh.from_array(f32(4, 1, 3, 3), "w"), nh.from_array(f32(4), "b"),
      nh.from_array(f32(10, 64), "fc"), nh.from_array(f32(10), "fb")])

# Shape arithmetic that must fold: Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
save("shape_fold",
     [h.make_node("Shape", ["x"], ["s"]),
      h.make_node("Gather", ["s", "i0"], ["n"], axis=0),
      h.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
      h.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
      h.make_node("Reshape", ["x", "shape"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 12])],
     [nh.from_array(np.array(0, np.int64), "i0"), nh.from_array(np.array([0], np.int64), "ax"),
      nh.from_array(np.array([-1], np.int64), "m1")])

# An op bonsai does not know.
save("unknown_op",
     [h.make_node("Relu", ["x"], ["r"]), h.make_node("NonMaxSuppression", ["r", "r"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [1, 4])],
     [h.make_tensor_value_info("y", T.INT64, None)], [])

# A 96%-sparse FC (Gemm, transB): 4 outputs x 25 inputs with 4 non-zeros, for CSR kernels.
sw = np.zeros((4, 25), np.float32)
sw[0, 3], sw[1, 0], sw[1, 24], sw[3, 10] = 1.5, -2.0, 0.25, 3.0
save("sparse_fc",
     [h.make_node("Gemm", ["x", "sw", "sb"], ["y"], transB=1)],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 25])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 4])],
     [nh.from_array(sw, "sw"), nh.from_array(np.array([0.5, 0, -1, 0], np.float32), "sb")])

# A residual block: Conv a -> Relu -> Conv b, Add(relu(a), b) -> Relu -> Conv c -> pool.
# Structured pruning must remove the same channels from a and b (residual partners).
save("residual_cnn",
     [h.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
      h.make_node("Relu", ["a"], ["ra"]),
      h.make_node("Conv", ["ra", "wb", "bb"], ["b"], pads=[1, 1, 1, 1]),
      h.make_node("Add", ["ra", "b"], ["s"]),
      h.make_node("Relu", ["s"], ["rs"]),
      h.make_node("Conv", ["rs", "wc"], ["c"]),
      h.make_node("GlobalAveragePool", ["c"], ["p"]),
      h.make_node("Flatten", ["p"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 6, 6])],
     [h.make_tensor_value_info("y", T.FLOAT, [1, 3])],
     [nh.from_array(f32(6, 2, 3, 3), "wa"), nh.from_array(f32(6), "ba"),
      nh.from_array(f32(6, 6, 3, 3), "wb"), nh.from_array(f32(6), "bb"),
      nh.from_array(f32(3, 6, 1, 1), "wc")])

# Sparse convolutions and a sparse batched FC, for the sparse kernels: a stride-1 conv
# (output plane of 12 rows at padded width 14 = 168 pixels, so two pixel tiles), a stride-2
# conv (im2col over the output grid) and a Gemm with 16 rows (the transposed product).
def sparse(*shape, keep=0.1):
    w = f32(*shape)
    return np.where(rng.random(shape) < keep, w, 0).astype(np.float32)


save("sparse_cnn",
     [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
      h.make_node("Relu", ["c1"], ["r1"]),
      h.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
      h.make_node("Flatten", ["c2"], ["f"]),
      h.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
     [h.make_tensor_value_info("x", T.FLOAT, [16, 4, 12, 12])],
     [h.make_tensor_value_info("y", T.FLOAT, [16, 5])],
     [nh.from_array(sparse(8, 4, 3, 3), "w1"), nh.from_array(f32(8), "b1"),
      nh.from_array(sparse(6, 8, 3, 3), "w2"),
      nh.from_array(sparse(5, 6 * 6 * 6), "fw"), nh.from_array(f32(5), "fb")])

# Two branches joined by a Concat along the channels, then a 1x1 conv: pruning a branch's
# channels removes them from the Concat and, at the branch's offset, from the conv's inputs.
save("concat_cnn",
     [h.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
      h.make_node("Relu", ["a"], ["ra"]),
      h.make_node("Conv", ["x", "wb", "bb"], ["b"], pads=[1, 1, 1, 1]),
      h.make_node("Relu", ["b"], ["rb"]),
      h.make_node("Concat", ["ra", "rb"], ["cat"], axis=1),
      h.make_node("Conv", ["cat", "wc", "bc"], ["c"]),
      h.make_node("GlobalAveragePool", ["c"], ["p"]),
      h.make_node("Flatten", ["p"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 6, 6])],
     [h.make_tensor_value_info("y", T.FLOAT, [1, 3])],
     [nh.from_array(f32(4, 2, 3, 3), "wa"), nh.from_array(f32(4), "ba"),
      nh.from_array(f32(6, 2, 3, 3), "wb"), nh.from_array(f32(6), "bb"),
      nh.from_array(f32(3, 10, 1, 1), "wc"), nh.from_array(f32(3), "bc")])
# An int8 FC as onnxruntime's quantize_static writes it: int8 weight, one scale per output
# feature, DequantizeLinear feeding the Gemm. bonsai folds it and runs the int8 kernel.
wq = rng.integers(-127, 128, size=(16, 64)).astype(np.int8)
save("int8_fc",
     [h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
      h.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
     [h.make_tensor_value_info("x", T.FLOAT, [1, 64])],
     [h.make_tensor_value_info("y", T.FLOAT, [1, 16])],
     [nh.from_array(wq, "wq"), nh.from_array((rng.random(16) * 0.02 + 0.001).astype(np.float32), "ws"),
      nh.from_array(np.zeros(16, np.int8), "wz"), nh.from_array(f32(16), "b")])
# Integer convolutions: 8-bit activations through QuantizeLinear/DequantizeLinear (u8, then
# i8 with a non-zero zero point), int8 weights with per-channel scales, the second conv
# grouped and dilated. bonsai runs both on the integers (`int8_conv`).
wq1 = rng.integers(-127, 128, size=(8, 6, 3, 3)).astype(np.int8)
wq2 = rng.integers(-127, 128, size=(8, 4, 3, 3)).astype(np.int8)
save("int8_conv",
     [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
      h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
      h.make_node("DequantizeLinear", ["wq1", "ws1", "wz1"], ["w1"], axis=0),
      h.make_node("Conv", ["xd", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
      h.make_node("QuantizeLinear", ["c1", "cs", "cz"], ["cq"]),
      h.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cd"]),
      h.make_node("DequantizeLinear", ["wq2", "ws2", "wz2"], ["w2"], axis=0),
      h.make_node("Conv", ["cd", "w2", "b2"], ["y"], pads=[2, 1, 2, 1], dilations=[2, 1], group=2)],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 6, 9, 11])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 8, 9, 11])],
     [nh.from_array(np.array(0.02, np.float32), "xs"), nh.from_array(np.array(120, np.uint8), "xz"),
      nh.from_array(wq1, "wq1"), nh.from_array((rng.random(8) * 0.01 + 0.001).astype(np.float32), "ws1"),
      nh.from_array(np.zeros(8, np.int8), "wz1"), nh.from_array(f32(8), "b1"),
      nh.from_array(np.array(0.05, np.float32), "cs"), nh.from_array(np.array(-3, np.int8), "cz"),
      nh.from_array(wq2, "wq2"), nh.from_array((rng.random(8) * 0.01 + 0.001).astype(np.float32), "ws2"),
      nh.from_array(np.zeros(8, np.int8), "wz2"), nh.from_array(f32(8), "b2")])
# An int8 FC on 8-bit QDQ activations (u8, zero point 131): bonsai multiplies the integers
# (`int8_gemv` on i16 inputs).
wq3 = rng.integers(-127, 128, size=(16, 64)).astype(np.int8)
save("int8_qfc",
     [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
      h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
      h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
      h.make_node("Gemm", ["xd", "w", "b"], ["y"], transB=1)],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 64])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 16])],
     [nh.from_array(np.array(0.03, np.float32), "xs"), nh.from_array(np.array(131, np.uint8), "xz"),
      nh.from_array(wq3, "wq"), nh.from_array((rng.random(16) * 0.02 + 0.001).astype(np.float32), "ws"),
      nh.from_array(np.zeros(16, np.int8), "wz"), nh.from_array(f32(16), "b")])
# A QDQ CNN as `quantize_static` writes it around layout ops: Conv -> Q/DQ -> MaxPool ->
# Q/DQ -> Flatten -> Q/DQ -> Gemm, the requantisations repeating the same scale and zero
# point, and the FC weight asymmetric (u8 with a zero point per output feature). bonsai pools
# before quantising (MaxPool commutes with quantisation), drops the Q(DQ(q)) pairs, and
# runs the FC on the integers with a per-feature offset.
wq4 = rng.integers(-127, 128, size=(8, 4, 3, 3)).astype(np.int8)
wq5 = rng.integers(0, 256, size=(16, 128)).astype(np.uint8)
save("int8_pool",
     [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
      h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
      h.make_node("DequantizeLinear", ["wq1", "ws1", "wz1"], ["w1"], axis=0),
      h.make_node("Conv", ["xd", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
      h.make_node("QuantizeLinear", ["c1", "cs", "cz"], ["cq"]),
      h.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cd"]),
      h.make_node("MaxPool", ["cd"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
      h.make_node("QuantizeLinear", ["p", "cs", "cz"], ["pq"]),
      h.make_node("DequantizeLinear", ["pq", "cs", "cz"], ["pd"]),
      h.make_node("Flatten", ["pd"], ["f"]),
      h.make_node("QuantizeLinear", ["f", "cs", "cz"], ["fq"]),
      h.make_node("DequantizeLinear", ["fq", "cs", "cz"], ["fd"]),
      h.make_node("DequantizeLinear", ["wq2", "ws2", "wz2"], ["w2"], axis=0),
      h.make_node("Gemm", ["fd", "w2", "b2"], ["y"], transB=1)],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 8, 8])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 16])],
     [nh.from_array(np.array(0.02, np.float32), "xs"), nh.from_array(np.array(10, np.uint8), "xz"),
      nh.from_array(wq4, "wq1"), nh.from_array((rng.random(8) * 0.01 + 0.001).astype(np.float32), "ws1"),
      nh.from_array(np.zeros(8, np.int8), "wz1"), nh.from_array(f32(8), "b1"),
      nh.from_array(np.array(0.04, np.float32), "cs"), nh.from_array(np.array(-5, np.int8), "cz"),
      nh.from_array(wq5, "wq2"), nh.from_array((rng.random(16) * 0.01 + 0.001).astype(np.float32), "ws2"),
      nh.from_array(rng.integers(90, 160, size=16).astype(np.uint8), "wz2"), nh.from_array(f32(16), "b2")])
# Activations between QDQ pairs, as quantize_static writes HardSwish and Sigmoid: each chain
# is a function of one 8-bit tensor, which bonsai runs as a 256-entry table (`table`).
save("int8_act",
     [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
      h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
      h.make_node("HardSigmoid", ["xd"], ["hs"], alpha=1.0 / 6, beta=0.5),
      h.make_node("QuantizeLinear", ["hs", "hs_s", "hs_z"], ["hq"]),
      h.make_node("DequantizeLinear", ["hq", "hs_s", "hs_z"], ["hd"]),
      h.make_node("Mul", ["xd", "hd"], ["m"]),
      h.make_node("QuantizeLinear", ["m", "ms", "mz"], ["mq"]),
      h.make_node("DequantizeLinear", ["mq", "ms", "mz"], ["md"]),
      h.make_node("Sigmoid", ["md"], ["sg"]),
      h.make_node("QuantizeLinear", ["sg", "ss", "sz"], ["sq"]),
      h.make_node("DequantizeLinear", ["sq", "ss", "sz"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 5, 7])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 3, 5, 7])],
     [nh.from_array(np.array(0.031, np.float32), "xs"), nh.from_array(np.array(128, np.uint8), "xz"),
      nh.from_array(np.array(1.0 / 255, np.float32), "hs_s"), nh.from_array(np.array(0, np.uint8), "hs_z"),
      nh.from_array(np.array(0.027, np.float32), "ms"), nh.from_array(np.array(-20, np.int8), "mz"),
      nh.from_array(np.array(1.0 / 256, np.float32), "ss"), nh.from_array(np.array(0, np.uint8), "sz")])
# Depthwise convolutions (one channel per group), stride 1: a 3x3 with bias, then a dilated
# 5x5 without, over planes of 234 and more pixels (several 64-pixel blocks of the
# `depthwise` kernel, the last one partial).
save("depthwise",
     [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], group=8),
      h.make_node("Relu", ["c1"], ["r1"]),
      h.make_node("Conv", ["r1", "w2"], ["y"], pads=[2, 4, 2, 4], dilations=[1, 2], group=8)],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 8, 9, 13])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 8, 9, 13])],
     [nh.from_array(f32(8, 1, 3, 3), "w1"), nh.from_array(f32(8), "b1"),
      nh.from_array(f32(8, 1, 5, 5), "w2")])
# Strided convolutions: a 3x3 stride 2 with asymmetric padding on odd sizes, a 5x5 stride 3
# in 2 groups, then a depthwise 3x3 stride 2. bonsai computes them as stride-1 convolutions
# on the input's phases (space to depth): the register-blocked kernel for the first two, the
# one-output-channel kernel for the depthwise one.
save("strided",
     [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 0, 1, 1], strides=[2, 2]),
      h.make_node("Conv", ["c1", "w2"], ["c2"], pads=[2, 2, 2, 2], strides=[3, 3], group=2),
      h.make_node("Conv", ["c2", "w3", "b3"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], group=8)],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 17, 15])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 8, 2, 2])],
     [nh.from_array(f32(8, 4, 3, 3), "w1"), nh.from_array(f32(8), "b1"),
      nh.from_array(f32(8, 4, 5, 5), "w2"), nh.from_array(f32(8, 1, 3, 3), "w3"),
      nh.from_array(f32(8), "b3")])
# Convolutions followed by BatchNormalization: the first two (one grouped, without bias)
# fold into their convolution in native code; the third's output is also read by an Add, so
# its BatchNormalization stays a separate map.
def bn(name, c):
    return [nh.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), name + "_g"),
            nh.from_array(f32(c), name + "_b"), nh.from_array(f32(c), name + "_m"),
            nh.from_array(rng.uniform(0.2, 2.0, c).astype(np.float32), name + "_v")]


def bn_node(name, x, y):
    return h.make_node("BatchNormalization", [x] + [name + s for s in ("_g", "_b", "_m", "_v")], [y],
                       epsilon=1e-3)


save("conv_bn",
     [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), bn_node("bn1", "c1", "n1"),
      h.make_node("Relu", ["n1"], ["r1"]),
      h.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=2), bn_node("bn2", "c2", "n2"),
      h.make_node("Conv", ["r1", "w3"], ["c3"]), bn_node("bn3", "c3", "n3"),
      h.make_node("Add", ["n3", "c3"], ["a3"]), h.make_node("Add", ["n2", "a3"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 9, 11])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 8, 9, 11])],
     [nh.from_array(f32(8, 4, 3, 3), "w1"), nh.from_array(f32(8), "b1"), nh.from_array(f32(8, 4, 3, 3), "w2"),
      nh.from_array(f32(8, 8, 1, 1), "w3")] + bn("bn1", 8) + bn("bn2", 8) + bn("bn3", 8))
# A squeeze-and-excitation block: 1x1 convolutions on the pooled 1x1 plane, which native
# code runs as matrix-vector products (Gemm), then the gate times the input.
save("se_block",
     [h.make_node("GlobalAveragePool", ["x"], ["p"]),
      h.make_node("Conv", ["p", "sw1", "sb1"], ["s1"]), h.make_node("Relu", ["s1"], ["r"]),
      h.make_node("Conv", ["r", "sw2"], ["s2"]), h.make_node("HardSigmoid", ["s2"], ["gate"]),
      h.make_node("Mul", ["x", "gate"], ["y"])],
     [h.make_tensor_value_info("x", T.FLOAT, [2, 8, 5, 5])],
     [h.make_tensor_value_info("y", T.FLOAT, [2, 8, 5, 5])],
     [nh.from_array(f32(4, 8, 1, 1), "sw1"), nh.from_array(f32(4), "sb1"),
      nh.from_array(f32(8, 4, 1, 1), "sw2")])
# Symbolic height and width: commands without data or --shape take them as 1, where the
# 2x2 pooling window does not fit; the error must say so.
save("dyn_pool",
     [h.make_node("Conv", ["x", "pw"], ["c"]), h.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2])],
     [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
     [h.make_tensor_value_info("y", T.FLOAT, ["N", 4, "H2", "W2"])],
     [nh.from_array(f32(4, 3, 1, 1), "pw")])
# Block-sparse weights (4 output channels sharing each non-zero position, BSR with 4x1
# blocks): a stride-1 conv with a bias (8 -> 8 channels, 3 of the 72 positions of each block
# of 4 kept) on a 6x6 plane, for the block form of the direct kernel.
wb = f32(8, 8, 3, 3).reshape(2, 4, 72)
keep = np.zeros((2, 1, 72), bool)
keep[0, 0, [3, 40, 71]] = True
keep[1, 0, [0, 9, 50]] = True
save("block_cnn",
     [h.make_node("Conv", ["x", "wb", "bb"], ["y"], pads=[1, 1, 1, 1])],
     [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 6, 6])],
     [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 6, 6])],
     [nh.from_array((wb * keep).reshape(8, 8, 3, 3).astype(np.float32), "wb"), nh.from_array(f32(8), "bb")])
# A sparse 3x3 conv on 14x14 planes (padded rows of 16 floats): with AVX-512 the direct
# kernel reads every input vector aligned, one set of accumulators per kernel column.
save("phase_cnn",
     [h.make_node("Conv", ["x", "wp", "bp"], ["y"], pads=[1, 1, 1, 1])],
     [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 14, 14])],
     [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 14, 14])],
     [nh.from_array(sparse(4, 4, 3, 3, keep=0.3), "wp"), nh.from_array(f32(4), "bp")])
print("wrote", sorted(os.listdir(D)))
