# lit configuration: bonsai-opt / bonsai + FileCheck over .mlir and .test files.
import os
import lit.formats

config.name = "bonsai"
config.test_format = lit.formats.ShTest()
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
root = os.path.dirname(config.test_source_root)
config.test_exec_root = os.path.join(root, "target", "lit")
profile = os.environ.get("BONSAI_PROFILE", "debug")
bindir = os.path.join(root, "target", profile)
llvm = "/usr/lib/llvm-22/bin"
config.environment["PATH"] = os.pathsep.join([bindir, llvm, os.environ.get("PATH", "")])
config.substitutions.append(("%testdata", os.path.join(root, "testdata")))
config.excludes = ["lit.cfg.py", "Inputs"]
