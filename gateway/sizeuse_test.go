package gateway

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
)

// TestSizeCacheAcrossReusedBuilds runs a Reconciler through documents whose
// content comes back, A, B, A, C, A..., as a change undone does (PUT then
// DELETE): its runs reuse memoized builds, full ones (every size asked)
// among them, and record their sizes by reference, while sizes change in
// between: a size noted (NoteSize) or forgotten (ForgetSizes, of one disk
// or all), and a disk removed, resized and re-added (rollback). The
// Reconciler verifies its reuse: each prune is checked against the full
// walk, both ways (a size that outlived its run, a needed one dropped),
// and a build reused without comparing its sizes against the cache must
// find them there. After each run the size cache holds what a build of
// the document from scratch reads.
func TestSizeCacheAcrossReusedBuilds(t *testing.T) {
	ctx := context.Background()
	// dropped counts the runs after which a reused set of sizes was no
	// longer used, rest those where only what its build did not hold was
	// walked, over all seeds (how many a seed gives varies from run to
	// run with the order of the check's and the reconcile's goroutines)
	dropped, rest, steps := 0, 0, 60
	if testing.Short() {
		steps = 30
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newMemoWorld(t, seed, 24, true)
			w.newReconciler(t)
			r := w.rec
			epoch := int64(0)
			run := func(step int, doc *config.Doc, what string) {
				t.Helper()
				epoch++
				doc.Epoch = epoch
				r.cacheMu.Lock()
				sets, held := r.lastSets, r.prunedHeld
				r.cacheMu.Unlock()
				runs := r.Counters().Runs
				if w.rng.IntN(2) == 0 {
					// the API's commit: its check builds, the run reuses
					reconcile, _ := r.CheckThen(ctx, doc)
					_ = reconcile(ctx, doc)
				} else {
					_, _ = r.Run(ctx, doc, Mode{})
				}
				r.cacheMu.Lock()
				for _, s := range sets {
					if !slices.Contains(r.lastSets, s) && len(s.n) > 1 {
						dropped++
						if s.held == held {
							rest++
						}
					}
				}
				r.cacheMu.Unlock()
				// a reconcile of what LIO already holds is skipped, and
				// with it the prune: a size noted since stays until a run
				if r.Counters().Runs > runs {
					w.checkSizes(step, doc, what)
				}
			}
			// the "pool/image" of a disk whose size reads
			healthy := func() string {
				for range 10 {
					d := w.doc.Disks[w.disk()]
					if id := d.Pool + "/" + d.Image; !w.sizeErr[id] && !w.notFound[id] {
						return id
					}
				}
				return ""
			}
			base := w.doc
			run(0, base, "first")
			for step := 1; step < steps; step++ {
				w.doc, w.step = base, ""
				switch w.rng.IntN(6) {
				case 0: // the API noted a size (a resize, or a disk mapped)
					if id := healthy(); id != "" {
						w.size[id] = int64(1+w.rng.IntN(4)) << 30
						r.NoteSize(id, w.size[id])
						w.step = "note " + id
					}
				case 1: // a resize behind the cache's back, then forgotten
					if id := healthy(); id != "" {
						w.size[id] += 1 << 30
						r.ForgetSizes(id)
						w.step = "forget " + id
					}
				case 2:
					r.ForgetSizes()
					w.step = "forget all"
				}
				if w.step != "" {
					// A built from scratch: a build whose set of sizes
					// is every disk's
					run(step, base.Fork(), "sizes changed")
				}
				switch w.rng.IntN(6) {
				case 0: // removed, resized and re-added: a new A
					if w.rollback(ctx) {
						base = w.doc.Fork()
						run(step, base, "rolled back")
					}
				case 1: // a change kept: a new A
					w.doc = base.Fork()
					w.mutate()
					// a member again, whose images read: its builds are
					// memoized
					if w.doc.Gateways[gw1] == nil {
						w.doc.PutGateway(gw1, &config.Gateway{})
					}
					clear(w.sizeErr)
					clear(w.notFound)
					clear(w.pathErr)
					base = w.doc.Fork()
					run(step, base, "kept")
				}
				// B, A, C, A: changes undone, A's content again
				for range 2 {
					w.doc = base.Fork()
					w.lunChange()
					run(step, w.doc, "changed")
					run(step, base.Fork(), "undone")
				}
			}
		})
	}
	// or this test proves nothing about reuse by reference
	if dropped < steps/5 || rest < steps/5 {
		t.Fatalf("%d reused sets dropped out of a run, %d walked only in what their build did not hold", dropped, rest)
	}
	t.Logf("%d reused sets dropped out of a run, %d walked only in what their build did not hold", dropped, rest)
}

