package devstatus

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strconv"
	"testing"
	"time"

	"ceph-iscsi/rados"
)

// report is one tcmu-runner daemon's status as the mgr lists it.
func report(owner bool, stamp string, timedOut, connLost, lockLost int) rados.ServiceDaemon {
	return rados.ServiceDaemon{
		Status: map[string]string{
			"lock_owner":        strconv.FormatBool(owner),
			"cmd_timed_out_cnt": strconv.Itoa(timedOut),
			"conn_lost_cnt":     strconv.Itoa(connLost),
			"lock_lost_cnt":     strconv.Itoa(lockLost),
		},
		StatusStamp: stamp,
	}
}

const (
	t1 = "2026-12-02T01:21:02.401234+0000"
	t2 = "2026-12-02T01:21:03.000001+0000"
)

func state(t *testing.T, tr *Tracker, img string) string {
	t.Helper()
	st, ok := tr.Status(img)
	if !ok {
		return StateUnknown
	}
	return st.State
}

func TestTrackerOnlineDegradedOnline(t *testing.T) {
	for _, tc := range []struct {
		name string
		// bump changes gw2's counters from (0,0,0)
		timedOut, connLost, lockLost int
		want                         string
	}{
		{"cmd timed out", 1, 0, 0, StateClusterFailure},
		{"conn lost", 0, 2, 0, StateClusterFailure},
		{"lock lost at the threshold", 0, 0, 5, StateExcessFailovers},
		{"lock lost below the threshold", 0, 0, 4, StateOnline},
		// the mgr lists counters sorted: lock_lost_cnt is applied last and wins
		{"both", 1, 0, 5, StateExcessFailovers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(Options{StableStateResetCount: 2, LockLostThreshold: 5})
			base := map[string]rados.ServiceDaemon{
				"gw1:rbd/disk1": report(true, t1, 0, 0, 0),
				"gw2:rbd/disk1": report(false, t1, 0, 0, 0),
			}
			tr.Apply(base)
			want := Status{State: StateOnline, LockOwner: "gw1", Gateways: map[string]map[string]int64{
				"gw1": {"cmd_timed_out_cnt": 0, "conn_lost_cnt": 0, "lock_lost_cnt": 0},
				"gw2": {"cmd_timed_out_cnt": 0, "conn_lost_cnt": 0, "lock_lost_cnt": 0},
			}}
			if got, ok := tr.Status("rbd/disk1"); !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("first poll: %+v %v, want %+v", got, ok, want)
			}
			bumped := map[string]rados.ServiceDaemon{
				"gw1:rbd/disk1": base["gw1:rbd/disk1"],
				"gw2:rbd/disk1": report(false, t2, tc.timedOut, tc.connLost, tc.lockLost),
			}
			tr.Apply(bumped)
			if got := state(t, tr, "rbd/disk1"); got != tc.want {
				t.Fatalf("after the change: %q, want %q", got, tc.want)
			}
			st, _ := tr.Status("rbd/disk1")
			if st.Gateways["gw2"]["lock_lost_cnt"] != int64(tc.lockLost) || st.Gateways["gw2"]["cmd_timed_out_cnt"] != int64(tc.timedOut) {
				t.Fatalf("counters not updated: %+v", st.Gateways)
			}
			if tc.want == StateOnline {
				return
			}
			// more than StableStateResetCount (2) quiet polls: the third one
			for i := 1; i <= 2; i++ {
				tr.Apply(bumped)
				if got := state(t, tr, "rbd/disk1"); got != tc.want {
					t.Fatalf("quiet poll %d: %q, want still %q", i, got, tc.want)
				}
			}
			tr.Apply(bumped)
			if got := state(t, tr, "rbd/disk1"); got != StateOnline {
				t.Fatalf("after 3 quiet polls: %q, want Online", got)
			}
		})
	}
}

