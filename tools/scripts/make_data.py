#!/usr/bin/env python3
"""Calibration / held-out data for the suite's vision models, rendered here (no downloads).

    make_data.py ppocr OUT_DIR [N [SEED]]   text lines (N, 3, 48, 192), half upside down, labels 0/1
    make_data.py rapid OUT_DIR [N [SEED]]   text pages (N, 3, 224, 224) rotated by label*90 clockwise
    make_data.py mnist OUT_DIR              mnist_5k: 256 spread over the file -> calib.npz, other 4744 -> eval.npz

Writes OUT_DIR/calib.npz (first quarter) and OUT_DIR/eval.npz (the rest, with labels). A SEED
other than the default (ppocr 1, rapid 2) draws different texts: a validation set for choosing
options, so that the default held-out set is only used to report.
"""
import gzip, os, sys
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ("the quick brown fox jumps over a lazy dog while bonsai prunes connections shares "
         "weights quantises layers and compiles models to native code for cpu and gpu").split()


def sentence(rng, n):
    return " ".join(rng.choice(WORDS, n))


def ppocr(n, seed=1):
    """Text-line crops prepared as PaddleOCR's classifier expects: the line cropped tightly,
    resized to height 48 keeping its aspect ratio (width <= 192), normalised to [-1, 1], padded
    on the right with zeros. (Lines drawn small on a full white canvas are off-distribution:
    the model scored 0.825 on those, 0.98 on these.)"""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        text = sentence(rng, int(rng.integers(2, 5)))
        font = ImageFont.load_default(size=32)
        l, t, r, b = font.getbbox(text)
        im = Image.new("RGB", (r - l + 8, b - t + 8), "white")
        ImageDraw.Draw(im).text((4 - l, 4 - t), text, fill="black", font=font)
        label = i % 2
        if label:
            im = im.rotate(180)
        w = min(192, int(np.ceil(48 * im.width / im.height)))
        a = np.asarray(im.resize((w, 48), Image.BILINEAR), dtype=np.float32) / 255.0
        x = np.zeros((3, 48, 192), np.float32)
        x[:, :, :w] = ((a - 0.5) / 0.5).transpose(2, 0, 1)
        xs.append(x)
        ys.append(label)
    return {"x": np.stack(xs).astype(np.float32)}, np.array(ys, np.int64)


def rapid(n, seed=2):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for i in range(n):
        im = Image.new("RGB", (256, 256), "white")
        d = ImageDraw.Draw(im)
        font = ImageFont.load_default(size=14)
        for line in range(14):
            d.text((8, 8 + line * 17), sentence(rng, 5), fill="black", font=font)
        label = i % 4
        im = im.rotate(-90 * label)
        im = im.crop((16, 16, 240, 240))
        a = (np.asarray(im, dtype=np.float32) / 255.0 - mean) / std
        xs.append(a.transpose(2, 0, 1))
        ys.append(label)
    return {"x": np.stack(xs).astype(np.float32)}, np.array(ys, np.int64)


def mnist():
    rows = np.loadtxt(gzip.open(os.path.join(ROOT, "testdata/data/mnist_5k.csv.gz")), delimiter=",")
    x = ((rows[:, :784].reshape(-1, 1, 28, 28) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
    return {"input": x}, rows[:, 784].astype(np.int64)


def main():
    kind, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    if kind == "mnist":
        x, y = mnist()
        # mnist_5k is sorted by label (500 zeros, then 500 ones, ...): its first 256 images are
        # all zeros. Calibrate on 256 images spread evenly over the file (25-26 per class).
        calib = np.linspace(0, len(y) - 1, 256).round().astype(int)
        rest = np.setdiff1d(np.arange(len(y)), calib)
        np.savez(os.path.join(out, "calib.npz"), **{k: v[calib] for k, v in x.items()})
        np.savez(os.path.join(out, "eval.npz"), labels=y[rest], **{k: v[rest] for k, v in x.items()})
        print(f"mnist: 256 calibration (every class), {len(rest)} held-out samples in {out}")
        return
    else:
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
        seed = [int(sys.argv[4])] if len(sys.argv) > 4 else []
        x, y = (ppocr if kind == "ppocr" else rapid)(n, *seed)
        cut = n // 4
    np.savez(os.path.join(out, "calib.npz"), **{k: v[:cut] for k, v in x.items()})
    np.savez(os.path.join(out, "eval.npz"), labels=y[cut:], **{k: v[cut:] for k, v in x.items()})
    print(f"{kind}: {cut} calibration, {len(y) - cut} held-out samples in {out}")


if __name__ == "__main__":
    main()
