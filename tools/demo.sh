#!/usr/bin/env bash
# The main job on a real model: set up, build, compress the suite's MNIST CNN (Deep
# Compression recipe, verified on held-out digits, report), compare with onnxruntime's own
# quantiser, compile to native code, run 1000 real digits against onnxruntime, benchmark;
# then prune it to 90% for speed (tools/recipes/ccexam-90-fast.toml) and benchmark its sparse
# native code against onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --release --workspace -q
BONSAI=target/release/bonsai
MODEL=testdata/models/mnist_cnn_ccexam.onnx
OUT=target/demo
mkdir -p "$OUT"
python3 tools/scripts/make_data.py mnist "$OUT/data"
echo "== bonsai compress $MODEL (tools/recipes/deep-compression.toml; calibrate on 256 digits, verify on 4744 others)"
$BONSAI compress "$MODEL" -o "$OUT/mnist_small.onnx" --recipe tools/recipes/deep-compression.toml \
    --calib "$OUT/data/calib.npz" --eval "$OUT/data/eval.npz" --report "$OUT/report.json"
echo "== onnxruntime.quantization.quantize_static on the same data, for comparison"
python3 tools/scripts/ort_quantize.py "$MODEL" "$OUT/data/calib.npz" "$OUT/data/eval.npz" 2>/dev/null
python3 tools/scripts/mnist_report.py inputs "$OUT" 1000
echo "== bonsai run $MODEL (1000 digits, batch 1000)"
$BONSAI run "$MODEL" --input "$OUT/mnist.npz" --output "$OUT/bonsai_out.npz" >/dev/null
python3 tools/scripts/mnist_report.py report "$MODEL" "$OUT"
echo "== bonsai bench (batch 1)"
$BONSAI bench "$MODEL" --shape input=1x1x28x28
echo "== bonsai bench (batch 64)"
$BONSAI bench "$MODEL" --shape input=64x1x28x28 --runs 20
echo "== bonsai compress $MODEL (tools/recipes/ccexam-90-fast.toml: 90% pruned for speed)"
$BONSAI compress "$MODEL" -o "$OUT/mnist_fast.onnx" --recipe tools/recipes/ccexam-90-fast.toml \
    --calib "$OUT/data/calib.npz" --eval "$OUT/data/eval.npz" | tail -3
echo "== bonsai bench, 90% pruned, sparse kernels (batch 1, then 64)"
$BONSAI bench "$OUT/mnist_fast.onnx" --shape input=1x1x28x28 --sparse-min 0 --runs 200
$BONSAI bench "$OUT/mnist_fast.onnx" --shape input=64x1x28x28 --sparse-min 0 --runs 50
