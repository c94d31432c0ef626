package gateway

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
)

// incrWorld is a configuration changed at random, step by step, and
// reconciled by an incremental Reconciler (memoized builds, plans of what
// changed since the last converged state) and by one that re-reads and
// re-plans everything on every run, each on its own emulated configfs.
type incrWorld struct {
	t        *testing.T
	rng      *rand.Rand
	doc      *config.Doc
	images   *images
	inc      *Reconciler
	incFS    lio.FS
	full     *Reconciler
	fullFS   lio.FS
	next     int // next disk or client number
	targets  []string
	stepName string
}

const (
	incrT1 = "iqn.2003-01.com.example.incr:t1"
	incrT2 = "iqn.2003-01.com.example.incr:t2"
)

func newIncrWorld(t *testing.T, seed uint64) *incrWorld {
	w := &incrWorld{t: t, rng: rand.New(rand.NewPCG(seed, 1)),
		images: &images{sizes: map[string]int64{}, reads: map[string]int{}}}
	now := time.Unix(1700000000, 0)
	w.doc = config.NewDoc(now)
	w.doc.Gateways[gw1] = &config.Gateway{}
	w.doc.Gateways[gw2] = &config.Gateway{}
	w.addTarget(incrT1)
	mk := func() (*Reconciler, lio.FS) {
		fs, err := lio.NewEmulatedFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return New(Options{FS: fs, Identity: host.Identity{Name: gw1, Addrs: []netip.Addr{addr1}}, Size: w.images.size, VerifyReuse: true}), fs
	}
	w.inc, w.incFS = mk()
	w.full, w.fullFS = mk()
	return w
}

