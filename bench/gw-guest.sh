#!/bin/bash
# gw-guest.sh - the guest half of bench/gw-vm.sh, run by vm/guest-vmtest.sh once Ceph is
# up: restores the seeded layout with our restore, then scrapes /metrics BENCH_SCRAPES
# times from ours (`ceph-iscsi gw`) and then from upstream's rbd-target-gw (Python, from
# the dist/dev/upstream.sh unpack), one exporter at a time on the same cfg and port.
# Writes /vm-out/gw-times.txt lines "exporter scrape http_code seconds lines samples".
set -uo pipefail
BIN=${BENCH_RESTORE_BIN:?} GW=${BENCH_GATEWAY:?} OBJ=${BENCH_OBJECT:?} UP=${BENCH_UPSTREAM:?}
N=${BENCH_SCRAPES:-20}
PORT=9287
# upstream's settings path is fixed; the guest's /etc is a throwaway overlay
CFG=/etc/ceph/iscsi-gateway.cfg
cat >"$CFG" <<CFGEOF
[config]
cluster_client_name = client.admin
pool = rbd
gateway_conf = $OBJ
api_secure = false
minimum_gateways = 1
prometheus_exporter = true
prometheus_host = 127.0.0.1
prometheus_port = $PORT
CFGEOF
if [[ ${BENCH_TCMU:-stub} == stub ]]; then
  # as bench/restore-guest.sh: no tcmu-runner in this boot, a renamed sleep passes
  # restore's safety check
  cp /bin/sleep /run/tcmu-runner
  /run/tcmu-runner 100000 &
  STUB=$!
  trap 'kill $STUB' EXIT
fi
t0=$EPOCHREALTIME
"$BIN" restore --json --config "$CFG" --gateway-name "$GW" >/vm-out/restore.json 2>/vm-out/restore.err
rc=$?
echo "restore exit $rc in $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}") s"
((rc == 0)) || { tail -20 /vm-out/restore.err; exit 1; }
echo "storage objects: $(find /sys/kernel/config/target/core -maxdepth 2 -mindepth 2 -type d ! -path '*/alua*' | wc -l)," \
  "ACLs: $(find /sys/kernel/config/target/iscsi/*/tpgt_*/acls -maxdepth 1 -mindepth 1 -type d | wc -l)"
: >/vm-out/gw-times.txt

# bench NAME CMD...: start the exporter, wait until /metrics answers (start-up time is
# printed, not part of the figures), scrape N times, SIGTERM it and wait for its exit.
bench() {
  local name=$1 pid t0 i code out; shift
  t0=$EPOCHREALTIME
  "$@" >"/vm-out/gw-$name.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 3000; i++)); do # Python's imports take tens of seconds under TCG
    kill -0 "$pid" 2>/dev/null || { echo "$name exited before answering:"; tail -40 "/vm-out/gw-$name.log"; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/") && [[ $code == 200 ]] && break
    sleep 0.1
  done
  [[ $code == 200 ]] || { echo "$name does not answer on /"; kill "$pid"; wait "$pid"; return 1; }
  echo "$name answers after $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}") s"
  for ((i = 1; i <= N; i++)); do
    out=$(curl -s -o "/vm-out/metrics-$name.txt" -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT/metrics")
    echo "$name $i $out $(wc -l <"/vm-out/metrics-$name.txt") $(grep -c '^ceph_iscsi_' "/vm-out/metrics-$name.txt")" >>/vm-out/gw-times.txt
  done
  kill "$pid"
  wait "$pid"
  echo "$name exit $? after SIGTERM"
}
rc=0
bench ours "$BIN" gw --config "$CFG" --gateway-name "$GW" || rc=1
mkdir -p /var/log/rbd-target-gw # upstream's RotatingFileHandler path
bench upstream env PYTHONPATH="$UP/root/usr/lib/python3/dist-packages" /usr/bin/python3 "$UP/root/usr/bin/rbd-target-gw" || rc=1
cp /var/log/rbd-target-gw/rbd-target-gw.log /vm-out/ 2>/dev/null
echo "guest load: $(cat /proc/loadavg)"
exit $rc
