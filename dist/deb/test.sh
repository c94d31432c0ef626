#!/usr/bin/env bash
# Package test (root, ~1 min): builds the .deb (make deb), checks what the binary links,
# installs the package on this machine, checks its files, programs, man page, completion
# and units, then removes and purges it and checks nothing of it is left. The machine is
# left as it was found, also on failure: the package is purged and a settings file that
# was there before is put back.
set -euo pipefail
cd "$(dirname "$0")/../.."

PKG=ceph-iscsi
CFG=/etc/ceph/iscsi-gateway.cfg
UNITS=(rbd-target-api.service rbd-target-gw.service ceph-iscsi-restore.service)
SYSTEMD_STATE=(/etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked)

fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
start=$SECONDS
step() { printf 'deb-test: %-62s (%ds)\n' "$1" $((SECONDS - start)); }

[[ $(id -u) == 0 ]] || fail "needs root (it installs the package with dpkg)"
for tool in dpkg readelf ldd man systemd-analyze deb-systemd-helper bash; do
	command -v "$tool" >/dev/null || fail "$tool is missing: run make deps"
done
pkg_status() { dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null || echo not-installed; }
status=$(pkg_status)
[[ $status == not-installed ]] ||
	fail "package $PKG is already on this machine ($status); the test would replace it: remove it first"

