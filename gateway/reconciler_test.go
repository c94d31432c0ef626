package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

func TestMain(m *testing.M) { devcluster.Main(m) }

const (
	gw1       = "gw1.test"
	gw2       = "gw2.test"
	targetIQN = "iqn.2003-01.com.example.gateway:t1"
	clientIQN = "iqn.1994-05.com.example:gateway-client"
	imageSize = 32 << 20
)

var addr1 = netip.MustParseAddr("127.0.0.1")

// fixture is an image and an empty emulated configfs. The image's size
// comes from images (Options.Size), so the reconciler's tests need no
// cluster; newClusterFixture makes it a real RBD image read through Conn.
type fixture struct {
	t      *testing.T
	conn   *rados.Conn // nil without a cluster
	images *images
	image  string
	disk   string
	fs     lio.FS
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{t: t, image: fmt.Sprintf("gateway-%08x", rand.Uint32())}
	fx.disk = "rbd/" + fx.image
	fx.images = &images{sizes: map[string]int64{fx.disk: imageSize}, reads: map[string]int{}}
	var err error
	if fx.fs, err = lio.NewFS(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return fx
}

// newClusterFixture backs the fixture's image with a real one in the
// test binary's cluster.
func newClusterFixture(t *testing.T) *fixture {
	t.Helper()
	fx := newFixture(t)
	fx.images = nil
	c := devcluster.Require(t)
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	fx.conn = conn
	if err := rbd.Create(conn.Raw(), "rbd", fx.image, imageSize, rbd.DefaultFeatures); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rbd.Remove(context.Background(), conn.Raw(), "rbd", fx.image, rbd.RemoveOptions{})
	})
	return fx
}

// images plays RBD for image sizes: "pool/image" -> bytes, in pool rbd
// only, with what rbd.Size returns for a missing image or pool.
type images struct {
	mu    sync.Mutex
	sizes map[string]int64
	reads map[string]int
}

func (im *images) size(pool, image string) (int64, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if pool != "rbd" {
		return 0, fmt.Errorf("size of %s/%s: %w", pool, image, rbd.ErrPoolNotFound)
	}
	n, ok := im.sizes[pool+"/"+image]
	if !ok {
		return 0, fmt.Errorf("size of %s/%s: %w", pool, image, rbd.ErrImageNotFound)
	}
	im.reads[pool+"/"+image]++
	return n, nil
}

func (im *images) resize(id string, n int64) {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.sizes[id] = n
}

func (im *images) readCount() int {
	im.mu.Lock()
	defer im.mu.Unlock()
	n := 0
	for _, r := range im.reads {
		n += r
	}
	return n
}

// options are a Reconciler's for gateway name on the fixture's configfs,
// reading sizes from its images (or its cluster).
func (fx *fixture) options(name string, addrs ...netip.Addr) Options {
	o := Options{FS: fx.fs, Identity: host.Identity{Name: name, Addrs: addrs}, Conn: fx.conn}
	if fx.images != nil {
		o.Size = fx.images.size
	}
	return o
}

func (fx *fixture) reconciler(name string, addrs ...netip.Addr) *Reconciler {
	return New(fx.options(name, addrs...))
}

