#!/usr/bin/env python3
"""Inputs and onnxruntime's outputs for one model of the GPU check (tools/gpu-check.sh).

    gpu_check_inputs.py MODEL OUT_DIR

writes OUT_DIR/input.npz and OUT_DIR/ort.npz, and prints the model's input shapes as
`--shape` arguments (NAME=DxD..., one per line). Suite models get their real inputs
(tools/scripts/model_inputs.py); other models random normal inputs (symbolic dims bound to 1).
"""
import os, sys
import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_inputs  # noqa: E402


def main():
    model, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    name = os.path.splitext(os.path.basename(model))[0]
    try:
        feed = model_inputs.inputs(name)
    except SystemExit:
        rng = np.random.default_rng(0)
        g = onnx.load(model).graph
        init = {i.name for i in g.initializer}
        feed = {}
        for i in g.input:
            if i.name in init:
                continue
            dims = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
            feed[i.name] = rng.standard_normal(dims).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    res = s.run(None, feed)
    np.savez(os.path.join(out, "input.npz"), **feed)
    np.savez(os.path.join(out, "ort.npz"), **{o.name: r for o, r in zip(s.get_outputs(), res)})
    for k, v in feed.items():
        print(f"{k}={'x'.join(str(d) for d in v.shape)}")


if __name__ == "__main__":
    main()
