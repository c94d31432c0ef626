package lio

import "testing"

// TestObserveLayoutPlansTheSameTeardown: for every golden tree (with
// foreign objects beside it), a teardown planned from ObserveLayout is the
// one planned from a full Observe, read live and through a Model, before
// and after the Model has parsed whole objects; and the layout read leaves
// no partial object in the Model for a later full Observe to use.
func TestObserveLayoutPlansTheSameTeardown(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			f := newEmu(t)
			foreign(t, f)
			st := mustBuild(t, c.spec(t))
			if _, err := Apply(t.Context(), f, NewPlan(mustObserve(t, f), st)); err != nil {
				t.Fatal(err)
			}
			down := st.ForTeardown()
			want := NewPlan(mustObserve(t, f), down).String()
			if want == "" {
				t.Fatal("empty teardown plan")
			}
			m := NewModel()
			for _, fs := range []struct {
				name string
				f    FS
			}{{"live", f}, {"cold model", f.WithModel(m)}, {"warm model", f.WithModel(m)}} {
				got, err := ObserveLayout(fs.f)
				if err != nil {
					t.Fatal(err)
				}
				if p := NewPlan(got, down).String(); p != want {
					t.Errorf("%s: teardown from the layout:\n%s\nfrom a full read:\n%s", fs.name, p, want)
				}
				if fs.name == "cold model" {
					// the full read after a layout read must be whole
					full := mustObserve(t, f.WithModel(m))
					if p := NewPlan(full, st); !p.Empty() {
						t.Fatalf("a full read through the Model after a layout read is not the tree:\n%s", p)
					}
				}
			}
		})
	}
}
