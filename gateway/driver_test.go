package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
)

// memSource is the committed document in memory, with rados.Store's event
// semantics (one pending event per subscriber, the latest epoch wins), so
// the driver runs without a cluster or a process. onLoad, when set, runs
// at the start of every Load.
type memSource struct {
	mu     sync.Mutex
	doc    *config.Doc
	subs   []chan rados.Event
	onLoad func()
	// afterLoad sees the document Load returns
	afterLoad func(*config.Doc)
	// subscribed is closed by the first Subscribe
	subscribed chan struct{}
}

func (s *memSource) Load(context.Context) (*config.Doc, error) {
	if s.onLoad != nil {
		s.onLoad()
	}
	s.mu.Lock()
	d := s.doc.Clone()
	s.mu.Unlock()
	if s.afterLoad != nil {
		s.afterLoad(d)
	}
	return d, nil
}

func (s *memSource) Subscribe(context.Context) <-chan rados.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan rados.Event, 1)
	s.subs = append(s.subs, ch)
	if len(s.subs) == 1 {
		close(s.subscribed)
	}
	return ch
}

// commit applies mutate to the document, bumps the epoch and notifies.
func (s *memSource) commit(t *testing.T, mutate func(*config.Doc) error) int64 {
	t.Helper()
	epoch := s.commitUnannounced(t, mutate)
	s.announce(epoch)
	return epoch
}

// commitUnannounced is commit whose event is still on its way.
func (s *memSource) commitUnannounced(t *testing.T, mutate func(*config.Doc) error) int64 {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.doc.Clone()
	if err := mutate(d); err != nil {
		t.Fatal(err)
	}
	d.Epoch++
	s.doc = d
	return d.Epoch
}

// announce sends the event of epoch to every subscriber.
func (s *memSource) announce(epoch int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		select {
		case <-ch: // a slow reader sees the latest epoch only
		default:
		}
		ch <- rados.Event{Epoch: epoch}
	}
}

func addClient(n int) func(*config.Doc) error {
	return func(d *config.Doc) error {
		c, err := d.AddClient(targetIQN, fmt.Sprintf("iqn.1994-05.com.example:burst-%d", n), time.Now())
		if err != nil {
			return err
		}
		c.Auth = config.Auth{Username: "burstuser", Password: "Burst-Secret-12"}
		return nil
	}
}

// driverFixture is a restored gateway on an emulated configfs, a driver
// over a memSource, and its passes.
type driverFixture struct {
	*fixture
	rec    *Reconciler
	src    *memSource
	drv    *Driver
	passes chan Pass
	cancel context.CancelFunc
	done   chan struct{}
}

func newDriverFixture(t *testing.T, opts DriverOptions, recOpts ...func(*Options)) *driverFixture {
	t.Helper()
	fx := newFixture(t)
	o := fx.options(gw1, addr1)
	for _, f := range recOpts {
		f(&o)
	}
	dx := &driverFixture{fixture: fx, rec: New(o), passes: make(chan Pass, 100)}
	dx.src = &memSource{doc: fx.doc(lio.BackstoreUserRBD), subscribed: make(chan struct{})}
	opts.OnPass = func(p Pass) { dx.passes <- p }
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = time.Millisecond, 10*time.Millisecond
	}
	if opts.DriftCheck == 0 {
		opts.DriftCheck = time.Hour
	}
	dx.drv = NewDriver(dx.rec, dx.src, opts)
	doc, err := dx.drv.Restore(t.Context())
	if err != nil || dx.drv.Pending() {
		t.Fatalf("restore: %v (pending %v)", err, dx.drv.Pending())
	}
	fx.converged(doc, gw1, addr1)
	return dx
}

func (dx *driverFixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	dx.cancel, dx.done = cancel, make(chan struct{})
	go func() {
		defer close(dx.done)
		dx.drv.Run(ctx)
	}()
	dx.t.Cleanup(dx.stop)
}

func (dx *driverFixture) stop() {
	if dx.cancel != nil {
		dx.cancel()
		<-dx.done
		dx.cancel = nil
	}
}

