package gateway

import (
	"fmt"
	"slices"
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
)

// objectsOf lists the objects of errs, sorted.
func objectsOf(errs []*lio.ObjectError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Object())
	}
	slices.Sort(out)
	return out
}

// TestValidNamesRemembersOnlyFrozenObjects: what a copy-on-write document
// shares with one already checked is not checked again, and whatever its
// change brings (a bad disk name, a bad initiator in a changed target, a
// frozen disk under another id) is still found, on a document built by
// hand too, where nothing is remembered by address.
func TestValidNamesRemembersOnlyFrozenObjects(t *testing.T) {
	var known validNames
	base := testDoc(t)
	if _, errs := withValidNames(base, &known); len(errs) != 0 {
		t.Fatalf("errors on a valid document: %v", objectsOf(errs))
	}
	if len(known.disks)+len(known.targets) != 0 {
		t.Fatalf("a document built by hand left %d objects remembered by address", len(known.disks)+len(known.targets))
	}
	f := base.Fork()
	if _, errs := withValidNames(f, &known); len(errs) != 0 {
		t.Fatalf("errors on a valid fork: %v", objectsOf(errs))
	}
	if len(known.disks) != len(f.Disks) || len(known.targets) != len(f.Targets) {
		t.Fatalf("a fresh fork left %d disks and %d targets remembered, want %d and %d", len(known.disks), len(known.targets), len(f.Disks), len(f.Targets))
	}

	g := f.Fork()
	g.MutDisk("rbd/b").BackstoreObjectName = "bad/name"
	// a frozen disk under an id whose storage-object name is bad
	g.Disks["rbd/x/y"] = &config.Disk{Pool: "rbd", Image: "x/y"}
	g.Disks["rbd/a2"] = f.Disks["rbd/a"]
	g.MutTarget("iqn.2003-01.com.example:t1").Clients["bad initiator"] = config.NewClient()
	valid, errs := withValidNames(g, &known)
	want := []string{"client bad initiator of target iqn.2003-01.com.example:t1", "disk rbd/b", "disk rbd/x/y"}
	if got := objectsOf(errs); !slices.Equal(got, want) {
		t.Fatalf("errors on objects %v, want %v", got, want)
	}
	if valid.Disks["rbd/b"] != nil || valid.Targets["iqn.2003-01.com.example:t1"].Clients["bad initiator"] != nil || valid.Disks["rbd/a2"] == nil {
		t.Errorf("the valid document keeps a bad object or lost a good one")
	}
	// the same document again: the same findings, from memory or not
	_, again := withValidNames(g, &known)
	if got := objectsOf(again); !slices.Equal(got, want) {
		t.Fatalf("second check: errors on objects %v, want %v", got, want)
	}
	for k := range known.disks {
		if k.d == g.Disks[k.id] && (k.id == "rbd/b" || k.id == "rbd/x/y") {
			t.Errorf("bad disk %s remembered as valid", k.id)
		}
	}
	for k := range known.targets {
		if k.t == g.Targets["iqn.2003-01.com.example:t1"] {
			t.Errorf("the target holding a bad initiator is remembered as valid")
		}
	}
	// many documents later, what is remembered stays bounded
	cur := f
	for i := range 200 {
		cur = cur.Fork()
		id := fmt.Sprintf("rbd/n%d", i)
		cur.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("n%d", i)}
		delete(cur.Disks, fmt.Sprintf("rbd/n%d", i-1))
		if _, errs := withValidNames(cur, &known); len(errs) != 0 {
			t.Fatalf("step %d: %v", i, objectsOf(errs))
		}
	}
	if n := len(known.disks) + len(known.targets); n > 2*(len(cur.Disks)+len(cur.Targets))+64 {
		t.Errorf("%d objects remembered for a document of %d disks", n, len(cur.Disks))
	}
}
