package lio

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is what Apply really did.
type Result struct {
	// Done lists the ops that succeeded (or found their object already
	// gone, for removals), in order.
	Done []Op `json:"done"`
	// Failed lists the ops that returned an error.
	Failed []Op `json:"failed,omitempty"`
	// Skipped lists ops not attempted: inside an object whose creation
	// failed, or after ctx ended.
	Skipped []Op `json:"skipped,omitempty"`
	// Timings says when each attempted op ran, in plan order: where an
	// apply spends its time (a storage object's enable waits for
	// tcmu-runner to open the image).
	Timings []OpTiming `json:"timings,omitempty"`
}

// OpTiming is when one op of the plan ran, in microseconds since the apply
// started.
type OpTiming struct {
	// Index is the op's index in the plan.
	Index   int   `json:"index"`
	StartUS int64 `json:"start_us"`
	DurUS   int64 `json:"dur_us"`
}

// DefaultApplyWorkers bounds the configfs operations Apply runs at once.
// Creating or removing a user:rbd storage object waits for tcmu-runner to
// open or close its image, so a restore of many disks spent most of its
// time waiting on them one after the other.
const DefaultApplyWorkers = 8

// ApplyOptions tune ApplyWith.
type ApplyOptions struct {
	// Workers is how many independent objects are worked on at once; 1
	// applies the plan strictly in order. 0 means DefaultApplyWorkers.
	Workers int
	// trace, in tests, is told when the op at index i starts and ends.
	trace func(i int, start bool)
}

// Apply runs plan against f with DefaultApplyWorkers (see ApplyWith).
func Apply(ctx context.Context, f FS, plan Plan) (Result, error) {
	return ApplyWith(ctx, f, plan, ApplyOptions{})
}

// ApplyWith runs plan against f. It does not stop at the first error: the
// remaining independent ops still run, ops inside a directory whose mkdir
// failed are skipped, and the errors are joined. Removing something that
// is already gone counts as success. Because Observe+NewPlan is level
// triggered, re-running after a partial failure completes the work (a
// half-created storage object is seen as incompatible and re-created).
// Error texts carry op paths only, never written values.
//
// Independent work runs concurrently, within the order LIO needs: the plan
// is cut into runs of consecutive ops on storage objects, on TPG LUNs or
// on ACLs; inside a run, the ops of one object (a storage object and its
// HBA, also another object of the same name; one LUN; one ACL and its
// mapped LUNs) stay in plan order on one worker, and different objects
// are spread over opts.Workers workers. Fabric runs (everything outside
// target/core) end before the next op starts; every other fabric op
// (targets, TPGs, their attributes, enables and portals, discovery auth)
// runs alone, in order.
//
// Storage-object runs go on in the background instead, so that the
// fabric's work overlaps theirs: a user:rbd object's enable waits for
// tcmu-runner to open the image, and tcmu-runner opens one device at a
// time. A fabric op that needs a storage object waits for that object's
// ops only (a LUN's link to it), or for all of them when it cannot tell
// which (a LUN's ALUA group); a storage-object run starts after every op
// before it in the plan (removals come after the LUNs that use them go),
// but for a teardown's: a run that only removes storage objects, after a
// run that only removes LUNs and ops that touch no storage object
// (portals, TPGs, targets), starts with the LUN run, each object's ops
// waiting for the removal of the LUNs linked to it. tcmu-runner closes
// images one at a time too.
func ApplyWith(ctx context.Context, f FS, plan Plan, opts ApplyOptions) (Result, error) {
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultApplyWorkers
	}
	a := &applier{f: f, trace: opts.trace, ops: plan.Ops, state: make([]opState, len(plan.Ops)), errs: make([]error, len(plan.Ops)),
		t0: time.Now(), times: make([]OpTiming, len(plan.Ops))}
	var core *coreRun // the storage-object run in the background, if any
	segs := segments(plan.Ops)
	early := map[int]bool{} // storage-object runs started ahead of their place
	for si, seg := range segs {
		groups := groupsOf(plan.Ops, seg)
		if inCore(plan.Ops[seg[0]]) {
			if early[si] {
				continue
			}
			core.wait()
			core = a.startCore(ctx, groups, workers, nil)
			continue
		}
		if workers == 1 {
			core.wait() // strictly in order
		}
		if workers > 1 {
			if ci := removalAfter(plan.Ops, segs, si); ci >= 0 {
				if waits, ok := a.lunWaits(groups, groupsOf(plan.Ops, segs[ci])); ok {
					core.wait()
					lunDone := make([]chan struct{}, len(groups))
					for g := range lunDone {
						lunDone[g] = make(chan struct{})
					}
					core = a.startCore(ctx, groupsOf(plan.Ops, segs[ci]), workers, func(g int) {
						for _, lg := range waits[g] {
							<-lunDone[lg]
						}
					})
					early[ci] = true
					a.runRun(ctx, groups, workers, core, lunDone...)
					continue
				}
			}
		}
		a.runRun(ctx, groups, workers, core)
	}
	core.wait()
	var res Result
	for i, op := range plan.Ops {
		if a.state[i] != opSkipped {
			res.Timings = append(res.Timings, a.times[i])
		}
		switch a.state[i] {
		case opDone:
			res.Done = append(res.Done, op)
		case opFailed:
			res.Failed = append(res.Failed, op)
		default:
			res.Skipped = append(res.Skipped, op)
		}
	}
	return res, errors.Join(a.errs...)
}

