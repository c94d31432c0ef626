package lio

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestBuilderLUNPatch changes a target's disks at random, a few at a time
// and sometimes many, in ways a patch must get right or refuse (a disk
// added, removed, moved to another LUN id, given another owner, size or
// controls, two disks on one LUN id or one storage object, a disk shared
// with a second target, a disk gone from the config, bad controls,
// ip_list reordered), and asserts after each step that the Builder's
// State and errors equal a Build from scratch, and that most one-disk
// steps were patched rather than built again.
func TestBuilderLUNPatch(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			const t1, t2 = "iqn.2003-01.com.example:t1", "iqn.2003-01.com.example:t2"
			s := Spec{Gateway: "gw1", Settings: DefaultSettings(), Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{}}
			ips := []string{"10.0.0.1", "10.0.0.2"}
			portals := map[string][]string{"gw1": {"10.0.0.1"}, "gw2": {"10.0.0.2"}}
			s.Targets[t1] = TargetSpec{IPList: slices.Clone(ips), Portals: maps.Clone(portals), Disks: map[string]int{}, Clients: map[string]ClientSpec{}}
			s.Targets[t2] = TargetSpec{IPList: slices.Clone(ips), Portals: maps.Clone(portals), Disks: map[string]int{}, Clients: map[string]ClientSpec{}}
			const disks = 300
			id := func(i int) string { return fmt.Sprintf("rbd/img%03d", i) }
			for i := range disks {
				s.Disks[id(i)] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%03d", i), WWN: fmt.Sprint("wwn-", i), Owner: []string{"gw1", "gw2"}[i%2], Size: 1 << 30}
				if i < 120 {
					s.Targets[t1].Disks[id(i)] = i + 1
				}
			}
			for c := range 10 {
				luns := map[string]int{}
				for j := range 3 {
					luns[id(3*c+j)] = j
				}
				s.Targets[t1].Clients[fmt.Sprintf("iqn.1994-05.com.example:c%d", c)] = ClientSpec{LUNs: luns}
			}
			freeLUN := func(tgt string) int {
				used := map[int]bool{}
				for _, n := range s.Targets[tgt].Disks {
					used[n] = true
				}
				for n := 1; ; n++ {
					if !used[n] {
						return n
					}
				}
			}
			someDisk := func(tgt string) (string, bool) {
				ds := slices.Sorted(maps.Keys(s.Targets[tgt].Disks))
				if len(ds) == 0 {
					return "", false
				}
				return ds[rng.IntN(len(ds))], true
			}
			spare := func() string {
				for range 100 {
					d := id(rng.IntN(disks))
					_, in1 := s.Targets[t1].Disks[d]
					_, in2 := s.Targets[t2].Disks[d]
					if !in1 && !in2 {
						return d
					}
				}
				return id(rng.IntN(disks))
			}
			var b Builder
			steps, patchedSteps := 200, 0
			for step := range steps {
				var name string
				switch k := rng.IntN(24); {
				case k < 6:
					name = "add"
					s.Targets[t1].Disks[spare()] = freeLUN(t1)
				case k < 10:
					name = "remove"
					if d, ok := someDisk(t1); ok {
						delete(s.Targets[t1].Disks, d)
						for _, c := range s.Targets[t1].Clients {
							delete(c.LUNs, d)
						}
					}
				case k == 10:
					name = "move LUN id"
					if d, ok := someDisk(t1); ok {
						s.Targets[t1].Disks[d] = freeLUN(t1)
					}
				case k == 11:
					name = "disk spec"
					if d, ok := someDisk(t1); ok {
						ds := s.Disks[d]
						switch rng.IntN(4) {
						case 0:
							ds.Size += 1 << 20
						case 1:
							ds.Owner = map[string]string{"gw1": "gw2", "gw2": "gw1"}[ds.Owner]
						case 2:
							ds.Controls = map[string]any{"qfull_timeout": rng.IntN(9)}
						default:
							ds.Controls = map[string]any{"bogus": 1}
						}
						s.Disks[d] = ds
					}
				case k == 12:
					name = "duplicate LUN id"
					if d, ok := someDisk(t1); ok {
						s.Targets[t1].Disks[spare()] = s.Targets[t1].Disks[d]
					}
				case k == 13:
					name = "shared storage object"
					if d, ok := someDisk(t1); ok {
						o := spare()
						ds := s.Disks[o]
						ds.BackstoreObjectName = s.Disks[d].objectName(d)
						s.Disks[o] = ds
						s.Targets[t1].Disks[o] = freeLUN(t1)
					}
				case k == 14:
					name = "disk gone from the config, or back"
					if d, ok := someDisk(t1); ok {
						delete(s.Disks, d)
					}
					for i := range disks {
						if _, in := s.Disks[id(i)]; !in && rng.IntN(2) == 0 {
							s.Disks[id(i)] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%03d", i), Owner: "gw1"}
						}
					}
				case k == 15:
					name = "disk on the second target"
					if d, ok := someDisk(t1); ok && rng.IntN(2) == 0 {
						s.Targets[t2].Disks[d] = freeLUN(t2)
					} else if d, ok := someDisk(t2); ok {
						delete(s.Targets[t2].Disks, d)
					}
				case k == 16:
					name = "many at once"
					for range 20 + rng.IntN(20) {
						s.Targets[t1].Disks[spare()] = freeLUN(t1)
					}
				case k == 17:
					name = "ip_list reversed"
					x := s.Targets[t1]
					slices.Reverse(x.IPList)
					s.Targets[t1] = x
				case k >= 18 && k < 22:
					// most steps of a daemon's life find a target that
					// builds without an error
					name = "repair: every disk in the config with good controls and its own storage object, unique LUN ids, nothing shared"
					for i := range disks {
						d := s.Disks[id(i)]
						d.Pool, d.Image, d.BackstoreObjectName = "rbd", fmt.Sprintf("img%03d", i), ""
						if d.Controls["bogus"] != nil {
							d.Controls = nil
						}
						s.Disks[id(i)] = d
					}
					clear(s.Targets[t2].Disks)
					seen := map[int]bool{}
					for _, d := range slices.Sorted(maps.Keys(s.Targets[t1].Disks)) {
						if seen[s.Targets[t1].Disks[d]] {
							s.Targets[t1].Disks[d] = freeLUN(t1)
						}
						seen[s.Targets[t1].Disks[d]] = true
					}
				default:
					name = "nothing"
				}
				patched := false
				for again := range 2 {
					got, gerr := b.Build(s)
					want, werr := Build(cloneSpec(s))
					if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
						t.Fatalf("step %d (%s, build %d): Builder.Build differs from Build: %s\ngot:  %v\nwant: %v", step, name, again, stateDiff(got, want), gerr, werr)
					}
					if again == 0 {
						patched = b.m.lunsPatched
					}
				}
				if patched {
					patchedSteps++
				}
			}
			// a quarter of the steps add, remove or move one disk: the
			// test proves nothing about the patch if few were patched
			if patchedSteps < steps/5 {
				t.Fatalf("only %d of %d steps were patched", patchedSteps, steps)
			}
			t.Logf("%d of %d steps patched", patchedSteps, steps)
		})
	}
}

