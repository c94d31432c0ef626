#!/usr/bin/env bash
# fetch-upstream.sh - unpack Debian's ceph-iscsi (upstream's Python gateway) into
# ${XDG_CACHE_HOME:-~/.cache}/ceph-iscsi-bench/upstream/root, never installing it over ours:
# bench/api.sh and the shell's TestCommandsAgainstUpstreamAPI run its rbd-target-api from
# there with /usr/bin/python3 and the Debian modules `make deps` installs.
set -euo pipefail
DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ceph-iscsi-bench/upstream
[[ -x $DIR/root/usr/bin/rbd-target-api ]] && exit 0
mkdir -p "$DIR"
cd "$DIR"
rm -f ceph-iscsi_*.deb
apt-get download ceph-iscsi >/dev/null
dpkg-deb -x ceph-iscsi_*.deb root
echo "upstream ceph-iscsi unpacked in $DIR/root"
