#!/usr/bin/env bash
# bench/gw-vm.sh - exporter benchmark on the real kernel (issue 12): BENCH_DISKS user:rbd
# disks (default 64) and BENCH_CLIENTS CHAP clients (default 16, BENCH_LUNS_PER_CLIENT=4
# LUNs each) restored by our `ceph-iscsi restore` in the vm/run.sh guest, then, in the same
# boot, BENCH_SCRAPES (default 20) scrapes of /metrics from ours (`ceph-iscsi gw`) and
# from upstream's Python rbd-target-gw (Debian's package as dist/dev/upstream.sh unpacks
# it; its Python deps come from make deps), both running on the same iscsi-gateway.cfg
# and scraped alternately so that the host's load (TCG hands it straight to the guest)
# falls on both alike. Prints p50/p90/max wall time per scrape (curl's time_total:
# connect to last byte), the warm-up scrape apart, each exporter's own collection time
# and CPU seconds per scrape, the lines and ceph_iscsi_* samples each returned, and the
# ratio upstream/ours. Figures are printed, never asserted. Root.
#
# The samples differ by design: ours adds per-port totals, sessions, gateway info and
# the Go/process collectors and writes standard "# HELP"/"# TYPE" lines; upstream writes
# "#HELP:"/"#TYPE:" lines and answers 404 without a target (the layout has one). Upstream
# needs /etc/rtslib-fb-target to exist (Debian's rtslib-fb dbroot; nothing creates it,
# targetcli would): without it every upstream scrape is a 500, so the guest makes it.
#
# BENCH_TCMU=stub (default) or real, as bench/restore-vm.sh: the exporters read the same
# configfs statistics either way (no I/O runs during the scrapes).
# env: BENCH_DISKS, BENCH_CLIENTS, BENCH_LUNS_PER_CLIENT, BENCH_SCRAPES, CEPH_ISCSI_VM_OUT
# (keeps the artefacts: metrics-{ours,upstream}.txt, gw-*.log, vm.log), CEPH_ISCSI_UPSTREAM,
# CEPH_ISCSI_VM_MEM (default 4096M) and the other vm/run.sh settings.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/seed-cluster.sh
source "$HERE/seed-cluster.sh"

DISKS=${BENCH_DISKS:-64} CLIENTS=${BENCH_CLIENTS:-16} LPC=${BENCH_LUNS_PER_CLIENT:-4}
SCRAPES=${BENCH_SCRAPES:-20}
GW=gw1.bench OBJ=bench-gw.conf
LAYOUT=(-disks "$DISKS" -clients "$CLIENTS" -luns-per-client "$LPC" -gateway "$GW" -object "$OBJ")
vm_out ceph-iscsi-bench-gw

UP=$("$ROOT/dist/dev/upstream.sh")
/usr/bin/python3 -c "import flask, rtslib_fb" ||
  { echo "upstream's Python dependencies are missing: run make deps" >&2; exit 1; }
(cd "$ROOT" && go build -tags pacific -o "$OUT/ceph-iscsi" . && go build -tags pacific -o "$OUT/restore-layout" ./bench/restore-layout)
log "built; upstream in $UP"

seed_cluster

export CEPH_ISCSI_VM_MEM=${CEPH_ISCSI_VM_MEM:-4096M}
export CEPH_ISCSI_VM_TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-1500}
vm_tcmu
VMENV="VMTEST_TCMU=$VMTCMU BENCH_TCMU=$TCMU BENCH_RESTORE_BIN=/vm-out/ceph-iscsi BENCH_GATEWAY=$GW BENCH_OBJECT=$OBJ BENCH_UPSTREAM=$UP BENCH_SCRAPES=$SCRAPES"
log "host load before: $(cut -d' ' -f1-3 /proc/loadavg)"
vm_run gw-guest.sh '^\[guest|^restore |^storage objects|answers after|exited before|does not answer|exit [0-9]+ after|^guest load' "$VMENV"
log "guest rc=$rc; host load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== /metrics scrape benchmark (real kernel under qemu TCG, $DISKS user:rbd LUNs, $CLIENTS clients x $LPC LUNs, tcmu-runner: $TCMU)"
echo "wall time per scrape (curl time_total, s) over scrapes 1..N; first = the warm-up scrape 0;"
echo "collect = the exporter's own ceph_iscsi_scrape_duration_seconds (p50); cpu = exporter CPU s per scrape"
printf '  %-9s %4s %8s %8s %8s %8s %8s %6s %6s %5s %s\n' exporter n p50 p90 max first collect cpu lines ceph_ http
declare -A P50 COL CPU
for e in ours upstream; do
  cpu=$(awk -v e="$e" '$1 == "cpu" && $2 == e { print $3 }' "$OUT/gw-times.txt" 2>/dev/null)
  first=$(awk -v e="$e" '$1 == e && $2 == 0 { print $4 }' "$OUT/gw-times.txt" 2>/dev/null)
  collect=$(awk -v e="$e" '$1 == e && $2 > 0 { print $7 }' "$OUT/gw-times.txt" 2>/dev/null | sort -g | awk '{ t[NR] = $1 } END { print NR ? t[int((NR + 1) / 2)] : "-" }')
  row=$(awk -v e="$e" '$1 == e && $2 > 0' "$OUT/gw-times.txt" 2>/dev/null | sort -g -k4 |
    awk -v e="$e" -v cpu="${cpu:--}" -v first="${first:--}" -v collect="$collect" '
    function f(x) { return x ~ /^[0-9.]+$/ ? sprintf("%.4f", x) : "-" }
    { t[NR] = $4; lines = $5; samples = $6; codes[$3]++ }
    END {
      if (NR == 0) { printf "  %-9s no scrapes\n", e; exit }
      p50 = t[int((NR + 1) / 2)]; p90 = t[int(0.9 * NR + 0.999)]
      c = ""; for (k in codes) c = c k "x" codes[k] " "
      printf "  %-9s %4d %8.4f %8.4f %8.4f %8s %8s %6s %6d %5d %s\n", e, NR, p50, p90, t[NR], f(first), f(collect), f(cpu), lines, samples, c
    }') || true
  echo "$row"
  P50[$e]=$(awk '{ print $3 }' <<<"$row") COL[$e]=$collect CPU[$e]=${cpu:--}
done
ratio() { # WHAT OURS UPSTREAM
  [[ $2 =~ ^[0-9.]+$ && $3 =~ ^[0-9.]+$ ]] &&
    awk -v w="$1" -v o="$2" -v u="$3" 'BEGIN { if (o > 0) printf "  ratio upstream/ours, %s: %.1fx\n", w, u / o }'
  return 0
}
ratio "wall p50" "${P50[ours]}" "${P50[upstream]}"
ratio "collect p50" "${COL[ours]}" "${COL[upstream]}"
ratio "cpu per scrape" "${CPU[ours]}" "${CPU[upstream]}"
vm_done
