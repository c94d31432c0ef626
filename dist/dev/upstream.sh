#!/usr/bin/env bash
# upstream.sh - unpack upstream's ceph-iscsi (Debian's package, Python) where the
# going-back test (commands, TestGoingBackToUpstream) runs its rbd-target-api from. It
# is never installed: `apt-get download` + `dpkg-deb -x`, beside ours. Its Python
# dependencies are Debian packages (make deps installs them). Prints the directory.
#
# env: CEPH_ISCSI_UPSTREAM  where to unpack (default ${XDG_CACHE_HOME:-$HOME/.cache}/ceph-iscsi-upstream)
set -euo pipefail
dir=${CEPH_ISCSI_UPSTREAM:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ceph-iscsi-upstream}
if [[ ! -x $dir/root/usr/bin/rbd-target-api ]]; then
  rm -rf "$dir"; mkdir -p "$dir"
  (cd "$dir" && apt-get download ceph-iscsi >download.log 2>&1 && dpkg-deb -x ceph-iscsi_*.deb root) ||
    { cat "$dir/download.log" >&2 || true; echo "upstream.sh: cannot download Debian's ceph-iscsi" >&2; exit 1; }
fi
echo "$dir"
