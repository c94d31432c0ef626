package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"
)

const (
	cowTarget = "iqn.2003-01.com.example.bench:target"
	cowClient = "iqn.1994-05.com.example:c00001"
	cowFull   = "iqn.2003-01.com.example:t"
	cowFullCl = "iqn.1994-05.com.example:c"
)

var cowNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// cowDoc is scaleDoc's 16 LUNs and 4 clients with two portal gateways, a
// host group of a fifth client and two disks no target exports yet.
func cowDoc(t *testing.T) *Doc {
	t.Helper()
	d := scaleDoc(t, 16)
	ips := []string{"192.0.2.1", "192.0.2.2"}
	for i, gw := range []string{"gw1", "gw2"} {
		if _, err := d.AddTargetGateway(cowTarget, gw, ips[:i+1], ips[i:i+1], cowNow); err != nil {
			t.Fatal(err)
		}
	}
	for i := 16; i < 18; i++ {
		if _, err := d.AddDisk(NewDisk{Pool: "rbd", Image: fmt.Sprintf("spare%d", i), WWN: fmt.Sprintf("spare-%d", i), Backstore: "user:rbd"}, cowNow); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.AddClient(cowTarget, "iqn.1994-05.com.example:grouped", cowNow); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ApplyGroup(cowTarget, "g", []string{"iqn.1994-05.com.example:grouped"}, []string{"rbd/img00014", "rbd/img00015"}, cowNow); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mustChange checks what a mutation returns: a change and no error.
func mustChange(t *testing.T) func(bool, error) {
	return func(changed bool, err error) {
		t.Helper()
		must(t, err)
		if !changed {
			t.Fatal("no change")
		}
	}
}

// cowChanges are one change per accessor and per mutation method; each
// writes as deep into what it changes as the contract allows.
var cowChanges = []struct {
	name string
	doc  func(*testing.T) *Doc
	do   func(*testing.T, *Doc)
}{
	{"MutDisk", fullParsed, func(t *testing.T, d *Doc) {
		k := d.MutDisk("rbd/a")
		*k.Owner = "changed"
		k.Controls["qfull_timeout"] = 1
		k.Controls["future_knob"].([]any)[0] = "changed"
		k.Extra["x_disk"].(map[string]any)["deep"].(map[string]any)["obj"].(map[string]any)["k"] = "changed"
	}},
	{"MutGateway", fullParsed, func(t *testing.T, d *Doc) {
		g := d.MutGateway("gw1.example")
		g.ActiveLuns = 9
		g.Extra["x_gateway"] = "changed"
	}},
	{"MutTarget", fullParsed, func(t *testing.T, d *Doc) {
		tg := d.MutTarget(cowFull)
		tg.IPList[0] = "changed"
		*tg.Updated = "changed"
		tg.Auth.Extra["x_auth"] = "changed"
		tg.Disks["rbd/a"] = LunRef{LunID: 7}
		delete(tg.Clients, cowFullCl)
		tg.Portals["other"] = &Portal{}
		delete(tg.Groups, "g")
	}},
	{"MutClient", fullParsed, func(t *testing.T, d *Doc) {
		c := d.MutClient(cowFull, cowFullCl)
		c.Auth.Extra["x_auth"] = "changed"
		c.Luns["rbd/a"] = LunRef{LunID: 5}
		c.GroupName = "changed"
	}},
	{"MutPortal", fullParsed, func(t *testing.T, d *Doc) {
		p := d.MutPortal(cowFull, "gw1.example")
		p.PortalIPAddresses[0] = "changed"
		p.TPGs = 9
	}},
	{"MutGroup", fullParsed, func(t *testing.T, d *Doc) {
		g := d.MutGroup(cowFull, "g")
		g.Members[0] = "changed"
		g.Disks["rbd/b"] = LunRef{LunID: 3}
	}},
	{"doc fields", fullParsed, func(t *testing.T, d *Doc) {
		d.Touch(cowNow)
		d.DiscoveryAuth.Extra["x_auth"] = "changed"
		d.Extra["x_doc"] = "changed"
		d.dropDisk("rbd/a")
		d.dropGateway("gw1.example")
	}},
	{"AddTarget", cowDoc, func(t *testing.T, d *Doc) {
		_, err := d.AddTarget("iqn.2003-01.com.example:new", cowNow)
		must(t, err)
	}},
	{"AddClient", cowDoc, func(t *testing.T, d *Doc) {
		_, err := d.AddClient(cowTarget, "iqn.1994-05.com.example:new", cowNow)
		must(t, err)
	}},
	{"RemoveClient", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.RemoveClient(cowTarget, cowClient, cowNow))
	}},
	{"SetClientLuns", cowDoc, func(t *testing.T, d *Doc) {
		mustChange(t)(d.SetClientLuns(cowTarget, cowClient, []string{"rbd/img00004", "rbd/img00009"}, cowNow))
	}},
	{"SetClientAuth", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.SetClientAuth(cowTarget, cowClient, Auth{Username: "someuser1", Password: "somepassword"}, cowNow))
	}},
	{"MapTargetLun", cowDoc, func(t *testing.T, d *Doc) {
		changed, _, err := d.MapTargetLun(cowTarget, "rbd/spare16", nil, "gw2", cowNow)
		mustChange(t)(changed, err)
	}},
	{"MapTargetLun re-own", cowDoc, func(t *testing.T, d *Doc) {
		changed, _, err := d.MapTargetLun(cowTarget, "rbd/img00003", nil, "gw2", cowNow)
		mustChange(t)(changed, err)
	}},
	{"UnmapTargetLun", cowDoc, func(t *testing.T, d *Doc) {
		mustChange(t)(d.SetClientLuns(cowTarget, "iqn.1994-05.com.example:c00003", nil, cowNow))
		mustChange(t)(d.UnmapTargetLun(cowTarget, "rbd/img00013", cowNow))
	}},
	{"AddDisk", cowDoc, func(t *testing.T, d *Doc) {
		_, err := d.AddDisk(NewDisk{Pool: "rbd", Image: "new", WWN: "new"}, cowNow)
		must(t, err)
	}},
	{"SetDiskControls", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.SetDiskControls("rbd/img00001", map[string]any{"qfull_timeout": 3}, cowNow))
	}},
	{"RemoveDisk", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.RemoveDisk("rbd/spare17"))
	}},
	{"DetachDisk", cowDoc, func(t *testing.T, d *Doc) {
		d.DetachDisk("rbd/img00014") // a client's, a group's and a grouped client's
	}},
	{"AddTargetGateway", cowDoc, func(t *testing.T, d *Doc) {
		ips := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}
		mustChange(t)(d.AddTargetGateway(cowTarget, "gw3", ips, ips[2:], cowNow))
	}},
	{"RemoveTargetGateways", cowDoc, func(t *testing.T, d *Doc) {
		mustChange(t)(d.RemoveTargetGateways(cowTarget, "gw1", cowNow))
	}},
	{"RemoveTargetGateway", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.RemoveTargetGateway(cowTarget, "gw2", cowNow))
	}},
	{"SetTargetControls", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.SetTargetControls(cowTarget, map[string]any{"cmdsn_depth": 64}, cowNow))
	}},
	{"SetTargetAuth", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.SetTargetAuth(cowTarget, Auth{Username: "someuser1", Password: "somepassword"}, cowNow))
	}},
	{"SetACLEnabled", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.SetACLEnabled(cowTarget, false, cowNow))
	}},
	{"ApplyGroup", cowDoc, func(t *testing.T, d *Doc) {
		mustChange(t)(d.ApplyGroup(cowTarget, "g", []string{"iqn.1994-05.com.example:grouped"}, []string{"rbd/img00015"}, cowNow))
	}},
	{"ApplyGroup new", cowDoc, func(t *testing.T, d *Doc) {
		_, err := d.AddClient(cowTarget, "iqn.1994-05.com.example:new", cowNow)
		must(t, err)
		mustChange(t)(d.ApplyGroup(cowTarget, "h", []string{"iqn.1994-05.com.example:new"}, []string{"rbd/img00001"}, cowNow))
	}},
	{"RemoveGroup", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.RemoveGroup(cowTarget, "g", cowNow))
	}},
	{"RemoveTarget", cowDoc, func(t *testing.T, d *Doc) {
		must(t, d.RemoveTarget(cowTarget))
	}},
	{"ReassignOwners", cowDoc, func(t *testing.T, d *Doc) {
		d.dropGateway("gw1")
		if !d.ReassignOwners(cowNow) {
			t.Fatal("no change")
		}
	}},
}

