package lio

import (
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
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
