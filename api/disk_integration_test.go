package api

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	gorbd "github.com/ceph/go-ceph/rbd"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// clusterImages connects to the test cluster and returns the adapter the
// daemon would use, with short removal waits.
func clusterImages(t *testing.T) (*RBDImages, *rados.Conn) {
	t.Helper()
	c := devcluster.Require(t)
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf, ClientName: "client.admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return NewRBDImages(conn, rbd.RemoveOptions{Timeout: 2 * time.Second, Interval: 200 * time.Millisecond}), conn
}

// writeBlock writes a 4 KiB block of b at offset 0 of pool/image.
func writeBlock(t *testing.T, imgs *RBDImages, image string, b byte) {
	t.Helper()
	ioctx, err := imgs.Conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer ioctx.Destroy()
	h, err := gorbd.OpenImage(ioctx, image, gorbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.WriteAt(bytes.Repeat([]byte{b}, 4096), 0); err != nil {
		t.Fatal(err)
	}
}

func readBlock(t *testing.T, imgs *RBDImages, image string) []byte {
	t.Helper()
	ioctx, err := imgs.Conn.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer ioctx.Destroy()
	h, err := gorbd.OpenImageReadOnly(ioctx, image, gorbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, 4096)
	if _, err := h.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf
}

// TestClusterDiskLifecycle drives a real RBD image through the HTTP
// handlers: create, resize, register an existing image, snapshot, roll
// back (data checked), delete; each step checked with package rbd.
func TestClusterDiskLifecycle(t *testing.T) {
	imgs, _ := clusterImages(t)
	conn := imgs.Conn
	store := openClusterStore(t, seedDoc(gw1))
	env := newDiskEnv(t, store, gw1, nil, func(d *Deps) { d.Images = imgs })
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	img, pre := "api-disk-"+suffix, "api-pre-"+suffix
	id := "rbd/" + img
	t.Cleanup(func() {
		for _, name := range []string{img, pre, "api-multi-" + suffix + "1", "api-multi-" + suffix + "2"} {
			if snaps, err := rbd.ListSnapshots(conn, "rbd", name); err == nil {
				for _, s := range snaps {
					_ = rbd.RemoveSnapshot(conn, "rbd", name, s.Name)
				}
			}
			_ = rbd.Remove(context.Background(), conn, "rbd", name, rbd.RemoveOptions{})
		}
	})

	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+img, v("mode", "create", "size", "64M")), 200, "disk create/update successful")
	info, err := rbd.Info(conn, "rbd", img)
	if err != nil || info.Size != 64<<20 || info.Features != rbd.DefaultFeatures {
		t.Fatalf("created image: %+v %v", info, err)
	}
	d := diskEntry(t, store, id)
	if d == nil || !uuid4.MatchString(d.WWN) || d.PoolID <= 0 || d.BackstoreObjectName != "rbd."+img {
		t.Fatalf("disk entry %+v", d)
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+img, v("mode", "create", "size", "64M")), 400, "at least one rbd image(s) with that name/prefix is already defined")

	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+img, v("mode", "resize", "size", "128m")), 200, "disk create/update successful")
	if size, err := rbd.Size(conn, "rbd", img); err != nil || size != 128<<20 {
		t.Fatalf("resized: %d %v", size, err)
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+img, v("mode", "resize", "size", "64M")), 400, "resize value must be larger than the current size (128M/134217728)")

	// an image made outside the gateway is registered at its own size
	if err := rbd.Create(conn, "rbd", pre, 32<<20, 0); err != nil {
		t.Fatal(err)
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+pre, v("mode", "create", "create_image", "false")), 200, "disk create/update successful")
	if size, _ := rbd.Size(conn, "rbd", pre); size != 32<<20 || diskEntry(t, store, "rbd/"+pre) == nil {
		t.Fatal("existing image not registered as is")
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/api-multi-"+suffix, v("mode", "create", "size", "8M", "count", "2")), 200, "disk create/update successful")
	for _, n := range []string{"1", "2"} {
		if ok, err := rbd.Exists(conn, "rbd", "api-multi-"+suffix+n); !ok || err != nil {
			t.Fatalf("count=2 image %s: %v %v", n, ok, err)
		}
	}
	expect(t, env.do(t, "PUT", "/api/disk/nosuchpool/x", v("mode", "create", "size", "8M")), 400, "pool name is invalid")

	// snapshots, and a rollback that really restores the data
	writeBlock(t, imgs, img, 'a')
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/"+img+"/snap1", v("mode", "create")), 200, "disk snapshot snapshot created")
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/"+img+"/snap1", v("mode", "create")), 400, "snapshot snap1 already exists")
	snaps, err := rbd.ListSnapshots(conn, "rbd", img)
	if err != nil || len(snaps) != 1 || snaps[0].Name != "snap1" {
		t.Fatalf("snapshots %+v %v", snaps, err)
	}
	before := store.bytes()
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/"+img, nil), 400, "disk map deletion failed on "+gw1+". Failed to remove the LUN - Unable to delete the underlying rbd image "+img+" - Image has snapshots")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("a refused delete changed the object")
	}
	writeBlock(t, imgs, img, 'b')
	// rollback needs the disk mapped (it has an owner), as upstream
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/"+img+"/snap1", v("mode", "rollback")), 400,
		"failed to deactivate disk: failed on "+gw1+". LUN deactivate failure - Disk "+id+" must be assigned to a target")
	mapDisk := func(on bool) {
		if _, err := store.Commit(t.Context(), func(doc *config.Doc) error {
			owner := gw1
			if on {
				doc.MutDisk(id).Owner = &owner
				doc.MutTarget(tIQN).Disks[id] = config.LunRef{LunID: 1}
			} else {
				doc.MutDisk(id).Owner = nil
				delete(doc.MutTarget(tIQN).Disks, id)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	mapDisk(true)
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/"+img+"/snap1", v("mode", "rollback")), 200, "disk snapshot rolled back to snapshot")
	if got := readBlock(t, imgs, img); got[0] != 'a' || got[4095] != 'a' {
		t.Fatalf("rollback did not restore the data: %q", got[:8])
	}
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/"+img+"/nope", v("mode", "rollback")), 404, "snapshot nope does not exist")
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+img, v("mode", "reconfigure", "controls", `{"max_data_area_mb": 16}`)), 200, "lun reconfigured: successful")
	if d := diskEntry(t, store, id); fmt.Sprint(d.Controls["max_data_area_mb"]) != "16" {
		t.Fatalf("controls %v", d.Controls)
	}
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/"+img, nil), 400, "Unable to delete "+id+". Mapped to: "+tIQN)
	mapDisk(false)

	expect(t, env.do(t, "DELETE", "/api/disksnap/rbd/"+img+"/snap1", nil), 200, "disk snapshot snapshot deleted")
	expect(t, env.do(t, "DELETE", "/api/disksnap/rbd/"+img+"/snap1", nil), 404, "snapshot snap1 does not exist")
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/"+img, nil), 200, "disk map deletion successful")
	if ok, err := rbd.Exists(conn, "rbd", img); ok || err != nil {
		t.Fatalf("image still exists: %v %v", ok, err)
	}
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/"+pre, v("preserve_image", "true")), 200, "disk map deletion successful")
	if ok, _ := rbd.Exists(conn, "rbd", pre); !ok {
		t.Fatal("preserve_image=true deleted the image")
	}
	doc := loadDoc(t, store)
	if doc.Disks[id] != nil || doc.Disks["rbd/"+pre] != nil || len(doc.Disks) != 3 {
		t.Fatalf("disks left: %v", sortedNames(doc.Disks))
	}
}

func TestClusterDiskBadRequestsChangeNothing(t *testing.T) {
	store := openClusterStore(t, diskDoc())
	before := store.bytes()
	runDiskBadCases(t, newDiskEnv(t, store, gw1, diskImages(), nil))
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("the object's bytes changed")
	}
}
