package rados

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"ceph-iscsi/config"
)

// The legacy lock. Python gateways take it around every commit; holding it under the
// same name, cookie and type keeps them excluded while we write, and keeps us out
// while they do.
const (
	LockName   = "lock"
	LockCookie = "config"
	EpochXattr = "epoch"
)

// lockFlagMayRenew is librados' LIBRADOS_LOCK_FLAG_MAY_RENEW, which go-ceph does not
// export.
const lockFlagMayRenew = 1

// Defaults of StoreOptions.
const (
	// DefaultLease bounds how long a lock survives its holder. Upstream's lock never
	// expires, so a gateway killed mid-commit wedged every later change until someone
	// ran `rados lock break`. Ten seconds is far longer than a commit (a read and a
	// write of one object) takes, and short enough that nobody waits long on a dead
	// holder. If a live holder ever overran it, the version assertion on the write
	// still rejects any interleaved commit, so the lease can only cost a retry, never
	// an update.
	DefaultLease = 10 * time.Second
	// DefaultLockWait is how long a commit waits for the lock: upstream's
	// lock_time_limit, whose timeout message operators know.
	DefaultLockWait = 30 * time.Second
)

// ErrConfigNotFound is returned when the config object does not exist.
var ErrConfigNotFound = errors.New("config object not found")

// ErrLockTimeout is returned when the legacy lock could not be had within LockWait.
var ErrLockTimeout = errors.New("timed out waiting for the config lock")

// ErrSharedWrite is the remembered document found changed in place: some
// code wrote a disk, gateway or target it shares with its copies without
// the config package's copy-on-write accessors (see config.Doc.Fork).
var ErrSharedWrite = errors.New("the shared config document was changed in place, bypassing the copy-on-write accessors")

// Mutation changes the document in place. It must be a pure function of the document:
// a commit that loses a race re-reads the object and runs it again on the new content.
// An error aborts the commit and nothing is written. The document is a Fork of the
// remembered one: it is changed through config's methods and Mut accessors.
type Mutation func(*config.Doc) error

// StoreOptions configure a Store.
type StoreOptions struct {
	Pool   string // default "rbd"
	Object string // default "gateway.conf"
	// Upgrade carries this gateway's identity and key material for the schema
	// upgrades that run when an older document is read.
	Upgrade config.UpgradeOptions
	// Lease is the duration of the legacy lock (DefaultLease when zero).
	Lease time.Duration
	// LockWait bounds the wait for the legacy lock (DefaultLockWait when zero).
	LockWait time.Duration
	// PollInterval is how often watchers also read the epoch xattr, to notice
	// commits of Python gateways, which never notify (default 1 s, upstream's poll).
	PollInterval time.Duration
	Logger       *slog.Logger
	// Now is the clock for created/updated stamps (time.Now when nil).
	Now func() time.Time
	// SkipSharedCheck turns off, in a test binary, the check that the
	// remembered document still encodes as it did (see VerifyCached), which
	// re-encodes it on every commit: for benchmarks.
	SkipSharedCheck bool
}

