package devcluster

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the cluster of this test binary: the one CEPH_CONF names, or one
// started by the first Require and stopped by Main.
var shared struct {
	sync.Mutex
	c       *Cluster
	err     error
	started bool // Require tried to start one (c or err says how it went)
}

// mainRan: only a binary whose TestMain is Main stops what Require starts.
var mainRan bool

// Main is a TestMain body: it reuses the cluster named by CEPH_CONF, or starts one for
// this test binary when the first test asks for it (tests that need no cluster then
// run without waiting for one), runs the tests and stops what it started. Without
// Ceph installed the tests that need it skip, except under CI=true, where that, or a
// cluster that does not start, fails the run: CI must never pass by skipping them.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	mainRan = true
	if c := FromEnv(); c != nil {
		shared.c, shared.started = c, true
	} else if err := Available(); err != nil {
		shared.err, shared.started = err, true
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "devcluster: no Ceph cluster under CI=true:", err)
			return 1
		}
	}
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if c := shared.c; c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// start brings the test binary's cluster up in a fresh temp dir; a cluster that
// failed to start leaves nothing behind.
func start() (*Cluster, error) {
	dir, err := os.MkdirTemp("", "ceph-iscsi-test-cluster-")
	if err != nil {
		return nil, fmt.Errorf("devcluster: %w", err)
	}
	c, err := Start(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// CLIs and child processes the tests start find the cluster the same way.
	os.Setenv("CEPH_CONF", c.Conf)
	os.Setenv("CEPH_KEYRING", c.Keyring)
	return c, nil
}

// Require returns the test binary's cluster, starting it on first use, or skips the
// test with the reason there is none; under CI=true a cluster that does not start
// fails the test instead.
func Require(tb testing.TB) *Cluster {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.started && mainRan {
		shared.started = true
		shared.c, shared.err = start()
	}
	if shared.c == nil {
		if shared.err == nil {
			tb.Skip("no Ceph cluster: use devcluster.Main in TestMain, or set CEPH_CONF")
		}
		if os.Getenv("CI") == "true" {
			tb.Fatalf("no Ceph cluster under CI=true: %v", shared.err)
		}
		tb.Skipf("no Ceph cluster: %v", shared.err)
	}
	return shared.c
}
