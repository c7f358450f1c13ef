// RUN: not bonsai-opt %s --pass-pipeline='builtin.module(no-such-pass)' 2>&1 | FileCheck %s
// An unknown pass name is reported with the pipeline option.
// CHECK: error: option --pass-pipeline
// CHECK: does not refer to a registered pass
// CHECK: bonsai-opt --list-passes
func.func @main() {
  return
}
