#!/usr/bin/env bash
# upgrade-test.sh - the README's "Replacing upstream ceph-iscsi on a gateway", with real
# dpkg and apt, in the vm/run.sh guest (its / is a tmpfs overlay on this machine's, so
# nothing here is installed or removed): Debian's upstream ceph-iscsi is installed, an
# operator's /etc/ceph/iscsi-gateway.cfg written, ours installed over it with
# `apt-get install ./ceph-iscsi_*.deb` (an upgrade in place), then upstream's package
# installed again (going back), then purged. Needs out/ceph-iscsi_*.deb (make deb) and
# upstream's package (make deps: dist/dev/upstream.sh). 5-10 min under TCG (dpkg and
# upstream's Python byte-compilation are slow there).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [[ ${1:-} != --guest ]]; then
  debs=("$ROOT"/out/ceph-iscsi_*_amd64.deb)
  [[ -f ${debs[0]} ]] || { echo "upgrade-test: no out/ceph-iscsi_*_amd64.deb: run make deb" >&2; exit 1; }
  up=$("$ROOT/dist/dev/upstream.sh")
  ups=("$up"/ceph-iscsi_*_all.deb)
  # the guest installs from this machine's packages: both packages' dependencies must be here
  for dep in $(dpkg-deb -f "${ups[0]}" Depends | sed 's/([^)]*)//g; s/,/ /g; s/:any//g') \
    $(dpkg-deb -f "${debs[0]}" Depends | sed 's/([^)]*)//g; s/,/ /g'); do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$dep" 2>/dev/null) == installed ]] ||
      { echo "upgrade-test: $dep is not installed: run make deps" >&2; exit 1; }
  done
  OUT=$(mktemp -d /tmp/ceph-iscsi-upgrade.XXXXXX)
  cp "${debs[0]}" "${ups[0]}" "$OUT/"
  export CEPH_ISCSI_VM_OUT=$OUT CEPH_ISCSI_VM_TIMEOUT=${CEPH_ISCSI_VM_TIMEOUT:-1800}
  export CEPH_ISCSI_VM_ENV="OURS=/vm-out/$(basename "${debs[0]}") UPSTREAM=/vm-out/$(basename "${ups[0]}")"
  rc=0
  "$ROOT/vm/run.sh" "$0" --guest >"$OUT/vm.log" 2>&1 || rc=$?
  grep '^upgrade-test' "$OUT/vm.log" || true
  if ((rc == 0)); then rm -rf "$OUT"; else tail -30 "$OUT/vm.log"; echo "upgrade-test: FAIL (rc $rc), logs in $OUT" >&2; fi
  exit $rc
fi

# --- in the guest ---
fail() { echo "upgrade-test: FAIL: $*"; exit 1; }
start=$SECONDS
step() { printf 'upgrade-test: %-70s (%ds)\n' "$1" $((SECONDS - start)); }
CFG=/etc/ceph/iscsi-gateway.cfg
version() { dpkg-query -W -f='${db:Status-Status} ${Version}' ceph-iscsi 2>/dev/null || true; }
# apt reads local packages as its sandbox user (_apt): not from the private out share
install -d -m 0755 /run/debs
install -m 0644 "$OURS" "$UPSTREAM" /run/debs/
OURS=/run/debs/$(basename "$OURS") UPSTREAM=/run/debs/$(basename "$UPSTREAM")
upv=$(dpkg-deb -f "$UPSTREAM" Version)
ourv=$(dpkg-deb -f "$OURS" Version)
rm -f /var/lib/man-db/auto-update   # man-db's re-index: minutes under TCG, for nothing here
[[ $(version) != installed* ]] || fail "a ceph-iscsi package is installed on the host: $(version)"

dpkg -i "$UPSTREAM" >/tmp/up.log 2>&1 || { cat /tmp/up.log; fail "dpkg -i upstream"; }
[[ $(version) == "installed $upv" ]] || fail "after installing upstream: $(version)"
head -1 /usr/bin/rbd-target-api | grep -q python || fail "/usr/bin/rbd-target-api is not upstream's Python program"
mkdir -p /etc/ceph
printf '[config]\n# the operator'"'"'s settings\npool = rbd\napi_secure = false\ntrusted_ip_list = 192.0.2.1\n' >"$CFG"
cp "$CFG" /tmp/cfg.operator
step "upstream $upv installed, operator's $CFG written"

# The README's command (with --force-confold: keep the operator's settings file).
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
  "$OURS" >/tmp/ours.log 2>&1 || { cat /tmp/ours.log; fail "apt-get install ours"; }
[[ $(version) == "installed $ourv" ]] || fail "after apt-get install ours: $(version)"
grep -q 'Unpacking ceph-iscsi .*over (' /tmp/ours.log || { cat /tmp/ours.log; fail "apt did not upgrade the package in place"; }
[[ $(readlink /usr/bin/rbd-target-api) == ceph-iscsi ]] || fail "/usr/bin/rbd-target-api is not our symlink"
help=$(rbd-target-api --help 2>&1) || fail "rbd-target-api --help: $help"
grep -q '^   ceph-iscsi api - ' <<<"$help" || fail "rbd-target-api does not run ceph-iscsi api: $help"
[[ ! -e /usr/lib/python3/dist-packages/ceph_iscsi_config ]] || fail "upstream's Python modules are left"
grep -qx 'Type=notify' /lib/systemd/system/rbd-target-api.service || fail "the api unit is not ours"
cmp -s "$CFG" /tmp/cfg.operator || fail "the upgrade changed the operator's $CFG"
/usr/bin/ceph-iscsi version
step "apt-get install ./$(basename "$OURS"): upgraded in place, operator's cfg kept"

# Going back: upstream's package again (from the archive: apt install ceph-iscsi=$upv).
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades \
  "$UPSTREAM" >/tmp/back.log 2>&1 || { cat /tmp/back.log; fail "apt-get install upstream again"; }
[[ $(version) == "installed $upv" ]] || fail "after going back: $(version)"
head -1 /usr/bin/rbd-target-api | grep -q python || fail "/usr/bin/rbd-target-api is not upstream's again"
[[ ! -e /usr/bin/ceph-iscsi ]] || fail "our binary is left after going back"
grep -qx 'Type=simple' /lib/systemd/system/rbd-target-api.service || fail "the api unit is not upstream's again"
cmp -s "$CFG" /tmp/cfg.operator || fail "going back changed the operator's $CFG"
step "apt-get install --allow-downgrades upstream: back to $upv, cfg kept"

dpkg -P ceph-iscsi >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "dpkg -P"; }
[[ -z $(version) || $(version) == not-installed* ]] || fail "after purge: $(version)"
step "purged; PASS"
