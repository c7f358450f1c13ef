#!/usr/bin/env python3
"""Rewrite an fp32 ONNX model to fp64 (initializers, Constants, Casts, value types): an
independent high-precision reference for ill-conditioned models.  to_f64.py IN OUT"""
import sys
import numpy as np
import onnx
from onnx import numpy_helper as nh, TensorProto as T

m = onnx.load(sys.argv[1])
g = m.graph
def conv(t):
    if t.data_type == T.FLOAT:
        t.CopyFrom(nh.from_array(nh.to_array(t).astype(np.float64), t.name))
for t in g.initializer:
    conv(t)
for n in g.node:
    for a in n.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            conv(a.t)
        if n.op_type == "Cast" and a.name == "to" and a.i == T.FLOAT:
            a.i = T.DOUBLE
# onnxruntime has no fp64 Conv or max pooling: run them in fp32 between casts (its error is not where
# ill-conditioned models lose precision: that is in their reductions).
nodes = []
for n in g.node:
    if n.op_type in ("Conv", "GlobalMaxPool", "MaxPool"):
        ins = []
        for i, x in enumerate(n.input):
            if x:
                nodes.append(onnx.helper.make_node("Cast", [x], [x + "__f32"], to=T.FLOAT))
                ins.append(x + "__f32")
            else:
                ins.append(x)
        out = n.output[0]
        del n.input[:]
        n.input.extend(ins)
        n.output[0] = out + "__f32"
        nodes.append(n)
        nodes.append(onnx.helper.make_node("Cast", [out + "__f32"], [out], to=T.DOUBLE))
    else:
        nodes.append(n)
del g.node[:]
g.node.extend(nodes)
for v in list(g.input) + list(g.output) + list(g.value_info):
    if v.type.tensor_type.elem_type == T.FLOAT:
        v.type.tensor_type.elem_type = T.DOUBLE
onnx.save(m, sys.argv[2])