func (w *incrWorld) addTarget(iqn string) {
	now := time.Unix(1700000000, 0)
	if _, err := w.doc.AddTarget(iqn, now); err != nil {
		w.t.Fatal(err)
	}
	// a local TPG (127.0.0.1 on gw1) and a remote one (gw2)
	t := w.doc.Targets[iqn]
	t.IPList = []string{"127.0.0.1", "127.0.0.2"}
	t.Portals = map[string]*config.Portal{
		gw1: {PortalIPAddresses: []string{"127.0.0.1"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2},
		gw2: {PortalIPAddresses: []string{"127.0.0.2"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2},
	}
	w.targets = append(w.targets, iqn)
}

func (w *incrWorld) pick(l []string) string { return l[w.rng.IntN(len(l))] }

func (w *incrWorld) target() (string, *config.Target) {
	iqn := w.pick(slices.Sorted(maps.Keys(w.doc.Targets)))
	return iqn, w.doc.Targets[iqn]
}

// exportedBy is the target a disk is a LUN of ("" for none): a disk is on
// one target at most, as two would give its ALUA groups clashing ids.
func (w *incrWorld) exportedBy(id string) string {
	for iqn, t := range w.doc.Targets {
		if _, ok := t.Disks[id]; ok {
			return iqn
		}
	}
	return ""
}

func freeID(used map[int]bool, lo, hi int, rng *rand.Rand) (int, bool) {
	for range 64 {
		if n := lo + rng.IntN(hi-lo+1); !used[n] {
			return n, true
		}
	}
	return 0, false
}

func auth(rng *rand.Rand, n int) config.Auth {
	switch rng.IntN(3) {
	case 0:
		return config.Auth{}
	case 1:
		return config.Auth{Username: fmt.Sprintf("user%d", n), Password: fmt.Sprintf("Password-%04d", rng.IntN(10000))}
	}
	return config.Auth{Username: fmt.Sprintf("user%d", n), Password: fmt.Sprintf("Password-%04d", rng.IntN(10000)),
		MutualUsername: fmt.Sprintf("mutual%d", n), MutualPassword: fmt.Sprintf("Mutual-pw-%04d", rng.IntN(10000))}
}

// mutate makes one random change to the document; some steps touch the
// Reconciler's inputs besides it (an image resize, a resync).
func (w *incrWorld) mutate() {
	d, rng := w.doc, w.rng
	disks := slices.Sorted(maps.Keys(d.Disks))
	owners := []string{gw1, gw2}
	// settings, owners and sizes change mostly on exported disks, where
	// they reach LIO
	var exported []string
	for _, id := range disks {
		if w.exportedBy(id) != "" {
			exported = append(exported, id)
		}
	}
	some := func() string {
		if len(exported) > 0 && rng.IntN(5) > 0 {
			return w.pick(exported)
		}
		return w.pick(disks)
	}
	switch op := rng.IntN(20); {
	case op < 3 || len(disks) < 3: // a new disk, exported at once half the time
		w.next++
		img := fmt.Sprintf("img%03d", w.next)
		id := "rbd/" + img
		owner := w.pick(owners)
		disk := &config.Disk{Pool: "rbd", Image: img, Backstore: "user:rbd", Owner: &owner, AllocatingHost: &owner,
			WWN: fmt.Sprintf("wwn-%d", w.next), Controls: map[string]any{}}
		if rng.IntN(3) == 0 {
			disk.BackstoreObjectName = "bs." + img
		}
		w.images.resize(id, int64(1+rng.IntN(4))<<30)
		d.Disks[id] = disk
		w.stepName = "add disk " + id
		if rng.IntN(2) == 0 {
			iqn, t := w.target()
			used := map[int]bool{}
			for _, l := range t.Disks {
				used[l.LunID] = true
			}
			if n, ok := freeID(used, 0, 255, rng); ok {
				t.Disks[id] = config.LunRef{LunID: n}
				w.stepName += " on " + iqn
			}
		}
	case op < 5: // remove a disk, from the target and clients too
		id := w.pick(disks)
		delete(d.Disks, id)
		for _, t := range d.Targets {
			delete(t.Disks, id)
			for _, c := range t.Clients {
				delete(c.Luns, id)
			}
		}
		w.stepName = "remove disk " + id
	case op < 7: // export a disk, or stop exporting it
		id := w.pick(disks)
		if iqn := w.exportedBy(id); iqn != "" {
			t := d.Targets[iqn]
			delete(t.Disks, id)
			for _, c := range t.Clients {
				delete(c.Luns, id)
			}
			w.stepName = "unexport " + id
			return
		}
		_, t := w.target()
		used := map[int]bool{}
		for _, l := range t.Disks {
			used[l.LunID] = true
		}
		if n, ok := freeID(used, 0, 255, rng); ok {
			t.Disks[id] = config.LunRef{LunID: n}
		}
		w.stepName = "export " + id
	case op == 7: // move a LUN to another id
		_, t := w.target()
		if len(t.Disks) == 0 {
			return
		}
		id := w.pick(slices.Sorted(maps.Keys(t.Disks)))
		used := map[int]bool{}
		for _, l := range t.Disks {
			used[l.LunID] = true
		}
		if n, ok := freeID(used, 0, 255, rng); ok {
			t.Disks[id] = config.LunRef{LunID: n}
		}
		w.stepName = "move LUN " + id
	case op < 10: // a new client with some of the target's disks
		iqn, t := w.target()
		w.next++
		ini := fmt.Sprintf("iqn.1994-05.com.example:c%03d", w.next)
		c := config.NewClient()
		c.Auth = auth(rng, w.next)
		used := map[int]bool{}
		for _, id := range slices.Sorted(maps.Keys(t.Disks)) {
			if rng.IntN(2) == 0 {
				n, _ := freeID(used, 0, 20, rng)
				used[n] = true
				c.Luns[id] = config.LunRef{LunID: n}
			}
		}
		t.Clients[ini] = c
		w.stepName = "add client " + ini + " on " + iqn
	case op == 10: // remove a client
		_, t := w.target()
		if len(t.Clients) == 0 {
			return
		}
		ini := w.pick(slices.Sorted(maps.Keys(t.Clients)))
		delete(t.Clients, ini)
		w.stepName = "remove client " + ini
	case op < 13: // a client gains or loses a LUN
		_, t := w.target()
		if len(t.Clients) == 0 || len(t.Disks) == 0 {
			return
		}
		ini := w.pick(slices.Sorted(maps.Keys(t.Clients)))
		c := t.Clients[ini]
		id := w.pick(slices.Sorted(maps.Keys(t.Disks)))
		used := map[int]bool{}
		for _, l := range c.Luns {
			used[l.LunID] = true
		}
		n, _ := freeID(used, 0, 20, rng)
		if _, ok := c.Luns[id]; ok {
			if rng.IntN(2) == 0 {
				delete(c.Luns, id)
				w.stepName = "clientlun remove " + ini + " " + id
				return
			}
			// the same disk seen by the initiator at another LUN id
			c.Luns[id] = config.LunRef{LunID: n}
			w.stepName = "clientlun remap " + ini + " " + id
			return
		}
		c.Luns[id] = config.LunRef{LunID: n}
		w.stepName = "clientlun add " + ini + " " + id
	case op == 13: // CHAP of a client, the target or discovery
		iqn, t := w.target()
		switch rng.IntN(3) {
		case 0:
			if len(t.Clients) > 0 {
				ini := w.pick(slices.Sorted(maps.Keys(t.Clients)))
				t.Clients[ini].Auth = auth(rng, rng.IntN(100))
				w.stepName = "client CHAP " + ini
			}
		case 1:
			t.Auth = auth(rng, rng.IntN(100))
			w.stepName = "target CHAP " + iqn
		default:
			d.DiscoveryAuth = auth(rng, rng.IntN(100))
			w.stepName = "discovery CHAP"
		}
	case op == 14: // target settings and ACL mode
		iqn, t := w.target()
		if rng.IntN(2) == 0 {
			t.ACLEnabled = !t.ACLEnabled
		} else if rng.IntN(3) == 0 {
			t.Controls = map[string]any{}
		} else if rng.IntN(2) == 0 {
			// the ACLs' command window alone
			c := maps.Clone(t.Controls)
			if c == nil {
				c = map[string]any{}
			}
			c["cmdsn_depth"] = 16 << rng.IntN(3)
			t.Controls = c
		} else {
			t.Controls = map[string]any{"dataout_timeout": 10 + rng.IntN(10), "cmdsn_depth": 64 << rng.IntN(2)}
		}
		w.stepName = "target settings " + iqn
	case op == 15: // disk settings: qfull_timeout is an attribute, osd_op_timeout re-creates the object
		id := some()
		switch rng.IntN(3) {
		case 0:
			d.Disks[id].Controls = map[string]any{"qfull_timeout": 5 + rng.IntN(10), "osd_op_timeout": 30 + rng.IntN(3)}
		case 1:
			d.Disks[id].Controls = map[string]any{"osd_op_timeout": 30 + rng.IntN(3)}
		default:
			d.Disks[id].Controls = map[string]any{}
		}
		w.stepName = "disk settings " + id
	case op == 16: // ALUA owner
		id := some()
		owner := w.pick(owners)
		d.Disks[id].Owner = &owner
		w.stepName = "owner " + id + " " + owner
	case op == 17: // resize an image, as the API does (the size cache forgets it)
		id := some()
		w.images.resize(id, int64(1+rng.IntN(4))<<30)
		w.inc.ForgetSizes(id)
		w.full.ForgetSizes(id)
		w.stepName = "resize " + id
	case op == 18: // a second target comes or goes, or gw2 leaves or joins t1
		switch {
		case d.Targets[incrT2] == nil && rng.IntN(2) == 0:
			w.addTarget(incrT2)
			w.stepName = "add target 2"
		case d.Targets[incrT2] != nil && rng.IntN(2) == 0:
			delete(d.Targets, incrT2)
			w.stepName = "delete target 2"
		case len(d.Targets[incrT1].IPList) == 2 && rng.IntN(3) == 0:
			// the TPGs swap tags: every LUN's ALUA group moves
			t := d.Targets[incrT1]
			t.IPList = []string{t.IPList[1], t.IPList[0]}
			t.Portals[gw1].GatewayIPList, t.Portals[gw2].GatewayIPList = t.IPList, t.IPList
			w.stepName = "t1 ip_list order"
		case len(d.Targets[incrT1].IPList) == 2:
			t := d.Targets[incrT1]
			t.IPList = []string{"127.0.0.1"}
			delete(t.Portals, gw2)
			w.stepName = "gw2 leaves t1"
		default:
			t := d.Targets[incrT1]
			t.IPList = []string{"127.0.0.1", "127.0.0.2"}
			t.Portals[gw2] = &config.Portal{PortalIPAddresses: []string{"127.0.0.2"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2}
			w.stepName = "gw2 joins t1"
		}
	default: // a SIGHUP or drift check: everything is read again
		w.inc.Resync()
		w.stepName = "resync"
	}
}

// reference is what a full rebuild plans from a fresh observe: the
// document built without memo, with the names inc manages besides it, and
// planned against the whole tree read straight from configfs.
func (w *incrWorld) reference(doc *config.Doc) (lio.State, lio.Plan) {
	var tgts, sos []string
	for iqn := range w.inc.managedTargets {
		if doc.Targets[iqn] == nil {
			tgts = append(tgts, iqn)
		}
	}
	sos = slices.Collect(maps.Keys(w.inc.managedSOs))
	slices.Sort(tgts)
	slices.Sort(sos)
	spec, err := SpecFromConfig(doc, gw1, nil, FromConfigOptions{LocalAddrs: []netip.Addr{addr1}, Size: w.images.size,
		ManagedTargets: tgts, ManagedStorageObjects: sos})
	if err != nil {
		w.t.Fatalf("%s: %v", w.stepName, err)
	}
	desired, err := lio.Build(spec)
	if err != nil {
		w.t.Fatalf("%s: %v", w.stepName, err)
	}
	observed, err := lio.Observe(w.incFS)
	if err != nil {
		w.t.Fatal(err)
	}
	return desired, lio.NewPlan(observed, desired)
}

func observeTree(t *testing.T, fs lio.FS) lio.State {
	t.Helper()
	st, err := lio.Observe(fs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestIncrementalEqualsFullRebuild changes a configuration at random, step
// by step, and after each step asserts that the incremental Reconciler
// plans exactly what a full rebuild and a full plan from a fresh observe
// plan, and leaves the same LIO tree as a Reconciler that re-reads
// everything on every run.
func TestIncrementalEqualsFullRebuild(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newIncrWorld(t, seed)
			steps, planned, incremental, kept := 150, 0, 0, 0
			if testing.Short() {
				steps = 40
			}
			for step := range steps {
				w.stepName = "none"
				w.mutate()
				doc := w.doc.Clone()
				doc.Epoch = int64(step)
				wantState, want := w.reference(doc)
				viaThen := false
				switch w.rng.IntN(3) {
				case 0:
					// the API's commit checks the document first; the
					// reconcile then finds its build memoized
					if err := w.inc.Check(ctx, doc); err != nil {
						t.Fatalf("step %d (%s): check: %v", step, w.stepName, err)
					}
				case 1:
					// as the API's commit: the check, then the commit's
					// epoch bump, then the reconcile that reuses the
					// check's digest and build
					reconcile, err := w.inc.CheckThen(ctx, doc)
					if err != nil {
						t.Fatalf("step %d (%s): check: %v", step, w.stepName, err)
					}
					doc.Epoch++
					if err := reconcile(ctx, doc); err != nil {
						t.Fatalf("step %d (%s): %v", step, w.stepName, err)
					}
					viaThen = true
				}
				if !viaThen {
					planned++
					rep, err := w.inc.Run(ctx, doc, Mode{})
					if err != nil {
						t.Fatalf("step %d (%s): %v", step, w.stepName, err)
					}
					if rep.Incremental {
						incremental++
					}
					if !reflect.DeepEqual(rep.Plan.Ops, want.Ops) {
						t.Fatalf("step %d (%s, incremental %v): the plan differs from a full one\ngot:\n%s\nwant:\n%s",
							step, w.stepName, rep.Incremental, rep.Plan, want)
					}
				}
				// what inc built from its memos is what a build from
				// scratch makes
				if w.inc.converged == nil {
					t.Fatalf("step %d (%s): not converged", step, w.stepName)
				}
				if !reflect.DeepEqual(*w.inc.converged, wantState) {
					t.Fatalf("step %d (%s): the desired state differs from a build from scratch\ngot:  %+v\nwant: %+v", step, w.stepName, *w.inc.converged, wantState)
				}
				// what inc keeps of LIO between runs is what LIO holds
				if w.inc.observed != nil {
					if live := observeTree(t, w.incFS); !reflect.DeepEqual(*w.inc.observed, live) {
						t.Fatalf("step %d (%s): the kept observed state differs from LIO\nkept: %+v\nLIO: %+v", step, w.stepName, *w.inc.observed, live)
					}
					kept++
				}
				w.full.Resync()
				if _, err := w.full.Run(ctx, doc, Mode{}); err != nil {
					t.Fatalf("step %d (%s): full: %v", step, w.stepName, err)
				}
				got, ref := observeTree(t, w.incFS), observeTree(t, w.fullFS)
				if !reflect.DeepEqual(got, ref) {
					t.Fatalf("step %d (%s): the LIO trees differ\nincremental: %+v\nfull: %+v", step, w.stepName, got, ref)
				}
				if desired, p := w.reference(doc); !p.Empty() {
					t.Fatalf("step %d (%s): not converged on %d objects, still to do:\n%s", step, w.stepName, len(desired.StorageObjects), p)
				}
			}
			// most steps must have taken the incremental path, or this
			// test proves nothing about it
			if incremental < planned/2 || planned == steps {
				t.Fatalf("only %d of %d steps were planned incrementally (%d by CheckThen)", incremental, planned, steps-planned)
			}
			if kept < steps/2 {
				t.Fatalf("only %d of %d steps kept the observed state", kept, steps)
			}
			t.Logf("%d of %d steps planned incrementally, %d by CheckThen, %d kept the observed state", incremental, planned, steps-planned, kept)
		})
	}
}

// BenchmarkIncrementalChange is the gateway's part of PUT /api/targetlun
// on a target of n LUNs (n/4 clients of 4): the commit's check of the
// document after the change, then the reconcile of the result that reuses
// the check's work (CheckThen), as api's commit does.
// Run: go test -tags pacific -run '^$' -bench IncrementalChange -benchtime 20x ./gateway/
func BenchmarkIncrementalChange(b *testing.B) {
	for _, n := range []int{256, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			now := time.Unix(1700000000, 0)
			d := config.NewDoc(now)
			d.Gateways[gw1] = &config.Gateway{}
			if _, err := d.AddTarget(incrT1, now); err != nil {
				b.Fatal(err)
			}
			t := d.Targets[incrT1]
			t.IPList = []string{"127.0.0.1"}
			t.Portals = map[string]*config.Portal{gw1: {PortalIPAddresses: []string{"127.0.0.1"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 1}}
			owner := gw1
			const spare = 100
			for i := range n + spare {
				id := fmt.Sprintf("rbd/img%04d", i)
				d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%04d", i), Backstore: "user:rbd", Owner: &owner,
					WWN: fmt.Sprint("wwn-", i), Controls: map[string]any{}}
				if i < n {
					t.Disks[id] = config.LunRef{LunID: i + 1}
				}
			}
			for c := range n / 4 {
				cl := config.NewClient()
				for j := range 4 {
					cl.Luns[fmt.Sprintf("rbd/img%04d", 4*c+j)] = config.LunRef{LunID: j}
				}
				t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%04d", c)] = cl
			}
			fs, err := lio.NewEmulatedFS(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			r := New(Options{FS: fs, Identity: host.Identity{Name: gw1, Addrs: []netip.Addr{addr1}},
				Size: func(string, string) (int64, error) { return 1 << 30, nil }})
			if err := r.Reconcile(ctx, d.Clone()); err != nil {
				b.Fatal(err)
			}
			next := n
			for b.Loop() {
				if next >= n+spare {
					b.Fatal("out of spare disks")
				}
				// the clone is the config store's part, not the gateway's
				b.StopTimer()
				doc := d.Clone()
				b.StartTimer()
				doc.Targets[incrT1].Disks[fmt.Sprintf("rbd/img%04d", next)] = config.LunRef{LunID: next + 1}
				next++
				reconcile, err := r.CheckThen(ctx, doc)
				if err != nil {
					b.Fatal(err)
				}
				doc.Epoch++
				if err := reconcile(ctx, doc); err != nil {
					b.Fatal(err)
				}
				d = doc
			}
		})
	}
}

// TestContentDigest: the epoch and the created/updated stamps do not
// count, anything else that reaches LIO does, and map order never does.
func TestContentDigest(t *testing.T) {
	w := newIncrWorld(t, 7)
	for range 30 {
		w.mutate()
	}
	base := contentDigest(w.doc)
	same := w.doc.Clone()
	same.Epoch += 5
	same.Updated = "2030-01-01 00:00:00"
	for _, d := range same.Disks {
		d.Created, d.Updated = "2030-01-01 00:00:00", "2030-01-02 00:00:00"
	}
	for _, tg := range same.Targets {
		u := "2030-01-01 00:00:00"
		tg.Created, tg.Updated = u, &u
	}
	if contentDigest(same) != base {
		t.Fatal("the epoch or a stamp changed the digest")
	}
	changes := map[string]func(*config.Doc){
		"disk owner": func(d *config.Doc) {
			for _, disk := range d.Disks {
				o := "elsewhere"
				disk.Owner = &o
				return
			}
		},
		"absent vs empty ip_list": func(d *config.Doc) { d.Targets[incrT1].IPList = nil },
		"lun id": func(d *config.Doc) {
			for id, l := range d.Targets[incrT1].Disks {
				d.Targets[incrT1].Disks[id] = config.LunRef{LunID: l.LunID + 300}
				return
			}
		},
		"client password": func(d *config.Doc) { d.Targets[incrT1].Clients["iqn.1994-05.com.example:x"] = config.NewClient() },
		"disk control": func(d *config.Doc) {
			d.Disks[slices.Sorted(maps.Keys(d.Disks))[0]].Controls = map[string]any{"qfull_timeout": 7}
		},
		"discovery mutual":  func(d *config.Doc) { d.DiscoveryAuth.MutualUsername = "someone" },
		"extra key":         func(d *config.Doc) { d.Extra = map[string]any{"x": "y"} },
		"gateway removed":   func(d *config.Doc) { delete(d.Gateways, gw2) },
		"target acl toggle": func(d *config.Doc) { d.Targets[incrT1].ACLEnabled = !d.Targets[incrT1].ACLEnabled },
	}
	for name, change := range changes {
		c := w.doc.Clone()
		change(c)
		if contentDigest(c) == base {
			t.Errorf("%s: the digest did not change", name)
		}
	}
}
