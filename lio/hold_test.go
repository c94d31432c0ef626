package lio

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrashAtEveryOp (issue 8 item 5): wherever a crash stops an apply,
// from nothing to a full configuration and from it to another, the next
// reconcile repairs the partial objects and completes it (a fixed point,
// through reconcile).
func TestCrashAtEveryOp(t *testing.T) {
	from := mustBuild(t, goldenCases[0].spec(t))
	to := mustBuild(t, goldenCases[4].spec(t))
	for _, tc := range []struct {
		name     string
		start    *State
		finalize State
	}{
		{"create", nil, from},
		{"transition", &from, to},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newEmu(t)
			if tc.start != nil {
				reconcile(t, f, *tc.start)
			}
			plan := NewPlan(mustObserve(t, f), tc.finalize)
			for cut := range len(plan.Ops) {
				// right after each object was created (before its
				// attributes and children), and every 5th op besides
				if cut%5 != 0 && (cut == 0 || plan.Ops[cut-1].Kind != OpMkdir) {
					continue
				}
				g := newEmu(t)
				if tc.start != nil {
					reconcile(t, g, *tc.start)
				}
				if _, err := Apply(t.Context(), g, Plan{Ops: plan.Ops[:cut]}); err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				reconcile(t, g, tc.finalize)
			}
		})
	}
}

// TestEmulatedMkdirIsAtomic: an emulated object appears with its attribute
// files or not at all, and what a killed process left in the staging area
// is removed when the root is opened again.
func TestEmulatedMkdirIsAtomic(t *testing.T) {
	f := newEmu(t)
	// not an LIO object: refused, and nothing is left behind
	if err := f.mkdir("target/iscsi"); err != nil {
		t.Fatal(err)
	}
	if err := f.mkdir("target/iscsi/discovery_auth/x"); err == nil {
		t.Fatal("mkdir of a non-object succeeded")
	}
	leftover := filepath.Join(f.Root(), stagingPrefix+"123")
	if err := os.MkdirAll(filepath.Join(leftover, "attrib"), 0o755); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(f.Root())
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), stagingPrefix) && de.Name() != stagingPrefix+"123" {
			t.Errorf("a failed mkdir left %s", de.Name())
		}
	}
	// A process that has exited leaves its staging behind; a live one (this
	// test, or another daemon on the same root) is seeding an object there.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadLeft := filepath.Join(f.Root(), fmt.Sprintf("%s%d-42", stagingPrefix, dead.Process.Pid))
	ours := filepath.Join(f.Root(), stagingPattern()+"7")
	peer := filepath.Join(f.Root(), fmt.Sprintf("%s%d-9", stagingPrefix, os.Getppid()))
	for _, d := range []string{deadLeft, ours, peer} {
		if err := os.MkdirAll(filepath.Join(d, "attrib"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewEmulatedFS(f.Root()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{leftover, deadLeft} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("staging leftover %s not removed: %v", filepath.Base(d), err)
		}
	}
	for _, d := range []string{ours, peer} {
		if _, err := os.Stat(filepath.Join(d, "attrib")); err != nil {
			t.Errorf("a live process's mkdir in flight (%s) was removed: %v", filepath.Base(d), err)
		}
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	// an object comes with its files, and a second mkdir finds it
	if err := f.mkdir("target/iscsi/iqn.2003-01.com.example:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.read("target/iscsi/iqn.2003-01.com.example:a/param/cmd_completion_affinity"); err != nil {
		t.Errorf("new target without its attribute file: %v", err)
	}
	if err := f.mkdir("target/iscsi/iqn.2003-01.com.example:a"); !errors.Is(err, os.ErrExist) {
		t.Errorf("second mkdir: %v", err)
	}
}

// TestPlanWithout: a held target, client or storage object is neither
// created, changed nor removed; everything else converges.
func TestPlanWithout(t *testing.T) {
	spec := goldenCases[0].spec(t)
	full := mustBuild(t, spec)
	f := newEmu(t)
	reconcile(t, f, full)
	obs := mustObserve(t, f)
	if len(obs.Targets) == 0 || len(obs.Targets[0].TPGs) == 0 || len(obs.StorageObjects) == 0 {
		t.Fatalf("golden case too small: %+v", obs)
	}
	tgt := obs.Targets[0].IQN
	var acl string
	for _, tpg := range obs.Targets[0].TPGs {
		if len(tpg.ACLs) > 0 {
			acl = tpg.ACLs[0].Initiator
		}
	}
	so := obs.StorageObjects[0]

	// The next configuration drops the client and the disk; both are held.
	next := spec
	next.Targets = map[string]TargetSpec{}
	for iqn, ts := range spec.Targets {
		ts.Clients = map[string]ClientSpec{}
		for ini, c := range spec.Targets[iqn].Clients {
			if ini != acl {
				ts.Clients[ini] = c
			}
		}
		next.Targets[iqn] = ts
	}
	desired := mustBuild(t, next)
	dropLUNs(desired.Targets, map[string]bool{so.Name: true})
	var kept []StorageObject
	for _, d := range desired.StorageObjects {
		if d.Name != so.Name {
			kept = append(kept, d)
		}
	}
	desired.StorageObjects = kept
	hold := Hold{ACLs: []ACLRef{{Target: tgt, Initiator: acl}}, StorageObjects: []string{so.Name}}
	plan, held := NewPlan(obs, desired).Without(obs, hold)
	if len(held) == 0 {
		t.Fatal("nothing held")
	}
	for _, op := range plan.Ops {
		if strings.Contains(op.Path, "/acls/"+acl) || strings.HasPrefix(op.Path, so.Path) || op.Value == so.Path {
			t.Errorf("held object in the plan: %s", op)
		}
	}
	if _, err := Apply(t.Context(), f, plan); err != nil {
		t.Fatal(err)
	}
	again := mustObserve(t, f)
	if findACL(&again.Targets[0].TPGs[0], acl) == nil && findACL(&obs.Targets[0].TPGs[0], acl) != nil {
		t.Errorf("held ACL %s removed", acl)
	}
	found := false
	for _, o := range again.StorageObjects {
		found = found || o.Path == so.Path
	}
	if !found {
		t.Errorf("held storage object %s removed", so.Path)
	}

	// Holding the whole target leaves every operation in it out.
	plan, _ = NewPlan(obs, State{Managed: full.ForTeardown().Managed}).Without(obs, Hold{Targets: []string{tgt}})
	for _, op := range plan.Ops {
		if strings.HasPrefix(op.Path, "target/iscsi/"+tgt) {
			t.Errorf("held target in the plan: %s", op)
		}
	}
}

func TestSplitObjectErrors(t *testing.T) {
	a := &ObjectError{Target: "iqn.t", Err: errors.New("a")}
	b := &ObjectError{Disk: "rbd/x", Err: errors.New("b")}
	other := errors.New("c")
	objs, rest := SplitObjectErrors(errors.Join(a, errors.Join(b, other)))
	if len(objs) != 2 || objs[0] != a || objs[1] != b || len(rest) != 1 || rest[0] != other {
		t.Fatalf("split: %v %v", objs, rest)
	}
	if got := fmt.Sprint(a.Object(), "|", b.Object()); got != "target iqn.t|disk rbd/x" {
		t.Errorf("objects: %s", got)
	}
}
