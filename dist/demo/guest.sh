#!/bin/bash
# guest.sh - the part of `make demo` that runs in the vm/run.sh guest, started by
# vm/guest-vmtest.sh once LIO is loaded, iscsid runs, the host-made Ceph cluster is
# restarted and tcmu-runner is up. It installs the package, runs rbd-target-api and
# rbd-target-gw as their systemd units would, configures an export with the package's
# gwcli (one-shot commands), writes a file system through open-iscsi with CHAP, scrapes
# /metrics, and stops everything cleanly so the host can read the image back.
#
# env (from demo.sh): DEMO_DEB, DEMO_N
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEMO_LOGS=/vm-out/logs DEMO_SUMMARY=/vm-out/summary.txt
# shellcheck source=lib.sh
. "$HERE/lib.sh"

IQN=iqn.2003-01.com.example.demo:target1
GW=demo-gw1                # this gateway's name in the configuration
PORTAL=192.0.2.10          # on lo (vm/guest-vmtest.sh): upstream refuses loopback portals
DISK=rbd/demo IMAGE=demo SIZE=1G
CLIENT=iqn.1994-05.com.example:demo-client
CHAP_USER=demo-initiator CHAP_PASS=demo-secret-12
MUTUAL_USER=demo-target MUTUAL_PASS=demo-mutual-34
API=http://127.0.0.1:5000
CFG=/etc/ceph/iscsi-gateway.cfg
RUN=/run/demo
mkdir -p "$RUN"

# --- the package -----------------------------------------------------------------------
# The guest's / is an overlay (tmpfs upper) on the host's read-only /: dpkg writes its
# database and files there, the host stays untouched.
install_package() {
  # man-db's trigger re-indexes every man page: a minute under TCG, for nothing here
  rm -f /var/lib/man-db/auto-update
  dpkg -i "$DEMO_DEB"
  [[ $(dpkg-query -W -f='${db:Status-Status} ${Version}' ceph-iscsi) == "installed $(dpkg-deb -f "$DEMO_DEB" Version)" ]]
  [[ $(readlink /usr/bin/rbd-target-api) == ceph-iscsi ]]
  show "$(dpkg-query -W -f='${Package} ${Version}' ceph-iscsi), $(/usr/bin/ceph-iscsi version)"
}

# The operator's part: the shipped sample cfg with the demo's credentials, and this
# gateway's name in the units' EnvironmentFile.
configure() {
  grep -q '^pool = rbd' "$CFG"
  sed -i -e 's/^# api_user = admin/api_user = demo/' -e 's/^# api_password = admin/api_password = demo-api-password/' \
    -e 's/^# minimum_gateways = 2/minimum_gateways = 1/' -e 's/^# trusted_ip_list = .*/trusted_ip_list = 127.0.0.1/' "$CFG"
  grep -q '^api_password = demo-api-password' "$CFG"
  echo "CEPH_ISCSI_GATEWAY_NAME=$GW" >/etc/default/rbd-target-api
  cp /etc/default/rbd-target-api /etc/default/rbd-target-gw
}

