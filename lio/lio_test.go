package lio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

type goldenCase struct {
	name, file, gateway, backstore string
	explicit                       bool
}

var goldenCases = []goldenCase{
	{"upstream", "upstream-gateway.conf.json", "igw1.fullstack.test", BackstoreUserRBD, false},
	{"upstream-block", "upstream-gateway.conf.json", "igw1.fullstack.test", BackstoreBlock, false},
	{"two-gw-node1", "two-gw.json", "node1.ceph.local", BackstoreUserRBD, false},
	{"two-gw-node2-explicit", "two-gw.json", "node2.ceph.local", BackstoreUserRBD, true},
	{"demo", "demo.json", "gw-a.example", BackstoreUserRBD, false},
}

func (c goldenCase) spec(t testing.TB) Spec {
	s := specFromConfig(t, c.file, c.gateway, c.backstore)
	if c.explicit {
		s.Settings.ALUAFailover = "explicit"
	}
	return s
}

// TestPlanGolden plans each config from an empty tree, applies it to an
// emulated configfs, checks the fixed point, and compares the plan and the
// resulting tree with testdata/<name>.{plan,tree}.golden.
func TestPlanGolden(t *testing.T) {
	t.Parallel()
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			f := newEmu(t)
			plan := reconcile(t, f, mustBuild(t, c.spec(t)))
			golden(t, c.name+".plan.golden", plan.String())
			golden(t, c.name+".tree.golden", render(t, f))
			if c.name == "two-gw-node1" {
				b, err := json.MarshalIndent(plan, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				golden(t, c.name+".plan.json.golden", string(b)+"\n")
			}
		})
	}
}

// TestPlanOrder checks the ordering contract on a full plan: parents
// before children, backstores before the LUN links to them, portal of the
// enabled TPG after its LUNs and ACLs, and the TPG enabled last but for
// portals.
func TestPlanOrder(t *testing.T) {
	plan := NewPlan(State{}, mustBuild(t, goldenCases[2].spec(t)))
	pos := map[string]int{}
	for i, op := range plan.Ops {
		key := string(op.Kind) + " " + op.Path
		if _, ok := pos[key]; !ok {
			pos[key] = i
		}
		if op.Kind == OpMkdir || op.Kind == OpSymlink {
			if parent := path2dir(op.Path); classify(parent) != kindNone && classify(parent) != kindFabric {
				if _, ok := pos["mkdir "+parent]; !ok && !strings.Contains(parent, "/lun/") && !strings.Contains(op.Path, "/acls/") {
					t.Errorf("op %d %s before its parent", i, op)
				}
			}
		}
		if op.Kind == OpSymlink {
			if _, ok := pos["mkdir "+op.Value]; !ok {
				t.Errorf("op %d links to %s before it is created", i, op.Value)
			}
		}
	}
	tp := "target/iscsi/iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw/tpgt_1"
	enable, local, remote := pos["enable "+tp], pos["mkdir "+tp+"/np/192.168.100.201:3260"],
		pos["mkdir target/iscsi/iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw/tpgt_2/np/[2001:db8::202]:3260"]
	if !(enable < local && local == len(plan.Ops)-1) {
		t.Errorf("enable at %d, local portal at %d of %d ops: want enable then portal last", enable, local, len(plan.Ops))
	}
	for k, i := range pos {
		if strings.Contains(k, "/acls/") && i > enable {
			t.Errorf("%s after enable", k)
		}
	}
	if remote > enable {
		t.Errorf("remote portal after enable")
	}
}

// foreign adds objects this gateway does not manage: a fileio backstore,
// a user backstore with an unrelated name and a target using them.
func foreign(t testing.TB, f FS) {
	t.Helper()
	ops := []Op{
		{Kind: OpMkdir, Path: fabricDir},
		{Kind: OpMkdir, Path: "target/core/fileio_7"},
		{Kind: OpMkdir, Path: "target/core/fileio_7/scratch"},
		{Kind: OpEnable, Path: "target/core/fileio_7/scratch"},
		{Kind: OpMkdir, Path: "target/core/user_9"},
		{Kind: OpMkdir, Path: "target/core/user_9/other.image"},
		{Kind: OpMkdir, Path: "target/iscsi/iqn.2000-01.org.example:foreign"},
		{Kind: OpMkdir, Path: "target/iscsi/iqn.2000-01.org.example:foreign/tpgt_1"},
		{Kind: OpMkdir, Path: "target/iscsi/iqn.2000-01.org.example:foreign/tpgt_1/lun/lun_0"},
		{Kind: OpSymlink, Path: "target/iscsi/iqn.2000-01.org.example:foreign/tpgt_1/lun/lun_0/x", Value: "target/core/fileio_7/scratch"},
		{Kind: OpEnable, Path: "target/iscsi/iqn.2000-01.org.example:foreign/tpgt_1"},
	}
	if _, err := Apply(t.Context(), f, Plan{Ops: ops}); err != nil {
		t.Fatal(err)
	}
}