// Store is the gateway.conf object of one pool, shared by every goroutine of the
// process.
type Store struct {
	conn *Conn
	opts StoreOptions
	log  *slog.Logger

	// commitMu serialises this process's commits. Every goroutine shares one RADOS
	// client and the one lock cookie, so they cannot exclude each other through the
	// RADOS lock; without it they would only collide on the version assertion.
	commitMu sync.Mutex
	// readSize is the buffer size the last read needed; reads start there.
	readSize atomic.Int64
	// reads counts the reads of the object's data, for tests: a commit
	// after this store's own must not need one.
	reads atomic.Int64
	// stats counts the version checks (a stat each), for tests: a commit
	// after this store's own needs none, its write asserts the version.
	stats atomic.Int64
	// locks counts the lock operations sent, for tests: a commit after
	// this store's own sends none (see unlockedAt).
	locks atomic.Int64
	// loaded is the last document read or committed and the object version it
	// is: every API request checks the version (peers write the object behind
	// our back), but while it is unchanged the object is neither read nor
	// parsed, which is most of the cost of a large document. It is shared
	// read-only (Snapshot).
	loadedMu  sync.Mutex
	loadedVer uint64
	loaded    *config.Doc
	// loadedEnc is loaded's Encoding when a commit of this store built it
	// (nil after a read): the next commit validates and encodes only what
	// its mutation changed, and tolerates the invalid names it records.
	loadedEnc *config.Encoding
	// loadedDec is the Decoding of the last document read (kept across
	// this store's own commits, whose documents share its objects): the
	// next read of a peer's commit parses only what changed, and gives a
	// document that shares the rest, which the gateway's memos recognize.
	loadedDec *config.Decoding
	// spare is the byte buffer of an Encoding no longer in use, which the
	// next commit encodes into (guarded by commitMu, see committed).
	spare []byte
	// written counts the bytes this store's commits wrote into the
	// object's data (writeData), for tests.
	written atomic.Uint64
	// wholeWrites: the pool refused a partial write (partialRefused).
	wholeWrites atomic.Bool
	// loadedBytes is loaded's encoding when it was remembered, kept in
	// test binaries (checkShared) to catch a write through a shared object.
	loadedBytes []byte
	checkShared bool
	// unlockedAt is the object version this store's last commit left: its
	// write released our lock in the same operation, so at that version
	// nobody holds the lock, and since anybody's lock moves the version, a
	// write that asserts it needs no lock of its own (0: unknown).
	unlockedAt uint64
	// readMu makes concurrent Snapshots of a new version share one read.
	readMu sync.Mutex
	// statMu guards the version checks (see sharedVersion): statCur is
	// the one in flight, statNext the one callers that arrived during it
	// wait for, lastSent the one sent last (in flight or answered).
	statMu   sync.Mutex
	statCur  *versionCall
	statNext *versionCall
	lastSent *versionCall

	watchMu sync.Mutex
	subs    map[chan Event]struct{}
	watch   *watchLoop

	// bg tracks goroutines that use the connection (watch loop, notifies); Close
	// waits for them, since librados crashes when a connection shuts down under a
	// running call.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// OpenStore makes sure the object exists, seeds it when empty and upgrades it to the
// current schema, as upstream does at every start.
func OpenStore(ctx context.Context, conn *Conn, opts StoreOptions) (*Store, error) {
	if opts.Pool == "" {
		opts.Pool = "rbd"
	}
	if opts.Object == "" {
		opts.Object = "gateway.conf"
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.LockWait <= 0 {
		opts.LockWait = DefaultLockWait
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{conn: conn, opts: opts, log: logger.With("object", opts.Pool+"/"+opts.Object),
		checkShared: testing.Testing() && !opts.SkipSharedCheck}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.readSize.Store(64 << 10)
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close ends the store's subscriptions and background work and waits for them. Call
// it before closing the connection.
func (s *Store) Close() {
	s.bgCancel()
	s.bg.Wait()
}

// Name is "pool/object".
func (s *Store) Name() string { return s.opts.Pool + "/" + s.opts.Object }

func (s *Store) ioctx() (*rados.IOContext, error) {
	io, err := s.conn.rc.OpenIOContext(s.opts.Pool)
	if err != nil {
		return nil, fmt.Errorf("open pool %q: %w", s.opts.Pool, err)
	}
	return io, nil
}

func (s *Store) open(ctx context.Context) error {
	io, err := s.ioctx()
	if err != nil {
		return err
	}
	defer io.Destroy()
	if err := io.Create(s.opts.Object, rados.CreateExclusive); err != nil && !errors.Is(err, rados.ErrObjectExists) {
		return fmt.Errorf("create %s: %w", s.Name(), err)
	}
	raw, _, err := s.read(io)
	if err != nil {
		return err
	}
	needsWrite := len(raw) == 0
	if !needsWrite {
		_, upgraded, err := config.Load(raw, s.upgradeOptions())
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		needsWrite = upgraded
	}
	if !needsWrite {
		return nil
	}
	// Seeding and upgrading are commits like any other; the commit re-reads under the
	// lock, so two gateways starting at once seed or upgrade only once.
	_, err = s.commit(ctx, nil, true)
	return err
}

func (s *Store) upgradeOptions() config.UpgradeOptions {
	o := s.opts.Upgrade
	o.Now = s.opts.Now()
	return o
}

// read returns the object's bytes and the object version they belong to.
func (s *Store) read(io *rados.IOContext) ([]byte, uint64, error) {
	s.reads.Add(1)
	size := s.readSize.Load()
	for {
		buf := make([]byte, size)
		op := rados.CreateReadOp()
		step := op.Read(0, buf)
		err := op.Operate(io, s.opts.Object, rados.OperationNoFlag)
		n := step.BytesRead
		op.Release()
		if err != nil {
			if Errno(err) == errnoENOENT {
				return nil, 0, fmt.Errorf("read %s: %w", s.Name(), ErrConfigNotFound)
			}
			return nil, 0, fmt.Errorf("read %s: %w", s.Name(), err)
		}
		if n < size {
			ver, err := io.GetLastVersion()
			if err != nil {
				return nil, 0, fmt.Errorf("read %s: version: %w", s.Name(), err)
			}
			return buf[:n], ver, nil
		}
		size *= 4 // the buffer was filled: the object may be larger
		s.readSize.Store(size)
	}
}

// Load reads the current document. An older schema is upgraded in memory; OpenStore
// and every commit write the upgrade back. The caller owns the copy it gets, a
// Fork of the shared document: it is changed through config's Mut accessors
// (or Cloned first).
func (s *Store) Load(ctx context.Context) (*config.Doc, error) {
	doc, _, err := s.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return doc.Fork(), nil
}

// Snapshot returns the current document and the object version it is, shared with
// every other caller: it must not be modified (Load gives a copy). Each call costs
// one stat of the object, which says whether the document this process last read
// or committed is still the current one; only when another writer (a peer, a
// Python gateway, a hand edit) changed the object is it read and parsed again. So a
// gateway reads its own commits (the commit leaves its document here) and sees
// anybody else's on the next call.
func (s *Store) Snapshot(ctx context.Context) (*config.Doc, uint64, error) {
	begin := time.Now()
	if t, ok := ctx.Value(requestStartKey{}).(time.Time); ok && t.Before(begin) {
		begin = t
	}
	clock := newStageClock(ctx)
	ver, err := s.sharedVersion(begin, clock)
	if err != nil {
		return nil, 0, err
	}
	clock.mark("version")
	if doc, at := s.since(ver); doc != nil {
		return doc, at, nil
	}
	// One read per new version: the requests a peer's commit sets off here
	// at once (the coordinator's ping and internal call, the watch) wait
	// for the first one's read and parse instead of each doing their own.
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if doc, at := s.since(ver); doc != nil {
		return doc, at, nil
	}
	defer clock.mark("read")
	io, err := s.ioctx()
	if err != nil {
		return nil, 0, err
	}
	defer io.Destroy()
	raw, ver, err := s.read(io)
	if err != nil {
		return nil, 0, err
	}
	if doc := s.cached(ver); doc != nil {
		return doc, ver, nil
	}
	s.loadedMu.Lock()
	base := s.loadedDec
	s.loadedMu.Unlock()
	doc, _, dec, err := config.LoadFrom(raw, s.upgradeOptions(), base)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", s.Name(), err)
	}
	s.remember(doc, ver, nil)
	if dec != nil {
		s.loadedMu.Lock()
		if s.loadedVer == ver {
			s.loadedDec = dec
		}
		s.loadedMu.Unlock()
	}
	return doc, ver, nil
}

type requestStartKey struct{}

// WithRequestStart returns ctx saying that the Snapshot calls made with it
// serve a request that began at t: they need to see only the commits
// completed before t, so a version check sent since t answers them too.
// Use it only where nothing between t and the Snapshot call depends on a
// commit finishing (GET /api/config); without it, a Snapshot's own start
// counts.
func WithRequestStart(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, requestStartKey{}, t)
}

// versionCall is one version check: its stat went out after sent, and
// done closes when ver and err are set.
type versionCall struct {
	sent time.Time
	done chan struct{}
	ver  uint64
	err  error
}

// sharedVersion is version for concurrent readers (GET /api/config under
// load), at one stat per round trip instead of one per request: a stat sent
// after a request began sees every commit completed before it began, so
// the caller whose request began at begin takes the answer of the last
// check sent since then, in flight or answered. Otherwise it joins the
// check queued behind the one in flight, which goes out when that one
// ends; or, when none is in flight, sends its own. It never takes the
// answer of a stat sent before its request began, which might predate a
// commit completed before it: every commit completed before the request
// began is seen. Queueing instead of sending at once keeps the stats to
// one per round trip however many requests arrive: on a loaded host (a
// TCG guest) a stat per request costs more than the wait. Only the caller
// that sends the stat opens an I/O context for it.
//
// The time spent waiting for another caller's stat is reported to clock as
// "version-wait", so that "version" is this caller's own round trip.
func (s *Store) sharedVersion(begin time.Time, clock *stageClock) (uint64, error) {
	s.statMu.Lock()
	if c := s.lastSent; c != nil && !c.sent.Before(begin) {
		s.statMu.Unlock()
		<-c.done
		clock.mark("version-wait")
		return c.ver, c.err
	}
	if c := s.statNext; c != nil {
		s.statMu.Unlock()
		<-c.done
		clock.mark("version-wait")
		return c.ver, c.err
	}
	c := &versionCall{done: make(chan struct{})}
	if prev := s.statCur; prev != nil {
		s.statNext = c
		s.statMu.Unlock()
		<-prev.done
		clock.mark("version-wait")
		s.statMu.Lock()
		s.statNext = nil
	}
	// sent is taken before the stat goes out, under the lock that readers
	// of lastSent take
	c.sent = time.Now()
	s.statCur, s.lastSent = c, c
	s.statMu.Unlock()

	c.ver, c.err = s.version()
	s.statMu.Lock()
	if s.statCur == c {
		s.statCur = nil
	}
	s.statMu.Unlock()
	close(c.done)
	return c.ver, c.err
}

// version is the object's current version, from a stat: no data is read.
func (s *Store) version() (uint64, error) {
	io, err := s.ioctx()
	if err != nil {
		return 0, err
	}
	defer io.Destroy()
	s.stats.Add(1)
	if _, err := io.Stat(s.opts.Object); err != nil {
		if Errno(err) == errnoENOENT {
			return 0, fmt.Errorf("stat %s: %w", s.Name(), ErrConfigNotFound)
		}
		return 0, fmt.Errorf("stat %s: %w", s.Name(), err)
	}
	ver, err := io.GetLastVersion()
	if err != nil {
		return 0, fmt.Errorf("stat %s: version: %w", s.Name(), err)
	}
	return ver, nil
}

// Cached is the document this store last read or committed, known without
// a round trip: it may be older than the object (a peer's commit this
// process has not read yet), so whatever a caller concludes from it must
// hold on the current document too (a commit re-checks on its fresh,
// lock-verified one). Shared: it must not be modified. Nil before the
// first read.
func (s *Store) Cached() *config.Doc {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	return s.loaded
}

// cached is the remembered document when it is version ver, else nil.
func (s *Store) cached(ver uint64) *config.Doc {
	doc, _ := s.cachedEncoding(ver)
	return doc
}

// cachedEncoding is cached with the remembered document's Encoding (nil
// when none was built).
func (s *Store) cachedEncoding(ver uint64) (*config.Doc, *config.Encoding) {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	if s.loaded != nil && s.loadedVer == ver {
		return s.loaded, s.loadedEnc
	}
	return nil, nil
}

// since is the remembered document and its version when that is ver or
// newer (a commit or read that finished after the caller's version check),
// else nil: either is the current document for a caller that checked ver.
func (s *Store) since(ver uint64) (*config.Doc, uint64) {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	if s.loaded != nil && s.loadedVer >= ver {
		return s.loaded, s.loadedVer
	}
	return nil, 0
}

// remember keeps doc as the document of object version ver, unless a newer one is
// already known. doc is never modified afterwards: callers share it. enc is
// doc's Encoding, nil when unknown (the one remembered for doc is kept).
func (s *Store) remember(doc *config.Doc, ver uint64, enc *config.Encoding) {
	var raw []byte
	if s.checkShared {
		raw = doc.Marshal()
	}
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	if ver >= s.loadedVer {
		if doc != s.loaded {
			s.loadedBytes = raw
			s.loadedEnc = nil
		}
		if enc != nil {
			s.loadedEnc = enc
		}
		s.loaded, s.loadedVer = doc, ver
	}
}

// VerifyCached reports ErrSharedWrite when the remembered document no
// longer encodes as it did when it was remembered. Every request starts
// from a Fork of that document, which shares its objects, so a change
// that bypasses the Mut accessors shows up there. Only test binaries keep
// what it compares with; elsewhere it checks nothing. Each commit runs it
// after its mutation.
func (s *Store) VerifyCached() error {
	return s.verifyShared(nil)
}

// verifyShared is VerifyCached for doc, the remembered document a commit
// forked (nil: whatever is remembered now); a document no longer
// remembered is not checked.
func (s *Store) verifyShared(doc *config.Doc) error {
	if !s.checkShared {
		return nil
	}
	s.loadedMu.Lock()
	cur, want := s.loaded, s.loadedBytes
	s.loadedMu.Unlock()
	if doc == nil {
		doc = cur
	}
	if doc == nil || doc != cur || want == nil {
		return nil
	}
	if got := doc.Marshal(); !bytes.Equal(got, want) {
		s.log.Error("the remembered config document changed in place", "epoch", doc.Epoch)
		return fmt.Errorf("%s at epoch %d: %w", s.Name(), doc.Epoch, ErrSharedWrite)
	}
	return nil
}

// Epoch reads the epoch xattr, the change counter every gateway, Python ones
// included, bumps on commit.
func (s *Store) Epoch() (int64, error) {
	io, err := s.ioctx()
	if err != nil {
		return 0, err
	}
	defer io.Destroy()
	buf := make([]byte, 32)
	n, err := io.GetXattr(s.opts.Object, EpochXattr, buf)
	if err != nil {
		return 0, fmt.Errorf("read %s xattr %s: %w", s.Name(), EpochXattr, err)
	}
	e, err := strconv.ParseInt(string(buf[:n]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s xattr %s: %q is not a number", s.Name(), EpochXattr, buf[:n])
	}
	return e, nil
}

// Commit applies mutate to the latest document and writes the result, bumping the
// epoch by exactly one. It never loses an update: the write asserts the object
// version it read, and a commit that lost a race re-reads and re-applies mutate.
// It returns the document as written.
func (s *Store) Commit(ctx context.Context, mutate Mutation) (*config.Doc, error) {
	if mutate == nil {
		return nil, errors.New("commit: nil mutation")
	}
	return s.commit(ctx, mutate, false)
}

func (s *Store) commit(ctx context.Context, mutate Mutation, onlyIfNeeded bool) (*config.Doc, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()

	clock := newStageClock(ctx)
	io, err := s.ioctx()
	if err != nil {
		return nil, err
	}
	defer io.Destroy()

	if !onlyIfNeeded && mutate != nil {
		if doc, done, err := s.commitUnlocked(io, mutate, clock); done || err != nil {
			return doc, err
		}
	}
	ver, known, err := s.lock(ctx, io)
	if err != nil {
		return nil, err
	}
	clock.mark("lock")
	unlocked := false
	defer func() {
		if !unlocked {
			s.unlock(io)
		}
	}()

	lostLeases := 0
	for attempt := 1; ; attempt++ {
		var doc, forked *config.Doc
		var prev *config.Encoding
		changed := false
		var raw []byte
		if cur, enc := s.cachedEncoding(ver); known && cur != nil && !onlyIfNeeded {
			forked, prev = cur, enc
			// The lock asserted the version of the remembered document and
			// the write asserts the version the lock left, so the
			// remembered document is the one the mutation must see: no stat,
			// no read, no parse.
			doc = cur.Fork()
		} else if raw, ver, err = s.read(io); err != nil {
			return nil, err
		} else if len(raw) == 0 {
			doc, changed = config.NewDoc(s.opts.Now()), true
		} else {
			doc, changed, err = config.Load(raw, s.upgradeOptions())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name(), err)
			}
		}
		clock.mark("read")
		if onlyIfNeeded && !changed {
			return doc, nil
		}
		seed := len(raw) == 0 && mutate == nil
		// A fresh seed keeps epoch 0 and no "updated" stamp, as upstream's does.
		out, enc, err := s.change(doc, prev, mutate, !seed, clock)
		if err != nil {
			return nil, err
		}
		if forked != nil {
			if err := s.verifyShared(forked); err != nil {
				return nil, err
			}
		}

		op := rados.CreateWriteOp()
		op.AssertVersion(ver)
		wrote := s.writeData(op, prev, out)
		op.SetXattr(EpochXattr, []byte(strconv.FormatInt(doc.Epoch, 10)))
		// Unlocking in the same op saves a round trip per commit; when the op fails
		// (a version conflict) nothing of it applies and we still hold the lock.
		op.Exec("lock", "unlock", unlockInput(LockName, LockCookie))
		err = op.Operate(io, s.opts.Object, rados.OperationNoFlag)
		op.Release()
		clock.mark("write")
		switch {
		case err == nil:
			unlocked = true
			s.written.Add(uint64(wrote))
			s.committed(io, doc, enc, prev)
			return doc, nil
		case Errno(err) == errnoENOENT && lostLeases < maxLostLeases:
			// The unlock step found no lock of ours: the commit took longer
			// than the lease (a loaded host, a slow cluster) and the lock
			// expired. Nothing of the op applied; take the lock again and
			// redo the commit on what is there now (a deleted object ends
			// it at the read).
			lostLeases++
			s.log.Warn("config lock lease ran out during the commit; retrying", "lease", s.opts.Lease, "attempt", attempt)
			var lerr error
			if ver, known, lerr = s.lock(ctx, io); lerr != nil {
				unlocked = true // nothing of ours left to release
				return nil, lerr
			}
			continue
		case s.partialRefused(err, wrote, out):
			continue // nothing of the op applied: again, written whole
		case Errno(err) == errnoERANGE || Errno(err) == errnoEOVERFLOW:
			// Someone wrote without taking the lock, or our lease ran out under a
			// slow commit: the version moved. Re-read and re-apply.
			s.log.Debug("config object changed under the commit, retrying", "attempt", attempt)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("commit to %s: %w", s.Name(), err)
			}
			known = false
			continue
		default:
			return nil, fmt.Errorf("write %s: %w", s.Name(), err)
		}
	}
}