// next waits for the driver's next pass.
func (dx *driverFixture) next() Pass {
	dx.t.Helper()
	select {
	case p := <-dx.passes:
		return p
	case <-time.After(time.Minute):
		dx.t.Fatal("no reconcile pass within a minute")
		return Pass{}
	}
}

// waitSubscribed returns once Run listens for events.
func (dx *driverFixture) waitSubscribed() {
	dx.t.Helper()
	select {
	case <-dx.src.subscribed:
	case <-time.After(time.Minute):
		dx.t.Fatal("Run never subscribed")
	}
}

func (dx *driverFixture) doc() *config.Doc {
	d, _ := dx.src.Load(dx.t.Context())
	return d
}

// TestDriverBurstReconcilesOnce: ten commits that land while the driver
// reads the document cost one reconcile, of the newest epoch, which reads
// back only what it changed; its leftover event does not reconcile again.
func TestDriverBurstReconcilesOnce(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{})
	before := dx.rec.Counters()
	first := true
	var last int64
	dx.src.onLoad = func() {
		if first {
			first = false
			for i := 1; i < 10; i++ {
				last = dx.src.commit(t, addClient(i))
			}
		}
	}
	dx.run()
	dx.waitSubscribed()
	dx.src.commit(t, addClient(0))
	p := dx.next()
	if p.Cause != CauseChange || p.Err != nil || p.Epoch != last {
		t.Fatalf("pass %+v, want a change to epoch %d", p, last)
	}
	dx.stop()
	after := dx.rec.Counters()
	if runs := after.Runs - before.Runs; runs != 1 {
		t.Errorf("%d reconciles for a burst of 10 epochs, want 1", runs)
	}
	if after.FullObserves != before.FullObserves {
		t.Errorf("the burst re-read the whole LIO tree")
	}
	dx.converged(dx.doc(), gw1, addr1)
}

// TestDriverRetryReobserves: an operation that fails (a file where the
// new client's ACL directory goes) makes the pass fail; the retry re-reads
// the whole tree and converges once the obstacle is gone.
func TestDriverRetryReobserves(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{})
	client := "iqn.1994-05.com.example:burst-1"
	obstacle := filepath.Join(dx.fs.Root(), "target/iscsi", targetIQN, "tpgt_1/acls", client)
	if err := os.WriteFile(obstacle, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := dx.rec.Counters()
	dx.run()
	dx.waitSubscribed()
	epoch := dx.src.commit(t, addClient(1))
	p := dx.next()
	if p.Cause != CauseChange || p.Err == nil || p.Epoch != epoch {
		t.Fatalf("first pass %+v, want a failed change", p)
	}
	if st := dx.rec.Status(); st.Converged || len(st.Problems) == 0 {
		t.Errorf("status after the failure %+v", st)
	}
	if err := os.Remove(obstacle); err != nil {
		t.Fatal(err)
	}
	for p = dx.next(); p.Err != nil; p = dx.next() {
		if p.Cause != CauseRetry {
			t.Fatalf("pass %+v, want retries", p)
		}
	}
	if p.Cause != CauseRetry || p.Epoch != epoch {
		t.Fatalf("pass %+v, want the retry of epoch %d", p, epoch)
	}
	dx.stop()
	c := dx.rec.Counters()
	if c.FullObserves-before.FullObserves != c.Runs-before.Runs-1 {
		t.Errorf("counters %+v -> %+v: every retry must re-read the whole tree, the first pass not", before, c)
	}
	dx.converged(dx.doc(), gw1, addr1)
	if !dx.rec.Status().Converged {
		t.Errorf("status %+v", dx.rec.Status())
	}
}

