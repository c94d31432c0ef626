package lio

import (
	"fmt"
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

// TestBuilderHintedSteps takes random API-like steps that keep a target
// of 200 disks and 40 clients clean (a client's LUN mapped or unmapped, a
// client added, removed or given CHAP, a disk added, removed with its
// mappings, moved to another LUN id, resized), gives the Builder each
// spec with the exact hint since the one before, and asserts at every
// step that its State and errors equal a Build from scratch, and that
// most steps patched the ACL list, past a disk gone or moved too.
func TestBuilderHintedSteps(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			hintedSteps(t, seed, 400)
		})
	}
}

func hintedSteps(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 11))
	const iqn = "iqn.2003-01.com.example:t1"
	id := func(i int) string { return fmt.Sprintf("rbd/img%04d", i) }
	ini := func(i int) string { return fmt.Sprintf("iqn.1994-05.com.example:c%03d", i) }
	s := Spec{Gateway: "gw1", Settings: DefaultSettings(), Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{}}
	ts := stepTarget()
	s.Targets[iqn] = ts
	next := 0
	addDisk := func() string {
		d := id(next)
		s.Disks[d] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%04d", next), WWN: fmt.Sprint("wwn-", next),
			Owner: []string{"gw1", "gw2"}[next%2], Size: 1 << 30}
		next++
		ts.Disks[d] = lowestFree(ts.Disks)
		return d
	}
	for range 200 {
		addDisk()
	}
	for c := range 40 {
		luns := map[string]int{}
		for j := range 3 {
			luns[id(3*c+j)] = j
		}
		ts.Clients[ini(c)] = ClientSpec{LUNs: luns}
	}
	pick := func(keys []string) string { return keys[rng.IntN(len(keys))] }
	disks := func() []string { return slices.Sorted(maps.Keys(ts.Disks)) }
	clients := func() []string { return slices.Sorted(maps.Keys(ts.Clients)) }

	var b Builder
	given := cloneSpec(s)
	given.Gen = 1
	if _, err := b.Build(given); err != nil {
		t.Fatal(err)
	}
	for step := range steps {
		var name string
		switch k := rng.IntN(10); {
		case k < 3 && len(ts.Clients) > 0:
			name = "map or unmap a client's LUN"
			c := pick(clients())
			cs := ts.Clients[c]
			if len(cs.LUNs) > 0 && rng.IntN(2) == 0 {
				delete(cs.LUNs, pick(slices.Sorted(maps.Keys(cs.LUNs))))
			} else if d := pick(disks()); true {
				if _, in := cs.LUNs[d]; !in {
					cs.LUNs[d] = lowestFree(cs.LUNs)
				}
			}
		case k == 3:
			name = "client added or removed"
			if rng.IntN(2) == 0 && len(ts.Clients) > 0 {
				delete(ts.Clients, pick(clients()))
			} else {
				ts.Clients[ini(40+rng.IntN(40))] = ClientSpec{LUNs: map[string]int{pick(disks()): 0}}
			}
		case k == 4 && len(ts.Clients) > 0:
			name = "client CHAP"
			c := pick(clients())
			cs := ts.Clients[c]
			cs.Auth = AuthSpec{Username: "user", Password: Secret(fmt.Sprint("Secret-Pass-", rng.IntN(9)))}
			if rng.IntN(2) == 0 {
				cs.Auth = AuthSpec{}
			}
			ts.Clients[c] = cs
		case k == 5:
			name = "disk added"
			addDisk()
		case k == 6:
			name = "disk removed, with its mappings"
			d := pick(disks())
			delete(ts.Disks, d)
			delete(s.Disks, d)
			for _, cs := range ts.Clients {
				delete(cs.LUNs, d)
			}
		case k == 7:
			name = "a disk moved to another LUN id"
			d := pick(disks())
			ts.Disks[d] = lowestFree(ts.Disks)
		case k == 8:
			name = "disk resized"
			d := pick(disks())
			ds := s.Disks[d]
			ds.Size += 1 << 20
			s.Disks[d] = ds
		default:
			name = "nothing"
		}
		last := given
		given = cloneSpec(s)
		given.Gen = last.Gen + 1
		given.Changes = specChanges(last, given)
		got, gerr := b.Build(given)
		want, werr := Build(cloneSpec(s))
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("step %d (%s): the hinted build differs from Build: %s\ngot:  %v\nwant: %v", step, name, stateDiff(got, want), gerr, werr)
		}
		if werr != nil {
			t.Fatalf("step %d (%s): %v", step, name, werr)
		}
	}
	c := b.m.counts
	if c.aclLists < steps*3/4 || c.pastGone < steps/20 {
		t.Fatalf("of %d steps, %d patched the ACL list, %d of them past a disk gone or moved", steps, c.aclLists, c.pastGone)
	}
}

