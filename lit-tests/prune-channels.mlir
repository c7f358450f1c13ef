// RUN: bonsai-opt %s --pass-pipeline='builtin.module(prune-channels{sparsity=0.5 criterion=l1})' | FileCheck %s
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-channels{criterion=taylor})' 2>&1 | FileCheck %s --check-prefix=CRIT
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-channels{criterion=act-variance})' 2>&1 | FileCheck %s --check-prefix=CALIB

// Rows (filters) by L1 norm: 2, 10, 0.3, 3 -> the two smallest (rows 0 and 2) go: zeroed
// here, listed in bonsai.pruned_channels for the ONNX writer, which deletes them and the
// consumers' matching inputs. A layer lowering did not mark prunable is left alone.
// CHECK-LABEL: func.func @f
// CHECK: bonsai.pruned_channels = dense<[0, 2]> : tensor<2xi64>
// CHECK-SAME: dense<{{\[\[}}0.000000e+00, 0.000000e+00], [5.000000e+00, 5.000000e+00], [0.000000e+00, 0.000000e+00], [3.000000e+00, 0.000000e+00]]>
// CHECK: bonsai.weight = "w2"
// CHECK-NOT: pruned_channels
// CHECK-SAME: dense<1.000000e+00> : tensor<1x2xf32>
// CRIT: error: option prune-channels{criterion}: 'taylor' is not l1, l2 or act-variance
// CALIB: error: pass prune-channels: needs calibration data
func.func @f() -> (tensor<4x2xf32>, tensor<1x2xf32>) {
  %a = arith.constant {bonsai.weight = "w", bonsai.layer = "fc", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false, bonsai.channels_prunable} dense<[[1.0, 1.0], [5.0, 5.0], [0.1, 0.2], [3.0, 0.0]]> : tensor<4x2xf32>
  %b = arith.constant {bonsai.weight = "w2", bonsai.layer = "fc2", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[[1.0, 1.0]]> : tensor<1x2xf32>
  return %a, %b : tensor<4x2xf32>, tensor<1x2xf32>
}
