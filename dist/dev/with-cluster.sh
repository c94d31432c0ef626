#!/usr/bin/env bash
# with-cluster.sh CMD... — run CMD with a fresh dev Ceph cluster (ceph-cluster.sh) that
# lives in a temp dir on free loopback ports, exported as CEPH_CONF/CEPH_KEYRING, and
# stop and delete the cluster afterwards, whatever CMD did. Exits with CMD's status.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/ceph-iscsi-cluster.XXXXXX")
cleanup() { "$here/ceph-cluster.sh" down "$dir" --purge >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$EPOCHREALTIME
for attempt in 1 2 3 4 5; do
  # mon below the ephemeral port range (see devcluster.freePorts)
  port=$((20000 + 2 * (RANDOM % 6000)))
  osd=$((42000 + 100 * (RANDOM % 200)))
  if out=$(CEPH_DEV_MON_PORT=$port CEPH_DEV_OSD_PORTS=$osd-$((osd + 99)) \
      "$here/ceph-cluster.sh" up "$dir" 2>"$dir.log"); then
    break
  fi
  if grep -q 'already in use' "$dir.log" && [[ $attempt -lt 5 ]]; then
    cleanup; mkdir -p "$dir"; continue
  fi
  cat "$dir.log" >&2; rm -f "$dir.log"
  echo "with-cluster: the Ceph cluster did not start" >&2
  exit 1
done
rm -f "$dir.log"
eval "export $(grep -E '^CEPH_(CONF|KEYRING)=' <<<"$out" | tr '\n' ' ')"
printf 'with-cluster: Ceph cluster up in %.1f s (%s)\n' "$(awk "BEGIN{print $EPOCHREALTIME - $start}")" "$CEPH_CONF" >&2
"$@"
