package rados

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/config"
)

const testTarget = "iqn.2003-01.com.example.iscsi-gw:store-test"

func rawObject(t *testing.T, s *Store) ([]byte, string) {
	t.Helper()
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	raw, _, err := s.read(io)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := io.GetXattr(s.opts.Object, EpochXattr, buf)
	if err != nil {
		t.Fatal(err)
	}
	return raw, string(buf[:n])
}

func TestOpenSeedsEmptyObject(t *testing.T) {
	conn := connect(t)
	now := time.Date(2026, 11, 24, 1, 2, 3, 0, time.UTC)
	s := openStore(t, conn, uniqueObject(t), func(o *StoreOptions) { o.Now = func() time.Time { return now } })
	raw, epoch := rawObject(t, s)
	if want := config.NewDoc(now).Marshal(); string(raw) != string(want) {
		t.Errorf("seed =\n%s\nwant\n%s", raw, want)
	}
	if epoch != "0" {
		t.Errorf("epoch xattr = %q, want \"0\"", epoch)
	}
	// a second open (another gateway starting) changes nothing
	s2 := openStore(t, conn, s.opts.Object, nil)
	raw2, _ := rawObject(t, s2)
	if string(raw2) != string(raw) {
		t.Errorf("second open rewrote the seed:\n%s", raw2)
	}
}

func TestCommitWritesPythonCompatibleBytes(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx := context.Background()
	doc, err := s.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Epoch != 1 {
		t.Errorf("epoch after first commit = %d, want 1", doc.Epoch)
	}
	raw, epoch := rawObject(t, s)
	if string(raw) != string(doc.Marshal()) {
		t.Errorf("object bytes differ from the committed document")
	}
	if epoch != "1" {
		t.Errorf("epoch xattr = %q, want 1", epoch)
	}
	// the unlock travels in the write op: nobody may hold the lock afterwards
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if info, err := io.ListLockers(s.opts.Object, LockName); err != nil || len(info.Clients) != 0 {
		t.Errorf("lockers after the commit: %+v %v; want none", info, err)
	}
	if strings.HasSuffix(string(raw), "\n") || !strings.Contains(string(raw), "\n    \"targets\": {") {
		t.Errorf("object is not in Python's indent=4 sorted form:\n%s", raw)
	}
	loaded, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := loaded.Targets[testTarget]; !ok {
		t.Errorf("Load lost the target: %v", loaded.Targets)
	}
	if e, err := s.Epoch(); err != nil || e != 1 {
		t.Errorf("Epoch() = %d, %v; want 1", e, err)
	}
}

func TestFailedMutationWritesNothing(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	before, beforeEpoch := rawObject(t, s)
	boom := errors.New("client mistake")
	_, err := s.Commit(context.Background(), func(d *config.Doc) error {
		if _, err := d.AddTarget("half-done", time.Now()); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Commit error = %v, want the mutation's error", err)
	}
	// a mutation that would leave the document invalid is refused as a whole
	_, err = s.Commit(context.Background(), func(d *config.Doc) error {
		tgt, err := d.AddTarget(testTarget, time.Now())
		if err != nil {
			return err
		}
		tgt.Disks["rbd/missing"] = config.LunRef{LunID: 0}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("Commit of an invalid document: err = %v, want a refusal", err)
	}
	after, afterEpoch := rawObject(t, s)
	if string(after) != string(before) || afterEpoch != beforeEpoch {
		t.Errorf("failed commits changed the object:\n%s\nepoch %s -> %s", after, beforeEpoch, afterEpoch)
	}
}

func TestUpgradeOnOpen(t *testing.T) {
	conn := connect(t)
	object := uniqueObject(t)
	io, err := conn.rc.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	v10 := `{"created": "2020/01/01 00:00:00", "discovery_auth": {"mutual_password": "", ` +
		`"mutual_password_encryption_enabled": false, "mutual_username": "", "password": "", ` +
		`"password_encryption_enabled": false, "username": ""}, "disks": {}, "epoch": 7, ` +
		`"gateways": {}, "targets": {"iqn.2003-01.com.example:t1": {"acl_enabled": true, ` +
		`"clients": {}, "controls": {}, "created": "2020/01/01 00:00:00", "disks": [], ` +
		`"groups": {}, "portals": {}}}, "updated": "2020/01/01 00:00:00", "version": 10}`
	if err := io.WriteFull(object, []byte(v10)); err != nil {
		t.Fatal(err)
	}
	if err := io.SetXattr(object, EpochXattr, []byte("7")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, conn, object, nil)
	doc, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != 11 || doc.Epoch != 8 {
		t.Errorf("after open: version %d epoch %d, want 11 and 8", doc.Version, doc.Epoch)
	}
	if tgt := doc.Targets["iqn.2003-01.com.example:t1"]; tgt == nil || tgt.Disks == nil {
		t.Errorf("target not upgraded: %+v", tgt)
	}
}

func TestLegacyLockExcludes(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), func(o *StoreOptions) { o.LockWait = time.Second })
	// A Python gateway takes the lock with no duration from its own client.
	other := connect(t)
	io, err := other.rc.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if ret, err := io.LockExclusive(s.opts.Object, LockName, LockCookie, "", 0, nil); err != nil || ret != 0 {
		t.Fatalf("peer lock: %d %v", ret, err)
	}
	_, err = s.Commit(context.Background(), func(*config.Doc) error { return nil })
	if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), "Timed out (1s) waiting for excl lock on "+s.opts.Object+" object") {
		t.Fatalf("commit while a peer holds the lock: %v", err)
	}
	if _, err := io.Unlock(s.opts.Object, LockName, LockCookie); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), func(*config.Doc) error { return nil }); err != nil {
		t.Fatalf("commit after the peer unlocked: %v", err)
	}
}

