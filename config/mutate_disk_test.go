package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAddDisk(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	d := NewDoc(now)
	disk, err := d.AddDisk(NewDisk{Pool: "rbd", Image: "img", PoolID: 3, WWN: "w1", Backstore: "user:rbd", AllocatingHost: "gw1",
		Controls: map[string]any{"max_data_area_mb": 64}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Disks["rbd/img"] != disk || disk.BackstoreObjectName != "rbd.img" || *disk.AllocatingHost != "gw1" ||
		disk.Owner != nil || disk.Created != Timestamp(now) || disk.Updated != Timestamp(now) || disk.PoolID != 3 {
		t.Fatalf("disk %+v", disk)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	// the document's bytes carry every upstream key, controls included
	raw := string(d.Marshal())
	for _, want := range []string{`"allocating_host": "gw1"`, `"backstore_object_name": "rbd.img"`, `"max_data_area_mb": 64`, `"pool_id": 3`, `"wwn": "w1"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("missing %s in\n%s", want, raw)
		}
	}
	noControls, err := d.AddDisk(NewDisk{Pool: "rbd", Image: "img2", Backstore: "user:rbd", AllocatingHost: "gw1"}, now)
	if err != nil || noControls.Controls == nil {
		t.Fatalf("nil controls must be stored as {}: %+v %v", noControls, err)
	}

	var rej *Rejection
	_, err = d.AddDisk(NewDisk{Pool: "rbd", Image: "img", Backstore: "user:rbd"}, now)
	if !errors.As(err, &rej) || rej.Msg != "at least one rbd image(s) with that name/prefix is already defined" || !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	_, err = d.AddDisk(NewDisk{Pool: "rbd", Image: "other", WWN: "w1", Backstore: "user:rbd"}, now)
	if !errors.As(err, &rej) || rej.Msg != "WWN w1 is already in use by rbd/img" {
		t.Fatalf("duplicate wwn: %v", err)
	}
	for _, bad := range []NewDisk{{Pool: "", Image: "x"}, {Pool: "rbd", Image: ""}, {Pool: "a/b", Image: "c"}} {
		if _, err := d.AddDisk(bad, now); err == nil {
			t.Errorf("AddDisk(%+v) accepted", bad)
		}
	}
	if len(d.Disks) != 2 {
		t.Fatalf("refused adds changed the document: %v", sortedKeys(d.Disks))
	}
}

func TestBackstoreObjectName(t *testing.T) {
	now := time.Unix(0, 0)
	d := NewDoc(now)
	for _, c := range []struct{ pool, image, want string }{
		{"a.b", "c", "a.b.c"},
		{"a", "b.c", "a.b.c.1"},
		{"a.b.c", "1", "a.b.c.1.1"},
		{"a.b", "c.1", "a.b.c.1.2"},
		{"rbd", "x", "rbd.x"},
	} {
		disk, err := d.AddDisk(NewDisk{Pool: c.pool, Image: c.image, Backstore: "user:rbd"}, now)
		if err != nil || disk.BackstoreObjectName != c.want {
			t.Errorf("%s/%s: %q %v, want %q", c.pool, c.image, disk.BackstoreObjectName, err, c.want)
		}
	}
}

func diskTestDoc(t *testing.T) *Doc {
	t.Helper()
	now := time.Unix(0, 0)
	d := NewDoc(now)
	for _, img := range []string{"free", "mapped", "shared"} {
		if _, err := d.AddDisk(NewDisk{Pool: "rbd", Image: img, Backstore: "user:rbd", AllocatingHost: "gw1"}, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, iqn := range []string{"iqn.2003-01.com.example:t2", "iqn.2003-01.com.example:t1"} {
		tg, _ := d.AddTarget(iqn, now)
		tg.Disks["rbd/mapped"] = LunRef{LunID: 0}
		tg.Disks["rbd/shared"] = LunRef{LunID: 1}
	}
	for _, c := range []string{"iqn.1994-05.com.x:c2", "iqn.1994-05.com.x:c1"} {
		cl, _ := d.AddClient("iqn.2003-01.com.example:t1", c, now)
		cl.Luns["rbd/shared"] = LunRef{LunID: 0}
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheckDiskDeletable(t *testing.T) {
	d := diskTestDoc(t)
	for id, want := range map[string]string{
		"rbd/free":   "",
		"rbd/nope":   "rbd rbd/nope is not defined to the configuration",
		"rbd/mapped": "Unable to delete rbd/mapped. Mapped to: iqn.2003-01.com.example:t1,iqn.2003-01.com.example:t2",
		"rbd/shared": "Unable to delete rbd/shared. Allocated to: iqn.1994-05.com.x:c1,iqn.1994-05.com.x:c2",
	} {
		err := d.CheckDiskDeletable(id)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
}

func TestRemoveDisk(t *testing.T) {
	d := diskTestDoc(t)
	before := string(d.Marshal())
	err := d.RemoveDisk("rbd/mapped")
	if err == nil || err.Error() != "Unable to delete rbd/mapped - allocated to iqn.2003-01.com.example:t1" || !errors.Is(err, ErrConflict) {
		t.Fatalf("mapped: %v", err)
	}
	if err := d.RemoveDisk("rbd/nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if string(d.Marshal()) != before {
		t.Fatal("refused removals changed the document")
	}
	if err := d.RemoveDisk("rbd/free"); err != nil {
		t.Fatal(err)
	}
	if d.Disks["rbd/free"] != nil || len(d.Disks) != 2 {
		t.Fatalf("disks %v", sortedKeys(d.Disks))
	}
}

func TestSetDiskControls(t *testing.T) {
	d := diskTestDoc(t)
	later := time.Unix(3600, 0)
	ctl := map[string]any{"hw_max_sectors": 512}
	if err := d.SetDiskControls("rbd/free", ctl, later); err != nil {
		t.Fatal(err)
	}
	ctl["hw_max_sectors"] = 1 // the document keeps its own copy
	if got := d.Disks["rbd/free"]; fmt.Sprint(got.Controls) != "map[hw_max_sectors:512]" || got.Updated != Timestamp(later) {
		t.Fatalf("%+v", got)
	}
	if err := d.SetDiskControls("rbd/free", nil, later); err != nil || d.Disks["rbd/free"].Controls == nil {
		t.Fatalf("nil controls: %v", err)
	}
	var rej *Rejection
	if err := d.SetDiskControls("rbd/nope", nil, later); !errors.As(err, &rej) || rej.Msg != "rbd rbd/nope is not defined to the configuration" {
		t.Fatalf("unknown: %v", err)
	}
}

func TestSplitDiskID(t *testing.T) {
	for in, want := range map[string]string{"rbd/img": "rbd|img|true", "p/a/b": "p|a/b|true", "noslash": "noslash||false", "/x": "|x|false", "x/": "x||false"} {
		p, i, ok := SplitDiskID(in)
		if got := fmt.Sprintf("%s|%s|%v", p, i, ok); got != want {
			t.Errorf("SplitDiskID(%q) = %s, want %s", in, got, want)
		}
	}
	if DiskID("rbd", "img") != "rbd/img" {
		t.Fatal("DiskID")
	}
}

// TestManyTargetLuns: a target may export 4096 disks (upstream's 256-disk
// cap is gone); mapped (ACL) LUN ids keep the 0-255 range.
func TestManyTargetLuns(t *testing.T) {
	now := time.Unix(0, 0)
	d := NewDoc(now)
	tg, _ := d.AddTarget("iqn.2003-01.com.example:big", now)
	for i := range 4096 {
		img := fmt.Sprintf("img%d", i)
		if _, err := d.AddDisk(NewDisk{Pool: "rbd", Image: img, Backstore: "user:rbd"}, now); err != nil {
			t.Fatal(err)
		}
		tg.Disks["rbd/"+img] = LunRef{LunID: i}
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("4096 LUNs refused: %v", err)
	}
	cl, _ := d.AddClient("iqn.2003-01.com.example:big", "iqn.1994-05.com.x:c", now)
	cl.Luns["rbd/img300"] = LunRef{LunID: 300}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "must be between 0 and 255, got 300") {
		t.Fatalf("mapped LUN 300 accepted: %v", err)
	}
}

func TestDetachDisk(t *testing.T) {
	d := diskTestDoc(t)
	t1 := d.Targets["iqn.2003-01.com.example:t1"]
	t1.Groups = map[string]*Group{"g": {Members: []string{}, Disks: map[string]LunRef{"rbd/shared": {LunID: 0}, "rbd/mapped": {LunID: 1}}}}
	d.DetachDisk("rbd/shared")
	if d.Disks["rbd/shared"] == nil {
		t.Fatal("the disk itself was removed")
	}
	for iqn, tg := range d.Targets {
		if _, ok := tg.Disks["rbd/shared"]; ok {
			t.Errorf("%s still maps the disk", iqn)
		}
		if _, ok := tg.Disks["rbd/mapped"]; !ok {
			t.Errorf("%s lost another disk", iqn)
		}
		for c, cl := range tg.Clients {
			if len(cl.Luns) != 0 {
				t.Errorf("%s client %s still has %v", iqn, c, cl.Luns)
			}
		}
	}
	if g := t1.Groups["g"]; len(g.Disks) != 1 || g.Disks["rbd/mapped"].LunID != 1 {
		t.Errorf("group disks %v", g.Disks)
	}
}
