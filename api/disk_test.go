package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

// fakeImages is an in-memory RBD: pools by name, images by "pool/image".
type fakeImages struct {
	mu     sync.Mutex
	pools  map[string]int64
	images map[string]*fakeImage
	// busy makes Remove fail as rbd.Remove does when watchers never leave.
	busy map[string]bool
	log  []string
}

type fakeImage struct {
	size     int64
	features uint64
	snaps    []string
	// rolledBack names the snapshot last rolled back to.
	rolledBack string
}

const gib = int64(1) << 30

func newFakeImages() *fakeImages {
	return &fakeImages{pools: map[string]int64{"rbd": 1}, images: map[string]*fakeImage{}, busy: map[string]bool{}}
}

func (f *fakeImages) add(id string, size int64, features uint64, snaps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[id] = &fakeImage{size: size, features: features, snaps: snaps}
}

func (f *fakeImages) get(id string) *fakeImage {
	f.mu.Lock()
	defer f.mu.Unlock()
	if img := f.images[id]; img != nil {
		c := *img
		c.snaps = slices.Clone(img.snaps)
		return &c
	}
	return nil
}

func (f *fakeImages) image(pool, image string) (*fakeImage, error) {
	if _, ok := f.pools[pool]; !ok {
		return nil, fmt.Errorf("pool %q: %w", pool, rbd.ErrPoolNotFound)
	}
	img := f.images[pool+"/"+image]
	if img == nil {
		return nil, fmt.Errorf("open image %s/%s: %w", pool, image, rbd.ErrImageNotFound)
	}
	return img, nil
}

func (f *fakeImages) record(op string, args ...any) {
	f.log = append(f.log, op+" "+fmt.Sprint(args...))
}

func (f *fakeImages) PoolID(_ context.Context, pool string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.pools[pool]
	if !ok {
		return 0, fmt.Errorf("pool %q: %w", pool, rbd.ErrPoolNotFound)
	}
	return id, nil
}

func (f *fakeImages) Exists(_ context.Context, pool, image string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.image(pool, image)
	if err != nil && strings.Contains(err.Error(), rbd.ErrImageNotFound.Error()) {
		return false, nil
	}
	return err == nil, err
}

func (f *fakeImages) Create(_ context.Context, pool, image string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pools[pool]; !ok {
		return fmt.Errorf("pool %q: %w", pool, rbd.ErrPoolNotFound)
	}
	if f.images[pool+"/"+image] != nil {
		return fmt.Errorf("create image %s/%s: %w", pool, image, rbd.ErrImageExists)
	}
	f.record("create", pool, "/", image, " ", size)
	f.images[pool+"/"+image] = &fakeImage{size: size, features: rbd.DefaultFeatures}
	return nil
}

func (f *fakeImages) Info(_ context.Context, pool, image string) (rbd.ImageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.image(pool, image)
	if err != nil {
		return rbd.ImageInfo{}, err
	}
	return rbd.ImageInfo{Pool: pool, Name: image, Size: img.size, Features: img.features}, nil
}

func (f *fakeImages) Resize(_ context.Context, pool, image string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.image(pool, image)
	if err != nil {
		return err
	}
	if size <= img.size {
		return &rbd.ResizeError{Current: img.size, Requested: size}
	}
	f.record("resize", pool, "/", image, " ", size)
	img.size = size
	return nil
}

func (f *fakeImages) Remove(_ context.Context, pool, image string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.image(pool, image)
	if err != nil {
		return nil // missing counts as removed
	}
	switch {
	case len(img.snaps) > 0:
		return fmt.Errorf("Unable to delete the underlying rbd image %s - Image has snapshots: %w", image, rbd.ErrImageHasSnapshots)
	case f.busy[pool+"/"+image]:
		return fmt.Errorf("Unable to delete the underlying rbd image %s: %w", image, rbd.ErrImageBusy)
	}
	f.record("remove", pool, "/", image)
	delete(f.images, pool+"/"+image)
	return nil
}

func (f *fakeImages) CreateSnapshot(_ context.Context, pool, image, snap string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.image(pool, image)
	if err != nil {
		return err
	}
	if slices.Contains(img.snaps, snap) {
		return fmt.Errorf("snapshot %s already exists: %w", snap, rbd.ErrSnapshotExists)
	}
	img.snaps = append(img.snaps, snap)
	return nil
}

func (f *fakeImages) RemoveSnapshot(_ context.Context, pool, image, snap string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.image(pool, image)
	if err != nil {
		return err
	}
	i := slices.Index(img.snaps, snap)
	if i < 0 {
		return fmt.Errorf("snapshot %s does not exist: %w", snap, rbd.ErrSnapshotNotFound)
	}
	img.snaps = slices.Delete(img.snaps, i, i+1)
	return nil
}

func (f *fakeImages) RollbackSnapshot(_ context.Context, pool, image, snap string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.image(pool, image)
	if err != nil {
		return err
	}
	if !slices.Contains(img.snaps, snap) {
		return fmt.Errorf("snapshot %s does not exist: %w", snap, rbd.ErrSnapshotNotFound)
	}
	f.record("rollback", pool, "/", image, "@", snap)
	img.rolledBack = snap
	return nil
}

// recordingLIO keeps, for every reconcile, which disks LIO was asked to
// export and their controls, so a test can see a deactivate/activate pair.
type recordingLIO struct {
	LocalLIO
	mu    sync.Mutex
	steps []map[string]string // disk id -> controls JSON, exported disks only
}

