// Package devstatus owns the device-status tracker of rbd-target-api (spec §9,
// upstream's DeviceStatusWatcher): it reads tcmu-runner's per-image reports from the
// mgr's service map every status_check_interval and keeps, per image ("pool/image"),
// the lock owner, each gateway's error counters and the Online/Degraded state that
// GET /api/disk/<pool>/<image> serves as `status` (and gwcli and the Dashboard show).
//
// It is its own package rather than part of gateway because it has nothing to do
// with turning the config document into LIO: it only reads the service map, through
// the small Source seam that *rados.Conn implements. The state machine (Tracker.Apply)
// is pure, so its thresholds are tested without a cluster. It must not import api,
// touch configfs, or write anything to the cluster.
package devstatus

import (
	"context"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"ceph-iscsi/rados"
)

// Service is the service-map name tcmu-runner registers its images under.
const Service = "tcmu-runner"

// The states of an image, with upstream's texts (gwcli and the Dashboard show them).
const (
	StateOnline          = "Online"
	StateClusterFailure  = "Degraded - cluster access failure"
	StateExcessFailovers = "Degraded - excessive failovers"
	// StateUnknown is served for an image the tracker knows nothing about.
	StateUnknown = "Unknown"
)

// The counters tcmu-runner reports that the tracker keeps.
const (
	cmdTimedOut = "cmd_timed_out_cnt"
	connLost    = "conn_lost_cnt"
	lockLost    = "lock_lost_cnt"
)

// Status is an image's status in GET /api/disk's JSON shape (upstream's
// get_status_dict).
type Status struct {
	State     string `json:"state"`
	LockOwner string `json:"lock_owner"`
	// Gateways maps a gateway to its counters (name -> last value).
	Gateways map[string]map[string]int64 `json:"gateways"`
}

// Options are the [device_status] settings.
type Options struct {
	// StableStateResetCount: after more than this many polls without a change, a
	// degraded image is Online again (stable_state_reset_count).
	StableStateResetCount int
	// LockLostThreshold: a lock_lost_cnt change of at least this many is
	// "excessive failovers" (lock_lost_cnt_threshhold).
	LockLostThreshold int
}

type counter struct {
	cnt int64
}

type image struct {
	// gateways: gateway -> counter name -> counter
	gateways  map[string]map[string]*counter
	lockOwner string
	lockStamp time.Time
	state     string
	// changed: the state went degraded in the current poll
	changed bool
	stable  int
}

// Tracker holds the status of every image tcmu-runner reports. Its methods are safe
// for concurrent use: the poll loop writes while the API reads.
type Tracker struct {
	opts   Options
	mu     sync.Mutex
	images map[string]*image
}

// New returns an empty tracker.
func New(opts Options) *Tracker {
	if opts.StableStateResetCount <= 0 {
		opts.StableStateResetCount = 3
	}
	if opts.LockLostThreshold <= 0 {
		opts.LockLostThreshold = 12
	}
	return &Tracker{opts: opts, images: map[string]*image{}}
}

// Status returns the status of image ("pool/image"), false when tcmu-runner does not
// report it (or no poll succeeded yet).
func (t *Tracker) Status(imageID string) (Status, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	img, ok := t.images[imageID]
	if !ok {
		return Status{}, false
	}
	st := Status{State: img.state, LockOwner: img.lockOwner, Gateways: map[string]map[string]int64{}}
	for gw, counters := range img.gateways {
		m := make(map[string]int64, len(counters))
		for name, c := range counters {
			m[name] = c.cnt
		}
		st.Gateways[gw] = m
	}
	return st, true
}

