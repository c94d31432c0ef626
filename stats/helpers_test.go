package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"ceph-iscsi/lio"
)

const (
	testIQN = "iqn.2003-01.com.example:gw"
	testGW  = "gw1.example.test"
	testGW2 = "gw2.example.test"
)

// gateway builds, on a new emulated configfs, what gateway gw1 of a
// two-gateway target holds: luns disks (lun_<i> is rbd/img<i>, owned by gw1
// when i is even, by gw2 when odd) and clients initiators, client c mapped
// to lunsPerClient disks starting at disk c*lunsPerClient.
func gateway(tb testing.TB, luns, clients, lunsPerClient int) lio.FS {
	tb.Helper()
	spec := lio.Spec{
		Gateway: testGW, Backstore: lio.BackstoreUserRBD, Settings: lio.DefaultSettings(),
		Disks: map[string]lio.DiskSpec{}, Targets: map[string]lio.TargetSpec{},
	}
	ts := lio.TargetSpec{ACLEnabled: true, IPList: []string{"192.0.2.1", "192.0.2.2"},
		Portals: map[string][]string{testGW: {"192.0.2.1"}, testGW2: {"192.0.2.2"}},
		Disks:   map[string]int{}, Clients: map[string]lio.ClientSpec{}}
	for i := range luns {
		id := fmt.Sprintf("rbd/img%d", i)
		owner := testGW
		if i%2 == 1 {
			owner = testGW2
		}
		spec.Disks[id] = lio.DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%d", i), WWN: fmt.Sprintf("wwn-%d", i),
			Owner: owner, Size: int64(i+1) << 30}
		ts.Disks[id] = i
	}
	for c := range clients {
		cs := lio.ClientSpec{LUNs: map[string]int{}}
		for j := range lunsPerClient {
			cs.LUNs[fmt.Sprintf("rbd/img%d", (c*lunsPerClient+j)%luns)] = j
		}
		ts.Clients[clientIQN(c)] = cs
	}
	spec.Targets[testIQN] = ts
	desired, err := lio.Build(spec)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := lio.NewEmulatedFS(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	observed, err := lio.Observe(f)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := lio.Apply(tb.Context(), f, lio.NewPlan(observed, desired)); err != nil {
		tb.Fatal(err)
	}
	return f
}

func clientIQN(c int) string { return fmt.Sprintf("iqn.1994-05.com.example:client%d", c) }

// set writes a kernel-generated file of the emulated tree (rel to the
// target's directory), as I/O or a login would; the emulation must seed it.
func set(tb testing.TB, f lio.FS, rel, value string) {
	tb.Helper()
	p := filepath.Join(f.Root(), "target/iscsi", testIQN, rel)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("not seeded by the emulation: %v", err)
	}
	if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// io sets the counters of client c's mapped LUN id.
func io(tb testing.TB, f lio.FS, c, lunID int, cmds, readMiB, writeMiB uint64) {
	tb.Helper()
	d := fmt.Sprintf("tpgt_1/acls/%s/lun_%d/statistics/scsi_auth_intr/", clientIQN(c), lunID)
	set(tb, f, d+"num_cmds", fmt.Sprint(cmds))
	set(tb, f, d+"read_mbytes", fmt.Sprint(readMiB))
	set(tb, f, d+"write_mbytes", fmt.Sprint(writeMiB))
}

// portIO sets the target-port counters of TPG LUN lun in TPG tag.
func portIO(tb testing.TB, f lio.FS, tag, lun int, cmds, readMiB, writeMiB uint64) {
	tb.Helper()
	d := fmt.Sprintf("tpgt_%d/lun/lun_%d/statistics/scsi_tgt_port/", tag, lun)
	set(tb, f, d+"in_cmds", fmt.Sprint(cmds))
	set(tb, f, d+"read_mbytes", fmt.Sprint(readMiB))
	set(tb, f, d+"write_mbytes", fmt.Sprint(writeMiB))
}

// login gives client c a logged-in session on TPG 1.
func login(tb testing.TB, f lio.FS, c int) {
	tb.Helper()
	set(tb, f, fmt.Sprintf("tpgt_1/acls/%s/info", clientIQN(c)),
		"InitiatorName: "+clientIQN(c)+"\nInitiatorAlias: host\n"+
			"LIO Session ID: 1   ISID: 0x00 0x02 0x3d 0x00 0x00 0x01  TSIH: 1  SessionType: Normal\n"+
			"Session State: TARG_SESS_STATE_LOGGED_IN\n"+
			"CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN\n   Address 192.0.2.100 TCP  StatSN: 0x5\n")
}
