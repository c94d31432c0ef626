package api

import (
	"encoding/json"
	"strings"
	"testing"

	"ceph-iscsi/devstatus"
	"ceph-iscsi/rados"
)

// GET /api/disk serves the tracker's view in upstream's get_status_dict shape, and
// "Unknown" for an image tcmu-runner does not report.
func TestDiskStatusFromTracker(t *testing.T) {
	tr := devstatus.New(devstatus.Options{StableStateResetCount: 3, LockLostThreshold: 12})
	report := func(timedOut string) map[string]rados.ServiceDaemon {
		return map[string]rados.ServiceDaemon{
			gw1 + ":rbd/disk1": {Status: map[string]string{"lock_owner": "true", "cmd_timed_out_cnt": timedOut,
				"conn_lost_cnt": "0", "lock_lost_cnt": "2"}, StatusStamp: "2026-12-02T01:21:02.401234+0000"},
			gw2 + ":rbd/disk1": {Status: map[string]string{"lock_owner": "false", "cmd_timed_out_cnt": "0",
				"conn_lost_cnt": "0", "lock_lost_cnt": "0"}, StatusStamp: "2026-12-02T01:21:02.401234+0000"},
		}
	}
	tr.Apply(report("0"))
	tr.Apply(report("1"))
	env := newDiskEnv(t, newMemStore(diskDoc()), gw1, diskImages(), func(d *Deps) { d.DeviceStatus = tr })

	rec := env.do(t, "GET", "/api/disk/rbd/disk1", nil)
	var got struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	want := `{"gateways":{"` + gw1 + `":{"cmd_timed_out_cnt":1,"conn_lost_cnt":0,"lock_lost_cnt":2},"` + gw2 +
		`":{"cmd_timed_out_cnt":0,"conn_lost_cnt":0,"lock_lost_cnt":0}},"lock_owner":"` + gw1 +
		`","state":"Degraded - cluster access failure"}`
	if string(got.Status) != want {
		t.Fatalf("status\n got %s\nwant %s", got.Status, want)
	}

	rec = env.do(t, "GET", "/api/disk/rbd/vol1", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"status":{"state":"Unknown"}`) {
		t.Fatalf("untracked disk: %d %s", rec.Code, rec.Body)
	}

	// status=yes gives every disk the status its own GET /api/disk gives, in one answer.
	rec = env.do(t, "GET", "/api/disks", v("config", "yes", "status", "yes"))
	var all struct {
		Disks map[string]struct {
			Status json.RawMessage `json:"status"`
		} `json:"disks"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if len(all.Disks) == 0 || string(all.Disks["rbd/disk1"].Status) != want || string(all.Disks["rbd/vol1"].Status) != `{"state":"Unknown"}` {
		t.Fatalf("disks with status: %s", rec.Body)
	}
	// Without status=yes the entries stay as upstream's (no status key).
	rec = env.do(t, "GET", "/api/disks", v("config", "yes"))
	if strings.Contains(rec.Body.String(), `"status"`) {
		t.Fatalf("status without status=yes: %s", rec.Body)
	}
}
