#!/usr/bin/env bash
# Runs a command (a benchmark) with /tmp on a journaled ext4 and /run on a tmpfs, as a standard
# Debian install has them, in a private mount namespace that ends with the command.
#
# Why: the machines these benchmarks run on have a root ext4 *without a journal* and no tmpfs on
# /run. Without a journal, ext4 skips every inode freed in the last 5–35 s when it allocates a
# new one (fs/ext4/ialloc.c `recently_deleted`, checked only when there is no journal), so a
# benchmark that creates and deletes thousands of files pays for its own earlier churn — the
# pod-startup burst spent a fifth of its CPU there. mkfs.ext4's default (and Debian's
# installer's) has a journal, and Debian mounts /run as a tmpfs (where the runtime keeps its
# state, as runc does in /run/runc).
#
# Usage: scripts/on-standard-disk.sh COMMAND [ARGS...]     (as root)
# Environment: SKIFF_DISK_IMAGE_DIR (where the sparse image file goes; default /var/tmp),
#   SKIFF_DISK_SIZE (default 8G).
set -euo pipefail

[[ ${EUID} -eq 0 ]] || { echo "on-standard-disk: run as root" >&2; exit 1; }
[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

image="$(mktemp "${SKIFF_DISK_IMAGE_DIR:-/var/tmp}/skiff-disk-XXXXXX.img")"
trap 'rm -f "${image}"' EXIT
truncate -s "${SKIFF_DISK_SIZE:-8G}" "${image}"
mkfs.ext4 -q -F "${image}"

# The mounts live only in the new mount namespace: they go when the command ends, whatever
# happens (the loop device is released with its last mount).
unshare --mount --propagation private -- bash -c '
    set -euo pipefail
    mount -o loop "$1" /tmp
    chmod 1777 /tmp
    mount -t tmpfs -o mode=755 tmpfs /run
    shift
    exec "$@"
' on-standard-disk "${image}" "$@"
