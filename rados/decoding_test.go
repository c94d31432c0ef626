package rados

import (
	"context"
	"testing"
	"time"

	"ceph-iscsi/config"
)

// decodingStats is what the store's last read of a peer's write parsed and
// took from the read before.
func decodingStats(s *Store) config.DecodingStats {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	return s.loadedDec.Stats()
}

// TestSnapshotDecodesOnlyWhatChanged: reading a peer's one-client commit
// parses the target and the client, and gives a document sharing every
// disk with the one before it, also across a commit of this store's own.
func TestSnapshotDecodesOnlyWhatChanged(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	s := openStore(t, conn, uniqueObject(t), nil)
	const n = 256
	if _, err := s.Commit(ctx, func(d *config.Doc) error { return lunDoc(d, n) }); err != nil {
		t.Fatal(err)
	}
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	// a peer's commit: one client's LUNs
	peerWrite := func(client string, disks ...string) {
		t.Helper()
		cur, _, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		next := cur.Clone()
		if _, err := next.SetClientLuns(testTarget, client, disks, time.Now()); err != nil {
			t.Fatal(err)
		}
		next.Epoch++
		if err := io.WriteFull(s.opts.Object, next.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	snap := func() *config.Doc {
		t.Helper()
		d, _, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	shared := func(a, b *config.Doc) int {
		k := 0
		for id, d := range a.Disks {
			if b.Disks[id] == d && b.Frozen(d) {
				k++
			}
		}
		return k
	}

	peerWrite("iqn.1994-05.com.example:c00001", "rbd/img00004")
	first := snap() // nothing to build on yet
	if got := decodingStats(s); got.Reused != 0 || got.Decoded < n {
		t.Fatalf("the first read: %+v", got)
	}
	peerWrite("iqn.1994-05.com.example:c00002", "rbd/img00008")
	second := snap()
	if got := decodingStats(s); got.Decoded != 2 {
		t.Errorf("a one-client change parsed %d objects (%+v), want the target and the client", got.Decoded, got)
	}
	if k := shared(second, first); k != n {
		t.Errorf("%d of %d disks shared with the read before", k, n)
	}
	// our own commit, then a peer's: the read builds on the last read,
	// whose objects our commit's document shares
	ours, err := s.Commit(ctx, func(d *config.Doc) error {
		_, err := d.SetClientLuns(testTarget, "iqn.1994-05.com.example:c00003", []string{"rbd/img00012"}, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	peerWrite("iqn.1994-05.com.example:c00004", "rbd/img00016")
	third := snap()
	if got := decodingStats(s); got.Decoded > 3 {
		t.Errorf("after our own commit, a one-client change parsed %d objects (%+v)", got.Decoded, got)
	}
	if k := shared(third, ours); k != n {
		t.Errorf("%d of %d disks shared with our own commit's document", k, n)
	}
	if got := third.Targets[testTarget].Clients["iqn.1994-05.com.example:c00003"].Luns; len(got) != 1 {
		t.Errorf("our own commit's client reads back as %v", got)
	}
}
