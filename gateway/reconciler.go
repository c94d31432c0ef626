package gateway

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

// Mode says what a reconcile does.
type Mode struct {
	// Teardown removes every LIO object the configuration (or an earlier
	// reconcile of this Reconciler) gave this gateway, as the daemon does on
	// SIGTERM, and unmaps its block images; otherwise LIO converges on the
	// configuration.
	Teardown bool
	// DryRun plans only: nothing in LIO is changed and no image is mapped.
	DryRun bool
}

// BlockMapper maps RBD images to local block devices for the block
// backstore; *rbd.Mapper implements it.
type BlockMapper interface {
	Map(ctx context.Context, pool, image string) (string, error)
	Device(ctx context.Context, pool, image string) (string, error)
	Unmap(ctx context.Context, pool, image string) error
}

var _ BlockMapper = (*rbd.Mapper)(nil)

// Options configure a Reconciler.
type Options struct {
	// FS is the configfs (or emulated configfs) to converge.
	FS lio.FS
	// Settings are the iscsi-gateway.cfg values (nil: the defaults).
	Settings *settings.Settings
	// Identity names this gateway and lists the addresses its portals may
	// use.
	Identity host.Identity
	// Conn is the daemon's RADOS connection: image sizes are read through it,
	// and the block mapper takes its credentials from it.
	Conn *rados.Conn
	// CephConf is the ceph.conf the connection was made with, handed to
	// rbd-nbd.
	CephConf string
	// Mapper maps block images. Nil means an rbd.Mapper made on first use
	// from Conn when FS is the real configfs; on an emulated configfs
	// nothing is mapped and the device path is the one udev would link.
	Mapper BlockMapper
	// Size overrides how image sizes are read (rbd.Size on Conn when nil);
	// like rbd.Size it reports a missing image or pool with rbd's errors.
	Size func(pool, image string) (int64, error)
	// ProcRoot is where /proc is mounted, for the tcmu-runner check ("/proc"
	// when empty).
	ProcRoot string
	Logger   *slog.Logger
	// Now is the clock a preview's age is read on (time.Now when nil), so
	// a test can age one without waiting.
	Now func() time.Time
	// VerifyReuse makes the reconcile CheckThen returns hash its document
	// again and refuse one changed since the check, which the reuse of
	// the check's digest would otherwise miss, and every digest through
	// the memo be checked against a full one (a panic when they differ:
	// an object changed in place after a fork froze it): tests set it.
	VerifyReuse bool
}

// Reconciler converges this gateway's LIO on configuration documents. Its
// methods may be called from several goroutines: reconciles run one at a
// time.
type Reconciler struct {
	opts Options
	log  *slog.Logger

	mu sync.Mutex
	// managed accumulates what documents this gateway was a member of gave
	// it, so a target or disk that a later document no longer names still
	// has its leftovers removed (a DELETE, or this gateway leaving).
	managedTargets, managedSOs map[string]bool
	// blockImages are the "pool/image" of every block disk seen; an image
	// the desired state no longer uses is unmapped after LIO let go of it.
	blockImages map[string]bool
	mapper      BlockMapper
	// sizes caches image sizes between reconciles: reading one costs an
	// image open (~6 ms), so re-reading every disk on every config change
	// made each API call linear in the disk count. A size changes only
	// through a resize or a snapshot rollback; the API's resize paths call
	// ForgetSizes, and a disk that leaves the desired state (rollback
	// deactivates it first) drops out of the cache. sizeUsed is what the
	// current run read, and runSets the sizes of the memoized builds it
	// reused, by reference: marking each of thousands costs more than
	// the rest of a small change.
	sizes    map[string]int64
	sizeUsed map[string]bool
	runSets  []*sizeUses
	// sizeDrops counts the runs that dropped sizes from the cache.
	sizeDrops uint64
	// runHeld (under mu) are the sizes the spec memo reused for the
	// current run's state, which count as used.
	runHeld *sizeSet
	// A run keeps only the sizes it used or held (runLocked), and at
	// thousands of disks walking them all costs more than the change. After
	// a run every cached size was used or held by it: a size the next run
	// may drop was written since (sizeDirty), used by the last run
	// (lastUsed), in a set the last run reused and this one does not
	// (lastSets), or left or changed in what is held (sizeSet.changedSince
	// prunedHeld, the last run's runHeld). prunedOK (under mu): the last
	// run pruned, so this holds. lastDirty, what was written during the
	// last run, tells which sizes of such a set are still those its build
	// held (see prunable).
	sizeDirty  map[string]bool
	lastUsed   map[string]bool
	lastSets   []*sizeUses
	lastDirty  map[string]bool
	prunedHeld *sizeSet
	prunedOK   bool
	// verifyUsed (Options.VerifyReuse) is sizeUsed as it would be with
	// every reused size marked one by one, for the prune to be checked
	// against.
	verifyUsed map[string]bool
	// cacheMu guards sizes, sizeUsed, runSets, sizeDirty, lastUsed,
	// lastSets, lastDirty, verifyUsed and mapper,
	// which Check uses too: it runs inside an API commit, which must not
	// wait for a reconcile.
	cacheMu sync.Mutex
	// applied is the contentDigest of the last document a reconcile
	// converged LIO to (valid with hasApplied), so that the config watch
	// and the API's calls skip what one of them has just applied.
	applied    digest
	hasApplied bool
	// appliedGen is forgets as it was when applied was converged: a
	// ForgetSizes since (a resize, a reload) makes the same document
	// worth reconciling again.
	appliedGen uint64
	// appliedEpoch is the epoch of the document applied was converged to;
	// for a preview (a change applied before its commit) the epoch it was
	// made from.
	appliedEpoch int64
	// appliedAt is when LIO was last converged to applied.
	appliedAt time.Time
	forgets   atomic.Uint64
	// runs counts the reconciles that observed and planned LIO for a
	// document (drift checks aside).
	runs int64
	// status is what the last Reconcile left undone; smu guards it, so the
	// API can read it while a reconcile runs.
	smu    sync.Mutex
	status Status

	// model is what LIO holds as far as this Reconciler knows: it is the
	// only writer of the objects it manages, so after the first Observe it
	// plans against model and reads back only what it changed. mfs reads
	// through it. resync (under mu) makes the next run forget it and
	// re-read the whole tree: at start-up, after a failed operation, on
	// Resync (SIGHUP, the drift check) and after a teardown from it failed.
	model  *lio.Model
	mfs    lio.FS
	resync bool
	// observed is what LIO holds after the last run, read in full once
	// and then kept up to date by reading again only what each apply
	// touched (lio.Refresh), or nil: the next run reads the tree through
	// model. It is dropped with model on resync and by a teardown.
	observed *lio.State
	// converged is the desired state the last run applied in full, with
	// nothing held, or nil: the next run plans only what differs from it
	// (lio.NewPlanSince) unless it re-reads the whole tree.
	converged *lio.State
	// lioWrites (under mu) counts the applies to LIO: a drift check that
	// read the tree without mu knows from it that nothing was written
	// while it read.
	lioWrites uint64
	// afterDriftRead, for tests, runs between a drift check's read and its
	// comparison.
	afterDriftRead func()
	// counters, under smu
	counters Counters

	// built memoizes desired states by document content (builtKey): the
	// state of one document is built once, whether for an API commit's
	// check or for the reconciles that follow. builds is the generation
	// of what a build reads besides the document, bumped by ForgetSizes,
	// NoteSize and Resync. builtMu guards built; memoized states are
	// shared and never modified.
	builtMu sync.Mutex
	built   []builtState
	builds  atomic.Uint64
	// specs makes a member's lio.Spec from what it made for the documents
	// before (specMemo); specGen is the generation of what it reads besides
	// the document (cached sizes, the CHAP key): bumped where builds is,
	// except when a size is first cached, which changes none it holds.
	specs   specMemo
	specGen atomic.Uint64
	// exporters is blockExporters of the documents desired builds.
	exporters exportersMemo
	// specMu holds a spec from specs until builder is done with it: specs
	// patches the maps of a spec into the one after next (mapPair), so a
	// check and a reconcile must not interleave their specs and builds.
	specMu sync.Mutex
	// builder makes a document's desired state from the pieces it made
	// for the documents before (lio.Builder): a change rebuilds what it
	// changed.
	builder lio.Builder
	// names remembers the names of documents found valid (withValidNames).
	names validNames
	// valid (with hasValid, under validMu) is the contentDigest of the
	// last document whose names were all valid.
	validMu  sync.Mutex
	valid    digest
	hasValid bool
	// recorded (under mu) is what withRecorded knows of the state whose
	// names the last run recorded.
	recorded recorded
	// runDoc and runDigest (under mu) are the document reconcile is
	// running with and its contentDigest.
	runDoc    *config.Doc
	runDigest digest
	// digests remembers what digesting the documents before hashed
	// (digestMemo): a change costs the digest of what it changed.
	digests *digestMemo
	// newest (under mu) is the highest epoch a reconcile ran with. A
	// document older than that was loaded before a newer change was
	// applied (the API's commit and apply can overtake the config watch's
	// or the drift check's read), and reconciling it would undo that
	// change in LIO until the next event put it back: removing LUNs a
	// client is using, re-creating storage objects. Resync forgets it, so
	// that SIGHUP follows a config object re-created with lower epochs.
	newest int64
}

