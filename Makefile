# ceph-iscsi — see README.md.
SHELL := /bin/bash
PREFIX ?= /usr
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin
UNITDIR := $(DESTDIR)/lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# netgo, osusergo: pure-Go resolver and user lookup, so that the binary's only dynamic
# libraries are librados/librbd (no static archives in Debian) and libc (see README).
GOFLAGS_BUILD := -tags pacific,netgo,osusergo -trimpath -ldflags "-X ceph-iscsi/commands.version=$(VERSION)"
DEV_CLUSTER_DIR ?= $(CURDIR)/out/dev-cluster
# Build tools, compiled once by make deps (or the first target needing them) into a cache
# outside the clone: nfpm alone is about 3 CPU minutes of compiling.
TOOLS_DIR ?= $(HOME)/.cache/ceph-iscsi/tools
STATICCHECK := $(TOOLS_DIR)/staticcheck-v0.7.0
NFPM := $(TOOLS_DIR)/nfpm-v2.45.2
# Above upstream's 3.x, so that installing the package upgrades upstream's ceph-iscsi.
DEB_VERSION ?= 4.0.0~git$(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null).$(shell git rev-parse --short=8 HEAD 2>/dev/null)
# The Ceph client version the build links (upstream part, e.g. 16.2.15): the package's floor.
CEPH_LIB_VERSION ?= $(shell dpkg-query -W -f='$${Version}' librados-dev 2>/dev/null | sed 's/[+~-].*//')
DEB := out/ceph-iscsi_$(DEB_VERSION)_amd64.deb
GOTESTFLAGS ?= -count=1 -timeout 20m

# What the build, the tests and a gateway need: Ceph pacific client and daemons (the
# tests start a real cluster), cgo's compiler, the tools of the LIO VM tests, and
# what the package test runs (readelf, systemd-analyze, man, deb-systemd-helper), and
# what upstream's Python package depends on (the going-back test runs its rbd-target-api,
# deb-upgrade-test installs it in the VM).
DEB_PACKAGES := build-essential pkg-config curl unzip git ca-certificates iproute2 \
	librados-dev librbd-dev ceph-mon ceph-mgr ceph-osd ceph-common rbd-nbd python3 \
	qemu-system-x86 busybox-static kmod open-iscsi tcmu-runner \
	binutils systemd man-db init-system-helpers e2fsprogs \
	python3-flask python3-rados python3-rbd python3-rtslib-fb python3-netifaces \
	python3-openssl python3-cryptography python3-requests python3-distutils python3-configshell-fb

.PHONY: all deps tools build install deb demo test unit deb-test deb-upgrade-test lint vm-test dev-cluster dev-cluster-down clean bench-api bench-api-vm bench-build3 bench-restore-vm

all: build

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps installs packages: run it as root" >&2; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES)
	dist/dev/install-go.sh
	go mod download
	$(MAKE) tools
	dist/dev/upstream.sh

tools: $(NFPM) $(STATICCHECK)

$(TOOLS_DIR)/nfpm-%:
	mkdir -p $(TOOLS_DIR)/.bin
	GOBIN=$(TOOLS_DIR)/.bin go install github.com/goreleaser/nfpm/v2/cmd/nfpm@$*
	mv $(TOOLS_DIR)/.bin/nfpm $@

$(TOOLS_DIR)/staticcheck-%:
	mkdir -p $(TOOLS_DIR)/.bin
	GOBIN=$(TOOLS_DIR)/.bin go install honnef.co/go/tools/cmd/staticcheck@$*
	mv $(TOOLS_DIR)/.bin/staticcheck $@

build:
	mkdir -p bin
	CGO_ENABLED=1 go build $(GOFLAGS_BUILD) -o bin/ceph-iscsi .
	for n in rbd-target-api rbd-target-gw gwcli; do ln -sf ceph-iscsi bin/$$n; done

install: build
	install -D -m 0755 bin/ceph-iscsi $(BINDIR)/ceph-iscsi
	for n in rbd-target-api rbd-target-gw gwcli; do ln -sf ceph-iscsi $(BINDIR)/$$n; done
	install -D -m 0644 -t $(UNITDIR) dist/systemd/*.service

# The Debian package (dist/deb/nfpm.yaml): binary, upstream names, units, sample
# settings file, man page and shell completion rendered by the binary itself.
deb: build $(NFPM)
	@if [ -z "$(CEPH_LIB_VERSION)" ]; then echo "librados-dev is not installed: run make deps" >&2; exit 1; fi
	rm -rf out/deb && mkdir -p out/deb
	cp bin/ceph-iscsi out/deb/ceph-iscsi
	bin/ceph-iscsi gen-docs out/deb
	gzip -9n out/deb/ceph-iscsi.8
	rm -f out/ceph-iscsi_*_amd64.deb
	DEB_VERSION='$(DEB_VERSION)' CEPH_LIB_VERSION='$(CEPH_LIB_VERSION)' \
	  $(NFPM) package -f dist/deb/nfpm.yaml -p deb -t $(DEB)

# The main job end to end (root when something is missing: it runs make deps): a Ceph
# cluster, the VM with the real kernel, the package installed in it, rbd-target-api and
# rbd-target-gw run as their units, an export configured with gwcli, an open-iscsi CHAP
# login that writes a file system, a /metrics scrape, and the file found in the RBD image
# through librbd. ~4-8 min.
demo:
	dist/demo/demo.sh

# The whole suite: static checks, then every package's tests against one real Ceph
# cluster started for the run (CEPH_CONF set by with-cluster.sh), then the package
# installed, run and purged on this machine, then the real-kernel LIO tests in the VM.
test: lint unit deb-test vm-test

unit: build
	dist/dev/with-cluster.sh go test -tags pacific $(GOTESTFLAGS) ./...

# Root: installs out/ceph-iscsi_*.deb, checks it, removes and purges it.
deb-test:
	dist/deb/test.sh

# The README's in-place replacement of upstream's package and the way back, with apt and
# dpkg in the VM (nothing changes on this machine; 5-10 min): see dist/deb/upgrade-test.sh.
deb-upgrade-test: deb
	dist/deb/upgrade-test.sh

# Real LIO: a qemu guest boots Debian's kernel with this machine's / over 9p and runs
# the vmtest-tagged tests against the real configfs, tcmu-runner and open-iscsi.
vm-test:
	vm/test.sh

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet -tags pacific ./...
	$(STATICCHECK) -tags pacific ./...

# Benchmarks (root; they print figures, nothing asserts on time): the REST API, ours and
# upstream's side by side (~3 min), and a 256-disk / 64-client restore in the VM (5-8 min);
# bench-api-vm replays upstream's call sequence against ours and upstream's rbd-target-api
# on the real kernel in one VM boot (15-60 min under TCG).
bench-api:
	bench/api.sh

# A 4096-LUN target, 1024 clients x 4 LUNs, built through the API of three
# gateways on emulated configfs (root); BENCH_ARGS="-luns 256" for a short run.
bench-build3:
	bench/build3.sh $(BENCH_ARGS)

bench-restore-vm:
	bench/restore-vm.sh

bench-api-vm:
	bench/api-vm.sh

dev-cluster:
	dist/dev/ceph-cluster.sh up $(DEV_CLUSTER_DIR)

dev-cluster-down:
	dist/dev/ceph-cluster.sh down $(DEV_CLUSTER_DIR)

clean:
	rm -rf bin out