// soAttr is the path of an attribute of the fixture's storage object.
func (dx *driverFixture) soAttr(attr string) string {
	dx.t.Helper()
	st, err := lio.Observe(dx.fs)
	if err != nil || len(st.StorageObjects) != 1 {
		dx.t.Fatalf("observe: %v %+v", err, st.StorageObjects)
	}
	return filepath.Join(dx.fs.Root(), st.StorageObjects[0].Path, "attrib", attr)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDriverDriftCheckRepairs: a change made behind the daemon's back is
// not seen by the reconciles of new epochs (they trust what the reconciler
// remembers), and the periodic drift check finds and repairs it.
func TestDriverDriftCheckRepairs(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{DriftCheck: 20 * time.Millisecond})
	// an in-sync run: the reconciler now remembers the whole tree (Run,
	// since Reconcile skips the content it has just applied)
	if _, err := dx.rec.Run(t.Context(), dx.doc(), Mode{}); err != nil {
		t.Fatal(err)
	}
	attr := dx.soAttr("cmd_time_out")
	want := readFile(t, attr)
	if err := os.WriteFile(attr, []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A new epoch, reconciled as an API call does: the drifted value stays.
	dx.src.commit(t, addClient(1))
	if err := dx.rec.Reconcile(t.Context(), dx.doc()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, attr); got != "7" {
		t.Fatalf("a change reconcile re-read LIO: %s = %q", attr, got)
	}
	dx.run()
	p := dx.next()
	if p.Cause != CauseDrift || p.Err != nil {
		t.Fatalf("pass %+v, want a drift check", p)
	}
	dx.stop()
	if got := readFile(t, attr); got != want {
		t.Errorf("drift check left %s = %q, want %q", attr, got, want)
	}
	dx.converged(dx.doc(), gw1, addr1)
}

// TestDriverReloadRereadsEverything: a reload re-reads the whole LIO tree
// and every image size: a change behind the daemon's back is repaired and
// a resized image reaches dev_size.
func TestDriverReloadRereadsEverything(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{})
	attr := dx.soAttr("cmd_time_out")
	want := readFile(t, attr)
	if err := os.WriteFile(attr, []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	dx.images.resize(dx.disk, 2*imageSize)
	reads, before := dx.images.readCount(), dx.rec.Counters()
	done := dx.drv.Reload()
	select {
	case <-done:
		t.Fatal("a reload answered before its pass ran")
	default:
	}
	dx.run()
	p := dx.next()
	if p.Cause != CauseReload || p.Err != nil {
		t.Fatalf("pass %+v, want a reload", p)
	}
	<-done // closed once the reload's pass is over (the daemon's READY=1 after RELOADING=1)
	dx.stop()
	if got := readFile(t, attr); got != want {
		t.Errorf("reload left %s = %q, want %q", attr, got, want)
	}
	if c := dx.rec.Counters(); c.FullObserves != before.FullObserves+1 {
		t.Errorf("counters %+v -> %+v, want one full observe", before, c)
	}
	if dx.images.readCount() == reads {
		t.Error("reload did not read the image size again")
	}
	st, err := lio.Observe(dx.fs)
	if err != nil || st.StorageObjects[0].Size != 2*imageSize {
		t.Errorf("dev_size after reload: %v %+v", err, st.StorageObjects)
	}
}

// TestDriverLateEventKeepsPreview: a coordinator's internal call applies its
// change (a preview made from the current epoch) before the config watch has
// handled that epoch's event. The late event must not undo the preview, and
// the commit that follows costs no reconcile.
func TestDriverLateEventKeepsPreview(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{})
	var once sync.Once
	var previewErr error
	dx.src.onLoad = func() {
		once.Do(func() {
			dx.src.mu.Lock()
			preview := dx.src.doc.Clone()
			dx.src.mu.Unlock()
			if previewErr = addClient(2)(preview); previewErr == nil {
				previewErr = dx.rec.Reconcile(t.Context(), preview)
			}
		})
	}
	loaded := make(chan int64, 1)
	var loadOnce sync.Once
	dx.src.afterLoad = func(d *config.Doc) { loadOnce.Do(func() { loaded <- d.Epoch }) }
	dx.run()
	dx.waitSubscribed()
	before := dx.rec.Counters()
	epoch := dx.src.commit(t, addClient(1)) // its event is handled after the preview
	if got := <-loaded; got != epoch {
		t.Fatalf("the driver loaded epoch %d, want %d", got, epoch)
	}
	dx.src.commit(t, addClient(2)) // the preview's commit
	last := dx.src.commit(t, addClient(3))
	p := dx.next()
	if previewErr != nil {
		t.Fatal(previewErr)
	}
	if p.Cause != CauseChange || p.Err != nil || p.Epoch != last {
		t.Fatalf("pass %+v, want only the change to epoch %d", p, last)
	}
	dx.stop()
	if runs := dx.rec.Counters().Runs - before.Runs; runs != 2 {
		t.Errorf("%d reconciles, want 2 (the preview and the last change)", runs)
	}
	dx.converged(dx.doc(), gw1, addr1)
}

