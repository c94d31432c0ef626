#!/bin/bash
# api-vm-guest.sh - the guest half of bench/api-vm.sh, run by vm/guest-vmtest.sh once
# Ceph and tcmu-runner are up: our `ceph-iscsi api` replays upstream's call sequence
# (bench/apiload -replay) and is stopped (SIGTERM tears its LIO down; BENCH_BASE_BIN, another
# build of ours, does the same first, as "base"), then, on the
# emptied LIO, upstream's rbd-target-api does the same with its own object, images and
# target. Writes /vm-out/replay-{ours,upstream}.txt (apiload's records), the daemons'
# logs, and prints "ours ..."/"upstream ..." lines: start-up, CPU seconds, teardown.
# The daemons log to the guest's own tmpfs, copied to /vm-out once they have
# stopped: each write to the 9p share is a synchronous round trip to the host
# (see the "9p" line), which would be timed inside the calls.
set -uo pipefail
BIN=${BENCH_BIN:?} LOAD=${BENCH_APILOAD:?} UP=${BENCH_UPSTREAM:-}
N=${BENCH_DISKS:-64} LPC=${BENCH_LUNS_PER_CLIENT:-4} AT=${BENCH_REPORT_AT:-16,64} GETS=${BENCH_GET_SECONDS:-20}
IP=192.0.2.10 USER=admin PASS=benchApiPass1
LIO=/sys/kernel/config/target

since() { awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $1}"; }
cpu() { # PID: user+system CPU seconds so far (USER_HZ is 100 on Linux)
  awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$1/stat"
}
ready() { # NAME PID PORT T0: wait until GET /api answers 200 (start-up, not a figure of the calls)
  local i code=
  for ((i = 0; i < 6000; i++)); do # upstream's imports take a minute or more under TCG
    kill -0 "$2" 2>/dev/null || { echo "$1 exited during start-up:"; tail -40 "$LOGS/api-$1.log"; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$3/api") && [[ $code == 200 ]] && break
    sleep 0.1
  done
  [[ $code == 200 ]] || { echo "$1 does not answer on /api"; return 1; }
  echo "$1 api answers after $(since "$4") s"
}
lio_count() { # storage objects, targets
  echo "$(find $LIO/core -maxdepth 2 -mindepth 2 -type d ! -path '*/alua*' | wc -l) storage objects," \
    "$(find $LIO/iscsi -maxdepth 1 -mindepth 1 -type d ! -name discovery_auth 2>/dev/null | wc -l) targets"
}
cpu_pids() { # DAEMON_PID: apiload's -cpu-pids, the daemon and the Ceph and tcmu-runner processes
  local p out="daemon=$1" n
  for n in ceph-osd ceph-mon tcmu-runner; do
    for p in $(pgrep -x "$n"); do out+=",$n=$p"; done
  done
  echo "$out"
}
replay() { # NAME PORT GATEWAY: the call sequence, then the daemon's CPU so far
  local name=$1 port=$2 gw=$3 pid=$4 rc
  "$LOAD" -replay -url "http://127.0.0.1:$port" -user "$USER" -pass "$PASS" \
    -target "iqn.2003-01.com.example.bench:$name" -prefix "$name" -gateway "$gw" -gateway-ip "$IP" \
    -disks "$N" -luns-per-client "$LPC" -size 1G -report-at "$AT" -c 4 -d "${GETS}s" -cpu-pids "$(cpu_pids "$pid")" \
    -out "/vm-out/replay-$name.txt" >"/vm-out/replay-$name.out" 2>&1
  rc=$?
  sed "s/^/$name /" "/vm-out/replay-$name.out"
  echo "$name cpu $(cpu "$pid") s after the replay; LIO: $(lio_count); $(tcmu_files)"
  return $rc
}
tcmu_files() { # what tcmu-runner holds open against its limit (lio.CheckTCMURunner's estimate)
  local p
  p=$(pgrep -x tcmu-runner | head -1) || { echo "no tcmu-runner"; return; }
  echo "tcmu-runner: $(find /proc/"$p"/fd -mindepth 1 -maxdepth 1 | wc -l) open files" \
    "(limit $(awk '/^Max open files/ { print $4 }' /proc/"$p"/limits))"
}

LOGS=/run/bench-logs
mkdir -p "$LOGS"
# what a log line costs where the daemons log, and on the 9p share
logcost() { # FILE: ms per 200-byte line written to an open file, as a daemon logs
  local i t0 line
  printf -v line '%0200d' 0
  exec 9>>"$1"
  t0=$EPOCHREALTIME
  for ((i = 0; i < 200; i++)); do echo "$line" >&9; done
  awk "BEGIN{printf \"%.2f\", ($EPOCHREALTIME - $t0) * 1000 / 200}"
  exec 9>&-
  rm -f "$1"
}
echo "9p: a log line appended to /vm-out costs $(logcost /vm-out/logcost.txt) ms, to the guest's tmpfs $(logcost "$LOGS/logcost.txt") ms"

echo "LIO before: $(lio_count); $(tcmu_files)"
rc=0
# --- ours, and first (BENCH_BASE_BIN) another build of ours, in the same boot
measure() { # NAME PID PORT GATEWAY T0 TEARDOWN: replay against a started daemon, then SIGTERM it
  local name=$1 pid=$2 port=$3 gw=$4 t0=$5 teardown=$6 st
  if ready "$name" "$pid" "$port" "$t0"; then
    replay "$name" "$port" "$gw" "$pid" || rc=1
  else
    rc=1
  fi
  t0=$EPOCHREALTIME
  kill -TERM "$pid"
  wait "$pid"
  st=$?
  echo "$name exit $st $(since "$t0") s after SIGTERM${teardown:+$teardown; LIO: $(lio_count)}"
  cp "$LOGS/api-$name.log" /vm-out/
}
run_ours() { # NAME BIN PORT OBJECT
  local name=$1 bin=$2 port=$3 cfg=/run/bench-$1.cfg pid t0 prof=
  cat >"$cfg" <<EOF
[config]
cluster_name = ceph
cluster_client_name = client.admin
pool = rbd
gateway_conf = $4
ceph_config_dir = /etc/ceph
api_secure = false
api_port = $port
api_user = $USER
api_password = $PASS
trusted_ip_list = 127.0.0.1,$IP
minimum_gateways = 1
logger_level = ${BENCH_LOGGER_LEVEL:-20}
EOF
  # BENCH_CPUPROFILE=1: the daemon's CPU profile while it serves, in /vm-out
  [[ ${BENCH_CPUPROFILE:-0} != 0 ]] && prof=/vm-out/api-$name.pprof
  t0=$EPOCHREALTIME
  CEPH_ISCSI_CPUPROFILE=$prof "$bin" api --config "$cfg" --gateway-name gw1.bench --listen "127.0.0.1:$port" \
    --local-addr "$IP" >"$LOGS/api-$name.log" 2>&1 &
  measure "$name" $! "$port" gw1.bench "$t0" " (teardown)"
}
[[ -n ${BENCH_BASE_BIN:-} ]] && run_ours base "$BENCH_BASE_BIN" 5002 bench-api-base.conf
run_ours ours "$BIN" 5000 bench-api.conf

# --- what tcmu-runner and the kernel cost, whoever drives them: the enable write of a
# user:rbd storage object returns once tcmu-runner has opened the image (its own RADOS
# connection), the removal once it has closed it. On one of ours' images, LIO emptied.
if [[ -e $LIO/core ]] && ((N > 0)); then
  for ((i = 1; i <= (N < 3 ? N : 3); i++)); do # only images the replay made
    so=$LIO/core/user_999/benchfloor
    mkdir -p "$so"
    printf 'dev_config=rbd/rbd/ours%04d;osd_op_timeout=30' "$i" >"$so/control"
    printf 'dev_size=1073741824' >"$so/control"
    t0=$EPOCHREALTIME
    printf 1 >"$so/enable"
    t1=$EPOCHREALTIME
    rmdir "$so" && rmdir "$LIO/core/user_999"
    echo "LIO floor $i: user:rbd enable (tcmu-runner opens rbd/rbd/ours$(printf %04d "$i")) $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s," \
      "removal (it closes it) $(since "$t1") s"
  done
fi

# --- upstream, on the emptied LIO
if [[ -n $UP ]]; then
  # upstream names this gateway socket.getfqdn() and calls its own API by that name:
  # the name resolves to the portal address, as in a real group (the guest's /etc is a
  # throw-away overlay)
  FQDN=$(/usr/bin/python3 -c 'import socket; print(socket.getfqdn())')
  { echo "$IP $FQDN"; cat /etc/hosts; } >/run/hosts && cp /run/hosts /etc/hosts
  mkdir -p /etc/ceph /etc/rtslib-fb-target
  # its settings path is fixed; its ConfigWatcher polls "gateway.conf" whatever
  # gateway_conf says, so it keeps that default object
  cat >/etc/ceph/iscsi-gateway.cfg <<EOF
[config]
cluster_name = ceph
cluster_client_name = client.admin
ceph_config_dir = /etc/ceph
pool = rbd
api_secure = false
api_host = 0.0.0.0
api_port = 5001
api_user = $USER
api_password = $PASS
trusted_ip_list = 127.0.0.1,$IP
minimum_gateways = 1
log_to_file = false
log_to_stderr = true
EOF
  t0=$EPOCHREALTIME
  PYTHONPATH=$UP/root/usr/lib/python3/dist-packages /usr/bin/python3 "$UP/root/usr/bin/rbd-target-api" \
    >"$LOGS/api-upstream.log" 2>&1 &
  measure upstream $! 5001 "$FQDN" "$t0" ""
fi
echo "guest load: $(cat /proc/loadavg); memory: $(awk '/MemAvailable/ { printf "%d MiB available", $2 / 1024 }' /proc/meminfo)"
exit $rc