// stateDiff names the first storage objects and LUNs where got and want
// differ (a whole State is too long to read in a failure).
func stateDiff(got, want State) string {
	var out []string
	for i := range max(len(got.StorageObjects), len(want.StorageObjects)) {
		var g, w StorageObject
		if i < len(got.StorageObjects) {
			g = got.StorageObjects[i]
		}
		if i < len(want.StorageObjects) {
			w = want.StorageObjects[i]
		}
		if !reflect.DeepEqual(g, w) {
			out = append(out, fmt.Sprintf("storage object %d: got %+v, want %+v", i, g, w))
		}
	}
	for ti := range min(len(got.Targets), len(want.Targets)) {
		for gi := range min(len(got.Targets[ti].TPGs), len(want.Targets[ti].TPGs)) {
			g, w := got.Targets[ti].TPGs[gi], want.Targets[ti].TPGs[gi]
			if !reflect.DeepEqual(g.LUNs, w.LUNs) {
				out = append(out, fmt.Sprintf("target %d TPG %d LUNs: got %+v, want %+v", ti, gi, g.LUNs, w.LUNs))
			}
			if !reflect.DeepEqual(g.ACLs, w.ACLs) {
				out = append(out, fmt.Sprintf("target %d TPG %d ACLs differ", ti, gi))
			}
		}
	}
	if !reflect.DeepEqual(got.Managed, want.Managed) {
		out = append(out, "Managed differs")
	}
	if len(out) > 6 {
		out = out[:6]
	}
	return strings.Join(out, "\n")
}
