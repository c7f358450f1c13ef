// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{bits=1})' | FileCheck %s
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{bits=1 scope=channel init=linear})' | FileCheck %s --check-prefix=CHAN
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{bits=9})' 2>&1 | FileCheck %s --check-prefix=BITS
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{refine=true})' 2>&1 | FileCheck %s --check-prefix=CALIB
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{assign=obs})' 2>&1 | FileCheck %s --check-prefix=CALIB
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{assign=best})' 2>&1 | FileCheck %s --check-prefix=ASSIGN
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{damp=0.1})' 2>&1 | FileCheck %s --check-prefix=DAMP
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{assign=obs damp=0})' 2>&1 | FileCheck %s --check-prefix=DAMP0
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{granularity=sensitivity})' 2>&1 | FileCheck %s --check-prefix=CALIB
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{granularity=global})' 2>&1 | FileCheck %s --check-prefix=GRAN
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{bits=1 only=fc})' | FileCheck %s
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{bits=1 exclude=fc})' | FileCheck %s --check-prefix=NONE
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{only=fc2})' 2>&1 | FileCheck %s --check-prefix=ONLY
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(share-kmeans{only=fc exclude=fc})' 2>&1 | FileCheck %s --check-prefix=BOTH

// One 1-bit codebook for the layer: the non-zeros split into {-7} and the rest (mean 0.928);
// the pruned zeros stay zeros and take no centroid.
// CHECK-LABEL: func.func @rows
// CHECK: bonsai.bits = 1 : i64, bonsai.centroids = dense<{{\[\[}}-7.000000e+00, 0.928000032]]> : tensor<1x2xf32>, bonsai.encoding = "codebook"
// CHECK-SAME: dense<{{\[\[}}0.928000032, -7.000000e+00, 0.000000e+00, 0.928000032], [0.928000032, 0.928000032, 0.000000e+00, 0.928000032]]>

// One codebook per output channel.
// CHAN: bonsai.centroids = dense<{{\[\[}}-7.000000e+00, 1.80000007], [-1.800000e-01, 1.400000e+00]]> : tensor<2x2xf32>
// CHAN-SAME: dense<{{\[\[}}1.80000007, -7.000000e+00, 0.000000e+00, 1.80000007], [-1.800000e-01, 1.400000e+00, 0.000000e+00, -1.800000e-01]]>
// BITS: error: option share-kmeans{bits}: must be 1..=8, got 9
// CALIB: error: pass share-kmeans: needs calibration data
// ASSIGN: error: option share-kmeans{assign}: 'best' is not nearest or obs
// DAMP: error: option share-kmeans{damp}: only applies with assign=obs
// DAMP0: error: option share-kmeans{damp}: must be > 0, got 0
// NONE-NOT: bonsai.encoding
// ONLY: error: option share-kmeans{only}: no layer or weight named 'fc2' (layers: fc)
// BOTH: error: option share-kmeans{only}: give `only` or `exclude`, not both
// GRAN: error: option share-kmeans{granularity}: 'global' is not layer or sensitivity
func.func @rows() -> tensor<2x4xf32> {
  %a = arith.constant {bonsai.weight = "w", bonsai.layer = "fc", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[[1.2, -7.0, 0.0, 2.4], [0.19, 1.4, 0.0, -0.55]]> : tensor<2x4xf32>
  return %a : tensor<2x4xf32>
}