func (r *recordingLIO) Reconcile(ctx context.Context, doc *config.Doc) error {
	if err := r.LocalLIO.Reconcile(ctx, doc); err != nil {
		return err
	}
	step := map[string]string{}
	for _, t := range doc.Targets {
		for id := range t.Disks {
			b, _ := json.Marshal(doc.Disks[id].Controls)
			step[id] = string(b)
		}
	}
	r.mu.Lock()
	r.steps = append(r.steps, step)
	r.mu.Unlock()
	return nil
}

func (r *recordingLIO) history() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.steps)
}

const wwn1 = "8d5dcf5a-3c6b-4d0e-9a51-0f7c2a1b9e01"

// diskDoc is richDoc plus disks in the states the disk routes care about:
// disk1 (mapped, allocated to clients), mapped (exported, no client),
// free (registered only), snappy (image with a snapshot), orphan (no image)
// and vol1 (a name a count=N create of "vol" would take).
func diskDoc() *config.Doc {
	d := richDoc()
	d.Disks["rbd/disk1"].WWN = wwn1
	owner := gw1
	for _, name := range []string{"mapped", "free", "snappy", "orphan", "vol1"} {
		if _, err := d.AddDisk(config.NewDisk{Pool: "rbd", Image: name, PoolID: 1, Backstore: "user:rbd", AllocatingHost: gw1}, t0); err != nil {
			panic(err)
		}
	}
	d.Disks["rbd/mapped"].Owner = &owner
	d.Targets[tIQN].Disks["rbd/mapped"] = config.LunRef{LunID: 1}
	return d
}

func diskImages() *fakeImages {
	f := newFakeImages()
	f.pools["odd pool"] = 7
	f.pools["a"], f.pools["a.b"] = 8, 9
	for _, name := range []string{"disk1", "mapped", "free", "vol1"} {
		f.add("rbd/"+name, gib, rbd.DefaultFeatures)
	}
	f.add("rbd/snappy", gib, rbd.DefaultFeatures, "s1")
	f.add("rbd/nolock", gib, 1)
	f.add("rbd/existing", 3*gib, rbd.DefaultFeatures)
	return f
}

type diskEnv struct {
	*testEnv
	imgs *fakeImages
	rec  *recordingLIO
}

func newDiskEnv(t testing.TB, store rawStore, gw string, imgs *fakeImages, mod func(*Deps)) *diskEnv {
	de := &diskEnv{imgs: imgs}
	de.testEnv = newEnv(t, store, gw, func(d *Deps) {
		d.Images = imgs
		de.rec = &recordingLIO{LocalLIO: d.LIO}
		d.LIO = de.rec
		if mod != nil {
			mod(d)
		}
	})
	return de
}

func diskEntry(t testing.TB, s Store, id string) *config.Disk {
	t.Helper()
	return loadDoc(t, s).Disks[id]
}

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDiskCreateRegistersImage(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/new", v("mode", "create", "size", "2g", "pool", "rbd", "owner", "ignored")), 200, "disk create/update successful")
	if img := env.imgs.get("rbd/new"); img == nil || img.size != 2*gib || img.features != rbd.DefaultFeatures {
		t.Fatalf("image %+v", img)
	}
	d := diskEntry(t, store, "rbd/new")
	if d == nil || d.Pool != "rbd" || d.Image != "new" || d.PoolID != 1 || d.Backstore != "user:rbd" ||
		d.BackstoreObjectName != "rbd.new" || d.AllocatingHost == nil || *d.AllocatingHost != gw1 || d.Owner != nil ||
		!uuid4.MatchString(d.WWN) || len(d.Controls) != 0 || d.Created != config.Timestamp(t0) {
		t.Fatalf("disk entry %+v", d)
	}

	// GET adds the status upstream computes from the tcmu-runner service map.
	rec := env.do(t, "GET", "/api/disk/rbd/new", nil)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got["wwn"] != d.WWN || fmt.Sprint(got["status"]) != "map[state:Unknown]" || got["backstore_object_name"] != "rbd.new" {
		t.Fatalf("GET disk: %s", rec.Body)
	}
	rec = env.do(t, "GET", "/api/_disk/rbd/new", nil)
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "status") || !strings.Contains(rec.Body.String(), `"pool_id":1`) {
		t.Fatalf("GET _disk: %d %s", rec.Code, rec.Body)
	}
	rec = env.do(t, "GET", "/api/disks", nil)
	if rec.Body.String() != `{"disks":["rbd/disk1","rbd/free","rbd/mapped","rbd/new","rbd/orphan","rbd/snappy","rbd/vol1"]}`+"\n" {
		t.Fatalf("disks: %s", rec.Body)
	}
	rec = env.do(t, "GET", "/api/disks", v("config", "YES"))
	var all struct{ Disks map[string]map[string]any }
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil || len(all.Disks) != 7 || all.Disks["rbd/new"]["wwn"] != d.WWN {
		t.Fatalf("disks config=yes: %v %s", err, rec.Body)
	}
	rec = env.do(t, "GET", "/api/disks?config=yes", nil)
	if !strings.Contains(rec.Body.String(), `"rbd/new":{`) {
		t.Fatalf("config from the query string: %s", rec.Body)
	}
}