func fullParsed(t *testing.T) *Doc {
	t.Helper()
	d, err := Parse([]byte(fullDoc))
	must(t, err)
	return d
}

// claim makes d the owner of every object it holds, as a document that
// changed each of them since its last Fork is: Fork must then take that
// ownership away from it.
func claim(d *Doc) {
	for id := range d.Disks {
		d.MutDisk(id)
	}
	for gw := range d.Gateways {
		d.MutGateway(gw)
	}
	for iqn, t := range d.Targets {
		for c := range t.Clients {
			d.MutClient(iqn, c)
		}
		for p := range t.Portals {
			d.MutPortal(iqn, p)
		}
		for g := range t.Groups {
			d.MutGroup(iqn, g)
		}
	}
}

// TestForkIsolation changes a fork and checks that its source still
// encodes as before, then the other way round, for every accessor and
// every mutation; from a parsed source (which owns nothing) and from one
// that owns everything.
func TestForkIsolation(t *testing.T) {
	for _, c := range cowChanges {
		for _, owned := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/owned=%v", c.name, owned), func(t *testing.T) {
				for _, changeFork := range []bool{true, false} {
					src := c.doc(t)
					if owned {
						claim(src)
					}
					fork := src.Fork()
					orig := src.Marshal()
					if !bytes.Equal(fork.Marshal(), orig) {
						t.Fatal("the fork encodes differently from its source")
					}
					changed, kept := fork, src
					if !changeFork {
						changed, kept = src, fork
					}
					c.do(t, changed)
					if bytes.Equal(changed.Marshal(), orig) {
						t.Fatal("the change changed nothing")
					}
					if !bytes.Equal(kept.Marshal(), orig) {
						t.Errorf("changing the fork=%v changed the other document", changeFork)
					}
				}
			})
		}
	}
}

