package lio

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestBuilderStepsPlanSince takes random API-like steps on a spec of two
// targets (a client's LUN mapped or unmapped, clients added, removed or
// given CHAP or a disk the target does not have yet, a disk added to a
// target or removed from it and the config, a disk's spec or LUN id
// changed, a disk shared by both targets, a bad object name, a target
// gone and back, many disks at once), handing the Builder a fresh copy of
// the spec each time as the gateway does (or a frozen one), and
// asserts at every step that its State and errors equal a Build from
// scratch and that NewPlanSince from the state before equals NewPlan, with
// LIO holding the state before. It also asserts that the steps that change a client only
// share the storage objects, LUNs and other ACL lists with the state
// before: the plan then skips them at once.
func TestBuilderStepsPlanSince(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		for _, frozen := range []bool{false, true} {
			for _, hinted := range []bool{false, true} {
				t.Run(fmt.Sprint(seed, "/frozen=", frozen, "/hinted=", hinted), func(t *testing.T) {
					t.Parallel()
					builderSteps(t, seed, 300, frozen, hinted)
				})
			}
		}
	}
}

// builderSteps runs the steps of TestBuilderStepsPlanSince; frozen gives
// the Builder Frozen specs, copied on write from the one before as the
// gateway's spec memo makes them: a map whose content did not change is
// the very map of the spec before. hinted gives each spec a Gen and the
// Changes since the one before (with keys that did not change added at
// random, and now and then a hint since another generation, which leaves
// changes out and must be ignored).
func builderSteps(t *testing.T, seed uint64, steps int, frozen, hinted bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const t1, t2 = "iqn.2003-01.com.example:t1", "iqn.2003-01.com.example:t2"
	id := func(i int) string { return fmt.Sprintf("rbd/img%03d", i) }
	ini := func(i int) string { return fmt.Sprintf("iqn.1994-05.com.example:c%02d", i) }
	s := Spec{Gateway: "gw1", Settings: DefaultSettings(), Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{}}
	s.Targets[t1], s.Targets[t2] = stepTarget(), stepTarget()
	next := 0 // the next disk number
	addDisk := func(tgt string) string {
		d := id(next)
		s.Disks[d] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%03d", next), WWN: fmt.Sprint("wwn-", next),
			Owner: []string{"gw1", "gw2"}[next%2], Size: 1 << 30}
		next++
		s.Targets[tgt].Disks[d] = lowestFree(s.Targets[tgt].Disks)
		return d
	}
	for range 60 {
		addDisk(t1)
	}
	for range 10 {
		addDisk(t2)
	}
	for c := range 12 {
		luns := map[string]int{}
		for j := range 3 {
			luns[id(3*c+j)] = j
		}
		s.Targets[t1].Clients[ini(c)] = ClientSpec{LUNs: luns}
	}
	pick := func(m map[string]int) (string, bool) {
		keys := slices.Sorted(maps.Keys(m))
		if len(keys) == 0 {
			return "", false
		}
		return keys[rng.IntN(len(keys))], true
	}
	someClient := func() (string, bool) {
		keys := slices.Sorted(maps.Keys(s.Targets[t1].Clients))
		if len(keys) == 0 {
			return "", false
		}
		return keys[rng.IntN(len(keys))], true
	}

	var b Builder
	var given Spec // the last spec given to b
	gen := uint64(0)
	give := func() Spec {
		before := given
		if frozen {
			given = frozenFrom(given, s)
		} else {
			given = cloneSpec(s)
		}
		if hinted {
			gen++
			given.Gen = gen
			if before.Gen != 0 {
				given.Changes = randomHint(rng, before, given)
			}
		}
		return given
	}
	prev, err := b.Build(give())
	if err != nil {
		t.Fatal(err)
	}
	wasClientOnly := false
	// the last states returned, with deep copies of them then: the
	// Builder extends and shortens its lists in place (grown), which
	// must never show in a state it returned
	type kept struct{ st, was State }
	history := []kept{{prev, cloneState(prev)}}
	for step := range steps {
		var name string
		clientOnly := false
		switch k := rng.IntN(20); {
		case k < 5:
			name, clientOnly = "map or unmap a client's LUN", true
			if c, ok := someClient(); ok {
				cs := s.Targets[t1].Clients[c]
				if d, ok := pick(cs.LUNs); ok && rng.IntN(2) == 0 {
					delete(cs.LUNs, d)
				} else if d, ok := pick(s.Targets[t1].Disks); ok {
					if _, in := cs.LUNs[d]; !in {
						cs.LUNs[d] = lowestFree(cs.LUNs)
					}
				}
			}
		case k == 5:
			name, clientOnly = "client added or removed", true
			if c, ok := someClient(); ok && rng.IntN(2) == 0 {
				delete(s.Targets[t1].Clients, c)
			} else {
				luns := map[string]int{}
				if d, ok := pick(s.Targets[t1].Disks); ok {
					luns[d] = 0
				}
				s.Targets[t1].Clients[ini(12+rng.IntN(20))] = ClientSpec{LUNs: luns}
			}
		case k == 6:
			name, clientOnly = "client CHAP", true
			if c, ok := someClient(); ok {
				cs := s.Targets[t1].Clients[c]
				cs.Auth = AuthSpec{Username: "user", Password: Secret(fmt.Sprint("Secret-Pass-", rng.IntN(9)))}
				if rng.IntN(3) == 0 {
					cs.Auth = AuthSpec{}
				}
				s.Targets[t1].Clients[c] = cs
			}
		case k < 10:
			name = "disk added to a target"
			tgt := t1
			if _, ok := s.Targets[t2]; ok && rng.IntN(4) == 0 {
				tgt = t2
			}
			addDisk(tgt)
		case k < 13:
			name = "disk removed from a target and the config"
			if d, ok := pick(s.Targets[t1].Disks); ok {
				for _, ts := range s.Targets {
					delete(ts.Disks, d)
					for _, cs := range ts.Clients {
						delete(cs.LUNs, d)
					}
				}
				delete(s.Disks, d)
			}
		case k == 13:
			name = "disk spec"
			if d, ok := pick(s.Targets[t1].Disks); ok {
				ds := s.Disks[d]
				switch rng.IntN(3) {
				case 0:
					ds.Size += 1 << 20
				case 1:
					ds.Owner = map[string]string{"gw1": "gw2", "gw2": "gw1"}[ds.Owner]
				default:
					ds.Controls = map[string]any{"qfull_timeout": rng.IntN(9)}
				}
				s.Disks[d] = ds
			}
		case k == 14:
			name = "disk of both targets, or no longer"
			if d, ok := pick(s.Targets[t2].Disks); ok && rng.IntN(2) == 0 {
				if _, in := s.Targets[t1].Disks[d]; in {
					delete(s.Targets[t2].Disks, d)
				}
			} else if d, ok := pick(s.Targets[t1].Disks); ok && s.Targets[t2].Disks != nil {
				if _, in := s.Targets[t2].Disks[d]; !in {
					s.Targets[t2].Disks[d] = lowestFree(s.Targets[t2].Disks)
				}
			}
		case k == 15:
			name = "bad object name, or repaired"
			if d, ok := pick(s.Targets[t1].Disks); ok {
				ds := s.Disks[d]
				ds.BackstoreObjectName = map[string]string{"": "bad/name", "bad/name": ""}[ds.BackstoreObjectName]
				s.Disks[d] = ds
			}
		case k == 16:
			name = "target gone, or back"
			if _, ok := s.Targets[t2]; ok {
				delete(s.Targets, t2)
			} else {
				s.Targets[t2] = stepTarget()
				addDisk(t2)
			}
		case k == 17 && rng.IntN(2) == 0:
			name = "a disk's LUN id moved"
			if d, ok := pick(s.Targets[t1].Disks); ok {
				s.Targets[t1].Disks[d] = lowestFree(s.Targets[t1].Disks)
			}
		case k == 17:
			name = "many disks at once"
			for range 10 + rng.IntN(10) {
				addDisk(t1)
			}
		case k == 18:
			name = "a client maps the next disk, not yet one of the target"
			if c, ok := someClient(); ok {
				cs := s.Targets[t1].Clients[c]
				cs.LUNs[id(next)] = lowestFree(cs.LUNs)
			}
		default:
			name = "nothing"
		}
		lastDisks := given.Disks
		desired, gerr := b.Build(give())
		if frozen && clientOnly && len(s.Disks) > 0 && !sameMap(lastDisks, given.Disks) {
			t.Fatalf("step %d (%s): the frozen spec has new disks", step, name)
		}
		want, werr := Build(cloneSpec(s))
		if !reflect.DeepEqual(desired, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("step %d (%s): Builder.Build differs from Build: %s\ngot:  %v\nwant: %v", step, name, stateDiff(desired, want), gerr, werr)
		}
		observed := observedOf(prev)
		if got, want := NewPlanSince(prev, observed, desired), NewPlan(observed, desired); !reflect.DeepEqual(got.Ops, want.Ops) {
			t.Fatalf("step %d (%s): NewPlanSince differs from NewPlan:\ngot:\n%s\nwant:\n%s", step, name, got, want)
		}
		shared := false // a storage object of both targets: built again each time
		for d := range s.Targets[t2].Disks {
			_, in := s.Targets[t1].Disks[d]
			shared = shared || in
		}
		// (two client steps in a row: the first may find lists made anew
		// by the step before)
		if clientOnly && wasClientOnly && gerr == nil {
			if !shared && !identical(desired.StorageObjects, prev.StorageObjects) || !identical(desired.Managed.StorageObjects, prev.Managed.StorageObjects) {
				t.Fatalf("step %d (%s): the storage objects are not the state before's", step, name)
			}
			for ti, tgt := range desired.Targets {
				for gi, tpg := range tgt.TPGs {
					before := prev.Targets[ti].TPGs[gi]
					if !shared && !identical(tpg.LUNs, before.LUNs) {
						t.Fatalf("step %d (%s): target %s TPG %d: the LUNs are not the state before's", step, name, tgt.IQN, tpg.Tag)
					}
					if tgt.IQN != t1 && !identical(tpg.ACLs, before.ACLs) {
						t.Fatalf("step %d (%s): target %s TPG %d: the ACLs are not the state before's", step, name, tgt.IQN, tpg.Tag)
					}
				}
			}
		}
		for i, h := range history {
			if !reflect.DeepEqual(h.st, h.was) {
				t.Fatalf("step %d (%s): the state %d steps before changed since: %s", step, name, len(history)-i, stateDiff(h.st, h.was))
			}
		}
		if history = append(history, kept{desired, cloneState(desired)}); len(history) > 4 {
			history = history[1:]
		}
		prev, wasClientOnly = desired, clientOnly && gerr == nil
	}
	if hinted && b.hinted < steps/2 {
		t.Fatalf("%d of %d builds used their hint", b.hinted, steps)
	}
}

