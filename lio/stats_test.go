package lio

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const statsIQN = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"

// writeStat sets a kernel-generated file of the emulated tree, as I/O or a
// login would.
func writeStat(t testing.TB, f FS, rel, value string) {
	t.Helper()
	if _, err := os.Stat(f.abs(rel)); err != nil {
		t.Fatalf("the emulation does not seed %s: %v", rel, err)
	}
	if err := os.WriteFile(f.abs(rel), []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadStatistics(t *testing.T) {
	f := newEmu(t)
	reconcile(t, f, mustBuild(t, specFromConfig(t, "two-gw.json", "node1.ceph.local", BackstoreUserRBD)))
	tpg1 := "target/iscsi/" + statsIQN + "/tpgt_1"
	rh7 := tpg1 + "/acls/iqn.1994-05.com.redhat:rh7-client"
	writeStat(t, f, "target/iscsi/"+statsIQN+"/fabric_statistics/iscsi_instance/sessions", "1")
	writeStat(t, f, rh7+"/info", "InitiatorName: iqn.1994-05.com.redhat:rh7-client\nInitiatorAlias: rh7\n"+
		"LIO Session ID: 3   ISID: 0x00 0x02 0x3d 0x00 0x00 0x04  TSIH: 1  SessionType: Normal\n"+
		"Session State: TARG_SESS_STATE_LOGGED_IN\n"+
		"---------------------[iSCSI Session Values]-----------------------\n"+
		"-----------------------[iSCSI Connections]-------------------------\n"+
		"CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN\n   Address 192.168.100.9 TCP  StatSN: 0x1\n")
	writeStat(t, f, rh7+"/lun_1/statistics/scsi_auth_intr/num_cmds", "76")
	writeStat(t, f, rh7+"/lun_1/statistics/scsi_auth_intr/read_mbytes", "1")
	writeStat(t, f, rh7+"/lun_1/statistics/scsi_auth_intr/write_mbytes", "2")
	writeStat(t, f, tpg1+"/lun/lun_3/statistics/scsi_tgt_port/in_cmds", "80")
	writeStat(t, f, tpg1+"/lun/lun_3/statistics/scsi_tgt_port/read_mbytes", "3")
	writeStat(t, f, tpg1+"/lun/lun_3/statistics/scsi_tgt_port/write_mbytes", "4")

	st, err := ReadStatistics(f)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.MarshalIndent(st, "", " ")
	want := `{
 "storage_objects": [
  {"name": "ec.disk.2", "plugin": "user", "size": 1073741824},
  {"name": "rbd.disk_1", "plugin": "user", "size": 1073741824}
 ],
 "targets": [
  {"iqn": "` + statsIQN + `", "sessions": 1, "tpgs": [
   {"tag": 1, "enabled": true, "portals": ["192.168.100.201:3260"],
    "luns": [
     {"index": 0, "storage_object": "rbd.disk_1", "alua_group": "ao", "port": {"commands": 0, "read_mib": 0, "write_mib": 0}},
     {"index": 3, "storage_object": "ec.disk.2", "alua_group": "ano1", "port": {"commands": 80, "read_mib": 3, "write_mib": 4}}
    ],
    "acls": [
     {"initiator": "iqn.1994-05.com.redhat:nochap", "session": {"initiator": "", "alias": "", "state": "", "ip_address": null}, "has_session": false,
      "mapped_luns": [{"index": 0, "tpg_lun": 3, "storage_object": "ec.disk.2", "io": {"commands": 0, "read_mib": 0, "write_mib": 0}}]},
     {"initiator": "iqn.1994-05.com.redhat:rh7-client",
      "session": {"initiator": "iqn.1994-05.com.redhat:rh7-client", "alias": "rh7", "state": "LOGGED_IN", "ip_address": ["192.168.100.9"]}, "has_session": true,
      "mapped_luns": [
       {"index": 0, "tpg_lun": 0, "storage_object": "rbd.disk_1", "io": {"commands": 0, "read_mib": 0, "write_mib": 0}},
       {"index": 1, "tpg_lun": 3, "storage_object": "ec.disk.2", "io": {"commands": 76, "read_mib": 1, "write_mib": 2}}
      ]}
    ]},
   {"tag": 2, "enabled": false, "portals": ["[2001:db8::202]:3260"],
    "luns": [
     {"index": 0, "storage_object": "rbd.disk_1", "alua_group": "ano2", "port": {"commands": 0, "read_mib": 0, "write_mib": 0}},
     {"index": 3, "storage_object": "ec.disk.2", "alua_group": "ao", "port": {"commands": 0, "read_mib": 0, "write_mib": 0}}
    ],
    "acls": null}
  ]}
 ]
}`
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.MarshalIndent(w, "", " ")
	var g any
	_ = json.Unmarshal(got, &g)
	gotJSON, _ := json.MarshalIndent(g, "", " ")
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("statistics differ:\n%s", lineDiff(string(wantJSON), string(gotJSON)))
	}
	if !st.Targets[0].TPGs[0].ACLs[1].LoggedIn() || st.Targets[0].TPGs[0].ACLs[0].LoggedIn() {
		t.Error("LoggedIn")
	}
}

func TestReadStatisticsEdges(t *testing.T) {
	// no target_core_mod: nothing, no error
	if st, err := ReadStatistics(FS{root: t.TempDir(), emulated: true}); err != nil || len(st.Targets)+len(st.StorageObjects) != 0 {
		t.Fatalf("empty root: %+v %v", st, err)
	}
	f := newEmu(t)
	reconcile(t, f, mustBuild(t, specFromConfig(t, "two-gw.json", "node1.ceph.local", BackstoreUserRBD)))
	// a counter the kernel would never show is an error, and the rest is
	// still read
	lun := "target/iscsi/" + statsIQN + "/tpgt_1/lun/lun_0/statistics/scsi_tgt_port/in_cmds"
	writeStat(t, f, lun, "garbage")
	st, err := ReadStatistics(f)
	if err == nil || !strings.Contains(err.Error(), "in_cmds") || len(st.Targets) != 1 || len(st.StorageObjects) != 2 {
		t.Fatalf("bad counter: %v %+v", err, st)
	}
	// a statistics group that vanished (an object being removed) is no error
	if err := os.RemoveAll(filepath.Dir(f.abs(lun))); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStatistics(f); err != nil {
		t.Fatal(err)
	}
	// fileio sizes come from info
	if got := fileioSize([]byte("Status: ACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 16384\n" +
		"        TCM FILEIO ID: 0        File: /tmp/disk1  Size: 1048576  Mode: O_DSYNC Async: 0")); got != 1048576 {
		t.Fatalf("fileio size %d", got)
	}
}
