package lio

import (
	"path"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// related reports whether one path is the other or under it.
func related(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// dependent says whether op b, later in a plan than a, must wait for it,
// by what LIO needs rather than by how Apply groups: an object and what is
// inside it or links to it, two storage objects of one name, every backstore
// op but a removal after a fabric op, the removal of a storage object (or
// its ALUA group, or HBA) after the ops on the LUNs linked to it, and a
// LUN's link to a storage object or its ALUA group after every op of that
// object's. links maps a LUN directory to the storage object the plan links
// it to, was the one LIO linked it to before; a LUN's ALUA group write
// without one depends on every backstore op, and a removal on every op of
// a LUN without one.
func dependent(a, b Op, links, was map[string]string) bool {
	area := func(o Op) string {
		p := strings.SplitN(o.Path, "/", 3)
		if len(p) < 2 {
			return o.Path
		}
		return p[1]
	}
	if area(a) != area(b) {
		if area(b) == "core" && b.Kind == OpRmdir && area(a) == "iscsi" {
			lun := lunDirOf(a.Path)
			if lun == "" {
				return false
			}
			so, ok := was[lun]
			pb := strings.Split(b.Path, "/")
			return !ok || related(strings.Join(pb[:min(4, len(pb))], "/"), so) || (len(pb) == 3 && strings.HasPrefix(so, b.Path+"/"))
		}
		if area(b) == "core" {
			return true
		}
		pa := strings.SplitN(a.Path, "/", 5)
		if len(pa) < 3 {
			return true
		}
		obj := strings.Join(pa[:min(4, len(pa))], "/") // the object or its HBA
		if b.Kind == OpWrite && strings.HasSuffix(b.Path, "/alua_tg_pt_gp") {
			so, ok := links[strings.TrimSuffix(b.Path, "/alua_tg_pt_gp")]
			return !ok || related(obj, so)
		}
		if b.Kind == OpSymlink {
			return related(obj, b.Value)
		}
		return false
	}
	if related(a.Path, b.Path) || (a.Kind == OpSymlink && related(a.Value, b.Path)) || (b.Kind == OpSymlink && related(b.Value, a.Path)) {
		return true
	}
	if area(a) == "core" {
		pa, pb := strings.Split(a.Path, "/"), strings.Split(b.Path, "/")
		if len(pa) >= 4 && len(pb) >= 4 && pa[3] == pb[3] {
			return true // two objects of one name
		}
	}
	return false
}

// TestApplyConcurrentOrder applies every golden plan, a change and a
// teardown with 8 workers (each op yields the processor as it starts, so
// independent ops interleave): no op starts before an op it depends on
// has ended, some ops did run at the same time, fabric ops did run while
// storage objects were being made, a teardown removed storage objects
// while LUNs of others were still going, and the tree equals the one a
// serial apply builds.
func TestApplyConcurrentOrder(t *testing.T) {
	overlapped, crossed, early := false, false, false
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			conc, serial := newEmu(t), newEmu(t)
			foreign(t, conc)
			foreign(t, serial)
			st := mustBuild(t, c.spec(t))
			changed := c.spec(t)
			for id := range changed.Disks {
				delete(changed.Disks, id)
				for _, ts := range changed.Targets {
					delete(ts.Disks, id)
					for _, cs := range ts.Clients {
						delete(cs.LUNs, id)
					}
				}
				break
			}
			for i, want := range []State{st, mustBuild(t, changed), st.ForTeardown()} {
				obs := mustObserve(t, conc)
				plan := NewPlan(obs, want)
				var mu sync.Mutex
				seq, running, runningCore := 0, 0, 0
				start, end := make([]int, len(plan.Ops)), make([]int, len(plan.Ops))
				trace := func(i int, begin bool) {
					mu.Lock()
					seq++
					core := strings.HasPrefix(plan.Ops[i].Path, "target/core/")
					if begin {
						start[i] = seq
						running++
						if running > 1 {
							overlapped = true
						}
						if !core && runningCore > 0 {
							crossed = true
						}
					} else {
						end[i] = seq
						running--
					}
					if core && begin {
						runningCore++
					} else if core {
						runningCore--
					}
					mu.Unlock()
					if begin {
						runtime.Gosched()
					}
				}
				res, err := ApplyWith(t.Context(), conc, plan, ApplyOptions{Workers: 8, trace: trace})
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				checkTimings(t, obs, plan, res)
				links, was := linksOf(plan), linksOfState(obs)
				for a := range plan.Ops {
					for b := a + 1; b < len(plan.Ops); b++ {
						if dependent(plan.Ops[a], plan.Ops[b], links, was) && start[b] < end[a] {
							t.Fatalf("step %d: %s started before %s ended", i, plan.Ops[b], plan.Ops[a])
						}
						if i == 2 && lunDirOf(plan.Ops[a].Path) != "" && strings.HasPrefix(plan.Ops[b].Path, "target/core/") && start[b] < end[a] {
							early = true
						}
					}
				}
				if _, err := ApplyWith(t.Context(), serial, NewPlan(mustObserve(t, serial), want), ApplyOptions{Workers: 1}); err != nil {
					t.Fatal(err)
				}
				if got, want := render(t, conc), render(t, serial); got != want {
					t.Fatalf("step %d: the concurrent apply built another tree (-serial +concurrent):\n%s", i, lineDiff(want, got))
				}
				if p := NewPlan(mustObserve(t, conc), want); !p.Empty() {
					t.Fatalf("step %d: not converged:\n%s", i, p)
				}
			}
			assertForeignIntact(t, conc, Plan{})
		})
	}
	if !overlapped {
		t.Error("no two operations ever ran at once")
	}
	if !crossed {
		t.Error("no fabric operation ever ran while a storage object's did")
	}
	if !early {
		t.Error("no teardown ever removed a storage object before the last LUN had gone")
	}
}

