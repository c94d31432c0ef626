# bench/seed-cluster.sh - the host half of the VM benches (api-vm.sh, gw-vm.sh,
# restore-vm.sh), sourced at their top: PATH with go, log (seconds since sourcing), and
#   vm_out NAME     OUT (CEPH_ISCSI_VM_OUT or a new /tmp/NAME.XXXXXX, exported as that),
#                   KEEP (1 when the caller chose OUT) and C=$OUT/ceph;
#   seed_cluster    make the cluster in $C on the host (fast), seed the layout
#                   ("${LAYOUT[@]}") into it with $OUT/restore-layout, and stop it cleanly;
#                   vm/guest-vmtest.sh restarts it in the guest, as vm/test.sh does. Needs
#                   ROOT, OUT, C, LAYOUT (empty: nothing to seed, the pool only);
#   vm_tcmu         TCMU (BENCH_TCMU, default stub) and VMTCMU (1 for real);
#   vm_run GUEST PATTERN ENV
#                   one vm/run.sh boot of vm/guest-vmtest.sh with bench/GUEST, the guest
#                   seeing the cluster and ENV (CEPH_ISCSI_VM_ENV); output in $OUT/vm.log,
#                   the lines matching PATTERN echoed to stderr; its exit code in rc;
#   vm_done         remove OUT if rc is 0 and the caller did not choose it; exit rc.
export PATH=$PATH:/usr/local/go/bin
T0=$EPOCHREALTIME
log() { printf '[bench %6.1fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME - $T0}")" "$*" >&2; }

vm_out() {
  KEEP=${CEPH_ISCSI_VM_OUT:+1}
  OUT=${CEPH_ISCSI_VM_OUT:-$(mktemp -d "/tmp/$1.XXXXXX")}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  export CEPH_ISCSI_VM_OUT=$OUT
  C=$OUT/ceph
}

vm_tcmu() {
  TCMU=${BENCH_TCMU:-stub}
  VMTCMU=0
  [[ $TCMU == real ]] && VMTCMU=1
  return 0
}

vm_run() {
  export CEPH_ISCSI_VM_ENV="VMTEST_CEPH_SRC=/vm-out/ceph VMTEST_CEPH_HOSTDIR=$C $3"
  set +e
  "$ROOT/vm/run.sh" "$ROOT/vm/guest-vmtest.sh" "$HERE/$1" >"$OUT/vm.log" 2>&1
  rc=$?
  set -e
  grep -E "$2" "$OUT/vm.log" >&2 || true
}

vm_done() {
  if ((rc == 0)) && [[ -z $KEEP ]]; then rm -rf "$OUT"; else echo "artefacts in $OUT" >&2; fi
  exit "$rc"
}

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
