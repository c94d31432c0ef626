package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
)

// memoWorld is a copy-on-write document changed at random, fork after
// fork, with what the spec reads besides it (sizes, device paths,
// encrypted passwords, local addresses).
type memoWorld struct {
	t    *testing.T
	rng  *rand.Rand
	doc  *config.Doc
	prev *config.Doc // the document before doc
	next int
	// sizes, sizes failing, images gone, device paths failing
	size     map[string]int64
	sizeErr  map[string]bool
	notFound map[string]bool
	pathErr  map[string]bool
	addrs    []netip.Addr
	gen      uint64
	step     string
	// the disk and client changed last, which the document may own
	lastDisk          string
	lastIQN, lastInit string
	// asked counts the Size questions of the memo's builds
	asked int
	// rec, when set, is the Reconciler whose size cache must forget what
	// changes
	rec *Reconciler
	// plain: no password is stored encrypted
	plain bool
}

const (
	memoT1 = "iqn.2003-01.com.example.memo:t1"
	memoT2 = "iqn.2003-01.com.example.memo:t2"
)

func newMemoWorld(t *testing.T, seed uint64, disks int, plain bool) *memoWorld {
	w := &memoWorld{t: t, rng: rand.New(rand.NewPCG(seed, 7)), size: map[string]int64{}, sizeErr: map[string]bool{},
		notFound: map[string]bool{}, pathErr: map[string]bool{}, addrs: []netip.Addr{addr1}, plain: plain}
	d := config.NewDoc(time.Unix(1700000000, 0))
	d.Gateways[gw1] = &config.Gateway{}
	d.Gateways[gw2] = &config.Gateway{}
	w.doc = d
	w.addTarget(memoT1)
	for range disks {
		w.addDisk(memoT1)
	}
	for range disks / 4 {
		w.addClient(memoT1)
	}
	w.doc = w.doc.Fork()
	return w
}

// addTarget adds target iqn through the document's methods, which log
// the change (a fork's maps are not written directly: config/cow.go).
func (w *memoWorld) addTarget(iqn string) {
	t, err := w.doc.AddTarget(iqn, time.Unix(1700000000, 0))
	if err != nil {
		w.t.Fatal(err)
	}
	t.ACLEnabled, t.Auth, t.IPList = false, config.Auth{}, []string{"127.0.0.1", "127.0.0.2"}
	t.Portals[gw1] = &config.Portal{PortalIPAddresses: []string{"127.0.0.1"}, GatewayIPList: t.IPList}
	t.Portals[gw2] = &config.Portal{PortalIPAddresses: []string{"127.0.0.2"}, GatewayIPList: t.IPList}
}

func (w *memoWorld) addDisk(iqn string) string {
	w.next++
	img := fmt.Sprintf("img%04d", w.next)
	id := "rbd/" + img
	owner := []string{gw1, gw2}[w.rng.IntN(2)]
	k, err := w.doc.AddDisk(config.NewDisk{Pool: "rbd", Image: img, Backstore: lio.BackstoreUserRBD, WWN: fmt.Sprint("wwn-", w.next)},
		time.Unix(1700000000, 0))
	if err != nil {
		w.t.Fatal(err)
	}
	k.Owner = &owner
	w.size[id] = int64(1+w.rng.IntN(4)) << 30
	if iqn != "" {
		if t := w.doc.MutTarget(iqn); t != nil {
			t.Disks[id] = config.LunRef{LunID: w.freeLUN(t.Disks)}
		}
	}
	return id
}

func (w *memoWorld) freeLUN(refs map[string]config.LunRef) int {
	used := map[int]bool{}
	for _, l := range refs {
		used[l.LunID] = true
	}
	for {
		if n := w.rng.IntN(4 * (len(refs) + 4)); !used[n] {
			return n
		}
	}
}

func (w *memoWorld) addClient(iqn string) {
	t := w.doc.MutTarget(iqn)
	if t == nil {
		return
	}
	w.next++
	c := config.NewClient()
	c.Auth = w.auth()
	for id := range t.Disks {
		if w.rng.IntN(8) == 0 {
			c.Luns[id] = config.LunRef{LunID: w.freeLUN(c.Luns)}
		}
	}
	t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%04d", w.next)] = c
}