// Counters count what a Reconciler did since it was made.
type Counters struct {
	// Runs counts reconciles (Run, Reconcile, Teardown), dry runs too.
	Runs int64
	// FullObserves counts the runs that re-read the whole LIO tree.
	FullObserves int64
	// DriftReads counts the drift checks that found LIO as kept from a
	// read made without holding up the reconciles.
	DriftReads int64
}

// Problem is one thing a reconcile could not do: an object of the
// configuration left as LIO has it, or a failed LIO operation. It never
// carries a secret.
type Problem struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// Status is the outcome of the last Reconcile of the daemon.
type Status struct {
	Epoch int64
	// Converged: LIO holds everything the configuration gives this gateway.
	Converged bool
	Problems  []Problem
	// Runs counts the reconciles of a document since start (Reconcile;
	// the periodic drift checks are not counted).
	Runs int64
}

// New returns a Reconciler.
func New(opts Options) *Reconciler {
	if opts.Settings == nil {
		opts.Settings = settings.Defaults()
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := lio.NewModel()
	r := &Reconciler{
		opts:           opts,
		log:            opts.Logger,
		managedTargets: map[string]bool{},
		managedSOs:     map[string]bool{},
		blockImages:    map[string]bool{},
		mapper:         opts.Mapper,
		sizes:          map[string]int64{},
		model:          m,
		mfs:            opts.FS.WithModel(m),
		resync:         true,
		digests:        newDigestMemo(),
	}
	r.specs.verify, r.exporters.verify = opts.VerifyReuse, opts.VerifyReuse
	r.builder.VerifyHints = opts.VerifyReuse
	return r
}

// contentDigest is the contentDigest of doc, through r's digestMemo. With
// Options.VerifyReuse the document is hashed in full as well, and a
// difference, which only an object changed in place after a fork froze it
// can make, panics: a test must not pass over a broken copy-on-write
// contract.
func (r *Reconciler) contentDigest(doc *config.Doc) digest {
	d := r.digests.digest(doc)
	if r.opts.VerifyReuse {
		if full := contentDigest(doc); full != d {
			panic("gateway: a document's memoized digest differs from its full one: an object was changed in place after a fork froze it")
		}
	}
	return d
}

// Resync makes the next reconcile re-read the whole LIO tree instead of
// trusting what this Reconciler remembers: a change made behind its back
// is then found and repaired (SIGHUP, the periodic drift check).
func (r *Reconciler) Resync() {
	r.forgetBuilt()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resync = true
	r.newest = 0
}

// Counters reports what this Reconciler did so far.
func (r *Reconciler) Counters() Counters {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.counters
}

// FS is the configfs this Reconciler converges.
func (r *Reconciler) FS() lio.FS { return r.opts.FS }

// Report is what one reconcile planned and did.
type Report struct {
	Gateway  string
	Member   bool
	Epoch    int64
	Emulated bool
	Mode     Mode
	// Plan is the diff from the observed to the desired state, without the
	// operations on held objects. When BuildErr is set it is incomplete, and
	// it was not applied.
	Plan   lio.Plan
	InSync bool
	// FullObserve: the whole LIO tree was read, not only what this
	// Reconciler changed since.
	FullObserve bool
	// Incremental: only what changed since the last converged desired
	// state was planned (lio.NewPlanSince).
	Incremental bool
	// ObjectErrs are the objects whose desired state could not be built:
	// LIO keeps them as they are (Held lists the operations left out) while
	// the rest converges.
	ObjectErrs []*lio.ObjectError
	Held       []lio.Op
	// Applied is nil when nothing was attempted.
	Applied *lio.Result
	// BuildErr: the desired state could not be built at all (nothing
	// applied).
	BuildErr error
	// ApplyErr: some operations of the plan failed.
	ApplyErr error
	// Unmapped lists the block images unmapped after the apply; UnmapErr
	// says which could not be (LIO itself converged).
	Unmapped []string
	UnmapErr error
	// Took says how long each stage of the run took.
	Took Stages
}

// Stages are the durations of a run's stages: building the desired state
// (image sizes included), reading LIO, planning, applying, unmapping.
type Stages struct {
	Build, Observe, Plan, Apply, Unmap time.Duration
}

// Run reconciles LIO with doc in mode. An object whose desired state cannot
// be built (a name that cannot be a configfs path, an image whose size
// cannot be read, a password that does not decrypt, ...) is left as LIO has
// it and the rest converges. The error joins every problem of the run; the
// Report says which stage each came from.
func (r *Reconciler) Run(ctx context.Context, doc *config.Doc, mode Mode) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	gen := r.forgets.Load()
	var content digest
	if doc != nil {
		// the run's name check and build key on the same digest
		content = r.contentDigest(doc)
		r.runDoc, r.runDigest = doc, content
	}
	rep, err := r.runLocked(ctx, doc, mode)
	r.runDoc = nil
	if !mode.DryRun {
		// LIO now holds doc, or something half-way: not what a Reconcile
		// last converged it to, unless that was doc, and a Reconcile of
		// that document must not be skipped
		r.hasApplied = false
		if err == nil && !mode.Teardown && doc != nil {
			r.hasApplied, r.applied, r.appliedGen, r.appliedEpoch, r.appliedAt = true, content, gen, doc.Epoch, r.now()
		}
	}
	return rep, err
}

// runLocked is Run with r.mu held.
func (r *Reconciler) runLocked(ctx context.Context, doc *config.Doc, mode Mode) (Report, error) {
	r.cacheMu.Lock()
	r.sizeUsed, r.runSets = map[string]bool{}, nil
	if r.opts.VerifyReuse {
		r.verifyUsed = map[string]bool{}
	}
	r.cacheMu.Unlock()
	r.runHeld = nil
	defer r.specs.pruneSizes(r.pruneSizes)
	return r.run(ctx, doc, mode)
}

