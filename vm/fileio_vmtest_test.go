//go:build vmtest

package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/lio"
)

const (
	fileioIQN  = "iqn.2003-01.com.example.iscsi-gw:vmtest"
	chapIQN    = "iqn.1994-05.com.example:chap-client"
	groupIQN   = "iqn.1994-05.com.example:group-client"
	fileioDir  = "/run/vmtest-fileio"
	gateway    = "gw1.vmtest"
	remoteGW   = "gw2.vmtest"
	localPort  = localIP + ":3260"
	fileioSize = 64 << 20
)

var (
	chapAuth  = chap{"chapuser", "chappassword1", "mutualuser", "mutualpass1234"}
	groupAuth = chap{"groupuser", "grouppassword1", "", ""}
	discAuth  = chap{"discuser", "discpassword1", "", ""}
)

func (c chap) spec() lio.AuthSpec {
	return lio.AuthSpec{Username: c.user, Password: lio.Secret(c.pass), MutualUsername: c.mutualUser, MutualPassword: lio.Secret(c.mutualPass)}
}

// fileioSpec is a two-gateway target as the config would describe it, seen
// from gw1: TPG 1 is local (192.0.2.10 on lo), TPG 2 belongs to gw2. Two
// fileio disks (img1 owned here, img2 by gw2, so both ALUA flavours exist),
// a CHAP+mutual-CHAP client with one LUN, a host-group client with both,
// and discovery auth.
func fileioSpec() lio.Spec {
	disk := func(image, owner string) lio.DiskSpec {
		return lio.DiskSpec{Pool: "rbd", Image: image, Owner: owner, WWN: "vmtest-" + image,
			Size: fileioSize, DevicePath: filepath.Join(fileioDir, image)}
	}
	return lio.Spec{
		Gateway: gateway, Backstore: lio.BackstoreFileIO, Settings: lio.DefaultSettings(),
		Disks: map[string]lio.DiskSpec{"rbd/img1": disk("img1", gateway), "rbd/img2": disk("img2", remoteGW)},
		Targets: map[string]lio.TargetSpec{fileioIQN: {
			ACLEnabled: true,
			IPList:     []string{localIP, remoteIP},
			Portals:    map[string][]string{gateway: {localIP}, remoteGW: {remoteIP}},
			Disks:      map[string]int{"rbd/img1": 0, "rbd/img2": 1},
			Clients: map[string]lio.ClientSpec{
				chapIQN: {Auth: chapAuth.spec(), LUNs: map[string]int{"rbd/img1": 0}},
				// a host group's disks are copied into its members' LUNs
				groupIQN: {Auth: groupAuth.spec(), LUNs: map[string]int{"rbd/img1": 0, "rbd/img2": 1}},
			},
		}},
		DiscoveryAuth: discAuth.spec(), ManageDiscoveryAuth: true,
	}
}

func build(t *testing.T, spec lio.Spec) lio.State {
	t.Helper()
	st, err := lio.Build(spec)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return st
}

