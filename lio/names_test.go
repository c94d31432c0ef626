package lio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// snapshotDir lists every path under dir (relative), for "nothing changed
// outside the root" checks.
func snapshotDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(dir, p)
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// newNestedEmu is an emulated root one level below a parent the test can
// watch for escapes.
func newNestedEmu(t *testing.T) (FS, string) {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := NewEmulatedFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return f, parent
}

// Issue 8 item 1: the FS layer refuses every path that could leave the root,
// whatever name produced it.
func TestFSRefusesUnsafePaths(t *testing.T) {
	f, parent := newNestedEmu(t)
	before := snapshotDir(t, parent)
	for _, rel := range []string{
		"target/iscsi/iqn.2003-01.com.example:x/../../../../pwned-tgt",
		"../pwned",
		"target/iscsi/..",
		"target/./iscsi",
		"target//iscsi",
		"/etc",
		"",
		"target/iscsi/a\x00b",
		"target/iscsi/" + strings.Repeat("a", 256),
	} {
		for op, err := range map[string]error{
			"mkdir":          f.mkdir(rel),
			"write":          f.write(rel, "1"),
			"rmdir":          f.rmdir(rel),
			"unlink":         f.unlink(rel),
			"symlink":        f.symlink("target/core", rel),
			"symlink target": f.symlink(rel, "target/iscsi/l"),
		} {
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("%s(%q) = %v, want ErrUnsafePath", op, rel, err)
			}
		}
		if _, err := f.read(rel); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("read(%q) = %v", rel, err)
		}
		if _, _, _, err := f.entries(rel); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("entries(%q) = %v", rel, err)
		}
		if f.exists(rel) {
			t.Errorf("exists(%q) = true", rel)
		}
	}
	if after := snapshotDir(t, parent); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("tree changed:\nbefore %v\nafter  %v", before, after)
	}
}

// Issue 8 items 1 and 3: a document with hostile names (a target IQN and a
// client IQN with "../", a NUL, 300 bytes; a backstore object name with
// "..") builds everything else, names each skipped object in the error, and
// applying the result creates nothing outside the root.
func TestBuildSkipsInvalidNames(t *testing.T) {
	f, parent := newNestedEmu(t)
	spec := goldenCases[2].spec(t)
	good := "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
	ts := spec.Targets[good]
	badTarget := "iqn.2003-01.com.example:x/../../../../pwned-tgt"
	badClients := []string{"iqn.1994-05.com.example:x/../../../../../../../pwned-client",
		"iqn.1994-05.com.example:a\x00b", "iqn.1994-05.com.example:" + strings.Repeat("c", 276)}
	for _, c := range badClients {
		ts.Clients[c] = ClientSpec{LUNs: map[string]int{}}
	}
	spec.Targets[good] = ts
	bt := ts
	bt.Clients = map[string]ClientSpec{}
	spec.Targets[badTarget] = bt
	spec.Disks["rbd/evil"] = DiskSpec{Pool: "rbd", Image: "evil", BackstoreObjectName: "../../pwned-so"}

	st, err := Build(spec)
	if err == nil {
		t.Fatal("Build reported no error")
	}
	for _, name := range append([]string{badTarget, "../../pwned-so"}, badClients...) {
		if !strings.Contains(err.Error(), quoteName(name)) {
			t.Errorf("error does not name %q:\n%v", name, err)
		}
	}
	if !errors.Is(err, ErrUnsafePath) {
		t.Errorf("error does not wrap ErrUnsafePath: %v", err)
	}
	for _, tg := range st.Targets {
		if tg.IQN == badTarget {
			t.Errorf("target %q built", tg.IQN)
		}
		for _, tpg := range tg.TPGs {
			for _, a := range tpg.ACLs {
				if componentRule(a.Initiator, maxIQNBytes) != nil {
					t.Errorf("ACL %q built", a.Initiator)
				}
			}
		}
	}
	for _, n := range append(st.Managed.Targets, st.Managed.StorageObjects...) {
		if strings.Contains(n, "/") || strings.Contains(n, "\x00") {
			t.Errorf("managed name %q", n)
		}
	}
	before := snapshotDir(t, parent)
	plan := reconcile(t, f, st)
	if plan.Empty() {
		t.Fatal("the valid objects were not built")
	}
	got := render(t, f)
	if !strings.Contains(got, "d target/iscsi/"+good+"/tpgt_1/acls/iqn.1994-05.com.redhat:rh7-client") {
		t.Errorf("valid client missing:\n%s", got)
	}
	var outside []string
	for _, p := range snapshotDir(t, parent) {
		if p != "root" && !strings.HasPrefix(p, "root"+string(filepath.Separator)) {
			outside = append(outside, p)
		}
	}
	if len(outside) != 1 || outside[0] != "." || len(before) == 0 {
		t.Errorf("created outside the root: %v", outside)
	}
}

// A desired State built by hand (not through Build) with a traversal name
// still cannot leave the root: Apply fails at the FS layer.
func TestApplyRefusesTraversalInState(t *testing.T) {
	f, parent := newNestedEmu(t)
	st := State{
		Targets: []Target{{IQN: "../../../pwned", TPGs: []TPG{{Tag: 1}}}},
		Managed: Managed{Targets: []string{"../../../pwned"}},
	}
	plan := NewPlan(mustObserve(t, f), st)
	_, err := Apply(t.Context(), f, plan)
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("Apply = %v, want ErrUnsafePath", err)
	}
	for _, p := range snapshotDir(t, parent) {
		if strings.Contains(p, "pwned") {
			t.Errorf("created %s", p)
		}
	}
}

// A portal address that is not an IP address is one target's problem: the
// error is an ObjectError naming that target, so the reconciler holds it and
// converges the rest instead of stopping.
func TestPortalNotIPIsTargetError(t *testing.T) {
	err := checkPortalIP("iqn.2003-01.com.example:t1", "not-an-ip")
	objs, other := SplitObjectErrors(err)
	if len(other) != 0 || len(objs) != 1 || objs[0].Target != "iqn.2003-01.com.example:t1" || objs[0].Client != "" {
		t.Fatalf("objects %+v, other %v", objs, other)
	}
	if checkPortalIP("iqn.2003-01.com.example:t1", "192.0.2.10") != nil || checkPortalIP("iqn.2003-01.com.example:t1", "fd00::1") != nil {
		t.Fatal("valid addresses refused")
	}
}
