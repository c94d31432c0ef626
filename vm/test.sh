#!/usr/bin/env bash
# test.sh [go test flags...] - the real-kernel LIO tests (make vm-test): builds the vmtest
# binary of this package, prepares a Ceph cluster with an RBD image on the host (unless
# CEPH_ISCSI_VM_RBD=0; a missing Ceph tool or tcmu-runner is an error), and runs the
# binary inside a qemu guest through vm/run.sh. Exits with the test binary's exit code
# (125: the guest hung or died; see the console log in the out dir).
#
# env: CEPH_ISCSI_VM_RBD=0 skips Ceph and tcmu-runner (the user:rbd backstore is then only
# created and compared, no I/O); CEPH_ISCSI_VM_OUT keeps the artefacts in a directory of
# your choice (otherwise a temp dir, removed on success); see vm/run.sh for the others.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
T0=$EPOCHREALTIME
log() { printf '[vm-test %6.1fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME - $T0}")" "$*" >&2; }

KEEP=${CEPH_ISCSI_VM_OUT:+1}
OUT=${CEPH_ISCSI_VM_OUT:-$(mktemp -d /tmp/ceph-iscsi-vmtest.XXXXXX)}
mkdir -p "$OUT"
export CEPH_ISCSI_VM_OUT=$OUT

(cd "$ROOT" && go test -c -tags pacific,vmtest -o "$OUT/vm.test" ./vm/)
# the restore tests run the real command, as an operator would
(cd "$ROOT" && go build -tags pacific -o "$OUT/ceph-iscsi" .)
log "built $OUT/vm.test and $OUT/ceph-iscsi"

# Without Ceph the restore, block and api daemon tests cannot run: a missing tool is an
# error, not a reason to leave them out; CEPH_ISCSI_VM_RBD=0 is the explicit way.
RBD=${CEPH_ISCSI_VM_RBD:-1}
if [[ $RBD != 0 ]]; then
  for tool in ceph-mon ceph-mgr ceph-osd rbd tcmu-runner; do
    command -v "$tool" >/dev/null ||
      { log "no $tool: install it (make deps) or set CEPH_ISCSI_VM_RBD=0 to run without Ceph"; exit 1; }
  done
  # TestGwcliUpstreamAPI runs upstream's rbd-target-api (unpacked, never installed) in
  # the guest, which sees this machine's / and so its Python modules
  UPSTREAM=$("$ROOT/dist/dev/upstream.sh") || { log "cannot unpack upstream's ceph-iscsi (make deps)"; exit 1; }
  /usr/bin/python3 -c 'import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography, requests' ||
    { log "upstream's Python modules are missing: make deps"; exit 1; }
fi
ENV=()
if [[ $RBD != 0 ]]; then
  # Made on the host (fast), stopped cleanly (memstore saves on umount), restarted in the
  # guest. Random ports: other clusters may run on this host; in the guest nothing else does.
  C=$OUT/ceph
  # whatever fails or interrupts the preparation, no daemon outlives this script
  trap '"$ROOT/dist/dev/ceph-cluster.sh" down "$C" >/dev/null 2>&1 || true' EXIT
  ok=0
  for _ in 1 2 3 4 5; do
    rm -rf "$C"
    # the ranges of dist/dev/with-cluster.sh (see devcluster.freePorts)
    mon=$((20000 + 2 * (RANDOM % 6000)))
    osd=$((42000 + 100 * (RANDOM % 200)))
    if CEPH_DEV_MON_PORT=$mon CEPH_DEV_OSD_PORTS=$osd-$((osd + 99)) \
      "$ROOT/dist/dev/ceph-cluster.sh" up "$C" >"$OUT/ceph-up.log" 2>&1; then
      ok=1; break
    fi
    grep -q 'already in use' "$OUT/ceph-up.log" || break
  done
  if ((ok == 0)); then
    cat "$OUT/ceph-up.log" >&2
    "$ROOT/dist/dev/ceph-cluster.sh" down "$C" >/dev/null 2>&1 || true
    log "host Ceph cluster failed"; exit 1
  fi
  # the image of lio/testdata/upstream-gateway.conf.json
  rbd -c "$C/ceph.conf" -k "$C/ceph.client.admin.keyring" create rbd/disk2 --size 1G
  "$ROOT/dist/dev/ceph-cluster.sh" down "$C" >>"$OUT/ceph-up.log" 2>&1
  trap - EXIT
  rm -rf "$C/log"/* "$C"/crash/*
  log "Ceph cluster with rbd/disk2 prepared in $C ($(du -sh "$C" | cut -f1))"
  # package rbd's real krbd/rbd-nbd mapping tests run in the same guest, on the same cluster
  (cd "$ROOT" && go test -c -tags pacific -o "$OUT/rbd.test" ./rbd/)
  ENV=("VMTEST_CEPH_SRC=/vm-out/ceph" "VMTEST_CEPH_HOSTDIR=$C" "VMTEST_RBD_TEST=/vm-out/rbd.test"
    "VMTEST_RESTORE_BIN=/vm-out/ceph-iscsi" "VMTEST_UPSTREAM=$UPSTREAM/root")
  export CEPH_ISCSI_VM_MEM=${CEPH_ISCSI_VM_MEM:-3072M}
fi
export CEPH_ISCSI_VM_ENV="${ENV[*]}"

set +e
# the suite takes ~5-8 min under TCG (TestGwcliUpstreamAPI alone 1.5-4.5); a busy 2-core host can double that
export CEPH_ISCSI_VM_TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-1800}
"$HERE/run.sh" "$HERE/guest-vmtest.sh" /vm-out/vm.test -test.v -test.timeout=1680s "$@"
rc=$?
set -e
if ((rc == 0)) && [[ -z $KEEP ]]; then
  rm -rf "$OUT"
  log "PASS"
else
  log "done, rc=$rc (artefacts in $OUT: console.log, guest.log, configfs dumps)"
fi
exit $rc