func TestTrackerChangeRestartsTheQuietCount(t *testing.T) {
	tr := New(Options{StableStateResetCount: 1, LockLostThreshold: 12})
	poll := func(n int) {
		tr.Apply(map[string]rados.ServiceDaemon{"gw1:rbd/d": report(true, t1, n, 0, 0)})
	}
	poll(0)
	poll(1)
	poll(1) // quiet 1: not more than 1
	poll(2) // a new change before the reset
	poll(2)
	if got := state(t, tr, "rbd/d"); got != StateClusterFailure {
		t.Fatalf("state %q, want still degraded", got)
	}
	poll(2)
	if got := state(t, tr, "rbd/d"); got != StateOnline {
		t.Fatalf("state %q, want Online", got)
	}
	// a counter going down (tcmu-runner restarted) is a change too, as upstream
	poll(0)
	if got := state(t, tr, "rbd/d"); got != StateClusterFailure {
		t.Fatalf("state %q after the counter went down, want degraded", got)
	}
}

func TestTrackerLockOwnerNewestStamp(t *testing.T) {
	tr := New(Options{})
	tr.Apply(map[string]rados.ServiceDaemon{
		"gw1:rbd/d": report(true, t2, 0, 0, 0),
		"gw2:rbd/d": report(true, t1, 0, 0, 0), // older claim: ignored
	})
	if st, _ := tr.Status("rbd/d"); st.LockOwner != "gw1" {
		t.Fatalf("lock owner %q, want gw1", st.LockOwner)
	}
	tr.Apply(map[string]rados.ServiceDaemon{
		"gw1:rbd/d": report(false, t2, 0, 0, 0),
		"gw2:rbd/d": report(true, "2026-12-02T02:00:00.000000+0100", 0, 0, 0), // still older (01:00 UTC)
	})
	if st, _ := tr.Status("rbd/d"); st.LockOwner != "gw1" {
		t.Fatalf("lock owner %q, want gw1 (the other stamp is older in UTC)", st.LockOwner)
	}
	tr.Apply(map[string]rados.ServiceDaemon{
		"gw1:rbd/d": report(false, t2, 0, 0, 0),
		"gw2:rbd/d": report(true, "2026-12-02T03:00:00.5+0100", 0, 0, 0),
	})
	if st, _ := tr.Status("rbd/d"); st.LockOwner != "gw2" || st.State != StateOnline {
		t.Fatalf("status %+v, want lock owner gw2, Online", st)
	}
}

func TestTrackerImageAndGatewayGone(t *testing.T) {
	tr := New(Options{})
	tr.Apply(map[string]rados.ServiceDaemon{
		"gw1:rbd/a":      report(true, t1, 0, 0, 0),
		"gw2:rbd/a":      report(false, t1, 0, 0, 0),
		"gw1:pool2/ns/b": report(true, t1, 0, 0, 0),
	})
	if _, ok := tr.Status("pool2/ns/b"); !ok {
		t.Fatal("pool2/ns/b not tracked")
	}
	// gw1 is gone: its counters and its lock ownership go with it; b is gone
	tr.Apply(map[string]rados.ServiceDaemon{"gw2:rbd/a": report(false, t1, 0, 0, 0)})
	st, ok := tr.Status("rbd/a")
	if !ok || st.LockOwner != "" || len(st.Gateways) != 1 || st.Gateways["gw2"] == nil {
		t.Fatalf("rbd/a: %+v %v, want only gw2 and no lock owner", st, ok)
	}
	if _, ok := tr.Status("pool2/ns/b"); ok {
		t.Fatal("pool2/ns/b still tracked after its daemons left")
	}
	// gw1 comes back with other counters: a fresh baseline, not a change
	tr.Apply(map[string]rados.ServiceDaemon{
		"gw1:rbd/a": report(true, t2, 7, 7, 70),
		"gw2:rbd/a": report(false, t1, 0, 0, 0),
	})
	if st, _ := tr.Status("rbd/a"); st.State != StateOnline || st.LockOwner != "gw1" {
		t.Fatalf("rbd/a: %+v, want Online, owner gw1", st)
	}
	// tcmu-runner gone altogether (the service left the map)
	tr.Apply(map[string]rados.ServiceDaemon{})
	if _, ok := tr.Status("rbd/a"); ok {
		t.Fatal("rbd/a still tracked with no daemon")
	}
}