const foreignPrefix = "iqn.2000-01.org.example:foreign"

func assertForeignIntact(t testing.TB, f FS, plan Plan) {
	t.Helper()
	for _, op := range plan.Ops {
		if strings.Contains(op.Path, foreignPrefix) || strings.Contains(op.Path, "fileio_7") || strings.Contains(op.Path, "user_9") {
			t.Errorf("plan touches an unmanaged object: %s", op)
		}
	}
	for _, p := range []string{"target/core/fileio_7/scratch", "target/core/user_9/other.image",
		"target/iscsi/" + foreignPrefix + "/tpgt_1/lun/lun_0/x"} {
		if !f.exists(p) {
			t.Errorf("unmanaged %s was removed", p)
		}
	}
}

// TestTeardown: the shutdown State removes every managed object and keeps
// foreign ones, including a stale managed target left by an older config.
func TestTeardown(t *testing.T) {
	t.Parallel()
	f := newEmu(t)
	foreign(t, f)
	desired := mustBuild(t, goldenCases[2].spec(t))
	reconcile(t, f, desired)
	plan := reconcile(t, f, desired.ForTeardown())
	assertForeignIntact(t, f, plan)
	got := render(t, f)
	for _, s := range []string{"iscsi-igw", "rbd.disk_1", "ec.disk.2"} {
		if strings.Contains(got, s) {
			t.Errorf("managed object %s survived teardown", s)
		}
	}
	if !strings.Contains(got, "d target/iscsi/discovery_auth") {
		t.Errorf("teardown removed the iscsi fabric directory")
	}
	golden(t, "teardown.plan.golden", plan.String())
}

// TestStaleRemoval drops a disk, a client and a portal from the config: the
// plan removes exactly those, children first, after the updates.
func TestStaleRemoval(t *testing.T) {
	t.Parallel()
	f := newEmu(t)
	foreign(t, f)
	spec := goldenCases[2].spec(t)
	reconcile(t, f, mustBuild(t, spec))

	iqn := "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
	ts := spec.Targets[iqn]
	delete(ts.Disks, "ec/disk.2")
	delete(ts.Clients, "iqn.1994-05.com.redhat:nochap")
	c := ts.Clients["iqn.1994-05.com.redhat:rh7-client"]
	delete(c.LUNs, "ec/disk.2")
	ts.IPList = ts.IPList[:1]
	delete(ts.Portals, "node2.ceph.local")
	spec.Targets[iqn] = ts
	plan := reconcile(t, f, mustBuild(t, spec))
	assertForeignIntact(t, f, plan)
	golden(t, "stale.plan.golden", plan.String())
	for _, op := range plan.Ops {
		if op.Kind == OpMkdir || op.Kind == OpSymlink {
			t.Errorf("unexpected creation %s", op)
		}
	}
}

// TestReplace changes creation-time properties: the TCMU control string
// (object re-created in the same HBA, LUN re-linked) and the disk owner
// (ALUA groups swap ids, so they are removed before re-creation).
func TestReplace(t *testing.T) {
	t.Parallel()
	f := newEmu(t)
	spec := goldenCases[2].spec(t)
	reconcile(t, f, mustBuild(t, spec))

	d := spec.Disks["rbd/disk_1"]
	d.Owner = "node2.ceph.local"
	spec.Disks["rbd/disk_1"] = d
	golden(t, "owner.plan.golden", reconcile(t, f, mustBuild(t, spec)).String())

	d.Controls = map[string]any{"max_data_area_mb": float64(128)}
	spec.Disks["rbd/disk_1"] = d
	golden(t, "replace.plan.golden", reconcile(t, f, mustBuild(t, spec)).String())
}

