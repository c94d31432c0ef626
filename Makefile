# ceph-iscsi — see README.md.
SHELL := /bin/bash
PREFIX ?= /usr
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin
UNITDIR := $(DESTDIR)/lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -tags pacific -trimpath -ldflags "-X ceph-iscsi/commands.version=$(VERSION)"
DEV_CLUSTER_DIR ?= $(CURDIR)/out/dev-cluster
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
GOTESTFLAGS ?= -count=1 -timeout 20m

# What the build, the tests and a gateway need: Ceph pacific client and daemons (the
# tests start a real cluster), cgo's compiler, and the tools of the LIO VM tests.
DEB_PACKAGES := build-essential pkg-config curl unzip git ca-certificates iproute2 \
	librados-dev librbd-dev ceph-mon ceph-osd ceph-common rbd-nbd python3 \
	qemu-system-x86 busybox-static kmod open-iscsi tcmu-runner

.PHONY: all deps build install test unit lint vm-test dev-cluster dev-cluster-down clean bench-api bench-restore-vm

all: build

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps installs packages: run it as root" >&2; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES)
	dist/dev/install-go.sh
	go mod download

build:
	mkdir -p bin
	CGO_ENABLED=1 go build $(GOFLAGS_BUILD) -o bin/ceph-iscsi .
	for n in rbd-target-api rbd-target-gw gwcli; do ln -sf ceph-iscsi bin/$$n; done

install: build
	install -D -m 0755 bin/ceph-iscsi $(BINDIR)/ceph-iscsi
	for n in rbd-target-api rbd-target-gw gwcli; do ln -sf ceph-iscsi $(BINDIR)/$$n; done
	install -D -m 0644 -t $(UNITDIR) dist/systemd/*.service

# The whole suite: static checks, then every package's tests against one real Ceph
# cluster started for the run (CEPH_CONF set by with-cluster.sh), then the real-kernel
# LIO tests in the VM.
test: lint unit vm-test

unit: build
	dist/dev/with-cluster.sh go test -tags pacific $(GOTESTFLAGS) ./...

# Real LIO: a qemu guest boots Debian's kernel with this machine's / over 9p and runs
# the vmtest-tagged tests against the real configfs, tcmu-runner and open-iscsi.
vm-test:
	vm/test.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet -tags pacific ./...
	go run $(STATICCHECK) -tags pacific ./...

# Benchmarks (root; they print figures, nothing asserts on time): the REST API, ours and
# upstream's side by side (~3 min), and a 256-disk / 64-client restore in the VM (5-8 min).
bench-api:
	bench/api.sh

bench-restore-vm:
	bench/restore-vm.sh

dev-cluster:
	dist/dev/ceph-cluster.sh up $(DEV_CLUSTER_DIR)

dev-cluster-down:
	dist/dev/ceph-cluster.sh down $(DEV_CLUSTER_DIR)

clean:
	rm -rf bin out