// auth is a CHAP block, its passwords stored in clear, encrypted, or
// encrypted so that they do not decrypt.
func (w *memoWorld) auth() config.Auth {
	pw := func() (string, bool) {
		if w.plain {
			// a Reconciler's key file is the default one, which does not exist: an
			// encrypted password fails its whole build, never memoized
			return fmt.Sprintf("Password-%04d", w.rng.IntN(10000)), false
		}
		switch w.rng.IntN(4) {
		case 0:
			return fmt.Sprintf("Password-%04d", w.rng.IntN(10000)), false
		case 1:
			return "bad:" + fmt.Sprint(w.rng.IntN(10)), true
		}
		return fmt.Sprintf("enc:Secret-%04d", w.rng.IntN(10000)), true
	}
	switch w.rng.IntN(4) {
	case 0:
		return config.Auth{}
	case 1:
		p, e := pw()
		return config.Auth{Username: "user", Password: p, PasswordEncryptionEnabled: e}
	}
	p, e := pw()
	mp, me := pw()
	return config.Auth{Username: "user", Password: p, PasswordEncryptionEnabled: e, MutualUsername: "mutual", MutualPassword: mp,
		MutualPasswordEncryptionEnabled: me}
}

func (w *memoWorld) decrypt(stored string) (string, error) {
	if plain, ok := strings.CutPrefix(stored, "enc:"); ok {
		return plain, nil
	}
	return "", errors.New("does not decrypt")
}

func (w *memoWorld) sizeOf(pool, image string) (int64, error) {
	id := pool + "/" + image
	switch {
	case w.notFound[id]:
		return 0, fmt.Errorf("%w: %s", ErrImageNotFound, id)
	case w.sizeErr[id]:
		return 0, errors.New("size read timed out")
	}
	return w.size[id], nil
}

func (w *memoWorld) devicePath(pool, image string) (string, error) {
	if w.pathErr[pool+"/"+image] {
		return "", errors.New("map failed")
	}
	return "/dev/rbd/" + pool + "/" + image, nil
}