// TestDriverDriftCheckKeepsFreshPreview: a change applied before its commit
// (a coordinator's preview) survives the drift check that comes within one
// interval of it (its commit is on the way), and is undone by the next one
// (its coordinator failed before committing).
func TestDriverDriftCheckKeepsFreshPreview(t *testing.T) {
	ticks := make(chan time.Time)
	var clock atomic.Int64 // ns since start, moved by the test only
	start := time.Now()
	dx := newDriverFixture(t, DriverOptions{DriftCheck: time.Minute, DriftTicks: ticks},
		func(o *Options) { o.Now = func() time.Time { return start.Add(time.Duration(clock.Load())) } })
	dx.run()
	preview := dx.doc().Clone()
	if err := addClient(1)(preview); err != nil {
		t.Fatal(err)
	}
	if err := dx.rec.Reconcile(t.Context(), preview); err != nil {
		t.Fatal(err)
	}
	// younger than one interval: left alone
	clock.Add(int64(59 * time.Second))
	ticks <- time.Now()
	if p := dx.next(); p.Cause != CauseDrift || p.Err != nil {
		t.Fatalf("pass %+v, want a drift check", p)
	}
	dx.converged(preview, gw1, addr1)
	// older: its commit is not coming, the committed document is put back
	clock.Add(int64(2 * time.Second))
	ticks <- time.Now()
	if p := dx.next(); p.Cause != CauseDrift || p.Err != nil {
		t.Fatalf("pass %+v, want a drift check", p)
	}
	dx.stop()
	dx.converged(dx.doc(), gw1, addr1)
}

// TestDriverDriftCheckLeavesAChangeInFlight: a drift check that comes
// between a commit and its event (or its coordinator's call here) leaves the
// change to them: repairing it as drift would apply it twice. A commit that
// a second check still finds unapplied lost its event, and that check
// applies it.
func TestDriverDriftCheckLeavesAChangeInFlight(t *testing.T) {
	ticks := make(chan time.Time)
	dx := newDriverFixture(t, DriverOptions{DriftTicks: ticks})
	dx.run()
	dx.waitSubscribed()
	before := dx.rec.Counters()
	epoch := dx.src.commitUnannounced(t, addClient(1))
	ticks <- time.Now()
	if p := dx.next(); p.Cause != CauseDrift || p.Err != nil || p.Epoch != epoch {
		t.Fatalf("pass %+v, want a drift check of epoch %d", p, epoch)
	}
	if runs := dx.rec.Counters().Runs - before.Runs; runs != 0 {
		t.Fatalf("the drift check made %d reconciles of a change in flight, want 0", runs)
	}
	if dx.rec.Converged(dx.doc()) {
		t.Fatal("LIO converged to a change nobody applied")
	}
	// the coordinator's call applies it, then its event arrives
	if err := dx.rec.Reconcile(t.Context(), dx.doc()); err != nil {
		t.Fatal(err)
	}
	dx.src.announce(epoch)
	ticks <- time.Now() // handled before or after the event: neither reconciles
	if p := dx.next(); p.Cause != CauseDrift || p.Err != nil {
		t.Fatalf("pass %+v, want a drift check", p)
	}
	if runs := dx.rec.Counters().Runs - before.Runs; runs != 1 {
		t.Fatalf("%d reconciles, want 1 (the coordinator's call)", runs)
	}

	// a commit whose event is lost: the second check applies it
	lost := dx.src.commitUnannounced(t, addClient(2))
	ticks <- time.Now()
	if p := dx.next(); p.Cause != CauseDrift || p.Err != nil || p.Epoch != lost {
		t.Fatalf("pass %+v, want a deferred drift check of epoch %d", p, lost)
	}
	ticks <- time.Now()
	if p := dx.next(); p.Cause != CauseDrift || p.Err != nil || p.Epoch != lost {
		t.Fatalf("pass %+v, want the drift check that applies epoch %d", p, lost)
	}
	dx.stop()
	if runs := dx.rec.Counters().Runs - before.Runs; runs != 2 {
		t.Errorf("%d reconciles, want 2", runs)
	}
	dx.converged(dx.doc(), gw1, addr1)
}

