# bench/seed-cluster.sh - sourced by the VM benches (restore-vm.sh, gw-vm.sh): make the
# cluster in $C on the host (fast), seed the layout ("${LAYOUT[@]}") into it with
# $OUT/restore-layout, and stop it cleanly; vm/guest-vmtest.sh restarts it in the guest,
# as vm/test.sh does. Needs ROOT, OUT, C, LAYOUT (empty: nothing to seed, the pool
# only) and a log function.
seed_cluster() {
  local ok=0 mon seeded=0
  for _ in 1 2 3 4 5; do
    rm -rf "$C"
    mon=$((20000 + RANDOM % 20000))
    if CEPH_DEV_MON_PORT=$mon CEPH_DEV_OSD_PORTS=$((mon + 2))-$((mon + 101)) \
      "$ROOT/dist/dev/ceph-cluster.sh" up "$C" >"$OUT/ceph-up.log" 2>&1; then
      ok=1; break
    fi
    grep -q 'already in use' "$OUT/ceph-up.log" || break
  done
  ((ok == 1)) || { cat "$OUT/ceph-up.log" >&2; "$ROOT/dist/dev/ceph-cluster.sh" down "$C" >/dev/null 2>&1 || true; exit 1; }
  if ((${#LAYOUT[@]} == 0)); then
    seeded=1
  else
    "$OUT/restore-layout" seed -conf "$C/ceph.conf" "${LAYOUT[@]}" && seeded=1
  fi
  "$ROOT/dist/dev/ceph-cluster.sh" down "$C" >>"$OUT/ceph-up.log" 2>&1
  ((seeded == 1)) || exit 1
  rm -rf "$C/log"/* "$C"/crash/*
  log "cluster seeded in $C ($(du -sh "$C" | cut -f1))"
}
