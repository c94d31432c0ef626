package lio

import (
	"encoding/json"
	"reflect"
	"testing"
)

// sameAsKernel fails unless an Observe through the Model reads what a live
// Observe reads.
func sameAsKernel(t *testing.T, step string, mf FS) State {
	t.Helper()
	got, want := mustObserve(t, mf), mustObserve(t, mf.Live())
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("%s: the Model differs from configfs (-kernel +model):\n%s", step, lineDiff(string(wj), string(gj)))
	}
	return got
}

// TestModelTracksApply applies the golden configurations, a change of
// each (a client removed, a LUN unmapped, tuning changed, a disk gone, CHAP
// turned off) and a teardown through a Model, next to foreign objects: at
// every step an Observe through the Model equals a live one, and after the
// first Observe a small change is read back with few configfs reads.
func TestModelTracksApply(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			f := newEmu(t)
			foreign(t, f)
			m := NewModel()
			mf := f.WithModel(m)
			sameAsKernel(t, "start", mf)

			spec := c.spec(t)
			st := mustBuild(t, spec)
			if _, err := Apply(t.Context(), mf, NewPlan(mustObserve(t, mf), st)); err != nil {
				t.Fatal(err)
			}
			full := sameAsKernel(t, "built", mf)
			if p := NewPlan(full, st); !p.Empty() {
				t.Fatalf("not converged:\n%s", p)
			}

			// A small change.
			for iqn, ts := range spec.Targets {
				for ini := range ts.Clients {
					delete(ts.Clients, ini)
					break
				}
				ts.Controls = map[string]any{"cmdsn_depth": json.Number("32"), "immediate_data": false}
				if ts.Auth.Username != "" {
					ts.Auth = AuthSpec{}
				}
				spec.Targets[iqn] = ts
			}
			for id := range spec.Disks {
				delete(spec.Disks, id)
				for _, ts := range spec.Targets {
					delete(ts.Disks, id)
					for _, cs := range ts.Clients {
						delete(cs.LUNs, id)
					}
				}
				break
			}
			changed := mustBuild(t, spec)
			_, before := m.Reads()
			plan := NewPlan(mustObserve(t, mf), changed)
			_, after := m.Reads()
			if _, err := Apply(t.Context(), mf, plan); err != nil {
				t.Fatalf("%v\n%s", err, plan)
			}
			sameAsKernel(t, "changed", mf)
			if n := after - before; n != 0 {
				t.Errorf("an Observe right after the Model's own Observe read %d entries from configfs", n)
			}
			if p := NewPlan(mustObserve(t, mf), changed); !p.Empty() {
				t.Fatalf("not converged after the change:\n%s", p)
			}
			assertForeignIntact(t, f, plan)

			if _, err := Apply(t.Context(), mf, NewPlan(mustObserve(t, mf), changed.ForTeardown())); err != nil {
				t.Fatal(err)
			}
			sameAsKernel(t, "torn down", mf)
			mem, kernel := m.Reads()
			if mem <= kernel {
				t.Errorf("the Model answered %d reads from memory and %d from configfs", mem, kernel)
			}
		})
	}
}

// TestModelForget: what changed behind the Model's back is seen only
// after Forget; sessions are read live.
func TestModelForget(t *testing.T) {
	f := newEmu(t)
	m := NewModel()
	mf := f.WithModel(m)
	st := mustBuild(t, goldenCases[2].spec(t))
	if _, err := Apply(t.Context(), mf, NewPlan(mustObserve(t, mf), st)); err != nil {
		t.Fatal(err)
	}
	sameAsKernel(t, "built", mf)
	so := mustObserve(t, mf).StorageObjects[0]
	if err := f.write(so.Path+"/attrib/cmd_time_out", "7"); err != nil {
		t.Fatal(err)
	}
	if p := NewPlan(mustObserve(t, mf), st); !p.Empty() {
		t.Fatalf("the Model saw a change made behind its back:\n%s", p)
	}
	m.Forget()
	p := NewPlan(mustObserve(t, mf), st)
	if len(p.Ops) != 1 || p.Ops[0].Path != so.Path+"/attrib/cmd_time_out" {
		t.Fatalf("after Forget, plan:\n%s\nwant the one attribute put back", p)
	}
}

// TestModelForgetsSiblingValues checks that making a directory through a
// Model forgets the values of the files beside it, which the kernel may
// derive from it, whether their directory was listed or not.
func TestModelForgetsSiblingValues(t *testing.T) {
	for _, listed := range []bool{false, true} {
		f := newEmu(t)
		m := NewModel()
		mf := f.WithModel(m)
		hba := hbaPath(PluginUser, 0)
		if err := mf.mkdir(hba); err != nil {
			t.Fatal(err)
		}
		if listed {
			if _, _, _, err := mf.entries(hba); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if _, err := mf.read(hba + "/hba_mode"); err != nil {
				t.Fatal(err)
			}
		}
		if err := mf.mkdir(hba + "/rbd.disk"); err != nil {
			t.Fatal(err)
		}
		_, before := m.Reads()
		if _, err := mf.read(hba + "/hba_mode"); err != nil {
			t.Fatal(err)
		}
		if _, after := m.Reads(); after != before+1 {
			t.Fatalf("listed=%v: the value beside a new directory was not read again", listed)
		}
	}
}
