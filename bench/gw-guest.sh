#!/bin/bash
# gw-guest.sh - the guest half of bench/gw-vm.sh, run by vm/guest-vmtest.sh once Ceph is
# up: restores the seeded layout with our restore, then scrapes /metrics BENCH_SCRAPES
# times from ours (`ceph-iscsi gw`) and from upstream's rbd-target-gw (Python, from the
# dist/dev/upstream.sh unpack), alternating, both reading the same cfg. Writes
# /vm-out/gw-times.txt: "EXPORTER I HTTP_CODE SECONDS LINES CEPH_ISCSI_SAMPLES
# COLLECT_SECONDS" per scrape (I=0 is the warm-up) and "cpu EXPORTER SECONDS_PER_SCRAPE".
set -uo pipefail
BIN=${BENCH_RESTORE_BIN:?} GW=${BENCH_GATEWAY:?} OBJ=${BENCH_OBJECT:?} UP=${BENCH_UPSTREAM:?}
N=${BENCH_SCRAPES:-20}
PORT=9287
# shellcheck source=bench/lib-guest.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-guest.sh"
# upstream's settings path is fixed; the guest's /etc is a throwaway overlay
CFG=/etc/ceph/iscsi-gateway.cfg
guest_cfg "$CFG" "prometheus_exporter = true" "prometheus_host = 127.0.0.1" "prometheus_port = $PORT"
tcmu_stub
t0=$EPOCHREALTIME
"$BIN" restore --json --config "$CFG" --gateway-name "$GW" >/vm-out/restore.json 2>/vm-out/restore.err
rc=$?
echo "restore exit $rc in $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}") s"
((rc == 0)) || { tail -20 /vm-out/restore.err; exit 1; }
echo "storage objects: $(storage_objects)," \
  "ACLs: $(find /sys/kernel/config/target/iscsi/*/tpgt_*/acls -maxdepth 1 -mindepth 1 -type d | wc -l)"
: >/vm-out/gw-times.txt

# Both exporters run side by side (ours on PORT+1 by --listen, upstream on the cfg's PORT)
# and are scraped in alternating order, so that the host's fluctuating load, which
# TCG passes straight to the guest, falls on both alike.
declare -A PID URL
start() { # NAME PORT CMD...: start an exporter in the background
  local name=$1 port=$2; shift 2
  "$@" >"/vm-out/gw-$name.log" 2>&1 &
  PID[$name]=$!
  URL[$name]=http://127.0.0.1:$port
}
ready() { # NAME: wait until / answers 200 (start-up time printed, not part of the figures)
  local name=$1 t0=$2 i code=
  for ((i = 0; i < 3000; i++)); do # Python's imports take tens of seconds under TCG
    kill -0 "${PID[$name]}" 2>/dev/null || { echo "$name exited before answering:"; tail -40 "/vm-out/gw-$name.log"; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' "${URL[$name]}/") && [[ $code == 200 ]] && break
    sleep 0.1
  done
  [[ $code == 200 ]] || { echo "$name does not answer on /"; return 1; }
  echo "$name answers after $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}") s"
}
scrape() { # NAME I: one timed scrape, appended to gw-times.txt with the exporter's own
  # collection time (ceph_iscsi_scrape_duration_seconds, both have it)
  local name=$1 i=$2 out f=/vm-out/metrics-$1.txt
  out=$(curl -s -o "$f" -w '%{http_code} %{time_total}' "${URL[$name]}/metrics")
  echo "$name $i $out $(wc -l <"$f") $(grep -c '^ceph_iscsi_' "$f")" \
    "$(awk '/^ceph_iscsi_scrape_duration_seconds/ { print $NF; f = 1 } END { if (!f) print "-" }' "$f")" >>/vm-out/gw-times.txt
}
cpu() { # NAME: user+system CPU seconds of the exporter so far
  awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/${PID[$1]}/stat" # USER_HZ is 100 on Linux
}
# upstream's rtslib-fb (Debian) insists on its dbroot /etc/rtslib-fb-target on every
# RTSRoot(): the kernel's dbroot cannot change once devices exist, which rtslib only
# tolerates (a warning) when that directory exists; without it every scrape is a 500
mkdir -p /etc/rtslib-fb-target
mkdir -p /var/log/rbd-target-gw # upstream's RotatingFileHandler path
t0=$EPOCHREALTIME
start ours $((PORT + 1)) "$BIN" gw --config "$CFG" --gateway-name "$GW" --listen "127.0.0.1:$((PORT + 1))"
start upstream $PORT env PYTHONPATH="$UP/root/usr/lib/python3/dist-packages" /usr/bin/python3 "$UP/root/usr/bin/rbd-target-gw"
rc=0
ready ours "$t0" && ready upstream "$t0" || rc=1
if ((rc == 0)); then
  # one warm-up scrape each (page faults of the binary and modules over 9p), index 0
  scrape ours 0; scrape upstream 0
  declare -A C0
  for e in ours upstream; do C0[$e]=$(cpu "$e"); done
  for ((i = 1; i <= N; i++)); do
    if ((i % 2)); then scrape ours "$i"; scrape upstream "$i"; else scrape upstream "$i"; scrape ours "$i"; fi
  done
  for e in ours upstream; do
    echo "cpu $e $(awk -v a="${C0[$e]}" -v b="$(cpu "$e")" -v n="$N" 'BEGIN { printf "%.3f", (b - a) / n }')" >>/vm-out/gw-times.txt
  done
fi
for e in ours upstream; do
  kill "${PID[$e]}"
  wait "${PID[$e]}"
  echo "$e exit $? after SIGTERM"
done
cp /var/log/rbd-target-gw/rbd-target-gw.log /vm-out/ 2>/dev/null
echo "guest load: $(cat /proc/loadavg)"
exit $rc
