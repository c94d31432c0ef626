#!/usr/bin/env bash
# demo.sh - `make demo`: the gateway's main job, end to end, on this machine.
#
# A Ceph cluster is made here (dist/dev/ceph-cluster.sh), then the vm/ guest boots
# Debian's kernel (real LIO, TCMU, open-iscsi) and restarts a copy of it. In the guest
# (dist/demo/guest.sh) the freshly built .deb is installed, rbd-target-api and
# rbd-target-gw run as their systemd units would, a target, gateway, 1 GiB disk and a
# CHAP + mutual-CHAP client are configured with gwcli one-shot commands, open-iscsi logs
# in, makes an ext4 file system and writes a file, /metrics shows the client's writes,
# and everything is stopped cleanly. Back here the cluster is
# restarted and the image read through librbd (rbd export): the file, found in it
# with debugfs, must have the checksum the guest computed. Then it all goes away.
#
# Each step prints its duration; a failing one stops the demo with its log's tail and
# exit 1. Root is needed only when something is missing (it runs `make deps`).
#
# env: DEMO_KEEP=1 keeps the work dir; the vm/run.sh settings (CEPH_ISCSI_VM_*).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
T0=$EPOCHREALTIME

OUT=$(mktemp -d /tmp/ceph-iscsi-demo.XXXXXX)
export DEMO_LOGS=$OUT/logs DEMO_SUMMARY=$OUT/summary.txt
mkdir -p "$DEMO_LOGS"
C=$OUT/ceph
cleanup() {
  local rc=$?
  for d in "$C" "$OUT/ceph-after"; do
    [[ -d $d ]] && "$ROOT/dist/dev/ceph-cluster.sh" down "$d" >/dev/null 2>&1 || true
  done
  if ((rc == 0)) && [[ ${DEMO_KEEP:-} != 1 ]]; then
    rm -rf "$OUT"
  else
    echo "[demo] logs kept in $OUT (logs/, vm.log, rbd-target-api.log)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# --- what it needs --------------------------------------------------------------------
TOOLS=(go gcc pkg-config curl qemu-system-x86_64 busybox depmod ceph-mon ceph-osd ceph rbd
  tcmu-runner iscsiadm iscsid mkfs.ext4 debugfs dpkg-deb /usr/bin/python3 readelf)
missing() {
  local t
  for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null || echo "$t"; done
  [[ -e /usr/include/rados/librados.h && -e /usr/include/rbd/librbd.h ]] || echo librados-dev
}
deps() {
  local m
  m=$(missing | tr '\n' ' ')
  if [[ -z $m ]]; then echo "everything is installed"; show "already installed"; return 0; fi
  echo "missing: $m"
  [[ $(id -u) == 0 ]] || { echo "missing $m: run make deps as root (or make demo as root)"; return 1; }
  make -C "$ROOT" deps
  m=$(missing | tr '\n' ' ')
  [[ -z $m ]] || { echo "still missing after make deps: $m"; return 1; }
  show "installed by make deps: $m"
}

build() {
  make -C "$ROOT" -s deb
  local debs=("$ROOT"/out/ceph-iscsi_*_amd64.deb)
  ((${#debs[@]} == 1)) && [[ -f ${debs[0]} ]]
  cp "${debs[0]}" "$OUT/"
  show "$(basename "${debs[0]}") ($(du -h "${debs[0]}" | cut -f1))"
}

# The cluster is made here (fast), stopped cleanly and restarted in the guest by
# vm/guest-vmtest.sh, as vm/test.sh does; random ports, as other clusters may run here.
make_cluster() {
  local ok=0 mon osd
  for _ in 1 2 3 4 5; do
    rm -rf "$C"
    mon=$((20000 + 2 * (RANDOM % 6000)))
    osd=$((42000 + 100 * (RANDOM % 200)))
    if CEPH_DEV_MON_PORT=$mon CEPH_DEV_OSD_PORTS=$osd-$((osd + 99)) \
      "$ROOT/dist/dev/ceph-cluster.sh" up "$C" >"$OUT/ceph-up.log" 2>&1; then
      ok=1; break
    fi
    grep -q 'already in use' "$OUT/ceph-up.log" || break
  done
  cat "$OUT/ceph-up.log"
  ((ok == 1))
  "$ROOT/dist/dev/ceph-cluster.sh" down "$C"
  rm -rf "$C/log"/* "$C"/crash/*
  show "1 mon + 1 OSD (memstore) on 127.0.0.1:$mon, pool rbd"
}

in_vm() {
  local debs=("$OUT"/ceph-iscsi_*_amd64.deb)
  export CEPH_ISCSI_VM_OUT=$OUT CEPH_ISCSI_VM_MEM=${CEPH_ISCSI_VM_MEM:-3072M}
  # ~3 min on an idle 2-core machine; a loaded one (other VMs under TCG) can triple it
  export CEPH_ISCSI_VM_TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-900}
  export CEPH_ISCSI_VM_ENV="VMTEST_CEPH_SRC=/vm-out/ceph VMTEST_CEPH_HOSTDIR=$C DEMO_DEB=/vm-out/$(basename "${debs[0]}") DEMO_N=$DEMO_N"
  local rc=0 t0=$EPOCHREALTIME
  echo "[demo] booting the VM (Debian's kernel under qemu; the guest's steps follow)"
  # the guest's own step lines, live; everything else goes to vm.log
  set +e
  "$ROOT/vm/run.sh" "$ROOT/vm/guest-vmtest.sh" "$HERE/guest.sh" 2>&1 | tee "$OUT/vm.log" |
    grep --line-buffered '^\[demo\]'
  local st=("${PIPESTATUS[@]}")
  set -e
  rc=${st[0]}
  DEMO_N=$(wc -l <"$DEMO_SUMMARY")
  if ((rc != 0)); then
    echo "[demo] FAIL: the guest exited $rc (125: it hung or died); last lines of $OUT/vm.log:"
    grep -v '^\[demo\]' "$OUT/vm.log" | tail -n 15 | sed 's/^/[demo] | /'
    # a step cut short by the time limit printed no FAIL line of its own
    local last
    last=$(ls -t "$DEMO_LOGS"/*.log | head -1)
    if ! grep -q "FAIL" <(tail -n 1 "$DEMO_SUMMARY"); then
      echo "[demo] --- the step running then, last lines of $last:"
      tail -n 15 "$last" | sed 's/^/[demo] | /'
    fi
    exit 1
  fi
  # the VM's own time: its wall time less the guest's steps
  local all
  all=$(awk -F'\t' '{s += $1} END {print s}' "$DEMO_SUMMARY")
  printf '%s\t%s\n' "$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0 - ($all - $HOST_SUM)}")" \
    "VM: boot, Ceph restart, tcmu-runner, power-off" >>"$DEMO_SUMMARY"
}

# The guest's cluster copy, restarted here: what the initiator wrote, read through librbd.
restart_cluster() {
  local from
  from=$(cat "$OUT/ceph-after/guest-dir")
  sed -i "s#$from#$OUT/ceph-after#g" "$OUT/ceph-after/ceph.conf"
  rm -f "$OUT/ceph-after"/run/*
  "$ROOT/dist/dev/ceph-cluster.sh" up "$OUT/ceph-after"
}

check_image() {
  local conf=(-c "$OUT/ceph-after/ceph.conf" -k "$OUT/ceph-after/ceph.client.admin.keyring")
  rbd "${conf[@]}" info rbd/demo
  rbd "${conf[@]}" export rbd/demo "$OUT/demo.img"
  local want got
  want=$(cat "$OUT/payload.sha256")
  debugfs -R 'stat /payload.bin' "$OUT/demo.img"
  got=$(debugfs -R 'cat /payload.bin' "$OUT/demo.img" 2>/dev/null | sha256sum | cut -d' ' -f1)
  echo "want $want, got $got"
  [[ -n $want && $got == "$want" ]]
  show "rbd export rbd/demo: $(($(stat -c %s "$OUT/demo.img") >> 20)) MiB; /payload.bin in its ext4 has sha256 $got, as written in the guest"
}

teardown() {
  "$ROOT/dist/dev/ceph-cluster.sh" down "$OUT/ceph-after" --purge
  rm -rf "$C" "$OUT/demo.img"
  show "cluster stopped and deleted; the VM is off"
}

echo "[demo] ceph-iscsi: an initiator writes to Ceph through the gateway (work dir $OUT)"
step "dependencies (make deps when missing)" deps
step "build the binary and the package (make deb)" build
step "Ceph cluster (dev, memstore)" make_cluster
HOST_SUM=$(awk -F'\t' '{s += $1} END {printf "%.1f", s}' "$DEMO_SUMMARY")
in_vm
step "restart the guest's cluster on the host" restart_cluster
step "read the image through librbd, check the file" check_image
step "tear down" teardown

total=$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $T0}")
echo "[demo] summary:"
awk -F'\t' '{printf "[demo]   %6.1f s  %s\n", $1, $2}' "$DEMO_SUMMARY"
echo "[demo] PASS: $(wc -l <"$DEMO_SUMMARY") steps in $total s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
