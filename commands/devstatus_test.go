package commands

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// diskStatus is the `status` of GET /api/disk/<pool>/<image>.
type diskStatus struct {
	State     string                      `json:"state"`
	LockOwner string                      `json:"lock_owner"`
	Gateways  map[string]map[string]int64 `json:"gateways"`
}

// TestAPIDiskStatusFromTheMgr: a real api daemon's tracker reads fake tcmu-runner
// daemons (registered through librados exactly as tcmu-runner registers its images)
// from the real mgr's service map: the disk goes Online, Degraded when a gateway's
// counter moves, and Online again after stable_state_reset_count quiet polls.
func TestAPIDiskStatusFromTheMgr(t *testing.T) {
	// a degraded image stays so for stable_state_reset_count+1 polls of 1 s: wide
	// enough for the test to see it on a busy machine
	cl := newCluster(t, "[device_status]\nstatus_check_interval = 1\nstable_state_reset_count = 8\n")
	gw := cl.daemon(1)
	cl.start(gw)
	img := fmt.Sprintf("devstatus-%08x", mrand.Uint32())
	t.Cleanup(func() { _ = rbd.Remove(context.Background(), cl.conn.Raw(), "rbd", img, rbd.RemoveOptions{}) })
	cl.mustCall(gw, http.MethodPut, "/api/disk/rbd/"+img,
		url.Values{"mode": {"create"}, "size": {"16M"}, "pool": {"rbd"}, "count": {"1"}})

	status := func() diskStatus {
		var got struct {
			Status diskStatus `json:"status"`
		}
		cl.fetch(gw, "/api/disk/rbd/"+img, &got)
		return got.Status
	}
	wait := func(what string, cond func(diskStatus) bool) diskStatus {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			st := status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never happened; last status %+v", what, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// nothing reports the image yet
	if st := status(); st.State != "Unknown" || st.Gateways != nil {
		t.Fatalf("before tcmu-runner: %+v, want Unknown only", st)
	}

	counters := func(timedOut, connLost, lockLost int) map[string]string {
		return map[string]string{"cmd_timed_out_cnt": fmt.Sprint(timedOut), "conn_lost_cnt": fmt.Sprint(connLost),
			"lock_lost_cnt": fmt.Sprint(lockLost)}
	}
	register := func(gwName string, owner bool, status map[string]string) *rados.ServiceRegistration {
		t.Helper()
		r, err := rados.RegisterService(rados.ConnOptions{ConfFile: cl.conf}, "tcmu-runner", gwName+":rbd/"+img,
			map[string]string{"pool_name": "rbd", "image_name": img})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		status["lock_owner"] = fmt.Sprint(owner)
		if err := r.UpdateStatus(status); err != nil {
			t.Fatal(err)
		}
		return r
	}
	register("gwA", true, counters(0, 0, 0))
	gwB := register("gwB", false, counters(2, 0, 0))
	// A registration reaches the mgr's service map before its first status report: wait
	// for both reports, not only both daemons.
	st := wait("Online with both gateways' reports", func(s diskStatus) bool {
		return len(s.Gateways) == 2 && len(s.Gateways["gwA"]) == 3 && len(s.Gateways["gwB"]) == 3
	})
	if st.State != "Online" || st.LockOwner != "gwA" || st.Gateways["gwB"]["cmd_timed_out_cnt"] != 2 {
		t.Fatalf("first status %+v, want Online, lock owner gwA, gwB's counters as reported", st)
	}

	bumped := counters(2, 1, 0)
	bumped["lock_owner"] = "false"
	if err := gwB.UpdateStatus(bumped); err != nil {
		t.Fatal(err)
	}
	st = wait("gwB's conn_lost_cnt seen", func(s diskStatus) bool { return s.Gateways["gwB"]["conn_lost_cnt"] == 1 })
	if st.State != "Degraded - cluster access failure" {
		t.Fatalf("after a counter change: %+v, want Degraded - cluster access failure", st)
	}
	wait("Online again", func(s diskStatus) bool { return s.State == "Online" })
	if log := gw.out.String(); strings.Contains(log, "device status: cannot read") {
		t.Fatalf("the tracker failed with a mgr present:\n%s", log)
	}
}