// TestResize: dev_size is changed live, nothing is re-created.
func TestResize(t *testing.T) {
	f := newEmu(t)
	spec := goldenCases[0].spec(t)
	reconcile(t, f, mustBuild(t, spec))
	d := spec.Disks["rbd/disk2"]
	d.Size *= 2
	spec.Disks["rbd/disk2"] = d
	plan := reconcile(t, f, mustBuild(t, spec))
	want := "write target/core/user_0/rbd.disk2/attrib/dev_size \"2147483648\"\n"
	if plan.String() != want {
		t.Errorf("resize plan:\n%s\nwant:\n%s", plan, want)
	}
}

// TestTransitions walks a table of desired states in random order (after
// tailscale's TestRouterStates) and checks after every step that the plan
// reached a fixed point and that the tree equals the one built from
// scratch for that state, with foreign objects untouched.
func TestTransitions(t *testing.T) {
	t.Parallel()
	base := func(c int) Spec { return goldenCases[c].spec(t) }
	states := map[string]Spec{}
	states["empty"] = Spec{Gateway: "node1.ceph.local", Settings: DefaultSettings(), ManageDiscoveryAuth: true}
	states["upstream"] = base(0)
	states["upstream-block"] = base(1)
	states["two-gw-node1"] = base(2)
	states["demo"] = base(4)
	{
		s := base(2)
		s.Settings.ALUAFailover = "explicit"
		states["two-gw-node1-explicit"] = s
	}
	{
		s := base(2)
		ts := s.Targets["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"]
		ts.ACLEnabled = false
		ts.Clients = nil
		ts.Auth = AuthSpec{Username: "tgt", Password: "tgtpassword99"}
		ts.Controls = map[string]any{"max_burst_length": 1048576, "cmdsn_depth": 64}
		ts.IPList = []string{"2001:db8::202", "192.168.100.201"} // tags swap
		ts.Disks = map[string]int{"rbd/disk_1": 2, "ec/disk.2": 0}
		s.Targets["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"] = ts
		s.DiscoveryAuth = AuthSpec{}
		d := s.Disks["rbd/disk_1"]
		d.Controls = map[string]any{"hw_max_sectors": 512}
		s.Disks["rbd/disk_1"] = d
		states["two-gw-reshuffled"] = s
	}
	{
		s := base(2)
		ts := s.Targets["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"]
		c := ts.Clients["iqn.1994-05.com.redhat:rh7-client"]
		c.LUNs = map[string]int{"rbd/disk_1": 1, "ec/disk.2": 0} // remap
		c.Auth.MutualUsername, c.Auth.MutualPassword = "", ""
		ts.Clients["iqn.1994-05.com.redhat:rh7-client"] = c
		s.Targets["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"] = ts
		states["two-gw-remapped"] = s
	}

	// The states stand for one config over time: whatever any of them
	// names is this gateway's, as when the API passes the object it is
	// deleting in Managed.
	desired := map[string]State{}
	var all Managed
	for name, spec := range states {
		desired[name] = mustBuild(t, spec)
		m := desired[name].ForTeardown().Managed
		all.StorageObjects = append(all.StorageObjects, m.StorageObjects...)
		all.Targets = append(all.Targets, m.Targets...)
	}
	want := map[string]string{}
	var names []string
	for _, name := range sortedKeys(states) {
		names = append(names, name)
		st := desired[name]
		st.Managed = all
		desired[name] = st
		f := newEmu(t)
		foreign(t, f)
		reconcile(t, f, desired[name])
		want[name] = render(t, f)
	}

	f := newEmu(t)
	foreign(t, f)
	r := rand.New(rand.NewPCG(1, 2))
	prev := "(start)"
	steps := 3 * len(names)
	if testing.Short() {
		steps = len(names)
	}
	for i := 0; i < steps; i++ {
		name := names[r.IntN(len(names))]
		plan := reconcile(t, f, desired[name])
		assertForeignIntact(t, f, plan)
		if got := render(t, f); got != want[name] {
			t.Fatalf("step %d %s -> %s: tree differs from a fresh build (-fresh +got):\n%s\nplan:\n%s",
				i, prev, name, lineDiff(want[name], got), plan)
		}
		prev = name
	}
	// And everything back out.
	reconcile(t, f, State{Managed: all})
	g := newEmu(t)
	foreign(t, g)
	// Teardown leaves fabric-wide discovery auth alone (see Spec).
	noDisc := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.Contains(l, "discovery_auth/") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if got, fresh := noDisc(render(t, f)), noDisc(render(t, g)); got != fresh {
		t.Errorf("after teardown (-fresh +got):\n%s", lineDiff(fresh, got))
	}
}