func (w *memoWorld) opts(count bool) FromConfigOptions {
	size := w.sizeOf
	if count {
		size = func(pool, image string) (int64, error) {
			w.asked++
			return w.sizeOf(pool, image)
		}
	}
	return FromConfigOptions{Size: size, DevicePath: w.devicePath, LocalAddrs: w.addrs, Decrypt: w.decrypt,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func (w *memoWorld) pick(l []string) string { return l[w.rng.IntN(len(l))] }

func (w *memoWorld) target() string {
	return w.pick(slices.Sorted(maps.Keys(w.doc.Targets)))
}

func (w *memoWorld) disk() string {
	return w.pick(slices.Sorted(maps.Keys(w.doc.Disks)))
}

func (w *memoWorld) client(iqn string) string {
	t := w.doc.Targets[iqn]
	if t == nil || len(t.Clients) == 0 {
		return ""
	}
	return w.pick(slices.Sorted(maps.Keys(t.Clients)))
}

// mutate makes one random change to doc, through the copy-on-write
// accessors, or to what the spec reads besides it.
func (w *memoWorld) mutate() {
	d, rng := w.doc, w.rng
	switch op := rng.IntN(24); op {
	case 0, 1:
		iqn := ""
		if rng.IntN(3) > 0 {
			iqn = w.target()
		}
		w.step = "add disk " + w.addDisk(iqn)
	case 2:
		id := w.disk()
		for iqn, t := range d.Targets {
			if _, ok := t.Disks[id]; ok {
				delete(d.MutTarget(iqn).Disks, id)
			}
			for ini, c := range t.Clients {
				if c == nil {
					continue
				}
				if _, ok := c.Luns[id]; ok {
					delete(d.MutClient(iqn, ini).Luns, id)
				}
			}
		}
		if err := d.RemoveDisk(id); err != nil {
			w.t.Fatal(err)
		}
		w.step = "remove disk " + id
	case 3, 4: // targetlun add or remove
		iqn, id := w.target(), w.disk()
		t := d.MutTarget(iqn)
		if _, ok := t.Disks[id]; ok {
			delete(t.Disks, id)
			w.step = "unexport " + id
		} else {
			t.Disks[id] = config.LunRef{LunID: w.freeLUN(t.Disks)}
			w.step = "export " + id
		}
	case 5:
		iqn := w.target()
		t := d.MutTarget(iqn)
		if len(t.Disks) > 0 {
			id := w.pick(slices.Sorted(maps.Keys(t.Disks)))
			t.Disks[id] = config.LunRef{LunID: w.freeLUN(t.Disks)}
			w.step = "move LUN " + id
		}
	case 6:
		iqn := w.target()
		w.addClient(iqn)
		w.step = "add client on " + iqn
	case 7:
		iqn := w.target()
		if ini := w.client(iqn); ini != "" {
			if rng.IntN(4) == 0 {
				d.MutTarget(iqn).Clients[ini] = nil
				w.step = "nil client " + ini
			} else {
				delete(d.MutTarget(iqn).Clients, ini)
				w.step = "remove client " + ini
			}
		}
	case 8, 9, 10: // clientlun
		iqn := w.target()
		ini := w.client(iqn)
		if ini == "" || d.Targets[iqn].Clients[ini] == nil {
			return
		}
		c := d.MutClient(iqn, ini)
		w.lastIQN, w.lastInit = iqn, ini
		id := w.disk()
		if _, ok := c.Luns[id]; ok && rng.IntN(2) == 0 {
			delete(c.Luns, id)
			w.step = "clientlun remove " + id
		} else {
			c.Luns[id] = config.LunRef{LunID: w.freeLUN(c.Luns)}
			w.step = "clientlun add " + id
		}
	case 11: // CHAP
		iqn := w.target()
		switch rng.IntN(3) {
		case 0:
			if ini := w.client(iqn); ini != "" && d.Targets[iqn].Clients[ini] != nil {
				d.MutClient(iqn, ini).Auth = w.auth()
				w.step = "client CHAP " + ini
			}
		case 1:
			d.MutTarget(iqn).Auth = w.auth()
			w.step = "target CHAP " + iqn
		default:
			d.DiscoveryAuth = w.auth()
			w.step = "discovery CHAP"
		}
	case 12:
		iqn := w.target()
		t := d.MutTarget(iqn)
		if rng.IntN(2) == 0 {
			t.ACLEnabled = !t.ACLEnabled
		} else {
			t.Controls = map[string]any{"cmdsn_depth": 16 << rng.IntN(3)}
		}
		w.step = "target settings " + iqn
	case 13:
		id := w.disk()
		k := d.MutDisk(id)
		w.lastDisk = id
		switch rng.IntN(3) {
		case 0:
			k.Controls = map[string]any{"qfull_timeout": 5 + rng.IntN(10)}
		case 1:
			owner := w.pick([]string{gw1, gw2})
			k.Owner = &owner
		default:
			k.WWN = fmt.Sprint("wwn-x", rng.IntN(100))
		}
		w.step = "disk settings " + id
	case 14: // a resize: Size answers differently, so the caller bumps gen
		id := w.disk()
		w.size[id] = int64(1+rng.IntN(4)) << 30
		w.gen++
		if w.rec != nil {
			w.rec.ForgetSizes(id)
		}
		w.step = "resize " + id
	case 15: // a size read fails, or an image goes; recovering needs no bump
		id := w.disk()
		switch rng.IntN(3) {
		case 0:
			w.sizeErr[id] = !w.sizeErr[id]
		case 1:
			w.notFound[id] = !w.notFound[id]
		default:
			w.pathErr[id] = !w.pathErr[id]
		}
		if w.sizeErr[id] || w.notFound[id] {
			w.gen++
			if w.rec != nil {
				w.rec.ForgetSizes(id)
			}
		}
		w.step = "image trouble " + id
	case 16: // backstores
		id := w.disk()
		bs := []string{lio.BackstoreUserRBD, lio.BackstoreUserRBD, lio.BackstoreBlock, lio.BackstoreFileIO, "", "bogus"}[rng.IntN(6)]
		d.MutDisk(id).Backstore = bs
		w.step = "backstore " + id + " " + bs
	case 17: // back to one backstore, so that the disks are built again
		for id, k := range d.Disks {
			if k.Backstore != lio.BackstoreUserRBD {
				d.MutDisk(id).Backstore = lio.BackstoreUserRBD
			}
		}
		w.step = "all user:rbd"
	case 18: // portals and ip_list
		iqn := w.target()
		t := d.MutTarget(iqn)
		switch rng.IntN(4) {
		case 0:
			t.IPList = []string{t.IPList[len(t.IPList)-1], "127.0.0.9"}
		case 1:
			t.IPList = []string{"127.0.0.1", "127.0.0.2"}
		case 2:
			if t.Portals[gw1] != nil {
				d.MutPortal(iqn, gw1).PortalIPAddresses = []string{"127.0.0.3"}
			}
		default:
			if t.Portals[gw1] != nil {
				delete(t.Portals, gw1)
			} else {
				t.Portals[gw1] = &config.Portal{PortalIPAddresses: []string{"127.0.0.1"}}
			}
		}
		w.step = "portals " + iqn
	case 19:
		if d.Targets[memoT2] == nil {
			w.addTarget(memoT2)
			for range 3 {
				w.addDisk(memoT2)
			}
			w.addClient(memoT2)
			w.step = "add target 2"
		} else {
			if err := d.RemoveTarget(memoT2); err != nil {
				w.t.Fatal(err)
			}
			w.step = "delete target 2"
		}
	case 20: // this host's addresses
		if w.rec != nil {
			return // a Reconciler's are fixed
		}
		w.addrs = [][]netip.Addr{{addr1}, {addr1, netip.MustParseAddr("127.0.0.9")}, {netip.MustParseAddr("127.0.0.2")}, nil}[rng.IntN(4)]
		w.step = fmt.Sprint("addrs ", w.addrs)
	case 21: // gw1 leaves or joins
		// through PutGateway, which logs it: a nil gateway is no member
		if d.Gateways[gw1] == nil {
			d.PutGateway(gw1, &config.Gateway{})
		} else if rng.IntN(3) == 0 {
			d.PutGateway(gw1, nil)
		}
		w.step = "gateway membership"
	default: // a disk nobody exports
		w.step = "add unexported disk " + w.addDisk("")
	}
}

// changeOwned changes again the disk and the client changed last: in
// place, when the document owns them.
func (w *memoWorld) changeOwned() {
	if k := w.doc.MutDisk(w.lastDisk); k != nil {
		k.WWN += "x"
		if k.Controls == nil {
			k.Controls = map[string]any{}
		}
		// written in place: the document owns its copy
		k.Controls["qfull_timeout"] = 5 + w.rng.IntN(20)
	}
	if c := w.doc.MutClient(w.lastIQN, w.lastInit); c != nil {
		if _, ok := c.Luns[w.lastDisk]; ok {
			delete(c.Luns, w.lastDisk)
		} else if w.lastDisk != "" {
			c.Luns[w.lastDisk] = config.LunRef{LunID: w.freeLUN(c.Luns)}
		}
	}
}

// TestSpecMemoEqualsSpecFromConfig changes a copy-on-write document at
// random, fork after fork, and asserts that the memoized spec of each
// document (and of the one before it, and of a deep copy now and then) is
// exactly SpecFromConfig's, problems and their order included.
func TestSpecMemoEqualsSpecFromConfig(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newMemoWorld(t, seed, 24, false)
			m := specMemo{verify: true}
			steps, builds, fresh := 400, 0, 0
			if testing.Short() {
				steps = 100
			}
			check := func(step int, doc *config.Doc, what string) {
				t.Helper()
				before := w.asked
				got, held, gotErr := m.spec(doc, gw1, nil, w.opts(true), w.gen, nil)
				asked := w.asked - before
				want, wantErr := SpecFromConfig(doc, gw1, nil, w.opts(false))
				if member := doc.Gateways[gw1] != nil; got.Frozen != member {
					t.Fatalf("step %d (%s, %s): Frozen %v for a member %v", step, w.step, what, got.Frozen, member)
				}
				if d := specDiff(got, want); d != "" {
					t.Fatalf("step %d (%s, %s): the memoized spec differs: %s", step, w.step, what, d)
				}
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("step %d (%s, %s): the memoized spec's problems differ\ngot:  %v\nwant: %v", step, w.step, what, gotErr, wantErr)
				}
				nheld := 0
				held.each(func(id string, n int64) {
					nheld++
					if ds, ok := got.Disks[id]; !ok || ds.Size != n || !w.exported(doc, id) {
						t.Fatalf("step %d (%s): held size %s %d is not an exported disk's: %+v", step, w.step, id, n, ds)
					}
				})
				if nheld != held.len() {
					t.Fatalf("step %d (%s): %d held sizes, %d counted", step, w.step, nheld, held.len())
				}
				builds++
				if exported := countExported(doc); asked >= exported && exported > 0 {
					fresh++
				}
			}
			for step := range steps {
				w.prev, w.doc = w.doc, w.doc.Fork()
				for range 1 + w.rng.IntN(3) {
					w.mutate()
				}
				check(step, w.doc, "new")
				switch w.rng.IntN(6) {
				case 2: // more changes to the same fork: what it owns changes in place
					w.mutate()
					w.changeOwned()
					check(step, w.doc, "changed in place")
				case 0: // the check of a change, then the reconcile of the one before
					check(step, w.prev, "previous")
					check(step, w.doc, "new again")
				case 1: // a document read from the store: nothing is frozen
					check(step, w.doc.Clone(), "clone")
				}
			}
			// the memo must have been used, or this test proves nothing
			if fresh > builds/4 {
				t.Fatalf("%d of %d builds asked the size of every exported disk", fresh, builds)
			}
			t.Logf("%d of %d builds asked every size", fresh, builds)
		})
	}
}

