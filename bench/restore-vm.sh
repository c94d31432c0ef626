#!/usr/bin/env bash
# bench/restore-vm.sh - restore benchmark on the real kernel: BENCH_DISKS user:rbd disks
# (default 256) and BENCH_CLIENTS CHAP clients (default 64, BENCH_LUNS_PER_CLIENT=4 LUNs
# each) restored from cold by `ceph-iscsi restore` in the vm/run.sh guest, with
# tcmu-runner serving every disk. Prints the wall time of the cold, in-sync and teardown
# runs, the configfs operations each performed (from the --json report), and the minimum
# the layout needs (bench/restore-layout: the formula is in its source). Root.
#
# BENCH_TCMU=stub (default): no tcmu-runner in the guest, so the kernel enables the user
# backstores without one (same LIO objects and configfs operations, no I/O path); a
# process named tcmu-runner stands in for restore's safety check. BENCH_TCMU=real runs
# the real tcmu-runner, which opens every image with its own RADOS connection: minutes
# and gigabytes of guest RAM for 256 disks under TCG; try fewer disks.
#
# BENCH_UPSTREAM=1 then starts upstream's rbd-target-api (Debian's ceph-iscsi, unpacked
# by dist/dev/upstream.sh) on the same object in the same boot: the time until LIO holds
# every LUN and mapped LUN with the TPG enabled (upstream-restored), until its API answers
# (upstream-serving), and from SIGTERM to its exit (upstream-teardown). The object is then
# gateway.conf, the one upstream's config watcher polls.
#
# BENCH_DAEMON=1 (default: BENCH_UPSTREAM) times our `ceph-iscsi api` the same way
# (daemon-restored, daemon-serving, daemon-teardown) after the restore runs; its debug log
# (daemon-api.log in the artefacts) has the stages of its start-up and teardown.
#
# env: BENCH_DISKS, BENCH_CLIENTS, BENCH_LUNS_PER_CLIENT; CEPH_ISCSI_VM_OUT keeps the
# artefacts (reports, guest log); CEPH_ISCSI_VM_MEM (default 4096M) and the other
# vm/run.sh settings.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/seed-cluster.sh
source "$HERE/seed-cluster.sh"

DISKS=${BENCH_DISKS:-256} CLIENTS=${BENCH_CLIENTS:-64} LPC=${BENCH_LUNS_PER_CLIENT:-4}
GW=gw1.bench OBJ=bench-restore.conf UPSTREAM=${BENCH_UPSTREAM:-0} UPROOT=
DAEMON=${BENCH_DAEMON:-$UPSTREAM}
if [[ $UPSTREAM == 1 ]]; then
  OBJ=gateway.conf
  UPROOT=$("$ROOT/dist/dev/upstream.sh")/root
  /usr/bin/python3 -c 'import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography, requests' ||
    { echo "upstream's Python modules are missing: make deps" >&2; exit 1; }
fi
LAYOUT=(-disks "$DISKS" -clients "$CLIENTS" -luns-per-client "$LPC" -gateway "$GW" -object "$OBJ")
vm_out ceph-iscsi-bench-restore

log "host load before the run: $(uptime)"
(cd "$ROOT" && go build -tags pacific -o "$OUT/ceph-iscsi" . && go build -tags pacific -o "$OUT/restore-layout" ./bench/restore-layout)
log "built"

seed_cluster

export CEPH_ISCSI_VM_MEM=${CEPH_ISCSI_VM_MEM:-4096M}
# four restores of 256 disks take 3-8 min under TCG, depending on the host's load
export CEPH_ISCSI_VM_TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-$((UPSTREAM == 1 ? 2700 : 1500))}
vm_tcmu
VMENV="VMTEST_TCMU=$VMTCMU BENCH_TCMU=$TCMU BENCH_RESTORE_BIN=/vm-out/ceph-iscsi BENCH_GATEWAY=$GW BENCH_OBJECT=$OBJ BENCH_DISKS=$DISKS BENCH_UPSTREAM=$UPSTREAM BENCH_DAEMON=$DAEMON BENCH_UPSTREAM_ROOT=$UPROOT"
# the host's load during the run, to set against the guest's "phase NAME at HH:MM:SS"
# lines: under TCG the host's load reaches the guest directly
(while :; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 15; done) >"$OUT/host-load.txt" &
SAMPLER=$!
vm_run restore-guest.sh '^\[guest|^(cold|warm|teardown|upstream-[a-z]*|daemon-[a-z]*) |^phase |storage objects|targets left' "$VMENV"
kill "$SAMPLER"
log "guest rc=$rc"
log "host load after the run: $(uptime)"

echo "== restore benchmark (real kernel 6.1 under qemu TCG, user:rbd backstores, tcmu-runner: $TCMU)"
echo "wall time (s), exit code:"
awk '{printf "  %-13s %7s s  exit %s\n", $1, $3, $2}' "$OUT/restore-times.txt" 2>/dev/null || true
echo "host load (1, 5, 15 min) at each phase's start (guest clock):"
grep '^phase ' "$OUT/vm.log" | while read -r _ name _ at _; do
  printf '  %-20s %s  host %s\n' "$name" "$at" "$(awk -v t="$at" '$1 <= t {l = $2 " " $3 " " $4} END {print l}' "$OUT/host-load.txt")"
done
reports=()
for n in cold warm teardown-dry teardown; do [[ -s $OUT/restore-$n.json ]] && reports+=("$OUT/restore-$n.json"); done
"$OUT/restore-layout" analyze "${LAYOUT[@]}" "${reports[@]}"
vm_done
