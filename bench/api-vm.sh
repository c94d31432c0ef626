#!/usr/bin/env bash
# bench/api-vm.sh - the REST API side by side on the real kernel (issue 10): in ONE
# vm/run.sh guest boot (Debian's kernel under qemu TCG, the real tcmu-runner, Ceph
# restarted in the guest), bench/apiload -replay plays upstream's own call sequence
# against our `ceph-iscsi api`, then against upstream's Python rbd-target-api (Debian's
# ceph-iscsi 3.5 as dist/dev/upstream.sh unpacks it): create a target, add this
# gateway, then BENCH_DISKS user:rbd disks of 1 GiB (PUT /api/disk mode=create, PUT
# /api/targetlun), and per BENCH_LUNS_PER_CLIENT disks a CHAP client (PUT /api/client,
# PUT /api/clientauth) mapping them (PUT /api/clientlun each). At each count of
# BENCH_REPORT_AT (default "16,<disks>") it runs GET /api/config from 4 clients for
# BENCH_GET_SECONDS (default 20). Each daemon starts on an empty LIO with its own
# config object, images and target: ours runs first and is stopped (SIGTERM tears its
# LIO down) before upstream starts. Prints mean/p50/max per call and segment (1..16,
# 17..64), GET req/s, and the speed-up (upstream's seconds / ours; ours req/s /
# upstream's). Figures are printed, never asserted. Root.
#
#   bench/api-vm.sh                                  # both daemons, 16 and 64 disks
#   BENCH_UPSTREAM=0 BENCH_DISKS=256 BENCH_REPORT_AT=16,64,256 bench/api-vm.sh
#                                                    # ours only, the flatness figure
#   BENCH_UPSTREAM=0 BENCH_BASE=main bench/api-vm.sh
#                                                    # ours against the build of a git revision
#                                                    # ("base", run first), before/after in one boot
#
# tcmu-runner opens every image with its own RADOS connection: guest RAM grows with the
# disks (CEPH_ISCSI_VM_MEM, default 4096M; 6144M for 256).
# env: BENCH_DISKS (64), BENCH_LUNS_PER_CLIENT (4), BENCH_REPORT_AT, BENCH_GET_SECONDS, BENCH_BASE,
# BENCH_UPSTREAM=0 (ours only), BENCH_LOGGER_LEVEL=10 (our daemon logs at debug), BENCH_CPUPROFILE=1
# (our daemon's CPU profile while it serves: api-ours.pprof, read with the ceph-iscsi binary
# beside it), CEPH_ISCSI_VM_OUT (keeps the artefacts: replay-*.txt,
# the daemons' logs, vm.log), CEPH_ISCSI_VM_MEM, CEPH_ISCSI_VM_TIMEOUT (default 3600) and
# the other vm/run.sh settings.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/seed-cluster.sh
source "$HERE/seed-cluster.sh"

DISKS=${BENCH_DISKS:-64} LPC=${BENCH_LUNS_PER_CLIENT:-4} GETS=${BENCH_GET_SECONDS:-20}
AT=${BENCH_REPORT_AT:-16,$DISKS}
((DISKS > 16)) || AT=${BENCH_REPORT_AT:-$DISKS} # one segment, not 1..16 and an empty 17..16
LAYOUT=()
vm_out ceph-iscsi-bench-api
rm -f "$OUT"/replay-*.txt

UP=
if [[ ${BENCH_UPSTREAM:-1} != 0 ]]; then
  UP=$("$ROOT/dist/dev/upstream.sh")
  /usr/bin/python3 -c "import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography, requests" ||
    { echo "upstream's Python dependencies are missing: run make deps (or BENCH_UPSTREAM=0)" >&2; exit 1; }
fi
(cd "$ROOT" && go build -tags pacific -o "$OUT/ceph-iscsi" . && go build -o "$OUT/apiload" ./bench/apiload)
BASEENV=
if [[ -n ${BENCH_BASE:-} ]]; then
  src=$(mktemp -d)
  git -C "$ROOT" archive "$BENCH_BASE" | tar -x -C "$src"
  (cd "$src" && go build -tags pacific -o "$OUT/ceph-iscsi-base" .)
  rm -rf "$src"
  BASEENV="BENCH_BASE_BIN=/vm-out/ceph-iscsi-base"
fi
log "built${UP:+; upstream in $UP}${BENCH_BASE:+; base at $(git -C "$ROOT" rev-parse --short "$BENCH_BASE")}"

seed_cluster

export CEPH_ISCSI_VM_MEM=${CEPH_ISCSI_VM_MEM:-4096M}
export CEPH_ISCSI_VM_TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-3600}
VMENV="BENCH_BIN=/vm-out/ceph-iscsi BENCH_APILOAD=/vm-out/apiload BENCH_UPSTREAM=$UP BENCH_DISKS=$DISKS BENCH_LUNS_PER_CLIENT=$LPC BENCH_REPORT_AT=$AT BENCH_GET_SECONDS=$GETS BENCH_LOGGER_LEVEL=${BENCH_LOGGER_LEVEL:-20} BENCH_CPUPROFILE=${BENCH_CPUPROFILE:-0} $BASEENV"
log "host: $(uptime)"
vm_run api-vm-guest.sh '^\[guest|^(base|ours|upstream) |^LIO |^9p: |^guest load' "$VMENV"
log "guest rc=$rc; host: $(uptime)"

echo "== REST API, upstream's call sequence (real kernel under qemu TCG, user:rbd disks of 1 GiB,"
echo "   tcmu-runner, a CHAP client per $LPC disks; GET /api/config from 4 clients for ${GETS}s)"
echo "   speed-up = upstream's seconds / ours (calls); ours req/s / upstream's (GET)"
sum=()
[[ -n $UP ]] && sum+=("upstream=$OUT/replay-upstream.txt")
[[ -n $BASEENV && -z $UP ]] && sum+=("base=$OUT/replay-base.txt")
sum+=("ours=$OUT/replay-ours.txt")
"$OUT/apiload" -report-at "$AT" -summary "$(IFS=,; echo "${sum[*]}")"
grep -E '^(base|ours|upstream) ' "$OUT/vm.log" || true
vm_done