// TestApplyPartialFailure: a failing op is reported, the ops inside a
// directory that could not be created are skipped, independent ops still
// run, and a re-plan completes the work.
func TestApplyPartialFailure(t *testing.T) {
	f := newEmu(t)
	desired := mustBuild(t, goldenCases[0].spec(t))
	plan := NewPlan(mustObserve(t, f), desired)
	// Make the target mkdir fail: a stray file occupies its name.
	tp := "target/iscsi/iqn.2003-01.com.example.iscsi-gw:test"
	if _, err := Apply(t.Context(), f, Plan{Ops: plan.Ops[:1]}); err != nil { // mkdir target/iscsi
		t.Fatal(err)
	}
	if err := os.WriteFile(f.abs(tp), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(t.Context(), f, Plan{Ops: plan.Ops[1:]})
	if err == nil {
		t.Fatal("Apply succeeded over a blocked path")
	}
	if !strings.Contains(err.Error(), "mkdir "+tp) {
		t.Errorf("error does not name the failed op: %v", err)
	}
	// EEXIST from a file is not the object being there: the target's
	// mkdir itself fails, and nothing below it is tried.
	if len(res.Failed) != 1 || res.Failed[0].Path != tp || !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Failed = %v", res.Failed)
	}
	if len(res.Skipped) == 0 || len(res.Done)+len(res.Skipped)+len(res.Failed) != len(plan.Ops)-1 {
		t.Errorf("done %d skipped %d failed %d of %d", len(res.Done), len(res.Skipped), len(res.Failed), len(plan.Ops)-1)
	}
	for _, op := range res.Skipped {
		if !strings.HasPrefix(op.Path, tp) {
			t.Errorf("skipped an independent op: %s", op)
		}
	}
	if !f.exists("target/core/user_0/rbd.disk2/alua/ao") {
		t.Error("storage object was not created despite being independent")
	}
	os.Remove(f.abs(tp))
	reconcile(t, f, desired)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err = Apply(ctx, newEmu(t), plan)
	if !errors.Is(err, context.Canceled) || len(res.Done) != 0 || len(res.Skipped) != len(plan.Ops) {
		t.Errorf("cancelled Apply: err %v, done %d, skipped %d", err, len(res.Done), len(res.Skipped))
	}
}

// TestHalfCreatedStorageObject: a storage object whose creation stopped
// before enable is re-created by the next plan.
func TestHalfCreatedStorageObject(t *testing.T) {
	f := newEmu(t)
	desired := mustBuild(t, goldenCases[0].spec(t))
	plan := NewPlan(mustObserve(t, f), desired)
	var cut int
	for i, op := range plan.Ops {
		if op.Kind == OpEnable {
			cut = i
			break
		}
	}
	if _, err := Apply(t.Context(), f, Plan{Ops: plan.Ops[:cut]}); err != nil {
		t.Fatal(err)
	}
	next := reconcile(t, f, desired)
	if !strings.HasPrefix(next.String(), "rmdir target/core/user_0/rbd.disk2\nmkdir target/core/user_0/rbd.disk2\n") {
		t.Errorf("half-created object not re-created first:\n%s", next)
	}
}

func TestDeleteMissingIsSuccess(t *testing.T) {
	f := newEmu(t)
	res, err := Apply(t.Context(), f, Plan{Ops: []Op{
		{Kind: OpUnlink, Path: "target/iscsi/x/tpgt_1/lun/lun_0/abc"},
		{Kind: OpRmdir, Path: "target/iscsi/x/tpgt_1/lun/lun_0"},
		{Kind: OpDisable, Path: "target/iscsi/x/tpgt_1"},
		{Kind: OpRmdir, Path: "target/core/user_3/gone"},
	}})
	if err != nil || len(res.Done) != 4 {
		t.Errorf("err %v, done %d", err, len(res.Done))
	}
}

