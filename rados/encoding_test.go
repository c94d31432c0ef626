package rados

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"ceph-iscsi/config"
)

// encodingStats is what the Encoding of the remembered document says its
// commit wrote and copied (zero when there is none).
func encodingStats(s *Store) (config.EncodingStats, bool) {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	return s.loadedEnc.Stats(), s.loadedEnc != nil
}

// TestCommitBuildsOnTheLastEncoding: a commit after this store's own
// encodes only what its mutation changed, and writes the bytes the full
// encode gives; a commit after a peer's write starts afresh.
func TestCommitBuildsOnTheLastEncoding(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	s := openStore(t, conn, uniqueObject(t), nil)
	const n = 64
	if _, err := s.Commit(ctx, func(d *config.Doc) error { return lunDoc(d, n) }); err != nil {
		t.Fatal(err)
	}
	setLuns := func(client string, disks ...string) func(*config.Doc) error {
		return func(d *config.Doc) error {
			_, err := d.SetClientLuns(testTarget, client, disks, time.Now())
			return err
		}
	}
	check := func(what string, doc *config.Doc, wantEncoded, wantReused int) {
		t.Helper()
		stats, ok := encodingStats(s)
		if !ok {
			t.Fatalf("%s: no Encoding remembered", what)
		}
		if stats.Encoded != wantEncoded || stats.Reused != wantReused {
			t.Errorf("%s: %+v, want %d encoded and %d reused", what, stats, wantEncoded, wantReused)
		}
		raw, _ := rawObject(t, s)
		if want := doc.Marshal(); !bytes.Equal(raw, want) {
			t.Fatalf("%s: the object differs from the document's full encoding", what)
		}
	}

	// the target and the one client changed; every disk and the other
	// clients copied
	doc, err := s.Commit(ctx, setLuns("iqn.1994-05.com.example:c00001", "rbd/img00004", "rbd/img00009"))
	if err != nil {
		t.Fatal(err)
	}
	check("a clientlun commit", doc, 2, n+n/4-1)

	// a peer's write: the next commit reads and parses it, with nothing to
	// build on, and the one after builds on that commit's Encoding
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	peer := doc.Clone()
	if _, err := peer.AddClient(testTarget, "iqn.1994-05.com.example:peer", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := io.WriteFull(s.opts.Object, peer.Marshal()); err != nil {
		t.Fatal(err)
	}
	if doc, err = s.Commit(ctx, setLuns("iqn.1994-05.com.example:c00002", "rbd/img00008")); err != nil {
		t.Fatal(err)
	}
	check("a commit after a peer's write", doc, 1+n+n/4+1, 0)
	if doc, err = s.Commit(ctx, setLuns("iqn.1994-05.com.example:c00003", "rbd/img00012")); err != nil {
		t.Fatal(err)
	}
	check("the commit after that", doc, 2, n+n/4)
}

// TestCommitToleratesKnownInvalidNamesOnTheEncoding: names an older
// gateway left invalid stay committable over commits that build on each
// other's Encoding, while a new invalid name is still refused.
func TestCommitToleratesKnownInvalidNamesOnTheEncoding(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	s := openStore(t, conn, uniqueObject(t), nil)
	doc, err := s.Commit(ctx, func(d *config.Doc) error { return lunDoc(d, 8) })
	if err != nil {
		t.Fatal(err)
	}
	// a hand edit: a client whose IQN breaks the grammar
	legacy := doc.Clone()
	legacy.Targets[testTarget].Clients["iqn.1994-05.com.example:bad name"] = config.NewClient()
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if err := io.WriteFull(s.opts.Object, legacy.Marshal()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Commit(ctx, func(d *config.Doc) error {
			_, err := d.AddClient(testTarget, fmt.Sprintf("iqn.1994-05.com.example:new%d", i), time.Now())
			return err
		}); err != nil {
			t.Fatalf("commit %d on a document with a known invalid name: %v", i, err)
		}
	}
	if _, ok := encodingStats(s); !ok {
		t.Fatal("no Encoding remembered")
	}
	if _, err := s.Commit(ctx, func(d *config.Doc) error {
		d.MutTarget(testTarget).Clients["iqn.1994-05.com.example:another bad"] = config.NewClient()
		return nil
	}); err == nil {
		t.Fatal("a new invalid name was committed")
	}
	if _, err := s.Commit(ctx, func(d *config.Doc) error {
		return d.RemoveClient(testTarget, "iqn.1994-05.com.example:bad name", time.Now())
	}); err != nil {
		t.Fatalf("removing the invalid client: %v", err)
	}
	final, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bad := final.InvalidNames(); len(bad) != 0 {
		t.Fatalf("invalid names left: %v", bad)
	}
}

// TestCommitReusesTheReplacedBuffer: a commit encodes into the bytes of
// the Encoding the commit before it replaced, never into the ones it
// builds on, and the object is the document's full encoding every time.
func TestCommitReusesTheReplacedBuffer(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	s := openStore(t, conn, uniqueObject(t), nil)
	if _, err := s.Commit(ctx, func(d *config.Doc) error { return lunDoc(d, 64) }); err != nil {
		t.Fatal(err)
	}
	first := func() *byte {
		s.loadedMu.Lock()
		defer s.loadedMu.Unlock()
		return &s.loadedEnc.Bytes()[0]
	}
	var bufs []*byte
	for i := range 6 {
		doc, err := s.Commit(ctx, func(d *config.Doc) error {
			_, err := d.SetClientLuns(testTarget, fmt.Sprintf("iqn.1994-05.com.example:c%05d", i), []string{fmt.Sprintf("rbd/img%05d", 4*i), "rbd/img00063"}, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := rawObject(t, s)
		if want := doc.Marshal(); !bytes.Equal(raw, want) {
			t.Fatalf("commit %d: the object differs from the document's full encoding", i)
		}
		bufs = append(bufs, first())
		if i > 0 && bufs[i] == bufs[i-1] {
			t.Fatalf("commit %d encoded into the bytes it built on", i)
		}
	}
	if bufs[3] != bufs[1] || bufs[5] != bufs[3] {
		t.Errorf("commits do not encode into the buffer the one before them freed")
	}
}