// Apply folds one poll of tcmu-runner's daemons (keyed "<gateway>:<pool>/<image>")
// into the tracker, as one iteration of upstream's watcher loop: counters that moved
// degrade the image, images no daemon reports any more are dropped, and an image
// without a change for more than StableStateResetCount polls is Online again.
//
// Unlike upstream, a daemon whose name or counter does not parse is skipped instead
// of stopping the tracker, and a gateway that no longer reports an image loses its
// counters (and the lock ownership) there instead of showing them forever.
func (t *Tracker) Apply(daemons map[string]rados.ServiceDaemon) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]map[string]bool{} // image -> gateways reporting it
	// in the mgr's (sorted) order, as upstream: when two counters move in one poll,
	// the later one's state wins
	for _, name := range slices.Sorted(maps.Keys(daemons)) {
		d := daemons[name]
		gw, imageID, ok := strings.Cut(name, ":")
		if !ok || gw == "" || imageID == "" {
			continue
		}
		if seen[imageID] == nil {
			seen[imageID] = map[string]bool{}
		}
		seen[imageID][gw] = true
		img := t.images[imageID]
		if img == nil {
			img = &image{gateways: map[string]map[string]*counter{}, state: StateOnline}
			t.images[imageID] = img
		}
		t.update(img, gw, d)
	}
	for id, img := range t.images {
		gws, ok := seen[id]
		if !ok {
			delete(t.images, id)
			continue
		}
		for gw := range img.gateways {
			if !gws[gw] {
				delete(img.gateways, gw)
			}
		}
		if img.lockOwner != "" && !gws[img.lockOwner] {
			img.lockOwner, img.lockStamp = "", time.Time{}
		}
		if img.changed {
			img.changed = false
			continue
		}
		img.stable++
		if img.stable > t.opts.StableStateResetCount {
			img.stable = 0
			img.state = StateOnline
		}
	}
}

// update is upstream's TcmuDevStatusTracker.update_status for one gateway's report.
func (t *Tracker) update(img *image, gw string, d rados.ServiceDaemon) {
	if d.Status == nil {
		// the mgr may list a daemon before its first status: nothing to learn yet
		return
	}
	counters := img.gateways[gw]
	if counters == nil {
		counters = map[string]*counter{}
	}
	for _, name := range slices.Sorted(maps.Keys(d.Status)) {
		val := d.Status[name]
		switch name {
		case "lock_owner":
			if val != "true" {
				continue
			}
			stamp, err := rados.ParseServiceStamp(d.StatusStamp)
			if err != nil {
				continue
			}
			if img.lockStamp.IsZero() || stamp.After(img.lockStamp) {
				img.lockStamp, img.lockOwner = stamp, gw
				img.stable = 0
			}
		case cmdTimedOut, connLost, lockLost:
			n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			if err != nil {
				continue
			}
			c := counters[name]
			if c == nil {
				// the first value is the baseline, not a change
				c = &counter{cnt: n}
				counters[name] = c
			}
			t.degrade(img, name, c.cnt, n)
			c.cnt = n
		}
	}
	img.gateways[gw] = counters
}

func (t *Tracker) degrade(img *image, name string, last, now int64) {
	diff := math.Abs(float64(now - last))
	switch {
	case (name == cmdTimedOut || name == connLost) && diff >= 1:
		img.state = StateClusterFailure
	case name == lockLost && diff >= float64(t.opts.LockLostThreshold):
		img.state = StateExcessFailovers
	default:
		return
	}
	img.changed = true
	img.stable = 0
}

// Source is where the tracker reads tcmu-runner's reports; *rados.Conn implements it.
type Source interface {
	// MgrAvailable reports whether a mgr is active (answered by the mon, at once).
	MgrAvailable() (bool, error)
	// ServiceStatus returns a service's daemons from the mgr's service map.
	ServiceStatus(service string) (map[string]rados.ServiceDaemon, error)
}

// Poll reads the service map once and applies it. Without an active mgr, or when
// the mgr does not answer, the tracker keeps what it knew (as upstream) and Poll
// returns the reason.
func (t *Tracker) Poll(src Source) error {
	ok, err := src.MgrAvailable()
	if err != nil {
		return err
	}
	if !ok {
		return errNoMgr
	}
	daemons, err := src.ServiceStatus(Service)
	if err != nil {
		return err
	}
	t.Apply(daemons)
	return nil
}

type noMgrError struct{}

func (noMgrError) Error() string { return "no active ceph-mgr: device status is Unknown" }

var errNoMgr error = noMgrError{}

// Run polls src every interval until ctx ends, the first time at once. A failing
// poll is logged when it starts failing (or fails differently) and when it recovers,
// not at every poll.
func (t *Tracker) Run(ctx context.Context, src Source, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failing := ""
	for {
		if err := t.Poll(src); err != nil {
			if err.Error() != failing {
				log.Warn("device status: cannot read tcmu-runner's reports from the mgr; disk status stays as it was (Unknown until a first report)", "err", err)
				failing = err.Error()
			}
		} else if failing != "" {
			log.Info("device status: reading tcmu-runner's reports from the mgr again")
			failing = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if ctx.Err() != nil { // both were ready: stopping wins
				return
			}
		}
	}
}