// TestFileIO drives the real kernel through package lio with fileio
// backstores: create, round-trip, iSCSI login with (mutual) CHAP and
// discovery auth, data path, a config change, teardown.
func TestFileIO(t *testing.T) {
	start := time.Now()
	if err := os.MkdirAll(fileioDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := realFS(t)
	spec := fileioSpec()
	desired := build(t, spec)
	plan := converge(t, f, desired)
	step(t, start, "created: %d ops applied, re-plan empty", len(plan.Ops))
	dumpTree(t).write(t, filepath.Join(os.Getenv("VM_OUT"), "fileio-configfs.txt"))

	// What the kernel did with what we wrote.
	tpg1 := targetDir + "/iscsi/" + fileioIQN + "/tpgt_1"
	tpg2 := targetDir + "/iscsi/" + fileioIQN + "/tpgt_2"
	for p, want := range map[string]string{
		tpg1 + "/enable":                                           "1",
		tpg2 + "/enable":                                           "0",
		tpg1 + "/param/AuthMethod":                                 "CHAP",
		tpg1 + "/attrib/authentication":                            "1",
		tpg1 + "/acls/" + chapIQN + "/auth/userid_mutual":          chapAuth.mutualUser,
		targetDir + "/iscsi/discovery_auth/enforce_discovery_auth": "1",
	} {
		if got := readTrim(t, p); got != want {
			t.Errorf("%s = %q, want %q", strings.TrimPrefix(p, targetDir+"/"), got, want)
		}
	}
	for _, np := range []string{tpg1 + "/np/" + localPort, tpg2 + "/np/" + remoteIP + ":3260"} {
		if _, err := os.Stat(np); err != nil {
			t.Errorf("portal: %v", err)
		}
	}
	// fileio creates the backing file but does not size it: it grows on write
	if _, err := os.Stat(filepath.Join(fileioDir, "img1")); err != nil {
		t.Errorf("backing file: %v", err)
	}

	c := initiator{name: chapIQN, iface: "chap", auth: chapAuth, disc: discAuth}

	t.Run("discovery auth", func(t *testing.T) {
		noDisc := c
		noDisc.disc = chap{}
		noDisc.configure(t)
		if got, err := noDisc.discover(t, localIP); err == nil {
			t.Errorf("discovery without credentials succeeded: %v", got)
		}
		c.configure(t)
		got, err := c.discover(t, localIP)
		if err != nil {
			t.Fatal(err)
		}
		// tpgt_2 is disabled, but its tpg_enabled_sendtargets=0 makes LIO list
		// it anyway: as upstream intends, discovery on one gateway returns
		// the portals of all of them.
		if want := []string{localPort + ",1 " + fileioIQN, remoteIP + ":3260,2 " + fileioIQN}; !slices.Equal(got, want) {
			t.Errorf("SendTargets = %v, want %v", got, want)
		}
		step(t, start, "discovery auth enforced and accepted")
	})

	t.Run("bad secrets refused", func(t *testing.T) {
		bad := c
		bad.auth.pass = "wrongpassword1"
		bad.configure(t)
		if _, err := bad.discover(t, localIP); err != nil {
			t.Fatal(err)
		}
		if err := bad.login(t, fileioIQN, localIP); err == nil {
			bad.logout(t, fileioIQN, localIP)
			t.Error("login with a wrong CHAP password succeeded")
		}
		bad = c
		bad.auth.mutualPass = "wrongmutual123"
		bad.configure(t)
		if _, err := bad.discover(t, localIP); err != nil {
			t.Fatal(err)
		}
		if err := bad.login(t, fileioIQN, localIP); err == nil {
			bad.logout(t, fileioIQN, localIP)
			t.Error("login accepted a target with the wrong mutual CHAP secret")
		}
		step(t, start, "wrong CHAP and wrong mutual CHAP refused")
	})

	t.Run("chap client data path", func(t *testing.T) {
		c.configure(t)
		if _, err := c.discover(t, localIP); err != nil {
			t.Fatal(err)
		}
		if err := c.login(t, fileioIQN, localIP); err != nil {
			t.Fatal(err)
		}
		defer c.logout(t, fileioIQN, localIP)
		step(t, start, "logged in as %s (CHAP + mutual CHAP)", chapIQN)
		devs := c.disks(t, fileioIQN, 1)
		if len(devs) != 1 || devs[0] == "" {
			t.Fatalf("chap client sees LUNs %v, want only LUN 0", devs)
		}
		step(t, start, "LUN 0 is %s", devs[0])
		data := pattern(1)
		const off = 3 << 20
		writeReadDirect(t, devs[0], off, data)
		backing := make([]byte, len(data))
		fh, err := os.Open(filepath.Join(fileioDir, "img1"))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if _, err := fh.ReadAt(backing, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(backing, data) {
			t.Fatalf("backing file differs from what was written (first diff at %d)", firstDiff(backing, data))
		}
		step(t, start, "1 MiB written with O_DIRECT, read back, found in the backing file")
	})

	t.Run("group client sees both LUNs", func(t *testing.T) {
		g := initiator{name: groupIQN, iface: "group", auth: groupAuth, disc: discAuth}
		g.configure(t)
		if _, err := g.discover(t, localIP); err != nil {
			t.Fatal(err)
		}
		if err := g.login(t, fileioIQN, localIP); err != nil {
			t.Fatal(err)
		}
		defer g.logout(t, fileioIQN, localIP)
		devs := g.disks(t, fileioIQN, 2)
		if len(devs) != 2 || devs[0] == "" || devs[1] == "" {
			t.Fatalf("group client sees LUNs %v, want 0 and 1", devs)
		}
		writeReadDirect(t, devs[1], 0, pattern(2))
		step(t, start, "group client: LUNs 0 and 1, I/O on LUN 1 ok")
	})
	if t.Failed() {
		teardown(t, f, desired)
		return
	}

	t.Run("config change converges", func(t *testing.T) {
		// add a disk as LUN 2 mapped to the CHAP client, remove the group client
		spec.Disks["rbd/img3"] = lio.DiskSpec{Pool: "rbd", Image: "img3", Owner: gateway, WWN: "vmtest-img3",
			Size: fileioSize, DevicePath: filepath.Join(fileioDir, "img3")}
		ts := spec.Targets[fileioIQN]
		ts.Disks["rbd/img3"] = 2
		delete(ts.Clients, groupIQN)
		ts.Clients[chapIQN].LUNs["rbd/img3"] = 1
		desired = build(t, spec)
		plan := converge(t, f, desired)
		step(t, start, "config change: %d ops, re-plan empty", len(plan.Ops))
		for _, o := range plan.Ops {
			if o.Kind == lio.OpRmdir && !strings.Contains(o.Path, groupIQN) {
				t.Errorf("the change removed more than the group client: %s", o)
			}
		}
		if _, err := os.Stat(tpg1 + "/acls/" + groupIQN); err == nil {
			t.Error("group client ACL still present")
		}
		devs := c.session(t, 2)
		defer c.logout(t, fileioIQN, localIP)
		if devs[1] == "" {
			t.Fatalf("new LUN not visible to the chap client: %v", devs)
		}
		writeReadDirect(t, devs[1], 0, pattern(3))
		step(t, start, "chap client sees the new LUN 1 and does I/O on it")
	})
	if t.Failed() {
		teardown(t, f, desired)
		return
	}

	t.Run("re-create and ALUA owner change", func(t *testing.T) {
		// a new WWN can only be set on a new object: img1 is re-created
		// (LUN and mapped LUN links removed first); img2 moves to this
		// gateway, so both its groups swap names (ano1/ao -> ao/ano2)
		d := spec.Disks["rbd/img1"]
		d.WWN = "vmtest-img1-new"
		spec.Disks["rbd/img1"] = d
		d = spec.Disks["rbd/img2"]
		d.Owner = gateway
		spec.Disks["rbd/img2"] = d
		desired = build(t, spec)
		plan := converge(t, f, desired)
		step(t, start, "re-create + owner change: %d ops, re-plan empty", len(plan.Ops))
		if got := firstLine(t, tpg1+"/lun/lun_1/alua_tg_pt_gp"); got != "TG Port Alias: ao" {
			t.Errorf("img2 on the local TPG: alua_tg_pt_gp %q, want ao", got)
		}
		if got := firstLine(t, tpg2+"/lun/lun_1/alua_tg_pt_gp"); got != "TG Port Alias: ano2" {
			t.Errorf("img2 on the remote TPG: alua_tg_pt_gp %q, want ano2", got)
		}
		devs := c.session(t, 2)
		defer c.logout(t, fileioIQN, localIP)
		if got := readDirect(t, devs[0], 3<<20, ioSize); !bytes.Equal(got, pattern(1)) {
			t.Errorf("data of the re-created img1 changed (first diff at %d)", firstDiff(got, pattern(1)))
		}
		vpd := readOr("/sys/block/" + filepath.Base(devs[0]) + "/device/vpd_pg80")
		if !strings.Contains(vpd, "vmtest-img1-new") {
			t.Errorf("initiator sees unit serial %q, want vmtest-img1-new", vpd)
		}
		step(t, start, "initiator sees the new unit serial and the old data")
	})

	t.Run("explicit ALUA", func(t *testing.T) {
		spec.Settings.ALUAFailover = "explicit"
		desired = build(t, spec)
		plan := converge(t, f, desired)
		step(t, start, "implicit -> explicit ALUA: %d ops, re-plan empty", len(plan.Ops))
		so := soDir(t, "rbd.img2")
		for p, want := range map[string]string{
			so + "/alua/ao/alua_access_type":       "Implicit and Explicit",
			so + "/alua/ao/preferred":              "1",
			so + "/alua/standby2/alua_access_type": "Implicit and Explicit",
			tpg2 + "/lun/lun_1/alua_tg_pt_gp":      "TG Port Alias: standby2",
		} {
			if got := firstLine(t, p); got != want {
				t.Errorf("%s = %q, want %q", strings.TrimPrefix(p, targetDir+"/"), got, want)
			}
		}
	})

	teardown(t, f, desired)
	step(t, start, "teardown: no target, no backstore left")
}

// session discovers, logs the CHAP client in and returns its LUNs.
func (ini initiator) session(t *testing.T, luns int) map[int]string {
	t.Helper()
	ini.configure(t)
	if _, err := ini.discover(t, localIP); err != nil {
		t.Fatal(err)
	}
	if err := ini.login(t, fileioIQN, localIP); err != nil {
		t.Fatal(err)
	}
	return ini.disks(t, fileioIQN, luns)
}

// soDir finds a storage object's directory whatever its HBA index.
func soDir(t *testing.T, name string) string {
	t.Helper()
	m, _ := filepath.Glob(targetDir + "/core/*/" + name)
	if len(m) != 1 {
		t.Fatalf("storage object %s: found %v", name, m)
	}
	return m[0]
}
