#!/bin/bash
# guest-vmtest.sh TESTBIN [go test flags...] - runs inside the vm/run.sh guest: loads LIO,
# sets up open-iscsi (and, when VMTEST_CEPH_SRC names a cluster prepared on the host, a
# Ceph mon+mgr+osd and tcmu-runner), then runs the vmtest binary from the vm package directory.
# Every fork+exec costs ~50 ms under TCG: the work happens in the test binary.
set -uo pipefail
T0=$EPOCHREALTIME
step() { printf '[guest %5.1fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME - $T0}")" "$*"; }
BIN=$1; shift
PKGDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The packaged units give Ceph's daemons and tcmu-runner (LimitNOFILE) far more than the
# shell's 1024 open files: tcmu-runner opens every image with its own RADOS connection,
# and at ~73 images it ran out, leaving the kernel's enable waiting for its answer forever.
ulimit -n 1048576 || { echo "raising the open-file limit failed"; exit 1; }

# LIO: the core, the iSCSI fabric and the backstores package lio may create (it never
# loads modules itself). target/iscsi appears on the first mkdir, done by Apply.
# target_core_mod picks its dbroot when it loads: /etc/target if that directory exists,
# else /var/target. The host may have one (targetcli, rtslib): hide it in the guest's
# overlay so dbroot is the reference's /var/target on every machine.
rm -rf /etc/target
modprobe -a target_core_mod iscsi_target_mod target_core_file target_core_iblock target_core_user ||
  { echo "modprobe failed"; exit 1; }
# krbd and rbd-nbd: restore's block disks and package rbd's mapping tests (no udev
# here to load them on demand)
if [[ -n ${VMTEST_CEPH_SRC:-} ]]; then
  modprobe -a rbd nbd || { echo "modprobe rbd nbd failed"; exit 1; }
fi
mkdir -p /etc/target   # after the load: where rtslib-based tools save LIO state
# Debian's rtslib-fb (upstream's rbd-target-api) writes its preferred dbroot on every
# storage object; the kernel refuses once a fabric is registered (iscsi above), which
# rtslib accepts only if the directory exists. dbroot stays /var/target.
mkdir -p /etc/rtslib-fb-target
# upstream refuses loopback portals: give the gateway a documentation address on lo
ip addr add 192.0.2.10/32 dev lo
step "modules loaded"

# open-iscsi: fresh initiator name (the test binds its own names per iface), iscsid up
mkdir -p /etc/iscsi/ifaces /run/lock/iscsi
echo "InitiatorName=iqn.2004-10.com.example:vmtest-default" >/etc/iscsi/initiatorname.iscsi
rm -rf /etc/iscsi/nodes /etc/iscsi/send_targets
iscsid || { echo "iscsid failed"; exit 1; }

TCMU_PID=
if [[ -n ${VMTEST_CEPH_SRC:-} ]]; then
  # A cluster made and cleanly stopped on the host (vm/test.sh): copy it to a tmpfs,
  # rewrite its paths and restart the daemons directly (no Python CLI: ~4 s per call).
  C=/run/ceph-vm
  cp -a "$VMTEST_CEPH_SRC" "$C"
  sed -i "s#$VMTEST_CEPH_HOSTDIR#$C#g" "$C/ceph.conf"
  rm -f "$C"/run/*.pid "$C"/run/*.asok
  mkdir -p /etc/ceph
  cp "$C/ceph.conf" /etc/ceph/ceph.conf   # what tcmu-runner's rbd handler reads
  cp "$C/ceph.client.admin.keyring" /etc/ceph/ceph.client.admin.keyring
  ceph-mon -c "$C/ceph.conf" -i a || { echo "ceph-mon failed"; exit 1; }
  ceph-osd -c "$C/ceph.conf" -i 0 || { echo "ceph-osd failed"; tail -20 "$C/log/osd.0.log"; exit 1; }
  # tcmu-runner reports its images to the mgr, the api daemon's device status reads them;
  # Ceph's default periods, not the host's 1 s ones: every tick costs under TCG
  ceph-mgr -c "$C/ceph.conf" -i x --mgr_tick_period 2 --mgr_stats_period 5 ||
    { echo "ceph-mgr failed"; exit 1; }
  step "ceph daemons started"
  export VMTEST_CEPH_CONF=/etc/ceph/ceph.conf VMTEST_CEPH_DIR=$C
fi
# VMTEST_TCMU=0 (bench/restore-vm.sh) keeps tcmu-runner off even with Ceph: the kernel
# then enables user backstores without one, as long as none ran in this boot.
if [[ -n ${VMTEST_CEPH_SRC:-} && ${VMTEST_TCMU:-1} != 0 ]]; then
  # tcmu-runner needs /etc/tcmu/tcmu.conf to exist; it is ready when its rbd handler is.
  mkdir -p /etc/tcmu /var/log
  : >/etc/tcmu/tcmu.conf
  : >/var/log/tcmu-runner.log
  tcmu-runner >/run/tcmu-runner.out 2>&1 &
  TCMU_PID=$!
  for ((i = 0; i < 300; i++)); do
    grep -q 'Handler rbd is registered' /var/log/tcmu-runner.log 2>/dev/null && break
    kill -0 "$TCMU_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q 'Handler rbd is registered' /var/log/tcmu-runner.log; then
    echo "tcmu-runner did not come up:"; cat /run/tcmu-runner.out /var/log/tcmu-runner.log
    exit 1
  fi
  export VMTEST_TCMU_PID=$TCMU_PID
  step "tcmu-runner $TCMU_PID ready"
fi

cd "$PKGDIR"
step "running $BIN $*"
"$BIN" "$@"
rc=$?
step "test binary rc=$rc"
if ((rc == 0)) && [[ -n ${VMTEST_RBD_TEST:-} ]]; then
  # krbd and rbd-nbd against the guest's cluster: block-device mapping needs a kernel
  step "running $VMTEST_RBD_TEST (krbd, rbd-nbd)"
  (cd "$PKGDIR/../rbd" && CEPH_ISCSI_KERNEL_TESTS=1 CEPH_CONF=$C/ceph.conf CEPH_KEYRING=$C/ceph.client.admin.keyring \
    "$VMTEST_RBD_TEST" -test.run 'Kernel' -test.v -test.count=1 -test.timeout=300s)
  rc=$?
  step "rbd test binary rc=$rc"
fi
if ((rc != 0)); then
  echo "--- dmesg (tail)"; dmesg | tail -40
  [[ -n $TCMU_PID ]] && { echo "--- tcmu-runner.log (tail)"; tail -40 /var/log/tcmu-runner.log; }
fi
exit $rc