func TestDiskCreateVariants(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)

	// count=3 names image1..image3, each with its own WWN
	expect(t, env.do(t, "PUT", "/api/disk/rbd/multi", v("mode", "create", "size", "1G", "count", "3")), 200, "disk create/update successful")
	doc := loadDoc(t, store)
	wwns := map[string]bool{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("rbd/multi%d", i)
		if doc.Disks[id] == nil || env.imgs.get(id) == nil {
			t.Fatalf("%s missing", id)
		}
		wwns[doc.Disks[id].WWN] = true
	}
	if doc.Disks["rbd/multi"] != nil || len(wwns) != 3 {
		t.Fatalf("names/wwns wrong: %v", wwns)
	}
	// the three are one commit: one epoch, one change for every gateway
	epoch := doc.Epoch
	expect(t, env.do(t, "PUT", "/api/disk/rbd/batch", v("mode", "create", "size", "1G", "count", "4")), 200, "disk create/update successful")
	if got := loadDoc(t, store).Epoch; got != epoch+1 {
		t.Fatalf("count=4 took epoch %d to %d, want one commit", epoch, got)
	}
	// an image that fails ends the count: the ones before it are kept
	// registered, as upstream's loop keeps them, and the failure answers
	env.imgs.add("rbd/part2", gib, 0)
	rec := env.do(t, "PUT", "/api/disk/rbd/part", v("mode", "create", "size", "1G", "count", "3"))
	expect(t, rec, 400, "disk create/update failed on "+gw1+". LUN allocation failure - (LUN.allocate) rbd 'part2' is not compatible with LIO\nImage features  are not supported")
	doc = loadDoc(t, store)
	if doc.Disks["rbd/part1"] == nil || doc.Disks["rbd/part2"] != nil || doc.Disks["rbd/part3"] != nil || env.imgs.get("rbd/part3") != nil {
		t.Fatalf("after the failed count: part1 %v, part2 %v, part3 %v (image %v)", doc.Disks["rbd/part1"] != nil,
			doc.Disks["rbd/part2"] != nil, doc.Disks["rbd/part3"] != nil, env.imgs.get("rbd/part3") != nil)
	}
	// "01" is not "1": upstream suffixes the name
	expect(t, env.do(t, "PUT", "/api/disk/rbd/z", v("mode", "create", "size", "1G", "count", "01")), 200, "disk create/update successful")
	if diskEntry(t, store, "rbd/z1") == nil {
		t.Fatal("count=01 did not create rbd/z1")
	}

	// no size: an existing image is registered at its own size, not resized
	expect(t, env.do(t, "PUT", "/api/disk/rbd/existing", v("mode", "create")), 200, "disk create/update successful")
	if env.imgs.get("rbd/existing").size != 3*gib || diskEntry(t, store, "rbd/existing") == nil {
		t.Fatal("existing image not registered as is")
	}

	// a given size grows an existing image (never shrinks it)
	env.imgs.add("rbd/small", gib, rbd.DefaultFeatures)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/small", v("mode", "create", "size", "5G", "create_image", "true")), 200, "disk create/update successful")
	if env.imgs.get("rbd/small").size != 5*gib {
		t.Fatal("existing image not grown")
	}
	env.imgs.add("rbd/big", 9*gib, rbd.DefaultFeatures)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/big", v("mode", "create", "size", "1G")), 200, "disk create/update successful")
	if env.imgs.get("rbd/big").size != 9*gib {
		t.Fatal("existing image shrunk")
	}

	// explicit WWN and controls: only values differing from the defaults are kept
	expect(t, env.do(t, "PUT", "/api/disk/rbd/tuned", v("mode", "create", "size", "1G", "wwn", "my-serial-1",
		"controls", `{"max_data_area_mb": 128, "qfull_timeout": 5, "hw_max_sectors": ""}`)), 200, "disk create/update successful")
	d := diskEntry(t, store, "rbd/tuned")
	if d.WWN != "my-serial-1" || len(d.Controls) != 1 || fmt.Sprint(d.Controls["max_data_area_mb"]) != "128" {
		t.Fatalf("tuned: %+v", d)
	}

	// storage object names stay unique across pools: a.b/c then a/b.c
	env.imgs.add("a.b/c", gib, rbd.DefaultFeatures)
	env.imgs.add("a/b.c", gib, rbd.DefaultFeatures)
	expect(t, env.do(t, "PUT", "/api/disk/a.b/c", v("mode", "create")), 200, "disk create/update successful")
	expect(t, env.do(t, "PUT", "/api/disk/a/b.c", v("mode", "create")), 200, "disk create/update successful")
	if n1, n2 := diskEntry(t, store, "a.b/c").BackstoreObjectName, diskEntry(t, store, "a/b.c").BackstoreObjectName; n1 != "a.b.c" || n2 != "a.b.c.1" {
		t.Fatalf("backstore object names %q %q", n1, n2)
	}
	if len(env.rec.history()) == 0 {
		t.Fatal("local LIO never reconciled after a create")
	}
}

func TestDiskResize(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	before := store.bytes()
	expect(t, env.do(t, "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "3G")), 200, "disk create/update successful")
	if got := env.imgs.get("rbd/disk1").size; got != 3*gib {
		t.Fatalf("size %d", got)
	}
	// the config has no size: a resize commits nothing
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("resize changed the config")
	}
	if len(env.rec.history()) != 1 {
		t.Fatalf("local LIO reconciled %d times, want 1 (dev_size)", len(env.rec.history()))
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "3072m")), 400, "resize value must be larger than the current size (3G/3221225472)")
}

