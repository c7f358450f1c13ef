// RUN: bonsai-opt %s --pass-pipeline='builtin.module(prune-block{block=1x2 sparsity=0.5})' | FileCheck %s
// RUN: bonsai-opt %s --pass-pipeline='builtin.module(prune-block{block=2x2 sparsity=0.5})' | FileCheck %s --check-prefix=SQ
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-block{block=3x2})' 2>&1 | FileCheck %s --check-prefix=DIV
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-block{block=2by2})' 2>&1 | FileCheck %s --check-prefix=SPEC

// [2, 4] weight; 1x2 blocks by L2 norm: (1,-1) 1.41, (3,4) 5, (0.5,0.5) 0.71, (6,0) 6.
// The two smallest blocks go.
// CHECK-LABEL: func.func @blocks
// CHECK: dense<{{\[\[}}0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00], [0.000000e+00, 0.000000e+00, 6.000000e+00, 0.000000e+00]]>
// 2x2 blocks: left 1.58, right 8.54: the left one goes.
// SQ: dense<{{\[\[}}0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00], [0.000000e+00, 0.000000e+00, 6.000000e+00, 0.000000e+00]]>
// DIV: error: option prune-block{block}: 3x2 does not divide layer 'fc' viewed as [2, 4] (exclude=fc to skip it)
// SPEC: error: option prune-block{block}: '2by2' is not RxC with positive R, C (e.g. 1x4, 4x4)
func.func @blocks() -> tensor<2x4xf32> {
  %a = arith.constant {bonsai.weight = "w", bonsai.layer = "fc", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[[1.0, -1.0, 3.0, 4.0], [0.5, 0.5, 6.0, 0.0]]> : tensor<2x4xf32>
  return %a : tensor<2x4xf32>
}