// exported reports whether id is a LUN of a target gw1 is a portal of.
func (w *memoWorld) exported(doc *config.Doc, id string) bool {
	for _, t := range doc.Targets {
		if t == nil || t.Portals[gw1] == nil {
			continue
		}
		if _, ok := t.Disks[id]; ok {
			return true
		}
	}
	return false
}

func countExported(doc *config.Doc) int {
	n := 0
	for _, t := range doc.Targets {
		if t != nil && t.Portals[gw1] != nil {
			n += len(t.Disks)
		}
	}
	return n
}

// specDiff says where two specs differ ("" when they do not). Name rules
// are functions, which DeepEqual never finds equal: they are compared by
// whether they are set.
func specDiff(got, want lio.Spec) string {
	if (got.Names.IQN == nil) != (want.Names.IQN == nil) || (got.Names.Object == nil) != (want.Names.Object == nil) {
		return "name rules"
	}
	got.Names, want.Names = lio.NameRules{}, lio.NameRules{}
	// the memo's generation and hint are for its Builder, not content
	got.Frozen, got.Gen, got.Changes = want.Frozen, want.Gen, want.Changes
	if reflect.DeepEqual(got, want) {
		return ""
	}
	for id := range maps.Keys(got.Disks) {
		if !reflect.DeepEqual(got.Disks[id], want.Disks[id]) {
			return fmt.Sprintf("disk %s: got %+v, want %+v", id, got.Disks[id], want.Disks[id])
		}
	}
	for id := range maps.Keys(want.Disks) {
		if _, ok := got.Disks[id]; !ok {
			return fmt.Sprintf("disk %s missing", id)
		}
	}
	for iqn := range maps.Keys(want.Targets) {
		g, w := got.Targets[iqn], want.Targets[iqn]
		if !reflect.DeepEqual(g, w) {
			return fmt.Sprintf("target %s:\ngot:  %+v\nwant: %+v", iqn, g, w)
		}
	}
	got.Disks, want.Disks, got.Targets, want.Targets = nil, nil, nil, nil
	return fmt.Sprintf("\ngot:  %+v\nwant: %+v", got, want)
}

