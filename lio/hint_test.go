package lio

import (
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// specChanges is the exact hint of what next differs in from last.
func specChanges(last, next Spec) *SpecChanges {
	c := &SpecChanges{Since: last.Gen, Targets: map[string]TargetChanges{}}
	c.Disks = diffKeys(last.Disks, next.Disks)
	for _, iqn := range slices.Sorted(maps.Keys(union(last.Targets, next.Targets))) {
		a, inA := last.Targets[iqn]
		b, inB := next.Targets[iqn]
		if inA != inB {
			c.Targets[iqn] = TargetChanges{All: true}
			continue
		}
		tc := TargetChanges{
			Fields: a.ACLEnabled != b.ACLEnabled || a.Auth != b.Auth || !reflect.DeepEqual(a.Controls, b.Controls) ||
				!reflect.DeepEqual(a.IPList, b.IPList) || !reflect.DeepEqual(a.Portals, b.Portals),
			Disks:   diffKeys(a.Disks, b.Disks),
			Clients: diffKeys(a.Clients, b.Clients),
		}
		if tc.Fields || len(tc.Disks) > 0 || len(tc.Clients) > 0 {
			c.Targets[iqn] = tc
		}
	}
	return c
}

// randomHint is specChanges(last, next), sometimes with keys that did not
// change added or listed twice, or a whole target, and now and then a
// hint since another generation than last's that lists nothing.
func randomHint(rng *rand.Rand, last, next Spec) *SpecChanges {
	if rng.IntN(10) == 0 {
		return &SpecChanges{Since: last.Gen + 1 + rng.Uint64N(2)}
	}
	c := specChanges(last, next)
	if rng.IntN(4) == 0 {
		ids := slices.Sorted(maps.Keys(next.Disks))
		if len(ids) > 0 {
			c.Disks = append(c.Disks, ids[rng.IntN(len(ids))])
		}
		c.Disks = append(c.Disks, "rbd/not-a-disk")
		for iqn, ts := range next.Targets {
			tc := c.Targets[iqn]
			inis := slices.Sorted(maps.Keys(ts.Clients))
			if len(inis) > 0 {
				tc.Clients = append(tc.Clients, inis[rng.IntN(len(inis))], inis[0])
			}
			tc.Clients = append(tc.Clients, "iqn.1994-05.com.example:nobody")
			disks := slices.Sorted(maps.Keys(ts.Disks))
			if len(disks) > 0 {
				tc.Disks = append(tc.Disks, disks[rng.IntN(len(disks))])
			}
			tc.All = tc.All || rng.IntN(8) == 0
			c.Targets[iqn] = tc
		}
	}
	return c
}

// diffKeys are the keys of a and b whose entries differ, sorted.
func diffKeys[V any](a, b map[string]V) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(union(a, b))) {
		x, inA := a[k]
		y, inB := b[k]
		if inA != inB || !reflect.DeepEqual(x, y) {
			out = append(out, k)
		}
	}
	return out
}

func union[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// TestSeenSortedBy checks that what seenSortedBy remembers of a list
// found sorted answers only for it and its prefixes: a list that extends
// it in its array is walked from where it was found sorted, the boundary
// included, and one found unsorted is walked again.
func TestSeenSortedBy(t *testing.T) {
	arr := make([]LUN, 0, 8)
	arr = append(arr, LUN{Index: 1}, LUN{Index: 3}, LUN{Index: 5})
	if !seenSortedBy(arr, lunIndex) || !seenSortedBy(arr[:2], lunIndex) {
		t.Fatal("a sorted list or its prefix is not sorted")
	}
	// extends arr in its array, unsorted at the boundary alone
	ext := append(arr, LUN{Index: 4}, LUN{Index: 9})
	if seenSortedBy(ext, lunIndex) {
		t.Fatal("an extension unsorted at its boundary is sorted")
	}
	if seenSortedBy(ext, lunIndex) {
		t.Fatal("an unsorted list is sorted the second time")
	}
	if !seenSortedBy(arr, lunIndex) {
		t.Fatal("the sorted list is no longer sorted")
	}
	other := []LUN{{Index: 2}, {Index: 2}}
	if seenSortedBy(other, lunIndex) {
		t.Fatal("a list with a key twice is sorted")
	}
	ok := append(arr[:3:3], LUN{Index: 6})
	if !seenSortedBy(ok, lunIndex) {
		t.Fatal("a sorted copy is not sorted")
	}
}
