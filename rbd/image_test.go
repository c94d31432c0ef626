package rbd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"

	"ceph-iscsi/devcluster"
)

func TestMain(m *testing.M) { devcluster.Main(m) }

const testPool = "rbd"

func connect(tb testing.TB) (*gorados.Conn, *devcluster.Cluster) {
	tb.Helper()
	c := devcluster.Require(tb)
	conn, err := gorados.NewConnWithUser("admin")
	if err != nil {
		tb.Fatal(err)
	}
	if err := conn.ReadConfigFile(c.Conf); err != nil {
		tb.Fatal(err)
	}
	if err := conn.Connect(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(conn.Shutdown)
	return conn, c
}

// uniqueImage names an image for this test alone and removes it afterwards, so tests
// can share the cluster and a failed run leaves nothing behind.
func uniqueImage(tb testing.TB, conn *gorados.Conn) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	img := fmt.Sprintf("%s.%08x", name, rand.Uint32())
	tb.Cleanup(func() {
		if snaps, err := ListSnapshots(conn, testPool, img); err == nil {
			for _, s := range snaps {
				RemoveSnapshot(conn, testPool, img, s.Name)
			}
		}
		Remove(context.Background(), conn, testPool, img, RemoveOptions{Timeout: time.Second, Interval: 100 * time.Millisecond})
	})
	return img
}

// openImage opens img for the test, read-only or not, and returns it with
// its close, which may be called early: it also runs at the test's cleanup
// (before uniqueImage's removal, whatever happens).
func openImage(tb testing.TB, conn *gorados.Conn, img string, readOnly bool) (*gorbd.Image, func()) {
	tb.Helper()
	ioctx, err := conn.OpenIOContext(testPool)
	if err != nil {
		tb.Fatal(err)
	}
	open := gorbd.OpenImage
	if readOnly {
		open = gorbd.OpenImageReadOnly
	}
	h, err := open(ioctx, img, gorbd.NoSnapshot)
	if err != nil {
		ioctx.Destroy()
		tb.Fatal(err)
	}
	var once sync.Once
	closeImage := func() {
		once.Do(func() {
			h.Close()
			ioctx.Destroy()
		})
	}
	tb.Cleanup(closeImage)
	return h, closeImage
}