// frozenFrom is a Frozen copy of s that shares each map with last (a
// Frozen spec or none) whose content is the same, and has its own copies
// of the others: what a caller deriving specs copy-on-write gives.
func frozenFrom(last, s Spec) Spec {
	same := func(a, b any) bool { return reflect.ValueOf(a).Len() > 0 && reflect.DeepEqual(a, b) }
	out := cloneSpec(s)
	out.Frozen = true
	if same(last.Disks, out.Disks) {
		out.Disks = last.Disks
	} else {
		for id, d := range out.Disks {
			if l, ok := last.Disks[id]; ok && reflect.DeepEqual(l, d) {
				out.Disks[id] = l
			}
		}
	}
	for iqn, ts := range out.Targets {
		l, ok := last.Targets[iqn]
		if !ok {
			continue
		}
		if same(l.Disks, ts.Disks) {
			ts.Disks = l.Disks
		}
		if same(l.Portals, ts.Portals) {
			ts.Portals = l.Portals
		}
		if same(l.Clients, ts.Clients) {
			ts.Clients = l.Clients
		} else {
			for ini, cs := range ts.Clients {
				if lc, ok := l.Clients[ini]; ok && reflect.DeepEqual(lc, cs) {
					ts.Clients[ini] = lc
				}
			}
		}
		out.Targets[iqn] = ts
	}
	if same(last.Targets, out.Targets) {
		out.Targets = last.Targets
	}
	return out
}

// stepTarget is an empty ACL target of the step tests, on gw1 and gw2.
func stepTarget() TargetSpec {
	return TargetSpec{ACLEnabled: true, IPList: []string{"10.0.0.1", "10.0.0.2"},
		Portals: map[string][]string{"gw1": {"10.0.0.1"}, "gw2": {"10.0.0.2"}},
		Disks:   map[string]int{}, Clients: map[string]ClientSpec{}}
}

// lowestFree is the lowest LUN id m does not use: LIO holds no two LUNs
// of one id.
func lowestFree(m map[string]int) int {
	used := map[int]bool{}
	for _, n := range m {
		used[n] = true
	}
	n := 0
	for used[n] {
		n++
	}
	return n
}
