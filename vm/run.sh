#!/usr/bin/env bash
# run.sh - run a script as root inside a throw-away qemu guest (TCG, no KVM) that boots
# Debian's stock kernel, so tests can use kernel features this machine lacks (configfs,
# LIO, TCMU, iSCSI initiator, krbd).
#
# usage: vm/run.sh /abs/or/rel/guest-script [args...]
#
# The guest sees the host's / read-only over 9p with a tmpfs overlay on top (it runs the
# host's binaries at the same paths and can write anywhere without touching the host),
# plus the out directory read-write at /vm-out. vm/guest-init.sh is PID 1: it mounts
# configfs, loads sd_mod, brings lo up, runs the script with bash (stdout+stderr go to the
# serial console, which is this program's stdout, and to /vm-out/guest.log) and writes
# its exit code to /vm-out/rc. run.sh exits with that code; 125 when the guest never
# reported one (panic, hang: qemu is killed after CEPH_ISCSI_VM_TIMEOUT seconds).
#
# env:
#   CEPH_ISCSI_VM_CACHE    kernel + initramfs cache (default $HOME/.cache/ceph-iscsi-vm)
#   CEPH_ISCSI_VM_OUT      host dir shared rw as /vm-out (default: a new mktemp -d)
#   CEPH_ISCSI_VM_TIMEOUT  hard limit for the whole qemu run in seconds (default 600)
#   CEPH_ISCSI_VM_MEM      guest RAM (default 1024M)
#   CEPH_ISCSI_VM_SMP      guest vCPUs (default: host CPUs, at most 4)
#   CEPH_ISCSI_VM_KERNEL_PKG  kernel package (default: what linux-image-amd64 depends on)
#   CEPH_ISCSI_VM_ENV      space-separated NAME=VALUE pairs exported to the guest script
#
# host packages (Debian 12): qemu-system-x86 busybox-static kmod, plus whatever the guest
# script runs (the guest uses the host's binaries): open-iscsi libiscsi-bin tcmu-runner,
# ceph-mon ceph-osd ceph-common for Ceph. The kernel is fetched with `apt-get download`
# and unpacked into the cache (no dpkg install, nothing under /boot or /lib/modules).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CEPH_ISCSI_VM_CACHE:-${HOME:-/root}/.cache/ceph-iscsi-vm}
TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-600}
MEM=${CEPH_ISCSI_VM_MEM:-1024M}
SMP=${CEPH_ISCSI_VM_SMP:-$(n=$(nproc); ((n > 4)) && n=4; echo "$n")}

