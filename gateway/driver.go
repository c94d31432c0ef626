package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// Source is the committed configuration and its change notifications;
// *rados.Store implements it.
type Source interface {
	Load(ctx context.Context) (*config.Doc, error)
	// Subscribe sends an Event after every commit; a slow reader sees the
	// latest epoch, not every one. The channel closes when ctx ends.
	Subscribe(ctx context.Context) <-chan rados.Event
}

var _ Source = (*rados.Store)(nil)

// DriverOptions tune a Driver; zero values take the defaults.
type DriverOptions struct {
	// DriftCheck is how often LIO is compared with the committed document
	// (settings' drift_check_interval; 60 s when zero).
	DriftCheck time.Duration
	// DriftTicks, when set, starts the drift checks instead of a ticker of
	// DriftCheck (which stays the age a pending preview is left alone
	// for), so a test decides when they run.
	DriftTicks <-chan time.Time
	// RetryMin and RetryMax bound the back-off after a failed reconcile (1 s
	// and 30 s when zero).
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
	// OnPass, when set, is called by Run after every reconcile it made,
	// with what started it and how it ended.
	OnPass func(Pass)
}

// Cause is what started a pass of Driver.Run.
type Cause string

// The causes of a pass.
const (
	CauseChange Cause = "change" // a new epoch
	CauseReload Cause = "reload" // Reload (SIGHUP)
	CauseRetry  Cause = "retry"  // back-off after a failed or incomplete pass
	CauseDrift  Cause = "drift"  // the periodic drift check
)

// Pass is one reconcile made by Driver.Run.
type Pass struct {
	Cause Cause
	Epoch int64
	// Err is why the pass did not converge (nil when it did).
	Err error
}

// Driver keeps this gateway's LIO on the committed configuration: the
// start-up restore, then one reconcile per change event (a burst costs
// one), retries with back-off while something failed or is held, reloads
// on request (SIGHUP) and a periodic drift check.
type Driver struct {
	rec    *Reconciler
	src    Source
	opts   DriverOptions
	log    *slog.Logger
	reload chan struct{}

	reloadMu      sync.Mutex
	reloadWaiters []chan struct{}

	// applied is the epoch LIO was last converged to; pending means the
	// last reconcile left work undone.
	applied int64
	pending bool
	// unseen is the epoch a drift check last found committed but not
	// yet applied here (see Run).
	unseen int64
}