// pruneSizes drops from the size cache what the run neither used nor held,
// and returns their ids; it is the prune of runLocked's run, under r.mu.
func (r *Reconciler) pruneSizes() (gone []string) {
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	keep := func(id string, n int64) bool {
		// what the spec memo reused for this run was not asked for
		h, ok := r.runHeld.get(id)
		return r.sizeUsed[id] || ok && h == n || inSizeUses(r.runSets, id)
	}
	var before map[string]int64
	if r.opts.VerifyReuse {
		before = maps.Clone(r.sizes)
	}
	held, known := r.runHeld.changedSince(r.prunedHeld)
	if known && r.prunedOK {
		for _, ids := range r.prunable(held) {
			for id := range ids {
				if n, ok := r.sizes[id]; ok && !keep(id, n) {
					delete(r.sizes, id)
					gone = append(gone, id)
				}
			}
		}
	} else {
		for id, n := range r.sizes {
			if !keep(id, n) {
				delete(r.sizes, id)
				gone = append(gone, id)
			}
		}
	}
	if r.opts.VerifyReuse {
		r.verifyPrune(before)
	}
	if len(gone) > 0 {
		r.sizeDrops++
	}
	r.lastUsed, r.lastSets, r.lastDirty = r.sizeUsed, r.runSets, r.sizeDirty
	r.sizeUsed, r.runSets, r.sizeDirty, r.verifyUsed = nil, nil, nil, nil
	r.prunedHeld, r.prunedOK = r.runHeld, true
	return gone
}

// prunable lists the cached sizes this run's prune may drop when the last
// run pruned (every size left was used or held by it) and held are the
// ids whose size may differ between its runHeld and this run's: what was
// written since, what the last run used, and the sizes of a set the last
// run reused and this one does not. Such a set whose build held the last
// run's runHeld needs only its rest walked: its other sizes were held by
// that run at the values they had when it reused them, and what changed
// since then was written (lastDirty, sizeDirty), or left or changed in
// what is held (held).
func (r *Reconciler) prunable(held []string) []iter.Seq[string] {
	out := []iter.Seq[string]{maps.Keys(r.sizeDirty), maps.Keys(r.lastUsed), slices.Values(held)}
	walkedDirty := false
	for _, s := range r.lastSets {
		if slices.Contains(r.runSets, s) {
			continue // used by both runs, and never changed
		}
		if s.held == r.prunedHeld {
			if !walkedDirty {
				out = append(out, maps.Keys(r.lastDirty))
				walkedDirty = true
			}
			if s.rest != nil {
				out = append(out, maps.Keys(s.rest.n))
			}
			continue
		}
		out = append(out, maps.Keys(s.n))
	}
	return out
}

// verifyPrune panics unless the prune kept exactly the sizes of before (the
// cache before it) that the run used or held, checked one by one against
// verifyUsed: a cached size that outlived its run, or a needed one
// dropped, would go unnoticed otherwise.
func (r *Reconciler) verifyPrune(before map[string]int64) {
	for id, n := range before {
		h, ok := r.runHeld.get(id)
		want := r.verifyUsed[id] || ok && h == n
		if _, kept := r.sizes[id]; kept != want {
			if kept {
				panic(fmt.Sprintf("gateway: the size of %s outlived a run that neither used nor held it", id))
			}
			panic(fmt.Sprintf("gateway: the size of %s was dropped by a run that used or held it", id))
		}
	}
}

// useSizes records that the run in progress (if any) reused s; r.cacheMu
// is held.
func (r *Reconciler) useSizes(s *sizeUses) {
	if r.sizeUsed == nil || s == nil {
		return
	}
	if r.verifyUsed != nil {
		for id := range s.n {
			r.verifyUsed[id] = true
		}
	}
	if !slices.Contains(r.runSets, s) {
		r.runSets = append(r.runSets, s)
	}
}

// markUsed records that the run in progress (if any) used the size of id;
// r.cacheMu is held.
func (r *Reconciler) markUsed(id string) {
	if r.sizeUsed == nil {
		return
	}
	r.sizeUsed[id] = true
	if r.verifyUsed != nil {
		r.verifyUsed[id] = true
	}
}

// inSizeUses reports whether one of sets holds id.
func inSizeUses(sets []*sizeUses, id string) bool {
	for _, s := range sets {
		if _, ok := s.n[id]; ok {
			return true
		}
	}
	return false
}

// Check builds doc into this gateway's desired LIO state without touching
// LIO or mapping anything, and returns the problems, one per object (see
// lio.SplitObjectErrors): what an API commit checks first, so that a change
// LIO cannot take is not committed. It does not wait for a reconcile in
// progress.
func (r *Reconciler) Check(ctx context.Context, doc *config.Doc) error {
	if doc == nil {
		return errors.New("gateway: no configuration document")
	}
	return r.check(ctx, doc, r.contentDigest(doc))
}

// check is Check of doc, whose contentDigest is content.
func (r *Reconciler) check(ctx context.Context, doc *config.Doc, content digest) error {
	valid, nameErrs := r.validNames(doc, &content)
	var known *digest
	if valid == doc {
		known = &content
	}
	_, err := r.desired(ctx, valid, Mode{DryRun: true}, valid.Gateways[r.opts.Identity.Name] != nil, false, known)
	return errors.Join(joinObjectErrors(nameErrs), err)
}

// CheckThen is Check, and returns the reconcile of the same document that
// reuses what the check computed: its digest, which is also the key of the
// desired state the check built and memoized, so the reconcile that
// follows an API commit neither hashes the document again nor builds it.
//
// The contract: reconcile must be called with doc itself, changed since
// the check in nothing but its epoch and created/updated stamps (what a
// commit sets). Any other document is reconciled as Reconcile would. With
// Options.VerifyReuse the digest is computed again and a document changed
// behind the token is an error, not a silently stale reconcile.
func (r *Reconciler) CheckThen(ctx context.Context, doc *config.Doc) (reconcile func(context.Context, *config.Doc) error, err error) {
	if doc == nil {
		return nil, errors.New("gateway: no configuration document")
	}
	content := r.contentDigest(doc)
	err = r.check(ctx, doc, content)
	return func(ctx context.Context, d *config.Doc) error {
		if d != doc {
			return r.Reconcile(ctx, d)
		}
		if r.opts.VerifyReuse && contentDigest(d) != content {
			return errors.New("gateway: the document changed between its check and its reconcile")
		}
		return r.reconcileDigest(ctx, d, content, false)
	}, err
}

// ForgetSizes drops the cached sizes of the given "pool/image" disks (all of
// them when none are given), so the next reconcile reads them again: after a
// resize, or a SIGHUP that must pick up changes made behind the API's back.
func (r *Reconciler) ForgetSizes(ids ...string) {
	r.forgets.Add(1)
	r.forgetBuilt()
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if len(ids) == 0 {
		clear(r.sizes)
		return
	}
	for _, id := range ids {
		delete(r.sizes, id)
	}
}

// NoteSize caches the size of the "pool/image" disk id that the caller has
// just read or set (the API checks that a disk's image exists before
// mapping it, in the same image open), so that the build does not open
// the image again. It is dropped like any cached size: ForgetSizes, or a
// reconcile whose desired state does not use it.
func (r *Reconciler) NoteSize(id string, size int64) {
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if n, ok := r.sizes[id]; !ok {
		// the spec memo holds only cached sizes
		r.dropBuilt()
	} else if n != size {
		r.forgetBuilt()
	}
	r.cacheSize(id, size)
}

