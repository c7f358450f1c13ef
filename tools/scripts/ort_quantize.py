"""The baseline bonsai compares against: onnxruntime.quantization.quantize_static (per-channel
QDQ, int8 weights and activations) on the same model and data.

    python3 tools/scripts/ort_quantize.py MODEL.onnx CALIB.npz EVAL.npz [--out q.onnx] [--json]

Calibrates on CALIB (MinMax), evaluates on EVAL (never the calibration samples) and prints
the file sizes and fidelity (top-1 agreement with the fp32 model, accuracy when EVAL has
'labels'), measured the same way `bonsai compress` reports them.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process


class Reader(CalibrationDataReader):
    def __init__(self, data, names):
        n = len(data[names[0]])
        self.it = iter([{k: data[k][i : i + 1] for k in names} for i in range(n)])

    def get_next(self):
        return next(self.it, None)


def run(path, data, names, batch=64):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so)
    n = len(data[names[0]])
    outs = []
    for i in range(0, n, batch):
        outs.append(s.run(None, {k: data[k][i : i + batch] for k in names})[0])
    return np.concatenate(outs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("eval")
    ap.add_argument("--out")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cal, ev = np.load(a.calib), np.load(a.eval)
    names = [i.name for i in onnx.load(a.model).graph.input if i.name in cal.files]
    tmp = tempfile.mkdtemp()
    src = a.model
    m = onnx.load(a.model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        # Per-channel QDQ needs DequantizeLinear's axis (opset 13): quantize_static writes it
        # anyway and the result does not load, so upgrade the model first.
        from onnx import version_converter
        src = os.path.join(tmp, "opset13.onnx")
        onnx.save(version_converter.convert_version(m, 13), src)
        print(f"note: {os.path.basename(a.model)} upgraded from opset {opset} to 13 for per-channel QDQ", file=sys.stderr)
    pre = os.path.join(tmp, "pre.onnx")
    try:
        quant_pre_process(src, pre, skip_symbolic_shape=True)
    except Exception as e:  # pre-processing is an optimisation; fall back to the model
        print(f"note: quant_pre_process failed ({e}); quantising the model as is", file=sys.stderr)
        pre = src
    out = a.out or os.path.join(tmp, "q.onnx")
    quantize_static(
        pre,
        out,
        Reader(cal, names),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    y0, y1 = run(a.model, ev, names), run(out, ev, names)
    r = {
        "model": a.model,
        "model_bytes": os.path.getsize(a.model),
        "output_bytes": os.path.getsize(out),
        "file_ratio": os.path.getsize(a.model) / os.path.getsize(out),
        "samples": len(y0),
        "top1_agreement": float((y0.argmax(-1) == y1.argmax(-1)).mean()),
    }
    if "labels" in ev.files:
        r["accuracy_original"] = float((y0.argmax(-1) == ev["labels"]).mean())
        r["accuracy_compressed"] = float((y1.argmax(-1) == ev["labels"]).mean())
    if a.json:
        print(json.dumps(r))
    else:
        line = f"{os.path.basename(a.model)}: ort quantize_static {r['model_bytes']} -> {r['output_bytes']} B ({r['file_ratio']:.2f}x), agreement {r['top1_agreement']:.4f}"
        if "labels" in ev.files:
            line += f", accuracy {r['accuracy_original']:.4f} -> {r['accuracy_compressed']:.4f}"
        print(line)


if __name__ == "__main__":
    main()