// inCore says whether op works on a storage object or an HBA.
func inCore(op Op) bool { return strings.HasPrefix(op.Path, coreDir+"/") }

// coreRun is a run of storage-object ops going on in the background.
type coreRun struct {
	done  []chan struct{}  // by group, closed when its ops are over
	byObj map[string][]int // object directory (target/core/HBA/name) -> groups
	all   sync.WaitGroup
}

// removalAfter finds where a teardown's storage-object removals may start
// early: when the run at segs[li] removes TPG LUNs, and the ops after it
// up to a run that only removes storage objects (their ALUA groups, the
// objects, their HBAs) touch no storage object (portals, TPGs, targets go),
// it returns that run's index; otherwise -1. tcmu-runner closes user:rbd
// images one at a time, so the removals should not wait for the fabric's.
func removalAfter(ops []Op, segs [][]int, li int) int {
	if class, _ := opClass(ops[segs[li][0]]); class != "lun" || !removalsOnly(ops, segs[li]) {
		return -1
	}
	for ci := li + 1; ci < len(segs); ci++ {
		seg := segs[ci]
		if inCore(ops[seg[0]]) {
			if removalsOnly(ops, seg) {
				return ci
			}
			return -1
		}
		for _, i := range seg {
			op := ops[i]
			if class, _ := opClass(op); class == "lun" || op.Kind == OpSymlink || op.Kind == OpWrite || op.Kind == OpMkdir || op.Kind == OpEnable {
				return -1
			}
		}
	}
	return -1
}

func removalsOnly(ops []Op, seg []int) bool {
	for _, i := range seg {
		if k := ops[i].Kind; k != OpRmdir && k != OpUnlink {
			return false
		}
	}
	return true
}

// lunWaits says, for each group of a storage-object removal run, which
// groups of the LUN removal run before it remove a LUN linked to one of its
// objects (read through f: the Model answers from memory what Observe read).
// ok is false when a LUN's link cannot be read: then the run keeps its
// place.
func (a *applier) lunWaits(lunGroups, soGroups [][]int) (waits [][]int, ok bool) {
	users := map[string][]int{} // storage object directory -> LUN groups
	for g, ops := range lunGroups {
		for _, i := range ops {
			op := a.ops[i]
			if op.Kind != OpUnlink {
				continue
			}
			t, err := a.f.readlink(op.Path)
			if err != nil {
				return nil, false
			}
			if d := objectDir(t); d != "" {
				users[d] = append(users[d], g)
			}
		}
	}
	waits = make([][]int, len(soGroups))
	for g, ops := range soGroups {
		for _, i := range ops {
			if d := objectDir(a.ops[i].Path); d != "" {
				waits[g] = append(waits[g], users[d]...)
			}
		}
	}
	return waits, true
}