// commitUnlocked is a commit after this store's own, in one round trip:
// the remembered document is the object's at unlockedAt, when nobody held
// the lock, so a write that asserts that version is as exclusive as one
// made under the lock (a Python gateway's lock, or anybody's write, since
// then moves the version and fails the assertion). done is false when the
// store knows no such version or the object moved: nothing was written,
// and the caller commits under the lock, running mutate again.
func (s *Store) commitUnlocked(io *rados.IOContext, mutate Mutation, clock *stageClock) (doc *config.Doc, done bool, err error) {
	s.loadedMu.Lock()
	cur, ver, prev := s.loaded, s.loadedVer, s.loadedEnc
	if ver == 0 || ver != s.unlockedAt {
		cur = nil
	}
	s.loadedMu.Unlock()
	if cur == nil {
		return nil, false, nil
	}
	doc = cur.Fork()
	clock.mark("read")
	out, enc, err := s.change(doc, prev, mutate, true, clock)
	if err != nil {
		return nil, true, err
	}
	if err := s.verifyShared(cur); err != nil {
		return nil, true, err
	}
	op := rados.CreateWriteOp()
	op.AssertVersion(ver)
	wrote := s.writeData(op, prev, out)
	op.SetXattr(EpochXattr, []byte(strconv.FormatInt(doc.Epoch, 10)))
	err = op.Operate(io, s.opts.Object, rados.OperationNoFlag)
	op.Release()
	clock.mark("write")
	switch e := Errno(err); {
	case err == nil:
		s.written.Add(uint64(wrote))
		s.committed(io, doc, enc, prev)
		return doc, true, nil
	case e == errnoERANGE || e == errnoEOVERFLOW || e == errnoENOENT || s.partialRefused(err, wrote, out):
		// somebody locked or wrote since, or the pool wants whole
		// writes: nothing of the op applied
		s.log.Debug("config object moved since our last commit; committing under the lock")
		return nil, false, nil
	default:
		return nil, true, fmt.Errorf("write %s: %w", s.Name(), err)
	}
}