// BenchmarkSpecChange is the spec step of PUT /api/clientlun and PUT
// /api/targetlun on a target of n LUNs (n/4 clients of 4): each iteration
// forks the document, as the API does, changes one client's LUNs or the
// target's LUNs (a LUN added, then removed), and makes the spec, from
// scratch or with the memo of the documents before. cpu-ms/op is the
// process's CPU time; the garbage collector runs between iterations, so
// the spec's own garbage shows in B/op.
// Run: go test -tags pacific -run '^$' -bench SpecChange -benchtime 200x ./gateway/
func BenchmarkSpecChange(b *testing.B) {
	for _, n := range []int{256, 4096} {
		// clientlun and targetlun change a client and the target through
		// MutClient and MutTarget; oneclient and onelun through the
		// methods the API calls, whose change log names the client or
		// the LUN only
		for _, change := range []string{"clientlun", "targetlun", "oneclient", "onelun"} {
			for _, how := range []string{"scratch", "memo"} {
				b.Run(fmt.Sprintf("%d/%s/%s", n, change, how), func(b *testing.B) {
					doc := benchDoc(n)
					opts := FromConfigOptions{LocalAddrs: []netip.Addr{addr1}, Size: func(string, string) (int64, error) { return 1 << 30, nil },
						Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
					var m specMemo
					build := func(d *config.Doc) {
						var err error
						if how == "memo" {
							_, _, err = m.spec(d, gw1, nil, opts, 0, nil)
						} else {
							_, err = SpecFromConfig(d, gw1, nil, opts)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					build(doc)
					b.ReportAllocs()
					i := 0
					var cpu time.Duration
					for b.Loop() {
						b.StopTimer()
						next := doc.Fork()
						spare := fmt.Sprintf("rbd/img%04d", n)
						now := time.Unix(1700000000, 0)
						switch change {
						case "oneclient":
							ini := fmt.Sprintf("iqn.1994-05.com.example:c%04d", (i/2)%(n/4))
							imgs := slices.Sorted(maps.Keys(next.Targets[incrT1].Clients[ini].Luns))
							if i%2 == 0 {
								imgs = imgs[1:]
							} else {
								imgs = append(imgs, fmt.Sprintf("rbd/img%04d", 4*((i/2)%(n/4))))
							}
							if _, err := next.SetClientLuns(incrT1, ini, imgs, now); err != nil {
								b.Fatal(err)
							}
						case "onelun":
							var err error
							if i%2 == 0 {
								lun := n + 1
								_, _, err = next.MapTargetLun(incrT1, spare, &lun, gw1, now)
							} else {
								_, err = next.UnmapTargetLun(incrT1, spare, now)
							}
							if err != nil {
								b.Fatal(err)
							}
						case "clientlun":
							c := next.MutClient(incrT1, fmt.Sprintf("iqn.1994-05.com.example:c%04d", (i/2)%(n/4)))
							if i%2 == 0 {
								c.Luns[spare] = config.LunRef{LunID: 200}
							} else {
								delete(c.Luns, spare)
							}
						default:
							t := next.MutTarget(incrT1)
							if i%2 == 0 {
								t.Disks[spare] = config.LunRef{LunID: n + 1}
							} else {
								delete(t.Disks, spare)
							}
						}
						i++
						// the fork's garbage is not the spec's: collected
						// here, the spec's own shows in B/op
						runtime.GC()
						c0 := cpuTime()
						b.StartTimer()
						build(next)
						b.StopTimer()
						cpu += cpuTime() - c0
						b.StartTimer()
						doc = next
					}
					b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
				})
			}
		}
	}
}

// benchDoc is a fork of a document with target incrT1 of n LUNs on gw1,
// n/4 clients of 4 LUNs each and a few disks no target exports.
func benchDoc(n int) *config.Doc {
	now := time.Unix(1700000000, 0)
	d := config.NewDoc(now)
	d.Gateways[gw1] = &config.Gateway{}
	t := &config.Target{Disks: map[string]config.LunRef{}, Clients: map[string]*config.Client{}, Portals: map[string]*config.Portal{},
		Groups: map[string]*config.Group{}, Controls: map[string]any{}, IPList: []string{"127.0.0.1"}}
	t.Portals[gw1] = &config.Portal{PortalIPAddresses: []string{"127.0.0.1"}, GatewayIPList: t.IPList, TPGs: 1}
	d.Targets[incrT1] = t
	owner := gw1
	for i := range n + 16 {
		id := fmt.Sprintf("rbd/img%04d", i)
		d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%04d", i), Backstore: lio.BackstoreUserRBD, Owner: &owner,
			WWN: fmt.Sprint("wwn-", i), Controls: map[string]any{}}
		if i < n {
			t.Disks[id] = config.LunRef{LunID: i + 1}
		}
	}
	for c := range n / 4 {
		cl := config.NewClient()
		cl.Auth = config.Auth{Username: "user", Password: "Password-1234"}
		for j := range 4 {
			cl.Luns[fmt.Sprintf("rbd/img%04d", 4*c+j)] = config.LunRef{LunID: j}
		}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%04d", c)] = cl
	}
	return d.Fork()
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestReconcilerSpecMemo is TestSpecMemoEqualsSpecFromConfig through a
// Reconciler, whose size cache the memo's reuse must keep coherent: after
// checks and runs at random, the desired state of each document is what a
// build from scratch with the image facts of now makes.
func TestReconcilerSpecMemo(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newMemoWorld(t, seed, 24, true)
			w.newReconciler(t)
			steps := 200
			if testing.Short() {
				steps = 60
			}
			for step := range steps {
				if w.rng.IntN(6) > 0 || !w.rollback(ctx) {
					w.prev, w.doc = w.doc, w.doc.Fork()
					for range 1 + w.rng.IntN(3) {
						w.mutate()
					}
				}
				doc := w.doc
				doc.Epoch = int64(step)
				switch w.rng.IntN(4) {
				case 0:
					_ = w.rec.Check(ctx, doc) // problems are compared below
				case 1:
					_, _ = w.rec.Run(ctx, doc, Mode{})
				case 2:
					_, _ = w.rec.Run(ctx, w.prev, Mode{DryRun: true})
				}
				w.compareDesired(ctx, step, doc)
				if w.rng.IntN(4) == 0 {
					// what the document owns changes in place after a build
					w.ownExported()
					w.compareDesired(ctx, step, doc)
					w.changeOwned()
					w.step += ", changed in place"
					w.compareDesired(ctx, step, doc)
				}
			}
		})
	}
}

