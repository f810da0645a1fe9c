#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, then every crate's tests,
# including the lab integration tests (root, network namespaces) and the
# linearizability corpus. Installs what it needs first (scripts/setup.sh --deps).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --deps
export PATH="$HOME/.cargo/bin:$PATH"

cleanup() {
  # Whatever happened, leave no lab behind.
  if [ -x target/debug/splitbrain ]; then target/debug/splitbrain lab down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads 2
