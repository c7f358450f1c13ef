// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{sparsity=0.5})' 2>&1 | FileCheck %s --check-prefix=NOCALIB
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{pattern=4:2})' 2>&1 | FileCheck %s --check-prefix=NM
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{pattern=2:4 blocksize=6})' 2>&1 | FileCheck %s --check-prefix=BLOCK
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{pattern=0x1})' 2>&1 | FileCheck %s --check-prefix=ROWS
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{layers=fc1})' 2>&1 | FileCheck %s --check-prefix=LAYERS
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{layers=fc1:0.5 sparsity=0.5})' 2>&1 | FileCheck %s --check-prefix=BOTH
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-sparsegpt{layers=fc9:0.5})' 2>&1 | FileCheck %s --check-prefix=MISSING
// Second-order pruning needs layer input statistics; without them it says how to get them.
// NOCALIB: error: pass prune-sparsegpt: needs calibration data: give --calib DATA.npz
// NM: error: option prune-sparsegpt{pattern}: N:M needs 0 <= N <= M and M > 0, got 4:2
// BLOCK: error: option prune-sparsegpt{blocksize}: must be a multiple of M = 4
// Blocks of R output channels x 1 position (BSR) need R >= 1.
// ROWS: error: option prune-sparsegpt{pattern}: '0x1' needs a block of R >= 1 rows, e.g. 4x1
// Explicit per-layer sparsities (as `bonsai sensitivity --pass prune-sparsegpt` suggests).
// LAYERS: error: option prune-sparsegpt{layers}: 'fc1' is not LAYER:SPARSITY
// BOTH: error: option prune-sparsegpt{layers}: per-layer sparsities replace sparsity and granularity
// MISSING: error: option prune-sparsegpt{layers}: no layer or weight named 'fc9' (layers: fc1)
// (Numerics are checked by the unit tests in passes/src/obs.rs and end to end by
// tools/tests/it against onnxruntime on held-out data.)
func.func @f() -> tensor<2xf32> {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, 2.0]> : tensor<2xf32>
  return %a : tensor<2xf32>
}
