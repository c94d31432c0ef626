package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"
)

const (
	gwTarget = "iqn.2003-01.com.example.iscsi-gw:test"
	gwA      = "a.example.test"
	gwB      = "b.example.test"
	gwC      = "c.example.test"
)

var (
	gwT0 = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	gwT1 = gwT0.Add(time.Hour)
)

// subtree returns the generic JSON of doc at keys, as the stored bytes hold it.
func subtree(t *testing.T, doc *Doc, keys ...string) any {
	t.Helper()
	m, err := ParseAny(doc.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	var cur any = m
	for _, k := range keys {
		cur = cur.(map[string]any)[k]
	}
	return cur
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAddTargetGatewayMatchesUpstream removes the gateway from the document
// upstream 3.9 wrote for one gateway and adds it back: the portal, ip_list
// and gateway entry must come out as upstream wrote them.
func TestAddTargetGatewayMatchesUpstream(t *testing.T) {
	raw, err := os.ReadFile("testdata/upstream-gateway.conf.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	const gw, ip = "igw1.fullstack.test", "192.0.2.10"
	d := want.Clone()
	tg := d.Targets[gwTarget]
	delete(tg.Portals, gw)
	tg.IPList = nil
	delete(d.Gateways, gw)

	changed, err := d.AddTargetGateway(gwTarget, gw, []string{ip}, []string{ip}, gwT0)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	for _, k := range []string{"portals", "ip_list"} {
		if got, exp := jsonOf(t, subtree(t, d, "targets", gwTarget, k)), jsonOf(t, subtree(t, want, "targets", gwTarget, k)); got != exp {
			t.Errorf("%s:\n got %s\nwant %s", k, got, exp)
		}
	}
	// Upstream's entry has active_luns 1 and a later "updated" because a
	// LUN was mapped afterwards; at join time it is the seed.
	g := d.Gateways[gw]
	if g.ActiveLuns != 0 || g.Created != Timestamp(gwT0) || g.Updated != Timestamp(gwT0) {
		t.Errorf("gateway entry %+v", g)
	}
	if got := jsonOf(t, subtree(t, d, "gateways", gw)); got != `{"active_luns":0,"created":"2024/05/06 07:08:09","updated":"2024/05/06 07:08:09"}` {
		t.Errorf("gateway entry bytes %s", got)
	}
	if *d.Targets[gwTarget].Updated != Timestamp(gwT0) {
		t.Errorf("target not stamped")
	}
}

func seedGatewayDoc() *Doc {
	d := NewDoc(gwT0)
	if _, err := d.AddTarget(gwTarget, gwT0); err != nil {
		panic(err)
	}
	return d
}

// threeGateways joins a, b and c in turn, each with one IP, as three PUT
// /api/gateway calls do.
func threeGateways(t *testing.T) *Doc {
	t.Helper()
	d := seedGatewayDoc()
	steps := []struct {
		gw   string
		list []string
	}{
		{gwA, []string{"192.0.2.1"}},
		{gwB, []string{"192.0.2.1", "192.0.2.2"}},
		{gwC, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
	}
	for _, s := range steps {
		changed, err := d.AddTargetGateway(gwTarget, s.gw, s.list, s.list[len(s.list)-1:], gwT0)
		if err != nil || !changed {
			t.Fatalf("add %s: changed=%v err=%v", s.gw, changed, err)
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("after %s: %v", s.gw, err)
		}
	}
	return d
}

func TestAddTargetGatewayThree(t *testing.T) {
	d := threeGateways(t)
	want := `{` +
		`"a.example.test":{"gateway_ip_list":["192.0.2.1","192.0.2.2","192.0.2.3"],"inactive_portal_ips":["192.0.2.2","192.0.2.3"],"portal_ip_addresses":["192.0.2.1"],"tpgs":3},` +
		`"b.example.test":{"gateway_ip_list":["192.0.2.1","192.0.2.2","192.0.2.3"],"inactive_portal_ips":["192.0.2.1","192.0.2.3"],"portal_ip_addresses":["192.0.2.2"],"tpgs":3},` +
		`"c.example.test":{"gateway_ip_list":["192.0.2.1","192.0.2.2","192.0.2.3"],"inactive_portal_ips":["192.0.2.1","192.0.2.2"],"portal_ip_addresses":["192.0.2.3"],"tpgs":3}}`
	if got := jsonOf(t, subtree(t, d, "targets", gwTarget, "portals")); got != want {
		t.Fatalf("portals\n got %s\nwant %s", got, want)
	}
	if got := jsonOf(t, subtree(t, d, "targets", gwTarget, "ip_list")); got != `["192.0.2.1","192.0.2.2","192.0.2.3"]` {
		t.Fatalf("ip_list %s", got)
	}
	if len(d.Gateways) != 3 {
		t.Fatalf("gateways %v", d.Gateways)
	}

	// The same request again (a retried PUT, or the coordinator's guard
	// after the new gateway committed) changes nothing.
	before := d.Marshal()
	changed, err := d.AddTargetGateway(gwTarget, gwC, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, []string{"192.0.2.3"}, gwT1)
	if err != nil || changed || !bytes.Equal(before, d.Marshal()) {
		t.Fatalf("repeat: changed=%v err=%v", changed, err)
	}
}

// TestAddTargetGatewayMultiIP: a gateway with two portal IPs, the second
// gateway of the spec's two-node layout.
func TestAddTargetGatewayMultiIP(t *testing.T) {
	d := seedGatewayDoc()
	if _, err := d.AddTargetGateway(gwTarget, gwA, []string{"192.0.2.1"}, []string{"192.0.2.1"}, gwT0); err != nil {
		t.Fatal(err)
	}
	list := []string{"192.0.2.1", "2001:db8::2", "192.0.2.2"}
	if _, err := d.AddTargetGateway(gwTarget, gwB, list, []string{"2001:db8::2", "192.0.2.2"}, gwT0); err != nil {
		t.Fatal(err)
	}
	a, b := d.Targets[gwTarget].Portals[gwA], d.Targets[gwTarget].Portals[gwB]
	if !reflect.DeepEqual(a.InactivePortalIPs, []string{"2001:db8::2", "192.0.2.2"}) || a.TPGs != 3 ||
		!reflect.DeepEqual(b.InactivePortalIPs, []string{"192.0.2.1"}) || b.TPGs != 3 {
		t.Fatalf("a=%+v b=%+v", a, b)
	}
	if _, err := d.RemoveTargetGateways(gwTarget, gwB, gwT1); err != nil {
		t.Fatal(err)
	}
	if a.TPGs != 1 || !reflect.DeepEqual(a.GatewayIPList, []string{"192.0.2.1"}) || len(a.InactivePortalIPs) != 0 {
		t.Fatalf("after removing the two-IP gateway: %+v", a)
	}
}

func TestAddTargetGatewayRefusals(t *testing.T) {
	var rej *Rejection
	for _, c := range []struct {
		name       string
		iqn, gw    string
		list, act  []string
		wantMsg    string
		wantKind   error
		wantReject bool
	}{
		{"unknown target", "iqn.2003-01.com.example:nope", gwC, []string{"192.0.2.9"}, []string{"192.0.2.9"}, "", ErrNotFound, false},
		{"no local ip", gwTarget, gwC, []string{"192.0.2.1", "192.0.2.2", "192.0.2.9"}, nil, GatewayNoLocalIP, ErrConflict, true},
		{"ip of another portal", gwTarget, gwC, []string{"192.0.2.1", "192.0.2.2"}, []string{"192.0.2.2"}, GatewayIPInUse, ErrConflict, true},
		{"duplicate ip in list", gwTarget, gwC, []string{"192.0.2.1", "192.0.2.2", "192.0.2.9", "192.0.2.9"}, []string{"192.0.2.9"}, GatewayIPInUse, ErrConflict, true},
		{"stale list", gwTarget, gwC, []string{"192.0.2.1", "192.0.2.9"}, []string{"192.0.2.9"}, "gateway IP list 192.0.2.1,192.0.2.9 lacks portal IP 192.0.2.2 of b.example.test", ErrConflict, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := seedGatewayDoc()
			if _, err := d.AddTargetGateway(gwTarget, gwA, []string{"192.0.2.1"}, []string{"192.0.2.1"}, gwT0); err != nil {
				t.Fatal(err)
			}
			if _, err := d.AddTargetGateway(gwTarget, gwB, []string{"192.0.2.1", "192.0.2.2"}, []string{"192.0.2.2"}, gwT0); err != nil {
				t.Fatal(err)
			}
			before := d.Marshal()
			changed, err := d.AddTargetGateway(c.iqn, c.gw, c.list, c.act, gwT1)
			if changed || !errors.Is(err, c.wantKind) || errors.As(err, &rej) != c.wantReject {
				t.Fatalf("changed=%v err=%v", changed, err)
			}
			if c.wantReject && rej.Msg != c.wantMsg {
				t.Fatalf("message %q, want %q", rej.Msg, c.wantMsg)
			}
			if !bytes.Equal(before, d.Marshal()) {
				t.Fatal("a refused change modified the document")
			}
		})
	}
}

func TestRemoveTargetGateways(t *testing.T) {
	d := threeGateways(t)
	tg := d.Targets[gwTarget]
	// b owns disk1; a already owns one LUN, so c (0 active LUNs) takes it.
	owner := gwB
	d.Disks["rbd/disk1"] = &Disk{Pool: "rbd", Image: "disk1", Backstore: "user:rbd", BackstoreObjectName: "rbd.disk1", Owner: &owner, Controls: map[string]any{}, Created: Timestamp(gwT0), Updated: Timestamp(gwT0)}
	aOwned := gwA
	d.Disks["rbd/disk2"] = &Disk{Pool: "rbd", Image: "disk2", Backstore: "user:rbd", BackstoreObjectName: "rbd.disk2", Owner: &aOwned, Controls: map[string]any{}, Created: Timestamp(gwT0), Updated: Timestamp(gwT0)}
	d.Gateways[gwA].ActiveLuns = 1
	d.Gateways[gwB].ActiveLuns = 1
	tg.Disks["rbd/disk1"] = LunRef{LunID: 0}
	tg.Disks["rbd/disk2"] = LunRef{LunID: 1}
	tg.Clients["iqn.1994-05.com.redhat:c1"] = NewClient()

	changed, err := d.RemoveTargetGateways(gwTarget, gwB, gwT1)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	want := `{` +
		`"a.example.test":{"gateway_ip_list":["192.0.2.1","192.0.2.3"],"inactive_portal_ips":["192.0.2.3"],"portal_ip_addresses":["192.0.2.1"],"tpgs":2},` +
		`"c.example.test":{"gateway_ip_list":["192.0.2.1","192.0.2.3"],"inactive_portal_ips":["192.0.2.1"],"portal_ip_addresses":["192.0.2.3"],"tpgs":2}}`
	if got := jsonOf(t, subtree(t, d, "targets", gwTarget, "portals")); got != want {
		t.Fatalf("portals\n got %s\nwant %s", got, want)
	}
	if got := jsonOf(t, tg.IPList); got != `["192.0.2.1","192.0.2.3"]` {
		t.Fatalf("ip_list %s", got)
	}
	if d.Gateways[gwB] != nil {
		t.Fatal("unused gateway kept")
	}
	if o := d.Disks["rbd/disk1"].Owner; o == nil || *o != gwC || d.Gateways[gwC].ActiveLuns != 1 || d.Gateways[gwC].Updated != Timestamp(gwT1) || d.Disks["rbd/disk1"].Updated != Timestamp(gwT1) {
		t.Fatalf("disk1 owner %v, c %+v", o, d.Gateways[gwC])
	}
	if *d.Disks["rbd/disk2"].Owner != gwA || d.Disks["rbd/disk2"].Updated != Timestamp(gwT0) {
		t.Fatal("a disk with a live owner was touched")
	}
	if len(tg.Clients) != 1 || len(tg.Disks) != 2 {
		t.Fatal("objects dropped while portals remain")
	}

	// Removing a gateway that is not a portal changes nothing.
	before := d.Marshal()
	if changed, err := d.RemoveTargetGateways(gwTarget, gwB, gwT1); err != nil || changed || !bytes.Equal(before, d.Marshal()) {
		t.Fatalf("repeat: changed=%v err=%v", changed, err)
	}

	for _, gw := range []string{gwA, gwC} {
		if _, err := d.RemoveTargetGateways(gwTarget, gw, gwT1); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	// The target stays, emptied, with an empty ip_list, as upstream leaves it.
	if got := jsonOf(t, subtree(t, d, "targets", gwTarget)); got != `{"acl_enabled":true,"auth":{"mutual_password":"","mutual_password_encryption_enabled":false,"mutual_username":"","password":"","password_encryption_enabled":false,"username":""},"clients":{},"controls":{},"created":"2024/05/06 07:08:09","disks":{},"groups":{},"ip_list":[],"portals":{},"updated":"2024/05/06 08:08:09"}` {
		t.Fatalf("emptied target %s", got)
	}
	if len(d.Gateways) != 0 || d.Disks["rbd/disk1"].Owner != nil || d.Disks["rbd/disk2"].Owner != nil {
		t.Fatalf("gateways %v, owners %v %v", d.Gateways, d.Disks["rbd/disk1"].Owner, d.Disks["rbd/disk2"].Owner)
	}
}

// TestGatewayAddRemoveRoundTrip: joining and leaving again restores every
// other portal exactly.
func TestGatewayAddRemoveRoundTrip(t *testing.T) {
	d := seedGatewayDoc()
	if _, err := d.AddTargetGateway(gwTarget, gwA, []string{"192.0.2.1"}, []string{"192.0.2.1"}, gwT0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddTargetGateway(gwTarget, gwB, []string{"192.0.2.1", "192.0.2.2"}, []string{"192.0.2.2"}, gwT0); err != nil {
		t.Fatal(err)
	}
	before := jsonOf(t, subtree(t, d, "targets", gwTarget, "portals"))
	if _, err := d.AddTargetGateway(gwTarget, gwC, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, []string{"192.0.2.3"}, gwT1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RemoveTargetGateways(gwTarget, gwC, gwT1); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, subtree(t, d, "targets", gwTarget, "portals")); got != before {
		t.Fatalf("\n got %s\nwant %s", got, before)
	}
}

// TestRemoveTargetGatewaysKeepsSharedGateway: a gateway that still serves
// another target stays in gateways.
func TestRemoveTargetGatewaysKeepsSharedGateway(t *testing.T) {
	d := seedGatewayDoc()
	const other = "iqn.2003-01.com.example.iscsi-gw:other"
	if _, err := d.AddTarget(other, gwT0); err != nil {
		t.Fatal(err)
	}
	for _, iqn := range []string{gwTarget, other} {
		if _, err := d.AddTargetGateway(iqn, gwA, []string{"192.0.2.1"}, []string{"192.0.2.1"}, gwT0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.RemoveTargetGateways(gwTarget, gwA, gwT1); err != nil {
		t.Fatal(err)
	}
	if d.Gateways[gwA] == nil || d.Targets[other].Portals[gwA] == nil {
		t.Fatal("gateway still used by another target was removed")
	}
}
