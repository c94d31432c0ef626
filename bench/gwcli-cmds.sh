#!/usr/bin/env bash
# bench/gwcli-cmds.sh - one-shot latency of the gwcli commands that change the group:
# `gwcli /disks create <pool>/<image> <size>` and `gwcli <client> disk add <disk>` (which
# maps the disk to the target first, then to the client), each a whole process run: start,
# settings, the snapshot load, the API calls, the exit.
#
# Runs in a private network and mount namespace (root): a throw-away Ceph cluster on
# 127.0.0.1, our `ceph-iscsi api` on an emulated configfs, a target with one gateway and one
# client, then N disks created and added one by one.
#
#   bench/gwcli-cmds.sh [N]        (default 20)
#
# env: BENCH_KEEP=1 keeps the work dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib-netns.sh
source "$HERE/lib-netns.sh"
N=${1:-20}

netns_enter "$@"

netns_setup ceph-iscsi-bench-gwcli

netns_build

IQN=iqn.2003-01.com.example.bench:gwcli
GW=127.0.0.1
CLIENT=iqn.1994-05.com.example:bench-client
netns_gateway_cfg 127.0.0.1 127.0.0.1

mkdir -p "$W/configfs"
api_daemon api.log --gateway-name "$GW" --configfs-root "$W/configfs"
wait_http http://127.0.0.1:5000/api

export HOME=$W/home
mkdir -p "$HOME"
gwcli() { CEPH_CONF=$W/ceph/ceph.conf "$W/ceph-iscsi" cli --config "$W/iscsi-gateway.cfg" --gateway-name "$GW" "$@"; }
gwcli /iscsi-targets create "$IQN" >/dev/null
gwcli "/iscsi-targets/$IQN/gateways" create "$GW" 127.0.0.1 skipchecks=true >/dev/null
gwcli "/iscsi-targets/$IQN/hosts" create "$CLIENT" >/dev/null

# ms runs one command and prints its wall time in milliseconds
ms() {
  local t0=$EPOCHREALTIME
  gwcli "$@" >/dev/null || { echo "failed: gwcli $*" >&2; exit 1; }
  awk "BEGIN{printf \"%.1f\n\", ($EPOCHREALTIME - $t0) * 1000}"
}
stats() { # name file
  sort -n "$2" | awk -v name="$1" '{v[NR]=$1} END {printf "%-28s n=%d  min %.1f  p50 %.1f  p90 %.1f  max %.1f ms\n", name, NR, v[1], v[int((NR+1)/2)], v[int(NR*0.9+0.5)], v[NR]}'
}

echo "== $N x create, then $N x disk add (each a fresh gwcli process)"
: >"$W/create.ms"
: >"$W/add.ms"
for i in $(seq 1 "$N"); do
  ms /disks create "rbd/bench$i" 64M >>"$W/create.ms"
done
for i in $(seq 1 "$N"); do
  ms "/iscsi-targets/$IQN/hosts/$CLIENT" disk add "rbd/bench$i" >>"$W/add.ms"
done
# the same work straight over the API, for the share of the CLI (process, settings, RADOS
# connection, snapshot load) in the figures above
: >"$W/api-create.ms"
: >"$W/ls.ms"
for i in $(seq 1 "$N"); do
  t0=$EPOCHREALTIME
  out=$(curl -sS -u admin:admin -X PUT --data-urlencode mode=create --data-urlencode pool=rbd --data-urlencode size=64M \
    --data-urlencode count=1 --data-urlencode create_image=true --data-urlencode "owner=$GW" \
    -w ' %{http_code}' "http://127.0.0.1:5000/api/disk/rbd/api$i")
  [[ $out == *' 200' ]] || { echo "PUT /api/disk/rbd/api$i: $out" >&2; exit 1; }
  awk "BEGIN{printf \"%.1f\n\", ($EPOCHREALTIME - $t0) * 1000}" >>"$W/api-create.ms"
done
for i in $(seq 1 "$N"); do
  ms ls / >>"$W/ls.ms"
done
stats "gwcli /disks create" "$W/create.ms"
stats "gwcli <client> disk add" "$W/add.ms"
stats "curl PUT /api/disk (create)" "$W/api-create.ms"
stats "gwcli ls ($((2 * N)) disks)" "$W/ls.ms"
echo "load: $(uptime)"