// rollback is what the API's snapshot rollback does to a disk this
// gateway exports: its LUNs go (and a run converges on that, so its size
// leaves the cache), the image changes size behind the cache's back, and
// the LUNs come back as they were.
func (w *memoWorld) rollback(ctx context.Context) bool {
	var id string
	for _, iqn := range slices.Sorted(maps.Keys(w.doc.Targets)) {
		if t := w.doc.Targets[iqn]; t.Portals[gw1] != nil && len(t.Disks) > 0 {
			id = w.pick(slices.Sorted(maps.Keys(t.Disks)))
			break
		}
	}
	if id == "" {
		return false
	}
	type ref struct {
		iqn, ini string
		l        config.LunRef
	}
	var refs []ref
	w.prev, w.doc = w.doc, w.doc.Fork()
	for iqn, t := range w.doc.Targets {
		if l, ok := t.Disks[id]; ok {
			refs = append(refs, ref{iqn, "", l})
			delete(w.doc.MutTarget(iqn).Disks, id)
		}
		for ini, c := range t.Clients {
			if c == nil {
				continue
			}
			if l, ok := c.Luns[id]; ok {
				refs = append(refs, ref{iqn, ini, l})
				delete(w.doc.MutClient(iqn, ini).Luns, id)
			}
		}
	}
	if w.rng.IntN(2) == 0 {
		// the run finds its state built by a check, while the memo was
		// moved on by another check of a document that still exports
		// the disk
		_ = w.rec.Check(ctx, w.doc)
		other := w.prev.Fork()
		if _, err := other.AddDisk(config.NewDisk{Pool: "rbd", Image: "other", Backstore: lio.BackstoreUserRBD}, time.Unix(1700000000, 0)); err != nil {
			w.t.Fatal(err)
		}
		_ = w.rec.Check(ctx, other)
	}
	_, _ = w.rec.Run(ctx, w.doc, Mode{})
	w.size[id] += 1 << 30
	w.doc = w.doc.Fork()
	for _, r := range refs {
		if r.ini == "" {
			w.doc.MutTarget(r.iqn).Disks[id] = r.l
		} else {
			w.doc.MutClient(r.iqn, r.ini).Luns[id] = r.l
		}
	}
	w.step = "rollback " + id
	return true
}