// A set of sizes a run reused holds what its build asked for, and its rest
// only those its build's held set does not hold at the same size.
func TestNewSizeUses(t *testing.T) {
	held := (*sizeSet)(nil).with(map[string]sizeEdit{"p/a": {n: 1}, "p/b": {n: 2}})
	s := newSizeUses([]sizeUse{{"p/a", 1, false}, {"p/b", 3, false}, {"p/c", 4, false}, {"p/d", 0, true}}, held)
	if want := map[string]int64{"p/a": 1, "p/b": 3, "p/c": 4, "p/d": 0}; !maps.Equal(s.n, want) {
		t.Fatalf("sizes %v, want %v", s.n, want)
	}
	if want := map[string]int64{"p/b": 3, "p/c": 4, "p/d": 0}; s.rest == nil || !maps.Equal(s.rest.n, want) {
		t.Fatalf("rest %+v, want %v", s.rest, want)
	}
	if !s.unsized() || s.held != held {
		t.Fatalf("unsized %v, held %p (want %p)", s.unsized(), s.held, held)
	}
	if newSizeUses(nil, held) != nil {
		t.Fatal("no sizes make a set")
	}
	if s := newSizeUses([]sizeUse{{"p/a", 1, false}}, held); s.rest != nil || s.unsized() {
		t.Fatalf("a held size: rest %+v, unsized %v", s.rest, s.unsized())
	}
}

// lunChange adds or removes a LUN of a client of memoT1, or of memoT1, as
// PUT and DELETE clientlun and targetlun do.
func (w *memoWorld) lunChange() {
	t := w.doc.Targets[memoT1]
	if t == nil {
		return
	}
	id := w.disk()
	if ini := w.client(memoT1); ini != "" && t.Clients[ini] != nil && w.rng.IntN(2) == 0 {
		c := w.doc.MutClient(memoT1, ini)
		if _, ok := c.Luns[id]; ok {
			delete(c.Luns, id)
		} else {
			c.Luns[id] = config.LunRef{LunID: w.freeLUN(c.Luns)}
		}
		w.step = "clientlun " + ini + " " + id
		return
	}
	mt := w.doc.MutTarget(memoT1)
	if _, ok := mt.Disks[id]; ok {
		delete(mt.Disks, id)
	} else {
		mt.Disks[id] = config.LunRef{LunID: w.freeLUN(mt.Disks)}
	}
	w.step = "targetlun " + id
}

// TestPruneWalksSetsThatDroppedOut: after a run that reused sets of sizes
// by reference, the next run's prune finds what only those sets kept when
// they drop out: all of a set whose build held other sizes than the last
// run, and of one whose build held what the last run held, the sizes its
// build did not hold and those written since it was reused. A set both
// runs reused is not walked, and keeps its sizes. The full walk (the last
// run did not prune) finds the same.
func TestPruneWalksSetsThatDroppedOut(t *testing.T) {
	for _, c := range []struct{ verify, pruned bool }{{false, true}, {true, true}, {false, false}} {
		verify := c.verify
		fs, err := lio.NewEmulatedFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r := New(Options{FS: fs, VerifyReuse: verify})
		held := (*sizeSet)(nil).with(map[string]sizeEdit{"p/a": {n: 1}, "p/c": {n: 3}})
		other := (*sizeSet)(nil).with(map[string]sizeEdit{"p/d": {n: 5}})
		// p/b is not held (its rest), p/c was noted anew during the run
		s := newSizeUses([]sizeUse{{"p/a", 1, false}, {"p/b", 2, false}, {"p/c", 3, false}}, held)
		s2 := newSizeUses([]sizeUse{{"p/d", 5, false}}, other)
		both := newSizeUses([]sizeUse{{"p/e", 6, false}}, nil)
		r.sizes = map[string]int64{"p/a": 1, "p/b": 2, "p/c": 4, "p/d": 5, "p/e": 6}
		r.lastSets, r.lastDirty, r.lastUsed = []*sizeUses{s, s2, both}, map[string]bool{"p/c": true}, map[string]bool{}
		r.prunedHeld, r.prunedOK = held, c.pruned
		// this run holds what the last one held, and reuses both again
		r.sizeUsed, r.runSets, r.runHeld = map[string]bool{}, []*sizeUses{both}, held
		if verify {
			r.verifyUsed = map[string]bool{"p/e": true}
		}
		gone := r.pruneSizes()
		slices.Sort(gone)
		if want := []string{"p/b", "p/c", "p/d"}; !slices.Equal(gone, want) {
			t.Fatalf("%+v: the prune dropped %v, want %v", c, gone, want)
		}
		if want := map[string]int64{"p/a": 1, "p/e": 6}; !maps.Equal(r.sizes, want) {
			t.Fatalf("%+v: the cache holds %v, want %v", c, r.sizes, want)
		}
	}
}
