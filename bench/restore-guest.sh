#!/bin/bash
# restore-guest.sh - the guest half of bench/restore-vm.sh, run by vm/guest-vmtest.sh once
# Ceph and tcmu-runner are up: restores the seeded layout from cold, again (in sync),
# then tears it down, saving each --json report and wall time to /vm-out; with
# BENCH_DAEMON=1 (the default when BENCH_UPSTREAM=1) also times our api daemon's start-up
# and SIGTERM, and with BENCH_UPSTREAM=1 upstream's rbd-target-api's, in the same boot.
set -uo pipefail
BIN=${BENCH_RESTORE_BIN:?} GW=${BENCH_GATEWAY:?} OBJ=${BENCH_OBJECT:?}
# shellcheck source=bench/lib-guest.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-guest.sh"
CFG=/run/bench-iscsi-gateway.cfg
guest_cfg "$CFG"
# phase NAME: a line of output with the guest's clock and load at the start of a phase,
# so the host's load at that moment can be looked up (bench/restore-vm.sh samples it)
phase() { echo "phase $1 at $(date +%T) guest load $(cut -d' ' -f1-3 /proc/loadavg)"; }
run() { # name [flags]: one timed restore
  local name=$1 t0 rc; shift
  t0=$EPOCHREALTIME
  "$BIN" restore --json --config "$CFG" --gateway-name "$GW" "$@" >"/vm-out/restore-$name.json" 2>"/vm-out/restore-$name.err"
  rc=$?
  printf '%s %s %s\n' "$name" "$rc" "$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $t0}")" | tee -a /vm-out/restore-times.txt
  return $rc
}
tcmu_stub
: >/vm-out/restore-times.txt
rc=0
phase cold
run cold || rc=1
echo "storage objects in LIO after the cold restore: $(storage_objects)"
phase warm
run warm || rc=1
# a teardown dry run observes and plans like the warm run but reads no image sizes:
# the difference is what the 256 librbd image opens cost
run teardown-dry --teardown --dry-run || rc=1
# tcmu-runner re-reads tcmu.conf when it changes: at debug level it logs each netlink
# command as it takes it ("cmd 2" is a device removal), which shows whether it closes
# devices one at a time
[[ -f /etc/tcmu/tcmu.conf ]] && echo "log_level = 4" >/etc/tcmu/tcmu.conf
phase teardown
run teardown --teardown || rc=1
left=$(find /sys/kernel/config/target/iscsi -maxdepth 1 -mindepth 1 -type d ! -name discovery_auth | wc -l)
echo "targets left after teardown: $left"
((left == 0)) || rc=1
# watch_daemon NAME PID URL USER:PASS: a daemon's start-up, timed from t0 (set by the
# caller just before the start): until LIO holds every LUN and mapped LUN with the TPG
# enabled (NAME-restored) and until its API answers (NAME-serving). A benchmark's
# progress poll, not an ordering of events: both are read from outside.
watch_daemon() {
  local name=$1 pid=$2 url=$3 cred=$4 now tpg luns mapped restored= serving=
  while kill -0 "$pid" 2>/dev/null; do
    now=$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $t0}")
    if [[ -z $restored ]]; then
      tpg=$(find /sys/kernel/config/target/iscsi -mindepth 2 -maxdepth 2 -name tpgt_1 2>/dev/null | head -1)
      if [[ -n $tpg && $(cat "$tpg/enable" 2>/dev/null) == 1 ]]; then
        luns=$(find "$tpg/lun" -mindepth 1 -maxdepth 1 -type d | wc -l)
        mapped=$(find "$tpg/acls" -mindepth 3 -maxdepth 3 -type l | wc -l)
        ((luns == BENCH_DISKS && mapped == want_mapped)) && restored=$now
      fi
    fi
    [[ -z $serving ]] && curl -sf -o /dev/null -u "$cred" "$url" && serving=$now
    [[ -n $restored && -n $serving ]] && break
    (( ${now%.*} > 900 )) && break
    sleep 0.5
  done
  echo "$name-restored 0 ${restored:-none}" | tee -a /vm-out/restore-times.txt
  echo "$name-serving 0 ${serving:-none}" | tee -a /vm-out/restore-times.txt
  [[ -n $restored ]]
}
# sigterm NAME PID: SIGTERM to exit (NAME-teardown), then how many storage objects LIO
# still holds (left)
sigterm() {
  local name=$1 pid=$2 urc
  phase "$name-teardown"
  t0=$EPOCHREALTIME
  kill -TERM "$pid"
  wait "$pid"
  urc=$?
  printf '%s-teardown %s %s\n' "$name" "$urc" "$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $t0}")" | tee -a /vm-out/restore-times.txt
  left=$(storage_objects)
  echo "storage objects left after $name's SIGTERM: $left"
}
want_mapped=$(jq '[.plan[] | select(.op == "symlink" and (.path | test("/acls/")))] | length' /vm-out/restore-cold.json)
if [[ ${BENCH_DAEMON:-${BENCH_UPSTREAM:-0}} == 1 ]]; then
  # ours as a daemon, as upstream runs below: `ceph-iscsi api` restores at start-up and
  # tears down on SIGTERM from what it remembers LIO holds (the restore --teardown above
  # is a new process, which must read the whole tree first). debug logs the stages
  # ("reconcile timings") and the apply's per-op times are in restore --json above.
  D=/run/bench-daemon.cfg
  { cat "$CFG"; printf '%s\n' 'api_port = 5000' 'api_user = admin' 'api_password = benchOurs9' \
    'trusted_ip_list = 127.0.0.1,192.0.2.10' 'debug = true'; } >"$D"
  phase daemon-start
  t0=$EPOCHREALTIME
  "$BIN" api --config "$D" --gateway-name "$GW" --listen 127.0.0.1:5000 >/vm-out/daemon-api.log 2>&1 &
  DPID=$!
  watch_daemon daemon "$DPID" http://127.0.0.1:5000/api admin:benchOurs9 || rc=1
  sigterm daemon "$DPID"
  ((left == 0)) || rc=1