// TestForkCopiesOnlyWhatChanges: a client's LUN change copies that client
// (and its target's maps), nothing else; a second change reuses the copy.
func TestForkCopiesOnlyWhatChanges(t *testing.T) {
	src := cowDoc(t)
	fork := src.Fork()
	mustChange(t)(fork.SetClientLuns(cowTarget, cowClient, []string{"rbd/img00004"}, cowNow))
	st, ft := src.Targets[cowTarget], fork.Targets[cowTarget]
	if st == ft || st.Clients[cowClient] == ft.Clients[cowClient] {
		t.Fatal("the changed target or client is still shared")
	}
	for id, k := range src.Disks {
		if fork.Disks[id] != k {
			t.Errorf("disk %s copied", id)
		}
	}
	for c, cl := range st.Clients {
		if c != cowClient && ft.Clients[c] != cl {
			t.Errorf("client %s copied", c)
		}
	}
	for gw, g := range src.Gateways {
		if fork.Gateways[gw] != g {
			t.Errorf("gateway %s copied", gw)
		}
	}
	if reflect.ValueOf(ft.Disks).UnsafePointer() != reflect.ValueOf(st.Disks).UnsafePointer() {
		t.Error("a client's change copied its target's LUN map")
	}
	// the map is copied when the target is handed out for any change
	fork.MutTarget(cowTarget).Disks["rbd/new"] = LunRef{LunID: 99}
	if _, ok := st.Disks["rbd/new"]; ok {
		t.Fatal("writing the LUN map of the fork's target wrote the source's")
	}
	cl := ft.Clients[cowClient]
	if fork.MutClient(cowTarget, cowClient) != cl || fork.MutTarget(cowTarget) != ft {
		t.Error("a second change copied again what the fork owns")
	}
	if fork.MutClient(cowTarget, "iqn.1994-05.com.example:absent") != nil || fork.MutDisk("rbd/absent") != nil ||
		fork.MutTarget("iqn.2003-01.com.example:absent") != nil || fork.MutPortal(cowTarget, "absent") != nil ||
		fork.MutGroup(cowTarget, "absent") != nil || fork.MutGateway("absent") != nil {
		t.Error("an absent object was made")
	}
	if (*Doc)(nil).Fork() != nil {
		t.Error("nil fork")
	}
}

// TestForkConcurrent reads a source (and forks it, as concurrent requests
// do with the cached document) while its forks change: run with -race.
func TestForkConcurrent(t *testing.T) {
	src := scaleDoc(t, 256)
	ips := []string{"192.0.2.1"}
	if _, err := src.AddTargetGateway(cowTarget, "gw1", ips, ips, cowNow); err != nil {
		t.Fatal(err)
	}
	claim(src)
	want := src.Marshal()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				f := src.Fork()
				k := (w*20 + i) % 64
				c := fmt.Sprintf("iqn.1994-05.com.example:c%05d", k)
				if _, err := f.SetClientLuns(cowTarget, c, []string{fmt.Sprintf("rbd/img%05d", (k+1)%64*4)}, cowNow); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.SetClientLuns(cowTarget, c, nil, cowNow); err != nil {
					t.Error(err)
					return
				}
				// only c mapped its first disk
				if _, err := f.UnmapTargetLun(cowTarget, fmt.Sprintf("rbd/img%05d", 4*k), cowNow); err != nil {
					t.Error(err)
					return
				}
				f.DetachDisk(fmt.Sprintf("rbd/img%05d", 4*k+1))
				f.Touch(cowNow)
				_ = f.Marshal()
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if !bytes.Equal(src.Marshal(), want) {
				t.Error("the source changed under its forks")
				return
			}
		}
	})
	wg.Wait()
	if !bytes.Equal(src.Marshal(), want) {
		t.Error("the source changed")
	}
}

