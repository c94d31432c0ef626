package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidateAcceptsRealDocuments(t *testing.T) {
	for _, name := range []string{"upstream-gateway.conf.json", "v3-two-node.golden.json",
		"v9-rolling.node1.golden.json", "v9-rolling.node2.golden.json", "v10.golden.json"} {
		doc, err := Parse(readTestdata(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	const iqn = "iqn.2003-01.com.example.iscsi-gw:lab"
	const host = "iqn.1994-05.com.example:host-a"
	const other = "iqn.1994-05.com.example:host-c"
	tp := `targets["` + iqn + `"]`
	cases := []struct {
		name   string
		mutate func(d *Doc)
		want   string
	}{
		{"old version", func(d *Doc) { d.Version = 10 }, "version: must be at least 11"},
		{"negative epoch", func(d *Doc) { d.Epoch = -1 }, "epoch: must not be negative"},
		{"null disk", func(d *Doc) { d.Disks["rbd/x"] = nil }, `disks["rbd/x"]: is null`},
		{"null gateway", func(d *Doc) { d.Gateways["g"] = nil }, `gateways["g"]: is null`},
		{"null target", func(d *Doc) { d.Targets["t"] = nil }, `targets["t"]: is null`},
		{"undefined target disk", func(d *Doc) { d.Targets[iqn].Disks["rbd/nope"] = LunRef{LunID: 9} },
			tp + `.disks["rbd/nope"]: disk is not defined in disks`},
		{"lun range", func(d *Doc) { d.Targets[iqn].Disks["ssd/fast"] = LunRef{LunID: 16384} },
			tp + `.disks["ssd/fast"].lun_id: must be between 0 and 16383, got 16384`},
		{"negative lun", func(d *Doc) { d.Targets[iqn].Disks["ssd/fast"] = LunRef{LunID: -1} },
			tp + `.disks["ssd/fast"].lun_id: must be between 0 and 16383, got -1`},
		{"duplicate lun", func(d *Doc) { d.Targets[iqn].Disks["ssd/fast"] = LunRef{LunID: 0} },
			tp + `.disks["ssd/fast"].lun_id: 0 is also used by "rbd/disk_1"`},
		{"client lun not in target", func(d *Doc) {
			delete(d.Targets[iqn].Disks, "ssd/fast")
		}, tp + `.clients["` + other + `"].luns["ssd/fast"]: disk is not exported by the target`},
		{"client duplicate lun", func(d *Doc) {
			d.Targets[iqn].Clients[host].Luns["ssd/fast"] = LunRef{LunID: 1}
		}, tp + `.clients["` + host + `"].luns["ssd/fast"].lun_id: 1 is also used by "rbd/vm/boot"`},
		{"group disk not in target", func(d *Doc) {
			d.Targets[iqn].Groups["cluster-ab"].Disks["rbd/other"] = LunRef{LunID: 5}
		}, tp + `.groups["cluster-ab"].disks["rbd/other"]: disk is not exported by the target`},
		{"group member not a client", func(d *Doc) {
			g := d.Targets[iqn].Groups["cluster-ab"]
			g.Members = append(g.Members, "iqn.x:ghost")
		}, tp + `.groups["cluster-ab"].members[1]: "iqn.x:ghost" is not a client of the target`},
		{"group member wrong group_name", func(d *Doc) {
			g := d.Targets[iqn].Groups["cluster-ab"]
			g.Members = append(g.Members, other)
		}, tp + `.groups["cluster-ab"].members[1]: client "` + other + `" has group_name ""`},
		{"client group missing", func(d *Doc) {
			d.Targets[iqn].Clients[other].GroupName = "nogroup"
		}, tp + `.clients["` + other + `"].group_name: client is not a member of group "nogroup"`},
		{"portal gateway missing", func(d *Doc) { delete(d.Gateways, "node2.lab.example") },
			tp + `.portals["node2.lab.example"]: gateway is not defined in gateways`},
		{"ip_list missing", func(d *Doc) { d.Targets[iqn].IPList = nil },
			tp + `.ip_list: missing although the target has portals`},
		{"portal ip outside ip_list", func(d *Doc) { d.Targets[iqn].IPList = []string{"10.0.0.11"} },
			tp + `.portals["node2.lab.example"].portal_ip_addresses[0]: "10.0.0.12" is not in the target ip_list`},
		{"unencodable control", func(d *Doc) { d.Disks["ssd/fast"].Controls["bad"] = make(chan int) },
			"cannot encode value of type chan int"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := Parse(readTestdata(t, "v3-two-node.golden.json"))
			if err != nil {
				t.Fatal(err)
			}
			c.mutate(doc)
			err = doc.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("%v is not a *FieldError", err)
			}
		})
	}
}

func TestValidateReportsEveryViolation(t *testing.T) {
	doc := NewDoc(t1)
	doc.Version = 1
	doc.Epoch = -5
	err := doc.Validate()
	if err == nil || !strings.Contains(err.Error(), "version:") || !strings.Contains(err.Error(), "epoch:") {
		t.Errorf("error = %v", err)
	}
}

// A valid document is checked in map order, an invalid one again in sorted
// order: its errors must still come complete and in one stable order,
// whatever order the maps give, as the full sorted check gives them.
func TestValidateErrorsStableOrder(t *testing.T) {
	d := scaleDoc(t, 64)
	tg := d.Targets["iqn.2003-01.com.example.bench:target"]
	tg.Disks["rbd/img00005"] = LunRef{LunID: 7}   // a duplicate TPG LUN id
	tg.Disks["rbd/img00009"] = LunRef{LunID: -1}  // out of range
	tg.Disks["rbd/missing"] = LunRef{LunID: 9000} // not in disks
	tg.Clients["iqn.1994-05.com.example:c00003"].Luns["rbd/img00063"] = LunRef{LunID: 1}
	tg.Clients["iqn.1994-05.com.example:c00004"].GroupName = "nogroup"
	d.Disks["rbd/img00010"].Pool = "bad pool"
	d.Gateways["gw x"] = nil

	want := validator{sorted: true}
	want.doc(d)
	if len(want.errs) != 8 {
		t.Fatalf("the sorted check found %d errors, want 8: %v", len(want.errs), want.errs)
	}
	wantText := fmt.Sprintf("config: invalid document: %v", errors.Join(want.errs...))
	for range 20 {
		if err := d.Validate(); err == nil || err.Error() != wantText {
			t.Fatalf("Validate:\n%v\nwant:\n%s", err, wantText)
		}
	}
}
