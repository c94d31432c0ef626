package api

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// prefixedImages is the daemon's RBD adapter on the test cluster with every
// image name prefixed, so the documents keep readable disk ids while the
// images are this test's own in the shared pool.
type prefixedImages struct {
	*RBDImages
	prefix string
}

func (p prefixedImages) Exists(ctx context.Context, pool, image string) (bool, error) {
	return p.RBDImages.Exists(ctx, pool, p.prefix+image)
}

func (p prefixedImages) Size(ctx context.Context, pool, image string) (int64, error) {
	return p.RBDImages.Size(ctx, pool, p.prefix+image)
}

// lunClusterImages creates real images for disk1..disk5 of lunDoc
// (rbd/gone stays missing) and removes them when the test ends.
func lunClusterImages(t *testing.T) prefixedImages {
	t.Helper()
	c := devcluster.Require(t)
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf, ClientName: "client.admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	p := prefixedImages{NewRBDImages(conn, rbd.RemoveOptions{Timeout: 2 * time.Second, Interval: 200 * time.Millisecond}), fmt.Sprintf("lun%08x-", rand.Uint32())}
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("%sdisk%d", p.prefix, i)
		if err := rbd.Create(conn.Raw(), "rbd", name, 4<<20, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = rbd.Remove(context.Background(), conn.Raw(), "rbd", name, rbd.RemoveOptions{Timeout: 2 * time.Second})
		})
	}
	return p
}

// committedDoc parses the object's bytes as they are in RADOS.
func committedDoc(t *testing.T, s *clusterStore) *config.Doc {
	t.Helper()
	d, _, err := config.Load(s.bytes(), config.UpgradeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestClusterLuns maps disks to a target and to clients through HTTP against
// the real config object, and checks what was committed after each step.
func TestClusterLuns(t *testing.T) {
	store := openClusterStore(t, lunDoc())
	imgs := lunClusterImages(t)
	env := newEnv(t, store, gw1, func(d *Deps) { d.Images = imgs })
	targetLunLifecycle(t, env)

	expect(t, env.do(t, "DELETE", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2")), 200, "Target LUN mapping updated successfully")
	if d := committedDoc(t, store); d.Disks["rbd/disk2"].Owner != nil || d.Gateways[gw1].ActiveLuns != 3 {
		t.Fatalf("after removal: owner %v active %d", d.Disks["rbd/disk2"].Owner, d.Gateways[gw1].ActiveLuns)
	}
	expect(t, env.do(t, "PUT", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2", "lun_id", "200")), 200, "Target LUN mapping updated successfully")
	expect(t, env.do(t, "PUT", "/api/clientlun/"+tIQN+"/"+cIQN2, v("disk", "rbd/disk2")), 200, "client masking update successful")
	expect(t, env.do(t, "PUT", "/api/clientlun/"+tIQN+"/"+cIQN2, v("disk", "rbd/disk3")), 200, "client masking update successful")
	d := committedDoc(t, store)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	tg := d.Targets[tIQN]
	if tg.Disks["rbd/disk2"].LunID != 200 || *d.Disks["rbd/disk2"].Owner != gw1 {
		t.Fatalf("disk2: %+v owner %v", tg.Disks["rbd/disk2"], d.Disks["rbd/disk2"].Owner)
	}
	// 200 is the target id and free among clients; disk3's 3 likewise
	if got := lunMap(tg.Clients[cIQN2]); !maps.Equal(got, map[string]int{"rbd/disk2": 200, "rbd/disk3": 3}) {
		t.Fatalf("committed client luns %v", got)
	}
	raw := store.bytes()
	for _, want := range []string{`"rbd/disk2": {`, `"lun_id": 200`, `"owner": "` + gw1 + `"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Fatalf("object lacks %s:\n%s", want, raw)
		}
	}
	if e := d.Epoch; e == 0 {
		t.Fatal("epoch not bumped")
	}
}

func TestClusterLunBadRequestsChangeNothing(t *testing.T) {
	store := openClusterStore(t, lunDoc())
	before := store.bytes()
	imgs := lunClusterImages(t)
	runLunBadCases(t, newEnv(t, store, gw1, func(d *Deps) { d.Images = imgs }))
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("the object's bytes changed")
	}
}

// TestClusterConcurrentLunChanges: 200 concurrent target and client LUN
// changes on one target, two gateways, the real config object: none lost.
// RBD is the fake here: the point is the store's commits, and 100 images
// would only add their creation time.
func TestClusterConcurrentLunChanges(t *testing.T) {
	concurrentLuns(t, openClusterStore(t, concurrentLunDoc(200)), 200)
}

// sizeLIO is a fakeLIO with the reconciler's size cache hook.
type sizeLIO struct {
	*fakeLIO
	noted map[string]int64
}

func (s *sizeLIO) NoteSize(id string, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noted[id] = size
}

// PUT /api/targetlun checks the image exists by reading its size, and hands
// that size to local LIO's cache: the storage object it is about to create
// needs it, and reading it again costs another image open.
func TestClusterTargetLunHandsSizeToLIO(t *testing.T) {
	store := openClusterStore(t, lunDoc())
	imgs := lunClusterImages(t)
	lio := &sizeLIO{fakeLIO: &fakeLIO{}, noted: map[string]int64{}}
	env := newEnv(t, store, gw1, func(d *Deps) { d.Images, d.LIO = imgs, lio })
	expect(t, env.do(t, "PUT", "/api/targetlun/"+tIQN, v("disk", "rbd/gone")), 400, "Image rbd/gone not found")
	if len(lio.noted) != 0 {
		t.Fatalf("sizes noted before a mapping: %v", lio.noted)
	}
	expect(t, env.do(t, "PUT", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2")), 200, "Target LUN mapping updated successfully")
	if want := map[string]int64{"rbd/disk2": 4 << 20}; !maps.Equal(lio.noted, want) {
		t.Fatalf("sizes noted: %v, want %v", lio.noted, want)
	}
}
