// RUN: bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{layers=fc2:0.75})' | FileCheck %s --check-prefix=LAYERS
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{layers=fc3:0.5})' 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: error: option prune-magnitude{layers}: no layer or weight named 'fc3' (layers: fc1, fc2)
// Explicit per-layer sparsities: fc2 loses 3 of 4, fc1 is untouched.
// LAYERS-LABEL: func.func @per_layer
// LAYERS: dense<[1.000000e+00, 2.000000e+00]>
// LAYERS: dense<[0.000000e+00, 4.000000e+01, 0.000000e+00, 0.000000e+00]>
func.func @per_layer() -> (tensor<2xf32>, tensor<4xf32>) {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, 2.0]> : tensor<2xf32>
  %b = arith.constant {bonsai.weight = "w2", bonsai.layer = "fc2", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[10.0, 40.0, 20.0, -30.0]> : tensor<4xf32>
  return %a, %b : tensor<2xf32>, tensor<4xf32>
}
