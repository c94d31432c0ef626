#!/usr/bin/env bash
# bench/build3.sh - a large target built through the REST API of three gateways:
# three `ceph-iscsi api` daemons on 127.0.0.1-3, each on its own emulated configfs,
# one throw-away Ceph cluster, all in a private network and mount namespace (root).
# bench/apibuild creates the disks (10 per call), maps each to the target, and
# creates the clients with 4 LUNs each, spreading the requests over the three
# gateways; it times PUT /api/targetlun and /api/clientlun at each of its -steps
# and prints total time, mutations/s and CPU seconds per mutation per daemon.
# At the end every gateway's LIO must equal the configuration: `restore --dry-run`
# of each gateway reports "in sync".
#
#   bench/build3.sh [apibuild flags...]     e.g. bench/build3.sh -luns 256 -c 6
#
# env: BENCH_KEEP=1 keeps the work dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

if [[ ${BENCH_IN_NS:-} != 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "bench/build3.sh: run as root (it makes a network namespace)" >&2; exit 1; }
  export BENCH_IN_NS=1
  exec unshare --net --mount --propagation private "$0" "$@"
fi

export PATH=$PATH:/usr/local/go/bin
W=$(mktemp -d /tmp/ceph-iscsi-build3.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$ROOT/dist/dev/ceph-cluster.sh" down "$W/ceph" >/dev/null 2>&1 || true
  [[ ${BENCH_KEEP:-} == 1 ]] && echo "work dir kept: $W" || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip link set lo up

echo "== building"
(cd "$ROOT" && go build -tags pacific -o "$W/ceph-iscsi" . && go build -o "$W/apibuild" ./bench/apibuild)

echo "== Ceph cluster"
"$ROOT/dist/dev/ceph-cluster.sh" up "$W/ceph" >"$W/ceph-up.log" 2>&1 || { cat "$W/ceph-up.log"; exit 1; }

IQN=iqn.2003-01.com.example.bench:target
PORT=5000
cat >"$W/iscsi-gateway.cfg" <<CFG
[config]
cluster_name = ceph
ceph_config_dir = $W/ceph
cluster_client_name = client.admin
pool = rbd
api_secure = false
api_port = $PORT
api_user = admin
api_password = admin
trusted_ip_list = 127.0.0.1,127.0.0.2,127.0.0.3
minimum_gateways = 1
CFG

wait_http() { # url
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}

GWS=() PIDARGS=()
for n in 1 2 3; do
  mkdir -p "$W/configfs$n"
  args=(api --config "$W/iscsi-gateway.cfg" --configfs-root "$W/configfs$n" --gateway-name "gw$n"
    --listen "127.0.0.$n:$PORT" --local-addr "127.0.0.$n")
  for p in 1 2 3; do args+=(--peer "gw$p=http://127.0.0.$p:$PORT"); done
  CEPH_CONF=$W/ceph/ceph.conf "$W/ceph-iscsi" "${args[@]}" >"$W/gw$n.log" 2>&1 &
  PIDS+=($!)
  PIDARGS+=("gw$n=$!")
  GWS+=("gw$n=http://127.0.0.$n:$PORT")
done
for n in 1 2 3; do wait_http "http://127.0.0.$n:$PORT/api"; done

put() { # path form...
  local args=() out
  for kv in "${@:2}"; do args+=(--data-urlencode "$kv"); done
  out=$(curl -sS -u admin:admin -X PUT "${args[@]}" -w ' %{http_code}' "http://127.0.0.1:$PORT$1")
  [[ $out == *' 200' ]] || { echo "PUT $1: $out" >&2; exit 1; }
}
put "/api/target/$IQN"
for n in 1 2 3; do put "/api/gateway/$IQN/gw$n" ip_address=127.0.0.$n skipchecks=true; done

echo "== build (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$W/apibuild" -gw "$(IFS=,; echo "${GWS[*]}")" -pid "$(IFS=,; echo "${PIDARGS[*]}")" -target "$IQN" "$@"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== every gateway's LIO against the configuration"
fail=0
for n in 1 2 3; do
  out=$(CEPH_CONF=$W/ceph/ceph.conf "$W/ceph-iscsi" restore --dry-run --config "$W/iscsi-gateway.cfg" \
    --configfs-root "$W/configfs$n" --gateway-name "gw$n" --local-addr "127.0.0.$n" 2>&1) || true
  if grep -q '^in sync: nothing to do' <<<"$out"; then
    echo "gw$n: in sync ($(find "$W/configfs$n/target/iscsi" -mindepth 4 -maxdepth 4 -path '*/lun/lun_*' | wc -l) LUN directories)"
  else
    echo "gw$n: NOT in sync:"; head -20 <<<"$out"; fail=1
  fi
done
exit $fail
