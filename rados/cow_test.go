package rados

import (
	"context"
	"errors"
	"testing"
	"time"

	"ceph-iscsi/config"
)

// TestCommitCatchesAWriteThroughASharedObject: a mutation that writes a
// target it shares with the remembered document, bypassing MutTarget, is
// refused by the check test binaries run on every commit, and writes
// nothing; the same change through the accessor commits, and leaves the
// remembered document as it was written.
func TestCommitCatchesAWriteThroughASharedObject(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	s := openStore(t, conn, uniqueObject(t), nil)
	if !s.checkShared {
		t.Fatal("a test binary's store does not check the remembered document")
	}
	if _, err := s.Commit(ctx, func(d *config.Doc) error { _, err := d.AddTarget(testTarget, time.Now()); return err }); err != nil {
		t.Fatal(err)
	}
	before, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Commit(ctx, func(d *config.Doc) error {
		d.Targets[testTarget].ACLEnabled = !d.Targets[testTarget].ACLEnabled // deliberately not MutTarget
		return nil
	})
	if !errors.Is(err, ErrSharedWrite) {
		t.Fatalf("a write through a shared target: %v, want ErrSharedWrite", err)
	}
	if ep, err := s.Epoch(); err != nil || ep != before.Epoch {
		t.Fatalf("epoch %d (%v) after the refused commit, want %d", ep, err, before.Epoch)
	}
	if err := s.VerifyCached(); !errors.Is(err, ErrSharedWrite) {
		t.Fatalf("VerifyCached after the write-through: %v", err)
	}

	// another gateway's commit, read here, replaces the damaged document;
	// the accessor's way commits
	other := openStore(t, conn, s.opts.Object, nil)
	if _, err := other.Commit(ctx, func(d *config.Doc) error { return d.SetACLEnabled(testTarget, true, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, func(d *config.Doc) error { d.MutTarget(testTarget).ACLEnabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.VerifyCached(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil || got.Targets[testTarget].ACLEnabled {
		t.Fatalf("after the accessor's commit: %v, acl %v", err, got.Targets[testTarget].ACLEnabled)
	}
}
