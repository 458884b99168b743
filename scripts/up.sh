#!/usr/bin/env bash
# The README's first command: a working single-node Skiff cluster serving the demo app.
#
# Installs what Skiff needs (Debian packages incl. build-essential, busybox-static, iproute2 and
# iptables; Rust through rustup when cargo is missing; kubectl v1.35), builds the release
# binaries (skiff and skiffctl), runs `skiff up` (API server, scheduler, controllers and node
# agent for this machine, in one background process; kubectl's "skiff" context), applies
# manifests/demo.yaml, waits for the rollout and fetches the demo page through its Service — the
# ClusterIP from this node and the NodePort on the node's address — and prints it.
#
# Run it again at any time: every step is idempotent (a running cluster is left running, the
# manifests are re-applied unchanged). Stop everything with `skiff down`.
#
# Usage: scripts/up.sh        (as root, on Debian 12)
# Environment: SKIFF_DATA_DIR (default /var/lib/skiff), SKIFF_UP_FLAGS (more `skiff up` flags,
#   e.g. "--node-ip 192.168.1.10"), CARGO_TARGET_DIR (where cargo builds), KUBECTL (a kubectl to
#   use instead of the one in .cache/tools/bin), SKIFF_BIN_DIR (where skiff, skiffctl and, when
#   none is on PATH, kubectl are installed; default /usr/local/bin).
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${SKIFF_DATA_DIR:-/var/lib/skiff}"
target_dir="${CARGO_TARGET_DIR:-${repo_dir}/target}"
kubectl="${KUBECTL:-${repo_dir}/.cache/tools/bin/kubectl}"
bin_dir="${SKIFF_BIN_DIR:-/usr/local/bin}"

log() { printf 'skiff-up: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[[ ${EUID} -eq 0 ]] || die "run as root: Skiff makes network interfaces, iptables rules, mounts and cgroups"

# --- Rust ---------------------------------------------------------------------------------------
if [[ -d "${HOME}/.cargo/bin" && ":${PATH}:" != *":${HOME}/.cargo/bin:"* ]]; then
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "installing Rust with rustup (https://rustup.rs)"
    command -v curl >/dev/null 2>&1 || {
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl ca-certificates
    }
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi

# --- Debian packages and kubectl (the same script the tests use; idempotent) -----------------
# (It also fetches kubectl v1.35 into .cache/tools/bin, through scripts/install-kubectl.sh.)
"${repo_dir}/scripts/install-test-deps.sh"

# --- Build --------------------------------------------------------------------------------------
log "building skiff and skiffctl (release)"
(cd "${repo_dir}" && cargo build --release --bin skiff --bin skiffctl)
skiff="${target_dir}/release/skiff"
skiffctl="${target_dir}/release/skiffctl"
# On PATH for what comes next (`skiff down`, kubectl); a kubectl already there is left alone.
install_bin() {
    install -m 0755 "$1" "${bin_dir}/.$2.tmp"
    mv -f "${bin_dir}/.$2.tmp" "${bin_dir}/$2"
}
mkdir -p "${bin_dir}"
install_bin "${skiff}" skiff
install_bin "${skiffctl}" skiffctl
if ! command -v kubectl >/dev/null 2>&1; then
    install_bin "${kubectl}" kubectl
fi
log "installed skiff and skiffctl into ${bin_dir}"
skiff="${bin_dir}/skiff"

# The previous version of this script ran `skiff server` alone (pid in DATA_DIR/server.pid);
# `skiff up` serves the same data and port, so that server goes first.
old_pid_file="${data_dir}/server.pid"
if [[ -f "${old_pid_file}" ]]; then
    old_pid="$(cat "${old_pid_file}")"
    if kill -0 "${old_pid}" 2>/dev/null && grep -q skiff "/proc/${old_pid}/cmdline" 2>/dev/null; then
        log "stopping the skiff server an earlier scripts/up.sh started (pid ${old_pid})"
        kill "${old_pid}"
        for _ in $(seq 50); do kill -0 "${old_pid}" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "${old_pid_file}"
fi

# --- The cluster ----------------------------------------------------------------------------------
# shellcheck disable=SC2086 # SKIFF_UP_FLAGS is a list of flags
"${skiff}" up --data-dir "${data_dir}" ${SKIFF_UP_FLAGS:-}
export KUBECONFIG="${data_dir}/kubeconfig"

log "applying the demo (manifests/demo.yaml)"
"${kubectl}" apply -f "${repo_dir}/manifests/demo.yaml"
if ! "${kubectl}" -n demo rollout status deployment/web --timeout=180s; then
    # Say why: the pods, the node's conditions and taints (e.g. DiskPressure below 10% free
    # disk, as kubelet's default) and the warnings.
    "${kubectl}" -n demo get pods -o wide >&2 || true
    "${kubectl}" get nodes -o jsonpath='{range .items[*]}{.metadata.name}{": taints "}{.spec.taints}{"\n"}{end}' >&2 || true
    "${kubectl}" -n demo get events --field-selector type=Warning >&2 || true
    die "the demo did not roll out (above: its pods, the node's taints and the warnings)"
fi

# --- The page, through the Service ------------------------------------------------------------
# Both addresses are this machine's: the ClusterIP is routed to the node's bridge (skiff0) and
# rewritten by the node's iptables rules, the NodePort is on the node's own address.
cluster_ip="$("${kubectl}" -n demo get service web -o jsonpath='{.spec.clusterIP}')"
node_port="$("${kubectl}" -n demo get service web-nodeport -o jsonpath='{.spec.ports[0].nodePort}')"
node_ip="$("${kubectl}" get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')"
fetch() {
    local url="$1" page
    for _ in $(seq 50); do
        # (Debian's static busybox wget crashes with its own -T timeout; timeout(1) instead.)
        if page="$(timeout 5 busybox wget -q -O - "${url}" 2>/dev/null)"; then
            printf '%s\n' "${page}"
            return 0
        fi
        sleep 0.2
    done
    die "no answer from ${url}"
}
log "the demo page through the ClusterIP, http://${cluster_ip}/"
fetch "http://${cluster_ip}/"
log "and through the NodePort, http://${node_ip}:${node_port}/"
fetch "http://${node_ip}:${node_port}/"

cat <<MSG

Skiff is running: one node, the demo app in namespace "demo".
  kubectl get all -n demo                 # kubectl's current context is "skiff"
  kubectl -n demo scale deployment/web --replicas=5
  kubectl -n demo set image deployment/web web=skiff.local/busybox:v2
  skiffctl get pods -A
More examples to try: manifests/README.md. Stop it all with: skiff down   (--purge also removes ${data_dir})
MSG
