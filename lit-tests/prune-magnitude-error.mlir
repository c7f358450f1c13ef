// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{sparsity=1.5})' 2>&1 | FileCheck %s --check-prefix=RANGE
// RANGE: error: option prune-magnitude{sparsity}: must be in [0, 1), got 1.5
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{granularity=row})' 2>&1 | FileCheck %s --check-prefix=GRAN
// GRAN: error: option prune-magnitude{granularity}: 'row' is not one of layer, global
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{sparsity=0.5 threshold=1})' 2>&1 | FileCheck %s --check-prefix=BOTH
// BOTH: error: option prune-magnitude{threshold}: give one of sparsity, threshold, relative
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{ratio=0.5})' 2>&1 | FileCheck %s --check-prefix=KEY
// KEY: error: option prune-magnitude{ratio}: unknown option (valid: sparsity, threshold, relative, granularity, exclude, layers)
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-magnitude{exclude=nope})' 2>&1 | FileCheck %s --check-prefix=EXCL
// EXCL: error: option prune-magnitude{exclude}: no layer or weight named 'nope' (layers: fc1)
func.func @f() -> tensor<2xf32> {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, 2.0]> : tensor<2xf32>
  return %a : tensor<2xf32>
}