// TestDriftCheckReadsWithoutHoldingReconciles: a drift check that finds LIO
// as the reconciler keeps it re-reads nothing under the reconciler's lock
// and runs no reconcile; a reconcile may apply while it reads (here one
// does, from inside the read), and then the check does not trust its read
// and re-reads the tree as before.
func TestDriftCheckReadsWithoutHoldingReconciles(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{})
	rec := dx.rec
	if _, err := rec.Run(t.Context(), dx.doc(), Mode{}); err != nil {
		t.Fatal(err)
	}
	before := rec.Counters()
	if err := rec.CheckDrift(t.Context(), dx.doc()); err != nil {
		t.Fatal(err)
	}
	after := rec.Counters()
	if after.DriftReads != before.DriftReads+1 || after.FullObserves != before.FullObserves || after.Runs != before.Runs {
		t.Fatalf("drift check of a converged LIO: counters %+v → %+v, want one drift read and no run", before, after)
	}

	// an API change applied during the check's read
	dx.src.commit(t, addClient(1))
	changed := dx.doc()
	rec.afterDriftRead = func() {
		rec.afterDriftRead = nil
		if err := rec.Reconcile(t.Context(), changed); err != nil {
			t.Error(err)
		}
	}
	before = rec.Counters()
	if err := rec.CheckDrift(t.Context(), changed); err != nil {
		t.Fatal(err)
	}
	after = rec.Counters()
	if after.DriftReads != before.DriftReads || after.FullObserves != before.FullObserves+1 {
		t.Fatalf("drift check with an apply during its read: counters %+v → %+v, want a full re-read", before, after)
	}
	dx.converged(changed, gw1, addr1)

	// drift behind the daemon's back: found and repaired
	attr := dx.soAttr("cmd_time_out")
	want := readFile(t, attr)
	if err := os.WriteFile(attr, []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	before = rec.Counters()
	if err := rec.CheckDrift(t.Context(), changed); err != nil {
		t.Fatal(err)
	}
	if after = rec.Counters(); after.DriftReads != before.DriftReads || after.FullObserves != before.FullObserves+1 {
		t.Fatalf("drift check of a drifted LIO: counters %+v → %+v, want a full re-read", before, after)
	}
	if got := readFile(t, attr); got != want {
		t.Errorf("drift check left %s = %q, want %q", attr, got, want)
	}
}

// TestStaleDocumentNeverUndoesANewerApply: a drift check or a config event
// whose document was read before an API call committed and applied a newer
// epoch must not take LIO back to the older document (the API's new client
// and LUN would vanish from LIO until the next event). SIGHUP's Resync
// follows whatever the object holds, also a lower epoch.
func TestStaleDocumentNeverUndoesANewerApply(t *testing.T) {
	dx := newDriverFixture(t, DriverOptions{})
	rec := dx.rec
	old := dx.doc()
	if err := rec.Reconcile(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	dx.src.commit(t, addClient(1))
	newer := dx.doc()
	// the API applies the newer epoch while the check reads the tree
	rec.afterDriftRead = func() {
		rec.afterDriftRead = nil
		if err := rec.Reconcile(t.Context(), newer); err != nil {
			t.Error(err)
		}
	}
	if err := rec.CheckDrift(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	dx.converged(newer, gw1, addr1)
	if !rec.Converged(newer) {
		t.Error("after the stale drift check the reconciler no longer counts LIO converged to the newer epoch")
	}
	// a late event's reconcile of the older document
	if err := rec.Reconcile(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	dx.converged(newer, gw1, addr1)

	// an operator's reload follows the object even to a lower epoch
	rec.Resync()
	if err := rec.Reconcile(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	dx.converged(old, gw1, addr1)
}