func (r *Reconciler) run(ctx context.Context, doc *config.Doc, mode Mode) (Report, error) {
	if doc == nil {
		return Report{}, errors.New("gateway: no configuration document")
	}
	name := r.opts.Identity.Name
	rep := Report{Gateway: name, Mode: mode, Epoch: doc.Epoch, Emulated: r.opts.FS.Emulated()}
	rep.Member = doc.Gateways[name] != nil

	// where a reconcile's time goes, at debug level (restore --json reports
	// the same stages)
	defer func() {
		r.log.Debug("reconcile timings", "epoch", rep.Epoch, "full_observe", rep.FullObserve, "ops", len(rep.Plan.Ops),
			"build", rep.Took.Build, "observe", rep.Took.Observe, "plan", rep.Took.Plan, "apply", rep.Took.Apply, "unmap", rep.Took.Unmap)
	}()
	var known *digest
	if doc == r.runDoc {
		known = &r.runDigest
	}
	// A name that cannot be a configfs path never reaches package lio.
	valid, nameErrs := r.validNames(doc, known)
	t := time.Now()
	if valid != doc {
		known = nil
	}
	desired, buildErr := r.desired(ctx, valid, mode, rep.Member, true, known)
	rep.Took.Build = time.Since(t)
	objErrs, other := lio.SplitObjectErrors(buildErr)
	objErrs = append(nameErrs, objErrs...)
	if mode.Teardown {
		if len(objErrs) > 0 || len(other) > 0 {
			// Teardown needs only names, which survive these errors.
			r.log.Warn("configuration problems (teardown goes on)", "err", errors.Join(joinObjectErrors(objErrs), errors.Join(other...)))
		}
		objErrs, other = nil, nil
	}
	full := r.resync
	if full {
		r.model.Forget()
	}
	r.smu.Lock()
	r.counters.Runs++
	if full {
		r.counters.FullObserves++
	}
	r.smu.Unlock()
	r.resync = false
	t = time.Now()
	var observed lio.State
	var err error
	switch {
	case r.observed != nil && !full && !mode.Teardown:
		// what the last run read, with what its apply touched read again
		observed = *r.observed
	case mode.Teardown:
		// a teardown needs names and links, not the values
		observed, err = lio.ObserveLayout(r.mfs)
	default:
		observed, err = lio.Observe(r.mfs)
	}
	r.observed = nil
	rep.Took.Observe = time.Since(t)
	if err != nil {
		r.resync = true
		return rep, fmt.Errorf("gateway: reading LIO: %w", err)
	}
	if !mode.Teardown {
		// valid until an apply changes LIO
		r.observed = &observed
	}
	rep.FullObserve = full
	t = time.Now()
	// LIO holds prev as long as nothing failed since it was applied and
	// nothing was held: only what changed from it is planned then.
	prev := r.converged
	r.converged = nil
	if prev != nil && !full && !mode.Teardown && len(objErrs) == 0 && len(other) == 0 {
		rep.Plan = lio.NewPlanSince(*prev, observed, desired)
		rep.Incremental = true
	} else {
		rep.Plan = lio.NewPlan(observed, desired)
	}
	rep.Took.Plan = time.Since(t)
	if len(objErrs) > 0 {
		rep.ObjectErrs = objErrs
		rep.Plan, rep.Held = rep.Plan.Without(observed, holdOf(doc, objErrs))
		for _, e := range objErrs {
			r.log.Error("cannot reconcile an object of the configuration; LIO keeps it as it is, the rest converges",
				"object", e.Object(), "err", e)
		}
	}
	rep.InSync = rep.Plan.Empty()
	heldErr := joinObjectErrors(objErrs)
	if len(other) > 0 {
		rep.BuildErr = errors.Join(other...)
		return rep, errors.Join(rep.BuildErr, heldErr)
	}
	if mode.DryRun {
		r.converged = prev
		return rep, heldErr
	}
	if !rep.Plan.Empty() {
		if n := rep.Plan.UserBackstoreEnables(); n > 0 && !r.opts.FS.Emulated() {
			if err := lio.CheckTCMURunner(r.opts.ProcRoot, n); err != nil {
				return rep, err
			}
		}
		r.log.Info("applying LIO plan", "epoch", rep.Epoch, "ops", len(rep.Plan.Ops))
		t = time.Now()
		r.observed = nil
		r.lioWrites++
		res, applyErr := lio.Apply(ctx, r.mfs, rep.Plan)
		rep.Took.Apply = time.Since(t)
		rep.Applied = &res
		if applyErr != nil {
			// what failed may have half happened: read it all again
			r.resync = true
			rep.ApplyErr = applyErr
			return rep, errors.Join(applyErr, heldErr)
		}
		if !mode.Teardown {
			t = time.Now()
			// observed is this run's own (read here, or the last run's
			// result): the lists it shares with nobody are edited in place
			after, err := lio.RefreshOwned(r.mfs, observed, rep.Plan)
			rep.Took.Observe += time.Since(t)
			if err != nil {
				r.resync = true
				return rep, errors.Join(fmt.Errorf("gateway: reading back LIO: %w", err), heldErr)
			}
			r.observed = &after
		}
	}
	// a held disk keeps its mapping as LIO keeps its storage object
	held := map[string]bool{}
	for _, e := range objErrs {
		if d := doc.Disks[e.Disk]; d != nil && e.Target == "" {
			held[config.DiskID(d.Pool, d.Image)] = true
		}
	}
	if len(objErrs) == 0 && !mode.Teardown {
		r.converged = &desired
	}
	t = time.Now()
	unmapped, err := r.unmapUnused(ctx, desired, held)
	rep.Took.Unmap = time.Since(t)
	rep.Unmapped, rep.UnmapErr = unmapped, err
	return rep, errors.Join(err, heldErr)
}

// desired is the LIO state this gateway should have in mode; with record it
// also records the names it manages. content is doc's contentDigest when
// the caller has it (nil: computed when needed).
func (r *Reconciler) desired(ctx context.Context, doc *config.Doc, mode Mode, member, record bool, content *digest) (lio.State, error) {
	exporters := r.exporters.get(doc)
	if member && record {
		for img := range exporters {
			r.blockImages[img] = true
		}
	}
	opts := FromConfigOptions{
		// non-nil even when empty: no address at all must fail every target,
		// not fall back to trusting portal_ip_addresses
		LocalAddrs: append([]netip.Addr{}, r.opts.Identity.Addrs...),
		Logger:     r.log,
		DevicePath: func(pool, image string) (string, error) {
			return r.devicePath(ctx, mode, exporters, pool, image)
		},
	}
	if !mode.Teardown && member {
		return r.memoDesired(ctx, doc, mode, record, exporters, opts, content)
	}
	// the sizes it holds would outlive a teardown, which drops them all
	r.specs.reset()
	if !mode.Teardown {
		opts.Size = func(pool, image string) (int64, error) {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			return r.size(pool, image)
		}
	}
	// names of leftovers to remove: only a reconcile (under r.mu) uses them
	if record {
		for iqn := range r.managedTargets {
			// A gateway deleted from the config (DELETE /api/gateway) leaves
			// the target in place for the others: what it built here must go
			// too.
			if doc.Targets[iqn] == nil || !member {
				opts.ManagedTargets = append(opts.ManagedTargets, iqn)
			}
		}
		for so := range r.managedSOs {
			opts.ManagedStorageObjects = append(opts.ManagedStorageObjects, so)
		}
	}
	slices.Sort(opts.ManagedTargets)
	slices.Sort(opts.ManagedStorageObjects)

	spec, specErr := SpecFromConfig(doc, r.opts.Identity.Name, r.opts.Settings, opts)
	st, buildErr := lio.Build(spec)
	if member && record {
		names := st.ForTeardown().Managed
		for _, iqn := range names.Targets {
			r.managedTargets[iqn] = true
		}
		for _, so := range names.StorageObjects {
			r.managedSOs[so] = true
		}
	}
	if mode.Teardown {
		st = st.ForTeardown()
	}
	return st, errors.Join(specErr, buildErr)
}

