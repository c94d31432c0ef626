#!/usr/bin/env bash
# bench/api.sh - REST API figures: requests/s and p50/p99 of GET /api/config, and the
# latency of PUT /api/targetlun on a target already holding 255 and 1023 LUNs.
#
# Everything runs in a private network and mount namespace (root): its own lo with the
# portal address 192.0.2.10, a throw-away Ceph cluster on 127.0.0.1, our `ceph-iscsi api`
# on an emulated configfs, and, side by side on the same config object, upstream's
# Python rbd-target-api (Debian package ceph-iscsi, unpacked, never installed over ours)
# for GET /api/config. Upstream cannot take the PUT measurements here: it needs the
# kernel's LIO for every LUN it maps.
#
#   bench/api.sh [apiload flags...]        e.g. bench/api.sh -d 20s -c 32
#
# env: BENCH_UPSTREAM=0 skips the Python side; BENCH_KEEP=1 keeps the work dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib-netns.sh
source "$HERE/lib-netns.sh"

# the namespace has no network: fetch upstream's package first
netns_prepare() {
  if [[ ${BENCH_UPSTREAM:-1} != 0 ]]; then
    # the copy the going-back test uses (make deps unpacks it)
    BENCH_UPSTREAM_DIR=$("$ROOT/dist/dev/upstream.sh") ||
      { echo "bench/api.sh: cannot download Debian's ceph-iscsi (BENCH_UPSTREAM=0 skips it)" >&2; exit 1; }
    export BENCH_UPSTREAM_DIR
    # what upstream imports; Debian packages, installed beside ours without replacing it
    /usr/bin/python3 -c 'import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography, configshell_fb, requests' 2>/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-flask python3-rados \
        python3-rbd python3-rtslib-fb python3-netifaces python3-openssl python3-cryptography \
        python3-configshell-fb python3-requests python3-distutils >/dev/null
  fi
}
netns_enter "$@"

netns_setup ceph-iscsi-bench
ip addr add 192.0.2.10/32 dev lo

netns_build apiload

IQN=iqn.2003-01.com.example.bench:target
GW=bench-gw1
netns_gateway_cfg 127.0.0.1,192.0.2.10 127.0.0.1
# upstream logs to /var/log/rbd-target-api/ unless told otherwise
{ sed 's/^api_port = 5000/api_port = 5001/' "$W/iscsi-gateway.cfg"; printf 'log_to_file = false\nlog_to_stderr = true\n'; } >"$W/upstream.cfg"

echo "== ceph-iscsi api (ours) as $GW"
mkdir -p "$W/configfs"
api_daemon ours.log --gateway-name "$GW" --configfs-root "$W/configfs"
wait_http http://127.0.0.1:5000/api

put "/api/target/$IQN"
put "/api/gateway/$IQN/$GW" ip_address=192.0.2.10 skipchecks=true

echo "== ours"
"$W/apiload" -url http://127.0.0.1:5000 -target "$IQN" "$@"

if [[ ${BENCH_UPSTREAM:-1} != 0 ]]; then
  echo "== upstream rbd-target-api (Python, Debian ceph-iscsi), same config object"
  U=$BENCH_UPSTREAM_DIR
  # its settings path is fixed; the private mount namespace lets us point it elsewhere
  mkdir -p /etc/ceph
  [[ -e /etc/ceph/iscsi-gateway.cfg ]] || : >/etc/ceph/iscsi-gateway.cfg
  mount --bind "$W/upstream.cfg" /etc/ceph/iscsi-gateway.cfg
  PYTHONPATH=$U/root/usr/lib/python3/dist-packages /usr/bin/python3 "$U/root/usr/bin/rbd-target-api" >"$W/upstream.log" 2>&1 &
  PIDS+=($!)
  if wait_http http://127.0.0.1:5001/api; then
    "$W/apiload" -url http://127.0.0.1:5001 -target "$IQN" -skip-setup "$@"
    echo "== ours again (same document, same run)"
    "$W/apiload" -url http://127.0.0.1:5000 -target "$IQN" -skip-setup "$@"
  else
    echo "upstream did not start:"; tail -30 "$W/upstream.log"
  fi
fi
