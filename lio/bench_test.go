package lio

import (
	"fmt"
	"testing"
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
