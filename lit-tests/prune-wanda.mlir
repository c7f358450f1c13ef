// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-wanda{sparsity=0.5})' 2>&1 | FileCheck %s --check-prefix=NOCALIB
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(prune-wanda{correct_bias=maybe})' 2>&1 | FileCheck %s --check-prefix=FLAG
// NOCALIB: error: pass prune-wanda: needs calibration data: give --calib DATA.npz
// FLAG: error: option prune-wanda{correct_bias}: 'maybe' is not true or false
func.func @f() -> tensor<2xf32> {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, 2.0]> : tensor<2xf32>
  return %a : tensor<2xf32>
}
