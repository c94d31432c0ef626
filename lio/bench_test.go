package lio

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkReconcileInSync is what every config change costs a gateway whose
// LIO already holds a 255-LUN target on the emulated configfs: observe the
// tree and plan (nothing to do). Run: go test -run '^$' -bench InSync ./lio/
func BenchmarkReconcileInSync(b *testing.B) {
	spec := Spec{
		Gateway: "gw1", Backstore: BackstoreUserRBD, Settings: DefaultSettings(),
		Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{},
	}
	ts := TargetSpec{ACLEnabled: true, IPList: []string{"192.0.2.10"}, Portals: map[string][]string{"gw1": {"192.0.2.10"}},
		Disks: map[string]int{}, Clients: map[string]ClientSpec{}}
	for i := range 255 {
		id := fmt.Sprintf("rbd/img%03d", i)
		spec.Disks[id] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%03d", i), WWN: fmt.Sprintf("wwn-%03d", i), Owner: "gw1", Size: 1 << 30}
		ts.Disks[id] = i
	}
	spec.Targets["iqn.2003-01.com.example:bench"] = ts
	f := newEmu(b)
	desired := mustBuild(b, spec)
	reconcile(b, f, desired)
	b.Run("observe", func(b *testing.B) {
		for b.Loop() {
			mustObserve(b, f)
		}
	})
	observed := mustObserve(b, f)
	b.Run("plan", func(b *testing.B) {
		for b.Loop() {
			if p := NewPlan(observed, desired); !p.Empty() {
				b.Fatalf("not in sync:\n%s", p)
			}
		}
	})
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			mustBuild(b, spec)
		}
	})
}

// benchSpec is one target with n user:rbd LUNs and n/4 CHAP clients of 4
// LUNs each, the shape of the scale issue's call sequence.
func benchSpec(n int) Spec {
	spec := Spec{
		Gateway: "gw1", Backstore: BackstoreUserRBD, Settings: DefaultSettings(),
		Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{},
	}
	ts := TargetSpec{ACLEnabled: true, IPList: []string{"192.0.2.10"}, Portals: map[string][]string{"gw1": {"192.0.2.10"}},
		Disks: map[string]int{}, Clients: map[string]ClientSpec{}}
	for i := range n {
		id := fmt.Sprintf("rbd/img%05d", i)
		spec.Disks[id] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%05d", i), WWN: fmt.Sprintf("wwn-%05d", i), Owner: "gw1", Size: 1 << 30}
		ts.Disks[id] = i
	}
	for c := range n / 4 {
		cs := ClientSpec{Auth: AuthSpec{Username: "user", Password: "Secret-Pass-12"}, LUNs: map[string]int{}}
		for l := range 4 {
			cs.LUNs[fmt.Sprintf("rbd/img%05d", 4*c+l)] = l
		}
		ts.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%05d", c)] = cs
	}
	spec.Targets["iqn.2003-01.com.example:bench"] = ts
	return spec
}

// BenchmarkReconcileStep is one reconcile of an API change on a target
// of 16 to 4096 LUNs on the emulated configfs: observe, plan and apply the
// change (build is the same either way and left out). "targetlun" adds or
// removes a disk and its LUN, "clientlun" maps or unmaps a LUN of a client.
// "reread" observes the whole tree each time, as every reconcile did
// before lio.Model; "model" plans against what the Model remembers.
// Run: go test -run '^$' -bench ReconcileStep -benchtime 20x ./lio/
// benchSteps are the two steps of the Step benchmarks on a target of n
// LUNs, each as its states before and after: "targetlun" adds a disk and
// its LUN (whose storage object's name is extraObject), "clientlun" maps a
// LUN to a client.
func benchSteps(b *testing.B, n int) (steps map[string][2]State, extraObject string) {
	base := benchSpec(n)
	withLUN := benchSpec(n)
	extra := fmt.Sprintf("rbd/img%05d", n)
	withLUN.Disks[extra] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%05d", n), WWN: "wwn-extra", Owner: "gw1", Size: 1 << 30}
	withLUN.Targets["iqn.2003-01.com.example:bench"].Disks[extra] = n
	mapped := benchSpec(n)
	mapped.Targets["iqn.2003-01.com.example:bench"].Clients["iqn.1994-05.com.example:c00000"].LUNs["rbd/img00004"] = 4
	return map[string][2]State{
		"targetlun": {mustBuild(b, base), mustBuild(b, withLUN)},
		"clientlun": {mustBuild(b, base), mustBuild(b, mapped)},
	}, withLUN.Disks[extra].objectName(extra)
}