[[ $# -ge 1 ]] || { echo "usage: $0 guest-script [args...]" >&2; exit 2; }
SCRIPT=$(realpath "$1"); shift
[[ -f $SCRIPT ]] || { echo "run.sh: no such script: $SCRIPT" >&2; exit 2; }
for tool in qemu-system-x86_64 busybox depmod modprobe apt-get dpkg-deb flock; do
  command -v "$tool" >/dev/null || {
    echo "run.sh: $tool missing: apt-get install -y --no-install-recommends qemu-system-x86 busybox-static kmod" >&2
    exit 2
  }
done

T0=$EPOCHREALTIME
log() { printf '[vm %6.1fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME - $T0}")" "$*" >&2; }

# Kernel: the package linux-image-amd64 currently depends on (security updates replace old
# versions on the mirror, so never hard-code it), unpacked once per version.
prepare_kernel() {
  local pkg=${CEPH_ISCSI_VM_KERNEL_PKG:-}
  if [[ -z $pkg ]]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  [[ -n $pkg ]] || { log "cannot resolve the kernel package: run apt-get update"; exit 3; }
  KDIR=$CACHE/$pkg
  if [[ ! -e $KDIR/.done ]]; then
    log "fetching $pkg into $KDIR"
    rm -rf "$KDIR"; mkdir -p "$KDIR/deb"
    (cd "$KDIR/deb" && apt-get download "$pkg" >download.log 2>&1) ||
      { cat "$KDIR/deb/download.log" >&2; log "apt-get download $pkg failed"; exit 3; }
    dpkg-deb -x "$KDIR"/deb/*.deb "$KDIR/root"
    rm -rf "$KDIR/deb" "$KDIR/root/usr/share/doc"
    depmod -b "$KDIR/root" "$(ls "$KDIR/root/lib/modules")"
    touch "$KDIR/.done"
  fi
  KV=$(ls "$KDIR/root/lib/modules")
  VMLINUZ=$KDIR/root/boot/vmlinuz-$KV
}

# Initramfs: busybox + the modules needed to mount the host root (virtio-pci, 9p,
# overlay and their dependencies). Rebuilt when this file or the kernel changes.
prepare_initramfs() {
  INITRD=$KDIR/initramfs.cpio
  local stamp
  stamp=$(cat "${BASH_SOURCE[0]}" <(echo "$KV") | sha1sum | cut -c1-16)
  [[ -s $INITRD && $(cat "$KDIR/initramfs.stamp" 2>/dev/null) == "$stamp" ]] && return
  log "building initramfs"
  local w m f
  w=$(mktemp -d)
  mkdir -p "$w"/{bin,dev,proc,sys,mods,host,rw,newroot}
  cp "$(command -v busybox)" "$w/bin/busybox"
  : >"$w/mods/order"
  for m in virtio_pci 9pnet_virtio 9p overlay; do
    modprobe -d "$KDIR/root" -S "$KV" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | awk '!seen[$0]++' | while read -r f; do
    cp "$f" "$w/mods/"
    basename "$f" >>"$w/mods/order"
  done
  cat >"$w/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m || echo "vm: insmod $m failed"; done
die() { echo "vm: $*"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host ||
  die "mounting the host root failed"
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  die "overlay mount failed"
mkdir -p /newroot/vm-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmout /newroot/vm-out ||
  die "mounting the out share failed"
stage2=$(sed -n 's/.*vmtest.stage2=\([^ ]*\).*/\1/p' /proc/cmdline)
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /bin/bash "$stage2"
EOF
  chmod +x "$w/init"
  (cd "$w" && find . | busybox cpio -o -H newc 2>/dev/null) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  echo "$stamp" >"$KDIR/initramfs.stamp"
  rm -rf "$w"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
prepare_kernel
prepare_initramfs
flock -u 9
exec 9>&-

OUT=${CEPH_ISCSI_VM_OUT:-$(mktemp -d /tmp/ceph-iscsi-vm.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/rc" "$OUT/console.log" "$OUT/guest.log"
# The script and its arguments travel through the out share: no quoting on the cmdline.
{
  printf 'VM_KV=%q\n' "$KV"
  printf 'VM_KMODDIR=%q\n' "$KDIR/root/lib/modules/$KV"
  printf 'VM_SCRIPT=%q\n' "$SCRIPT"
  printf 'VM_ARGS=('; for a in "$@"; do printf '%q ' "$a"; done; printf ')\n'
  printf 'VM_ENV=%q\n' "${CEPH_ISCSI_VM_ENV:-}"
} >"$OUT/job.env"

log "booting $KV (mem $MEM, smp $SMP, timeout ${TIMEOUT}s): $SCRIPT $*"
log "out dir $OUT"
set +e
# --foreground keeps qemu in our process group, so Ctrl-C or a CI job killing the group
# stops it too; the time limit still applies to qemu itself.
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp "$SMP" -m "$MEM" \
  -display none -vga none -no-reboot -monitor none -serial stdio -nic none \
  -kernel "$VMLINUZ" -initrd "$INITRD" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off vmtest.stage2=$HERE/guest-init.sh" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$OUT,mount_tag=vmout,security_model=none,multidevs=remap" \
  </dev/null 2>&1 | stdbuf -oL tr -d '\r' | tee "$OUT/console.log"
qrc=${PIPESTATUS[0]}
set -e
if [[ -s $OUT/rc ]]; then
  rc=$(cat "$OUT/rc")
  log "guest script exit code $rc (qemu rc $qrc); log: $OUT/guest.log"
  exit "$rc"
fi
if ((qrc == 124 || qrc == 137)); then
  log "TIMEOUT: qemu killed after ${TIMEOUT}s; console: $OUT/console.log"
else
  log "guest reported no exit code (qemu rc $qrc); console: $OUT/console.log"
fi
exit 125