# --- daemons as systemd runs them ------------------------------------------------------
# start_unit UNIT: the unit's ExecStart with its EnvironmentFile(s) and, for
# Type=notify, a NOTIFY_SOCKET this script listens on; waits for READY=1 as systemd does.
start_unit() {
  local unit=/lib/systemd/system/$1.service name=$1
  local cmd
  cmd=$(sed -n 's/^ExecStart=//p' "$unit")
  grep -qx 'Type=notify' "$unit"
  rm -f "$RUN/$name".{notify,sock,pid,rc}
  : >"$RUN/$name.notify"
  /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as f:
    while True:
        f.write(s.recv(4096).decode() + "\n")' "$RUN/$name.sock" "$RUN/$name.notify" &
  echo $! >"$RUN/$name.listener"
  for _ in $(seq 200); do [[ -S $RUN/$name.sock ]] && break; sleep 0.05; done
  [[ -S $RUN/$name.sock ]] || { echo "the notify listener did not start"; return 1; }
  (
    set -a
    for envf in $(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$unit"); do
      # shellcheck disable=SC1090
      if [[ -r $envf ]]; then . "$envf"; fi
    done
    set +a
    export NOTIFY_SOCKET=$RUN/$name.sock
    $cmd >"/vm-out/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    rc=0
    wait $! || rc=$?
    echo $rc >"$RUN/$name.rc"
  ) &
  for _ in $(seq 100); do [[ -s $RUN/$name.pid ]] && break; sleep 0.05; done
  local pid
  pid=$(cat "$RUN/$name.pid")
  echo "started $cmd as pid $pid (from $unit)"
  for _ in $(seq 1200); do
    grep -qx 'READY=1' "$RUN/$name.notify" && break
    [[ ! -e $RUN/$name.rc ]] || { echo "$name exited $(cat "$RUN/$name.rc") during start-up:"; cat "/vm-out/$name.log"; return 1; }
    sleep 0.1
  done
  grep -qx 'READY=1' "$RUN/$name.notify" || { echo "no READY=1 from $name"; cat "/vm-out/$name.log"; return 1; }
  show "pid $pid: READY=1 (Type=notify), log /vm-out/$name.log"
}

# stop_unit UNIT: SIGTERM, as systemctl stop; wants STOPPING=1 and exit 0.
stop_unit() {
  local name=$1
  kill -TERM "$(cat "$RUN/$name.pid")"
  for _ in $(seq 3000); do [[ -s $RUN/$name.rc ]] && break; sleep 0.1; done
  kill "$(cat "$RUN/$name.listener")" 2>/dev/null || true
  cat "$RUN/$name.notify"
  grep -qx 'STOPPING=1' "$RUN/$name.notify" || { echo "no STOPPING=1"; return 1; }
  [[ $(cat "$RUN/$name.rc") == 0 ]] || { echo "$name exited $(cat "$RUN/$name.rc")"; tail -20 "/vm-out/$name.log"; return 1; }
}

# --- gwcli one-shot commands ----------------------------------------------------------
# gw WORDS...: the installed gwcli as root, reading $CFG like upstream's; this host's
# gateway name is the units' (the guest's FQDN is not $GW), and $GW's API is reached at
# $API (upstream dials the gateway's name, which nothing resolves in the guest).
gw() {
  echo "# gwcli $*"
  CEPH_ISCSI_GATEWAY_NAME=$GW gwcli --peer "$GW=$API" "$@"
}

create_target() { gw /iscsi-targets create "$IQN"; }
create_gateway() { gw "/iscsi-targets/$IQN/gateways" create "$GW" "$PORTAL" skipchecks=true; }
create_disk() { gw /disks create pool=rbd "image=$IMAGE" "size=$SIZE"; }
add_lun() { gw "/iscsi-targets/$IQN/disks" add "$DISK"; }
create_client() { gw "/iscsi-targets/$IQN/hosts" create "$CLIENT"; }
# The same one-shot command, read from standard input (gwcli's batch mode): the CHAP
# secrets stay out of the process list.
client_auth() {
  echo "# gwcli /iscsi-targets/$IQN/hosts/$CLIENT auth username=$CHAP_USER password=... mutual_username=$MUTUAL_USER mutual_password=..."
  printf '/iscsi-targets/%s/hosts/%s auth username=%s password=%s mutual_username=%s mutual_password=%s\n' \
    "$IQN" "$CLIENT" "$CHAP_USER" "$CHAP_PASS" "$MUTUAL_USER" "$MUTUAL_PASS" |
    CEPH_ISCSI_GATEWAY_NAME=$GW gwcli --peer "$GW=$API"
}
map_lun() { gw "/iscsi-targets/$IQN/hosts/$CLIENT" disk add "$DISK"; }

# gwcli ls, shown in the demo's output; WANT: a pattern the tree must have.
show_ls() {
  local want=$1
  gw ls | tee "$RUN/ls.txt"
  grep -q -- "$want" "$RUN/ls.txt" || { echo "gwcli ls lacks $want"; return 1; }
  cp "$RUN/ls.txt" "$DEMO_SHOW"
}

show_config() {
  show_ls "$CLIENT .*Auth: CHAP"
  local acl=/sys/kernel/config/target/iscsi/$IQN/tpgt_1/acls/$CLIENT
  [[ -d $acl/lun_0 && $(cat "$acl/auth/userid_mutual") == "$MUTUAL_USER" ]]
  show "LIO: $IQN tpgt_1 enabled=$(cat "/sys/kernel/config/target/iscsi/$IQN/tpgt_1/enable")," \
    "portal $(ls "/sys/kernel/config/target/iscsi/$IQN/tpgt_1/np"), $(basename "$(dirname "$(readlink -f "$acl/lun_0/"*)")") -> $CLIENT (CHAP + mutual CHAP)"
}

# --- rbd-target-gw (statistics) --------------------------------------------------------
# One scrape while the client is logged in, after its writes: the lines naming this LUN
# or client; LIO's per-client write counter (MiB resolution) must have moved.
scrape_metrics() {
  local m port
  port=$(sed -n 's/^prometheus_port *= *//p' "$CFG")
  m=$(curl -sS --max-time 30 "http://127.0.0.1:${port:-9287}/metrics")
  grep -E "$IMAGE|$CLIENT" <<<"$m" | grep -v '^#' | tee "$RUN/metrics.txt"
  [[ -s $RUN/metrics.txt ]] || { echo "no line of /metrics names $IMAGE or $CLIENT"; return 1; }
  local w
  w=$(grep -F "ceph_iscsi_lun_write_bytes{client_iqn=\"$CLIENT\"" "$RUN/metrics.txt" | grep -F 'lun_name="rbd.demo"' | awk '{print $2}')
  echo "ceph_iscsi_lun_write_bytes of $CLIENT on rbd.demo: ${w:-none}"
  [[ -n $w ]] && awk -v w="$w" 'BEGIN{exit !(w + 0 > 0)}' || { echo "the client's write counter did not move"; return 1; }
  cp "$RUN/metrics.txt" "$DEMO_SHOW"
}

# --- the initiator ---------------------------------------------------------------------
login() {
  mkdir -p /etc/iscsi/ifaces
  printf 'iface.iscsi_ifacename = demo\niface.transport_name = tcp\niface.initiatorname = %s\n' "$CLIENT" >/etc/iscsi/ifaces/demo
  iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I demo
  local n=(iscsiadm -m node -T "$IQN" -p "$PORTAL" -I demo)
  "${n[@]}" -o update -n node.session.auth.authmethod -v CHAP
  "${n[@]}" -o update -n node.session.auth.username -v "$CHAP_USER"
  "${n[@]}" -o update -n node.session.auth.password -v "$CHAP_PASS"
  "${n[@]}" -o update -n node.session.auth.username_in -v "$MUTUAL_USER"
  "${n[@]}" -o update -n node.session.auth.password_in -v "$MUTUAL_PASS"
  "${n[@]}" --login
  # no udev in the guest: the disk's name comes from sysfs
  local b
  for _ in $(seq 600); do
    for b in /sys/class/iscsi_session/session*/device/target*/*:*:*:0/block/*; do
      [[ -e $b ]] && { basename "$b" >"$RUN/dev"; break 2; }
    done
    sleep 0.1
  done
  [[ -s $RUN/dev ]] || { echo "no block device for LUN 0"; return 1; }
  local dev=/dev/$(cat "$RUN/dev")
  show "logged in to $IQN with CHAP + mutual CHAP: LUN 0 is $dev ($(($(cat "/sys/class/block/$(cat "$RUN/dev")/size") / 2048)) MiB)"
}

write_file() {
  local dev=/dev/$(cat "$RUN/dev")
  mkfs.ext4 -q -F -L demo -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$dev"
  mkdir -p /mnt/demo
  mount "$dev" /mnt/demo
  head -c 8M /dev/urandom >/mnt/demo/payload.bin
  sha256sum /mnt/demo/payload.bin | cut -d' ' -f1 >/vm-out/payload.sha256
  sync
  umount /mnt/demo
  show "ext4 on $dev, /payload.bin 8 MiB sha256 $(cat /vm-out/payload.sha256)"
}

logout() { iscsiadm -m node -T "$IQN" -p "$PORTAL" -I demo --logout; }

restore_dry_run() {
  (
    set -a
    . /etc/default/rbd-target-api
    /usr/bin/ceph-iscsi restore --dry-run
  ) | tee "$RUN/restore.txt"
  grep -q 'in sync: nothing to do' "$RUN/restore.txt"
  show "$(grep -m1 'in sync' "$RUN/restore.txt")"
}

stop_api() {
  stop_unit rbd-target-api
  local t=/sys/kernel/config/target
  [[ ! -e $t/iscsi/$IQN ]] || { echo "target left in LIO"; return 1; }
  if compgen -G "$t/core/user_*/*/enable" >/dev/null; then echo "storage objects left: $(ls $t/core/user_*)"; return 1; fi
  show "SIGTERM: STOPPING=1, exit 0, no target or storage object left in LIO"
}

# tcmu-runner and the cluster stop cleanly (memstore saves its data on umount); the host
# restarts this copy and reads the image through librbd.
save_cluster() {
  kill -TERM "$VMTEST_TCMU_PID"
  while kill -0 "$VMTEST_TCMU_PID" 2>/dev/null; do sleep 0.1; done
  "$HERE/../dev/ceph-cluster.sh" down "$VMTEST_CEPH_DIR"
  # the daemons are gone, but one stopped by SIGTERM may leave its admin socket, which
  # cp cannot copy to the 9p share (the host clears run/ anyway)
  find "$VMTEST_CEPH_DIR/run" -type s -delete
  rm -rf /vm-out/ceph-after
  cp -a "$VMTEST_CEPH_DIR" /vm-out/ceph-after
  echo "$VMTEST_CEPH_DIR" >/vm-out/ceph-after/guest-dir
  show "$(du -sh /vm-out/ceph-after | cut -f1) copied to the host"
}

step "install the package in the guest (dpkg -i)" install_package
step "configure $CFG and /etc/default/rbd-target-api" configure
step "start rbd-target-api as its unit does" start_unit rbd-target-api
step "start rbd-target-gw as its unit does" start_unit rbd-target-gw
step "create target $IQN" create_target
step "create gateway $GW ($PORTAL)" create_gateway
step "create disk $DISK ($SIZE)" create_disk
step "add the disk to the target (LUN 0)" add_lun
step "create client $CLIENT" create_client
step "client CHAP + mutual CHAP" client_auth
step "map LUN 0 to the client" map_lun
step "gwcli ls, and LIO" show_config
step "open-iscsi discovery and CHAP login" login
step "mkfs.ext4, write a file, unmount" write_file
step "rbd-target-gw: one /metrics scrape (this LUN and client)" scrape_metrics
step "gwcli ls while logged in" show_ls "$CLIENT .*LOGGED-IN"
step "iSCSI logout" logout
step "ceph-iscsi restore --dry-run (empty plan)" restore_dry_run
step "stop rbd-target-gw" stop_unit rbd-target-gw
step "stop rbd-target-api (LIO torn down)" stop_api
step "stop tcmu-runner and Ceph, save the cluster" save_cluster