func BenchmarkReconcileStep(b *testing.B) {
	for _, n := range []int{16, 256, 1024, 4096} {
		steps, _ := benchSteps(b, n)
		f := newEmu(b)
		reconcile(b, f, steps["targetlun"][0])
		for _, step := range []string{"targetlun", "clientlun"} {
			for _, mode := range []string{"reread", "model"} {
				b.Run(fmt.Sprintf("luns=%d/%s/%s", n, step, mode), func(b *testing.B) {
					ff := f
					if mode == "model" {
						ff = f.WithModel(NewModel())
						mustObserve(b, ff) // the first observe reads everything
					}
					i := 0
					for b.Loop() {
						i++
						plan := NewPlan(mustObserve(b, ff), steps[step][i%2])
						if plan.Empty() {
							b.Fatal("nothing to do")
						}
						if _, err := Apply(b.Context(), ff, plan); err != nil {
							b.Fatal(err)
						}
					}
					if i%2 == 1 { // back to the base state
						if _, err := Apply(b.Context(), ff, NewPlan(mustObserve(b, ff), steps[step][0])); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkModelObserve splits an in-sync reconcile through a Model on a
// 256-LUN target into its observe and plan.
func BenchmarkModelObserve(b *testing.B) {
	desired := mustBuild(b, benchSpec(256))
	f := newEmu(b)
	reconcile(b, f, desired)
	mf := f.WithModel(NewModel())
	mustObserve(b, mf)
	b.Run("observe", func(b *testing.B) {
		for b.Loop() {
			mustObserve(b, mf)
		}
	})
	observed := mustObserve(b, mf)
	b.Run("plan", func(b *testing.B) {
		for b.Loop() {
			if p := NewPlan(observed, desired); !p.Empty() {
				b.Fatal("not in sync")
			}
		}
	})
}

// BenchmarkBuilderLUNStep is the Builder's part of PUT and DELETE
// /api/targetlun on a target of n LUNs (n/4 clients of 4): one disk added
// to the target, then removed, each built from the memo of the build
// before.
// Run: go test -tags pacific -run '^$' -bench BuilderLUNStep ./lio/
func BenchmarkBuilderLUNStep(b *testing.B) {
	for _, n := range []int{256, 1024, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			spec := benchSpec(n)
			extra := fmt.Sprintf("rbd/img%05d", n)
			spec.Disks[extra] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%05d", n), WWN: "wwn-extra", Owner: "gw1", Size: 1 << 30}
			luns := spec.Targets["iqn.2003-01.com.example:bench"].Disks
			var bld Builder
			if _, err := bld.Build(spec); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					luns[extra] = n
				} else {
					delete(luns, extra)
				}
				i++
				if _, err := bld.Build(spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBuildPlanStep is the lio part of one PUT clientlun or PUT
// targetlun on a target of n LUNs (n/4 clients of 4): the Builder builds
// the spec of the change, fresh as the gateway makes each, from the memo
// of the build before, and NewPlanSince plans it against the state before.
// Each step toggles between two specs, so every build and plan sees a
// change; "build" and "plan" time each part alone. The "-frozen" parts
// give Frozen specs, copied on write from each other as the gateway's spec
// memo makes them. The "-hinted" parts give each spec a Gen and the
// Changes since the one before (Spec.Changes), as the gateway knows them.
// Run: go test -tags pacific -run '^$' -bench BuildPlanStep ./lio/
func BenchmarkBuildPlanStep(b *testing.B) {
	for _, n := range []int{16, 4096} {
		const iqn = "iqn.2003-01.com.example:bench"
		// the exact hint of each step, either way
		hint := map[string]func(since uint64) *SpecChanges{
			"clientlun": func(since uint64) *SpecChanges {
				return &SpecChanges{Since: since, Targets: map[string]TargetChanges{iqn: {Clients: []string{"iqn.1994-05.com.example:c00000"}}}}
			},
			"targetlun": func(since uint64) *SpecChanges {
				extra := fmt.Sprintf("rbd/img%05d", n)
				return &SpecChanges{Since: since, Disks: []string{extra}, Targets: map[string]TargetChanges{iqn: {Disks: []string{extra}}}}
			},
		}
		mutate := map[string]func(Spec){
			"clientlun": func(s Spec) {
				s.Targets[iqn].Clients["iqn.1994-05.com.example:c00000"].LUNs["rbd/img00004"] = 4
			},
			"targetlun": func(s Spec) {
				extra := fmt.Sprintf("rbd/img%05d", n)
				s.Disks[extra] = DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%05d", n), WWN: "wwn-extra", Owner: "gw1", Size: 1 << 30}
				s.Targets[iqn].Disks[extra] = n
			},
		}
		for _, step := range []string{"clientlun", "targetlun"} {
			// fresh specs for every build: a pool of copies of each side
			const copies = 8
			var specs [2][copies]Spec
			for c := range copies {
				specs[0][c] = benchSpec(n)
				specs[1][c] = benchSpec(n)
				mutate[step](specs[1][c])
			}
			// built by one Builder, as the states a gateway plans between
			var bld Builder
			var states [2]State
			for i := range 2 {
				var err error
				if states[i], err = bld.Build(specs[i][0]); err != nil {
					b.Fatal(err)
				}
			}
			observed := [2]State{observedOf(states[0]), observedOf(states[1])}
			var frozen [2]Spec
			frozen[0] = frozenFrom(Spec{}, specs[0][0])
			frozen[1] = frozenFrom(frozen[0], specs[1][0])
			for _, part := range []string{"build", "plan", "both", "build-frozen", "both-frozen", "build-hinted", "both-hinted", "both-frozen-hinted"} {
				b.Run(fmt.Sprintf("luns=%d/%s/%s", n, step, part), func(b *testing.B) {
					var bld Builder
					first := specs[0][copies-1]
					first.Gen = 1
					prev, err := bld.Build(first)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportAllocs()
					i := 0
					cpu := processCPU()
					for b.Loop() {
						i++
						side := i % 2
						var desired State
						if part == "plan" {
							desired = states[side]
						} else {
							spec := specs[side][i%copies]
							if strings.Contains(part, "-frozen") {
								spec = frozen[side]
							}
							if strings.HasSuffix(part, "-hinted") {
								spec.Gen, spec.Changes = uint64(i+1), hint[step](uint64(i))
							}
							if desired, err = bld.Build(spec); err != nil {
								b.Fatal(err)
							}
						}
						if !strings.HasPrefix(part, "build") {
							if p := NewPlanSince(prev, observed[1-side], desired); p.Empty() {
								b.Fatal("nothing to do")
							}
						}
						prev = desired
						if part == "plan" {
							prev = states[side]
						}
					}
					b.ReportMetric(float64((processCPU()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
				})
			}
		}
	}
}

// observedOf is about what Observe reads of LIO holding st (without the
// attributes the kernel adds): each storage object in an HBA of its own,
// LUNs linked to them, nothing managed. Making it costs nothing like
// applying st to the emulated configfs, which takes minutes at thousands
// of LUNs.
func observedOf(st State) State {
	out := State{Fabric: true, DiscoveryAuth: st.DiscoveryAuth}
	out.StorageObjects = slices.Clone(st.StorageObjects)
	paths := map[string]string{}
	for i := range out.StorageObjects {
		so := &out.StorageObjects[i]
		hba := fmt.Sprintf("%s_%d", so.Plugin, i)
		out.HBAs = append(out.HBAs, hba)
		so.Path, so.Enabled = coreDir+"/"+hba+"/"+so.Name, true
		so.ALUA = slices.Clone(so.ALUA)
		paths[so.Name] = so.Path
	}
	slices.Sort(out.HBAs)
	for _, t := range st.Targets {
		ot := Target{IQN: t.IQN}
		for _, tpg := range t.TPGs {
			tp := tpgPath(t.IQN, tpg.Tag)
			tpg.Auth = observedAuth(tpg.Auth)
			tpg.LUNs = slices.Clone(tpg.LUNs)
			for i := range tpg.LUNs {
				l := &tpg.LUNs[i]
				l.Link = paths[l.StorageObject]
				l.LinkName = linkName(l.Link)
			}
			tpg.ACLs = slices.Clone(tpg.ACLs)
			for i := range tpg.ACLs {
				a := &tpg.ACLs[i]
				a.MappedLUNs = slices.Clone(a.MappedLUNs)
				a.Auth = observedAuth(a.Auth)
				for j := range a.MappedLUNs {
					a.MappedLUNs[j].LinkName = linkName(lunPath(tp, a.MappedLUNs[j].TPGLUN))
				}
			}
			ot.TPGs = append(ot.TPGs, tpg)
		}
		out.Targets = append(out.Targets, ot)
	}
	return out
}

// observedAuth is how configfs shows a: unset values read "NULL".
func observedAuth(a *Auth) *Auth {
	if a == nil {
		return nil
	}
	o := *a
	for _, p := range []*string{&o.UserID, &o.MutualUserID, (*string)(&o.Password), (*string)(&o.MutualPassword)} {
		if *p == "" {
			*p = "NULL"
		}
	}
	return &o
}

// processCPU is the CPU time the process used: on a shared machine a
// firmer figure than the time taken.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRefreshStep is Refresh after one PUT targetlun or clientlun on
// a target of n LUNs (n/4 clients of 4), through a Model as a reconciler
// refreshes: each step toggles between two states, applied to the
// emulated configfs with the timer stopped, and times only Refresh of the
// state before with the step's plan. cpu-ms/op counts Refresh alone.
// Run: go test -tags pacific -run '^$' -bench RefreshStep ./lio/
func BenchmarkRefreshStep(b *testing.B) {
	for _, n := range []int{16, 4096} {
		// setting up 4096 LUNs takes minutes: only for a run that asks
		b.Run(fmt.Sprintf("luns=%d", n), func(b *testing.B) { benchRefreshStep(b, n) })
	}
}

func benchRefreshStep(b *testing.B, n int) {
	{
		steps, extraObject := benchSteps(b, n)
		// the disk removed is still managed, as the DELETE handler keeps
		// it: its storage object goes with its LUN, and comes back with it
		without := steps["targetlun"]
		without[0].Managed.StorageObjects = slices.Sorted(slices.Values(append(slices.Clone(without[0].Managed.StorageObjects),
			extraObject)))
		steps["targetlun"] = without
		f := newEmu(b).WithModel(NewModel())
		reconcile(b, f, steps["targetlun"][0])
		for _, step := range []string{"targetlun", "clientlun"} {
			b.Run(step, func(b *testing.B) {
				observed := mustObserve(b, f)
				var cpu time.Duration
				i := 0
				for b.Loop() {
					b.StopTimer()
					// no collection of what the apply left may run
					// during Refresh and count as its CPU time
					runtime.GC()
					i++
					plan := NewPlanSince(steps[step][1-i%2], observed, steps[step][i%2])
					if plan.Empty() {
						b.Fatal("nothing to do")
					}
					if _, err := Apply(b.Context(), f, plan); err != nil {
						b.Fatal(err)
					}
					start := processCPU()
					b.StartTimer()
					var err error
					if observed, err = Refresh(f, observed, plan); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					cpu += processCPU() - start
					b.StartTimer()
				}
				b.StopTimer()
				b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
				if !reflect.DeepEqual(observed, mustObserve(b, f)) {
					b.Fatal("Refresh differs from Observe")
				}
				if i%2 == 1 { // back to the base state
					if _, err := Apply(b.Context(), f, NewPlan(observed, steps[step][0])); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
