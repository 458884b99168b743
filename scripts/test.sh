#!/usr/bin/env bash
# Install test dependencies (idempotent) and run Skiff's whole test suite: formatting,
# clippy, then every crate's tests and the whole-system tests in tests/ (which start real
# etcd servers and use real kubectl v1.35).
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_dir}"

"${repo_dir}/scripts/install-test-deps.sh"
if [[ -d "${HOME}/.cargo/bin" && ":${PATH}:" != *":${HOME}/.cargo/bin:"* ]]; then
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi
export SKIFF_KUBECTL="${repo_dir}/.cache/tools/bin/kubectl"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
