#!/usr/bin/env bash
# install-go.sh — make sure a Go toolchain new enough for go.mod is on PATH. Debian 12
# ships Go 1.19, too old for this module; the official toolchain is itself a module
# (golang.org/toolchain) on the Go module proxy, which is what `GOTOOLCHAIN` uses, so
# fetch it from there into /usr/local/go.
set -euo pipefail
want=$(awk '$1=="go"{print $2; exit}' "$(dirname "$0")/../../go.mod")
have=$( (go env GOVERSION 2>/dev/null || true) | sed 's/^go//')
newer() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" == "$2" ]]; }
if [[ -n $have ]] && newer "$have" "$want"; then
  echo "go $have is new enough (go.mod wants $want)" >&2
  exit 0
fi
ver=${GO_VERSION:-1.26.8}
arch=$(dpkg --print-architecture)
proxy=${GOPROXY:-https://proxy.golang.org}; proxy=${proxy%%,*}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "installing go $ver from the module proxy into /usr/local/go" >&2
curl -fsSL "$proxy/golang.org/toolchain/@v/v0.0.1-go$ver.linux-$arch.zip" -o "$tmp/go.zip"
(cd "$tmp" && unzip -q go.zip)
rm -rf /usr/local/go
mv "$tmp/golang.org/toolchain@v0.0.1-go$ver.linux-$arch" /usr/local/go
chmod -R a+rX /usr/local/go; chmod +x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*
ln -sf /usr/local/go/bin/go /usr/local/bin/go
ln -sf /usr/local/go/bin/gofmt /usr/local/bin/gofmt
go version