func TestEmulatedRmdirRefusesBusy(t *testing.T) {
	f := newEmu(t)
	reconcile(t, f, mustBuild(t, goldenCases[0].spec(t)))
	for _, p := range []string{"target/core/user_0/rbd.disk2", "target/core/user_0",
		"target/iscsi/iqn.2003-01.com.example.iscsi-gw:test/tpgt_1"} {
		if err := f.rmdir(p); err == nil {
			t.Errorf("rmdir %s succeeded with children or links", p)
		}
	}
	if err := f.write("target/iscsi/iqn.2003-01.com.example.iscsi-gw:test/tpgt_1/attrib/no_such", "1"); err == nil {
		t.Error("write to a file the kernel does not have succeeded")
	}
}

// TestSecretsRedacted: CHAP passwords appear in no rendering of a plan,
// state or error, while Apply writes the real bytes.
func TestSecretsRedacted(t *testing.T) {
	secrets := []string{"myiscsipassword", "mymutualpassword", "discpass1234"}
	desired := mustBuild(t, goldenCases[2].spec(t))
	plan := NewPlan(State{}, desired)
	js, _ := json.Marshal(plan)
	sj, _ := json.Marshal(desired)
	var logBuf strings.Builder
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "state", desired, "plan", plan.Ops, "pw", desired.DiscoveryAuth.Password)
	s := Secret("myiscsipassword")
	texts := []string{plan.String(), string(js), string(sj), logBuf.String(),
		fmt.Sprintf("%v %+v %#v %s %q %x %d", desired, desired, desired, s, s, s, s)}
	for _, txt := range texts {
		for _, sec := range secrets {
			if strings.Contains(txt, sec) {
				t.Errorf("secret %q leaked in %.200s...", sec, txt)
			}
		}
	}
	if !strings.Contains(plan.String(), "auth/password \"<redacted>\"") {
		t.Error("password write not shown as redacted")
	}

	// Errors carry paths, not values.
	_, err := Apply(t.Context(), newEmu(t), Plan{Ops: []Op{{Kind: OpWrite, Path: "target/nope/auth/password", Value: "myiscsipassword", Secret: true}}})
	if err == nil || strings.Contains(err.Error(), "myiscsipassword") {
		t.Errorf("error %v", err)
	}

	f := newEmu(t)
	reconcile(t, f, desired)
	got, _ := f.read("target/iscsi/iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw/tpgt_1/acls/iqn.1994-05.com.redhat:rh7-client/auth/password_mutual")
	if got != "mymutualpassword" {
		t.Errorf("mutual password in tree = %q", got)
	}
}

// TestRealModeWrite: outside emulation a value is written with a single
// write and no trailing newline (a newline would become part of a CHAP
// secret in configfs), into an existing file only.
func TestRealModeWrite(t *testing.T) {
	dir := t.TempDir()
	f := FS{root: dir}
	p := "target/iscsi/x/auth/password"
	if err := f.write(p, "s3cret"); err == nil {
		t.Error("write created a missing attribute file")
	}
	os.MkdirAll(filepath.Dir(f.abs(p)), 0o755)
	os.WriteFile(f.abs(p), nil, 0o644)
	if err := f.write(p, "s3cret"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f.abs(p)); string(b) != "s3cret" {
		t.Errorf("file holds %q", b)
	}
}

func TestNewFS(t *testing.T) {
	f, err := NewFS(t.TempDir())
	if err != nil || !f.Emulated() {
		t.Fatalf("plain dir: %v emulated=%v", err, f.Emulated())
	}
	if !f.exists("target/core") {
		t.Error("emulated root not seeded")
	}
	if !isConfigfs(DefaultRoot) {
		if _, err := NewFS(DefaultRoot); !errors.Is(err, ErrNoConfigfs) {
			t.Errorf("NewFS(%s) without configfs: %v", DefaultRoot, err)
		}
	}
	if _, err := NewFS(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing root accepted")
	}
	st, err := Observe(FS{root: t.TempDir()})
	if err != nil || len(st.StorageObjects)+len(st.Targets) != 0 || st.Fabric {
		t.Errorf("Observe of an empty root: %+v %v", st, err)
	}
}

