package lio

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestRefreshStepsShare walks a gateway through random LUN and client
// steps on one emulated configfs, as the reconciler does: a Builder builds
// each spec, the plan is applied through a Model and Refresh reads what it
// touched. Refresh and the Builder share the unchanged parts of their
// lists with the states before and extend or shorten lists in place
// (refreshList, grown), so after every step each Refresh must equal a
// fresh Observe, each build a Build from scratch, and every state either
// returned before must still be what it was when returned. Disks come and
// go at the end of the lists (the next name and LUN id), in the middle
// (a name between two) and come back as they were, the cases where a
// list is a prefix of another or reuses a slot past it.
func TestRefreshStepsShare(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			refreshSteps(t, seed, 40, false)
		})
	}
}

// TestRefreshOwnedSteps is TestRefreshStepsShare for a caller that hands
// each observed state over to RefreshOwned and plans as the reconciler
// does (NewPlanSince from the build before): each result must equal a
// fresh Observe and no build may change, while the observed lists are
// edited in place (some step must have kept a list's array while its
// length changed, or the in-place path went untested).
func TestRefreshOwnedSteps(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			if refreshSteps(t, seed, 60, true) == 0 {
				t.Fatal("no step edited an observed list in place")
			}
		})
	}
}

// refreshSteps returns, when owned, how many steps edited a list of the
// observed state in place.
func refreshSteps(t *testing.T, seed uint64, steps int, owned bool) (inPlace int) {
	const iqn = "iqn.2003-01.com.example:share"
	rng := rand.New(rand.NewPCG(seed, 11))
	s := Spec{Gateway: "gw1", Backstore: BackstoreUserRBD, Settings: DefaultSettings(),
		Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{}}
	ts := TargetSpec{ACLEnabled: true, IPList: []string{"192.0.2.10", "192.0.2.11"},
		Portals: map[string][]string{"gw1": {"192.0.2.10"}, "gw2": {"192.0.2.11"}},
		Disks:   map[string]int{}, Clients: map[string]ClientSpec{}}
	s.Targets[iqn] = ts
	free := func(m map[string]int) int {
		n := 0
		for slices.Contains(slices.Collect(maps.Values(m)), n) {
			n++
		}
		return n
	}
	addDisk := func(n int) {
		id := fmt.Sprintf("rbd/img%04d", n)
		if _, ok := s.Disks[id]; ok {
			return
		}
		s.Disks[id] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%04d", n), WWN: fmt.Sprint("wwn-", n), Owner: "gw1", Size: 1 << 30}
		ts.Disks[id] = free(ts.Disks)
	}
	removeDisk := func(id string) {
		delete(s.Disks, id)
		delete(ts.Disks, id)
		for _, c := range ts.Clients {
			delete(c.LUNs, id)
		}
	}
	next := 0
	for range 12 {
		addDisk(next)
		next += 10
	}
	for c := range 3 {
		ts.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%d", c)] = ClientSpec{LUNs: map[string]int{}}
	}

	live := newEmu(t)
	f := live.WithModel(NewModel())
	var b Builder
	observed := mustObserve(t, f)
	// every state returned so far, with a deep copy of it then
	type kept struct{ st, was State }
	var history []kept
	keep := func(st State) { history = append(history, kept{st, cloneState(st)}) }
	var removed []int // disks removed, to come back as they were
	var prevDesired *State
	for step := range steps {
		var name string
		ids := slices.Sorted(maps.Keys(ts.Disks))
		switch k := rng.IntN(8); {
		case k < 2:
			name = "disk added at the end"
			addDisk(next)
			next += 10
		case k == 2:
			name = "disk added in the middle"
			addDisk(rng.IntN(next))
		case k == 3 && len(removed) > 0:
			name = "disk back"
			addDisk(removed[len(removed)-1])
			removed = removed[:len(removed)-1]
		case k < 5 && len(ids) > 0:
			name = "last disk removed"
			id := ids[len(ids)-1]
			if rng.IntN(2) == 0 {
				name, id = "disk removed", ids[rng.IntN(len(ids))]
			}
			removeDisk(id)
			var n int
			fmt.Sscanf(id, "rbd/img%d", &n)
			removed = append(removed, n)
		case k < 7 && len(ids) > 0:
			name = "client LUN mapped or unmapped"
			c := ts.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%d", rng.IntN(3))]
			id := ids[rng.IntN(len(ids))]
			if _, ok := c.LUNs[id]; ok {
				delete(c.LUNs, id)
			} else {
				c.LUNs[id] = free(c.LUNs)
			}
		default:
			name = "nothing"
		}
		desired, err := b.Build(cloneSpec(s))
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, name, err)
		}
		if want := mustBuild(t, cloneSpec(s)); !reflect.DeepEqual(desired, want) {
			t.Fatalf("step %d (%s): Builder.Build differs from Build: %s", step, name, stateDiff(desired, want))
		}
		keep(desired)
		// a caller that appends to a state's lists gets copies: kept, the
		// lists must not change under it either
		keep(appended(desired))
		plan := NewPlan(observed, desired)
		if owned && prevDesired != nil {
			plan = NewPlanSince(*prevDesired, observed, desired)
		}
		prevDesired = &desired
		if _, err := Apply(t.Context(), f, plan); err != nil {
			t.Fatalf("step %d (%s): %v", step, name, err)
		}
		before := observed.StorageObjects
		if owned {
			observed, err = RefreshOwned(f, observed, plan)
		} else {
			observed, err = Refresh(f, observed, plan)
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, name, err)
		}
		if fresh := mustObserve(t, live); !reflect.DeepEqual(observed, fresh) {
			t.Fatalf("step %d (%s): Refresh differs from Observe: %s\nplan:\n%s", step, name, stateDiff(observed, fresh), plan)
		}
		if after := observed.StorageObjects; len(before) > 0 && len(after) > 0 && len(before) != len(after) && &before[0] == &after[0] {
			inPlace++
		}
		if !owned {
			keep(observed)
		}
		for i, h := range history {
			if !reflect.DeepEqual(h.st, h.was) {
				t.Fatalf("step %d (%s): state %d of the history changed since: %s", step, name, i, stateDiff(h.st, h.was))
			}
		}
	}
	return inPlace
}

