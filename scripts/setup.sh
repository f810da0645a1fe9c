#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) to build and run splitbrain: the system
# packages the lab and the tests need, a Rust toolchain if none is installed, and a
# release build of the workspace.
#   bash scripts/setup.sh            packages + toolchain + release build
#   bash scripts/setup.sh --deps     packages + toolchain only
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openssh-server openssh-client iptables iproute2 faketime procps psmisc
          ca-certificates curl build-essential pkg-config chromium libxml2-utils)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (the lab creates network namespaces and installs packages)" >&2
  exit 3
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# sshd must not run as a system service for the lab; the lab starts its own per node.
mkdir -p /run/sshd

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup.sh: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if [ "${1:-}" != "--deps" ]; then
  echo "setup.sh: building splitbrain and the zoo (release)"
  cargo build --release --workspace --bins
fi
