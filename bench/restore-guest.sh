#!/bin/bash
# restore-guest.sh - the guest half of bench/restore-vm.sh, run by vm/guest-vmtest.sh once
# Ceph and tcmu-runner are up: restores the seeded layout from cold, again (in sync),
# then tears it down, saving each --json report and wall time to /vm-out.
set -uo pipefail
BIN=${BENCH_RESTORE_BIN:?} GW=${BENCH_GATEWAY:?} OBJ=${BENCH_OBJECT:?}
# shellcheck source=bench/lib-guest.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-guest.sh"
CFG=/run/bench-iscsi-gateway.cfg
guest_cfg "$CFG"
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
run cold || rc=1
echo "storage objects in LIO after the cold restore: $(storage_objects)"
run warm || rc=1
# a teardown dry run observes and plans like the warm run but reads no image sizes:
# the difference is what the 256 librbd image opens cost
run teardown-dry --teardown --dry-run || rc=1
run teardown --teardown || rc=1
left=$(find /sys/kernel/config/target/iscsi -maxdepth 1 -mindepth 1 -type d ! -name discovery_auth | wc -l)
echo "targets left after teardown: $left"
((left == 0)) || rc=1
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
  want_mapped=$(jq '[.plan[] | select(.op == "symlink" and (.path | test("/acls/")))] | length' /vm-out/restore-cold.json)
  t0=$EPOCHREALTIME
  unshare --mount --uts --propagation private bash -c "hostname $GW && mount --bind $E /etc/ceph && mount --bind $E/hosts /etc/hosts &&
    PYTHONPATH=$UP/usr/lib/python3/dist-packages exec /usr/bin/python3 $UP/usr/bin/rbd-target-api" >/vm-out/upstream-api.log 2>&1 &
  UPID=$!
  restored= serving=
  # a benchmark's progress poll, not an ordering of events: LIO restored (every LUN, every
  # mapped LUN, TPG enabled) and the API answering are read from outside
  while kill -0 "$UPID" 2>/dev/null; do
    now=$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $t0}")
    if [[ -z $restored ]]; then
      tpg=$(find /sys/kernel/config/target/iscsi -mindepth 2 -maxdepth 2 -name tpgt_1 2>/dev/null | head -1)
      if [[ -n $tpg && $(cat "$tpg/enable" 2>/dev/null) == 1 ]]; then
        luns=$(find "$tpg/lun" -mindepth 1 -maxdepth 1 -type d | wc -l)
        mapped=$(find "$tpg/acls" -mindepth 3 -maxdepth 3 -type l | wc -l)
        ((luns == BENCH_DISKS && mapped == want_mapped)) && restored=$now
      fi
    fi
    [[ -z $serving ]] && curl -sf -o /dev/null -u admin:benchUpstream9 http://127.0.0.1:5001/api && serving=$now
    [[ -n $restored && -n $serving ]] && break
    (( ${now%.*} > 900 )) && break
    sleep 0.5
  done
  echo "upstream-restored 0 ${restored:-none}" | tee -a /vm-out/restore-times.txt
  echo "upstream-serving 0 ${serving:-none}" | tee -a /vm-out/restore-times.txt
  t0=$EPOCHREALTIME
  kill -TERM "$UPID"
  wait "$UPID"
  urc=$?
  printf 'upstream-teardown %s %s\n' "$urc" "$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $t0}")" | tee -a /vm-out/restore-times.txt
  echo "storage objects left after upstream's SIGTERM: $(storage_objects)"
  [[ -n $restored ]] || rc=1
fi
# tcmu-runner logs each device it opened ("address: {...}") with a timestamp
[[ -s /var/log/tcmu-runner.log ]] && cp /var/log/tcmu-runner.log /vm-out/
exit $rc