func TestImageLifecycle(t *testing.T) {
	conn, _ := connect(t)
	img := uniqueImage(t, conn)

	if ok, err := Exists(conn, testPool, img); err != nil || ok {
		t.Fatalf("Exists before create = %v, %v", ok, err)
	}
	if err := Create(conn, testPool, img, 1<<30, 0); err != nil {
		t.Fatal(err)
	}
	if err := Create(conn, testPool, img, 1<<30, 0); !errors.Is(err, ErrImageExists) {
		t.Errorf("second Create: %v, want ErrImageExists", err)
	}
	if ok, err := Exists(conn, testPool, img); err != nil || !ok {
		t.Errorf("Exists after create = %v, %v", ok, err)
	}
	names, err := List(conn, testPool)
	if err != nil || !slices.Contains(names, img) {
		t.Errorf("List = %v, %v; want it to contain %s", names, err, img)
	}

	info, err := Info(conn, testPool, img)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 1<<30 || info.Features != DefaultFeatures || CheckFeatures(img, info.Features) != nil {
		t.Errorf("Info = %+v; want 1 GiB with features %d", info, DefaultFeatures)
	}
	if len(info.Watchers) != 0 || len(info.LockOwners) != 0 {
		t.Errorf("Info of an unused image shows watchers %v / owners %v (a read-only open must not watch)", info.Watchers, info.LockOwners)
	}
	if !slices.Contains(info.FeatureNames, "exclusive-lock") {
		t.Errorf("FeatureNames = %v", info.FeatureNames)
	}

	// resize: strictly larger only, with upstream's message
	err = Resize(conn, testPool, img, 1<<30)
	var re *ResizeError
	if !errors.As(err, &re) || !errors.Is(err, ErrResizeNotLarger) ||
		err.Error() != "resize value must be larger than the current size (1G/1073741824)" {
		t.Errorf("Resize to the same size: %v", err)
	}
	if err := Resize(conn, testPool, img, 512<<20); !errors.Is(err, ErrResizeNotLarger) {
		t.Errorf("Resize smaller: %v", err)
	}
	if err := Resize(conn, testPool, img, 2<<30); err != nil {
		t.Fatal(err)
	}
	if size, err := Size(conn, testPool, img); err != nil || size != 2<<30 {
		t.Errorf("Size after resize = %d, %v", size, err)
	}
	if grown, err := Grow(conn, testPool, img, 1<<30); err != nil || grown {
		t.Errorf("Grow smaller = %v, %v; want no change", grown, err)
	}
	if grown, err := Grow(conn, testPool, img, 3<<30); err != nil || !grown {
		t.Errorf("Grow larger = %v, %v; want grown", grown, err)
	}

	// an open read-write handle is a watcher and (once it writes) the lock owner
	h, closeImage := openImage(t, conn, img, false)
	if _, err := h.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	info, err = Info(conn, testPool, img)
	if err != nil || len(info.Watchers) != 1 || len(info.LockOwners) != 1 {
		t.Errorf("Info with an open writer: watchers %v owners %v, %v", info.Watchers, info.LockOwners, err)
	}

	// remove: retried every Interval while watched, given up at Timeout, with
	// upstream's message. The clock moves only when Remove waits, so the
	// attempts are counted, not timed.
	clk := &stepClock{}
	err = Remove(context.Background(), conn, testPool, img, RemoveOptions{Timeout: 600 * time.Millisecond, Interval: 200 * time.Millisecond, clock: clk})
	if !errors.Is(err, ErrImageBusy) || err.Error() != "Unable to delete the underlying rbd image "+img {
		t.Errorf("Remove while watched: %v", err)
	}
	if want := []time.Duration{200 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(clk.waits, want) {
		t.Errorf("Remove while watched waited %v, want %v (3 attempts in 600ms, then give up)", clk.waits, want)
	}
	if ok, err := Exists(conn, testPool, img); err != nil || !ok {
		t.Fatalf("Exists after a refused remove = %v, %v", ok, err)
	}
	// cancelled while waiting for the watcher: gives up at once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk = &stepClock{onWait: func(int) { cancel() }}
	err = Remove(ctx, conn, testPool, img, RemoveOptions{Timeout: time.Hour, Interval: time.Second, clock: clk})
	if !errors.Is(err, ErrImageBusy) || !errors.Is(err, context.Canceled) || len(clk.waits) != 1 {
		t.Errorf("Remove cancelled while watched: %v after %d waits", err, len(clk.waits))
	}
	// the watcher goes away while Remove retries (during its second wait):
	// the next attempt succeeds
	clk = &stepClock{onWait: func(n int) {
		if n == 2 {
			closeImage()
			waitUnwatched(t, conn, img)
		}
	}}
	if err := Remove(context.Background(), conn, testPool, img, RemoveOptions{Timeout: 10 * time.Second, Interval: 100 * time.Millisecond, clock: clk}); err != nil {
		t.Fatalf("Remove after the watcher left: %v", err)
	}
	if len(clk.waits) != 2 {
		t.Errorf("Remove waited %d times, want 2: refused twice while watched, then removed", len(clk.waits))
	}
	if ok, err := Exists(conn, testPool, img); err != nil || ok {
		t.Errorf("Exists after remove = %v, %v", ok, err)
	}
	// removing again is success: a retried delete must not fail
	if err := Remove(context.Background(), conn, testPool, img, RemoveOptions{}); err != nil {
		t.Errorf("Remove of a removed image: %v", err)
	}
}

// stepClock is a Remove clock whose time moves only when Remove waits. It
// records the waits and calls onWait (with the wait's number, from 1) first.
type stepClock struct {
	now    time.Time
	waits  []time.Duration
	onWait func(n int)
}

func (c *stepClock) Now() time.Time { return c.now }

func (c *stepClock) Wait(ctx context.Context, d time.Duration) error {
	c.waits = append(c.waits, d)
	if c.onWait != nil {
		c.onWait(len(c.waits))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.now = c.now.Add(d)
	return nil
}

// waitUnwatched returns once the OSD no longer lists a watcher of img: a
// closed handle's unwatch is acknowledged before Close returns, so this is
// normally the first look.
func waitUnwatched(t *testing.T, conn *gorados.Conn, img string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		info, err := Info(conn, testPool, img)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Watchers) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has watchers %v after its only handle closed", img, info.Watchers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestImageErrors(t *testing.T) {
	conn, _ := connect(t)
	img := uniqueImage(t, conn)
	const noPool = "no-such-pool-for-rbd-tests"

	checks := []struct {
		what string
		err  error
		want error
	}{
		{"Create in missing pool", Create(conn, noPool, img, 1<<20, 0), ErrPoolNotFound},
		{"Resize missing image", Resize(conn, testPool, img, 1<<20), ErrImageNotFound},
		{"Remove in missing pool", Remove(context.Background(), conn, noPool, img, RemoveOptions{}), ErrPoolNotFound},
		{"CreateSnapshot of missing image", CreateSnapshot(conn, testPool, img, "s"), ErrImageNotFound},
		{"Info of missing image", errOf(Info(conn, testPool, img)), ErrImageNotFound},
		{"List of missing pool", errOf(List(conn, noPool)), ErrPoolNotFound},
		{"Exists in missing pool", errOf(Exists(conn, noPool, img)), ErrPoolNotFound},
		{"Size of missing image", errOf(Size(conn, testPool, img)), ErrImageNotFound},
		{"ListSnapshots of missing image", errOf(ListSnapshots(conn, testPool, img)), ErrImageNotFound},
	}
	for _, c := range checks {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.err, c.want)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }

func TestSnapshots(t *testing.T) {
	conn, _ := connect(t)
	img := uniqueImage(t, conn)
	if err := Create(conn, testPool, img, 8<<20, 0); err != nil {
		t.Fatal(err)
	}
	write := func(b byte) {
		t.Helper()
		h, closeImage := openImage(t, conn, img, false)
		defer closeImage()
		if _, err := h.WriteAt(bytes4k(b), 0); err != nil {
			t.Fatal(err)
		}
	}
	read := func() byte {
		t.Helper()
		h, closeImage := openImage(t, conn, img, true)
		defer closeImage()
		buf := make([]byte, 1)
		if _, err := h.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		return buf[0]
	}

	write('a')
	if err := CreateSnapshot(conn, testPool, img, "before"); err != nil {
		t.Fatal(err)
	}
	err := CreateSnapshot(conn, testPool, img, "before")
	if !errors.Is(err, ErrSnapshotExists) || err.Error() != "snapshot before already exists" {
		t.Errorf("duplicate snapshot: %v", err)
	}
	if err := CreateSnapshot(conn, testPool, img, "a@b"); err == nil || err.Error() != "snapshot name is invalid" {
		t.Errorf("snapshot named a@b: %v", err)
	}
	if err := CreateSnapshot(conn, testPool, img, "second one"); err != nil {
		t.Fatal(err)
	}
	snaps, err := ListSnapshots(conn, testPool, img)
	if err != nil || len(snaps) != 2 || snaps[0].Name != "before" || snaps[1].Name != "second one" || snaps[0].Size != 8<<20 {
		t.Errorf("ListSnapshots = %+v, %v", snaps, err)
	}

	write('b')
	if err := RollbackSnapshot(conn, testPool, img, "before"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 'a' {
		t.Errorf("after rollback the image holds %q, want 'a'", got)
	}
	err = RollbackSnapshot(conn, testPool, img, "nope")
	if !errors.Is(err, ErrSnapshotNotFound) || err.Error() != "snapshot nope does not exist" {
		t.Errorf("rollback to a missing snapshot: %v", err)
	}

	// upstream never removes snapshots for the user: Remove refuses
	err = Remove(context.Background(), conn, testPool, img, RemoveOptions{})
	if !errors.Is(err, ErrImageHasSnapshots) ||
		err.Error() != "Unable to delete the underlying rbd image "+img+" - Image has snapshots" {
		t.Errorf("Remove with snapshots: %v", err)
	}

	for _, s := range []string{"before", "second one"} {
		if err := RemoveSnapshot(conn, testPool, img, s); err != nil {
			t.Fatal(err)
		}
	}
	err = RemoveSnapshot(conn, testPool, img, "before")
	if !errors.Is(err, ErrSnapshotNotFound) || err.Error() != "snapshot before does not exist" {
		t.Errorf("removing a removed snapshot: %v", err)
	}
	if snaps, err := ListSnapshots(conn, testPool, img); err != nil || len(snaps) != 0 {
		t.Errorf("ListSnapshots after removal = %+v, %v", snaps, err)
	}
	if err := Remove(context.Background(), conn, testPool, img, RemoveOptions{}); err != nil {
		t.Errorf("Remove without snapshots: %v", err)
	}
}

func bytes4k(b byte) []byte {
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = b
	}
	return buf
}

func TestCredentialsFromConn(t *testing.T) {
	conn, c := connect(t)
	ctx := context.Background()

	creds, err := CredentialsFromConn(ctx, conn, "client.admin", c.Conf)
	if err != nil {
		t.Fatal(err)
	}
	wantKey, err := keyFromKeyring(c.Keyring, "client.admin")
	if err != nil || wantKey == "" {
		t.Fatalf("test keyring %s: %q, %v", c.Keyring, wantKey, err)
	}
	if creds.Key != wantKey || creds.Keyring == "" || creds.ID != "admin" || creds.ConfFile != c.Conf {
		t.Errorf("credentials %v (key match %v)", creds, creds.Key == wantKey)
	}
	if len(creds.Monitors) == 0 {
		t.Errorf("no v1 monitors from mon_host: %v", creds)
	}

	// without a usable keyring the mons are asked
	if err := conn.SetConfigOption("keyring", t.TempDir()+"/missing"); err != nil {
		t.Fatalf("cannot change keyring after connect, so the get-key fallback is untested: %v", err)
	}
	creds, err = CredentialsFromConn(ctx, conn, "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	if creds.Key != wantKey || creds.Keyring != "" {
		t.Errorf("auth get-key fallback: keyring %q, key match %v", creds.Keyring, creds.Key == wantKey)
	}
	if _, err := CredentialsFromConn(ctx, conn, "client.no-such-user", ""); err == nil || strings.Contains(err.Error(), wantKey) {
		t.Errorf("unknown user: %v", err)
	}
}