// memoDesired is desired for a member gateway outside a teardown: the
// state is built without the names of leftovers and memoized by the
// document's content (see built), and those names are added to it after.
func (r *Reconciler) memoDesired(ctx context.Context, doc *config.Doc, mode Mode, record bool, exporters map[string]int, opts FromConfigOptions, known *digest) (lio.State, error) {
	var content digest
	if known != nil {
		content = *known
	} else {
		content = r.contentDigest(doc)
	}
	key := builtKey{content: content, gen: r.builds.Load(), dry: mode.DryRun && len(exporters) > 0}
	st, uses, held, drops, ok := r.lookupBuilt(key)
	if ok {
		// the sizes it was built with must still be the cached ones: a
		// size dropped from the cache (its disk left the desired state) is
		// read again when it comes back. The cache held them when it was
		// built; a cached size changes only with the generation of builds
		// (ForgetSizes, NoteSize), so unless it dropped some since, it
		// still holds them, and thousands are not compared on each reuse.
		r.cacheMu.Lock()
		fresh := drops == r.sizeDrops && key.gen == r.builds.Load() && !uses.unsized()
		if !fresh || r.opts.VerifyReuse {
			// (held is looked at only when sizes were dropped, as it
			// holds only sizes cached when it was made)
			still := r.cachedAll(uses, held, drops != r.sizeDrops || fresh)
			if fresh && !still {
				r.cacheMu.Unlock()
				panic("gateway: a memoized build's sizes left the cache with no drop recorded")
			}
			ok = still
		}
		if ok {
			r.useSizes(uses)
		}
		r.cacheMu.Unlock()
		if ok && record {
			r.runHeld = held
		}
		if ok {
			// not built again: the spec memo follows its lineage
			r.specs.advance(doc)
		}
	}
	if !ok {
		var sizes []sizeUse
		var smu sync.Mutex
		opts.Size = func(pool, image string) (int64, error) {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n, err := r.size(pool, image)
			smu.Lock()
			sizes = append(sizes, sizeUse{config.DiskID(pool, image), n, err != nil})
			smu.Unlock()
			return n, err
		}
		r.cacheMu.Lock()
		drops := r.sizeDrops
		r.cacheMu.Unlock()
		// the sizes it reuses (held) are not asked for again: a run
		// keeps them cached (runLocked)
		var held *sizeSet
		var specErr, buildErr error
		func() {
			r.specMu.Lock()
			defer r.specMu.Unlock()
			var spec lio.Spec
			spec, held, specErr = r.specs.spec(doc, r.opts.Identity.Name, r.opts.Settings, opts, r.specGen.Load(),
				func(ids []string) { r.prefetchDisks(ctx, doc, ids) })
			st, buildErr = r.builder.Build(spec)
		}()
		if record {
			r.runHeld = held
		}
		if err := errors.Join(specErr, buildErr); err != nil {
			// not memoized: a failed size read or decrypt is retried
			if record {
				st = r.withLeftovers(doc, st, true)
				r.recordManaged(st)
			}
			return st, err
		}
		r.storeBuilt(key, st, newSizeUses(sizes, held), held, drops)
	}
	if record {
		st = r.withRecorded(doc, st)
	}
	return st, nil
}

// validNames is withValidNames(doc, &r.names), answered at once for a
// document of the content (its contentDigest, nil when not known) found
// valid last: the check of a change and the reconcile that follows it
// look at the same names, thousands of them.
func (r *Reconciler) validNames(doc *config.Doc, content *digest) (*config.Doc, []*lio.ObjectError) {
	if content != nil {
		r.validMu.Lock()
		ok := r.hasValid && r.valid == *content
		r.validMu.Unlock()
		if ok {
			return doc, nil
		}
	}
	valid, errs := withValidNames(doc, &r.names)
	if r.opts.VerifyReuse {
		if _, full := withValidNames(doc, nil); !slices.Equal(objectErrorTexts(errs), objectErrorTexts(full)) {
			panic(fmt.Sprintf("gateway: the remembered name check found %v, a full one %v", objectErrorTexts(errs), objectErrorTexts(full)))
		}
	}
	if content != nil && len(errs) == 0 {
		r.validMu.Lock()
		r.valid, r.hasValid = *content, true
		r.validMu.Unlock()
	}
	return valid, errs
}

// withRecorded is recordManaged(withLeftovers(doc, st)) for st a memoized
// state (never modified): when it is the state whose names the last run
// recorded, and no name was recorded since, its names are known and so is
// whether r holds other storage objects, and neither is walked again.
func (r *Reconciler) withRecorded(doc *config.Doc, st lio.State) lio.State {
	k := recordedKey{
		sos: first(st.Managed.StorageObjects), nsos: len(st.Managed.StorageObjects),
		tgts: first(st.Managed.Targets), ntgts: len(st.Managed.Targets),
		managedSOs: len(r.managedSOs), managedTargets: len(r.managedTargets),
	}
	if k.sos != nil && k == r.recorded.key {
		return r.withLeftovers(doc, st, r.recorded.otherSOs)
	}
	out := r.withLeftovers(doc, st, true)
	r.recordManaged(out)
	k.managedSOs, k.managedTargets = len(r.managedSOs), len(r.managedTargets)
	// what the count of withLeftovers found: r names storage objects st
	// does not
	r.recorded = recorded{key: k, otherSOs: r.extraSOs(st)}
	return out
}

// extraSOs reports whether r.managedSOs names a storage object st does not
// manage.
func (r *Reconciler) extraSOs(st lio.State) bool {
	in := 0
	for i, n := range st.Managed.StorageObjects {
		if r.managedSOs[n] && (i == 0 || st.Managed.StorageObjects[i-1] != n) { // sorted: count each once
			in++
		}
	}
	return in < len(r.managedSOs)
}

// recordedKey identifies a memoized state by its name lists (which a
// memoized state never changes, and the pointers keep from being reused)
// and what r had recorded.
type recordedKey struct {
	sos, tgts                  *string
	nsos, ntgts                int
	managedSOs, managedTargets int
}

// first is &l[0], nil for an empty l.
func first(l []string) *string {
	if len(l) == 0 {
		return nil
	}
	return &l[0]
}

type recorded struct {
	key      recordedKey
	otherSOs bool
}

// withLeftovers adds to st the names of what this gateway built before and
// the document no longer names, as SpecFromConfig's ManagedTargets and
// ManagedStorageObjects would: those targets and storage objects are then
// managed, not desired, and the planner removes what is left of them. st
// itself is not changed (it may be memoized).
//
// otherSOs false says r.managedSOs names nothing st does not (known from
// the last run); true has it found out.
func (r *Reconciler) withLeftovers(doc *config.Doc, st lio.State, otherSOs bool) lio.State {
	var tgts, sos []string
	for iqn := range r.managedTargets {
		if doc.Targets[iqn] == nil {
			tgts = append(tgts, iqn)
		}
	}
	// st names every object it builds in Managed; count before building a
	// set of them, as nearly always r.managedSOs holds nothing else
	if otherSOs && r.extraSOs(st) {
		have := make(map[string]bool, len(st.Managed.StorageObjects))
		for _, n := range st.Managed.StorageObjects {
			have[n] = true
		}
		for so := range r.managedSOs {
			if !have[so] {
				sos = append(sos, so)
			}
		}
	}
	if len(tgts) == 0 && len(sos) == 0 {
		return st
	}
	have := make(map[string]bool, len(st.Managed.Targets))
	for _, n := range st.Managed.Targets {
		have[n] = true
	}
	tgts = slices.DeleteFunc(tgts, func(n string) bool { return have[n] })
	st.Managed.Targets = slices.Sorted(slices.Values(append(slices.Clone(st.Managed.Targets), tgts...)))
	st.Managed.StorageObjects = slices.Sorted(slices.Values(append(slices.Clone(st.Managed.StorageObjects), sos...)))
	return st
}

// recordManaged remembers the names st manages, so that a later document
// that no longer names them still has their leftovers removed.
func (r *Reconciler) recordManaged(st lio.State) {
	for _, iqn := range st.Managed.Targets {
		r.managedTargets[iqn] = true
	}
	for _, t := range st.Targets {
		r.managedTargets[t.IQN] = true
	}
	for _, so := range st.Managed.StorageObjects {
		r.managedSOs[so] = true
	}
	for _, so := range st.StorageObjects {
		r.managedSOs[so.Name] = true
	}
}

// builtKey identifies a built desired state: the document's content, the
// generation of what the build read besides it (image sizes, the CHAP
// key), and for block disks whether devices were mapped or only looked up.
type builtKey struct {
	content digest
	gen     uint64
	dry     bool
}

