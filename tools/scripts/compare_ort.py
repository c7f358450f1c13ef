#!/usr/bin/env python3
"""Compare bonsai's outputs with onnxruntime's on the same inputs (JSON per output).

    compare_ort.py MODEL INPUTS.npz OURS.npz

Tolerance: |ours - ort| <= 1e-5 + 1e-4 |ort|. Where that fails, the model may be
ill-conditioned enough that onnxruntime's own fp32 rounding exceeds it: then an fp64 copy
of the model (tools/scripts/to_f64.py) run by onnxruntime is the reference, and bonsai passes
only if it is within tolerance of it and no further from it than onnxruntime fp32 is.
"""
import json, os, subprocess, sys, tempfile
import numpy as np
import onnxruntime as ort

ATOL, RTOL = 1e-5, 1e-4


def run(model, feed):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return {o.name: r for o, r in zip(s.get_outputs(), s.run(None, feed))}


def main():
    model, inputs, ours = sys.argv[1:4]
    feed = dict(np.load(inputs))
    ours = np.load(ours)
    ref = run(model, feed)
    f64 = None
    res = []
    for name, r in ref.items():
        a = ours[name]
        assert a.shape == r.shape, (name, a.shape, r.shape)
        err = np.abs(a.astype(np.float64) - r.astype(np.float64))
        ok = bool(np.all(err <= ATOL + RTOL * np.abs(r)))
        row = {"output": name, "max_err_vs_ort": float(err.max()) if err.size else 0.0, "ok": ok}
        if not ok and r.dtype == np.float32:
            if f64 is None:
                with tempfile.TemporaryDirectory() as d:
                    m64 = os.path.join(d, "m64.onnx")
                    subprocess.check_call([sys.executable, os.path.join(os.path.dirname(__file__), "to_f64.py"), model, m64])
                    feed64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feed.items()}
                    f64 = run(m64, feed64)
            x = f64[name]
            e_ours = np.abs(a.astype(np.float64) - x)
            e_ort = np.abs(r.astype(np.float64) - x)
            row["max_err_vs_fp64"] = float(e_ours.max())
            row["ort_max_err_vs_fp64"] = float(e_ort.max())
            row["ok"] = bool(np.all(e_ours <= ATOL + RTOL * np.abs(x)) and e_ours.max() <= e_ort.max())
            row["reference"] = "onnxruntime fp64"
        res.append(row)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