// checkTimings: every op that ran has one timing, in plan order, and an op
// that depends on another started after that one's measured end (1 µs of
// rounding aside); obs is what the plan was made from.
func checkTimings(t *testing.T, obs State, plan Plan, res Result) {
	t.Helper()
	if got, want := len(res.Timings), len(res.Done)+len(res.Failed); got != want {
		t.Fatalf("%d timings for %d ops that ran", got, want)
	}
	at := map[int]OpTiming{}
	for k, tm := range res.Timings {
		if k > 0 && tm.Index <= res.Timings[k-1].Index {
			t.Fatalf("timings out of plan order at %d", k)
		}
		if tm.StartUS < 0 || tm.DurUS < 0 {
			t.Fatalf("negative timing %+v", tm)
		}
		at[tm.Index] = tm
	}
	links, was := linksOf(plan), linksOfState(obs)
	for a := range plan.Ops {
		for b := a + 1; b < len(plan.Ops); b++ {
			ta, okA := at[a]
			tb, okB := at[b]
			if okA && okB && dependent(plan.Ops[a], plan.Ops[b], links, was) && tb.StartUS+1 < ta.StartUS+ta.DurUS {
				t.Fatalf("%s timed at %d µs, before %s ended at %d µs", plan.Ops[b], tb.StartUS, plan.Ops[a], ta.StartUS+ta.DurUS)
			}
		}
	}
}

// linksOf maps each LUN directory the plan links to a storage object to
// that object's path.
// lunDirOf is the TPG LUN directory p is in, or "".
func lunDirOf(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) >= 6 && parts[1] == "iscsi" && parts[4] == "lun" {
		return strings.Join(parts[:6], "/")
	}
	return ""
}

// linksOfState maps every LUN directory of st to the storage object it
// links to.
func linksOfState(st State) map[string]string {
	out := map[string]string{}
	for _, t := range st.Targets {
		for _, tpg := range t.TPGs {
			for _, l := range tpg.LUNs {
				if l.Link != "" {
					out[lunPath(tpgPath(t.IQN, tpg.Tag), l.Index)] = l.Link
				}
			}
		}
	}
	return out
}

func linksOf(plan Plan) map[string]string {
	out := map[string]string{}
	for _, op := range plan.Ops {
		if op.Kind == OpSymlink && strings.HasPrefix(op.Value, "target/core/") {
			out[path.Dir(op.Path)] = op.Value
		}
	}
	return out
}