// NewDriver returns a Driver of rec over src.
func NewDriver(rec *Reconciler, src Source, opts DriverOptions) *Driver {
	if opts.DriftCheck <= 0 {
		opts.DriftCheck = 60 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Driver{rec: rec, src: src, opts: opts, log: opts.Logger, reload: make(chan struct{}, 1)}
}

// Restore is define() (spec 6.1 step 6): it loads the committed document
// and reconciles LIO with it. Unlike upstream, a failed operation or an
// object that cannot be built neither stops the start nor tears LIO down:
// every other object is restored, the failure is logged and reported
// (Reconciler.Status), and Run retries it with back-off. It returns the
// document, or the error that kept it from being read.
func (d *Driver) Restore(ctx context.Context) (*config.Doc, error) {
	doc, err := d.src.Load(ctx)
	if err != nil {
		return nil, err
	}
	d.applied, d.pending = doc.Epoch, false
	if err := d.rec.Reconcile(ctx, doc); err != nil {
		d.log.Error("restoring LIO: some operations failed; serving the rest and retrying", "err", err)
		d.pending = true
	} else if !d.rec.Status().Converged {
		d.pending = true
	}
	return doc, nil
}

// Pending reports whether the last reconcile of Restore or Run left work
// undone. Only meaningful when Run is not running.
func (d *Driver) Pending() bool { return d.pending }

// Reload asks Run to re-read the configuration and image sizes and
// reconcile even if nothing changed (SIGHUP). It does not wait.
//
// The channel it returns is closed once a pass that started after the call
// is over, so that a caller (the daemon's RELOADING=1/READY=1 to systemd)
// knows when the reload has taken effect; reloads asked for before a pass
// starts share it.
func (d *Driver) Reload() <-chan struct{} {
	done := make(chan struct{})
	d.reloadMu.Lock()
	d.reloadWaiters = append(d.reloadWaiters, done)
	d.reloadMu.Unlock()
	select {
	case d.reload <- struct{}{}:
	default:
	}
	return done
}

// takeReloadWaiters returns the callers of Reload a pass starting now answers.
func (d *Driver) takeReloadWaiters() []chan struct{} {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	w := d.reloadWaiters
	d.reloadWaiters = nil
	return w
}

// changeInFlight reports whether doc is a commit this gateway has neither
// applied nor been told of, seen by a drift check for the first time. The
// next check that still finds it unapplied takes it for a lost event and
// reconciles.
func (d *Driver) changeInFlight(doc *config.Doc, content func() digest) bool {
	if doc.Epoch <= d.applied || doc.Epoch == d.unseen {
		return false
	}
	if d.rec.convergedTo(content()) || d.rec.isAheadOf(content(), doc.Epoch) {
		return false
	}
	d.unseen = doc.Epoch
	return true
}

// Run reconciles LIO whenever the configuration changes, or on Reload,
// until ctx ends. It is level-triggered: each pass reads the newest
// document, so a burst of commits costs one reconcile, and one that failed
// or left objects held is retried with back-off until LIO holds the whole
// configuration, whatever the epoch; a retry re-reads the whole LIO tree.
// Every DriftCheck it re-reads the whole tree and reconciles it with the
// committed document (Reconciler.CheckDrift): between those, the
// Reconciler trusts what it remembers of LIO, so this is when a change
// made behind its back is found and repaired, as is LIO left ahead of the
// configuration by a coordinator that had this gateway apply a change and
// then failed before committing it (a preview younger than one drift
// interval is its commit still on the way, and is left alone). A commit
// not yet applied here is likewise left to its event or its coordinator's
// call by the first check that finds it, and applied by the next.
func (d *Driver) Run(ctx context.Context) {
	events := d.src.Subscribe(ctx)
	driftTicks := d.opts.DriftTicks
	if driftTicks == nil {
		drift := time.NewTicker(d.opts.DriftCheck)
		defer drift.Stop()
		driftTicks = drift.C
	}
	var retry <-chan time.Time
	delay := d.opts.RetryMin
	if d.pending {
		retry = time.After(delay)
		delay = min(2*delay, d.opts.RetryMax)
	}
	for {
		var cause Cause
		var reloaded []chan struct{} // closed once this pass is over
		select {
		case <-ctx.Done():
			return
		case <-driftTicks:
			if retry != nil {
				continue // a retry is due anyway, and it re-reads LIO
			}
			cause = CauseDrift
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Epoch == d.applied && retry == nil {
				continue
			}
			cause = CauseChange
		case <-d.reload:
			cause = CauseReload
			reloaded = d.takeReloadWaiters()
			// an operator's reload must see images resized and LIO changed
			// behind our back
			d.rec.ForgetSizes()
			d.rec.Resync()
		case <-retry:
			cause = CauseRetry
		}
		doc, err := d.src.Load(ctx)
		inFlight := false
		// the pass's questions about doc share one digest of it, made
		// when the first is asked
		var b *digest
		content := func() digest {
			if b == nil {
				c := d.rec.contentDigest(doc)
				b = &c
			}
			return *b
		}
		if err == nil {
			switch {
			case cause == CauseDrift && d.changeInFlight(doc, content):
				// a commit whose event, or whose coordinator's call to this
				// gateway, is on its way: repairing it as drift would apply
				// the change twice
				d.log.Debug("drift check deferred: a committed change is not applied here yet", "epoch", doc.Epoch, "applied", d.applied)
				inFlight = true
			case cause == CauseDrift && d.rec.previewPending(content(), doc.Epoch, d.opts.DriftCheck):
				// a change applied here before its commit, younger than one
				// drift interval: left alone until the next check
				d.log.Debug("drift check deferred: a change applied before its commit is pending", "epoch", doc.Epoch)
			case cause == CauseDrift:
				err = d.rec.checkDrift(ctx, doc, content())
			case cause == CauseChange && retry == nil && doc.Epoch == d.applied:
				continue
			case cause == CauseChange && retry == nil && d.rec.convergedTo(content()):
				// an API call on this gateway already applied this epoch
				d.applied = doc.Epoch
				continue
			case cause == CauseChange && retry == nil && d.rec.isAheadOf(content(), doc.Epoch):
				// a late event: an API call already applied the next
				// change, whose commit is on its way
				continue
			default:
				err = d.rec.reconcileDigest(ctx, doc, content(), false)
			}
		}
		for _, done := range reloaded {
			close(done)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil && !d.rec.Status().Converged {
			// logged object by object by the reconciler
			err = errors.New("objects of the configuration are held")
		}
		if d.opts.OnPass != nil {
			p := Pass{Cause: cause, Err: err}
			if doc != nil {
				p.Epoch = doc.Epoch
			}
			d.opts.OnPass(p)
		}
		if inFlight {
			continue
		}
		if err != nil {
			d.pending = true
			d.log.Error("reconciling LIO with the configuration (will retry)", "err", err, "retry_in", delay)
			retry = time.After(delay)
			delay = min(2*delay, d.opts.RetryMax)
			continue
		}
		d.applied, d.pending, retry, delay = doc.Epoch, false, nil, d.opts.RetryMin
		d.log.Debug("LIO in line with the configuration", "epoch", d.applied)
	}
}
