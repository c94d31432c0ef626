package lio

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestParseHBA: parseHBA reads HBA names as hbaRe does.
func TestParseHBA(t *testing.T) {
	for _, h := range []string{"user_0", "user_12", "iblock_3", "fileio_10", "rd_mcp_2", "alua", "user_", "_1", "user_1x",
		"User_1", "user-1", "user__4", "a_b_c_5", "user_1_", "9_1", ""} {
		plugin, n, ok := parseHBA(h)
		m := hbaRe.FindStringSubmatch(h)
		if ok != (m != nil) || (ok && (plugin != m[1] || n != atoi(m[2]))) {
			t.Errorf("%q: parseHBA = %q %d %v, hbaRe = %q", h, plugin, n, ok, m)
		}
	}
}

// TestRefreshAndBuilderTransitions walks between configurations at random
// on one emulated configfs with foreign objects, through one Builder and
// through a Model, as a reconciler does: after each apply, Refresh of what
// was read before and the plan must equal a fresh Observe, and each
// Builder build must equal a Build from scratch. It would catch an object
// a plan touches that Refresh does not read again, a list left out of
// order, and a memo that outlives what it was made from.
func TestRefreshAndBuilderTransitions(t *testing.T) {
	t.Parallel()
	specs := []Spec{{Gateway: "node1.ceph.local", Settings: DefaultSettings(), ManageDiscoveryAuth: true}}
	for _, c := range goldenCases {
		specs = append(specs, c.spec(t))
	}
	{
		s := goldenCases[2].spec(t)
		d := s.Disks["rbd/disk_1"]
		d.Size *= 2 // a resize: the memoized object must not be reused
		s.Disks["rbd/disk_1"] = d
		ts := s.Targets["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"]
		ts.Disks = maps.Clone(ts.Disks)
		ts.Disks["rbd/disk_1"] = 7 // a LUN moved
		s.Targets["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"] = ts
		specs = append(specs, s)
	}
	// whatever one of them names stays managed, as for a reconciler
	var all Managed
	for _, s := range specs {
		m := mustBuild(t, s).ForTeardown().Managed
		all.StorageObjects = append(all.StorageObjects, m.StorageObjects...)
		all.Targets = append(all.Targets, m.Targets...)
	}
	live := newEmu(t)
	foreign(t, live)
	f := live.WithModel(NewModel())
	var b Builder
	observed := mustObserve(t, f)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 8 * len(specs) {
		spec := specs[r.IntN(len(specs))]
		if r.IntN(len(specs)+1) == 0 {
			spec = Spec{Gateway: spec.Gateway, Settings: spec.Settings} // teardown
		}
		got, gerr := b.Build(spec)
		want, werr := Build(spec)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("step %d: Builder.Build differs from Build\ngot:  %+v %v\nwant: %+v %v", i, got, gerr, want, werr)
		}
		got.Managed = all
		plan := NewPlan(observed, got)
		if _, err := Apply(t.Context(), f, plan); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var err error
		if observed, err = Refresh(f, observed, plan); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if fresh := mustObserve(t, live); !reflect.DeepEqual(observed, fresh) {
			t.Fatalf("step %d: Refresh differs from Observe\nrefresh: %+v\nobserve: %+v\nplan:\n%s", i, observed, fresh, plan)
		}
		if again := NewPlan(observed, got); !again.Empty() {
			t.Fatalf("step %d: not converged:\n%s", i, again)
		}
	}
}

// TestBuilderNameChecks: a Builder remembers the names that passed its
// NameRules, never one that failed: builds that alternate good and bad
// names of disks and initiators report what a Build from scratch does,
// every time.
func TestBuilderNameChecks(t *testing.T) {
	t.Parallel()
	good := goldenCases[2].spec(t)
	iqn := "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
	bad := goldenCases[2].spec(t)
	bad.Names = NameRules{IQN: func(n string) error {
		if strings.Contains(n, "bad") {
			return errors.New("bad name")
		}
		return nil
	}, Object: func(n string) error {
		if strings.Contains(n, "bad") {
			return errors.New("bad name")
		}
		return nil
	}}
	good.Names = bad.Names
	d := bad.Disks["rbd/disk_1"]
	d.BackstoreObjectName = "bad.disk_1"
	bad.Disks = maps.Clone(bad.Disks)
	bad.Disks["rbd/disk_1"] = d
	ts := bad.Targets[iqn]
	ts.Clients = maps.Clone(ts.Clients)
	ts.Clients["iqn.1994-05.com.example:bad"] = ClientSpec{LUNs: map[string]int{}}
	bad.Targets = maps.Clone(bad.Targets)
	bad.Targets[iqn] = ts
	var b Builder
	for i, spec := range []Spec{good, bad, good, bad, bad} {
		got, gerr := b.Build(spec)
		want, werr := Build(spec)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("build %d: Builder.Build differs from Build\ngot:  %+v %v\nwant: %+v %v", i, got, gerr, want, werr)
		}
		if (gerr != nil) != (i%2 == 1 || i == 4) {
			t.Fatalf("build %d: error %v", i, gerr)
		}
	}
}