// compareDesired asserts that the Reconciler's desired state of doc is
// what a build from scratch makes.
func (w *memoWorld) compareDesired(ctx context.Context, step int, doc *config.Doc) {
	t := w.t
	t.Helper()
	member := doc.Gateways[gw1] != nil
	got, gotErr := w.rec.desired(ctx, doc, Mode{DryRun: true}, member, false, nil)
	opts := FromConfigOptions{LocalAddrs: []netip.Addr{addr1}, Size: w.sizeOf,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DevicePath: func(pool, image string) (string, error) {
			return w.rec.devicePath(ctx, Mode{DryRun: true}, blockExporters(doc), pool, image)
		}}
	spec, specErr := SpecFromConfig(doc, gw1, nil, opts)
	want, buildErr := lio.Build(spec)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("step %d (%s): the desired state differs from a build from scratch\ngot:  %+v\nwant: %+v", step, w.step, got, want)
	}
	if g, w := fmt.Sprint(gotErr), fmt.Sprint(errors.Join(specErr, buildErr)); g != w {
		t.Fatalf("step %d: the problems differ\ngot:  %s\nwant: %s", step, g, w)
	}
}

// ownExported has the document own (copy) a disk this gateway exports,
// which changeOwned then changes in place.
func (w *memoWorld) ownExported() {
	for _, id := range slices.Sorted(maps.Keys(w.doc.Disks)) {
		if w.exported(w.doc, id) && w.rng.IntN(3) == 0 {
			w.doc.MutDisk(id).WWN += "o"
			w.lastDisk = id
			return
		}
	}
}

// TestSpecMemoFollowsChangeLog changes a document at random through
// config's methods, which log what they change, and builds each document
// with a spec memo that the change log guides (and that checks each of its
// conclusions against a full walk: verify) and through a Reconciler
// (VerifyReuse). Now and then the lineage branches: two forks of one
// document are built one after the other, or a document decoded from its
// encoding (no lineage) comes in between. At each step the memo's spec is
// SpecFromConfig's, and after each run the size cache holds exactly the
// sizes a build from scratch reads: a disk that left the desired state
// took its size with it, and every exported disk's is kept.
func TestSpecMemoFollowsChangeLog(t *testing.T) {
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newMemoWorld(t, seed, 24, true)
			w.newReconciler(t)
			m := specMemo{verify: true}
			steps, builds := 120, 0
			if testing.Short() {
				steps = 50
			}
			build := func(step int, doc *config.Doc, what string) {
				t.Helper()
				builds++
				got, _, gotErr := m.spec(doc, gw1, nil, w.opts(false), w.gen, nil)
				want, wantErr := SpecFromConfig(doc, gw1, nil, w.opts(false))
				if d := specDiff(got, want); d != "" {
					t.Fatalf("step %d (%s, %s): the memoized spec differs: %s", step, w.step, what, d)
				}
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("step %d (%s, %s): the memoized spec's problems differ\ngot:  %v\nwant: %v", step, w.step, what, gotErr, wantErr)
				}
				if w.rng.IntN(3) == 0 {
					_ = w.rec.Check(ctx, doc)
				}
				_, _ = w.rec.Run(ctx, doc, Mode{DryRun: w.rng.IntN(4) == 0})
				w.checkSizes(step, doc, what)
				w.compareDesired(ctx, step, doc)
			}
			for step := range steps {
				base := w.doc
				w.prev, w.doc = base, base.Fork()
				for range 1 + w.rng.IntN(3) {
					w.mutate()
				}
				build(step, w.doc, "fork")
				switch w.rng.IntN(8) {
				case 0: // another fork of the same document
					first := w.doc
					w.doc = base.Fork()
					w.mutate()
					build(step, w.doc, "second fork")
					if w.rng.IntN(2) == 0 {
						w.doc = first
						build(step, w.doc, "first fork again")
					}
				case 1: // the document as decoded from its encoding
					if dec, err := config.Parse(w.doc.Marshal()); err == nil {
						w.doc = dec
						build(step, w.doc, "decoded")
					}
				case 2: // the fork, changed again after its build
					w.mutate()
					build(step, w.doc, "changed again")
				case 3, 4: // a LUN unmapped, mapped again and unmapped again
					// through the API's methods: the Reconciler finds the
					// third document's state built already (the first's),
					// and the lineage of the next goes through it
					w.unmapRemap(func(what string) { build(step, w.doc, what) })
				}
			}
			// the change log must have guided many builds (not those after
			// a branch, a decoded document, a resize, nor any while gw1 is
			// no member, which some seeds keep it for long), or this test
			// proves nothing about it
			if m.guided < builds/6 || w.rec.specs.guided < builds/6 {
				t.Fatalf("the change log guided %d of %d builds, %d of the Reconciler's", m.guided, builds, w.rec.specs.guided)
			}
			// the Reconciler's builds after a guided spec take its hint
			// (lio.SpecChanges), which VerifyReuse checks against a build
			// from scratch
			if hinted := w.rec.builder.Hinted(); hinted < w.rec.specs.guided/4 {
				t.Fatalf("%d of the Reconciler's builds took a hint, of %d guided specs", hinted, w.rec.specs.guided)
			}
			t.Logf("the change log guided %d of %d builds, %d of the Reconciler's; %d hinted builds", m.guided, builds, w.rec.specs.guided, w.rec.builder.Hinted())
		})
	}
}

