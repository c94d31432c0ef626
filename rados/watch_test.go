package rados

import (
	"context"
	"strconv"
	"testing"
	"time"

	"ceph-iscsi/config"
)

func TestSubscribeSeesCommitsOfOtherProcessesAndPythonPeers(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), func(o *StoreOptions) { o.PollInterval = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.Subscribe(ctx)
	wait := func(want int64, why string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Epoch == want {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no event for epoch %d", why, want)
			}
		}
	}
	wait(0, "initial state")

	// Another gateway (its own connection) commits: it notifies.
	other := openStore(t, connect(t), s.opts.Object, nil)
	doc, err := other.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wait(doc.Epoch, "notify from another connection")

	// A Python gateway only bumps the xattr; the poll must see it. With the poll at one
	// hour this would hang, so use a store with a short poll.
	poller := openStore(t, connect(t), s.opts.Object, func(o *StoreOptions) { o.PollInterval = 100 * time.Millisecond })
	pevents := poller.Subscribe(ctx)
	io, err := poller.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if err := io.SetXattr(s.opts.Object, EpochXattr, []byte(strconv.FormatInt(doc.Epoch+5, 10))); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-pevents:
			if ev.Epoch == doc.Epoch+5 {
				return
			}
		case <-deadline:
			t.Fatal("the poll did not see a bare xattr bump")
		}
	}
}

func TestSubscribeChannelClosesWithContext(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx, cancel := context.WithCancel(context.Background())
	events := s.Subscribe(ctx)
	cancel()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("channel not closed after cancel")
		}
	}
}
