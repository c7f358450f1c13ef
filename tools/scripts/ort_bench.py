"""Median single-thread onnxruntime latency of MODEL on the arrays of INPUTS.npz (JSON out)."""
import json, sys, time
import numpy as np
import onnxruntime as ort

model, npz, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
feed = dict(np.load(npz))
for _ in range(3):
    s.run(None, feed)
ts = []
for _ in range(runs):
    t0 = time.perf_counter()
    s.run(None, feed)
    ts.append((time.perf_counter() - t0) * 1e6)
print(json.dumps({"median_us": float(np.median(ts))}))