work=$(mktemp -d)
installed=0
cleanup() {
	if ((installed)) && [[ $(pkg_status) != not-installed ]]; then
		dpkg -P "$PKG" >/dev/null 2>&1 || echo "deb-test: cleanup: dpkg -P $PKG failed" >&2
	fi
	if [[ -e $work/cfg.orig ]]; then
		cp -a "$work/cfg.orig" "$CFG"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# State that must be the same after the purge as before the install.
snapshot() { { find "${SYSTEMD_STATE[@]}" -mindepth 1 -printf '%p -> %l\n' 2>/dev/null || true; } | sort; }
snapshot >"$work/systemd.before"
if [[ -e $CFG ]]; then
	cp -a "$CFG" "$work/cfg.orig"
	rm -f "$CFG"
fi

# --- build ---
make -s deb >"$work/make.log" 2>&1 || { tail -20 "$work/make.log"; fail "make deb"; }
debs=(out/ceph-iscsi_*_amd64.deb)
((${#debs[@]} == 1)) && [[ -f ${debs[0]} ]] || fail "make deb made ${debs[*]}, want one out/ceph-iscsi_*_amd64.deb"
deb=${debs[0]}
step "make deb: $deb"

# --- what the binary links (README, "What the binary links") ---
# Direct NEEDED entries, without versions beyond the soname: only the Ceph client
# libraries and the C library. A libresolv, libnss_* or libpthread would mean cgo's
# resolver or user lookup crept back in (netgo, osusergo).
needed=$(readelf -d out/deb/ceph-iscsi | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort)
for lib in $needed; do
	case $lib in
	librados.so.* | librbd.so.* | libc.so.6) ;;
	*) fail "the binary links $lib directly; want only librados, librbd and libc (NEEDED: $(echo $needed))" ;;
	esac
done
for want in librados.so librbd.so libc.so; do
	grep -q "^$want" <<<"$needed" || fail "the binary does not link $want (NEEDED: $(echo $needed))"
done
ldd out/deb/ceph-iscsi >"$work/ldd" || fail "ldd failed"
! grep -q 'not found' "$work/ldd" || fail "unresolved libraries: $(grep 'not found' "$work/ldd")"
step "links directly: $(echo $needed) ($(wc -l <"$work/ldd") libs with deps)"

# --- install ---
for dep in $(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/,/ /g'); do
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$dep" 2>/dev/null) == installed ]] ||
		fail "dependency $dep is not installed: run make deps"
done
# Paths of the package, and which of them (directories shared with other packages)
# existed before.
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$' | sort >"$work/paths"
while read -r p; do if [[ -e $p || -L $p ]]; then echo "$p"; fi; done <"$work/paths" >"$work/existed"
installed=1
dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log"; fail "dpkg -i"; }
[[ $(pkg_status) == installed ]] || fail "after dpkg -i the status is $(pkg_status)"
step "dpkg -i"

expected=(
	/usr/bin/ceph-iscsi /usr/bin/rbd-target-api /usr/bin/rbd-target-gw /usr/bin/gwcli
	/lib/systemd/system/rbd-target-api.service /lib/systemd/system/rbd-target-gw.service
	/lib/systemd/system/ceph-iscsi-restore.service
	"$CFG"
	/usr/share/man/man8/ceph-iscsi.8.gz /usr/share/man/man8/rbd-target-api.8.gz
	/usr/share/man/man8/rbd-target-gw.8.gz /usr/share/man/man8/gwcli.8.gz
	/usr/share/bash-completion/completions/ceph-iscsi /usr/share/bash-completion/completions/gwcli
	/usr/share/bash-completion/completions/rbd-target-api /usr/share/bash-completion/completions/rbd-target-gw
	/usr/share/zsh/vendor-completions/_ceph-iscsi
)
dpkg -L "$PKG" >"$work/list"
for f in "${expected[@]}"; do
	grep -qx "$f" "$work/list" || fail "dpkg -L $PKG does not list $f"
	[[ -e $f ]] || fail "$f is listed but missing"
done
[[ $(dpkg-query -W -f='${Conffiles}' "$PKG" | awk '{print $1}') == "$CFG" ]] ||
	fail "conffiles: $(dpkg-query -W -f='${Conffiles}' "$PKG"), want $CFG"
step "dpkg -L: ${#expected[@]} expected files, $CFG a conffile"

# --- the programs ---
want_version=$(out/deb/ceph-iscsi version)
[[ $(/usr/bin/ceph-iscsi version) == "$want_version" && $want_version == "ceph-iscsi "?* ]] ||
	fail "ceph-iscsi version: $(/usr/bin/ceph-iscsi version), want $want_version"
declare -A sub=([rbd-target-api]=api [rbd-target-gw]=gw [gwcli]=cli)
for name in "${!sub[@]}"; do
	[[ $(readlink "/usr/bin/$name") == ceph-iscsi ]] || fail "/usr/bin/$name is not a symlink to ceph-iscsi"
	out=$("$name" --help 2>&1) || fail "$name --help exited $?: $out"
	grep -q "^   ceph-iscsi ${sub[$name]} - " <<<"$out" || fail "$name --help does not run ${sub[$name]}: $out"
done
step "$want_version; rbd-target-api, rbd-target-gw, gwcli run api, gw, cli"

# --- man pages ---
for page in ceph-iscsi rbd-target-api gwcli; do
	out=$(MANWIDTH=80 man -P cat 8 "$page" 2>&1) || fail "man 8 $page: $out"
	for word in NAME COMMANDS api gw cli restore --config; do
		grep -qw -- "$word" <<<"$out" || fail "man 8 $page does not show $word"
	done
done
step "man 8 ceph-iscsi / rbd-target-api / gwcli render"

# --- completion ---
out=$(bash -c '
	source /usr/share/bash-completion/completions/ceph-iscsi || exit 1
	complete -p gwcli >/dev/null || exit 1
	COMP_WORDS=(ceph-iscsi "")
	COMP_CWORD=1
	_ceph_iscsi_complete
	echo "${COMPREPLY[*]}"
	COMP_WORDS=(ceph-iscsi api --con)
	COMP_CWORD=2
	_ceph_iscsi_complete
	echo "${COMPREPLY[*]}"') || fail "bash cannot source the completion script: $out"
grep -qx 'api gw cli restore version help h' <<<"$(head -1 <<<"$out")" ||
	fail "bash completes ceph-iscsi <TAB> to: $(head -1 <<<"$out")"
grep -q -- '--config' <<<"$(tail -1 <<<"$out")" || fail "bash completes ceph-iscsi api --con<TAB> to: $(tail -1 <<<"$out")"
[[ $(head -1 /usr/share/zsh/vendor-completions/_ceph-iscsi) == "#compdef ceph-iscsi gwcli rbd-target-api rbd-target-gw" ]] ||
	fail "zsh completion does not declare the four programs"
step "bash completion completes subcommands and flags; zsh file in place"

# --- units ---
for unit in "${UNITS[@]}"; do
	out=$(systemd-analyze verify "/lib/systemd/system/$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
	if grep "$unit" <<<"$out"; then fail "systemd-analyze verify warns about $unit"; fi
done
for unit in rbd-target-api.service rbd-target-gw.service; do
	[[ -L /etc/systemd/system/multi-user.target.wants/$unit ]] || fail "postinst did not enable $unit"
done
step "systemd-analyze verify accepts the units; api and gw enabled"

# --- remove: the conffile stays ---
dpkg -r "$PKG" >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log"; fail "dpkg -r"; }
[[ $(pkg_status) == config-files ]] || fail "after dpkg -r the status is $(pkg_status), want config-files"
[[ -f $CFG ]] || fail "dpkg -r removed the conffile $CFG"
for f in "${expected[@]}"; do
	if [[ $f == "$CFG" ]]; then continue; fi
	if [[ -e $f || -L $f ]]; then fail "dpkg -r left $f"; fi
done
step "dpkg -r: programs gone, $CFG kept"

# --- purge: nothing left ---
dpkg -P "$PKG" >"$work/dpkg-p.log" 2>&1 || { cat "$work/dpkg-p.log"; fail "dpkg -P"; }
[[ $(pkg_status) == not-installed ]] || fail "after dpkg -P the status is $(pkg_status)"
while read -r p; do
	grep -qxF "$p" "$work/existed" && continue
	if [[ -e $p || -L $p ]]; then fail "dpkg -P left $p"; fi
done <"$work/paths"
snapshot | diff -u "$work/systemd.before" - || fail "the unit enablement state differs from before the install"
step "dpkg -P: no file of the package left, unit state as before"
echo "deb-test: PASS in $((SECONDS - start))s"
