package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
)

// TestChangeLogCoversChanges applies every change of cowChanges to a fork
// and checks that each entry whose object is no longer the one its source
// holds (or whose LUN reference differs) is in the fork's change log, as
// seen from its source's stamp and from its own before the change: a
// reader that revisits only what the log lists misses nothing.
func TestChangeLogCoversChanges(t *testing.T) {
	for _, c := range cowChanges {
		for _, owned := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/owned=%v", c.name, owned), func(t *testing.T) {
				src := c.doc(t).Fork()
				if owned {
					claim(src)
				}
				before := src.Stamp()
				fork := src.Fork()
				start := fork.Stamp()
				c.do(t, fork)
				for _, from := range []Stamp{before, start} {
					log, ok := fork.ChangesSince(from)
					if !ok {
						t.Fatalf("no changes since %v", from)
					}
					if missed := uncovered(src, fork, log); len(missed) > 0 {
						t.Errorf("the log %v misses %v", log, missed)
					}
				}
				if log, _ := fork.ChangesSince(fork.Stamp()); len(log) != 0 {
					t.Errorf("changes since now: %v", log)
				}
			})
		}
	}
}

// uncovered lists what differs between a and b that log does not cover.
func uncovered(a, b *Doc, log []Change) []string {
	has := map[Change]bool{}
	for _, c := range log {
		has[c] = true
	}
	var missed []string
	for _, k := range diffKeys(a.Disks, b.Disks, samePtr) {
		if !has[Change{Kind: ChangedDisk, Key: k}] {
			missed = append(missed, "disk "+k)
		}
	}
	for _, k := range diffKeys(a.Gateways, b.Gateways, samePtr) {
		if !has[Change{Kind: ChangedGateway, Key: k}] {
			missed = append(missed, "gateway "+k)
		}
	}
	for _, iqn := range diffKeys(a.Targets, b.Targets, func(x, y *Target) bool { return true }) {
		if !has[Change{Kind: ChangedTarget, Target: iqn}] {
			missed = append(missed, "target "+iqn)
		}
	}
	for iqn, tb := range b.Targets {
		ta := a.Targets[iqn]
		if ta == nil || tb == nil || has[Change{Kind: ChangedTarget, Target: iqn}] {
			continue
		}
		if ta != tb && !has[Change{Kind: ChangedTargetFields, Target: iqn}] {
			missed = append(missed, "target fields "+iqn)
		}
		in := func(kind ChangeKind, what string, keys []string) {
			for _, k := range keys {
				if !has[Change{Kind: kind, Target: iqn, Key: k}] {
					missed = append(missed, what+" "+iqn+" "+k)
				}
			}
		}
		in(ChangedTargetLun, "LUN", diffKeys(ta.Disks, tb.Disks, func(x, y LunRef) bool { return reflect.DeepEqual(x, y) }))
		in(ChangedClient, "client", diffKeys(ta.Clients, tb.Clients, samePtr))
		in(ChangedPortal, "portal", diffKeys(ta.Portals, tb.Portals, samePtr))
		in(ChangedGroup, "group", diffKeys(ta.Groups, tb.Groups, samePtr))
	}
	return missed
}

// diffKeys are the keys in only one of a and b, or whose values differ.
func diffKeys[V any](a, b map[string]V, same func(V, V) bool) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if vb, ok := b[k]; !ok || !same(a[k], vb) {
			out = append(out, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// TestStampLineage: only forks have stamps; a fork's changes are known
// from its source's stamp at the fork, from its own earlier stamps, and
// through a fork that changed nothing (a store's remembered copy of a
// commit) from the committed document's; from nowhere else.
func TestStampLineage(t *testing.T) {
	parsed := fullParsed(t)
	if s := parsed.Stamp(); s != (Stamp{}) {
		t.Fatalf("a parsed document has stamp %v", s)
	}
	if s := parsed.Clone().Stamp(); s != (Stamp{}) {
		t.Fatalf("a clone has stamp %v", s)
	}
	if _, ok := parsed.Fork().ChangesSince(parsed.Stamp()); ok {
		t.Fatal("a fork of a parsed document has changes since the zero stamp")
	}

	committed := parsed.Fork()
	committed.MutDisk("rbd/a")
	seen := committed.Stamp()
	remembered := committed.Fork()
	next := remembered.Fork()
	next.MutGateway("gw1.example")
	log, ok := next.ChangesSince(seen)
	if !ok || !slices.Equal(log, []Change{{Kind: ChangedGateway, Key: "gw1.example"}}) {
		t.Fatalf("changes since the committed document: %v %v", log, ok)
	}
	if log, ok := next.ChangesSince(remembered.Stamp()); !ok || len(log) != 1 {
		t.Fatalf("changes since the remembered copy: %v %v", log, ok)
	}

	// the committed document changed after it was seen: its fork's log
	// is no longer the whole difference
	committed.MutDisk("rbd/b")
	later := committed.Fork()
	if _, ok := later.ChangesSince(seen); ok {
		t.Fatal("a fork taken after more changes has changes since an earlier stamp of its source")
	}
	if _, ok := next.ChangesSince(later.Stamp()); ok {
		t.Fatal("a sibling's stamp gave changes")
	}

	// a change repeated after a reader's stamp is news to that reader
	d := parsed.Fork()
	s := d.Stamp()
	d.MutDisk("rbd/a")
	mid := d.Stamp()
	d.MutDisk("rbd/a")
	if log, _ := d.ChangesSince(mid); !slices.Equal(log, []Change{{Kind: ChangedDisk, Key: "rbd/a"}}) {
		t.Fatalf("changes since a stamp between two writes of one disk: %v", log)
	}
	// what a reader was given is not written by later changes
	log, _ = d.ChangesSince(s)
	d.MutGateway("gw1.example")
	if len(log) != 2 || log[1].Key != "rbd/a" {
		t.Fatalf("an earlier answer changed: %v", log)
	}
}

// handSet sets an entry of one of d's three maps (m, with its mark) to v
// as a hand edit would, without claiming v: logged as c.
func handSet[V any](d *Doc, m *map[string]V, mark **owner, c Change, v V) {
	key := c.Key
	if c.Kind == ChangedTarget {
		key = c.Target
	}
	ownMap(d, m, mark)[key] = v
	d.logChange(c)
}

// handDelete deletes an entry of one of d's three maps, logged as c.
func handDelete[V any](d *Doc, m *map[string]V, mark **owner, c Change) {
	key := c.Key
	if c.Kind == ChangedTarget {
		key = c.Target
	}
	delete(ownMap(d, m, mark), key)
	d.logChange(c)
}
