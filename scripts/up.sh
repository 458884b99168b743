#!/usr/bin/env bash
# Install everything Skiff needs, build it, start `skiff server` on 127.0.0.1:6443 with its
# data in /var/lib/skiff (the embedded store), and apply the demo manifests with real
# kubectl. Run it again to restart the server on the same data.
#
# Usage: scripts/up.sh            (as root, on Debian 12)
#        scripts/up.sh --stop     stop the server this script started
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${SKIFF_DATA_DIR:-/var/lib/skiff}"
listen="${SKIFF_LISTEN:-127.0.0.1:6443}"
pid_file="${data_dir}/server.pid"
log_file="${data_dir}/server.log"
kubectl="${repo_dir}/.cache/tools/bin/kubectl"

log() { printf 'skiff-up: %s\n' "$*" >&2; }

stop_server() {
    if [[ -f "${pid_file}" ]]; then
        local pid
        pid="$(cat "${pid_file}")"
        # Only the process this script started, by its PID.
        if kill -0 "${pid}" 2>/dev/null && grep -q skiff "/proc/${pid}/cmdline" 2>/dev/null; then
            log "stopping skiff server (pid ${pid})"
            kill "${pid}"
            for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "${pid_file}"
    fi
}

if [[ "${1:-}" == "--stop" ]]; then
    stop_server
    exit 0
fi

"${repo_dir}/scripts/install-test-deps.sh"
if [[ -d "${HOME}/.cargo/bin" && ":${PATH}:" != *":${HOME}/.cargo/bin:"* ]]; then
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi

log "building skiff (release)"
(cd "${repo_dir}" && cargo build --release --bin skiff)

# The container runtime, air-gapped: a busybox image made from Debian's busybox-static, imported
# into the runtime's store, and the same image unpacked by umoci into an OCI bundle that
# `skiff runtime run` executes (as runc would).
skiff_bin="${repo_dir}/target/release/skiff"
fixture="${repo_dir}/.cache/busybox-oci"
log "runtime: building the busybox image and importing it"
"${repo_dir}/scripts/fixtures/busybox-image.sh" "${fixture}"
"${skiff_bin}" runtime import "${fixture}"
bundle="$(mktemp -d /tmp/skiff-up-bundle.XXXXXX)"
trap 'rm -rf "${bundle}"' EXIT
umoci unpack --image "${fixture}:busybox" "${bundle}/busybox" >/dev/null
python3 - "${bundle}/busybox/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", "echo hello from a skiff container: $(hostname), pid $$"]
json.dump(spec, open(path, "w"))
PY
"${skiff_bin}" runtime run --bundle "${bundle}/busybox" "skiff-up-$$"

mkdir -p "${data_dir}"
stop_server
log "starting skiff server on ${listen} (data in ${data_dir}, log in ${log_file})"
nohup "${repo_dir}/target/release/skiff" server --data-dir "${data_dir}" --listen "${listen}" \
    >"${log_file}" 2>&1 &
echo $! >"${pid_file}"

for _ in $(seq 100); do
    if "${kubectl}" --kubeconfig "${data_dir}/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done
"${kubectl}" --kubeconfig "${data_dir}/kubeconfig" get --raw /readyz >/dev/null

log "applying the demo (manifests/demo.yaml)"
"${kubectl}" --kubeconfig "${data_dir}/kubeconfig" apply -f "${repo_dir}/manifests/demo.yaml"
"${kubectl}" --kubeconfig "${data_dir}/kubeconfig" get all -n demo

cat <<MSG

Skiff's API server is running (pid $(cat "${pid_file}")). Use it with:
  export KUBECONFIG=${data_dir}/kubeconfig
  ${kubectl} get all -A
Stop it with: scripts/up.sh --stop
MSG
