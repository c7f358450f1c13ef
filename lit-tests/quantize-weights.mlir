// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{bits=4 scheme=sym granularity=channel search=false})' | FileCheck %s
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{bits=2 scheme=asym granularity=tensor search=false})' | FileCheck %s --check-prefix=ASYM
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{bits=16})' 2>&1 | FileCheck %s --check-prefix=BITS
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{granularity=group:3})' 2>&1 | FileCheck %s --check-prefix=GROUP
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{assign=obs})' 2>&1 | FileCheck %s --check-prefix=CALIB
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{damp=0.1})' 2>&1 | FileCheck %s --check-prefix=DAMP
// RUN: not bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{assign=gptq})' 2>&1 | FileCheck %s --check-prefix=ASSIGN
// RUN: bonsai-opt %s --split-input-file --pass-pipeline='builtin.module(quantize-weights{bits=4 search=false only=fc})' | FileCheck %s

// Per channel, 4-bit symmetric: row 0 has max |w| 7 -> scale 1; row 1 max 1.4 -> scale 0.2.
// CHECK-LABEL: func.func @rows
// CHECK: bonsai.bits = 4 : i64, bonsai.encoding = "quant", bonsai.group = 0 : i64
// CHECK-SAME: bonsai.scales = dense<[1.000000e+00, 2.000000e-01]> : tensor<2xf32>
// CHECK-SAME: bonsai.signed = true
// CHECK-SAME: bonsai.zero_points = dense<0> : tensor<2xi32>
// CHECK-SAME: dense<{{\[\[}}1.000000e+00, -7.000000e+00, 0.000000e+00, 2.000000e+00], [2.000000e-01, 1.400000e+00, 0.000000e+00, -6.000000e-01]]>

// Per tensor, 2-bit asymmetric over [-7, 2.4]: scale 9.4 / 3, zero point 2; 0 stays exact.
// ASYM-LABEL: func.func @rows
// ASYM: bonsai.scales = dense<3.13333344> : tensor<1xf32>, bonsai.signed = false
// ASYM-SAME: bonsai.zero_points = dense<2> : tensor<1xi32>
// ASYM-SAME: dense<{{\[\[}}0.000000e+00, -6.26666689, 0.000000e+00, 3.13333344], [0.000000e+00, 0.000000e+00, 0.000000e+00, 0.000000e+00]]>
// BITS: error: option quantize-weights{bits}: must be 2..=8, got 16
// CALIB: error: pass quantize-weights: needs calibration data
// DAMP: error: option quantize-weights{damp}: only applies with assign=obs
// ASSIGN: error: option quantize-weights{assign}: 'gptq' is not nearest or obs
// GROUP: error: option quantize-weights{granularity}: layer 'fc' reduces over 4 weights, which group:3 does not divide (exclude=fc to skip it)
func.func @rows() -> tensor<2x4xf32> {
  %a = arith.constant {bonsai.weight = "w", bonsai.layer = "fc", bonsai.kind = "gemm", bonsai.out_dim = 0 : i64, bonsai.transposed = false} dense<[[1.2, -7.0, 0.0, 2.4], [0.19, 1.4, 0.0, -0.55]]> : tensor<2x4xf32>
  return %a : tensor<2x4xf32>
}
