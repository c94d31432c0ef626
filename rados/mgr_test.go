package rados

import (
	"testing"
	"time"

	"ceph-iscsi/devcluster"
)

// waitService polls `service status` until cond holds for the daemons of service.
func waitService(t *testing.T, conn *Conn, service string, cond func(map[string]ServiceDaemon) bool) map[string]ServiceDaemon {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		daemons, err := conn.ServiceStatus(service)
		if err != nil {
			t.Fatal(err)
		}
		if cond(daemons) {
			return daemons
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s never reached the expected state; last %+v", service, daemons)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A daemon registered through librados (as tcmu-runner does) shows in the mgr's
// service map with its status and a parseable stamp, follows its updates, and leaves
// the map when its connection closes.
func TestServiceRegistrationShowsInServiceStatus(t *testing.T) {
	conn := connect(t)
	if ok, err := conn.MgrAvailable(); err != nil || !ok {
		t.Fatalf("mgr available: %v %v", ok, err)
	}
	c := devcluster.Require(t)
	const service = "ceph-iscsi-test"
	name := "gw1.example.test:rbd/" + t.Name()
	reg, err := RegisterService(ConnOptions{ConfFile: c.Conf}, service, name, map[string]string{"pool_name": "rbd"})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			reg.Close()
		}
	}()
	if err := reg.UpdateStatus(map[string]string{"lock_owner": "true", "cmd_timed_out_cnt": "0"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	got := waitService(t, conn, service, func(d map[string]ServiceDaemon) bool {
		return d[name].Status["lock_owner"] == "true"
	})
	t.Logf("registered after %v", time.Since(t0))
	stamp1, err := ParseServiceStamp(got[name].StatusStamp)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.UpdateStatus(map[string]string{"lock_owner": "false", "cmd_timed_out_cnt": "3"}); err != nil {
		t.Fatal(err)
	}
	got = waitService(t, conn, service, func(d map[string]ServiceDaemon) bool {
		return d[name].Status["cmd_timed_out_cnt"] == "3"
	})
	stamp2, err := ParseServiceStamp(got[name].StatusStamp)
	if err != nil || stamp2.Before(stamp1) {
		t.Fatalf("second stamp %v (%v) before the first %v", stamp2, err, stamp1)
	}
	t.Logf("updated after %v", time.Since(t0))
	reg.Close()
	closed = true
	defer func() { t.Logf("gone after %v", time.Since(t0)) }()
	waitService(t, conn, service, func(d map[string]ServiceDaemon) bool {
		_, ok := d[name]
		return !ok
	})
}

func TestDecodeServiceStatus(t *testing.T) {
	out := []byte(`{"tcmu-runner":{"gw1:rbd/d":{"status_stamp":"2026-12-02T01:21:02.401234+0000","last_beacon":"x","status":{"lock_owner":"true"}}},"rgw":{}}`)
	d, err := DecodeServiceStatus(out, "tcmu-runner")
	if err != nil || d["gw1:rbd/d"].Status["lock_owner"] != "true" {
		t.Fatalf("%+v %v", d, err)
	}
	if d, err := DecodeServiceStatus([]byte(`{}`), "tcmu-runner"); err != nil || d == nil || len(d) != 0 {
		t.Fatalf("no service: %+v %v", d, err)
	}
	if _, err := DecodeServiceStatus([]byte(`[`), "tcmu-runner"); err == nil {
		t.Fatal("bad JSON accepted")
	}
	if ts, err := ParseServiceStamp("2026-12-02T02:21:02.5+0100"); err != nil || !ts.Equal(time.Date(2026, 12, 2, 1, 21, 2, 5e8, time.UTC)) {
		t.Fatalf("stamp %v %v", ts, err)
	}
}
