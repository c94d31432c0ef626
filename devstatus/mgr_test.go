package devstatus

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
)

// countingSource is the real connection, counting polls and ending the run after n.
type countingSource struct {
	*rados.Conn
	n, max int
	cancel func()
}

func (s *countingSource) MgrAvailable() (bool, error) {
	s.n++
	if s.n == s.max {
		s.cancel()
	}
	return s.Conn.MgrAvailable()
}

// TestTrackerWithoutMgrThenWithOne: on a cluster whose mgr is down, polls fail
// without blocking, the image stays unknown and the failure is logged once; once the
// mgr is back, tcmu-runner's report is read. The test stops the mgr, so it runs on a
// cluster of its own rather than the one other tests share.
func TestTrackerWithoutMgrThenWithOne(t *testing.T) {
	if err := devcluster.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "devstatus-nomgr-")
	if err != nil {
		t.Fatal(err)
	}
	c, err := devcluster.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	// librados lets CEPH_KEYRING (set for the shared cluster when one runs) override the
	// keyring named in ceph.conf: point it at this cluster's.
	t.Setenv("CEPH_KEYRING", c.Keyring)
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// stop the mgr this test's cluster runs, and tell the mon at once
	b, err := os.ReadFile(filepath.Join(dir, "run", "mgr.x.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(60 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("mgr %d does not stop", pid)
		}
	}
	if _, err := c.Ceph("mgr", "fail", "x"); err != nil {
		t.Fatal(err)
	}
	if ok, err := conn.MgrAvailable(); err != nil || ok {
		t.Fatalf("mgr available after mgr fail: %v %v", ok, err)
	}

	tr := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &countingSource{Conn: conn, max: 4, cancel: cancel}
	h := &countHandler{}
	tr.Run(ctx, src, time.Millisecond, slog.New(h))
	if src.n != 4 || h.warn != 1 {
		t.Fatalf("%d polls, %d warnings; want 4 polls and one warning", src.n, h.warn)
	}

	// the mgr back (the script restarts what is stopped), tcmu-runner reporting
	script, err := devcluster.Script()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script, "up", dir).CombinedOutput(); err != nil {
		t.Fatalf("restart the mgr: %v\n%s", err, out)
	}
	reg, err := rados.RegisterService(rados.ConnOptions{ConfFile: c.Conf}, Service, "gwA:rbd/img", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if err := reg.UpdateStatus(map[string]string{"lock_owner": "true", "conn_lost_cnt": "0"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := tr.Poll(conn)
		if st, ok := tr.Status("rbd/img"); ok && st.LockOwner == "gwA" && st.State == StateOnline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the report never arrived; last poll: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMain(m *testing.M) { devcluster.Main(m) }