// checkSizes asserts that the Reconciler's size cache holds the sizes a
// build of doc from scratch reads, and nothing else.
func (w *memoWorld) checkSizes(step int, doc *config.Doc, what string) {
	t := w.t
	t.Helper()
	want := map[string]int64{}
	if doc.Gateways[gw1] != nil {
		opts := w.opts(false)
		opts.Size = func(pool, image string) (int64, error) {
			n, err := w.sizeOf(pool, image)
			if err == nil {
				want[pool+"/"+image] = n
			}
			return n, err
		}
		opts.LocalAddrs = []netip.Addr{addr1}
		_, _ = SpecFromConfig(doc, gw1, nil, opts)
	}
	w.rec.cacheMu.Lock()
	got := maps.Clone(w.rec.sizes)
	w.rec.cacheMu.Unlock()
	if !maps.Equal(got, want) {
		t.Fatalf("step %d (%s, %s): the size cache holds %v, a build from scratch reads %v", step, w.step, what, got, want)
	}
}

// unmapRemap unmaps a LUN of memoT1 that no client uses, maps it again as
// it was and unmaps it again, through the methods the API calls (which
// log the LUN, not the whole target), building each document.
func (w *memoWorld) unmapRemap(build func(what string)) {
	t := w.doc.Targets[memoT1]
	if t == nil {
		return
	}
	var id string
	for _, k := range slices.Sorted(maps.Keys(t.Disks)) {
		used := false
		for _, c := range t.Clients {
			if c != nil {
				_, ok := c.Luns[k]
				used = used || ok
			}
		}
		if d := w.doc.Disks[k]; !used && d != nil && d.Owner != nil && w.doc.Gateways[*d.Owner] != nil && w.rng.IntN(3) == 0 {
			id = k
			break
		}
	}
	if id == "" {
		return
	}
	lun, owner := t.Disks[id].LunID, *w.doc.Disks[id].Owner
	now := time.Unix(1700000000, 0)
	for i, what := range []string{"unmap", "map again", "unmap again"} {
		w.doc = w.doc.Fork()
		var err error
		if i == 1 {
			_, _, err = w.doc.MapTargetLun(memoT1, id, &lun, owner, now)
		} else {
			_, err = w.doc.UnmapTargetLun(memoT1, id, now)
		}
		if err != nil {
			w.t.Fatalf("%s %s: %v", what, id, err)
		}
		w.step = what + " " + id
		build(what)
	}
}

// newReconciler gives w a Reconciler of gw1 on an emulated configfs, one
// that verifies what it reuses, asking w for image sizes.
func (w *memoWorld) newReconciler(t *testing.T) {
	fs, err := lio.NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w.rec = New(Options{FS: fs, Identity: host.Identity{Name: gw1, Addrs: []netip.Addr{addr1}}, Size: w.sizeOf,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), VerifyReuse: true})
}
