#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, then every crate's tests,
# including the lab integration tests (root, network namespaces) and the
# linearizability corpus. Installs what it needs first (scripts/setup.sh --deps).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --deps
export PATH="$HOME/.cargo/bin:$PATH"
# A one-shot CI build gains nothing from incremental compilation and it costs gigabytes
# of disk; keep it for developers' repeated runs.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

cleanup() {
  # Whatever happened, leave no lab behind.
  if [ -x target/debug/splitbrain ]; then target/debug/splitbrain lab down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads 2
