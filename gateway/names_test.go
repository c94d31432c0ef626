package gateway

import (
	"fmt"
	"maps"
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

// nameChange makes a change to w.doc that may make a name invalid or
// valid again.
func (w *cowWorld) nameChange() {
	d := w.doc
	iqn, ok := pickKey(w, d.Targets)
	if !ok || d.Targets[iqn] == nil {
		return
	}
	const badIni, badIQN = "bad initiator", "bad target"
	switch w.rng.IntN(6) {
	case 0:
		if id, ok := pickKey(w, d.Disks); ok && d.Disks[id] != nil {
			d.MutDisk(id).BackstoreObjectName = "bad/name"
			w.step += "bad disk " + id + "; "
		}
	case 1:
		for _, id := range slices.Sorted(maps.Keys(d.Disks)) {
			if k := d.Disks[id]; k != nil && k.BackstoreObjectName == "bad/name" {
				d.MutDisk(id).BackstoreObjectName = ""
				w.step += "disk fixed " + id + "; "
			}
		}
	case 2:
		d.MutTarget(iqn).Clients[badIni] = config.NewClient()
		w.step += "bad client; "
	case 3:
		for _, iqn := range slices.Sorted(maps.Keys(d.Targets)) {
			if t := d.Targets[iqn]; t != nil && t.Clients[badIni] != nil {
				delete(d.MutTarget(iqn).Clients, badIni)
				w.step += "bad client removed; "
			}
		}
	case 4:
		d.PutTarget(badIQN, config.NewTarget(cowNow))
		w.step += "bad target; "
	default:
		if _, ok := d.Targets[badIQN]; ok {
			if err := d.RemoveTarget(badIQN); err != nil {
				w.t.Fatal(err)
			}
			w.step += "bad target removed; "
		}
	}
}

// runNameWorld checks every step's document through known and reports
// the first whose findings differ from a check from scratch.
func runNameWorld(t *testing.T, seed uint64, steps int, known *validNames) error {
	w := newCowWorld(t, seed)
	for i := range steps {
		w.step = ""
		w.nextDoc()
		for range 1 + w.rng.IntN(3) {
			if w.rng.IntN(6) == 0 {
				w.nameChange()
			} else {
				w.mutate()
			}
			if w.rng.IntN(4) == 0 {
				// the check of a change that goes on: the rest of the
				// step's writes must still be checked
				withValidNames(w.doc, known)
			}
		}
		valid, got := withValidNames(w.doc, known)
		wantValid, want := withValidNames(w.doc, nil)
		if g, w2 := objectErrorTexts(got), objectErrorTexts(want); !slices.Equal(g, w2) {
			return fmt.Errorf("seed %d step %d (%s): found %v, a check from scratch %v", seed, i, w.step, g, w2)
		}
		if len(want) > 0 && encodingWithoutStamps(valid) != encodingWithoutStamps(wantValid) {
			return fmt.Errorf("seed %d step %d (%s): the valid documents differ", seed, i, w.step)
		}
	}
	return nil
}

// TestValidNamesFollowChangeLog: over random changes, some of which make
// names invalid or valid again, a check through the names and documents
// found valid before finds what a check from scratch finds, most of the
// time from the document's change log alone.
func TestValidNamesFollowChangeLog(t *testing.T) {
	for seed := range uint64(4) {
		var known validNames
		if err := runNameWorld(t, seed, 300, &known); err != nil {
			t.Fatal(err)
		}
		if known.sinceHits < 50 {
			t.Fatalf("seed %d: %d checks through a change log", seed, known.sinceHits)
		}
	}
}

// TestValidNamesNeedTheirKinds: a check that skips the disk or the target
// changes of a change log misses a bad name.
func TestValidNamesNeedTheirKinds(t *testing.T) {
	for name, kind := range map[string]config.ChangeKind{"disk": config.ChangedDisk, "target": config.ChangedTarget} {
		failed := false
		for seed := range uint64(6) {
			known := validNames{ignore: kind}
			if err := runNameWorld(t, seed, 300, &known); err != nil {
				failed = true
				break
			}
		}
		if !failed {
			t.Errorf("a check skipping %s changes went unnoticed", name)
		}
	}
}
