#!/usr/bin/env bash
# bench/build3.sh - a large target built through the REST API of three gateways:
# three `ceph-iscsi api` daemons on 127.0.0.1-3, each on its own emulated configfs,
# one throw-away Ceph cluster, all in a private network and mount namespace (root).
# bench/apibuild creates the disks (10 per call), maps each to the target, and
# creates the clients with 4 LUNs each, spreading the requests over the three
# gateways; it times PUT /api/targetlun and /api/clientlun at each of its -steps
# and prints total time, mutations/s and CPU seconds per mutation per daemon.
# At the end every gateway's LIO must equal the configuration: `restore --dry-run`
# of each gateway reports "in sync".
#
#   bench/build3.sh [apibuild flags...]     e.g. bench/build3.sh -luns 256 -c 6
#
# env: BENCH_KEEP=1 keeps the work dir; BENCH_PROFILE=DIR writes each daemon's CPU
# profile (start-up until SIGTERM, without the teardown) to DIR/gwN.pprof.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib-netns.sh
source "$HERE/lib-netns.sh"

netns_enter "$@"

netns_setup ceph-iscsi-build3

netns_build apibuild

IQN=iqn.2003-01.com.example.bench:target
netns_gateway_cfg 127.0.0.1,127.0.0.2,127.0.0.3

GWS=() PIDARGS=()
for n in 1 2 3; do
  mkdir -p "$W/configfs$n"
  args=(--configfs-root "$W/configfs$n" --gateway-name "gw$n"
    --listen "127.0.0.$n:$PORT" --local-addr "127.0.0.$n")
  for p in 1 2 3; do args+=(--peer "gw$p=http://127.0.0.$p:$PORT"); done
  CEPH_ISCSI_CPUPROFILE=${BENCH_PROFILE:+$BENCH_PROFILE/gw$n.pprof} api_daemon "gw$n.log" "${args[@]}"
  PIDARGS+=("gw$n=$!")
  GWS+=("gw$n=http://127.0.0.$n:$PORT")
done
for n in 1 2 3; do wait_http "http://127.0.0.$n:$PORT/api" 600; done
put "/api/target/$IQN"
for n in 1 2 3; do put "/api/gateway/$IQN/gw$n" ip_address=127.0.0.$n skipchecks=true; done

echo "== build (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$W/apibuild" -gw "$(IFS=,; echo "${GWS[*]}")" -pid "$(IFS=,; echo "${PIDARGS[*]}")" -target "$IQN" "$@"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== every gateway's LIO against the configuration"
fail=0
for n in 1 2 3; do
  out=$(CEPH_CONF=$W/ceph/ceph.conf "$W/ceph-iscsi" restore --dry-run --config "$W/iscsi-gateway.cfg" \
    --configfs-root "$W/configfs$n" --gateway-name "gw$n" --local-addr "127.0.0.$n" 2>&1) || true
  if grep -q '^in sync: nothing to do' <<<"$out"; then
    echo "gw$n: in sync ($(find "$W/configfs$n/target/iscsi" -mindepth 4 -maxdepth 4 -path '*/lun/lun_*' | wc -l) LUN directories)"
  else
    echo "gw$n: NOT in sync:"; head -20 <<<"$out"; fail=1
  fi
done
exit $fail
