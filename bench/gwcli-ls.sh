#!/usr/bin/env bash
# bench/gwcli-ls.sh - cold `gwcli ls` on a group of 3 gateways (our api daemons on 127.0.0.1-3,
# emulated configfs) with 256 disks and 64 clients of 4 LUNs each, on a throw-away Ceph
# cluster: wall time of a new gwcli process per run, the API requests of one snapshot load
# by route, and where the time goes (API part, RBD part). Figures are printed, never asserted.
#
#   bench/gwcli-ls.sh          (root; about 5-8 minutes on a busy 2-core machine)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/.."
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
GWCLI_BENCH=1 go test -tags pacific -count=1 -timeout 30m ./commands/ -run '^TestGwcliLsBench$' -v 2>&1 |
  grep -E 'cli_bench_test.go|^(--- |ok|FAIL)'