// startCore starts the groups of a storage-object run on up to workers
// goroutines, in order, and returns without waiting for them; before, if
// set, is called before each group starts, with its index.
func (a *applier) startCore(ctx context.Context, groups [][]int, workers int, before func(g int)) *coreRun {
	c := &coreRun{done: make([]chan struct{}, len(groups)), byObj: map[string][]int{}}
	for g, ops := range groups {
		c.done[g] = make(chan struct{})
		for _, i := range ops {
			if d := objectDir(a.ops[i].Path); d != "" {
				if l := c.byObj[d]; len(l) == 0 || l[len(l)-1] != g {
					c.byObj[d] = append(l, g)
				}
			}
		}
	}
	work := make(chan int, len(groups))
	for g := range groups {
		work <- g
	}
	close(work)
	for range min(workers, len(groups)) {
		c.all.Go(func() {
			for g := range work {
				if before != nil {
					before(g)
				}
				a.runGroup(ctx, groups[g], nil)
				close(c.done[g])
			}
		})
	}
	return c
}

// wait waits for the whole run; a nil run is over.
func (c *coreRun) wait() {
	if c != nil {
		c.all.Wait()
	}
}

// waitFor waits, before op, for the storage-object ops it needs; linked
// says whether an earlier op of its group linked to a storage object
// (then that object's ops are over, its ALUA groups included).
func (c *coreRun) waitFor(op Op, linked bool) {
	if c == nil {
		return
	}
	switch {
	case op.Kind == OpSymlink && strings.HasPrefix(op.Value, coreDir+"/"):
		for _, cg := range c.byObj[objectDir(op.Value)] {
			<-c.done[cg]
		}
	case op.Kind == OpWrite && path.Base(op.Path) == "alua_tg_pt_gp" && !linked:
		// names a group of the LUN's storage object, which the op does
		// not name
		c.wait()
	}
}

// objectDir is the storage object (target/core/HBA/name) or HBA
// (target/core/HBA) directory p is in, or "" outside target/core.
func objectDir(p string) string {
	parts := strings.SplitN(p, "/", 5)
	if len(parts) < 3 || parts[0]+"/"+parts[1] != coreDir {
		return ""
	}
	return strings.Join(parts[:min(4, len(parts))], "/")
}

// runRun runs one fabric run to its end: its groups on up to workers
// goroutines, each after the storage-object ops it needs. done, if given,
// has a channel per group, closed when that group's ops are over.
func (a *applier) runRun(ctx context.Context, groups [][]int, workers int, core *coreRun, done ...chan struct{}) {
	run := func(g int) {
		a.runGroup(ctx, groups[g], core)
		if done != nil {
			close(done[g])
		}
	}
	if len(groups) == 1 || workers == 1 {
		for g := range groups {
			run(g)
		}
		return
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(groups)) {
		wg.Go(func() {
			for g := range work {
				run(g)
			}
		})
	}
	for g := range groups {
		work <- g
	}
	close(work)
	wg.Wait()
}

type opState int8

const (
	opSkipped opState = iota
	opDone
	opFailed
)

type applier struct {
	f     FS
	trace func(int, bool)
	ops   []Op
	state []opState // by op index; each written by one worker only
	errs  []error
	t0    time.Time
	times []OpTiming

	mu         sync.Mutex
	failedDirs []string
	stopped    bool
}

