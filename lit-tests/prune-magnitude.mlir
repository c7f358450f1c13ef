// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(prune-magnitude{sparsity=0.5})' | FileCheck %s
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(prune-magnitude{sparsity=0.5 granularity=global})' | FileCheck %s --check-prefix=GLOBAL
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(prune-magnitude{threshold=2.5})' | FileCheck %s --check-prefix=ABS

// Per layer, half of each weight goes: the two smallest |w| of each.
// CHECK-LABEL: func.func @two_layers
// CHECK: arith.constant {{{.*}}bonsai.sparsity = 5.000000e-01 : f64{{.*}}} dense<[0.000000e+00, -4.000000e+00, 0.000000e+00, 3.000000e+00]>
// CHECK: arith.constant {{{.*}}bonsai.sparsity = 5.000000e-01 : f64{{.*}}} dense<[0.000000e+00, 4.000000e+01, 0.000000e+00, -3.000000e+01]>
// Globally, the four smallest of all eight go: the whole first layer.
// GLOBAL-LABEL: func.func @two_layers
// GLOBAL: dense<0.000000e+00> : tensor<4xf32>
// GLOBAL: dense<[1.000000e+01, 4.000000e+01, 2.000000e+01, -3.000000e+01]>
// ABS-LABEL: func.func @two_layers
// ABS: dense<[0.000000e+00, -4.000000e+00, 0.000000e+00, 3.000000e+00]>
// ABS: dense<[1.000000e+01, 4.000000e+01, 2.000000e+01, -3.000000e+01]>
func.func @two_layers() -> (tensor<4xf32>, tensor<4xf32>) {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, -4.0, 2.0, 3.0]> : tensor<4xf32>
  %b = arith.constant {bonsai.weight = "w2", bonsai.layer = "fc2", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[10.0, 40.0, 20.0, -30.0]> : tensor<4xf32>
  return %a, %b : tensor<4xf32>, tensor<4xf32>
}

// -----

// Constants without a bonsai.weight tag (biases, shapes) are never touched.
// CHECK-LABEL: func.func @untagged
// CHECK: dense<[1.000000e+00, 2.000000e+00]>
func.func @untagged() -> tensor<2xf32> {
  %a = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
  return %a : tensor<2xf32>
}

