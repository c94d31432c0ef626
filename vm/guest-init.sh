#!/bin/bash
# guest-init.sh - PID 1 of the vm/run.sh guest, after switch_root into the overlay of the
# host root. Sets up a minimal system (no udev, no systemd), runs the job's script, writes
# its exit code to /vm-out/rc and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
unset CEPH_CONF CEPH_KEYRING CEPH_ARGS

finish() {
  echo "$1" >/vm-out/rc
  echo "VM-EXIT=$1"
  sync
  busybox poweroff -f
  echo o >/proc/sysrq-trigger
  sleep 60
}

# shellcheck disable=SC1091
. /vm-out/job.env || finish 124
for kv in $VM_ENV; do export "${kv?}"; done

mount -t tmpfs -o mode=755 tmpfs /run
# /tmp stays the overlaid host /tmp, so scripts and binaries there are visible
mkdir -p /run/lock /dev/pts /dev/shm /var/tmp
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd
ln -sf fd/0 /dev/stdin; ln -sf fd/1 /dev/stdout; ln -sf fd/2 /dev/stderr
# the guest kernel's modules (the host has none for this kernel)
mkdir -p "/usr/lib/modules/$VM_KV"
mount --bind "$VM_KMODDIR" "/usr/lib/modules/$VM_KV"
echo /sbin/modprobe >/proc/sys/kernel/modprobe
modprobe configfs && mount -t configfs configfs /sys/kernel/config
# no udev: nothing loads drivers for hot-plugged devices, so iSCSI LUNs would never get a
# /dev/sdX without sd_mod loaded up front
modprobe sd_mod
hostname vmtest
ip link set lo up

export VM_OUT=/vm-out VM_KV
echo "vm: up at uptime $(cut -d' ' -f1 /proc/uptime)s; running $VM_SCRIPT ${VM_ARGS[*]}"
cd /
bash "$VM_SCRIPT" "${VM_ARGS[@]}" 2>&1 | tee /vm-out/guest.log
rc=${PIPESTATUS[0]}
echo "vm: script done at uptime $(cut -d' ' -f1 /proc/uptime)s, rc=$rc"
finish "$rc"