// TestVerifyHints checks that a Builder with VerifyHints panics on a hint
// that leaves a change out, and only then.
func TestVerifyHints(t *testing.T) {
	const iqn = "iqn.2003-01.com.example:bench"
	b := Builder{VerifyHints: true}
	s := benchSpec(16)
	s.Gen = 1
	if _, err := b.Build(s); err != nil {
		t.Fatal(err)
	}
	build := func(gen uint64, clients []string) (panicked bool) {
		defer func() { panicked = recover() != nil }()
		s := benchSpec(16)
		s.Targets[iqn].Clients["iqn.1994-05.com.example:c00000"].LUNs["rbd/img00004"] = 4
		s.Gen, s.Changes = gen, &SpecChanges{Since: gen - 1, Targets: map[string]TargetChanges{iqn: {Clients: clients}}}
		if _, err := b.Build(s); err != nil {
			t.Fatal(err)
		}
		return false
	}
	if build(2, []string{"iqn.1994-05.com.example:c00000"}) {
		t.Fatal("a hint with the change panicked")
	}
	// back to the spec of generation 1, whose memo the next one is since
	s.Gen = 3
	if _, err := b.Build(s); err != nil {
		t.Fatal(err)
	}
	if !build(4, nil) {
		t.Fatal("a hint without the change did not panic")
	}
}

// TestHintMissesCount checks that a hint that leaves out a disk or client
// added or removed (which shows in their number) is not trusted: the
// build compares everything and makes what Build makes.
func TestHintMissesCount(t *testing.T) {
	const iqn = "iqn.2003-01.com.example:bench"
	steps := map[string]func(s Spec){
		"client added": func(s Spec) {
			// the only one with CHAP, which the TPG then enforces
			s.Targets[iqn].Clients["iqn.1994-05.com.example:new"] = ClientSpec{LUNs: map[string]int{"rbd/img00001": 0},
				Auth: AuthSpec{Username: "user", Password: "Secret-Pass-12"}}
		},
		"client removed": func(s Spec) { delete(s.Targets[iqn].Clients, "iqn.1994-05.com.example:c00001") },
		"disk added": func(s Spec) {
			s.Disks["rbd/new"] = DiskSpec{Pool: "rbd", Image: "new", Owner: "gw1", Size: 1 << 30}
			s.Targets[iqn].Disks["rbd/new"] = 100
		},
		"a disk of the config added to the target": func(s Spec) { s.Targets[iqn].Disks["rbd/spare"] = 101 },
		"disk removed": func(s Spec) {
			delete(s.Disks, "rbd/img00063")
			delete(s.Targets[iqn].Disks, "rbd/img00063")
			delete(s.Targets[iqn].Clients["iqn.1994-05.com.example:c00015"].LUNs, "rbd/img00063")
		},
	}
	base := func() Spec {
		s := benchSpec(64)
		s.Disks["rbd/spare"] = DiskSpec{Pool: "rbd", Image: "spare", Owner: "gw1", Size: 1 << 30}
		for ini, c := range s.Targets[iqn].Clients {
			c.Auth = AuthSpec{}
			s.Targets[iqn].Clients[ini] = c
		}
		return s
	}
	for name, step := range steps {
		t.Run(name, func(t *testing.T) {
			b := Builder{VerifyHints: true}
			s := base()
			s.Gen = 1
			if _, err := b.Build(s); err != nil {
				t.Fatal(err)
			}
			s = base()
			step(s)
			// the hint names another client, so that the ACL list is patched
			s.Gen, s.Changes = 2, &SpecChanges{Since: 1, Targets: map[string]TargetChanges{iqn: {Clients: []string{"iqn.1994-05.com.example:c00002"}}}}
			got, err := b.Build(s)
			if err != nil {
				t.Fatal(err)
			}
			s.Changes = nil
			if want, _ := Build(s); !reflect.DeepEqual(got, want) {
				t.Fatalf("differs from Build: %s", stateDiff(got, want))
			}
		})
	}
}