fi
if [[ ${BENCH_UPSTREAM:-0} == 1 ]]; then
  # Upstream's restore is rbd-target-api's start-up (Debian's ceph-iscsi, unpacked on the
  # host by dist/dev/upstream.sh): same object, same tcmu-runner, in a private mount and
  # UTS namespace where this guest is $GW (upstream's name for itself is
  # socket.getfqdn()), as vm/upstreamapi_vmtest_test.go runs it.
  UP=${BENCH_UPSTREAM_ROOT:?} E=/run/bench-up-etc
  mkdir -p "$E"
  cat >"$E/iscsi-gateway.cfg" <<UPEOF
[config]
cluster_name = ceph
cluster_client_name = client.admin
ceph_config_dir = ${VMTEST_CEPH_DIR:?}
pool = rbd
gateway_conf = $OBJ
api_secure = false
api_host = 0.0.0.0
api_port = 5001
api_user = admin
api_password = benchUpstream9
trusted_ip_list = 127.0.0.1,192.0.2.10
minimum_gateways = 1
log_to_file = false
log_to_stderr = true
UPEOF
  { echo "192.0.2.10 $GW"; cat /etc/hosts; } >"$E/hosts"
  phase upstream-start
  t0=$EPOCHREALTIME
  unshare --mount --uts --propagation private bash -c "hostname $GW && mount --bind $E /etc/ceph && mount --bind $E/hosts /etc/hosts &&
    PYTHONPATH=$UP/usr/lib/python3/dist-packages exec /usr/bin/python3 $UP/usr/bin/rbd-target-api" >/vm-out/upstream-api.log 2>&1 &
  UPID=$!
  watch_daemon upstream "$UPID" http://127.0.0.1:5001/api admin:benchUpstream9 || rc=1
  sigterm upstream "$UPID"
fi
phase end
# tcmu-runner logs each device it opened ("address: {...}") with a timestamp
[[ -s /var/log/tcmu-runner.log ]] && cp /var/log/tcmu-runner.log /vm-out/
exit $rc