func TestBuild(t *testing.T) {
	s := DefaultSettings()
	if got := CfgString("rbd", "img", s); got != "rbd/rbd/img;osd_op_timeout=30" {
		t.Errorf("cfgstring %q", got)
	}
	s.ClusterClientName, s.CephConf, s.OSDOpTimeout = "client.iscsi", "/etc/ceph/other.conf", 10
	if got := CfgString("p", "i", s); got != "rbd/p/i;osd_op_timeout=10;conf=/etc/ceph/other.conf;id=iscsi" {
		t.Errorf("cfgstring %q", got)
	}
	if PortalName("[fe80::1]") != "[fe80::1]:3260" || PortalName("10.1.2.3") != "10.1.2.3:3260" {
		t.Error("PortalName")
	}

	spec := goldenCases[0].spec(t)
	spec.Backstore = BackstoreBlock
	d := spec.Disks["rbd/disk2"]
	d.DevicePath = ""
	spec.Disks["rbd/disk2"] = d
	if _, err := Build(spec); err == nil || !strings.Contains(err.Error(), "no device path") {
		t.Errorf("block without device: %v", err)
	}

	spec = goldenCases[0].spec(t)
	ts := spec.Targets["iqn.2003-01.com.example.iscsi-gw:test"]
	ts.IPList = append(ts.IPList, "192.0.2.11")
	ts.Portals["igw1.fullstack.test"] = []string{"192.0.2.10", "192.0.2.11"}
	spec.Targets["iqn.2003-01.com.example.iscsi-gw:test"] = ts
	if _, err := Build(spec); err == nil || !strings.Contains(err.Error(), "invalid state") {
		t.Errorf("owner with two portals: %v (upstream fails the same way)", err)
	}

	spec = goldenCases[0].spec(t)
	ts = spec.Targets["iqn.2003-01.com.example.iscsi-gw:test"]
	ts.Controls = map[string]any{"bogus": 1}
	c := ts.Clients["iqn.1994-05.com.redhat:fullstack-client"]
	c.LUNs["rbd/disk2"] = 300
	spec.Targets["iqn.2003-01.com.example.iscsi-gw:test"] = ts
	_, err := Build(spec)
	if err == nil || !strings.Contains(err.Error(), "unknown control") || !strings.Contains(err.Error(), "0-255") {
		t.Errorf("bad controls and LUN id: %v", err)
	}

	// A gateway that is not a portal builds nothing but still owns the
	// config's targets and disks.
	spec = goldenCases[0].spec(t)
	spec.Gateway = "elsewhere"
	st := mustBuild(t, spec)
	if len(st.Targets)+len(st.StorageObjects) != 0 || len(st.Managed.Targets) != 1 || len(st.Managed.StorageObjects) != 1 {
		t.Errorf("non-portal gateway: %+v", st)
	}
}

// TestPlanDeterministic: the plan does not depend on the order of the
// input slices.
func TestPlanDeterministic(t *testing.T) {
	desired := mustBuild(t, goldenCases[2].spec(t))
	want := NewPlan(State{}, desired).String()
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 10; i++ {
		d := desired
		d.StorageObjects = append([]StorageObject(nil), d.StorageObjects...)
		r.Shuffle(len(d.StorageObjects), func(a, b int) { d.StorageObjects[a], d.StorageObjects[b] = d.StorageObjects[b], d.StorageObjects[a] })
		tg := d.Targets[0]
		tg.TPGs = append([]TPG(nil), tg.TPGs...)
		r.Shuffle(len(tg.TPGs), func(a, b int) { tg.TPGs[a], tg.TPGs[b] = tg.TPGs[b], tg.TPGs[a] })
		for j := range tg.TPGs {
			acls := append([]ACL(nil), tg.TPGs[j].ACLs...)
			r.Shuffle(len(acls), func(a, b int) { acls[a], acls[b] = acls[b], acls[a] })
			tg.TPGs[j].ACLs = acls
		}
		d.Targets = []Target{tg}
		if got := NewPlan(State{}, d).String(); got != want {
			t.Fatalf("plan depends on input order:\n%s", lineDiff(want, got))
		}
	}
	if err := (FS{root: t.TempDir()}).write("x", ""); !errors.Is(err, errEmptyWrite) {
		t.Errorf("empty write: %v", err)
	}
}
