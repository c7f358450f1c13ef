// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(refit)' 2>&1 | FileCheck %s --check-prefix=NOREF
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(refit{damp=0})' 2>&1 | FileCheck %s --check-prefix=DAMP
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(refit{bias=maybe})' 2>&1 | FileCheck %s --check-prefix=BIAS
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(refit{exclude=fc9})' 2>&1 | FileCheck %s --check-prefix=EXCLUDE
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(refit{reassign=maybe})' 2>&1 | FileCheck %s --check-prefix=REASSIGN
// Sequential reconstruction runs the original model on calibration data layer by layer, so it
// runs from `bonsai compress`; on its own it says so.
// NOREF: error: pass refit: needs the original model and calibration data: run it from `bonsai compress MODEL --calib DATA.npz`
// DAMP: error: option refit{damp}: must be in (0, 1], got 0
// BIAS: error: option refit{bias}: 'maybe' is not true or false
// EXCLUDE: error: option refit{exclude}: no layer or weight named 'fc9' (layers: fc1)
// REASSIGN: error: option refit{reassign}: 'maybe' is not true or false
// (Numerics are checked end to end by tools/tests/it against onnxruntime on held-out data.)
func.func @f() -> tensor<2xf32> {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, 2.0]> : tensor<2xf32>
  return %a : tensor<2xf32>
}
