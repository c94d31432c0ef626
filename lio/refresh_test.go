package lio

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
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

// cloneSpec copies s deeply enough that changing the copy's maps, the
// disks' and the clients' included, leaves s as it was.
func cloneSpec(s Spec) Spec {
	c := s
	c.Disks = maps.Clone(s.Disks)
	for id, d := range c.Disks {
		d.Controls = maps.Clone(d.Controls)
		c.Disks[id] = d
	}
	c.Targets = maps.Clone(s.Targets)
	for iqn, ts := range c.Targets {
		ts.Disks = maps.Clone(ts.Disks)
		ts.Portals = maps.Clone(ts.Portals)
		ts.IPList = slices.Clone(ts.IPList)
		ts.Controls = maps.Clone(ts.Controls)
		ts.Clients = maps.Clone(ts.Clients)
		for ini, cs := range ts.Clients {
			cs.LUNs = maps.Clone(cs.LUNs)
			ts.Clients[ini] = cs
		}
		c.Targets[iqn] = ts
	}
	return c
}

// TestBuilderObjectMemos changes, one step after the other, each input a
// memoized ACL or target's LUNs is made of, and asserts that every
// Builder build (and the same spec built again, all from memo) equals a
// Build from scratch. A memo key that misses an input (the client's LUNs
// changed in the very map the Builder saw, a LUN id, a timeout, an owner,
// a size, ip_list, a disk gone, a disk shared by two targets) fails here.
func TestBuilderObjectMemos(t *testing.T) {
	t.Parallel()
	spec := goldenCases[2].spec(t)
	iqn := "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
	ts := spec.Targets[iqn]
	if len(ts.Clients) == 0 || len(ts.Disks) < 2 || len(ts.IPList) < 2 {
		t.Fatalf("the golden spec has %d clients, %d disks, %d ips: too few to change", len(ts.Clients), len(ts.Disks), len(ts.IPList))
	}
	ini := slices.Sorted(maps.Keys(ts.Clients))[0]
	disks := slices.Sorted(maps.Keys(ts.Disks))
	other := "iqn.2003-01.com.example:other"
	steps := []struct {
		name   string
		change func(s *Spec)
	}{
		{"nothing", func(*Spec) {}},
		{"client LUN added in place", func(s *Spec) { s.Targets[iqn].Clients[ini].LUNs[disks[1]] = 9 }},
		{"client LUN removed in place", func(s *Spec) { delete(s.Targets[iqn].Clients[ini].LUNs, disks[1]) }},
		{"client CHAP", func(s *Spec) {
			c := s.Targets[iqn].Clients[ini]
			c.Auth = AuthSpec{Username: "someone", Password: "Secret-password-1"}
			s.Targets[iqn].Clients[ini] = c
		}},
		{"client gone", func(s *Spec) { delete(s.Targets[iqn].Clients, ini) }},
		{"client back", func(s *Spec) {
			s.Targets[iqn].Clients[ini] = ClientSpec{LUNs: map[string]int{disks[0]: 0, disks[1]: 1}}
		}},
		{"LUN id moved", func(s *Spec) { s.Targets[iqn].Disks[disks[0]] = 42 }},
		{"target timeouts", func(s *Spec) {
			x := s.Targets[iqn]
			x.Controls = map[string]any{"dataout_timeout": 11, "cmdsn_depth": 64}
			s.Targets[iqn] = x
		}},
		{"target cmdsn_depth alone", func(s *Spec) {
			x := s.Targets[iqn]
			x.Controls = map[string]any{"dataout_timeout": 11, "cmdsn_depth": 32}
			s.Targets[iqn] = x
		}},
		{"global nopin timeout", func(s *Spec) { s.Settings.NopinTimeout++ }},
		{"disk size", func(s *Spec) {
			d := s.Disks[disks[0]]
			d.Size += 1 << 20
			s.Disks[disks[0]] = d
		}},
		{"disk owner", func(s *Spec) {
			d := s.Disks[disks[1]]
			d.Owner = slices.Sorted(maps.Keys(s.Targets[iqn].Portals))[0]
			s.Disks[disks[1]] = d
		}},
		{"disk controls", func(s *Spec) {
			d := s.Disks[disks[1]]
			d.Controls = map[string]any{"qfull_timeout": 9}
			s.Disks[disks[1]] = d
		}},
		{"ip_list reversed", func(s *Spec) {
			x := s.Targets[iqn]
			slices.Reverse(x.IPList)
			s.Targets[iqn] = x
		}},
		{"disk not in the config", func(s *Spec) { delete(s.Disks, disks[0]) }},
		{"disk back", func(s *Spec) { s.Disks[disks[0]] = spec.Disks[disks[0]] }},
		{"a disk shared with a second target", func(s *Spec) {
			x := s.Targets[iqn]
			s.Targets[other] = TargetSpec{IPList: slices.Clone(x.IPList), Portals: maps.Clone(x.Portals),
				Disks: map[string]int{disks[1]: 3}, Clients: map[string]ClientSpec{}}
		}},
		{"the second target gone", func(s *Spec) { delete(s.Targets, other) }},
	}
	var b Builder
	s := cloneSpec(spec)
	for i, step := range steps {
		step.change(&s)
		for again := range 2 {
			got, gerr := b.Build(s)
			want, werr := Build(cloneSpec(s))
			if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("step %d (%s, build %d): Builder.Build differs from Build\ngot:  %+v %v\nwant: %+v %v", i, step.name, again, got, gerr, want, werr)
			}
		}
	}
}