type builtState struct {
	key   builtKey
	st    lio.State
	sizes *sizeUses
	// held are the sizes the spec memo reused, drops r.sizeDrops when
	// it was built
	held  *sizeSet
	drops uint64
}

// sizeUse is an image size a build used; failed: it could not be read
// (a missing image, which the build skips), and was not cached.
type sizeUse struct {
	id     string
	n      int64
	failed bool
}

// sizeUses are the image sizes a memoized build asked for, never changed
// once made, so that a run reusing the build records it by reference;
// nil is none. held is the set the spec memo held after the build, and
// rest what it asked for that held does not hold at the same size (nil
// when none), which the prune walks instead of n when held is what the
// last run held (see prunable).
type sizeUses struct {
	n    map[string]int64
	held *sizeSet
	rest *sizeUses
	// failed counts the sizes that could not be read: such a build is
	// made again, which finds an image created since
	failed int
}

func (s *sizeUses) unsized() bool { return s != nil && s.failed > 0 }

func newSizeUses(l []sizeUse, held *sizeSet) *sizeUses {
	if len(l) == 0 {
		return nil
	}
	s := &sizeUses{n: make(map[string]int64, len(l)), held: held}
	for _, u := range l {
		if u.failed {
			s.failed++
		}
		s.n[u.id] = u.n
		if h, ok := held.get(u.id); !ok || h != u.n {
			if s.rest == nil {
				s.rest = &sizeUses{n: map[string]int64{}}
			}
			s.rest.n[u.id] = u.n
		}
	}
	return s
}

// cachedAll reports whether the size cache still holds the sizes a build
// asked for (uses), and with withHeld those it held; r.cacheMu is held.
func (r *Reconciler) cachedAll(uses *sizeUses, held *sizeSet, withHeld bool) bool {
	ok := true
	if uses != nil {
		for id, n := range uses.n {
			if c, cached := r.sizes[id]; !cached || c != n {
				ok = false
			}
		}
	}
	if withHeld {
		held.each(func(id string, n int64) {
			if c, cached := r.sizes[id]; !cached || c != n {
				ok = false
			}
		})
	}
	return ok
}

// builtMemo is how many desired states are memoized: an API change builds
// the document after it (its check), which the reconcile of the committed
// one (the same content) finds here; the document before it, checked only
// when the one after has problems, was built by the last reconcile. Each
// change builds once.
const builtMemo = 4

func (r *Reconciler) lookupBuilt(k builtKey) (lio.State, *sizeUses, *sizeSet, uint64, bool) {
	r.builtMu.Lock()
	defer r.builtMu.Unlock()
	for i, b := range r.built {
		if b.key == k {
			// most recent first
			copy(r.built[1:i+1], r.built[:i])
			r.built[0] = b
			return b.st, b.sizes, b.held, b.drops, true
		}
	}
	return lio.State{}, nil, nil, 0, false
}

func (r *Reconciler) storeBuilt(k builtKey, st lio.State, sizes *sizeUses, held *sizeSet, drops uint64) {
	r.builtMu.Lock()
	defer r.builtMu.Unlock()
	if r.builds.Load() != k.gen {
		return // sizes were forgotten while it was built
	}
	r.built = append([]builtState{{k, st, sizes, held, drops}}, r.built...)
	if len(r.built) > builtMemo {
		r.built = r.built[:builtMemo]
	}
}

// forgetBuilt drops the memoized desired states.
func (r *Reconciler) forgetBuilt() {
	r.specGen.Add(1)
	r.dropBuilt()
}

// dropBuilt is forgetBuilt for a change that the spec memo does not see.
func (r *Reconciler) dropBuilt() {
	r.builds.Add(1)
	r.builtMu.Lock()
	defer r.builtMu.Unlock()
	r.built = nil
}

// blockExporters counts, for each block disk ("pool/image"), the gateways
// whose targets export it.
func blockExporters(doc *config.Doc) map[string]int {
	out := map[string]int{}
	for id, d := range doc.Disks {
		if d == nil || d.Backstore != lio.BackstoreBlock {
			continue
		}
		gws := map[string]bool{}
		for _, t := range doc.Targets {
			if t == nil {
				continue
			}
			if _, ok := t.Disks[id]; !ok {
				continue
			}
			for gw, p := range t.Portals {
				if p != nil {
					gws[gw] = true
				}
			}
		}
		out[config.DiskID(d.Pool, d.Image)] = len(gws)
	}
	return out
}

// wouldBePath is where krbd's udev rule links a mapped image: what a dry run
// shows, and the device an emulated configfs gets.
func wouldBePath(pool, image string) string { return "/dev/rbd/" + pool + "/" + image }

func (r *Reconciler) devicePath(ctx context.Context, mode Mode, exporters map[string]int, pool, image string) (string, error) {
	if err := rbd.CheckFailoverSafe(rbd.BackstoreBlock, exporters[config.DiskID(pool, image)]); err != nil {
		return "", fmt.Errorf("refusing to export %s/%s: %w", pool, image, err)
	}
	if mode.Teardown {
		return wouldBePath(pool, image), nil
	}
	m, err := r.blockMapper(ctx)
	if err != nil {
		return "", err
	}
	if m == nil {
		return wouldBePath(pool, image), nil
	}
	if mode.DryRun {
		dev, err := m.Device(ctx, pool, image)
		if err != nil {
			// not mapped yet (or unreadable): show where it would be, as
			// a dry run maps nothing
			return wouldBePath(pool, image), nil
		}
		return dev, nil
	}
	dev, err := m.Map(ctx, pool, image)
	if errors.Is(err, rbd.ErrImageNotFound) || errors.Is(err, rbd.ErrPoolNotFound) {
		return "", fmt.Errorf("%w: %w", ErrImageNotFound, err)
	}
	if err != nil {
		return "", fmt.Errorf("map: %w", err)
	}
	return dev, nil
}

// blockMapper returns the mapper, making the default one on first use; nil
// means images are not mapped (emulated configfs).
func (r *Reconciler) blockMapper(ctx context.Context) (BlockMapper, error) {
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if r.mapper != nil || r.opts.FS.Emulated() {
		return r.mapper, nil
	}
	if r.opts.Conn == nil {
		return nil, errors.New("block backstore: no RADOS connection to map images with")
	}
	creds, err := rbd.CredentialsFromConn(ctx, r.opts.Conn.Raw(), r.opts.Settings.ClusterClientName, r.opts.CephConf)
	if err != nil {
		return nil, fmt.Errorf("block backstore: %w", err)
	}
	r.mapper = rbd.NewMapper(rbd.MapperOptions{Credentials: creds, Logger: r.log})
	return r.mapper, nil
}

// size reads an image's size; a missing pool or image wraps
// ErrImageNotFound, so the disk is skipped as upstream does.
func (r *Reconciler) size(pool, image string) (int64, error) {
	id := config.DiskID(pool, image)
	r.cacheMu.Lock()
	n, ok := r.sizes[id]
	if ok {
		r.markUsed(id)
	}
	r.cacheMu.Unlock()
	if ok {
		return n, nil
	}
	n, err := r.readSize(pool, image)
	if err == nil {
		r.cacheMu.Lock()
		r.cacheSize(id, n)
		r.markUsed(id)
		r.cacheMu.Unlock()
	}
	return n, err
}

// cacheSize caches the size n of disk id, which the next run's prune then
// looks at; r.cacheMu is held.
func (r *Reconciler) cacheSize(id string, n int64) {
	r.sizes[id] = n
	if r.sizeDirty == nil {
		r.sizeDirty = map[string]bool{}
	}
	r.sizeDirty[id] = true
}

// prefetchWorkers bounds the concurrent image opens of a cold start: each is
// a few RADOS round trips, so a 256-disk restore spent most of its time
// waiting on them one after the other.
const prefetchWorkers = 8