// A writer that ignores the lock (or whose lease ran out mid-commit) must not make a
// commit overwrite its change: the version assertion sends the commit round again.
func TestCommitRetriesOnVersionConflict(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	other := openStore(t, connect(t), s.opts.Object, nil)
	ctx := context.Background()
	var calls int
	_, err := s.Commit(ctx, func(d *config.Doc) error {
		calls++
		if calls == 1 {
			// Sneak a write in between our read and our write. The other store's
			// commit takes the legacy lock, which we hold, so write raw as a
			// lock-ignoring peer would.
			peer, err := other.Load(ctx)
			if err != nil {
				return err
			}
			if _, err := peer.AddTarget("iqn.2003-01.com.example:peer", time.Now()); err != nil {
				return err
			}
			peer.Epoch++
			io, err := other.ioctx()
			if err != nil {
				return err
			}
			defer io.Destroy()
			if err := io.WriteFull(other.opts.Object, peer.Marshal()); err != nil {
				return err
			}
		}
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("mutation ran %d times, want 2 (one retry)", calls)
	}
	doc, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, iqn := range []string{testTarget, "iqn.2003-01.com.example:peer"} {
		if doc.Targets[iqn] == nil {
			t.Errorf("target %s lost", iqn)
		}
	}
	if doc.Epoch != 2 {
		t.Errorf("epoch = %d, want 2", doc.Epoch)
	}
}

// A commit that outlives its lock lease (a loaded host) finds its lock gone
// when its write's unlock step runs: the write is refused as a whole, and
// the commit takes the lock again and redoes the change once, instead of
// failing the request. Releasing the lock inside the mutation is exactly
// what the lease's expiry does.
func TestCommitRetriesWhenLeaseRunsOut(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx := context.Background()
	// the commit under the lock is the one this test is about
	s.forgetOwnWrite()
	var calls int
	_, err := s.Commit(ctx, func(d *config.Doc) error {
		calls++
		if calls == 1 {
			io, err := s.ioctx()
			if err != nil {
				return err
			}
			defer io.Destroy()
			if ret, err := io.Unlock(s.opts.Object, LockName, LockCookie); err != nil || ret != 0 {
				return fmt.Errorf("release the lock: %d %v", ret, err)
			}
		}
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// releasing the lock is a write, which moves the object's version: one
	// retry for that, then one for the lost lock
	if calls != 3 {
		t.Errorf("mutation ran %d times, want 3 (a version retry, then a lost-lease retry)", calls)
	}
	doc, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Targets[testTarget] == nil || doc.Epoch != 1 {
		t.Errorf("after the commit: targets %v, epoch %d; want %s at epoch 1", sortedKeys(doc.Targets), doc.Epoch, testTarget)
	}
	// the retry's write released the lock it took again
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	info, err := io.ListLockers(s.opts.Object, LockName)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Clients) != 0 {
		t.Errorf("lock still held after the commit: %+v", info.Clients)
	}
}

// TestConcurrentCommitsLoseNothing: 2 processes x 8 goroutines x 100 mutations of the
// same target, each adding its own client. Upstream loses updates here (#261).
func TestConcurrentCommitsLoseNothing(t *testing.T) {
	const procs, goroutines, perG = 2, 8, 100
	if testing.Short() {
		t.Skip("long: 1600 commits")
	}
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx := context.Background()
	if _, err := s.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	start, err := s.Epoch()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	var cmds []*exec.Cmd
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=commit",
			"HELPER_OBJECT="+s.opts.Object, "HELPER_PROC="+strconv.Itoa(p),
			"HELPER_GOROUTINES="+strconv.Itoa(goroutines), "HELPER_PER_G="+strconv.Itoa(perG))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("committer process: %v", err)
		}
	}
	elapsed := time.Since(t0)
	doc, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := procs * goroutines * perG
	clients := doc.Targets[testTarget].Clients
	if len(clients) != total {
		t.Errorf("%d clients present, want %d", len(clients), total)
	}
	for p := 0; p < procs; p++ {
		for g := 0; g < goroutines; g++ {
			for i := 0; i < perG; i++ {
				if clients[helperClient(p, g, i)] == nil {
					t.Fatalf("client %s lost", helperClient(p, g, i))
				}
			}
		}
	}
	if got := doc.Epoch - start; got != int64(total) {
		t.Errorf("epoch advanced by %d, want exactly %d", got, total)
	}
	if err := doc.Validate(); err != nil {
		t.Errorf("document invalid after the storm: %v", err)
	}
	t.Logf("%d commits from %d processes x %d goroutines in %v: %.0f commits/s, %v per commit",
		total, procs, goroutines, elapsed.Round(time.Millisecond),
		float64(total)/elapsed.Seconds(), (elapsed / time.Duration(total)).Round(time.Microsecond))
}

