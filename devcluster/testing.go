package devcluster

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the cluster of this test binary; set once by Main.
var shared struct {
	sync.Mutex
	c   *Cluster
	err error
}

// Main is a TestMain body: it reuses the cluster named by CEPH_CONF or starts one for
// this test binary, runs the tests and stops what it started. Without Ceph installed
// the tests that need it skip, except under CI=true, where a cluster that does not
// start fails the run: CI must never pass by skipping them.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	c := FromEnv()
	if c == nil {
		if err := Available(); err != nil {
			shared.err = err
		} else {
			dir, err := os.MkdirTemp("", "ceph-iscsi-test-cluster-")
			if err == nil {
				c, err = Start(dir)
			}
			shared.err = err
		}
		if shared.err != nil && os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "devcluster: no Ceph cluster under CI=true:", shared.err)
			return 1
		}
	}
	shared.c = c
	if c != nil {
		// CLIs and child processes the tests start find the cluster the same way.
		os.Setenv("CEPH_CONF", c.Conf)
		os.Setenv("CEPH_KEYRING", c.Keyring)
	}
	code := m.Run()
	if c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// Require returns the test binary's cluster, or skips the test with the reason there
// is none (Main fails the whole run first under CI=true).
func Require(tb testing.TB) *Cluster {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil {
		if shared.err != nil {
			tb.Skipf("no Ceph cluster: %v", shared.err)
		}
		tb.Skip("no Ceph cluster: use devcluster.Main in TestMain, or set CEPH_CONF")
	}
	return shared.c
}
