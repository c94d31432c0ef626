#!/bin/bash
# restore-guest.sh - the guest half of bench/restore-vm.sh, run by vm/guest-vmtest.sh once
# Ceph and tcmu-runner are up: restores the seeded layout from cold, again (in sync),
# then tears it down, saving each --json report and wall time to /vm-out.
set -uo pipefail
BIN=${BENCH_RESTORE_BIN:?} GW=${BENCH_GATEWAY:?} OBJ=${BENCH_OBJECT:?}
CFG=/run/bench-iscsi-gateway.cfg
cat >"$CFG" <<CFGEOF
[config]
cluster_client_name = client.admin
pool = rbd
gateway_conf = $OBJ
api_secure = false
minimum_gateways = 1
CFGEOF
run() { # name [flags]: one timed restore
  local name=$1 t0 rc; shift
  t0=$EPOCHREALTIME
  "$BIN" restore --json --config "$CFG" --gateway-name "$GW" "$@" >"/vm-out/restore-$name.json" 2>"/vm-out/restore-$name.err"
  rc=$?
  printf '%s %s %s\n' "$name" "$rc" "$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME - $t0}")" | tee -a /vm-out/restore-times.txt
  return $rc
}
if [[ ${BENCH_TCMU:-stub} == stub ]]; then
  # No tcmu-runner has run in this boot (guest-vmtest.sh skipped it), so the kernel
  # enables user backstores without one: the LIO objects are the same, only the I/O
  # path (and tcmu-runner's per-device image open) is missing. restore refuses to
  # enable them without a process named tcmu-runner; a renamed sleep satisfies it.
  cp /bin/sleep /run/tcmu-runner
  /run/tcmu-runner 100000 &
  STUB=$!
  trap 'kill $STUB' EXIT
fi
: >/vm-out/restore-times.txt
rc=0
run cold || rc=1
n=$(find /sys/kernel/config/target/core -maxdepth 2 -mindepth 2 -type d ! -path '*/alua*' | wc -l)
echo "storage objects in LIO after the cold restore: $n"
run warm || rc=1
# a teardown dry run observes and plans like the warm run but reads no image sizes:
# the difference is what the 256 librbd image opens cost
run teardown-dry --teardown --dry-run || rc=1
run teardown --teardown || rc=1
left=$(find /sys/kernel/config/target/iscsi -maxdepth 1 -mindepth 1 -type d ! -name discovery_auth | wc -l)
echo "targets left after teardown: $left"
((left == 0)) || rc=1
# tcmu-runner logs each device it opened ("address: {...}") with a timestamp
[[ -s /var/log/tcmu-runner.log ]] && cp /var/log/tcmu-runner.log /vm-out/
exit $rc