func TestTrackerSkipsWhatDoesNotParse(t *testing.T) {
	tr := New(Options{})
	tr.Apply(map[string]rados.ServiceDaemon{
		"no-colon":  report(true, t1, 0, 0, 0),
		"gw1:rbd/d": {Status: map[string]string{"cmd_timed_out_cnt": "x", "conn_lost_cnt": "3", "lock_owner": "true"}, StatusStamp: "yesterday"},
		"gw2:rbd/e": {}, // listed before its first status
	})
	st, ok := tr.Status("rbd/d")
	want := Status{State: StateOnline, Gateways: map[string]map[string]int64{"gw1": {"conn_lost_cnt": 3}}}
	if !ok || !reflect.DeepEqual(st, want) {
		t.Fatalf("rbd/d: %+v, want %+v", st, want)
	}
	if st, ok := tr.Status("rbd/e"); !ok || st.State != StateOnline || len(st.Gateways) != 0 {
		t.Fatalf("rbd/e: %+v %v, want Online without gateways", st, ok)
	}
}

type fakeSource struct {
	available bool
	err       error
	daemons   map[string]rados.ServiceDaemon
}

func (f *fakeSource) MgrAvailable() (bool, error) { return f.available, f.err }
func (f *fakeSource) ServiceStatus(string) (map[string]rados.ServiceDaemon, error) {
	return f.daemons, nil
}

func TestPollWithoutMgrKeepsWhatItKnew(t *testing.T) {
	tr := New(Options{})
	src := &fakeSource{daemons: map[string]rados.ServiceDaemon{"gw1:rbd/d": report(true, t1, 0, 0, 0)}}
	if err := tr.Poll(src); !errors.Is(err, errNoMgr) {
		t.Fatalf("poll without a mgr: %v", err)
	}
	if _, ok := tr.Status("rbd/d"); ok {
		t.Fatal("status known without a mgr")
	}
	src.available = true
	if err := tr.Poll(src); err != nil {
		t.Fatal(err)
	}
	src.available, src.err = false, errors.New("mon down")
	if err := tr.Poll(src); err == nil {
		t.Fatal("a failing mon went unreported")
	}
	if st, ok := tr.Status("rbd/d"); !ok || st.LockOwner != "gw1" {
		t.Fatalf("status %+v %v lost on a failed poll", st, ok)
	}
}

// scriptSource answers polls from a script and ends the run after the last one.
type scriptSource struct {
	avail  []bool
	n      int
	cancel func()
}

func (s *scriptSource) MgrAvailable() (bool, error) {
	a := s.avail[s.n]
	s.n++
	if s.n == len(s.avail) {
		s.cancel()
	}
	return a, nil
}
func (s *scriptSource) ServiceStatus(string) (map[string]rados.ServiceDaemon, error) {
	return nil, nil
}

type countHandler struct{ warn, info int }

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warn++
	} else if r.Level == slog.LevelInfo {
		h.info++
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func TestRunLogsOnceNotEveryPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &scriptSource{avail: []bool{false, false, false, true, true, false, false}, cancel: cancel}
	h := &countHandler{}
	New(Options{}).Run(ctx, src, time.Nanosecond, slog.New(h))
	if src.n != len(src.avail) {
		t.Fatalf("%d polls, want %d", src.n, len(src.avail))
	}
	// fails (logged), recovers (logged), fails again (logged)
	if h.warn != 2 || h.info != 1 {
		t.Fatalf("%d warnings, %d infos; want 2 and 1", h.warn, h.info)
	}
}
