// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(prune-nm{n=2 m=4})' | FileCheck %s
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(prune-nm{n=3 m=2})' 2>&1 | FileCheck %s --check-prefix=NM

// Two output rows of 8 (out_dim 0): each group of 4 keeps its 2 largest |w|.
// CHECK-LABEL: func.func @rows
// CHECK: dense<{{\[\[}}0.000000e+00, -4.000000e+00, 0.000000e+00, 3.000000e+00, 5.000000e+00, 0.000000e+00, 0.000000e+00, 8.000000e+00], [0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00, 0.000000e+00, 0.000000e+00, 7.000000e+00, 8.000000e+00]]>
// NM: error: option prune-nm{n}: n = 3 exceeds m = 2
func.func @rows() -> tensor<2x8xf32> {
  %a = arith.constant {bonsai.weight = "w", bonsai.layer = "fc", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[[1.0, -4.0, 2.0, 3.0, 5.0, 1.0, -1.0, 8.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]> : tensor<2x8xf32>
  return %a : tensor<2x8xf32>
}

// -----

// Stored transposed ([K, N], out_dim 1): groups run down the columns.
// CHECK-LABEL: func.func @transposed
// CHECK: dense<{{\[\[}}0.000000e+00], [0.000000e+00], [3.000000e+00], [4.000000e+00]]>
func.func @transposed() -> tensor<4x1xf32> {
  %a = arith.constant {bonsai.weight = "w", bonsai.layer = "fc", bonsai.kind = "gemm", bonsai.out_dim = 1 : i64, bonsai.transposed = true} dense<[[1.0], [2.0], [3.0], [4.0]]> : tensor<4x1xf32>
  return %a : tensor<4x1xf32>
}
