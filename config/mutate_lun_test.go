package config

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"
)

const (
	lunT  = "iqn.2003-01.com.example:t"
	lunT2 = "iqn.2003-01.com.example:t2"
	lunC1 = "iqn.1994-05.com.x:c1"
	lunC2 = "iqn.1994-05.com.x:c2"
	lunG1 = "gw1.example.test"
	lunG2 = "gw2.example.test"
)

var lunNow = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// lunDoc has two gateways (portals of lunT), disks rbd/d0..rbd/d<n-1>
// defined but exported by no target, a second target lunT2 and two clients.
func lunDoc(t *testing.T, n int) *Doc {
	t.Helper()
	d := NewDoc(lunNow)
	for _, gw := range []string{lunG1, lunG2} {
		d.Gateways[gw] = &Gateway{Created: Timestamp(lunNow), Updated: Timestamp(lunNow)}
	}
	tg, _ := d.AddTarget(lunT, lunNow)
	tg.IPList = []string{"192.0.2.1", "192.0.2.2"}
	tg.Portals[lunG1] = &Portal{PortalIPAddresses: []string{"192.0.2.1"}, GatewayIPList: tg.IPList, InactivePortalIPs: []string{"192.0.2.2"}, TPGs: 2}
	tg.Portals[lunG2] = &Portal{PortalIPAddresses: []string{"192.0.2.2"}, GatewayIPList: tg.IPList, InactivePortalIPs: []string{"192.0.2.1"}, TPGs: 2}
	if _, err := d.AddTarget(lunT2, lunNow); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := d.AddDisk(NewDisk{Pool: "rbd", Image: fmt.Sprintf("d%d", i), Backstore: "user:rbd", AllocatingHost: lunG1}, lunNow); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{lunC1, lunC2} {
		if _, err := d.AddClient(lunT, c, lunNow); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func disk(i int) string { return fmt.Sprintf("rbd/d%d", i) }

func intp(i int) *int { return &i }

func mustMap(t *testing.T, d *Doc, dk string, id *int) int {
	t.Helper()
	owner, err := d.LunOwner(lunT)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckTargetLunAdd(lunT, dk, id); err != nil {
		t.Fatalf("add %s: %v", dk, err)
	}
	changed, got, err := d.MapTargetLun(lunT, dk, id, owner, lunNow)
	if err != nil || !changed {
		t.Fatalf("map %s: %v %v", dk, changed, err)
	}
	return got
}

func wantRejection(t *testing.T, err error, msg string) {
	t.Helper()
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Msg != msg {
		t.Fatalf("got %v, want rejection %q", err, msg)
	}
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("%v: a client mistake must carry a 4xx kind", err)
	}
}

func TestMapTargetLunIDsAndOwners(t *testing.T) {
	d := lunDoc(t, 6)
	if got := mustMap(t, d, disk(0), nil); got != 0 {
		t.Fatalf("first disk got id %d", got)
	}
	if got := mustMap(t, d, disk(1), intp(5)); got != 5 {
		t.Fatalf("explicit id: %d", got)
	}
	// the lowest id the target leaves free, not highest+1
	if got := mustMap(t, d, disk(2), nil); got != 1 {
		t.Fatalf("gap not reused: %d", got)
	}
	tg := d.Targets[lunT]
	// owners alternate: fewest active LUNs, ties to the first name
	if *d.Disks[disk(0)].Owner != lunG1 || *d.Disks[disk(1)].Owner != lunG2 || *d.Disks[disk(2)].Owner != lunG1 {
		t.Fatalf("owners %s %s %s", *d.Disks[disk(0)].Owner, *d.Disks[disk(1)].Owner, *d.Disks[disk(2)].Owner)
	}
	if d.Gateways[lunG1].ActiveLuns != 2 || d.Gateways[lunG2].ActiveLuns != 1 {
		t.Fatalf("active luns %d %d", d.Gateways[lunG1].ActiveLuns, d.Gateways[lunG2].ActiveLuns)
	}
	if tg.Updated == nil || *tg.Updated != Timestamp(lunNow) {
		t.Fatal("target not stamped")
	}

	// Every gateway of a fan-out runs the map: a repeat is no change and
	// does not count the LUN twice; a new owner is recorded alone.
	if changed, id, err := d.MapTargetLun(lunT, disk(1), nil, lunG2, lunNow); err != nil || changed || id != 5 {
		t.Fatalf("repeat: %v %d %v", changed, id, err)
	}
	if changed, _, err := d.MapTargetLun(lunT, disk(1), nil, lunG1, lunNow); err != nil || !changed || *d.Disks[disk(1)].Owner != lunG1 || d.Gateways[lunG1].ActiveLuns != 2 {
		t.Fatalf("re-own: %v %v active %d", changed, err, d.Gateways[lunG1].ActiveLuns)
	}

	wantRejection(t, d.CheckTargetLunAdd(lunT, "rbd/ghost", nil), "Disk rbd/ghost is not defined in the configuration")
	wantRejection(t, d.CheckTargetLunAdd(lunT2, disk(0), nil), "Disk rbd/d0 cannot be used because it is already mapped on target "+lunT)
	wantRejection(t, d.CheckTargetLunAdd(lunT, disk(3), intp(5)), "Lun id 5 already in use")
	wantRejection(t, d.CheckTargetLunAdd(lunT, disk(3), intp(-1)), fmt.Sprintf("Lun id -1 is out of range (0-%d)", MaxTargetLunID))
	wantRejection(t, d.CheckTargetLunAdd(lunT, disk(3), intp(MaxTargetLunID+1)), fmt.Sprintf("Lun id %d is out of range (0-%d)", MaxTargetLunID+1, MaxTargetLunID))
	if err := d.CheckTargetLunAdd(lunT, disk(3), intp(MaxTargetLunID)); err != nil {
		t.Fatalf("top of the range refused: %v", err)
	}
	_, _, err := d.MapTargetLun(lunT, disk(3), nil, "gw9", lunNow)
	wantRejection(t, err, "Gateway gw9 does not exist in configuration")
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestUnmapTargetLun(t *testing.T) {
	d := lunDoc(t, 3)
	for i := range 3 {
		mustMap(t, d, disk(i), nil)
	}
	tg := d.Targets[lunT]
	if _, err := d.SetClientLuns(lunT, lunC2, []string{disk(0)}, lunNow); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetClientLuns(lunT, lunC1, []string{disk(0)}, lunNow); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ApplyGroup(lunT, "g", nil, []string{disk(1)}, lunNow); err != nil {
		t.Fatal(err)
	}
	before := d.Clone()
	_, err := d.UnmapTargetLun(lunT, disk(0), lunNow)
	wantRejection(t, err, "Unable to delete rbd/d0 - allocated to "+lunC1)
	_, err = d.UnmapTargetLun(lunT, disk(1), lunNow)
	wantRejection(t, err, "Disk rbd/d1 belongs to group g")
	wantRejection(t, d.CheckTargetLunRemove(lunT, "rbd/ghost"), "Disk rbd/ghost is not defined in the configuration")
	wantRejection(t, d.CheckTargetLunRemove(lunT2, disk(2)), "Disk rbd/d2 is not defined in target "+lunT2)
	if string(before.Marshal()) != string(d.Marshal()) {
		t.Fatal("a refused unmap changed the document")
	}

	owner := *d.Disks[disk(2)].Owner
	active := d.Gateways[owner].ActiveLuns
	if changed, err := d.UnmapTargetLun(lunT, disk(2), lunNow); err != nil || !changed {
		t.Fatal(changed, err)
	}
	if _, ok := tg.Disks[disk(2)]; ok || d.Disks[disk(2)].Owner != nil || d.Gateways[owner].ActiveLuns != active-1 {
		t.Fatalf("unmap left %v owner %v active %d", tg.Disks, d.Disks[disk(2)].Owner, d.Gateways[owner].ActiveLuns)
	}
	if changed, err := d.UnmapTargetLun(lunT, disk(2), lunNow); err != nil || changed {
		t.Fatalf("repeat: %v %v", changed, err)
	}
	// active_luns never goes negative, as upstream's floor
	mustMap(t, d, disk(2), nil)
	for _, g := range d.Gateways {
		g.ActiveLuns = 0
	}
	if _, err := d.UnmapTargetLun(lunT, disk(2), lunNow); err != nil {
		t.Fatal(err)
	}
	for name, g := range d.Gateways {
		if g.ActiveLuns != 0 {
			t.Fatalf("%s active %d", name, g.ActiveLuns)
		}
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func lunIDs(c *Client) map[string]int {
	out := map[string]int{}
	for k, v := range c.Luns {
		out[k] = v.LunID
	}
	return out
}

func TestSetClientLunsIDSelection(t *testing.T) {
	d := lunDoc(t, 6)
	mustMap(t, d, disk(0), intp(3))
	mustMap(t, d, disk(1), intp(0))
	mustMap(t, d, disk(2), intp(7))
	mustMap(t, d, disk(3), intp(300))
	mustMap(t, d, disk(4), intp(1))
	tg := d.Targets[lunT]
	c1, c2 := tg.Clients[lunC1], tg.Clients[lunC2]

	// The target-level id while no client of the target uses it.
	if changed, err := d.SetClientLuns(lunT, lunC1, []string{disk(0), disk(2)}, lunNow); err != nil || !changed {
		t.Fatal(changed, err)
	}
	if got := lunIDs(c1); !maps.Equal(got, map[string]int{disk(0): 3, disk(2): 7}) {
		t.Fatalf("c1 %v", got)
	}
	// Another client sharing disk 0: id 3 is used by c1, so c2 gets its
	// lowest free id (upstream's quirk: different ids for one disk).
	// Disk 3's target id 300 is beyond the mapped range: the lowest free.
	if _, err := d.SetClientLuns(lunT, lunC2, []string{disk(0), disk(3), disk(1)}, lunNow); err != nil {
		t.Fatal(err)
	}
	if got := lunIDs(c2); !maps.Equal(got, map[string]int{disk(0): 1, disk(3): 2, disk(1): 0}) {
		t.Fatalf("c2 %v", got)
	}
	// Kept disks keep their ids; a disk removed in the same request does not
	// free its id for an added one.
	if _, err := d.SetClientLuns(lunT, lunC1, []string{disk(2), disk(4), disk(5)}, lunNow); err == nil {
		t.Fatal("disk 5 is not exported by the target")
	} else {
		wantRejection(t, err, "Non-existent images ['rbd.d5'] requested for "+lunC1)
	}
	if _, err := d.SetClientLuns(lunT, lunC1, []string{disk(2), disk(4)}, lunNow); err != nil {
		t.Fatal(err)
	}
	if got := lunIDs(c1); !maps.Equal(got, map[string]int{disk(2): 7, disk(4): 0}) {
		t.Fatalf("c1 after swap %v (disk 4's id 1 is used by c2; 3 was c1's own)", got)
	}
	if changed, err := d.SetClientLuns(lunT, lunC1, []string{disk(4), disk(2)}, lunNow); err != nil || changed {
		t.Fatalf("same set in another order: %v %v", changed, err)
	}
	_, err := d.SetClientLuns(lunT, lunC1, []string{"rbd/ghost"}, lunNow)
	wantRejection(t, err, "Non-existent images ['rbd/ghost'] requested for "+lunC1)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}

	// A group member's LUNs belong to the group.
	if _, err := d.SetClientLuns(lunT, lunC2, nil, lunNow); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ApplyGroup(lunT, "g", []string{lunC2}, []string{disk(0)}, lunNow); err != nil {
		t.Fatal(err)
	}
	if changed, err := d.SetClientLuns(lunT, lunC2, []string{disk(1)}, lunNow); err != nil || changed || len(c2.Luns) != 1 || c2.Luns[disk(0)].LunID != 3 {
		t.Fatalf("group member changed: %v %v %v", changed, err, c2.Luns)
	}
	if _, err := d.SetClientLuns(lunT, "iqn.1994-05.com.x:ghost", nil, lunNow); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown client: %v", err)
	}
}

func TestSetClientLunsRange(t *testing.T) {
	const n = MaxLunID + 2
	d := lunDoc(t, n)
	var images []string
	for i := range n {
		mustMap(t, d, disk(i), nil)
		images = append(images, disk(i))
	}
	if _, err := d.SetClientLuns(lunT, lunC1, images[:MaxLunID+1], lunNow); err != nil {
		t.Fatal(err)
	}
	c := d.Targets[lunT].Clients[lunC1]
	seen := map[int]bool{}
	for _, ref := range c.Luns {
		if ref.LunID < 0 || ref.LunID > MaxLunID || seen[ref.LunID] {
			t.Fatalf("id %d reused or out of range", ref.LunID)
		}
		seen[ref.LunID] = true
	}
	before := d.Clone().Marshal()
	_, err := d.SetClientLuns(lunT, lunC1, images, lunNow)
	wantRejection(t, err, fmt.Sprintf("no free LUN id (0-255) left for %s", lunC1))
	if string(before) != string(d.Marshal()) {
		t.Fatal("a refused mapping changed the document")
	}
	// The 257th disk of the target has a target id above 255.
	if id := d.Targets[lunT].Disks[disk(n-1)].LunID; id != MaxLunID+1 {
		t.Fatalf("target id %d", id)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestClientLunsAfter(t *testing.T) {
	c := &Client{Luns: map[string]LunRef{"rbd/b": {LunID: 1}, "rbd/a": {LunID: 0}}}
	if got, ok := ClientLunsAfter(c, "rbd/c", true); !ok || fmt.Sprint(got) != "[rbd/a rbd/b rbd/c]" {
		t.Fatal(got, ok)
	}
	if got, ok := ClientLunsAfter(c, "rbd/a", false); !ok || fmt.Sprint(got) != "[rbd/b]" {
		t.Fatal(got, ok)
	}
	if _, ok := ClientLunsAfter(c, "rbd/z", false); ok {
		t.Fatal("removing an unmapped disk accepted")
	}
	if len(c.Luns) != 2 {
		t.Fatal("input changed")
	}
}

func TestPyList(t *testing.T) {
	if got := pyList([]string{"rbd.a", `it's\x`}); got != `['rbd.a', 'it\'s\\x']` {
		t.Fatal(got)
	}
}

// TestSetClientLunsTargetIDs: a disk newly mapped to a client takes its
// target-level LUN id unless some client of the target maps that id
// already, then the lowest id the client has free.
func TestSetClientLunsTargetIDs(t *testing.T) {
	const iqn = "iqn.2003-01.com.example.bench:target"
	d := scaleDoc(t, 16) // disk i is target LUN i; client c maps disks 4c..4c+3 as 0..3
	cl := func(c int) string { return fmt.Sprintf("iqn.1994-05.com.example:c%05d", c) }
	img := func(i int) string { return fmt.Sprintf("rbd/img%05d", i) }
	if _, err := d.SetClientLuns(iqn, cl(1), []string{img(4), img(5), img(6), img(7), img(9), img(2), img(11)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for id, ref := range d.Targets[iqn].Clients[cl(1)].Luns {
		got[id] = ref.LunID
	}
	// 9 and 11 are free everywhere; 2 is client c0's (and c1's own) id 2
	want := map[string]int{img(4): 0, img(5): 1, img(6): 2, img(7): 3, img(9): 9, img(11): 11, img(2): 4}
	if !maps.Equal(got, want) {
		t.Fatalf("client LUN ids %v, want %v", got, want)
	}
	// client c2 maps disks 8..11 as 0..3: disk 13 takes its free target
	// id, disk 14 (moved to target id 9, which c1 now maps) the lowest id
	// c2 has free
	d.Targets[iqn].Disks[img(14)] = LunRef{LunID: 9}
	if _, err := d.SetClientLuns(iqn, cl(2), []string{img(8), img(9), img(10), img(11), img(13), img(14)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got = map[string]int{}
	for id, ref := range d.Targets[iqn].Clients[cl(2)].Luns {
		got[id] = ref.LunID
	}
	want = map[string]int{img(8): 0, img(9): 1, img(10): 2, img(11): 3, img(13): 13, img(14): 4}
	if !maps.Equal(got, want) {
		t.Fatalf("client LUN ids %v, want %v", got, want)
	}
}