func helperClient(p, g, i int) string {
	return fmt.Sprintf("iqn.1994-05.com.example:p%d-g%d-c%d", p, g, i)
}

func helperCommit() error {
	conn, err := Connect(ConnOptions{ConfFile: os.Getenv("CEPH_CONF")})
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := OpenStore(context.Background(), conn, StoreOptions{Object: os.Getenv("HELPER_OBJECT"), Upgrade: testIdentity()})
	if err != nil {
		return err
	}
	defer s.Close()
	p, _ := strconv.Atoi(os.Getenv("HELPER_PROC"))
	goroutines, _ := strconv.Atoi(os.Getenv("HELPER_GOROUTINES"))
	perG, _ := strconv.Atoi(os.Getenv("HELPER_PER_G"))
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				iqn := helperClient(p, g, i)
				if _, err := s.Commit(context.Background(), func(d *config.Doc) error {
					_, err := d.AddClient(testTarget, iqn, time.Now())
					return err
				}); err != nil {
					errs <- fmt.Errorf("add %s: %w", iqn, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestKilledLockHolderDoesNotWedge: a process SIGKILLed while holding the legacy lock
// leaves it behind; the next commit succeeds once the lease runs out, by itself.
func TestKilledLockHolderDoesNotWedge(t *testing.T) {
	conn := connect(t)
	const lease = 3 * time.Second
	s := openStore(t, conn, uniqueObject(t), func(o *StoreOptions) { o.Lease = lease })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=hold-lock", "HELPER_OBJECT="+s.opts.Object,
		"HELPER_LEASE="+lease.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper did not take the lock: %q %v", line, err)
	}
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	info, err := io.ListLockers(s.opts.Object, LockName)
	if err != nil || len(info.Clients) != 1 || info.Cookies[0] != LockCookie {
		t.Fatalf("lockers while the helper holds it: %+v %v", info, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	// The default LockWait (30 s) is far longer than the lease: the commit must get
	// through on its own once the dead holder's lease has run out.
	doc, err := s.Commit(context.Background(), func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	})
	if err != nil {
		t.Fatalf("commit after the lock holder was killed: %v", err)
	}
	if doc.Targets[testTarget] == nil {
		t.Error("commit lost its change")
	}
	t.Logf("commit went through %v after the holder was killed (lease %v)", time.Since(killed).Round(time.Millisecond), lease)
}

func helperHoldLock() error {
	conn, err := Connect(ConnOptions{ConfFile: os.Getenv("CEPH_CONF")})
	if err != nil {
		return err
	}
	lease, err := time.ParseDuration(os.Getenv("HELPER_LEASE"))
	if err != nil {
		return err
	}
	s, err := OpenStore(context.Background(), conn, StoreOptions{Object: os.Getenv("HELPER_OBJECT"), Lease: lease, Upgrade: testIdentity()})
	if err != nil {
		return err
	}
	io, err := s.ioctx()
	if err != nil {
		return err
	}
	if _, _, err := s.lock(context.Background(), io); err != nil {
		return err
	}
	fmt.Println("locked")
	time.Sleep(time.Hour) // until killed
	return nil
}

// Load copies its last parse while the object is unchanged: what a caller
// does to the copy must not leak into the next Load, and a write by anyone
// (here a raw, lock-ignoring one) must be seen at once.
func TestLoadReusesParseSafely(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx := context.Background()
	first, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := first.Marshal()
	if _, err := first.AddTarget(testTarget, time.Now()); err != nil {
		t.Fatal(err)
	}
	again, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Marshal(); string(got) != string(want) {
		t.Fatalf("a caller's change leaked into the next Load:\n%s", got)
	}
	peer := again.Clone()
	if _, err := peer.AddTarget("iqn.2003-01.com.example:raw", time.Now()); err != nil {
		t.Fatal(err)
	}
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if err := io.WriteFull(s.opts.Object, peer.Marshal()); err != nil {
		t.Fatal(err)
	}
	seen, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if seen.Targets["iqn.2003-01.com.example:raw"] == nil {
		t.Fatal("a raw write was not seen by the next Load")
	}
}

// TestSnapshotReadsYourWritesAndSeesOthers: the committing store answers
// from what it wrote, at the object's real version, and a change by another
// store (another gateway) or a direct write of the object (a Python gateway,
// a hand edit) is seen on the very next call.
func TestSnapshotReadsYourWritesAndSeesOthers(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	a := openStore(t, conn, uniqueObject(t), nil)
	b := openStore(t, connect(t), a.opts.Object, nil)
	objectVersion := func() uint64 {
		t.Helper()
		io, err := a.ioctx()
		if err != nil {
			t.Fatal(err)
		}
		defer io.Destroy()
		_, ver, err := a.read(io)
		if err != nil {
			t.Fatal(err)
		}
		return ver
	}

	committed, err := a.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, ver, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := objectVersion(); ver != want {
		t.Errorf("snapshot version after the commit = %d, the object is at %d", ver, want)
	}
	if string(doc.Marshal()) != string(committed.Marshal()) || doc.Targets[testTarget] == nil {
		t.Errorf("snapshot after the commit is not the committed document:\n%s", doc.Marshal())
	}
	again, ver2, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != doc || ver2 != ver {
		t.Errorf("an unchanged object was read again (version %d then %d)", ver, ver2)
	}

	// another gateway commits
	const other = "iqn.2003-01.com.example.iscsi-gw:store-test-b"
	if _, err := b.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(other, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	doc, ver, err = a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Targets[other] == nil || doc.Epoch != 2 || ver != objectVersion() {
		t.Errorf("a peer's commit is not seen: epoch %d, targets %v", doc.Epoch, sortedKeys(doc.Targets))
	}

	// a direct write of the object, as a Python gateway's commit or a hand edit
	edited := doc.Clone()
	delete(edited.Targets, testTarget)
	edited.Epoch = 7
	io, err := b.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if err := io.WriteFull(b.opts.Object, edited.Marshal()); err != nil {
		t.Fatal(err)
	}
	loaded, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Targets[testTarget] != nil || loaded.Epoch != 7 {
		t.Errorf("a direct write of the object is not seen: epoch %d, targets %v", loaded.Epoch, sortedKeys(loaded.Targets))
	}
	// Load hands out a copy: changing it does not change the next answer
	if err := loaded.RemoveTarget(other); err != nil {
		t.Fatal(err)
	}
	if doc, _, err := a.Snapshot(ctx); err != nil || doc.Targets[other] == nil {
		t.Errorf("a Load copy changed the shared document (err %v)", err)
	}
	// and the commit that follows starts from the edited document
	c, err := a.Commit(ctx, func(d *config.Doc) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if c.Epoch != 8 || c.Targets[testTarget] != nil {
		t.Errorf("commit after a direct write: epoch %d, targets %v", c.Epoch, sortedKeys(c.Targets))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestCommitAfterOwnCommitReadsNothing: a commit that follows this store's
// own needs no read of the object, no stat and no lock: one round trip,
// its write asserting the version our last write (which released our lock)
// left. A change by anybody else since, even only their lock, is read and
// kept, and a lock a peer takes while our mutation runs keeps our write out
// until it is released.
func TestCommitAfterOwnCommitReadsNothing(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	s := openStore(t, conn, uniqueObject(t), func(o *StoreOptions) { o.LockWait = time.Second })
	addTarget := func(iqn string) func(*config.Doc) error {
		return func(d *config.Doc) error { _, err := d.AddTarget(iqn, time.Now()); return err }
	}
	if _, err := s.Commit(ctx, addTarget(testTarget)); err != nil {
		t.Fatal(err)
	}
	before, statsBefore, locksBefore := s.reads.Load(), s.stats.Load(), s.locks.Load()
	other := connect(t)
	io, err := other.rc.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	for i := range 3 {
		if _, err := s.Commit(ctx, addTarget(fmt.Sprintf("iqn.2003-01.com.example:own%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.reads.Load() - before; n != 0 {
		t.Errorf("3 commits after our own read the object %d times", n)
	}
	if n := s.stats.Load() - statsBefore; n != 0 {
		t.Errorf("3 commits after our own sent %d stats", n)
	}
	if n := s.locks.Load() - locksBefore; n != 0 {
		t.Errorf("3 commits after our own took the lock %d times", n)
	}

	// A peer (a Python gateway) takes the lock while our mutation runs:
	// our write must not land while the peer holds it, whatever the
	// mutation computed.
	peerLocked := false
	_, err = s.Commit(ctx, func(d *config.Doc) error {
		if !peerLocked {
			peerLocked = true
			if ret, err := io.LockExclusive(s.opts.Object, LockName, LockCookie, "", 0, nil); err != nil || ret != 0 {
				t.Errorf("a peer's lock during our lock-free mutation: %d %v, want it taken", ret, err)
			}
		}
		return addTarget("iqn.2003-01.com.example:underpeerlock")(d)
	})
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("commit while a peer took the lock during its mutation: %v, want the lock timeout", err)
	}
	if got, err := s.Load(ctx); err != nil || got.Targets["iqn.2003-01.com.example:underpeerlock"] != nil || got.Epoch != 4 {
		t.Fatalf("the object after the refused commit: %v (epoch %d), want it unchanged", err, got.Epoch)
	}
	if _, err := io.Unlock(s.opts.Object, LockName, LockCookie); err != nil {
		t.Fatal(err)
	}

	// a peer takes and drops the lock: the object moved, so it is read again
	if ret, err := io.LockExclusive(s.opts.Object, LockName, LockCookie, "", 0, nil); err != nil || ret != 0 {
		t.Fatalf("peer lock: %d %v", ret, err)
	}
	if _, err := io.Unlock(s.opts.Object, LockName, LockCookie); err != nil {
		t.Fatal(err)
	}
	before, locksBefore = s.reads.Load(), s.locks.Load()
	if _, err := s.Commit(ctx, addTarget("iqn.2003-01.com.example:afterpeerlock")); err != nil {
		t.Fatal(err)
	}
	if n := s.reads.Load() - before; n != 1 {
		t.Errorf("commit after a peer's lock read the object %d times, want 1", n)
	}
	if n := s.locks.Load() - locksBefore; n != 2 {
		t.Errorf("commit after a peer's lock sent %d lock operations, want 2 (asserting the version it knew, then plainly)", n)
	}

	// a raw write (a Python gateway without our lock): read, and kept
	doc, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := doc.AddTarget("iqn.2003-01.com.example:raw", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := io.WriteFull(s.opts.Object, doc.Marshal()); err != nil {
		t.Fatal(err)
	}
	got, err := s.Commit(ctx, addTarget("iqn.2003-01.com.example:last"))
	if err != nil {
		t.Fatal(err)
	}
	for _, iqn := range []string{testTarget, "iqn.2003-01.com.example:own2", "iqn.2003-01.com.example:raw", "iqn.2003-01.com.example:last"} {
		if got.Targets[iqn] == nil {
			t.Errorf("target %s lost", iqn)
		}
	}
	if got.Epoch != 6 {
		t.Errorf("epoch %d, want 6", got.Epoch)
	}
	// the lock was released with the write: a plain locker gets it at once
	if ret, err := io.LockExclusive(s.opts.Object, LockName, "other-cookie", "", 0, nil); err != nil || ret != 0 {
		t.Fatalf("lock after the commit: %d %v", ret, err)
	}
	if _, err := io.Unlock(s.opts.Object, LockName, "other-cookie"); err != nil {
		t.Fatal(err)
	}
}

// Concurrent readers share version checks (sharedVersion), but none may
// take the answer of a stat sent before its request began: every Snapshot
// must see each commit of another gateway that finished before it started,
// whether it says when its request began (WithRequestStart, as GET
// /api/config does) or not.
func TestConcurrentSnapshotsSeeEarlierCommits(t *testing.T) {
	ctx := context.Background()
	a := openStore(t, connect(t), uniqueObject(t), nil)
	b := openStore(t, connect(t), a.opts.Object, nil)
	var committed atomic.Int64 // the epoch of b's last finished commit
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := committed.Load()
				rctx := ctx
				if i%2 == 0 {
					rctx = WithRequestStart(ctx, time.Now())
				}
				doc, _, err := a.Snapshot(rctx)
				if err != nil {
					errs <- err
					return
				}
				if doc.Epoch < floor {
					errs <- fmt.Errorf("snapshot at epoch %d after a commit of epoch %d had finished", doc.Epoch, floor)
					return
				}
			}
		})
	}
	for i := range 20 {
		doc, err := b.Commit(ctx, func(d *config.Doc) error {
			_, err := d.AddTarget(fmt.Sprintf("iqn.2003-01.com.example.iscsi-gw:snap-%d", i), time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		committed.Store(doc.Epoch)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	doc, _, err := a.Snapshot(ctx)
	if err != nil || doc.Epoch != 20 {
		t.Fatalf("last snapshot: epoch %v, %v; want 20", doc, err)
	}
}

// TestSnapshotSharesChecksSentSinceTheRequestBegan: a Snapshot for a
// request that began before the last version check was sent takes that
// check's answer without a stat of its own; one whose request began after
// it sends a stat, and sees a commit another gateway completed before it
// began.
func TestSnapshotSharesChecksSentSinceTheRequestBegan(t *testing.T) {
	ctx := context.Background()
	a := openStore(t, connect(t), uniqueObject(t), nil)
	b := openStore(t, connect(t), a.opts.Object, nil)
	snapshot := func(ctx context.Context) (*config.Doc, int64) {
		t.Helper()
		before := a.stats.Load()
		doc, _, err := a.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return doc, a.stats.Load() - before
	}

	begin := time.Now()
	if _, n := snapshot(ctx); n != 1 {
		t.Fatalf("a Snapshot sent %d stats, want 1", n)
	}
	if _, n := snapshot(WithRequestStart(ctx, begin)); n != 0 {
		t.Errorf("a request that began before the last check was sent sent %d stats, want 0 (it shares that check)", n)
	}
	if _, n := snapshot(WithRequestStart(ctx, time.Now())); n != 1 {
		t.Errorf("a request that began after the last check was sent sent %d stats, want 1", n)
	}

	const other = "iqn.2003-01.com.example.iscsi-gw:store-test-shared"
	if _, err := b.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(other, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	doc, n := snapshot(WithRequestStart(ctx, time.Now()))
	if n != 1 || doc.Targets[other] == nil {
		t.Errorf("a request that began after another gateway's commit: %d stats, target seen %v; want 1 and true", n, doc.Targets[other] != nil)
	}
}

// TestSnapshotQueuesBehindACheckInFlight: a Snapshot that cannot use the
// check in flight (sent before its request began) does not send its own
// beside it: it waits for that one to end and then sends the next, which
// the callers arriving meanwhile share; one whose request began before
// that check was sent takes its answer.
func TestSnapshotQueuesBehindACheckInFlight(t *testing.T) {
	ctx := context.Background()
	a := openStore(t, connect(t), uniqueObject(t), nil)
	_, want, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	early := time.Now()
	// a check in flight, sent after early; the test answers it
	inflight := &versionCall{sent: time.Now(), done: make(chan struct{})}
	a.statMu.Lock()
	a.statCur, a.lastSent = inflight, inflight
	a.statMu.Unlock()
	stats := a.stats.Load()

	type answer struct {
		ver uint64
		err error
	}
	joined := make(chan answer, 1)
	go func() {
		_, ver, err := a.Snapshot(WithRequestStart(ctx, early))
		joined <- answer{ver, err}
	}()
	queued := make(chan answer, 2)
	for range 2 {
		go func() {
			_, ver, err := a.Snapshot(WithRequestStart(ctx, time.Now()))
			queued <- answer{ver, err}
		}()
	}
	for { // until a caller is queued behind the check in flight
		a.statMu.Lock()
		next := a.statNext
		a.statMu.Unlock()
		if next != nil {
			break
		}
		runtime.Gosched()
	}
	if n := a.stats.Load() - stats; n != 0 {
		t.Fatalf("%d stats sent beside the check in flight, want 0", n)
	}
	inflight.ver = want
	close(inflight.done)
	if got := <-joined; got.err != nil || got.ver != want {
		t.Errorf("a request that began before the check in flight was sent: %d %v, want its answer %d", got.ver, got.err, want)
	}
	for range 2 {
		if got := <-queued; got.err != nil || got.ver != want {
			t.Errorf("a queued request: %d %v, want %d", got.ver, got.err, want)
		}
	}
	// the queued callers share the stat sent once the check in flight
	// ended (a late one sends its own only if its request began after
	// that one went out)
	if n := a.stats.Load() - stats; n < 1 || n > 2 {
		t.Errorf("%d stats after the check in flight, want 1 or 2", n)
	}
}

// TestCommitReportsStages: a StageTimer in the context hears each step of a
// commit once, in order, and the version check of a snapshot.
func TestCommitReportsStages(t *testing.T) {
	s := openStore(t, connect(t), uniqueObject(t), nil)
	var got []string
	ctx := WithStageTimer(context.Background(), func(stage string, d time.Duration) {
		if d < 0 {
			t.Errorf("stage %s: negative duration %v", stage, d)
		}
		got = append(got, stage)
	})
	if _, err := s.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// the store seeded the object: its next commit takes no lock
	if want := []string{"read", "mutation", "encode", "write"}; !slices.Equal(got, want) {
		t.Errorf("commit after our own: stages %q, want %q", got, want)
	}
	// after a peer's lock, the commit takes ours
	io, err := connect(t).rc.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if ret, err := io.LockExclusive(s.opts.Object, LockName, LockCookie, "", 0, nil); err != nil || ret != 0 {
		t.Fatalf("peer lock: %d %v", ret, err)
	}
	if _, err := io.Unlock(s.opts.Object, LockName, LockCookie); err != nil {
		t.Fatal(err)
	}
	got = nil
	if _, err := s.Commit(ctx, func(d *config.Doc) error {
		_, err := d.AddTarget(testTarget+"2", time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// the write without the lock was tried first (nothing told this store
	// that the object moved), and refused
	if want := []string{"read", "mutation", "encode", "write", "lock", "read", "mutation", "encode", "write"}; !slices.Equal(got, want) {
		t.Errorf("commit after a peer's lock: stages %q, want %q", got, want)
	}
	got = nil
	if _, _, err := s.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"version"}; !slices.Equal(got, want) {
		t.Errorf("snapshot of the committed version: stages %q, want %q", got, want)
	}
}

// TestConcurrentSnapshotsShareOneRead: the requests a peer's commit sets off
// on a gateway at once (the coordinator's ping, its internal call, the
// watch) read and parse the new version once between them, not once each.
func TestConcurrentSnapshotsShareOneRead(t *testing.T) {
	ctx := context.Background()
	a := openStore(t, connect(t), uniqueObject(t), nil)
	b := openStore(t, connect(t), a.opts.Object, nil)
	for i := range 3 {
		if _, err := b.Commit(ctx, func(d *config.Doc) error {
			_, err := d.AddTarget(fmt.Sprintf("iqn.2003-01.com.example.iscsi-gw:share-%d", i), time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		before := a.reads.Load()
		var wg sync.WaitGroup
		docs := make([]*config.Doc, 8)
		for j := range docs {
			wg.Go(func() {
				doc, _, err := a.Snapshot(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				docs[j] = doc
			})
		}
		wg.Wait()
		if n := a.reads.Load() - before; n != 1 {
			t.Errorf("commit %d: 8 concurrent snapshots read the object %d times, want 1", i, n)
		}
		for _, d := range docs {
			if d == nil || d.Epoch != int64(i+1) || d != docs[0] {
				t.Fatalf("commit %d: the snapshots are not all the one document of epoch %d", i, i+1)
			}
		}
	}
}

// forgetOwnWrite makes the next commit take the lock, as after a peer's
// commit.
func (s *Store) forgetOwnWrite() {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	s.unlockedAt = 0
}

// TestPeerCommitSeenByTheWatchTakesTheLock: once the watch has told a store
// that a peer committed, its next commit takes the lock at once instead of
// first trying a write that asserts the version its own last commit left;
// and a commit after its own, with no peer in between, takes none.
func TestPeerCommitSeenByTheWatchTakesTheLock(t *testing.T) {
	ctx := context.Background()
	a := openStore(t, connect(t), uniqueObject(t), nil)
	b := openStore(t, connect(t), a.opts.Object, nil)
	events := a.Subscribe(t.Context())
	addTarget := func(iqn string) func(*config.Doc) error {
		return func(d *config.Doc) error { _, err := d.AddTarget(iqn, time.Now()); return err }
	}
	stagesOf := func(s *Store, iqn string) []string {
		var got []string
		ctx := WithStageTimer(ctx, func(stage string, _ time.Duration) { got = append(got, stage) })
		if _, err := s.Commit(ctx, addTarget(iqn)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	waitEpoch := func(want int64) {
		for ev := range events {
			if ev.Epoch >= want {
				return
			}
		}
		t.Fatalf("subscription closed before epoch %d", want)
	}
	stagesOf(a, "iqn.2003-01.com.example:a1")
	waitEpoch(1)
	if got, want := stagesOf(a, "iqn.2003-01.com.example:a2"), []string{"read", "mutation", "encode", "write"}; !slices.Equal(got, want) {
		t.Errorf("a's commit after its own: stages %q, want %q", got, want)
	}
	waitEpoch(2)
	stagesOf(b, "iqn.2003-01.com.example:b1")
	waitEpoch(3)
	if got, want := stagesOf(a, "iqn.2003-01.com.example:a3"), []string{"lock", "read", "mutation", "encode", "write"}; !slices.Equal(got, want) {
		t.Errorf("a's commit after b's, seen by the watch: stages %q, want %q", got, want)
	}
	doc, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, iqn := range []string{"a1", "a2", "b1", "a3"} {
		if doc.Targets["iqn.2003-01.com.example:"+iqn] == nil {
			t.Errorf("target %s lost", iqn)
		}
	}
}

// TestCommitWritesOnlyTheChangedTail: a commit on top of this store's own
// writes only the object's bytes from the first that changed, and the
// object is then exactly the committed document's bytes, whether the
// change is at the end (a client), in the disks section (a disk's owner),
// makes the document shorter (written whole), or follows a peer's raw
// write of the object (the version moved: written whole again, never a
// tail spliced onto bytes this store did not write).
func TestCommitWritesOnlyTheChangedTail(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx := context.Background()
	const gw = "gw1"
	var lastLen int
	step := func(name string, mutate func(d *config.Doc) error, wantTail bool) {
		t.Helper()
		before := s.written.Load()
		doc, err := s.Commit(ctx, mutate)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		raw, epoch := rawObject(t, s)
		want := doc.Marshal()
		if string(raw) != string(want) {
			t.Fatalf("%s: object bytes differ from the committed document:\n%s\nwant\n%s", name, raw, want)
		}
		if epoch != strconv.FormatInt(doc.Epoch, 10) {
			t.Fatalf("%s: epoch xattr %s, document %d", name, epoch, doc.Epoch)
		}
		wrote := int(s.written.Load() - before)
		if wantTail && (wrote == 0 || wrote >= len(want)) || !wantTail && wrote != len(want) {
			t.Fatalf("%s: wrote %d of %d bytes (tail expected: %v)", name, wrote, len(want), wantTail)
		}
		t.Logf("%s: wrote %d of %d bytes", name, wrote, len(want))
		lastLen = len(want)
	}
	step("target and gateway", func(d *config.Doc) error {
		if _, err := d.AddTarget(testTarget, time.Now()); err != nil {
			return err
		}
		d.PutGateway(gw, &config.Gateway{})
		return nil
	}, true) // on the seed this store's open wrote
	for i := range 8 {
		step(fmt.Sprint("disk ", i), func(d *config.Doc) error {
			_, err := d.AddDisk(config.NewDisk{Pool: "rbd", Image: fmt.Sprintf("img%02d", i), PoolID: 1, WWN: fmt.Sprint("wwn-", i),
				Backstore: "user:rbd", AllocatingHost: gw}, time.Now())
			return err
		}, true)
	}
	step("target LUN (the disk's owner, early in the object)", func(d *config.Doc) error {
		_, _, err := d.MapTargetLun(testTarget, "rbd/img00", nil, gw, time.Now())
		return err
	}, true)
	step("client (near the end)", func(d *config.Doc) error {
		_, err := d.AddClient(testTarget, "iqn.1994-05.com.example:c1", time.Now())
		return err
	}, true)
	step("client LUN", func(d *config.Doc) error {
		_, err := d.SetClientLuns(testTarget, "iqn.1994-05.com.example:c1", []string{"rbd/img00"}, time.Now())
		return err
	}, true)
	step("client LUN removed (shorter: whole)", func(d *config.Doc) error {
		_, err := d.SetClientLuns(testTarget, "iqn.1994-05.com.example:c1", nil, time.Now())
		return err
	}, false)

	// A peer that ignores the lock rewrites the object with a byte changed
	// near its start and its length kept: the next commit must not write a
	// tail onto it.
	raw, _ := rawObject(t, s)
	if len(raw) != lastLen {
		t.Fatalf("object is %d bytes, the last commit's %d", len(raw), lastLen)
	}
	peer := slices.Clone(raw)
	i := strings.Index(string(peer), `"wwn-3"`)
	peer[i+5] = '9' // "wwn-9", same length
	io, err := s.ioctx()
	if err != nil {
		t.Fatal(err)
	}
	defer io.Destroy()
	if err := io.WriteFull(s.opts.Object, peer); err != nil {
		t.Fatal(err)
	}
	// (the mutation first runs on the remembered document, whose write
	// the moved version refuses, then again on the peer's)
	step("after a peer's write (whole)", func(d *config.Doc) error {
		_, err := d.AddClient(testTarget, "iqn.1994-05.com.example:c2", time.Now())
		return err
	}, false)
	if raw, _ := rawObject(t, s); !strings.Contains(string(raw), `"wwn-9"`) {
		t.Fatalf("the peer's change is lost:\n%s", raw)
	}
	step("and a tail again", func(d *config.Doc) error {
		_, err := d.AddClient(testTarget, "iqn.1994-05.com.example:c3", time.Now())
		return err
	}, true)
}

type errnoError int

func (e errnoError) Error() string  { return fmt.Sprintf("errno %d", int(e)) }
func (e errnoError) ErrorCode() int { return int(e) }

// TestPartialWriteRefusedWritesWhole: once the pool refuses a partial
// write (EOPNOTSUPP, an erasure-coded pool without overwrites; the test
// cluster's replicated pool cannot refuse one, so the refusal is handed in
// as the op would return it), every commit writes the object whole; a
// whole write's EOPNOTSUPP is not taken for that refusal.
func TestPartialWriteRefusedWritesWhole(t *testing.T) {
	conn := connect(t)
	s := openStore(t, conn, uniqueObject(t), nil)
	ctx := context.Background()
	commit := func(ini string) (wrote, size int) {
		t.Helper()
		before := s.written.Load()
		doc, err := s.Commit(ctx, func(d *config.Doc) error {
			if d.Targets[testTarget] == nil {
				if _, err := d.AddTarget(testTarget, time.Now()); err != nil {
					return err
				}
			}
			_, err := d.AddClient(testTarget, ini, time.Now())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(s.written.Load() - before), len(doc.Marshal())
	}
	commit("iqn.1994-05.com.example:c1")
	if wrote, size := commit("iqn.1994-05.com.example:c2"); wrote >= size {
		t.Fatalf("wrote %d of %d bytes before any refusal", wrote, size)
	}
	if s.partialRefused(errnoError(-errnoENOTSUPP), 20, make([]byte, 20)) {
		t.Fatal("a whole write's EOPNOTSUPP taken for a refused partial write")
	}
	if s.partialRefused(errnoError(-errnoERANGE), 10, make([]byte, 20)) {
		t.Fatal("ERANGE taken for a refused partial write")
	}
	if !s.partialRefused(errnoError(-errnoENOTSUPP), 10, make([]byte, 20)) {
		t.Fatal("a partial write's EOPNOTSUPP not taken for a refusal")
	}
	if wrote, size := commit("iqn.1994-05.com.example:c3"); wrote != size {
		t.Fatalf("wrote %d of %d bytes after a refusal", wrote, size)
	}
}
