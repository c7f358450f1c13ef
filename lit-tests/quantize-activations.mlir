// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(quantize-activations)' 2>&1 | FileCheck %s --check-prefix=CALIB
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(quantize-activations{calibration=kl})' 2>&1 | FileCheck %s --check-prefix=METHOD
// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(quantize-activations{calibration=percentile percentile=20})' 2>&1 | FileCheck %s --check-prefix=PCT
// The ranges come from calibration data, so from bonsai-opt the pass can only explain what
// it needs; `bonsai compress --calib` runs it (tests: compress::int8_*).
// CALIB: error: pass quantize-activations: needs calibration data: give --calib DATA.npz
// METHOD: error: option quantize-activations{calibration}: 'kl' is not minmax, percentile or mse
// PCT: error: option quantize-activations{percentile}: must be in [50, 100], got 20
func.func @f() -> tensor<2xf32> {
  %a = arith.constant {bonsai.weight = "w1", bonsai.layer = "fc1", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[1.0, 2.0]> : tensor<2xf32>
  return %a : tensor<2xf32>
}