// runGroup runs the ops at the indexes g, in order.
func (a *applier) runGroup(ctx context.Context, g []int, core *coreRun) {
	linked := false
	for _, i := range g {
		op := a.ops[i]
		core.waitFor(op, linked)
		linked = linked || (op.Kind == OpSymlink && strings.HasPrefix(op.Value, coreDir+"/"))
		a.mu.Lock()
		skip := under(op.Path, a.failedDirs)
		if err := ctx.Err(); err != nil && !a.stopped {
			a.stopped = true
			a.errs[i] = fmt.Errorf("lio: apply stopped before %s: %w", op, err)
		}
		stopped := a.stopped
		a.mu.Unlock()
		if skip || stopped {
			continue
		}
		if a.trace != nil {
			a.trace(i, true)
		}
		start := time.Now()
		err := run(a.f, op)
		a.times[i] = OpTiming{Index: i, StartUS: start.Sub(a.t0).Microseconds(), DurUS: time.Since(start).Microseconds()}
		if a.trace != nil {
			a.trace(i, false)
		}
		if err != nil {
			a.state[i] = opFailed
			a.errs[i] = fmt.Errorf("lio: %s: %w", op, err)
			if op.Kind == OpMkdir {
				a.mu.Lock()
				a.failedDirs = append(a.failedDirs, op.Path)
				a.mu.Unlock()
			}
			continue
		}
		a.state[i] = opDone
	}
}

// opClass says which kind of concurrent run an op can be part of: "so",
// "lun", "acl", or "" for an op that runs alone. keys name the objects it
// works on: ops sharing a key run in order on one worker.
func opClass(op Op) (class string, keys []string) {
	p := strings.Split(op.Path, "/")
	if len(p) < 3 || p[0] != "target" {
		return "", nil
	}
	switch {
	case p[1] == "core" && hbaRe.MatchString(p[2]):
		// One HBA per storage object; the name too, so that an object
		// re-created in another HBA waits for the old one to go.
		keys = []string{"hba:" + p[2]}
		if len(p) >= 4 {
			keys = append(keys, "so:"+p[3])
		}
		return "so", keys
	case p[1] == "iscsi" && len(p) >= 6 && tpgRe.MatchString(p[3]) && (p[4] == "lun" || p[4] == "acls"):
		class = "lun"
		if p[4] == "acls" {
			class = "acl"
		}
		return class, []string{strings.Join(p[:6], "/")}
	}
	return "", nil
}

// segments cuts ops into runs of consecutive indexes that may run
// concurrently: ops of one class in a row, or a single op.
func segments(ops []Op) [][]int {
	var out [][]int
	prev := ""
	for i, op := range ops {
		class, _ := opClass(op)
		if class != "" && class == prev {
			out[len(out)-1] = append(out[len(out)-1], i)
			continue
		}
		out = append(out, []int{i})
		prev = class
	}
	return out
}

// groupsOf splits a segment into groups of ops that share an object key
// (transitively), each in plan order; groups are ordered by their first op.
func groupsOf(ops []Op, seg []int) [][]int {
	if len(seg) == 1 {
		return [][]int{seg}
	}
	parent := make([]int, len(seg))
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	owner := map[string]int{}
	for j, i := range seg {
		_, keys := opClass(ops[i])
		for _, k := range keys {
			if o, ok := owner[k]; ok {
				parent[find(j)] = find(o)
			} else {
				owner[k] = j
			}
		}
	}
	idx := map[int]int{}
	var groups [][]int
	for j, i := range seg {
		r := find(j)
		g, ok := idx[r]
		if !ok {
			g = len(groups)
			idx[r] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func run(f FS, op Op) error {
	switch op.Kind {
	case OpMkdir:
		// An object that appeared since Observe is what we wanted, but only a
		// directory is an object: a file in its place would have the
		// attribute writes that follow fail on a path we recorded as made.
		err := f.mkdir(op.Path)
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, serr := os.Lstat(f.abs(op.Path)); serr != nil || !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: f.abs(op.Path), Err: syscall.ENOTDIR}
		}
		return nil
	case OpWrite:
		return f.write(op.Path, op.Value)
	case OpEnable:
		return f.write(op.Path+"/enable", "1")
	case OpDisable:
		return ignoreMissing(f.write(op.Path+"/enable", "0"))
	case OpSymlink:
		return f.symlink(op.Value, op.Path)
	case OpUnlink:
		return ignoreMissing(f.unlink(op.Path))
	case OpRmdir:
		return ignoreMissing(f.rmdir(op.Path))
	}
	return fmt.Errorf("unknown op kind %q", op.Kind)
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
