"""Independent checks of a model written by `bonsai compress` (used by the integration tests).

    python3 check_compressed.py ORIG.onnx COMP.onnx EVAL.npz REPORT.json [--expect KEY=VALUE ...]

* The compressed model runs in onnxruntime; the report's accuracy and top-1 agreement equal
  what numpy measures on onnxruntime's outputs of the original and compressed models.
* Every layer weight is decoded *by onnxruntime* (the weight's tensor is made a graph output),
  and its sparsity matches the report.
* Expectations: `max_centroids=16` (distinct non-zero values per layer), `int_grid=8` (each
  row, or each `group=G` weights of a row, or with `grid=tensor` the whole tensor, lies on a
  uniform grid of at most 2^8 steps), `min_file_ratio=8`, `min_agreement=0.95`,
  `op=DequantizeLinear` (the file uses that op), `max_accuracy_drop=0.005` (labels needed),
  `min_entropy_ratio=40` (dense f32 bytes over this script's own Huffman sizes, tables
  included; needs `max_centroids`).
* The entropy-coded size the report gives is checked against a Huffman code computed here:
  payload bits / 8 <= reported <= payload / 8 + tables and codebooks.
"""

import heapq
import json
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort


def decoded_weights(path, names):
    m = onnx.load(path)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    out = {n: inits[n] for n in names if n in inits}
    rest = [n for n in names if n not in out]
    if rest:
        for n in rest:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(m.SerializeToString(), so)
        feeds = {}
        for i in s.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            dt = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}[i.type]
            feeds[i.name] = np.zeros(shape, dt)
        vals = s.run(rest, feeds)
        out.update(zip(rest, vals))
    return out


def huffman_bits(symbols):
    freq = Counter(symbols)
    if len(freq) <= 1:
        return sum(freq.values())
    h = list(freq.values())
    heapq.heapify(h)
    bits = 0
    while len(h) > 1:
        a, b = heapq.heappop(h), heapq.heappop(h)
        bits += a + b
        heapq.heappush(h, a + b)
    return bits


def payload_bits(w):
    """Smallest Huffman payload: dense symbols, or non-zero symbols plus byte-sized gaps."""
    flat = w.reshape(-1)
    uniq = {v: i + 1 for i, v in enumerate(np.unique(flat[flat != 0]))}
    syms = [0 if v == 0 else uniq[v] for v in flat]
    dense = huffman_bits(syms)
    gaps, vals, prev = [], [], 0
    for i in np.flatnonzero(flat):
        d = int(i) - prev
        while d > 255:
            gaps.append(255)
            vals.append(0)
            d -= 255
        gaps.append(d)
        vals.append(syms[i])
        prev = int(i)
    sparse = huffman_bits(gaps) + huffman_bits(vals)
    return min(dense, sparse), len(uniq)


def main():
    orig, comp, ev, rep = sys.argv[1:5]
    expect = dict(a.split("=", 1) for a in sys.argv[6:]) if len(sys.argv) > 5 else {}
    r = json.load(open(rep))
    d = np.load(ev)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so_o = ort.InferenceSession(orig, so)
    name = so_o.get_inputs()[0].name
    yo = so_o.run(None, {name: d[name]})[0]
    yc = ort.InferenceSession(comp, so).run(None, {name: d[name]})[0]
    f = r["fidelity"]
    agree = float((yc.argmax(1) == yo.argmax(1)).mean())
    assert abs(f["top1_agreement"] - agree) < 1e-9, (f, agree)
    if "labels" in d:
        acc = float((yc.argmax(1) == d["labels"]).mean())
        assert abs(f["accuracy_compressed"] - acc) < 1e-9, (f, acc)
        acc_orig = float((yo.argmax(1) == d["labels"]).mean())
        if "max_accuracy_drop" in expect:
            assert acc_orig - acc <= float(expect["max_accuracy_drop"]), (acc_orig, acc)
    assert agree >= float(expect.get("min_agreement", 0.95)), agree
    w = decoded_weights(comp, [l["weight"] for l in r["layers"]])
    dense_bytes, coded_bytes = 0, 0.0
    for l in r["layers"]:
        a = w[l["weight"]]
        if l.get("channels_removed", 0) > 0:
            # Structured pruning: the output channels are gone from the tensor itself.
            assert a.shape[0] == l["shape"][0] - l["channels_removed"], (l["weight"], a.shape)
        if list(a.shape) != l["shape"]:
            # Shrunk by structured pruning (its own channels or its inputs'): smaller, not sparser.
            assert "shrunk" in expect and a.size < l["params"], (l["weight"], a.shape, l["shape"])
            continue
        sp = float((a == 0).mean())
        assert abs(sp - l["sparsity"]) < 1e-9, (l["weight"], sp, l["sparsity"])
        payload, distinct = payload_bits(a)
        dense_bytes += 4 * a.size
        if l["encoding"] == "f32":
            coded_bytes += 4 * a.size
            continue  # left alone (excluded)
        if "max_centroids" in expect:
            assert distinct <= int(expect["max_centroids"]), (l["weight"], distinct)
            tables = (256 + distinct + 1) + 4 * distinct + 1
            assert payload / 8 <= l["bytes_entropy"] <= payload / 8 + tables, (l, payload / 8)
            coded_bytes += payload / 8 + tables
        if "int_grid" in expect:
            # Per output channel, the values are integer multiples of one step.
            rows = a.reshape(a.shape[0], -1) if a.ndim != 2 or l["kind"] != "matmul" else a.T
            if expect.get("grid") == "tensor":  # one scale for the whole tensor
                rows = a.reshape(1, -1)
            if "group" in expect:  # one scale per `group` consecutive weights of a row
                gs = int(expect["group"])
                rows = rows.reshape(-1, gs)
            for row in rows:
                nz = row[row != 0]
                if nz.size == 0:
                    continue
                # Some step s = max|w| / m, m < 2^bits, makes every value an integer multiple.
                levels = 2 ** int(expect["int_grid"])
                top = np.abs(nz).max().astype(np.float64)
                ok = False
                for m in range(1, levels):
                    k = nz / (top / m)
                    if np.allclose(k, np.round(k), atol=1e-3):
                        k = np.round(k)
                        ok = k.max() - min(k.min(), 0) < levels
                        break
                assert ok, (l["weight"], row)
    ratio = r["model_bytes"] / r["output_bytes"]
    assert abs(ratio - r["file_ratio"]) < 1e-9
    import os

    assert os.path.getsize(comp) == r["output_bytes"]
    assert os.path.getsize(orig) == r["model_bytes"]
    if "min_file_ratio" in expect:
        assert ratio >= float(expect["min_file_ratio"]), ratio
    if "min_entropy_ratio" in expect:
        assert "max_centroids" in expect, "min_entropy_ratio needs max_centroids"
        assert r["ratio_entropy"] >= float(expect["min_entropy_ratio"]), r["ratio_entropy"]
        own = dense_bytes / coded_bytes
        assert own >= float(expect["min_entropy_ratio"]), ("own Huffman sizes", own)
    if "op" in expect:
        ops = {n.op_type for n in onnx.load(comp).graph.node}
        assert expect["op"] in ops, ops
    own = f", own Huffman {dense_bytes / coded_bytes:.2f}" if coded_bytes else ""
    print("ok agreement", agree, "file ratio", round(ratio, 2), "entropy ratio", round(r["ratio_entropy"], 2), own)


if __name__ == "__main__":
    main()
