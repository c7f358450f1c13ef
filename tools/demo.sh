#!/usr/bin/env bash
# The main job on a real model: set up, build, compile the suite's MNIST CNN to native code,
# run it on 1000 real digits, report accuracy against onnxruntime, then benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --release --workspace -q
BONSAI=target/release/bonsai
MODEL=testdata/models/mnist_cnn_ccexam.onnx
OUT=target/demo
mkdir -p "$OUT"
python3 tools/scripts/mnist_report.py inputs "$OUT" 1000
echo "== bonsai run $MODEL (1000 digits, batch 1000)"
$BONSAI run "$MODEL" --input "$OUT/mnist.npz" --output "$OUT/bonsai_out.npz" >/dev/null
python3 tools/scripts/mnist_report.py report "$MODEL" "$OUT"
echo "== bonsai bench (batch 1)"
$BONSAI bench "$MODEL" --shape input=1x1x28x28
echo "== bonsai bench (batch 64)"
$BONSAI bench "$MODEL" --shape input=64x1x28x28 --runs 20