// appended is st with an object appended to each of its storage-object,
// name and LUN lists, its own targets and TPGs holding them.
func appended(st State) State {
	st.StorageObjects = append(st.StorageObjects, StorageObject{Name: "appended"})
	st.Managed.StorageObjects = append(st.Managed.StorageObjects, "appended")
	st.Targets = slices.Clone(st.Targets)
	for i := range st.Targets {
		t := &st.Targets[i]
		t.TPGs = slices.Clone(t.TPGs)
		for j := range t.TPGs {
			t.TPGs[j].LUNs = append(t.TPGs[j].LUNs, LUN{Index: -1})
		}
	}
	return st
}

// cloneState is a deep copy of st, nil and empty lists and maps as they
// were (reflect.DeepEqual tells them apart).
func cloneState(st State) State {
	return deepCopy(reflect.ValueOf(st)).Interface().(State)
}

func deepCopy(v reflect.Value) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			out.Set(deepCopy(v.Elem()).Addr())
		}
	case reflect.Slice:
		if !v.IsNil() {
			out.Set(reflect.MakeSlice(v.Type(), v.Len(), v.Len()))
			for i := range v.Len() {
				out.Index(i).Set(deepCopy(v.Index(i)))
			}
		}
	case reflect.Map:
		if !v.IsNil() {
			out.Set(reflect.MakeMapWithSize(v.Type(), v.Len()))
			for it := v.MapRange(); it.Next(); {
				out.SetMapIndex(it.Key(), deepCopy(it.Value()))
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			out.Field(i).Set(deepCopy(v.Field(i)))
		}
	default:
		out.Set(v)
	}
	return out
}
