package rados

import (
	"context"
	"strconv"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Event tells a subscriber that the config object changed. It carries only the new
// epoch, never the change: subscribers re-read the document and reconcile, so a missed
// or coalesced event costs nothing.
type Event struct {
	Epoch int64
}

// Subscribe returns a channel that receives an Event after every commit, by any
// process: our own commits send a RADOS notify; commits of Python gateways, which
// never notify, are seen by polling the epoch xattr. The channel holds one pending
// event; a slow reader sees the latest epoch, not every one. It is closed when ctx
// ends or the store is closed.
func (s *Store) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 1)
	s.watchMu.Lock()
	if s.subs == nil {
		s.subs = map[chan Event]struct{}{}
	}
	s.subs[ch] = struct{}{}
	if s.watch == nil {
		wctx, cancel := context.WithCancel(s.bgCtx)
		s.watch = &watchLoop{cancel: cancel, done: make(chan struct{})}
		s.bg.Add(1)
		go func(wl *watchLoop) {
			defer s.bg.Done()
			s.runWatch(wctx, wl)
		}(s.watch)
	}
	s.watchMu.Unlock()

	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		select {
		case <-ctx.Done():
		case <-s.bgCtx.Done():
		}
		s.watchMu.Lock()
		delete(s.subs, ch)
		close(ch)
		var stop *watchLoop
		if len(s.subs) == 0 {
			stop, s.watch = s.watch, nil
		}
		s.watchMu.Unlock()
		if stop != nil {
			// outside the lock: the loop may be waiting for it in publish
			stop.cancel()
			<-stop.done
		}
	}()
	return ch
}

type watchLoop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// publish hands the epoch to every subscriber, replacing an event not yet read.
// An epoch past the document this store last committed means a peer committed
// since: the next commit takes the lock at once instead of first trying a
// write that asserts a version the peer moved (commitUnlocked).
func (s *Store) publish(epoch int64) {
	s.loadedMu.Lock()
	if s.unlockedAt != 0 && s.loaded != nil && epoch > s.loaded.Epoch {
		s.unlockedAt = 0
	}
	s.loadedMu.Unlock()
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- Event{Epoch: epoch}:
			continue
		default:
		}
		select { // full: drop the stale event, keep the newest
		case <-ch:
		default:
		}
		select {
		case ch <- Event{Epoch: epoch}:
		default:
		}
	}
}

// runWatch keeps a RADOS watch on the object, re-establishing it after errors (a
// watch dies with a mon/OSD session), and polls the epoch xattr as a fallback.
func (s *Store) runWatch(ctx context.Context, wl *watchLoop) {
	defer close(wl.done)
	last := int64(-1)
	check := func() {
		e, err := s.Epoch()
		if err != nil {
			s.log.Debug("polling the config epoch failed", "err", err)
			return
		}
		if e != last {
			last = e
			s.publish(e)
		}
	}
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		io, w, err := s.startWatch()
		if err != nil {
			s.log.Warn("watching the config object failed; polling only until it works", "err", err)
		}
		check()
		var events <-chan rados.NotifyEvent
		var errs <-chan error
		if w != nil {
			events, errs = w.Events(), w.Errors()
		}
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case ev, ok := <-events:
				if !ok {
					break loop
				}
				_ = ev.Ack(nil)
				if e, err := strconv.ParseInt(string(ev.Data), 10, 64); err == nil && e != last {
					last = e
					s.publish(e)
				} else if err != nil {
					check()
				}
			case err := <-errs:
				s.log.Warn("config object watch broke; re-establishing", "err", err)
				break loop
			case <-poll.C:
				check()
				if w == nil {
					break loop // retry the watch
				}
			}
		}
		if w != nil {
			_ = w.Delete()
		}
		if io != nil {
			io.Destroy()
		}
	}
}

func (s *Store) startWatch() (*rados.IOContext, *rados.Watcher, error) {
	io, err := s.ioctx()
	if err != nil {
		return nil, nil, err
	}
	w, err := io.Watch(s.opts.Object)
	if err != nil {
		io.Destroy()
		return nil, nil, err
	}
	return io, w, nil
}

// notify tells watchers of a commit. Best effort: watchers also poll, and a peer
// that is slow to acknowledge must not slow the commit down.
func (s *Store) notify(epoch int64) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		io, err := s.ioctx()
		if err != nil {
			s.log.Debug("notify of config commit failed", "err", err)
			return
		}
		defer io.Destroy()
		if _, _, err := io.NotifyWithTimeout(s.opts.Object, []byte(strconv.FormatInt(epoch, 10)), 5*time.Second); err != nil {
			s.log.Debug("notify of config commit failed", "err", err)
		}
	}()
}
