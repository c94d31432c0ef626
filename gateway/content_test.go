package gateway

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/config"
)

// cowWorld is a document changed at random the way the API changes one:
// mostly a fork of the last document, changed through the Mut accessors;
// sometimes the same document changed again after its digest, a Clone, a
// decoded copy, a fork of an older document, or one built by hand.
type cowWorld struct {
	t       testing.TB
	rng     *rand.Rand
	doc     *config.Doc
	history []*config.Doc
	next    int
	step    string
}

var cowNow = time.Unix(1700000000, 0)

const (
	cowT1 = "iqn.2003-01.com.example.cow:t1"
	cowT2 = "iqn.2003-01.com.example.cow:t2"
)

// handBuiltDoc is a document with LUN maps large enough to be digested
// through snapshots (minLunSnap): a target's, a client's and a group's.
func handBuiltDoc(rng *rand.Rand) *config.Doc {
	d := config.NewDoc(cowNow)
	d.Gateways[gw1] = &config.Gateway{}
	d.Gateways[gw2] = &config.Gateway{ActiveLuns: 3}
	t, err := d.AddTarget(cowT1, cowNow)
	if err != nil {
		panic(err)
	}
	t.IPList = []string{"127.0.0.1", "127.0.0.2"}
	t.Portals = map[string]*config.Portal{
		gw1: {PortalIPAddresses: []string{"127.0.0.1"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2},
		gw2: {PortalIPAddresses: []string{"127.0.0.2"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2},
	}
	big, grp := config.NewClient(), config.NewGroup()
	grp.Members = []string{"iqn.1994-05.com.example:grouped"}
	owner := gw1
	for i := range 3 * minLunSnap / 2 {
		id := fmt.Sprintf("rbd/img%03d", i)
		d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%03d", i), WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
		t.Disks[id] = config.LunRef{LunID: i}
		if i%8 > 0 {
			big.Luns[id] = config.LunRef{LunID: i + rng.IntN(2)}
		}
		if i%5 > 0 {
			grp.Disks[id] = config.LunRef{LunID: i}
		}
	}
	t.Clients["iqn.1994-05.com.example:big"] = big
	t.Clients["iqn.1994-05.com.example:small"] = config.NewClient()
	t.Groups["grp"] = grp
	return d
}

func newCowWorld(t testing.TB, seed uint64) *cowWorld {
	rng := rand.New(rand.NewPCG(seed, 2))
	return &cowWorld{t: t, rng: rng, doc: handBuiltDoc(rng), next: 1000}
}

func (w *cowWorld) pick(keys []string) string { return keys[w.rng.IntN(len(keys))] }

func pickKey[V any](w *cowWorld, m map[string]V) (string, bool) {
	if len(m) == 0 {
		return "", false
	}
	return w.pick(slices.Sorted(maps.Keys(m))), true
}

func (w *cowWorld) lunRef(n int) config.LunRef {
	if w.rng.IntN(6) == 0 {
		return config.LunRef{LunID: n, Extra: map[string]any{"x": fmt.Sprint(w.rng.IntN(3))}}
	}
	return config.LunRef{LunID: n}
}

// nextDoc is the document the step changes.
func (w *cowWorld) nextDoc() {
	w.history = append(w.history, w.doc)
	if len(w.history) > 8 {
		w.history = w.history[1:]
	}
	switch r := w.rng.IntN(40); {
	case r < 28:
		w.doc = w.doc.Fork()
	case r < 32:
		// the same document again, whose own objects are written in place
		w.step += "same doc; "
	case r < 34:
		w.doc = w.doc.Clone()
		w.step += "clone; "
	case r < 36:
		if d, upgraded, err := config.Load(w.doc.Marshal(), config.UpgradeOptions{}); err == nil && !upgraded {
			w.doc = d
			w.step += "decoded; "
		} else {
			w.doc = w.doc.Fork()
		}
	case r < 39:
		w.doc = w.history[w.rng.IntN(len(w.history))].Fork()
		w.step += "fork of an older doc; "
	default:
		w.doc = handBuiltDoc(w.rng)
		w.step += "hand-built; "
	}
}

// mutate makes one change to w.doc by the copy-on-write contract.
func (w *cowWorld) mutate() {
	d, rng := w.doc, w.rng
	iqn, ok := pickKey(w, d.Targets)
	if !ok || d.Targets[iqn] == nil {
		d.PutTarget(cowT2, config.NewTarget(cowNow))
		w.step += "target added"
		return
	}
	t := d.Targets[iqn]
	disk, _ := pickKey(w, d.Disks)
	w.next++
	n := w.next
	say := func(f string, a ...any) { w.step += fmt.Sprintf(f, a...) + "; " }
	switch op := rng.IntN(30); op {
	case 0: // new disk, mapped or not
		id := fmt.Sprintf("rbd/new%04d", n)
		owner := w.pick([]string{gw1, gw2})
		d.PutDisk(id, &config.Disk{Pool: "rbd", Image: fmt.Sprintf("new%04d", n), Backstore: "user:rbd", Owner: &owner, Controls: map[string]any{}})
		if rng.IntN(2) == 0 {
			d.MutTarget(iqn).Disks[id] = w.lunRef(n)
		}
		say("disk %s added", id)
	case 1: // a disk removed, with its LUNs
		if disk == "" {
			return
		}
		d.DetachDisk(disk)
		if err := d.RemoveDisk(disk); err != nil {
			w.t.Fatalf("remove detached disk %s: %v", disk, err)
		}
		say("disk %s removed", disk)
	case 2: // disk owner
		if k := d.MutDisk(disk); k != nil {
			o := w.pick([]string{gw1, gw2, "elsewhere"})
			k.Owner = &o
			say("disk %s owner %s", disk, o)
		}
	case 3: // disk controls
		if k := d.MutDisk(disk); k != nil {
			k.Controls = map[string]any{"qfull_timeout": fmt.Sprint(rng.IntN(4))}
			say("disk %s controls", disk)
		}
	case 4: // disk WWN or image
		if k := d.MutDisk(disk); k != nil {
			k.WWN = fmt.Sprintf("wwn-%d", n)
			say("disk %s wwn", disk)
		}
	case 5: // a target LUN added or remapped
		if disk != "" {
			d.MutTarget(iqn).Disks[disk] = w.lunRef(rng.IntN(300))
			say("target lun %s", disk)
		}
	case 6: // a target LUN removed
		if id, ok := pickKey(w, t.Disks); ok {
			delete(d.MutTarget(iqn).Disks, id)
			say("target lun %s removed", id)
		}
	case 7: // several target LUNs at once
		mt := d.MutTarget(iqn)
		for range 1 + rng.IntN(minLunSnap) {
			if id, ok := pickKey(w, d.Disks); ok {
				mt.Disks[id] = w.lunRef(rng.IntN(300))
			}
		}
		say("target luns")
	case 8: // target settings
		mt := d.MutTarget(iqn)
		switch rng.IntN(4) {
		case 0:
			mt.ACLEnabled = !mt.ACLEnabled
		case 1:
			mt.Controls = map[string]any{"cmdsn_depth": fmt.Sprint(16 << rng.IntN(3))}
		case 2:
			mt.Auth = config.Auth{Username: fmt.Sprintf("u%d", n), Password: "Password-1234"}
		default:
			mt.IPList = slices.Concat(mt.IPList, []string{fmt.Sprintf("127.0.1.%d", n%200)})
		}
		say("target %s settings", iqn)
	case 9: // a client added, with LUNs
		c := config.NewClient()
		for _, id := range slices.Sorted(maps.Keys(t.Disks)) {
			if rng.IntN(3) > 0 {
				c.Luns[id] = w.lunRef(rng.IntN(64))
			}
		}
		ini := fmt.Sprintf("iqn.1994-05.com.example:c%04d", n)
		d.MutTarget(iqn).Clients[ini] = c
		say("client %s added", ini)
	case 10: // a client removed
		if ini, ok := pickKey(w, t.Clients); ok {
			delete(d.MutTarget(iqn).Clients, ini)
			say("client %s removed", ini)
		}
	case 11, 12: // a client LUN added, remapped or removed
		if ini, ok := pickKey(w, t.Clients); ok && disk != "" {
			c := d.MutClient(iqn, ini)
			if _, ok := c.Luns[disk]; ok && rng.IntN(2) == 0 {
				delete(c.Luns, disk)
				say("client %s lun %s removed", ini, disk)
			} else {
				c.Luns[disk] = w.lunRef(rng.IntN(64))
				say("client %s lun %s", ini, disk)
			}
		}
	case 13: // client CHAP or group name
		if ini, ok := pickKey(w, t.Clients); ok {
			c := d.MutClient(iqn, ini)
			if rng.IntN(2) == 0 {
				c.Auth = config.Auth{Username: fmt.Sprintf("u%d", n), Password: "Password-5678"}
			} else {
				c.GroupName = w.pick([]string{"", "grp"})
			}
			say("client %s settings", ini)
		}
	case 14: // a portal added or removed
		if gw, ok := pickKey(w, t.Portals); ok && rng.IntN(2) == 0 {
			delete(d.MutTarget(iqn).Portals, gw)
			say("portal %s removed", gw)
		} else {
			gw := w.pick([]string{gw1, gw2, "gw3"})
			d.MutTarget(iqn).Portals[gw] = &config.Portal{PortalIPAddresses: []string{"127.0.0.9"}, GatewayIPList: []string{}, InactivePortalIPs: []string{}, TPGs: 1}
			say("portal %s added", gw)
		}
	case 15: // a portal changed
		if gw, ok := pickKey(w, t.Portals); ok {
			p := d.MutPortal(iqn, gw)
			if rng.IntN(2) == 0 {
				p.TPGs++
			} else {
				p.InactivePortalIPs = []string{fmt.Sprintf("127.0.2.%d", n%200)}
			}
			say("portal %s changed", gw)
		}
	case 16: // a group added or removed
		if name, ok := pickKey(w, t.Groups); ok && rng.IntN(2) == 0 {
			delete(d.MutTarget(iqn).Groups, name)
			say("group %s removed", name)
		} else {
			g := config.NewGroup()
			for _, id := range slices.Sorted(maps.Keys(t.Disks)) {
				if rng.IntN(2) == 0 {
					g.Disks[id] = w.lunRef(rng.IntN(64))
				}
			}
			name := fmt.Sprintf("g%d", n)
			d.MutTarget(iqn).Groups[name] = g
			say("group %s added", name)
		}
	case 17, 18: // a group's disks or members
		if name, ok := pickKey(w, t.Groups); ok {
			g := d.MutGroup(iqn, name)
			switch {
			case rng.IntN(3) == 0:
				g.Members = append(slices.Clone(g.Members), fmt.Sprintf("iqn.1994-05.com.example:m%d", n))
			case disk != "" && rng.IntN(2) == 0:
				g.Disks[disk] = w.lunRef(rng.IntN(64))
			default:
				if id, ok := pickKey(w, g.Disks); ok {
					delete(g.Disks, id)
				}
			}
			say("group %s changed", name)
		}
	case 19: // a gateway added, removed or changed
		switch gw := w.pick([]string{gw1, gw2, "gw3"}); {
		case d.Gateways[gw] == nil:
			d.PutGateway(gw, &config.Gateway{})
			say("gateway %s added", gw)
		case rng.IntN(2) == 0:
			// its portal goes, and the gateway with it when no other
			// target has one
			if _, err := d.RemoveTargetGateways(iqn, gw, cowNow); err != nil {
				w.t.Fatal(err)
			}
			say("gateway %s removed", gw)
		default:
			d.MutGateway(gw).ActiveLuns++
			say("gateway %s active luns", gw)
		}
	case 20: // a target added or removed
		if d.Targets[cowT2] == nil {
			d.PutTarget(cowT2, config.NewTarget(cowNow))
			say("target 2 added")
		} else {
			if err := d.RemoveTarget(cowT2); err != nil {
				w.t.Fatal(err)
			}
			say("target 2 removed")
		}
	case 21: // a target replaced by one made by hand, with the same LUNs
		nt := config.NewTarget(cowNow)
		nt.Disks = maps.Clone(t.Disks)
		nt.IPList = slices.Clone(t.IPList)
		d.PutTarget(iqn, nt)
		say("target %s replaced", iqn)
	case 22: // document-level fields
		switch rng.IntN(3) {
		case 0:
			d.DiscoveryAuth = config.Auth{Username: fmt.Sprintf("d%d", n), Password: "Password-0000"}
		case 1:
			d.GatewaysUpgraded = []string{gw1}
		default:
			d.Extra = map[string]any{"x": fmt.Sprint(n % 3)}
		}
		say("document fields")
	case 23: // what the digest leaves out
		d.Epoch++
		if k := d.MutDisk(disk); k != nil {
			k.Updated = fmt.Sprint(n)
		}
		say("epoch and stamps")
	case 24: // a changed object changed back: the content of an older document
		if k := d.MutDisk(disk); k != nil {
			k.Owner = k.AllocatingHost
			say("disk %s owner reset", disk)
		}
	case 25: // a client's LUNs copied to another (a big client's snapshot place moves)
		if ini, ok := pickKey(w, t.Clients); ok {
			c := d.MutClient(iqn, ini)
			c.Luns = maps.Clone(t.Disks)
			say("client %s gets every lun", ini)
		}
	case 27: // a disk mapped to the target, or re-owned when it is
		if disk != "" && d.Gateways[gw1] != nil {
			if _, _, err := d.MapTargetLun(iqn, disk, nil, gw1, cowNow); err != nil {
				return
			}
			say("target lun %s mapped", disk)
		}
	case 28: // a disk unmapped from the target (refused while a client maps it)
		if id, ok := pickKey(w, t.Disks); ok {
			if _, err := d.UnmapTargetLun(iqn, id, cowNow); err != nil {
				return
			}
			say("target lun %s unmapped", id)
		}
	default: // a LUN's Extra replaced
		if id, ok := pickKey(w, t.Disks); ok {
			l := t.Disks[id]
			l.Extra = map[string]any{"y": fmt.Sprint(n % 2)}
			d.MutTarget(iqn).Disks[id] = l
			say("lun %s extra", id)
		}
	}
}

// encodingWithoutStamps is what the digest must tell apart: the encoding
// of doc at a fixed epoch and without created/updated stamps. (The
// generic values the walk sets are strings and its maps and lists are
// never nil, so that a decoded copy holds what it was decoded from: a
// number decodes to another type, a nil map to an empty one, and the
// digest may then differ.)
func encodingWithoutStamps(doc *config.Doc) string {
	c := doc.Clone()
	c.Epoch, c.Created, c.Updated = 0, "", ""
	for _, k := range c.Disks {
		if k != nil {
			k.Created, k.Updated = "", ""
		}
	}
	for _, g := range c.Gateways {
		if g != nil {
			g.Created, g.Updated = "", ""
		}
	}
	for _, t := range c.Targets {
		if t != nil {
			t.Created, t.Updated = "", nil
		}
	}
	return string(c.Marshal())
}

// runCowWorld digests every step's document through memo and reports the
// first step whose memoized digest is not its full one; along the way it
// checks that digests tell documents apart exactly as their encodings do.
func runCowWorld(t *testing.T, seed uint64, steps int, memo *digestMemo) error {
	w := newCowWorld(t, seed)
	byContent := map[string]digest{}
	byDigest := map[digest]string{}
	for i := range steps {
		w.step = ""
		w.nextDoc()
		for range 1 + w.rng.IntN(3) {
			w.mutate()
			if w.rng.IntN(4) == 0 {
				// digested half-way, as a check digests a change the
				// commit then stamps: what the rest of the step writes
				// in place must not be taken from the memo
				memo.digest(w.doc)
			}
		}
		got, full := memo.digest(w.doc), contentDigest(w.doc)
		if got != full {
			return fmt.Errorf("seed %d step %d (%s): memoized digest %x, full %x", seed, i, w.step, got, full)
		}
		enc := encodingWithoutStamps(w.doc)
		if d, ok := byContent[enc]; ok && d != full {
			t.Fatalf("seed %d step %d (%s): equal content, another digest", seed, i, w.step)
		}
		if e, ok := byDigest[full]; ok && e != enc {
			t.Fatalf("seed %d step %d (%s): another content, the same digest", seed, i, w.step)
		}
		byContent[enc], byDigest[full] = full, enc
	}
	return nil
}

// TestMemoDigestEqualsFull: over random copy-on-write changes of every
// kind, the digest through the memo is always the full one, and digests
// differ exactly when contents do.
func TestMemoDigestEqualsFull(t *testing.T) {
	for seed := range uint64(6) {
		memo := newDigestMemo()
		if err := runCowWorld(t, seed, 300, memo); err != nil {
			t.Fatal(err)
		}
		if memo.reused == 0 {
			t.Fatalf("seed %d: nothing was found in the memo", seed)
		}
	}
}

// TestMemoDigestNeedsFrozen: a memo that took every object for frozen,
// reusing what a change wrote in place, gives wrong digests in the same
// random walk: the Frozen check is what keeps it right.
func TestMemoDigestNeedsFrozen(t *testing.T) {
	failed := 0
	for seed := range uint64(6) {
		memo := newDigestMemo()
		memo.frozen = func(*config.Doc, config.Object) bool { return true }
		if err := runCowWorld(t, seed, 300, memo); err != nil {
			t.Log(err)
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("a memo reusing objects that are not frozen went unnoticed")
	}
}

// TestMemoDigestBounded: the memo holds no more than about twice what the
// last document holds, however many versions of its objects it saw.
func TestMemoDigestBounded(t *testing.T) {
	doc := handBuiltDoc(rand.New(rand.NewPCG(3, 3)))
	memo := newDigestMemo()
	for i := range 100 {
		doc = doc.Fork()
		// a new version of every other disk and client, while the rest,
		// changed by the step before, are frozen and remembered
		for j, id := range slices.Sorted(maps.Keys(doc.Disks)) {
			if j%2 == i%2 {
				doc.MutDisk(id).WWN = fmt.Sprint(i)
			}
		}
		for j, ini := range slices.Sorted(maps.Keys(doc.Targets[cowT1].Clients)) {
			if j%2 == i%2 {
				doc.MutClient(cowT1, ini).GroupName = fmt.Sprint(i)
			}
		}
		memo.digest(doc)
		if n, live := len(memo.disks), len(doc.Disks); n > 2*live+64 {
			t.Fatalf("step %d: %d disks remembered for %d in the document", i, n, live)
		}
		if n, live := len(memo.clients), len(doc.Targets[cowT1].Clients); n > 2*live+64 {
			t.Fatalf("step %d: %d clients remembered for %d in the document", i, n, live)
		}
	}
	memo.digest(config.NewDoc(cowNow).Fork())
	for kind, n := range map[string]int{"disks": len(memo.disks), "clients": len(memo.clients), "portals": len(memo.portals),
		"groups": len(memo.groups), "targets": len(memo.targets), "gateways": len(memo.gateways)} {
		if n > 64 {
			t.Errorf("after an empty document the memo still holds %d %s", n, kind)
		}
	}
	if len(memo.luns) > 0 {
		t.Errorf("after an empty document the memo still holds %d LUN maps", len(memo.luns))
	}
}

// TestVerifyReusePanics: with Options.VerifyReuse a frozen object written
// in place, against the copy-on-write contract, is a panic, not a stale
// digest.
func TestVerifyReusePanics(t *testing.T) {
	r := &Reconciler{opts: Options{VerifyReuse: true}, digests: newDigestMemo()}
	doc := handBuiltDoc(rand.New(rand.NewPCG(1, 1))).Fork()
	r.contentDigest(doc)
	next := doc.Fork()
	for _, k := range next.Disks {
		k.WWN += "-changed" // not through MutDisk
		break
	}
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "changed in place") {
			t.Fatalf("no panic on a frozen object changed in place (%v)", p)
		}
	}()
	r.contentDigest(next)
}

// changeKinds are the kinds of change a memo must follow.
var changeKinds = map[string]config.ChangeKind{
	"disk": config.ChangedDisk, "gateway": config.ChangedGateway, "target": config.ChangedTarget,
	"target lun": config.ChangedTargetLun, "client": config.ChangedClient, "portal": config.ChangedPortal,
	"group": config.ChangedGroup,
}

// TestMemoDigestNeedsEveryKind: a memo that skips one kind of change in a
// document's change log gives wrong digests in the random walk: each kind
// is followed, and the walk makes each.
func TestMemoDigestNeedsEveryKind(t *testing.T) {
	for name, kind := range changeKinds {
		failed := false
		for seed := range uint64(6) {
			memo := newDigestMemo()
			memo.ignore = kind
			if err := runCowWorld(t, seed, 300, memo); err != nil {
				failed = true
				break
			}
		}
		if !failed {
			t.Errorf("a memo skipping %s changes went unnoticed", name)
		}
	}
}

// TestMemoDigestFollowsBranches digests documents of several lineages in
// turn: forks of one document changed apart and digested alternately, a
// check's document and its commit's preview (a fork with another epoch)
// and the store's remembered fork of the commit, documents decoded from
// another's encoding. Each digest through the memo is the full one, and
// most are made through a change log.
func TestMemoDigestFollowsBranches(t *testing.T) {
	for seed := range uint64(4) {
		w := newCowWorld(t, seed)
		memo := newDigestMemo()
		live := []*config.Doc{w.doc.Fork()}
		check := func(i int, doc *config.Doc, what string) {
			t.Helper()
			if got, full := memo.digest(doc), contentDigest(doc); got != full {
				t.Fatalf("seed %d step %d (%s%s): memoized digest %x, full %x", seed, i, w.step, what, got, full)
			}
		}
		digests := 0
		for i := range 400 {
			w.step = ""
			k := w.rng.IntN(len(live))
			switch r := w.rng.IntN(10); {
			case r < 5: // a change to one branch, digested half-way or not
				w.doc = live[k]
				for range 1 + w.rng.IntN(3) {
					w.mutate()
					if w.rng.IntN(3) == 0 {
						check(i, w.doc, "half-way")
						digests++
					}
				}
			case r < 7: // a new branch
				live = append(live, live[k].Fork())
				if len(live) > 4 {
					live = live[1:]
				}
				w.step = "branch; "
			case r < 9: // a check, the preview of its commit, the reconcile, the store's copy
				c := live[k]
				p := c.Fork()
				p.Epoch++
				check(i, c, "check")
				check(i, p, "preview")
				check(i, c, "reconcile")
				digests += 3
				live[k] = c.Fork()
				w.step = "commit; "
			default: // a document decoded from a branch's encoding
				if d, upgraded, err := config.Load(live[k].Marshal(), config.UpgradeOptions{}); err == nil && !upgraded {
					live[k] = d.Fork()
					check(i, d, "decoded")
					digests++
				}
				w.step = "decoded; "
			}
			// mostly the branch just changed, as a gateway sees them
			if w.rng.IntN(4) == 0 {
				k = w.rng.IntN(len(live))
			}
			check(i, live[k], "")
			digests++
		}
		if memo.sinceHits < digests/5 {
			t.Fatalf("seed %d: %d of %d digests through a change log", seed, memo.sinceHits, digests)
		}
	}
}

// TestMemoDigestSingleLunChanges maps, unmaps and detaches disks one at a
// time, as the API does, fork after fork: the target's LUN map is then
// digested by key (targetParts.lunsBy), and every digest is still the
// full one.
func TestMemoDigestSingleLunChanges(t *testing.T) {
	for seed := range uint64(4) {
		w := newCowWorld(t, seed)
		memo := newDigestMemo()
		for i := range 200 {
			if w.rng.IntN(5) > 0 {
				w.doc = w.doc.Fork()
			}
			w.step = ""
			for range 1 + w.rng.IntN(3) {
				d := w.doc
				disk, _ := pickKey(w, d.Disks)
				if _, ok := d.Targets[cowT1].Disks[disk]; ok && w.rng.IntN(2) == 0 {
					if _, err := d.UnmapTargetLun(cowT1, disk, cowNow); err != nil {
						d.DetachDisk(disk) // a client maps it
						w.step += "detach " + disk + "; "
					} else {
						w.step += "unmap " + disk + "; "
					}
				} else if _, _, err := d.MapTargetLun(cowT1, disk, nil, gw1, cowNow); err != nil {
					t.Fatal(err)
				} else {
					w.step += "map " + disk + "; "
				}
				if w.rng.IntN(4) == 0 {
					memo.digest(d)
				}
			}
			if got, full := memo.digest(w.doc), contentDigest(w.doc); got != full {
				t.Fatalf("seed %d step %d (%s): memoized digest %x, full %x", seed, i, w.step, got, full)
			}
		}
		if memo.sinceHits < 100 {
			t.Fatalf("seed %d: %d digests through a change log", seed, memo.sinceHits)
		}
	}
}