func TestDiskDelete(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/free", nil), 200, "disk map deletion successful")
	if diskEntry(t, store, "rbd/free") != nil || env.imgs.get("rbd/free") != nil {
		t.Fatal("disk or image left behind")
	}
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/vol1", v("preserve_image", "true")), 200, "disk map deletion successful")
	if diskEntry(t, store, "rbd/vol1") != nil || env.imgs.get("rbd/vol1") == nil {
		t.Fatal("preserve_image=true: entry kept or image deleted")
	}
	// an image already gone counts as deleted
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/orphan", nil), 200, "disk map deletion successful")
	// watchers that never leave: upstream's 500, config kept
	env.imgs.add("rbd/busy", gib, rbd.DefaultFeatures)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/busy", v("mode", "create")), 200, "disk create/update successful")
	env.imgs.busy["rbd/busy"] = true
	before := store.bytes()
	expect(t, env.do(t, "DELETE", "/api/disk/rbd/busy", nil), 500, "disk map deletion failed on "+gw1+". Failed to remove the LUN - Unable to delete the underlying rbd image busy")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("config changed although the image could not be deleted")
	}
}

func TestDiskSnapshots(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	before := store.bytes()
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/disk1/before-upgrade", v("mode", "create")), 200, "disk snapshot snapshot created")
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/disk1/before-upgrade", v("mode", "create")), 400, "snapshot before-upgrade already exists")
	if got := env.imgs.get("rbd/disk1").snaps; !slices.Equal(got, []string{"before-upgrade"}) {
		t.Fatalf("snaps %v", got)
	}
	if len(env.rec.history()) != 0 {
		t.Fatal("a snapshot create touched LIO")
	}

	// rollback: the disk leaves LIO, is rolled back, and comes back
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/disk1/before-upgrade", v("mode", "rollback")), 200, "disk snapshot rolled back to snapshot")
	if env.imgs.get("rbd/disk1").rolledBack != "before-upgrade" {
		t.Fatal("not rolled back")
	}
	h := env.rec.history()
	if len(h) != 2 {
		t.Fatalf("%d reconciles, want deactivate+activate", len(h))
	}
	if _, ok := h[0]["rbd/disk1"]; ok || h[0]["rbd/mapped"] == "" {
		t.Fatalf("deactivate step still exports disk1 or dropped another disk: %v", h[0])
	}
	if _, ok := h[1]["rbd/disk1"]; !ok {
		t.Fatalf("activate step does not export disk1: %v", h[1])
	}
	// rollback of a missing snapshot: 404, and the disk is re-activated
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/disk1/nope", v("mode", "rollback")), 404, "snapshot nope does not exist")
	if h := env.rec.history(); len(h) != 4 {
		t.Fatalf("%d reconciles, want 4", len(h))
	} else if _, ok := h[3]["rbd/disk1"]; !ok {
		t.Fatal("disk not re-activated after a failed rollback")
	}

	expect(t, env.do(t, "DELETE", "/api/disksnap/rbd/disk1/before-upgrade", nil), 200, "disk snapshot snapshot deleted")
	expect(t, env.do(t, "DELETE", "/api/disksnap/rbd/disk1/before-upgrade", nil), 404, "snapshot before-upgrade does not exist")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("snapshots changed the config")
	}
}

func TestDiskReconfigure(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/mapped", v("mode", "reconfigure", "controls", `{"max_data_area_mb": 64, "osd_op_timeout": 30}`)), 200, "lun reconfigured: successful")
	d := diskEntry(t, store, "rbd/mapped")
	if len(d.Controls) != 1 || fmt.Sprint(d.Controls["max_data_area_mb"]) != "64" || d.Updated != config.Timestamp(t0) {
		t.Fatalf("controls %v (defaults must be dropped)", d.Controls)
	}
	h := env.rec.history()
	if len(h) != 2 {
		t.Fatalf("%d reconciles, want deactivate + activate", len(h))
	}
	if _, ok := h[0]["rbd/mapped"]; ok {
		t.Fatal("not deactivated first")
	}
	if h[1]["rbd/mapped"] != `{"max_data_area_mb":64}` {
		t.Fatalf("activated with %q", h[1]["rbd/mapped"])
	}
	// reset to the default removes the override
	expect(t, env.do(t, "PUT", "/api/disk/rbd/mapped", v("mode", "reconfigure", "controls", `{"max_data_area_mb": null}`)), 200, "lun reconfigured: successful")
	if d := diskEntry(t, store, "rbd/mapped"); len(d.Controls) != 0 {
		t.Fatalf("controls %v", d.Controls)
	}

	// a failing local activation: 500 with its text, controls not stored,
	// and the disk re-activated with its old controls
	env.lio.fail = fmt.Errorf("tcmu-runner said no")
	before := store.bytes()
	rec := env.do(t, "PUT", "/api/disk/rbd/mapped", v("mode", "reconfigure", "controls", `{"max_data_area_mb": 32}`))
	if rec.Code != 500 || !strings.Contains(msgOf(t, rec), "tcmu-runner said no") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("controls stored although activation failed")
	}
}