// frozenSet lists, by kind and name, the objects of d that Frozen reports.
func frozenSet(d *Doc) map[string]bool {
	out := map[string]bool{}
	note := func(kind, name string, o Object) {
		if d.Frozen(o) {
			out[kind+" "+name] = true
		}
	}
	for id, k := range d.Disks {
		note("disk", id, k)
	}
	for name, g := range d.Gateways {
		note("gateway", name, g)
	}
	for iqn, t := range d.Targets {
		note("target", iqn, t)
		for n, c := range t.Clients {
			note("client", iqn+" "+n, c)
		}
		for n, p := range t.Portals {
			note("portal", iqn+" "+n, p)
		}
		for n, g := range t.Groups {
			note("group", iqn+" "+n, g)
		}
	}
	return out
}

// TestFrozen: a fork freezes every object until it changes one, and only
// that one (with the target holding it) thaws; the source, a Clone and a
// document built by hand freeze nothing, as their objects may be written
// directly; a frozen target's children are frozen.
func TestFrozen(t *testing.T) {
	src := cowDoc(t)
	all := len(frozenSet(src.Fork()))
	if got := frozenSet(src); len(got) != 0 {
		t.Fatalf("a document built by hand freezes %v", got)
	}
	f := src.Fork()
	if got := len(frozenSet(f)); got != all || all < 25 {
		t.Fatalf("a fresh fork freezes %d of its objects, want every one (%d)", got, all)
	}
	f.MutDisk("rbd/img00003").WWN = "changed"
	f.MutClient(cowTarget, cowClient).GroupName = ""
	if _, err := f.AddDisk(NewDisk{Pool: "rbd", Image: "new", WWN: "new", Backstore: "user:rbd"}, cowNow); err != nil {
		t.Fatal(err)
	}
	got := frozenSet(f)
	for _, thawed := range []string{"disk rbd/img00003", "target " + cowTarget, "client " + cowTarget + " " + cowClient, "disk rbd/new"} {
		if got[thawed] {
			t.Errorf("%s is changed by the fork, yet frozen", thawed)
		}
	}
	if len(got) != all-3 {
		t.Errorf("the fork freezes %d objects after changing three and adding one, want %d", len(got), all-3)
	}
	// forking again freezes what the first fork owned, in both
	g := f.Fork()
	if n := len(frozenSet(g)); n != all+1 {
		t.Errorf("a fork of the changed fork freezes %d, want %d", n, all+1)
	}
	if n := len(frozenSet(f)); n != all+1 {
		t.Errorf("the changed fork, once forked, freezes %d, want %d", n, all+1)
	}
	if got := frozenSet(f.Clone()); len(got) != 0 {
		t.Errorf("a Clone freezes %v", got)
	}
	// a frozen target holds only frozen children
	for iqn, tg := range g.Targets {
		if !g.Frozen(tg) {
			continue
		}
		for n, c := range tg.Clients {
			if !g.Frozen(c) {
				t.Errorf("target %s is frozen but its client %s is not", iqn, n)
			}
		}
	}
}

// TestFrozenLuns: a target's LUN map is frozen in a fork until something
// may write it: a client's change copies the target but leaves it
// borrowed (frozen), MutTarget owns it (not frozen); a document built by
// hand or a Clone freezes none.
func TestFrozenLuns(t *testing.T) {
	src := cowDoc(t)
	if src.FrozenLuns(src.Targets[cowTarget]) {
		t.Fatal("a document built by hand freezes a LUN map")
	}
	f := src.Fork()
	if !f.FrozenLuns(f.Targets[cowTarget]) {
		t.Fatal("a fresh fork does not freeze its target's LUN map")
	}
	f.MutClient(cowTarget, cowClient).GroupName = ""
	tg := f.Targets[cowTarget]
	if f.Frozen(tg) || !f.FrozenLuns(tg) {
		t.Fatalf("after a client's change the target is frozen (%v), its LUN map not (%v)", f.Frozen(tg), f.FrozenLuns(tg))
	}
	if f.MutTarget(cowTarget); f.FrozenLuns(f.Targets[cowTarget]) {
		t.Fatal("the LUN map of a target from MutTarget is frozen")
	}
	if c := f.Clone(); c.FrozenLuns(c.Targets[cowTarget]) {
		t.Fatal("a Clone freezes a LUN map")
	}
	if g := f.Fork(); !g.FrozenLuns(g.Targets[cowTarget]) {
		t.Fatal("a fork of the changed fork does not freeze the LUN map")
	}
}

