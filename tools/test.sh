#!/usr/bin/env bash
# Every test: set up (idempotent), build, unit + integration tests, lit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cargo build --workspace --locked
cargo test --workspace --locked
/usr/lib/llvm-22/bin/lit -sv lit-tests
