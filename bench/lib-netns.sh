# bench/lib-netns.sh - sourced by the namespace benches (api.sh, build3.sh, gwcli-cmds.sh):
# a private network and mount namespace (root), a work dir $W, a throw-away Ceph cluster
# in $W/ceph, the gateway settings $W/iscsi-gateway.cfg and our `ceph-iscsi api` daemons.
# Needs ROOT. Daemons started with api_daemon (or appended to PIDS) are stopped on exit.
PORT=5000

# netns_enter ARGS...: outside the namespace, check for root, run netns_prepare if the
# script defines it (the namespace has no network) and re-exec the script inside a
# private namespace; inside, return.
netns_enter() {
  [[ ${BENCH_IN_NS:-} == 1 ]] && return 0
  [[ $(id -u) == 0 ]] || { echo "bench/$(basename "$0"): run as root (it makes a network namespace)" >&2; exit 1; }
  export BENCH_IN_NS=1
  if declare -F netns_prepare >/dev/null; then netns_prepare; fi
  exec unshare --net --mount --propagation private "$0" "$@"
}

# netns_setup NAME: the work dir $W (/tmp/NAME.XXXXXX), the cleanup on exit (daemons in
# PIDS, the cluster, the work dir unless BENCH_KEEP=1) and lo up.
netns_setup() {
  export PATH=$PATH:/usr/local/go/bin
  W=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap netns_cleanup EXIT
  trap 'exit 130' INT TERM   # so that the EXIT trap stops what was started
  ip link set lo up
}
netns_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$ROOT/dist/dev/ceph-cluster.sh" down "$W/ceph" >/dev/null 2>&1 || true
  [[ ${BENCH_KEEP:-} == 1 ]] && echo "work dir kept: $W" || rm -rf "$W"
}

# netns_build [TOOL...]: ceph-iscsi and each ./bench/TOOL into $W; then the Ceph cluster.
netns_build() {
  echo "== building"
  (cd "$ROOT" && go build -tags pacific -o "$W/ceph-iscsi" . &&
    for t in "$@"; do go build -o "$W/$t" "./bench/$t" || exit 1; done)
  echo "== Ceph cluster"
  "$ROOT/dist/dev/ceph-cluster.sh" up "$W/ceph" >"$W/ceph-up.log" 2>&1 || { cat "$W/ceph-up.log"; exit 1; }
}

# netns_gateway_cfg TRUSTED_IPS [API_HOST]: $W/iscsi-gateway.cfg on the cluster.
netns_gateway_cfg() {
  {
    printf '%s\n' "[config]" "cluster_name = ceph" "ceph_config_dir = $W/ceph" \
      "cluster_client_name = client.admin" "pool = rbd" "api_secure = false"
    [[ -z ${2:-} ]] || echo "api_host = $2"
    printf '%s\n' "api_port = $PORT" "api_user = admin" "api_password = admin" \
      "trusted_ip_list = $1" "minimum_gateways = 1"
  } >"$W/iscsi-gateway.cfg"
}

# api_daemon LOG ARGS...: `ceph-iscsi api --config $W/iscsi-gateway.cfg ARGS` in the
# background, output in $W/LOG, its pid appended to PIDS.
api_daemon() {
  CEPH_CONF=$W/ceph/ceph.conf "$W/ceph-iscsi" api --config "$W/iscsi-gateway.cfg" "${@:2}" >"$W/$1" 2>&1 &
  PIDS+=($!)
}

wait_http() { # url [tries of 0.1s, default 300]
  for _ in $(seq 1 "${2:-300}"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}

put() { # path form...: PUT to the API on 127.0.0.1, exit unless it answers 200
  local args=() out
  for kv in "${@:2}"; do args+=(--data-urlencode "$kv"); done
  out=$(curl -sS -u admin:admin -X PUT "${args[@]}" -w ' %{http_code}' "http://127.0.0.1:$PORT$1")
  [[ $out == *' 200' ]] || { echo "PUT $1: $out" >&2; exit 1; }
}