// TestDiskFanout runs two gateways on one store: gw1 coordinates, gw2 is
// reached through its internal _disk route.
func TestDiskFanout(t *testing.T) {
	store := newMemStore(func() *config.Doc {
		d := seedDoc(gw1, gw2)
		owner := gw2
		d.Disks["rbd/disk1"].Owner = &owner
		return d
	}())
	imgs := diskImages()
	var peer *diskEnv
	peerSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { peer.e.ServeHTTP(w, r) }))
	defer peerSrv.Close()
	peerURL := func(gw string) string {
		if gw == gw2 {
			return peerSrv.URL
		}
		return "http://127.0.0.1:1"
	}
	peer = newDiskEnv(t, store, gw2, imgs, func(d *Deps) { d.PeerURL = peerURL })
	env := newDiskEnv(t, store, gw1, imgs, func(d *Deps) { d.PeerURL = peerURL })

	// create stays local: the peer learns of the disk when it is mapped
	expect(t, env.do(t, "PUT", "/api/disk/rbd/new", v("mode", "create", "size", "1G")), 200, "disk create/update successful")
	if len(peer.rec.history()) != 0 {
		t.Fatal("create reached the peer")
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "2G")), 200, "disk create/update successful")
	if len(peer.rec.history()) != 1 || imgs.get("rbd/disk1").size != 2*gib {
		t.Fatalf("resize: peer reconciles %d", len(peer.rec.history()))
	}
	expect(t, env.do(t, "PUT", "/api/disk/rbd/disk1", v("mode", "reconfigure", "controls", `{"hw_max_sectors": 512}`)), 200, "lun reconfigured: successful")
	ph := peer.rec.history()
	if len(ph) != 3 || ph[1]["rbd/disk1"] != "" || ph[2]["rbd/disk1"] != `{"hw_max_sectors":512}` {
		t.Fatalf("peer did not deactivate then activate with the controls: %v", ph)
	}
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/disk1/s", v("mode", "create")), 200, "disk snapshot snapshot created")
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/disk1/s", v("mode", "rollback")), 200, "disk snapshot rolled back to snapshot")
	if len(peer.rec.history()) != 5 {
		t.Fatalf("rollback: peer reconciles %d, want 5", len(peer.rec.history()))
	}
	// a logged-in initiator on the peer blocks the rollback before anything
	// is rolled back, and the peer is re-activated
	peer.lio.mu.Lock()
	peer.lio.sessions = 1
	peer.lio.mu.Unlock()
	if _, err := store.Commit(t.Context(), func(d *config.Doc) error { d.MutTarget(tIQN).ACLEnabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	rec := env.do(t, "PUT", "/api/disksnap/rbd/disk1/s", v("mode", "rollback"))
	expect(t, rec, 400, "failed to deactivate disk: failed on "+gw2+". deactivate failed - LUN disk1 in-use")

	expect(t, env.do(t, "DELETE", "/api/disk/rbd/new", nil), 200, "disk map deletion successful")
	if diskEntry(t, store, "rbd/new") != nil || imgs.get("rbd/new") != nil {
		t.Fatal("delete incomplete")
	}

	// an unreachable peer blocks disk changes that involve it
	peerSrv.Close()
	before := store.bytes()
	rec = env.do(t, "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "4G"))
	if rec.Code != 503 || !strings.Contains(msgOf(t, rec), "disk create/update failed, gateway(s) unavailable:"+gw2) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if !bytes.Equal(before, store.bytes()) || imgs.get("rbd/disk1").size != 2*gib {
		t.Fatal("changed although a gateway was unavailable")
	}
}

// TestManyDisks lifts upstream's "Disk limit of 256 reached.": 4096 disks,
// all exported by one target, and one more created through the API.
func TestManyDisks(t *testing.T) {
	const n = 4096
	d := seedDoc(gw1)
	owner := gw1
	for i := 1; i < n; i++ {
		name := fmt.Sprintf("img%04d", i)
		disk, err := d.AddDisk(config.NewDisk{Pool: "rbd", Image: name, PoolID: 1, WWN: fmt.Sprintf("wwn-%d", i), Backstore: "user:rbd", AllocatingHost: gw1}, t0)
		if err != nil {
			t.Fatal(err)
		}
		disk.Owner = &owner
		d.Targets[tIQN].Disks["rbd/"+name] = config.LunRef{LunID: i}
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("%d disks on one target refused: %v", n, err)
	}
	store := newMemStore(d)
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	start := time.Now()
	expect(t, env.do(t, "PUT", "/api/disk/rbd/one-more", v("mode", "create", "size", "1G")), 200, "disk create/update successful")
	t.Logf("create with %d disks in the config: %v", n, time.Since(start))
	doc := loadDoc(t, store)
	if len(doc.Disks) != n+1 {
		t.Fatalf("%d disks", len(doc.Disks))
	}
	start = time.Now()
	rec := env.do(t, "GET", "/api/disks", nil)
	var out struct{ Disks []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Disks) != n+1 {
		t.Fatalf("GET /api/disks: %v %d", err, len(out.Disks))
	}
	t.Logf("GET /api/disks with %d disks: %v", n+1, time.Since(start))
}

func TestConcurrentDiskCreates(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rec := env.do(t, "PUT", fmt.Sprintf("/api/disk/rbd/c%03d", i), v("mode", "create", "size", "1G"))
			if rec.Code != 200 {
				t.Errorf("c%03d: %d %s", i, rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	doc := loadDoc(t, store)
	names := map[string]bool{}
	for i := range n {
		d := doc.Disks[fmt.Sprintf("rbd/c%03d", i)]
		if d == nil {
			t.Fatalf("c%03d lost", i)
		}
		names[d.BackstoreObjectName] = true
	}
	if len(names) != n {
		t.Fatal("backstore object names collide")
	}
}

func diskBadCases() []badCase {
	_, jsonErr := settings.ParseDiskControls("{")
	_, unknownErr := settings.ParseDiskControls(`{"cmdsn_depth": 1}`)
	_, rangeErr := settings.ParseDiskControls(`{"max_data_area_mb": 0}`)
	const ctlPrefix = "Unexpected or invalid controls - "
	create := func(kv ...string) url.Values { return v(append([]string{"mode", "create"}, kv...)...) }
	inUse := "failed to deactivate disk: failed on " + gw1 + ". deactivate failed - LUN disk1 in-use"
	return []badCase{
		{"disk no mode", "PUT", "/api/disk/rbd/disk1", nil, nil, 400, "disk operation mode 'None' is invalid"},
		{"disk bad mode", "PUT", "/api/disk/rbd/disk1", v("mode", "bogus"), nil, 400, "disk operation mode 'bogus' is invalid"},
		{"disk put delete", "PUT", "/api/disk/rbd/free", v("mode", "delete"), nil, 400, "disk operation mode 'delete' is invalid"},
		{"disk bad mode unknown disk", "PUT", "/api/disk/rbd/nope", v("mode", "grow"), nil, 400, "disk operation mode 'grow' is invalid"},
		{"resize unknown disk", "PUT", "/api/disk/rbd/nope", v("mode", "resize", "size", "2G"), nil, 400, "rbd rbd/nope is not defined to the configuration"},
		{"reconfigure unknown disk", "PUT", "/api/disk/rbd/nope", v("mode", "reconfigure", "controls", "{}"), nil, 400, "rbd rbd/nope is not defined to the configuration"},
		{"bad backstore", "PUT", "/api/disk/rbd/new", create("size", "1G", "backstore", "fileio"), nil, 400, "Invalid 'fileio' backstore - Supported backstores: user:rbd"},
		{"controls bad json", "PUT", "/api/disk/rbd/new", create("size", "1G", "controls", "{"), nil, 400, ctlPrefix + jsonErr.Error()},
		{"controls target key", "PUT", "/api/disk/rbd/new", create("size", "1G", "controls", `{"cmdsn_depth": 1}`), nil, 400, ctlPrefix + unknownErr.Error()},
		{"controls out of range", "PUT", "/api/disk/rbd/new", create("size", "1G", "controls", `{"max_data_area_mb": 0}`), nil, 400, ctlPrefix + rangeErr.Error()},
		{"reconfigure bad controls", "PUT", "/api/disk/rbd/mapped", v("mode", "reconfigure", "controls", `{"max_data_area_mb": 0}`), nil, 400, ctlPrefix + rangeErr.Error()},
		{"unknown pool", "PUT", "/api/disk/nopool/new", create("size", "1G"), nil, 400, "pool name is invalid"},
		{"size no unit", "PUT", "/api/disk/rbd/new", create("size", "10"), nil, 400, "Size is invalid"},
		{"size bad unit", "PUT", "/api/disk/rbd/new", create("size", "10X"), nil, 400, "Size is invalid"},
		{"size decimal", "PUT", "/api/disk/rbd/new", create("size", "1.5G"), nil, 400, "Size is invalid"},
		{"size negative", "PUT", "/api/disk/rbd/new", create("size", "-1G"), nil, 400, "Size is invalid"},
		{"size overflow", "PUT", "/api/disk/rbd/new", create("size", "99999999999T"), nil, 400, "Size is invalid"},
		{"bad pool name", "PUT", "/api/disk/odd%20pool/new", create("size", "1G"), nil, 400, "Invalid pool name (use alphanumeric, '_', '.', or '-' characters)"},
		{"bad image name", "PUT", "/api/disk/rbd/bad$name", create("size", "1G"), nil, 400, "Invalid image name (use alphanumeric, '_', '.', or '-' characters)"},
		{"image name with space", "PUT", "/api/disk/rbd/a%20b", create("size", "1G"), nil, 400, "Invalid image name (use alphanumeric, '_', '.', or '-' characters)"},
		{"wwn in use", "PUT", "/api/disk/rbd/new", create("size", "1G", "wwn", wwn1), nil, 400, "WWN " + wwn1 + " is already in use by rbd/disk1"},
		{"wwn with space", "PUT", "/api/disk/rbd/new", create("size", "1G", "wwn", "a b"), nil, 400, "WWN a b is invalid (at most 253 printable characters, no spaces)"},
		{"count zero", "PUT", "/api/disk/rbd/new", create("size", "1G", "count", "0"), nil, 400, "invalid count specified, must be an integer (1-10)"},
		{"count eleven", "PUT", "/api/disk/rbd/new", create("size", "1G", "count", "11"), nil, 400, "invalid count specified, must be an integer (1-10)"},
		{"count text", "PUT", "/api/disk/rbd/new", create("size", "1G", "count", "two"), nil, 400, "invalid count specified, must be an integer (1-10)"},
		{"count signed", "PUT", "/api/disk/rbd/new", create("size", "1G", "count", "+2"), nil, 400, "invalid count specified, must be an integer (1-10)"},
		{"wwn with count", "PUT", "/api/disk/rbd/new", create("size", "1G", "count", "2", "wwn", "serial-x"), nil, 400, "WWN cannot be specified when count > 1"},
		{"already defined", "PUT", "/api/disk/rbd/disk1", create("size", "1G"), nil, 400, "at least one rbd image(s) with that name/prefix is already defined"},
		{"prefix already defined", "PUT", "/api/disk/rbd/vol", create("size", "1G", "count", "2"), nil, 400, "at least one rbd image(s) with that name/prefix is already defined"},
		{"create_image bad", "PUT", "/api/disk/rbd/new", create("size", "1G", "create_image", "True"), nil, 400, "Invalid 'create_image' value True"},
		{"no size no image", "PUT", "/api/disk/rbd/ghost", create(), nil, 400, "Size parameter is required when creating a new image"},
		{"create_image false no image", "PUT", "/api/disk/rbd/ghost", create("size", "1G", "create_image", "false"), nil, 400, "Image rbd/ghost does not exist"},
		{"image without exclusive-lock", "PUT", "/api/disk/rbd/nolock", create(), nil, 400, "disk create/update failed on " + gw1 + ". LUN allocation failure - (LUN.allocate) rbd 'nolock' is not compatible with LIO\nImage features  are not supported"},
		{"resize smaller", "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "512M"), nil, 400, "resize value must be larger than the current size (1G/1073741824)"},
		{"resize equal", "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "1g"), nil, 400, "resize value must be larger than the current size (1G/1073741824)"},
		{"resize no size", "PUT", "/api/disk/rbd/disk1", v("mode", "resize"), nil, 400, "Size is invalid"},
		{"resize bad size", "PUT", "/api/disk/rbd/disk1", v("mode", "resize", "size", "big"), nil, 400, "Size is invalid"},
		{"resize missing image", "PUT", "/api/disk/rbd/orphan", v("mode", "resize", "size", "2G"), nil, 400, "failed to get current size: open image rbd/orphan: rbd image not found"},
		{"reconfigure unmapped", "PUT", "/api/disk/rbd/free", v("mode", "reconfigure", "controls", `{"max_data_area_mb": 16}`), nil, 400, "failed to deactivate disk: failed on " + gw1 + ". LUN deactivate failure - Disk rbd/free must be assigned to a target"},
		{"reconfigure logged in", "PUT", "/api/disk/rbd/disk1", v("mode", "reconfigure", "controls", `{"max_data_area_mb": 16}`), nil, 400, inUse},
		{"get unknown disk", "GET", "/api/disk/rbd/nope", nil, nil, 404, "rbd image rbd/nope not found"},
		{"delete unknown disk", "DELETE", "/api/disk/rbd/nope", nil, nil, 400, "rbd rbd/nope is not defined to the configuration"},
		{"delete allocated", "DELETE", "/api/disk/rbd/disk1", nil, nil, 400, "Unable to delete rbd/disk1. Allocated to: " + cIQN3 + "," + cIQN},
		{"delete mapped", "DELETE", "/api/disk/rbd/mapped", v("preserve_image", "true"), nil, 400, "Unable to delete rbd/mapped. Mapped to: " + tIQN},
		{"delete with snapshots", "DELETE", "/api/disk/rbd/snappy", nil, nil, 400, "disk map deletion failed on " + gw1 + ". Failed to remove the LUN - Unable to delete the underlying rbd image snappy - Image has snapshots"},
		{"internal get unknown", "GET", "/api/_disk/rbd/nope", nil, nil, 404, "rbd image rbd/nope not found"},
		{"internal put no mode", "PUT", "/api/_disk/rbd/new", v("pool", "rbd"), nil, 400, "missing form field: mode"},
		{"internal put bad mode", "PUT", "/api/_disk/rbd/free", v("mode", "bogus"), nil, 400, "disk operation mode 'bogus' is invalid"},
		{"internal create no backstore", "PUT", "/api/_disk/rbd/new", v("mode", "create", "pool", "rbd", "size", "1G", "owner", gw1), nil, 400, "missing form field: backstore"},
		{"internal create no owner", "PUT", "/api/_disk/rbd/new", v("mode", "create", "pool", "rbd", "size", "1G", "backstore", "user:rbd"), nil, 400, "Invalid Request - need to provide pool, size and owner"},
		{"internal create bad size", "PUT", "/api/_disk/rbd/new", v("mode", "create", "pool", "rbd", "size", "1.0G", "owner", gw1, "backstore", "user:rbd"), nil, 400, "Size is invalid"},
		{"internal resize unknown", "PUT", "/api/_disk/rbd/nope", v("mode", "resize", "pool", "rbd", "size", "1G", "owner", gw1), nil, 404, "rbd image rbd/nope not found"},
		{"internal deactivate unknown", "PUT", "/api/_disk/rbd/nope", v("mode", "deactivate"), nil, 404, "rbd image rbd/nope not found"},
		{"internal activate unmapped", "PUT", "/api/_disk/rbd/free", v("mode", "activate"), nil, 400, "LUN activate failure - Disk rbd/free must be assigned to a target"},
		{"internal deactivate in use", "PUT", "/api/_disk/rbd/disk1", v("mode", "deactivate"), nil, 400, "deactivate failed - LUN disk1 in-use"},
		{"internal delete no purge host", "DELETE", "/api/_disk/rbd/free", nil, nil, 400, "missing form field: purge_host"},
		{"internal delete unknown", "DELETE", "/api/_disk/rbd/nope", v("purge_host", gw1), nil, 404, "rbd image rbd/nope not found"},
		{"internal delete mapped", "DELETE", "/api/_disk/rbd/mapped", v("purge_host", gw1), nil, 400, "Failed to remove the LUN - Unable to delete rbd/mapped - allocated to " + tIQN},
		{"internal delete mapped other host", "DELETE", "/api/_disk/rbd/mapped", v("purge_host", gw2), nil, 400, "Failed to remove the LUN - Unable to delete rbd/mapped - allocated to " + tIQN},
		{"snap name with @", "PUT", "/api/disksnap/rbd/disk1/a@b", v("mode", "create"), nil, 400, "snapshot name is invalid"},
		{"snap name with slash", "PUT", "/api/disksnap/rbd/disk1/a%2Fb", v("mode", "create"), nil, 400, "snapshot name is invalid"},
		{"snap unknown disk", "PUT", "/api/disksnap/rbd/nope/s1", v("mode", "create"), nil, 404, "rbd image rbd/nope not found"},
		{"snap no mode", "PUT", "/api/disksnap/rbd/disk1/s1", nil, nil, 400, "mode is invalid"},
		{"snap bad mode", "PUT", "/api/disksnap/rbd/disk1/s1", v("mode", "restore"), nil, 400, "mode is invalid"},
		{"snap exists", "PUT", "/api/disksnap/rbd/snappy/s1", v("mode", "create"), nil, 400, "snapshot s1 already exists"},
		{"snap image missing", "PUT", "/api/disksnap/rbd/orphan/s1", v("mode", "create"), nil, 400, "failed to create snapshot: open image rbd/orphan: rbd image not found"},
		{"snap delete missing", "DELETE", "/api/disksnap/rbd/snappy/nope", nil, nil, 404, "snapshot nope does not exist"},
		{"snap delete image missing", "DELETE", "/api/disksnap/rbd/orphan/s1", nil, nil, 400, "failed to delete snapshot: open image rbd/orphan: rbd image not found"},
		{"snap rollback logged in", "PUT", "/api/disksnap/rbd/disk1/s1", v("mode", "rollback"), nil, 400, inUse},
		{"snap rollback unmapped", "PUT", "/api/disksnap/rbd/snappy/s1", v("mode", "rollback"), nil, 400, "failed to deactivate disk: failed on " + gw1 + ". LUN deactivate failure - Disk rbd/snappy must be assigned to a target"},
	}
}

// runDiskBadCases sends every refused disk request and checks the exact
// message, a 4xx, and that neither the stored bytes, the images nor LIO
// changed.
func runDiskBadCases(t *testing.T, env *diskEnv) {
	env.lio.states[cIQN3] = "LOGGED_IN"
	before := env.store.bytes()
	images := fmt.Sprint(env.imgs.images)
	cases := diskBadCases()
	for _, bc := range cases {
		if bc.status < 400 || bc.status >= 500 {
			t.Fatalf("%s: status %d is not a client error", bc.name, bc.status)
		}
		t.Run(bc.name, func(t *testing.T) {
			rec := env.do(t, bc.method, bc.path, bc.form, bc.opts...)
			expect(t, rec, bc.status, bc.msg)
			if after := env.store.bytes(); !bytes.Equal(before, after) {
				t.Fatalf("config changed by a refused request:\n%s", after)
			}
		})
	}
	if len(cases) < 25 {
		t.Fatalf("only %d bad disk requests", len(cases))
	}
	if got := fmt.Sprint(env.imgs.images); got != images {
		t.Errorf("images changed: %s", got)
	}
	for id, img := range env.imgs.images {
		if img.rolledBack != "" {
			t.Errorf("%s rolled back by a refused request", id)
		}
	}
	// A refused rollback still re-activates, as upstream always does; that
	// may reconcile LIO, but only to the full, unchanged export.
	for i, step := range env.rec.history() {
		if len(step) != 2 || step["rbd/disk1"] != "{}" || step["rbd/mapped"] != "{}" {
			t.Errorf("reconcile %d after refused requests exported %v", i, step)
		}
	}
}

func TestDiskBadRequestsChangeNothing(t *testing.T) {
	runDiskBadCases(t, newDiskEnv(t, newMemStore(diskDoc()), gw1, diskImages(), nil))
}

// TestDiskNotAGateway: reconfigure and rollback need the coordinator to be
// one of the gateways, as upstream's get_remote_gateways insists.
func TestDiskNotAGateway(t *testing.T) {
	store := newMemStore(diskDoc())
	env := newDiskEnv(t, store, "stranger.example.test", diskImages(), nil)
	before := store.bytes()
	want := "stranger.example.test cannot be used to perform this operation because it is not defined within the gateways configuration"
	expect(t, env.do(t, "PUT", "/api/disk/rbd/mapped", v("mode", "reconfigure", "controls", "{}")), 400, want)
	expect(t, env.do(t, "PUT", "/api/disksnap/rbd/snappy/s1", v("mode", "rollback")), 400, want)
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("config changed")
	}
}

func TestDiskRoutesWithoutRBD(t *testing.T) {
	env := newEnv(t, newMemStore(diskDoc()), gw1, nil)
	rec := env.do(t, "PUT", "/api/disk/rbd/new", v("mode", "create", "size", "1G"))
	if rec.Code != 500 || !strings.Contains(msgOf(t, rec), "no RBD access configured") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	expect(t, env.do(t, "GET", "/api/disk/rbd/disk1", nil), 200, "")
}
