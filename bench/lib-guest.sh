# bench/lib-guest.sh - sourced by the guest halves of the VM benches (gw-guest.sh,
# restore-guest.sh), which vm/guest-vmtest.sh runs by their host path: the vm/run.sh guest
# sees the host's / read-only over 9p, this file included.

# guest_cfg FILE [LINE...]: our iscsi-gateway.cfg for the seeded layout (object $OBJ in
# pool rbd), with LINEs appended to its [config] section.
guest_cfg() {
  local f=$1; shift
  cat >"$f" <<CFGEOF
[config]
cluster_client_name = client.admin
pool = rbd
gateway_conf = ${OBJ:?}
api_secure = false
minimum_gateways = 1
CFGEOF
  if (($#)); then printf '%s\n' "$@" >>"$f"; fi
}

# tcmu_stub: with BENCH_TCMU=stub (the default), no tcmu-runner has run in this boot
# (guest-vmtest.sh skipped it), so the kernel enables user backstores without one: the
# LIO objects are the same, only the I/O path (and tcmu-runner's per-device image open)
# is missing. restore refuses to enable them without a process named tcmu-runner; a
# renamed sleep, killed on exit, satisfies it.
tcmu_stub() {
  [[ ${BENCH_TCMU:-stub} == stub ]] || return 0
  cp /bin/sleep /run/tcmu-runner
  /run/tcmu-runner 100000 &
  STUB=$!
  trap 'kill $STUB' EXIT
}

# storage_objects: how many storage objects LIO holds.
storage_objects() {
  find /sys/kernel/config/target/core -maxdepth 2 -mindepth 2 -type d ! -path '*/alua*' | wc -l
}