// writeData adds the write of out, the document's new bytes, to op, which
// asserts the object's version. prev is the Encoding of the object's bytes
// at that version when this store's own commit wrote them (nil: unknown,
// after a read). Then only out's part from its first byte that differs is
// written, at its offset: the disks section, most of a large object, comes
// before "epoch" and stays as it was in a client's or a target's change,
// and every byte the OSD writes costs its checksums and journal. The
// version assertion makes the bytes before that offset prev's, in the same
// atomic op. A shorter document is written whole: the object would need a
// truncate, which the write op here has not. So is every document once the
// pool refused a partial write (partialRefused: erasure-coded without
// allow_ec_overwrites). It returns how many bytes the op writes.
func (s *Store) writeData(op *rados.WriteOp, prev *config.Encoding, out []byte) int {
	old := prev.Bytes()
	if len(old) == 0 || len(out) < len(old) || s.wholeWrites.Load() {
		op.WriteFull(out)
		return len(out)
	}
	from := commonPrefix(old, out)
	if from == len(out) {
		return 0 // the same bytes (an epoch always changes them, but)
	}
	op.Write(out[from:], uint64(from))
	return len(out) - from
}

// partialRefused reports whether err is the pool's refusal of the partial
// write of wrote bytes of out, and then makes every later write whole.
func (s *Store) partialRefused(err error, wrote int, out []byte) bool {
	if wrote == len(out) || Errno(err) != errnoENOTSUPP {
		return false
	}
	if !s.wholeWrites.Swap(true) {
		s.log.Info("the config object's pool refuses partial overwrites; writing it whole from now on", "object", s.Name())
	}
	return true
}