// doc is a target on gw1 (127.0.0.1) exporting the fixture's disk to one
// CHAP client, with backstore bs.
func (fx *fixture) doc(bs string) *config.Doc {
	fx.t.Helper()
	now := time.Now()
	d := config.NewDoc(now)
	d.Epoch = 3
	if _, err := d.AddTarget(targetIQN, now); err != nil {
		fx.t.Fatal(err)
	}
	if _, err := d.AddTargetGateway(targetIQN, gw1, []string{"127.0.0.1"}, []string{"127.0.0.1"}, now); err != nil {
		fx.t.Fatal(err)
	}
	owner := gw1
	d.Disks[fx.disk] = &config.Disk{Pool: "rbd", Image: fx.image, WWN: "1b4ed3b6-2a53-4f5a-9c1e-4f3b7a0c2d11",
		Backstore: bs, BackstoreObjectName: "rbd." + fx.image, Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
	d.Targets[targetIQN].Disks[fx.disk] = config.LunRef{LunID: 0}
	c, err := d.AddClient(targetIQN, clientIQN, now)
	if err != nil {
		fx.t.Fatal(err)
	}
	c.Auth = config.Auth{Username: "gwuser", Password: "Gateway-Secret-1"}
	c.Luns[fx.disk] = config.LunRef{LunID: 0}
	return d
}

// converged fails unless LIO holds exactly what the document builds for gw.
func (fx *fixture) converged(doc *config.Doc, gw string, addrs ...netip.Addr) lio.State {
	fx.t.Helper()
	spec, err := SpecFromConfig(doc, gw, nil, FromConfigOptions{
		LocalAddrs: addrs,
		Size:       func(string, string) (int64, error) { return imageSize, nil },
		DevicePath: func(pool, image string) (string, error) { return "/dev/fake/" + pool + "/" + image, nil },
	})
	if err != nil {
		fx.t.Fatal(err)
	}
	want, err := lio.Build(spec)
	if err != nil {
		fx.t.Fatal(err)
	}
	got, err := lio.Observe(fx.fs)
	if err != nil {
		fx.t.Fatal(err)
	}
	if p := lio.NewPlan(got, want); !p.Empty() {
		fx.t.Fatalf("LIO has not converged; still to do:\n%s", p)
	}
	return got
}

// TestReconcileSizesThroughRBD is the one test of the real size path: sizes
// read through Conn from a real image, and a missing image or pool skipped.
func TestReconcileSizesThroughRBD(t *testing.T) {
	fx := newClusterFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	st := fx.converged(doc, gw1, addr1)
	if len(st.StorageObjects) != 1 || st.StorageObjects[0].Size != imageSize {
		t.Fatalf("storage objects: %+v", st.StorageObjects)
	}

	// Grown image: sizes are cached between reconciles (an image open per
	// disk per config change is what made big targets slow), so it takes
	// ForgetSizes, which the API's resize paths call, to see it.
	if err := rbd.Resize(fx.conn.Raw(), "rbd", fx.image, 2*imageSize); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(t.Context(), doc, Mode{})
	if err != nil || !rep.InSync {
		t.Fatalf("cached size: in sync %v, err %v, plan:\n%s", rep.InSync, err, rep.Plan)
	}
	r.ForgetSizes(fx.disk)
	rep, err = r.Run(t.Context(), doc, Mode{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Plan.String(), fmt.Sprintf(`attrib/dev_size "%d"`, 2*imageSize)) {
		t.Errorf("resize plan:\n%s", rep.Plan)
	}

	// A second run has nothing to do.
	if rep, err = r.Run(t.Context(), doc, Mode{}); err != nil || !rep.InSync || rep.Applied != nil {
		t.Fatalf("second run: in sync %v, applied %v, err %v", rep.InSync, rep.Applied, err)
	}

	// A missing image or pool skips the disk.
	for _, missing := range []struct{ pool, image string }{{"rbd", fx.image + "-gone"}, {"no-such-pool", fx.image}} {
		gone := doc.Clone()
		gone.Disks[fx.disk].Pool, gone.Disks[fx.disk].Image = missing.pool, missing.image
		if err := r.Reconcile(t.Context(), gone); err != nil {
			t.Fatalf("%s/%s: %v", missing.pool, missing.image, err)
		}
		st, _ := lio.Observe(fx.fs)
		if len(st.StorageObjects) != 0 || len(st.Targets) != 1 || len(st.Targets[0].TPGs[0].LUNs) != 0 {
			t.Fatalf("LIO with %s/%s missing: %+v", missing.pool, missing.image, st)
		}
	}
}

// A disk that leaves the desired state leaves the size cache, so when it
// comes back (a snapshot rollback deactivates and re-activates it) its size
// is read again.
func TestSizeCacheReadsOncePerDisk(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	for range 3 {
		if err := r.Reconcile(t.Context(), doc); err != nil {
			t.Fatal(err)
		}
	}
	if reads := fx.images.readCount(); reads != 1 {
		t.Fatalf("3 reconciles read the size %d times, want 1", reads)
	}
	without := doc.Clone()
	delete(without.Targets[targetIQN].Disks, fx.disk)
	delete(without.Targets[targetIQN].Clients[clientIQN].Luns, fx.disk)
	if err := r.Reconcile(t.Context(), without); err != nil {
		t.Fatal(err)
	}
	fx.images.resize(fx.disk, 3*imageSize)
	rep, err := r.Run(t.Context(), doc, Mode{})
	if err != nil {
		t.Fatal(err)
	}
	if reads := fx.images.readCount(); reads != 2 || !strings.Contains(rep.Plan.String(), fmt.Sprint(3*imageSize)) {
		t.Fatalf("re-added disk: %d reads, plan:\n%s", reads, rep.Plan)
	}
	r.ForgetSizes()
	if _, err := r.Run(t.Context(), doc, Mode{}); err != nil || fx.images.readCount() != 3 {
		t.Fatalf("after ForgetSizes(): %d reads, %v", fx.images.readCount(), err)
	}
}

// A size the API noted (it read it when checking the image exists) is what
// the build uses: the check of a commit and the reconcile after it open no
// image.
func TestNoteSizeSavesTheRead(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	r.NoteSize(fx.disk, imageSize)
	if err := r.Check(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if reads := fx.images.readCount(); reads != 0 {
		t.Fatalf("a check and a reconcile read the noted size %d times", reads)
	}
	st := fx.converged(doc, gw1, addr1)
	if len(st.StorageObjects) != 1 || st.StorageObjects[0].Size != imageSize {
		t.Fatalf("storage objects: %+v", st.StorageObjects)
	}
}

func TestReconcileMissingImageSkipsDisk(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	doc.Disks[fx.disk].Image = fx.image + "-gone"
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	st, _ := lio.Observe(fx.fs)
	if len(st.StorageObjects) != 0 || len(st.Targets) != 1 || len(st.Targets[0].TPGs[0].LUNs) != 0 {
		t.Fatalf("LIO with the image missing: %+v", st)
	}
	// a missing pool is skipped the same way
	doc.Disks[fx.disk].Pool = "no-such-pool"
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if st, _ := lio.Observe(fx.fs); len(st.StorageObjects) != 0 || len(st.Targets) != 1 {
		t.Fatalf("LIO with the pool missing: %+v", st)
	}
}

// TestReconcileRemovesWhatLeftTheConfig: a target deleted from the
// document is removed from LIO by a Reconciler that saw it before.
func TestReconcileRemovesWhatLeftTheConfig(t *testing.T) {
	fx := newFixture(t)
	fx.requireRemovedAfter(t, func(next *config.Doc) {
		delete(next.Targets, targetIQN)
		delete(next.Disks, fx.disk)
	})
}

// DELETE /api/gateway keeps the target for the other gateways but drops
// this one from gateways and portals: its LIO objects must go.
func TestReconcileRemovesWhatADeletedGatewayBuilt(t *testing.T) {
	newFixture(t).requireRemovedAfter(t, func(next *config.Doc) {
		delete(next.Targets[targetIQN].Portals, gw1)
		next.Targets[targetIQN].IPList = []string{}
		delete(next.Gateways, gw1)
	})
}

// requireRemovedAfter reconciles gw1 to the fixture's document, then to a
// copy that change edits: LIO must then hold no target and no storage object.
func (fx *fixture) requireRemovedAfter(t *testing.T, change func(next *config.Doc)) {
	t.Helper()
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	next := doc.Clone()
	change(next)
	if err := r.Reconcile(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if st, _ := lio.Observe(fx.fs); len(st.Targets) != 0 || len(st.StorageObjects) != 0 {
		t.Fatalf("leftovers after the change: %+v", st)
	}
}

func TestReconcileNotMemberTouchesNothing(t *testing.T) {
	fx := newFixture(t)
	doc := fx.doc(lio.BackstoreUserRBD)
	if err := fx.reconciler(gw1, addr1).Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	before, _ := lio.Observe(fx.fs)
	other := fx.reconciler("stranger.test", addr1)
	if _, err := other.Teardown(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	after, _ := lio.Observe(fx.fs)
	if len(after.Targets) != len(before.Targets) || len(after.StorageObjects) != 1 {
		t.Fatalf("a gateway not in the config tore down LIO: %+v", after)
	}
}

// TestReconcileSerialised: concurrent reconciles of one Reconciler never
// interleave (two applies of one plan would fail with EEXIST).
func TestReconcileSerialised(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- r.Reconcile(context.Background(), doc) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	fx.converged(doc, gw1, addr1)
}

// fakeMapper plays krbd: it records mappings and refuses to unmap a device
// the emulated LIO still uses, as the kernel does with EBUSY.
type fakeMapper struct {
	fs     lio.FS
	mu     sync.Mutex
	mapped map[string]string
	calls  []string
}

func (m *fakeMapper) Map(_ context.Context, pool, image string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "map "+pool+"/"+image)
	if image == "missing" {
		return "", fmt.Errorf("map: %w", rbd.ErrImageNotFound)
	}
	if d, ok := m.mapped[pool+"/"+image]; ok {
		return d, nil
	}
	d := fmt.Sprintf("/dev/rbd%d", len(m.mapped))
	m.mapped[pool+"/"+image] = d
	return d, nil
}

func (m *fakeMapper) Device(_ context.Context, pool, image string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.mapped[pool+"/"+image]; ok {
		return d, nil
	}
	return "", rbd.ErrNotMapped
}

func (m *fakeMapper) Unmap(_ context.Context, pool, image string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "unmap "+pool+"/"+image)
	d, ok := m.mapped[pool+"/"+image]
	if !ok {
		return nil
	}
	st, err := lio.Observe(m.fs)
	if err != nil {
		return err
	}
	for _, so := range st.StorageObjects {
		if so.Config == d {
			return fmt.Errorf("unmap %s: %w", d, rbd.ErrDeviceBusy)
		}
	}
	delete(m.mapped, pool+"/"+image)
	return nil
}

func TestBlockBackstoreMapsAndUnmaps(t *testing.T) {
	fx := newFixture(t)
	m := &fakeMapper{fs: fx.fs, mapped: map[string]string{}}
	opts := fx.options(gw1, addr1)
	opts.Mapper = m
	r := New(opts)
	doc := fx.doc(lio.BackstoreBlock)

	// A dry run maps nothing and shows where the image would appear.
	rep, err := r.Run(t.Context(), doc, Mode{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.calls) != 0 || !strings.Contains(rep.Plan.String(), "/dev/rbd/rbd/"+fx.image) {
		t.Fatalf("dry run: calls %v, plan:\n%s", m.calls, rep.Plan)
	}

	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	st, _ := lio.Observe(fx.fs)
	if len(st.StorageObjects) != 1 || st.StorageObjects[0].Plugin != lio.PluginBlock || st.StorageObjects[0].Config != "/dev/rbd0" {
		t.Fatalf("block storage object: %+v", st.StorageObjects)
	}
	// Idempotent: a second reconcile finds the existing mapping.
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if len(m.mapped) != 1 {
		t.Fatalf("mapped twice: %v", m.mapped)
	}

	// Unexported: LIO lets go of the device first, then it is unmapped.
	next := doc.Clone()
	delete(next.Targets[targetIQN].Disks, fx.disk)
	delete(next.Targets[targetIQN].Clients[clientIQN].Luns, fx.disk)
	rep, err = r.Run(t.Context(), next, Mode{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Unmapped, []string{fx.disk}) || len(m.mapped) != 0 {
		t.Fatalf("after unexport: unmapped %v, still mapped %v (calls %v)", rep.Unmapped, m.mapped, m.calls)
	}

	// Teardown unmaps too.
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if rep, err = r.Teardown(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	st, _ = lio.Observe(fx.fs)
	if len(st.StorageObjects) != 0 || len(st.Targets) != 0 || len(m.mapped) != 0 {
		t.Fatalf("teardown left %+v, mapped %v", st, m.mapped)
	}

	// A missing image is skipped like a user:rbd one.
	missing := fx.doc(lio.BackstoreBlock)
	missing.Disks[fx.disk].Image = "missing"
	if err := r.Reconcile(t.Context(), missing); err != nil {
		t.Fatal(err)
	}
}

func TestBlockBackstoreSingleGatewayOnly(t *testing.T) {
	fx := newFixture(t)
	m := &fakeMapper{fs: fx.fs, mapped: map[string]string{}}
	opts := fx.options(gw1, addr1)
	opts.Mapper = m
	r := New(opts)
	doc := fx.doc(lio.BackstoreBlock)
	if _, err := doc.AddTargetGateway(targetIQN, gw2, []string{"127.0.0.1", "127.0.0.2"}, []string{"127.0.0.2"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Check (what an API commit runs first) refuses the document.
	err := r.Check(t.Context(), doc)
	if !errors.Is(err, rbd.ErrFailoverUnsafe) || !strings.Contains(err.Error(), "one gateway only, not 2") {
		t.Fatalf("check of two gateways exporting a block disk: %v", err)
	}
	// A document holding it anyway: the disk is held (reported, not
	// exported), the rest converges.
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatalf("reconcile with one bad disk: %v", err)
	}
	st := r.Status()
	if st.Converged || len(st.Problems) != 1 || st.Problems[0].Object != "disk "+fx.disk ||
		!strings.Contains(st.Problems[0].Error, "one gateway only, not 2") {
		t.Fatalf("status: %+v", st)
	}
	if len(m.calls) != 0 {
		t.Errorf("mapped although refused: %v", m.calls)
	}
	obs, _ := lio.Observe(fx.fs)
	if len(obs.Targets) != 1 || len(obs.StorageObjects) != 0 || len(obs.Targets[0].TPGs[0].LUNs) != 0 {
		t.Errorf("LIO with the block disk refused: %+v", obs)
	}
}

func TestSessionsAndClientState(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Sessions(t.Context(), targetIQN); err != nil || n != 0 {
		t.Fatalf("sessions = %d, %v", n, err)
	}
	if s, err := r.ClientState(t.Context(), targetIQN, clientIQN); err != nil || s != "" {
		t.Fatalf("state = %q, %v", s, err)
	}
	// Play the kernel: a logged-in session.
	info := filepath.Join(fx.fs.Root(), "target/iscsi", targetIQN, "tpgt_1/acls", clientIQN, "info")
	text := "InitiatorName: " + clientIQN + "\nInitiatorAlias: host1\nLIO Session ID: 1   ISID: 0x00023d000001  TSIH: 1  SessionType: Normal\nSession State: TARG_SESS_STATE_LOGGED_IN\nCID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN\n   Address 127.0.0.9 TCP  StatSN: 0x00000002\n"
	if err := os.WriteFile(info, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	stats := filepath.Join(fx.fs.Root(), "target/iscsi", targetIQN, "fabric_statistics/iscsi_instance")
	if err := os.MkdirAll(stats, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stats, "sessions"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Sessions(t.Context(), targetIQN); err != nil || n != 1 {
		t.Errorf("sessions = %d, %v; want 1", n, err)
	}
	if s, err := r.ClientState(t.Context(), targetIQN, clientIQN); err != nil || s != "LOGGED_IN" {
		t.Errorf("state = %q, %v; want LOGGED_IN", s, err)
	}
	if s, ok, err := r.ClientSession(t.Context(), targetIQN, clientIQN); err != nil || !ok || s.Alias != "host1" || !slices.Equal(s.Addresses, []string{"127.0.0.9"}) {
		t.Errorf("session = %+v, %v, %v", s, ok, err)
	}
}

// TestTeardownWithoutConfig: when the configuration cannot be read at
// shutdown, an empty document still removes what this Reconciler restored.
func TestTeardownWithoutConfig(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	if err := r.Reconcile(t.Context(), fx.doc(lio.BackstoreUserRBD)); err != nil {
		t.Fatal(err)
	}
	// a fabric-wide object of no target, which teardown must leave alone
	if err := os.MkdirAll(filepath.Join(fx.fs.Root(), "target/iscsi/iqn.2003-01.com.example:other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Teardown(t.Context(), config.NewDoc(time.Now())); err != nil {
		t.Fatal(err)
	}
	st, _ := lio.Observe(fx.fs)
	if len(st.StorageObjects) != 0 || len(st.Targets) != 1 || st.Targets[0].IQN != "iqn.2003-01.com.example:other" {
		t.Fatalf("after teardown: %+v", st)
	}
}

// TestTeardownFromModel: a teardown after a successful reconcile plans from
// what the Reconciler remembers instead of re-reading LIO, and leaves none
// of its objects; when LIO holds something it never saw inside one of them
// (a LUN made behind its back, which keeps the TPG from going), the
// teardown reads the whole tree and still removes everything it manages,
// and an object of no managed target stays.
func TestTeardownFromModel(t *testing.T) {
	for _, behind := range []bool{false, true} {
		t.Run(fmt.Sprintf("behind=%v", behind), func(t *testing.T) {
			fx := newFixture(t)
			r := fx.reconciler(gw1, addr1)
			doc := fx.doc(lio.BackstoreUserRBD)
			if err := r.Reconcile(t.Context(), doc); err != nil {
				t.Fatal(err)
			}
			// an in-sync run reads back what the first one made: the
			// Reconciler now remembers every listing
			if rep, err := r.Run(t.Context(), doc, Mode{}); err != nil || !rep.InSync || rep.FullObserve {
				t.Fatalf("second run: in sync %v, full observe %v, %v", rep.InSync, rep.FullObserve, err)
			}
			foreign := "target/iscsi/iqn.2003-01.com.example:other"
			if err := os.MkdirAll(filepath.Join(fx.fs.Root(), foreign), 0o755); err != nil {
				t.Fatal(err)
			}
			if behind {
				stray := "target/iscsi/" + targetIQN + "/tpgt_1/lun/lun_9"
				if err := os.MkdirAll(filepath.Join(fx.fs.Root(), stray), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			before := r.Counters()
			rep, err := r.Teardown(t.Context(), doc)
			if err != nil {
				t.Fatal(err)
			}
			c := r.Counters()
			wantFull := int64(0)
			if behind {
				wantFull = 1
			}
			if full := c.FullObserves - before.FullObserves; full != wantFull {
				t.Errorf("%d full reads of LIO in the teardown, want %d", full, wantFull)
			}
			if rep.FullObserve != behind {
				t.Errorf("report: full observe %v, want %v", rep.FullObserve, behind)
			}
			st, err := lio.Observe(fx.fs)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.StorageObjects) != 0 || len(st.HBAs) != 0 || len(st.Targets) != 1 || st.Targets[0].IQN != "iqn.2003-01.com.example:other" {
				t.Fatalf("after teardown: %+v", st)
			}
		})
	}
}

// A cold start reads the sizes of a target's disks concurrently, once each,
// prefetchWorkers at a time: each read blocks until that many are in flight,
// so a prefetch that reads one at a time (or with fewer workers) never gets
// there and the test fails on its deadline instead.
func TestPrefetchSizesConcurrently(t *testing.T) {
	fx := newFixture(t)
	var mu sync.Mutex
	inFlight, peak := 0, 0
	all := make(chan struct{})
	opts := fx.options(gw1, addr1)
	opts.Size = func(pool, image string) (int64, error) {
		mu.Lock()
		inFlight++
		if inFlight > peak {
			peak = inFlight
			if peak == prefetchWorkers {
				close(all)
			}
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(time.Minute):
			t.Errorf("%s/%s: %d size reads in flight after a minute, want %d", pool, image, inFlight, prefetchWorkers)
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return fx.images.size(pool, image)
	}
	r := New(opts)
	doc := fx.doc(lio.BackstoreUserRBD)
	owner := gw1
	for i := 1; i <= 12; i++ {
		img := fmt.Sprintf("%s-extra%d", fx.image, i)
		id := "rbd/" + img
		fx.images.resize(id, imageSize)
		doc.Disks[id] = &config.Disk{Pool: "rbd", Image: img, WWN: fmt.Sprintf("1b4ed3b6-2a53-4f5a-9c1e-%012d", i),
			Backstore: lio.BackstoreUserRBD, BackstoreObjectName: "rbd." + img, Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
		doc.Targets[targetIQN].Disks[id] = config.LunRef{LunID: i}
	}
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if len(fx.images.reads) != 13 {
		t.Fatalf("%d images read, want 13", len(fx.images.reads))
	}
	for id, n := range fx.images.reads {
		if n != 1 {
			t.Errorf("%s read %d times", id, n)
		}
	}
	if peak != prefetchWorkers {
		t.Errorf("at most %d sizes read at once, want %d", peak, prefetchWorkers)
	}
	st, _ := lio.Observe(fx.fs)
	if len(st.StorageObjects) != 13 {
		t.Fatalf("%d storage objects, want 13", len(st.StorageObjects))
	}
}

// Converged lets the config watch skip a document an API call has just
// applied, and only that one.
func TestConvergedOnlyForTheAppliedDocument(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	if r.Converged(doc) {
		t.Fatal("converged before any reconcile")
	}
	if err := r.Reconcile(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if !r.Converged(doc.Clone()) {
		t.Fatal("not converged on the document just applied")
	}
	// a newer epoch with the same content (what a preview reconciled
	// before its coordinator committed it): nothing to do
	same := doc.Clone()
	same.Epoch++
	same.Updated = "2030-01-01 00:00:00"
	if !r.Converged(same) {
		t.Fatal("not converged on the same content at a newer epoch")
	}
	if err := r.Reconcile(t.Context(), same); err != nil {
		t.Fatal(err)
	}
	if n := r.Status().Runs; n != 1 {
		t.Fatalf("%d reconciles for one content, want 1", n)
	}
	next := doc.Clone()
	next.Epoch++
	if _, err := next.AddTarget("iqn.2003-01.com.example:converged-other", time.Now()); err != nil {
		t.Fatal(err)
	}
	if r.Converged(next) {
		t.Fatal("converged on a newer epoch with another target")
	}
	// a forgotten size (a resize, a reload) makes the same document worth
	// a reconcile again
	r.ForgetSizes()
	if r.Converged(doc) {
		t.Fatal("converged after ForgetSizes")
	}
	if err := r.Reconcile(t.Context(), same); err != nil {
		t.Fatal(err)
	}
	if n := r.Status().Runs; n != 2 {
		t.Fatalf("%d reconciles after ForgetSizes, want 2", n)
	}
	if _, err := r.Teardown(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	if r.Converged(doc) {
		t.Fatal("still converged after a teardown")
	}
}

// TestCheckAlongsideReconcile: Check (inside an API commit) runs while
// reconciles do, without waiting for them; -race checks the shared caches.
func TestCheckAlongsideReconcile(t *testing.T) {
	fx := newFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	done := make(chan error, 1)
	go func() {
		var err error
		for range 5 {
			if err = r.Reconcile(t.Context(), doc); err != nil {
				break
			}
			r.ForgetSizes()
		}
		done <- err
	}()
	for range 5 {
		if err := r.Check(t.Context(), doc); err != nil {
			t.Errorf("check: %v", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); !st.Converged || len(st.Problems) != 0 {
		t.Errorf("status: %+v", st)
	}
}

// A cold start reads the sizes of many disks from their image headers
// (rbd.BulkFacts): every size is the image's, an image with a snapshot
// (read by an open) too, and a missing image is left to the build, which
// skips that disk (as TestReconcileSizesThroughRBD) while the rest converges
// with the prefetched sizes.
func TestPrefetchSizesFromHeaders(t *testing.T) {
	fx := newClusterFixture(t)
	r := fx.reconciler(gw1, addr1)
	doc := fx.doc(lio.BackstoreUserRBD)
	owner := gw1
	want := map[string]int64{fx.disk: imageSize}
	addDisk := func(i int, img string) string {
		id := "rbd/" + img
		doc.Disks[id] = &config.Disk{Pool: "rbd", Image: img, WWN: fmt.Sprintf("1b4ed3b6-2a53-4f5a-9c1e-%012d", i),
			Backstore: lio.BackstoreUserRBD, BackstoreObjectName: "rbd." + img, Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
		doc.Targets[targetIQN].Disks[id] = config.LunRef{LunID: i}
		return id
	}
	for i := 1; i <= 3; i++ {
		img := fmt.Sprintf("%s-bulk%d", fx.image, i)
		size := int64(i+1) * imageSize
		if err := rbd.Create(fx.conn.Raw(), "rbd", img, size, rbd.DefaultFeatures); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = rbd.Remove(context.Background(), fx.conn.Raw(), "rbd", img, rbd.RemoveOptions{})
		})
		want[addDisk(i, img)] = size
	}
	if err := rbd.CreateSnapshot(fx.conn.Raw(), "rbd", fx.image+"-bulk3", "s1"); err != nil {
		t.Fatal(err)
	}
	addDisk(4, fx.image+"-missing")

	r.prefetchSizes(t.Context(), doc)
	r.cacheMu.Lock()
	got := maps.Clone(r.sizes)
	r.cacheMu.Unlock()
	if !maps.Equal(got, want) {
		t.Fatalf("prefetched sizes %v, want %v", got, want)
	}

	if _, err := r.Run(t.Context(), doc, Mode{}); err != nil {
		t.Fatal(err)
	}
	st, err := lio.Observe(fx.fs)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.StorageObjects) != len(want) {
		t.Fatalf("%d storage objects, want %d", len(st.StorageObjects), len(want))
	}
	for _, so := range st.StorageObjects {
		id := "rbd/" + strings.TrimPrefix(so.Name, "rbd.")
		if so.Size != want[id] {
			t.Errorf("%s: dev_size %d, want %d", so.Name, so.Size, want[id])
		}
	}
}

// TestPrefetchKeysSizesByImage: the size cache is keyed by image, so a
// hand-edited object that keys two disks by each other's image must still
// give each storage object its own image's size, on the cold prefetch
// (several sizes read at once) as on a later build.
func TestPrefetchKeysSizesByImage(t *testing.T) {
	fx := newFixture(t)
	r := New(fx.options(gw1, addr1))
	doc := fx.doc(lio.BackstoreUserRBD)
	owner := gw1
	sizes := map[string]int64{"cross-a": imageSize, "cross-b": 2 * imageSize}
	for i, key := range []string{"cross-a", "cross-b"} {
		img := "cross-b"
		if key == "cross-b" {
			img = "cross-a"
		}
		fx.images.resize("rbd/"+img, sizes[img])
		id := "rbd/" + key
		doc.Disks[id] = &config.Disk{Pool: "rbd", Image: img, WWN: fmt.Sprintf("1b4ed3b6-2a53-4f5a-9c1e-%012d", 100+i),
			Backstore: lio.BackstoreUserRBD, BackstoreObjectName: "rbd." + img, Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
		doc.Targets[targetIQN].Disks[id] = config.LunRef{LunID: 1 + i}
	}
	for range 2 {
		if err := r.Reconcile(t.Context(), doc); err != nil {
			t.Fatal(err)
		}
		st, err := lio.Observe(fx.fs)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, so := range st.StorageObjects {
			img := strings.TrimPrefix(so.Name, "rbd.")
			if n, ok := sizes[img]; ok {
				found++
				if so.Size != n {
					t.Errorf("%s: size %d, its image's is %d", so.Name, so.Size, n)
				}
			}
		}
		if found != 2 {
			t.Fatalf("%d of the 2 crossed disks in LIO: %+v", found, st.StorageObjects)
		}
		doc = doc.Fork()
		doc.MutDisk("rbd/cross-a").Updated = config.Timestamp(time.Now())
	}
}