// prefetchSizes reads, concurrently, the sizes the build is about to ask for
// one by one: the disks of the targets this gateway is a portal of that are
// not cached yet. A failed read is left to the build, which reports it.
func (r *Reconciler) prefetchSizes(ctx context.Context, doc *config.Doc) {
	var ids []string
	for _, t := range doc.Targets {
		if t != nil && t.Portals[r.opts.Identity.Name] != nil {
			ids = slices.AppendSeq(ids, maps.Keys(t.Disks))
		}
	}
	r.prefetchDisks(ctx, doc, ids)
}

// prefetchDisks is prefetchSizes of the disks ids: those the spec memo is
// about to resolve, not every disk of the targets.
func (r *Reconciler) prefetchDisks(ctx context.Context, doc *config.Doc, all []string) {
	var ids []string
	seen := map[string]bool{}
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	// the cache is keyed by image (size), and a hand-edited object may key
	// a disk by something else than its pool/image, even by another
	// disk's: one read per image, cached under the image's name
	for _, id := range all {
		d := doc.Disks[id]
		if d == nil {
			continue
		}
		img := config.DiskID(d.Pool, d.Image)
		if _, cached := r.sizes[img]; !cached && !seen[img] {
			seen[img] = true
			ids = append(ids, id)
		}
	}
	if len(ids) < 2 {
		return
	}
	if r.opts.Size == nil && r.opts.Conn != nil {
		r.bulkSizes(ctx, doc, ids)
		return
	}
	type result struct {
		id string
		n  int64
	}
	work := make(chan string)
	results := make(chan result, len(ids))
	var wg sync.WaitGroup
	for range min(prefetchWorkers, len(ids)) {
		wg.Go(func() {
			for id := range work {
				d := doc.Disks[id]
				if n, err := r.readSize(d.Pool, d.Image); err == nil {
					results <- result{id, n}
				}
			}
		})
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		work <- id
	}
	close(work)
	wg.Wait()
	close(results)
	for res := range results {
		d := doc.Disks[res.id]
		r.cacheSize(config.DiskID(d.Pool, d.Image), res.n)
	}
}

// bulkReads bounds the concurrent image header reads of bulkSizes: one
// RADOS read each, so more than the image opens of prefetchWorkers.
const bulkReads = 32

// bulkSizes reads the sizes of the disks ids from RADOS, a pool at a time:
// the pool's image directory, then each image's header, instead of an
// image open and close per disk (under TCG, 64 opens on 8 workers took
// 15 s of a restore). Reads that fail are left to the build. r.cacheMu is
// held by the caller.
func (r *Reconciler) bulkSizes(ctx context.Context, doc *config.Doc, ids []string) {
	byPool := map[string]map[string]bool{} // pool -> images
	for _, id := range ids {
		d := doc.Disks[id]
		if byPool[d.Pool] == nil {
			byPool[d.Pool] = map[string]bool{}
		}
		byPool[d.Pool][d.Image] = true
	}
	for _, pool := range slices.Sorted(maps.Keys(byPool)) {
		if ctx.Err() != nil {
			return
		}
		facts, _, err := rbd.BulkFacts(r.opts.Conn.Raw(), pool, slices.Sorted(maps.Keys(byPool[pool])), bulkReads)
		if err != nil {
			continue
		}
		for img, f := range facts {
			r.cacheSize(config.DiskID(pool, img), f.Size)
		}
	}
}

func (r *Reconciler) readSize(pool, image string) (n int64, err error) {
	switch {
	case r.opts.Size != nil:
		n, err = r.opts.Size(pool, image)
	case r.opts.Conn == nil:
		return 0, errors.New("no RADOS connection to read image sizes with")
	default:
		n, err = rbd.Size(r.opts.Conn.Raw(), pool, image)
	}
	if errors.Is(err, rbd.ErrImageNotFound) || errors.Is(err, rbd.ErrPoolNotFound) {
		return 0, fmt.Errorf("%w: %w", ErrImageNotFound, err)
	}
	return n, err
}

// unmapUnused unmaps the block images this gateway mapped that the desired
// state no longer uses. It runs after the apply, once LIO let go of them; an
// image LIO still holds fails with rbd.ErrDeviceBusy and is tried again next
// time.
func (r *Reconciler) unmapUnused(ctx context.Context, desired lio.State, held map[string]bool) ([]string, error) {
	if len(r.blockImages) == 0 {
		return nil, nil
	}
	m, err := r.blockMapper(ctx)
	if err != nil || m == nil {
		return nil, err
	}
	inUse := map[string]bool{}
	for _, so := range desired.StorageObjects {
		if so.Plugin == lio.PluginBlock {
			inUse[so.Config] = true
		}
	}
	var unmapped []string
	var errs []error
	for _, img := range slices.Sorted(maps.Keys(r.blockImages)) {
		pool, image, _ := strings.Cut(img, "/")
		dev, err := m.Device(ctx, pool, image)
		if err != nil {
			if !errors.Is(err, rbd.ErrNotMapped) {
				errs = append(errs, fmt.Errorf("gateway: %s: %w", img, err))
			}
			continue
		}
		if held[img] || inUse[dev] || inUse[wouldBePath(pool, image)] {
			continue
		}
		if err := m.Unmap(ctx, pool, image); err != nil {
			errs = append(errs, fmt.Errorf("gateway: unmap %s: %w", img, err))
			continue
		}
		r.log.Info("unmapped block image LIO no longer uses", "image", img, "device", dev)
		unmapped = append(unmapped, img)
	}
	return unmapped, errors.Join(errs...)
}

// Reconcile makes local LIO match doc (api.LocalLIO). Objects that cannot
// be built are left as they are, logged and reported by Status, and are
// not an error here: one bad object must not fail every change of the
// others. Status tells whether a retry is due.
//
// A document LIO was last converged to, by this call from the API or from
// the config watch, is not reconciled again unless ForgetSizes was called
// since; the epoch and the created/updated stamps do not count (see
// contentDigest). The check and the reconcile are one step, so an API call
// and the watch that both bring a change make one reconcile between them.
func (r *Reconciler) Reconcile(ctx context.Context, doc *config.Doc) error {
	return r.reconcile(ctx, doc, false)
}

// CheckDrift re-reads the whole LIO tree and reconciles it with doc, the
// committed document, logging what it finds changed: by someone behind
// this gateway's back, or by a coordinator that had this gateway apply a
// change it then failed to commit. It is Reconcile otherwise.
//
// The tree is first read without holding up the API's changes (the read
// takes seconds for hundreds of disks on the real kernel): when it equals
// what the Reconciler keeps, LIO was converged to doc and nothing was
// applied while it read, there is no drift and nothing else is done.
// Anything else is settled by a full re-read and reconcile as before.
func (r *Reconciler) CheckDrift(ctx context.Context, doc *config.Doc) error {
	return r.checkDrift(ctx, doc, r.contentDigest(doc))
}

// checkDrift is CheckDrift of doc, whose contentDigest is b.
func (r *Reconciler) checkDrift(ctx context.Context, doc *config.Doc, b digest) error {
	if r.keptMatchesLIO(b) {
		r.smu.Lock()
		r.counters.DriftReads++
		r.smu.Unlock()
		return nil
	}
	r.forgetBuilt()
	return r.reconcileDigest(ctx, doc, b, true)
}

