package rados

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
)

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		// a child process of a multi-process test: the parent's cluster is in CEPH_CONF
		os.Exit(runHelper(h))
	}
	devcluster.Main(m)
}

const helperEnv = "CEPH_ISCSI_RADOS_TEST_HELPER"

func connect(tb testing.TB) *Conn {
	tb.Helper()
	c := devcluster.Require(tb)
	conn, err := Connect(ConnOptions{ConfFile: c.Conf, ClientName: "client.admin"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(conn.Close)
	return conn
}

// uniqueObject gives each test its own config object, so tests can share one cluster.
func uniqueObject(tb testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	return fmt.Sprintf("gateway.conf.%s.%08x", name, rand.Uint32())
}

func testIdentity() config.UpgradeOptions {
	return config.UpgradeOptions{Gateway: config.Identity{FQDN: "gw1.example.test", ShortName: "gw1"}}
}

func openStore(tb testing.TB, conn *Conn, object string, mod func(*StoreOptions)) *Store {
	tb.Helper()
	opts := StoreOptions{Object: object, Upgrade: testIdentity()}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := OpenStore(ctx, conn, opts)
	if err != nil {
		tb.Fatalf("OpenStore(%s): %v", object, err)
	}
	tb.Cleanup(s.Close)
	return s
}

// runHelper is the body of a child process; it returns the exit code.
func runHelper(kind string) int {
	var err error
	switch kind {
	case "commit":
		err = helperCommit()
	case "hold-lock":
		err = helperHoldLock()
	default:
		err = fmt.Errorf("unknown helper %q", kind)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}
