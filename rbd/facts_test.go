package rbd

import (
	"errors"
	"slices"
	"testing"

	gorados "github.com/ceph/go-ceph/rados"
)

// factImages connects and names three images: plain (96 MiB), snapped (32
// MiB with snapshot "s1") and missing (never created).
func factImages(t *testing.T) (conn *gorados.Conn, plain, snapped, missing string) {
	t.Helper()
	conn, _ = connect(t)
	plain, snapped, missing = uniqueImage(t, conn), uniqueImage(t, conn), uniqueImage(t, conn)
	if err := Create(conn, testPool, plain, 96<<20, 0); err != nil {
		t.Fatal(err)
	}
	if err := Create(conn, testPool, snapped, 32<<20, 0); err != nil {
		t.Fatal(err)
	}
	if err := CreateSnapshot(conn, testPool, snapped, "s1"); err != nil {
		t.Fatal(err)
	}
	return conn, plain, snapped, missing
}

// TestBulkFacts checks the header reads against librbd's own answers (ReadFacts opens the
// image): sizes and features of images with and without snapshots, and a missing image.
func TestBulkFacts(t *testing.T) {
	conn, plain, snapped, missing := factImages(t)
	facts, errs, err := BulkFacts(conn, testPool, []string{plain, snapped, missing}, 4)
	if err != nil || len(errs) != 0 {
		t.Fatalf("BulkFacts: %v %v", err, errs)
	}
	if _, ok := facts[missing]; ok || len(facts) != 2 {
		t.Fatalf("facts of %d images, missing one present: %v", len(facts), facts)
	}
	for _, img := range []string{plain, snapped} {
		want, err := ReadFacts(conn, testPool, img)
		if err != nil {
			t.Fatal(err)
		}
		got := facts[img]
		if got.Size != want.Size || !slices.Equal(got.FeatureNames, want.FeatureNames) || len(got.Snapshots) != len(want.Snapshots) {
			t.Errorf("%s: bulk %+v, librbd %+v", img, got, want)
		}
	}
	if f := facts[plain]; f.Size != 96<<20 || len(f.FeatureNames) == 0 {
		t.Errorf("plain image: %+v", f)
	}
	if f := facts[snapped]; len(f.Snapshots) != 1 || f.Snapshots[0].Name != "s1" {
		t.Errorf("snapshots: %+v", f)
	}
}

// TestHeaderSize: the size read from the directory and the header is
// librbd's, an image with snapshots is opened instead, and a missing image
// or pool is reported as such.
func TestHeaderSize(t *testing.T) {
	conn, plain, snapped, missing := factImages(t)
	if err := Resize(conn, testPool, plain, 128<<20); err != nil {
		t.Fatal(err)
	}
	for img, want := range map[string]int64{plain: 128 << 20, snapped: 32 << 20} {
		got, err := HeaderSize(conn, testPool, img)
		if err != nil || got != want {
			t.Errorf("%s: HeaderSize %d %v, want %d", img, got, err, want)
		}
		if lib, err := Size(conn, testPool, img); err != nil || lib != got {
			t.Errorf("%s: librbd says %d %v, header %d", img, lib, err, got)
		}
	}
	if _, err := HeaderSize(conn, testPool, missing); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("missing image: %v, want ErrImageNotFound", err)
	}
	if _, err := HeaderSize(conn, "no-such-pool-headersize", plain); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("missing pool: %v, want ErrPoolNotFound", err)
	}
}
