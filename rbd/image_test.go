package rbd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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
	ioctx, err := conn.OpenIOContext(testPool)
	if err != nil {
		t.Fatal(err)
	}
	defer ioctx.Destroy()
	h, err := gorbd.OpenImage(ioctx, img, gorbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	info, err = Info(conn, testPool, img)
	if err != nil || len(info.Watchers) != 1 || len(info.LockOwners) != 1 {
		t.Errorf("Info with an open writer: watchers %v owners %v, %v", info.Watchers, info.LockOwners, err)
	}

	// remove: retried while watched, bounded, upstream's message
	start := time.Now()
	err = Remove(context.Background(), conn, testPool, img, RemoveOptions{Timeout: 600 * time.Millisecond, Interval: 200 * time.Millisecond})
	if !errors.Is(err, ErrImageBusy) || err.Error() != "Unable to delete the underlying rbd image "+img {
		t.Errorf("Remove while watched: %v", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("Remove gave up after %v, want about 600ms", d)
	}
	// the watcher goes away while Remove retries: it succeeds
	go func() {
		time.Sleep(300 * time.Millisecond)
		h.Close()
	}()
	if err := Remove(context.Background(), conn, testPool, img, RemoveOptions{Timeout: 10 * time.Second, Interval: 100 * time.Millisecond}); err != nil {
		t.Fatalf("Remove after the watcher left: %v", err)
	}
	if ok, err := Exists(conn, testPool, img); err != nil || ok {
		t.Errorf("Exists after remove = %v, %v", ok, err)
	}
	// removing again is success: a retried delete must not fail
	if err := Remove(context.Background(), conn, testPool, img, RemoveOptions{}); err != nil {
		t.Errorf("Remove of a removed image: %v", err)
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
		ioctx, err := conn.OpenIOContext(testPool)
		if err != nil {
			t.Fatal(err)
		}
		defer ioctx.Destroy()
		h, err := gorbd.OpenImage(ioctx, img, gorbd.NoSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if _, err := h.WriteAt(bytes4k(b), 0); err != nil {
			t.Fatal(err)
		}
	}
	read := func() byte {
		t.Helper()
		ioctx, err := conn.OpenIOContext(testPool)
		if err != nil {
			t.Fatal(err)
		}
		defer ioctx.Destroy()
		h, err := gorbd.OpenImageReadOnly(ioctx, img, gorbd.NoSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
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
		t.Skipf("cannot change keyring after connect: %v", err)
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