// keptMatchesLIO reads the whole tree, holding mu only before and after the
// read, and reports whether it equals the kept observed state of a run
// that converged LIO to the document of digest b, with no apply since the
// read began.
func (r *Reconciler) keptMatchesLIO(b digest) bool {
	gen := r.forgets.Load()
	r.mu.Lock()
	writes := r.lioWrites
	ok := r.observed != nil && !r.resync && r.appliedContent(b, gen)
	r.mu.Unlock()
	if !ok {
		return false
	}
	live, err := lio.Observe(r.opts.FS)
	if err != nil {
		return false
	}
	if r.afterDriftRead != nil {
		r.afterDriftRead()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lioWrites == writes && r.observed != nil && !r.resync && reflect.DeepEqual(*r.observed, live)
}

// maxDriftOps bounds the operations a drift log line lists.
const maxDriftOps = 20

func (r *Reconciler) reconcile(ctx context.Context, doc *config.Doc, drift bool) error {
	return r.reconcileDigest(ctx, doc, r.contentDigest(doc), drift)
}

// reconcileDigest is reconcile of doc, whose contentDigest is b.
func (r *Reconciler) reconcileDigest(ctx context.Context, doc *config.Doc, b digest, drift bool) error {
	gen := r.forgets.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if doc.Epoch < r.newest {
		r.log.Debug("not reconciling a superseded configuration: a newer epoch was applied since it was read",
			"epoch", doc.Epoch, "applied", r.newest, "drift_check", drift)
		return nil
	}
	r.newest = doc.Epoch
	if drift {
		// a drift check re-reads the whole tree
		r.resync = true
	} else if !r.resync && r.appliedContent(b, gen) {
		return nil
	}
	// the build's memo key is the same digest: not computed twice
	r.runDoc, r.runDigest = doc, b
	rep, err := r.runLocked(ctx, doc, Mode{})
	r.runDoc = nil
	if drift && !rep.Plan.Empty() {
		ops := make([]string, 0, min(len(rep.Plan.Ops), maxDriftOps))
		for _, op := range rep.Plan.Ops[:min(len(rep.Plan.Ops), maxDriftOps)] {
			ops = append(ops, op.String())
		}
		r.log.Warn("drift check: LIO differs from the configuration; repairing",
			"epoch", rep.Epoch, "ops", len(rep.Plan.Ops), "first", ops)
	}
	st := Status{Epoch: rep.Epoch, Converged: err == nil}
	for _, e := range rep.ObjectErrs {
		st.Problems = append(st.Problems, Problem{Object: e.Object(), Error: e.Error()})
	}
	_, failed := lio.SplitObjectErrors(err)
	for _, e := range failed {
		st.Problems = append(st.Problems, Problem{Object: "LIO", Error: e.Error()})
	}
	r.hasApplied = false
	if err == nil {
		r.hasApplied, r.applied, r.appliedGen, r.appliedEpoch, r.appliedAt = true, b, gen, doc.Epoch, r.now()
	}
	r.smu.Lock()
	if !drift {
		r.runs++
	}
	st.Runs = r.runs
	r.status = st
	r.smu.Unlock()
	if rep.Applied != nil {
		r.log.Info("applied LIO plan", "epoch", rep.Epoch, "done", len(rep.Applied.Done),
			"failed", len(rep.Applied.Failed), "skipped", len(rep.Applied.Skipped), "held", len(rep.Held))
	}
	if len(failed) > 0 {
		return fmt.Errorf("gateway %s: reconcile epoch %d: %w", rep.Gateway, rep.Epoch, errors.Join(failed...))
	}
	return nil
}

// Status is the outcome of the last Reconcile.
func (r *Reconciler) Status() Status {
	r.smu.Lock()
	defer r.smu.Unlock()
	st := r.status
	st.Problems = slices.Clone(st.Problems)
	return st
}

// Converged reports whether the last Reconcile succeeded with exactly doc.
// LIO may have drifted since (SIGHUP is the operator's way to re-check);
// the config watch uses it not to reconcile twice what an API call just did.
func (r *Reconciler) Converged(doc *config.Doc) bool {
	return r.convergedTo(r.contentDigest(doc))
}

// convergedTo is Converged of the document whose contentDigest is b.
func (r *Reconciler) convergedTo(b digest) bool {
	gen := r.forgets.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.appliedContent(b, gen)
}

// appliedContent (under mu) reports whether the last reconcile converged
// LIO to content b with no ForgetSizes since gen.
func (r *Reconciler) appliedContent(b digest, gen uint64) bool {
	return r.hasApplied && r.appliedGen == gen && r.applied == b
}

// AheadOf reports whether LIO was last converged to a change made from doc's
// epoch but not doc itself: a preview an internal call applied before its
// coordinator commits. The config watch's late event for that epoch must
// not undo it; the commit that follows, or the drift check if none does,
// brings LIO and the configuration together again.
func (r *Reconciler) AheadOf(doc *config.Doc) bool {
	return r.isAheadOf(r.contentDigest(doc), doc.Epoch)
}

// isAheadOf is AheadOf of the document of epoch whose contentDigest is b.
func (r *Reconciler) isAheadOf(b digest, epoch int64) bool {
	ahead, _ := r.aheadOf(b, epoch)
	return ahead
}

// PreviewPending reports whether LIO is ahead of doc (AheadOf) by a preview
// applied less than grace ago. Its coordinator's commit is still expected:
// a drift check now would undo the change, and for a removal re-create a
// storage object (tcmu-runner opening the image) while the coordinator
// deletes that image. A preview older than grace is a coordinator that
// failed before committing, which the drift check does repair.
func (r *Reconciler) PreviewPending(doc *config.Doc, grace time.Duration) bool {
	return r.previewPending(r.contentDigest(doc), doc.Epoch, grace)
}

// previewPending is PreviewPending of the document of epoch whose
// contentDigest is b.
func (r *Reconciler) previewPending(b digest, epoch int64, grace time.Duration) bool {
	ahead, at := r.aheadOf(b, epoch)
	return ahead && r.now().Sub(at) < grace
}

func (r *Reconciler) now() time.Time {
	if r.opts.Now != nil {
		return r.opts.Now()
	}
	return time.Now()
}

// aheadOf is AheadOf of the document of epoch whose contentDigest is b,
// and when LIO was converged to what it is ahead with.
func (r *Reconciler) aheadOf(b digest, epoch int64) (bool, time.Time) {
	gen := r.forgets.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	ahead := r.hasApplied && r.appliedGen == gen && !r.resync && r.appliedEpoch == epoch && r.applied != b
	return ahead, r.appliedAt
}

// Teardown removes this gateway's LIO objects (spec 6.6). It plans from
// what this Reconciler knows LIO holds, as any reconcile does; a teardown
// that fails from there (something was added under an object behind the
// daemon's back, and its removal is refused) reads the whole tree and runs
// again, once.
func (r *Reconciler) Teardown(ctx context.Context, doc *config.Doc) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hasApplied = false
	rep, err := r.runLocked(ctx, doc, Mode{Teardown: true})
	if err != nil && !rep.FullObserve && r.resync && ctx.Err() == nil {
		r.log.Warn("teardown from the remembered LIO state failed; reading the whole tree and trying again", "err", err)
		rep, err = r.runLocked(ctx, doc, Mode{Teardown: true})
	}
	return rep, err
}

// Sessions counts the iSCSI sessions of a target on this gateway
// (api.LocalLIO).
func (r *Reconciler) Sessions(_ context.Context, targetIQN string) (int, error) {
	return lio.TargetSessions(r.opts.FS, targetIQN)
}

// ClientState is the upper-case session state of an initiator on this
// gateway, "" without a session (api.LocalLIO).
func (r *Reconciler) ClientState(_ context.Context, targetIQN, clientIQN string) (string, error) {
	s, ok, err := lio.ClientSession(r.opts.FS, targetIQN, clientIQN)
	if err != nil || !ok {
		return "", err
	}
	return strings.ToUpper(s.State), nil
}

// ClientSession is an initiator's session on this gateway: alias, state and
// addresses, as upstream's _clientinfo reports them.
func (r *Reconciler) ClientSession(_ context.Context, targetIQN, clientIQN string) (lio.Session, bool, error) {
	return lio.ClientSession(r.opts.FS, targetIQN, clientIQN)
}
