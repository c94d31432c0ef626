package lio

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestEmulatedRmdirLinkedStorageObject: the emulation refuses what
// configfs refuses — a storage object a LUN links to, a LUN holding its
// link — and allows both once the link is gone, whichever FS over the
// root made or removed the link, and on a root whose link index is
// missing (made before there was one) or holds an entry whose link a
// killed process never made.
func TestEmulatedRmdirLinkedStorageObject(t *testing.T) {
	f := newEmu(t)
	const (
		so1, so2 = "target/core/user_0/rbd.a", "target/core/user_0/rbd.b"
		tpg      = "target/iscsi/iqn.2003-01.com.example:t/tpgt_1"
		lun0     = tpg + "/lun/lun_0"
		lun1     = tpg + "/lun/lun_1"
		acl      = tpg + "/acls/iqn.1994-05.com.example:c"
		link0    = lun0 + "/l0"
		link1    = lun1 + "/l1"
	)
	for _, d := range []string{"target/core/user_0", so1, so2, "target/iscsi", "target/iscsi/iqn.2003-01.com.example:t",
		tpg, lun0, lun1, acl, acl + "/lun_0"} {
		if err := f.mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{so1, link0}, {so2, link1}, {lun0, acl + "/lun_0/m0"}} {
		if err := f.symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(f FS, rel string, want syscall.Errno) {
		t.Helper()
		if err := f.rmdir(rel); !errors.Is(err, want) {
			t.Fatalf("rmdir %s: %v, want %v", rel, err, want)
		}
		if !f.exists(rel) {
			t.Fatalf("a refused rmdir removed %s", rel)
		}
	}
	reopen := func() FS {
		t.Helper()
		g, err := NewEmulatedFS(f.Root())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	refused(f, so1, syscall.EBUSY)
	refused(f, so2, syscall.EBUSY)
	refused(f, lun0, syscall.ENOTEMPTY)

	// a second FS over the root sees the links the first made
	g := reopen()
	refused(g, so1, syscall.EBUSY)

	// a root without an index (made before there was one) gets it rebuilt
	if err := os.RemoveAll(filepath.Join(f.Root(), linkIndexDir)); err != nil {
		t.Fatal(err)
	}
	g = reopen()
	refused(g, so1, syscall.EBUSY)
	refused(f, so2, syscall.EBUSY)

	// the link gone (through another FS), the object goes
	if err := g.unlink(link0); err != nil {
		t.Fatal(err)
	}
	if err := f.rmdir(so1); err != nil {
		t.Fatalf("rmdir %s after its link went: %v", so1, err)
	}
	// a link removed by a process killed before it updated the index
	// leaves a stale entry, which blocks nothing
	if err := os.Remove(f.abs(link1)); err != nil {
		t.Fatal(err)
	}
	if err := f.rmdir(so2); err != nil {
		t.Fatalf("rmdir %s with only a stale index entry: %v", so2, err)
	}
	// an object made again at the same path is refused once linked again
	if err := f.mkdir(so1); err != nil {
		t.Fatal(err)
	}
	if err := f.rmdir(lun0); err != nil {
		t.Fatal(err)
	}
	if err := f.mkdir(lun0); err != nil {
		t.Fatal(err)
	}
	if err := f.symlink(so1, link0); err != nil {
		t.Fatal(err)
	}
	refused(reopen(), so1, syscall.EBUSY)
}