// TestMapTargetLunCopiesOnlyTheLunMap: mapping a LUN copies the target
// and its LUN map, not the map of its clients, which a later change of a
// client copies then, leaving the source's as it was.
func TestMapTargetLunCopiesOnlyTheLunMap(t *testing.T) {
	src := cowDoc(t)
	fork := src.Fork()
	mustChange(t)(func() (bool, error) {
		changed, _, err := fork.MapTargetLun(cowTarget, "rbd/spare16", nil, "gw2", cowNow)
		return changed, err
	}())
	st, ft := src.Targets[cowTarget], fork.Targets[cowTarget]
	same := func(a, b any) bool { return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() }
	if st == ft || same(st.Disks, ft.Disks) {
		t.Fatal("the target or its LUN map is still shared")
	}
	if _, ok := st.Disks["rbd/spare16"]; ok {
		t.Fatal("the source's LUN map got the fork's LUN")
	}
	if !same(st.Clients, ft.Clients) || !same(st.Portals, ft.Portals) || !same(st.Groups, ft.Groups) {
		t.Error("mapping a LUN copied the target's clients, portals or groups map")
	}
	if fork.FrozenLuns(ft) {
		t.Error("the fork's own LUN map is reported frozen")
	}
	before := src.Marshal()
	c := fork.MutClient(cowTarget, cowClient)
	c.Luns = map[string]LunRef{}
	delete(fork.MutTarget(cowTarget).Clients, "iqn.1994-05.com.example:c00002")
	if same(st.Clients, ft.Clients) || !bytes.Equal(src.Marshal(), before) {
		t.Fatal("a client's change after the LUN's wrote the source's clients")
	}
}

// TestLowestFreeRef is lowestFreeLun of the ids refs use, for ids in and
// out of range, and full ranges.
func TestLowestFreeRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for step := range 2000 {
		maxID := 1 + rng.IntN(12)
		refs := map[string]LunRef{}
		used := map[int]bool{}
		for i := range rng.IntN(16) {
			id := rng.IntN(maxID+3) - 1
			if rng.IntN(3) == 0 {
				id = i // dense from 0: a full range now and then
			}
			refs[fmt.Sprint("d", i)] = LunRef{LunID: id}
			used[id] = true
		}
		gotID, gotOK := lowestFreeRef(refs, maxID)
		wantID, wantOK := lowestFreeLun(used, maxID)
		if gotID != wantID || gotOK != wantOK {
			t.Fatalf("step %d: maxID %d, refs %v: got %d %v, want %d %v", step, maxID, refs, gotID, gotOK, wantID, wantOK)
		}
	}
}

// TestForkSharesMapsUntilWritten: a fork shares its source's three maps,
// and the first write of one, by either document, copies only that map.
func TestForkSharesMapsUntilWritten(t *testing.T) {
	same := func(a, b any) bool { return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() }
	src := cowDoc(t)
	fork := src.Fork()
	if !same(src.Disks, fork.Disks) || !same(src.Gateways, fork.Gateways) || !same(src.Targets, fork.Targets) {
		t.Fatal("a fork copied its source's maps")
	}
	fork.MutDisk("rbd/img00001").WWN = "changed"
	if same(src.Disks, fork.Disks) || !same(src.Gateways, fork.Gateways) || !same(src.Targets, fork.Targets) {
		t.Fatal("a disk's change copied other maps, or not the disks map")
	}
	disks := fork.Disks
	fork.MutDisk("rbd/img00002").WWN = "changed"
	if !same(disks, fork.Disks) {
		t.Fatal("a second change copied the fork's own disks map again")
	}
	if src.Disks["rbd/img00001"].WWN == "changed" || src.Disks["rbd/img00002"].WWN == "changed" {
		t.Fatal("the source sees the fork's change")
	}
	// the source writes after the fork: its own copy, the fork keeps its map
	targets := fork.Targets
	if _, err := src.AddTarget("iqn.2003-01.com.example:later", cowNow); err != nil {
		t.Fatal(err)
	}
	if same(src.Targets, targets) || fork.Targets["iqn.2003-01.com.example:later"] != nil {
		t.Fatal("the source's new target reached the fork")
	}
}