// commonPrefix is how many bytes a and b begin with alike.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	// 64 bytes at a time (string compares are memequal), then bytewise
	i := 0
	for i+64 <= n && string(a[i:i+64]) == string(b[i:i+64]) {
		i += 64
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// change applies mutate (if any) to doc, with bump the epoch and the
// "updated" stamp, and encodes the result, refusing one that would not
// validate. Names an older gateway or a hand edit left behind stay
// committable (so the object can still be deleted); new ones must be valid.
// prev is the Encoding of the document doc was forked from (nil: none):
// only what the mutation changed is validated and encoded again. The
// result's Encoding is for the next commit.
func (s *Store) change(doc *config.Doc, prev *config.Encoding, mutate Mutation, bump bool, clock *stageClock) ([]byte, *config.Encoding, error) {
	var invalid map[string]error
	if prev != nil {
		invalid = prev.InvalidNames()
	} else {
		invalid = doc.InvalidNames()
	}
	if mutate != nil {
		if err := mutate(doc); err != nil {
			return nil, nil, err
		}
	}
	clock.mark("mutation")
	if bump {
		doc.Epoch++
		doc.Updated = config.Timestamp(s.opts.Now())
	}
	// the buffer of the Encoding the last commit replaced, if any: a
	// commit of this one's is the only writer (commitMu)
	spare := s.spare
	s.spare = nil
	out, enc, err := doc.ValidateAndMarshalInto(prev, invalid, spare)
	if err != nil {
		return nil, nil, fmt.Errorf("commit to %s refused, the result would be invalid: %w", s.Name(), err)
	}
	clock.mark("encode")
	return out, enc, nil
}

// committed records the document this store's write left, whose operation
// also released any lock of ours: the committing gateway reads its own
// write without a read, and its next commit needs no lock.
//
// prev, the Encoding the commit built on, is no use once enc replaces it:
// commits are serialised (commitMu) and only they read the remembered
// Encoding, so its bytes become the next commit's output buffer.
func (s *Store) committed(io *rados.IOContext, doc *config.Doc, enc, prev *config.Encoding) {
	if written, err := io.GetLastVersion(); err == nil {
		// the fork holds doc's objects, so doc's Encoding is the fork's
		s.remember(doc.Fork(), written, enc)
		s.loadedMu.Lock()
		if s.loadedVer == written {
			s.unlockedAt = written
		}
		if prev != nil && prev != enc && prev != s.loadedEnc {
			s.spare = prev.Spare()
		}
		s.loadedMu.Unlock()
	}
	s.notify(doc.Epoch)
}

// maxLostLeases bounds the retries of a commit whose lock lease ran out
// before its write: a commit that keeps outliving the lease fails instead
// of looping.
const maxLostLeases = 3

// lock takes the legacy lock with a lease. "May renew" makes a lock we still hold
// from a commit whose unlock failed count as ours instead of blocking us until it
// expires.
//
// Taking the lock writes the object's lock attribute, which moves its version, so
// the document remembered at the version before would never serve the commit
// that follows: every commit would read and parse the whole object again. The
// lock is therefore taken asserting the remembered version, in one operation;
// when that holds, nothing but our lock changed the object, and the remembered
// document is the object's at the version the lock left: lock returns that
// version and known. When it does not, the lock is taken plainly and the commit
// reads the object (known is false).
func (s *Store) lock(ctx context.Context, io *rados.IOContext) (ver uint64, known bool, err error) {
	s.loadedMu.Lock()
	doc, ver := s.loaded, s.loadedVer
	s.loadedMu.Unlock()
	deadline := time.Now().Add(s.opts.LockWait)
	backoff := 5 * time.Millisecond
	for {
		op := rados.CreateWriteOp()
		if doc != nil {
			op.AssertVersion(ver)
		}
		op.Exec("lock", "lock", lockInput(LockName, LockCookie, s.opts.Lease, lockFlagMayRenew))
		s.locks.Add(1)
		err := op.Operate(io, s.opts.Object, rados.OperationNoFlag)
		op.Release()
		switch e := Errno(err); {
		case err == nil:
			if doc != nil {
				if now, verr := io.GetLastVersion(); verr == nil {
					s.remember(doc, now, nil)
					return now, true, nil
				}
			}
			return 0, false, nil
		case doc != nil && (e == errnoERANGE || e == errnoEOVERFLOW || e == errnoENOENT):
			// the object moved since we last read or wrote it: lock plainly
			doc = nil
			continue
		case e != errnoEBUSY && e != errnoEEXIST:
			return 0, false, fmt.Errorf("lock %s: %w", s.Name(), err)
		}
		// -EBUSY: another client holds it; wait for its unlock or its lease.
		if time.Now().After(deadline) {
			//lint:ignore ST1005 upstream's message, verbatim: operators and clients know it
			return 0, false, fmt.Errorf("Timed out (%ds) waiting for excl lock on %s object: %w",
				int(s.opts.LockWait.Seconds()), s.opts.Object, ErrLockTimeout)
		}
		sleep := backoff/2 + rand.N(backoff) // jitter, so waiters do not stampede
		select {
		case <-ctx.Done():
			return 0, false, fmt.Errorf("lock %s: %w", s.Name(), ctx.Err())
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// lockInput encodes cls_lock's lock request (cls_lock_lock_op: name, type,
// cookie, tag, description, duration, flags) for an exclusive lock with an empty
// tag and description, as rados_lock_exclusive sends it.
func lockInput(name, cookie string, lease time.Duration, flags byte) []byte {
	str := func(b []byte, s string) []byte {
		return append(binary.LittleEndian.AppendUint32(b, uint32(len(s))), s...)
	}
	payload := str(nil, name)
	payload = append(payload, 1) // LOCK_EXCLUSIVE
	payload = str(payload, cookie)
	payload = str(payload, "")
	payload = str(payload, "")
	payload = binary.LittleEndian.AppendUint32(payload, uint32(lease/time.Second))
	payload = binary.LittleEndian.AppendUint32(payload, uint32(lease%time.Second))
	payload = append(payload, flags)
	out := []byte{1, 1}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(payload)))
	return append(out, payload...)
}

// unlockInput encodes cls_lock's unlock request (cls_lock_unlock_op: name, cookie) in
// Ceph's versioned encoding: struct version 1, compat 1, payload length, then the
// two length-prefixed strings, all little-endian.
func unlockInput(name, cookie string) []byte {
	payload := binary.LittleEndian.AppendUint32(nil, uint32(len(name)))
	payload = append(payload, name...)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(cookie)))
	payload = append(payload, cookie...)
	out := []byte{1, 1}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(payload)))
	return append(out, payload...)
}

func (s *Store) unlock(io *rados.IOContext) {
	if _, err := io.Unlock(s.opts.Object, LockName, LockCookie); err != nil {
		// Not fatal: the lease ends it, and our next lock renews it.
		s.log.Warn("unlocking the config object failed; the lease will release it", "err", err)
	}
}
