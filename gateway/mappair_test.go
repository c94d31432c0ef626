package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sync"
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
)

// mapID is the identity of a map, which lio.Builder compares.
func mapID[V any](m map[string]V) uintptr { return reflect.ValueOf(m).Pointer() }

// TestMapPair edits a mapPair at random against a plain map: each version
// holds what the edits made, a version with edits is a map other than the
// version before it, one without is that version itself, and the version
// handed out before still holds what it held (it is read until the next
// call).
func TestMapPair(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var p mapPair[int]
	want := map[string]int{}
	var last, lastCopy map[string]int
	for step := range 3000 {
		var edits []mapEdit[int]
		// mostly a few edits, now and then none or many (a copy)
		n := rng.IntN(4)
		if rng.IntN(50) == 0 {
			n = 40 + rng.IntN(40)
		}
		for range n {
			k := fmt.Sprint("k", rng.IntN(60))
			if rng.IntN(3) == 0 {
				edits = append(edits, mapEdit[int]{key: k, del: true})
				delete(want, k)
			} else {
				v := rng.IntN(1000)
				edits = append(edits, mapEdit[int]{key: k, val: v})
				want[k] = v
			}
		}
		got := p.next(edits)
		if !maps.Equal(got, want) {
			t.Fatalf("step %d: got %v, want %v", step, got, want)
		}
		if last != nil {
			same := mapID(got) == mapID(last)
			if len(edits) == 0 && !same {
				t.Fatalf("step %d: no edit, yet a new map", step)
			}
			if len(edits) > 0 && same {
				t.Fatalf("step %d: an edited version is the map handed out last", step)
			}
			// the version before this one is read until the next call
			if !maps.Equal(last, lastCopy) {
				t.Fatalf("step %d: the version handed out last changed", step)
			}
		}
		last, lastCopy = got, maps.Clone(got)
	}
}

// TestSpecMemoMapsStayWhileUsed is the promise the Builder relies on, on
// the memo's specs of documents changed at random: a map of a spec that
// comes again in the next spec holds what it held (the Builder takes it for
// the same content), and the spec before the last one is not changed by the
// making of the last one (a caller may still read it).
func TestSpecMemoMapsStayWhileUsed(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newMemoWorld(t, seed, 24, true)
			var m specMemo
			var prev, prevCopy lio.Spec
			steps := 300
			if testing.Short() {
				steps = 100
			}
			reused := 0
			for step := range steps {
				w.prev, w.doc = w.doc, w.doc.Fork()
				for range 1 + w.rng.IntN(3) {
					w.mutate()
				}
				got, _, _ := m.spec(w.doc, gw1, nil, w.opts(true), w.gen, nil)
				if prev.Disks != nil {
					if d := specDiff(prev, prevCopy); d != "" {
						t.Fatalf("step %d (%s): the spec before changed while the next one was made: %s", step, w.step, d)
					}
					reused += sameContent(t, step, w.step, got, prevCopy, prev)
				}
				prev, prevCopy = got, deepSpec(got)
			}
			if reused == 0 {
				t.Fatal("no map came again: this test proves nothing")
			}
		})
	}
}

// sameContent fails t when a map of got is one of last's (the spec before,
// lastCopy its content then) with other content; it returns how many were.
func sameContent(t *testing.T, step int, what string, got, lastCopy, last lio.Spec) int {
	t.Helper()
	n := 0
	if mapID(got.Disks) == mapID(last.Disks) {
		n++
		if !reflect.DeepEqual(got.Disks, lastCopy.Disks) {
			t.Fatalf("step %d (%s): the disks map came again with other disks", step, what)
		}
	}
	for iqn, ts := range got.Targets {
		lt, ok := last.Targets[iqn]
		if !ok {
			continue
		}
		if mapID(ts.Disks) == mapID(lt.Disks) {
			n++
			if !maps.Equal(ts.Disks, lastCopy.Targets[iqn].Disks) {
				t.Fatalf("step %d (%s): target %s's LUN map came again with other LUNs", step, what, iqn)
			}
		}
		if mapID(ts.Clients) == mapID(lt.Clients) {
			n++
			if !reflect.DeepEqual(ts.Clients, lastCopy.Targets[iqn].Clients) {
				t.Fatalf("step %d (%s): target %s's client map came again with other clients", step, what, iqn)
			}
		}
	}
	return n
}

// deepSpec is a copy of s that shares no map with it.
func deepSpec(s lio.Spec) lio.Spec {
	c := s
	c.Disks = make(map[string]lio.DiskSpec, len(s.Disks))
	for id, d := range s.Disks {
		d.Controls = maps.Clone(d.Controls)
		c.Disks[id] = d
	}
	c.Targets = make(map[string]lio.TargetSpec, len(s.Targets))
	for iqn, ts := range s.Targets {
		ts.Disks = maps.Clone(ts.Disks)
		ts.Portals = maps.Clone(ts.Portals)
		if ts.Clients != nil {
			clients := make(map[string]lio.ClientSpec, len(ts.Clients))
			for ini, cs := range ts.Clients {
				cs.LUNs = maps.Clone(cs.LUNs)
				clients[ini] = cs
			}
			ts.Clients = clients
		}
		c.Targets[iqn] = ts
	}
	return c
}

// TestConcurrentChecksKeepSpecs checks documents from two goroutines at
// once through one Reconciler, whose spec memo then moves between them at
// every build: each desired state must still be a build from scratch's,
// which holds only while no spec is patched under a Builder reading it
// (Reconciler.specMu). Run it with -race to see every such read.
func TestConcurrentChecksKeepSpecs(t *testing.T) {
	ctx := context.Background()
	w := newMemoWorld(t, 5, 24, true)
	var docs []*config.Doc
	for range 40 {
		w.doc = w.doc.Fork()
		for range 1 + w.rng.IntN(3) {
			w.mutate()
		}
		docs = append(docs, w.doc)
	}
	fs, err := lio.NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w.rec = New(Options{FS: fs, Identity: host.Identity{Name: gw1, Addrs: []netip.Addr{addr1}}, Size: w.sizeOf,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	wants := make([]lio.State, len(docs))
	for i, doc := range docs {
		opts := FromConfigOptions{LocalAddrs: []netip.Addr{addr1}, Size: w.sizeOf, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			DevicePath: func(pool, image string) (string, error) {
				return w.rec.devicePath(ctx, Mode{DryRun: true}, blockExporters(doc), pool, image)
			}}
		spec, _ := SpecFromConfig(doc, gw1, nil, opts)
		wants[i], _ = lio.Build(spec)
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for round := range 6 {
				for k := range docs {
					i := k
					if (g+round)%2 == 1 {
						i = len(docs) - 1 - k
					}
					// a new epoch each round: not the state built last round
					doc := docs[i].Fork()
					doc.Epoch = int64(100*round + 10*g)
					got, _ := w.rec.desired(ctx, doc, Mode{DryRun: true}, doc.Gateways[gw1] != nil, false, nil)
					if !reflect.DeepEqual(got, wants[i]) {
						t.Errorf("goroutine %d, round %d, document %d: the desired state differs from a build from scratch", g, round, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
