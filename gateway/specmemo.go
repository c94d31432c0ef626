package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
	"ceph-iscsi/settings"
)

// specMemo is SpecFromConfig for the successive documents of one gateway,
// remembering what each disk, target and client came to, so that a
// document that differs from the last one in a few objects costs about
// those objects, not the thousands of LUNs of its targets.
//
// What an object came to is reused when the document reports the object
// Frozen (so its pointer stands for its content, config/cow.go) and it is
// the object seen last time, or, for targets and clients, when what it
// came to compares equal to its content: a target a change copied still
// holds the same LUNs in a new map. Everything the result depends on
// besides the objects is either in the memo's key (gateway, settings, the
// key file, local addresses and gen, which the caller bumps whenever Size
// or Decrypt may answer differently) or checked per object: whether a disk
// is exported, which disks the last build dropped. Anything that failed
// is not remembered, so it is tried again next time; block and fileio
// disks are always resolved again, as their device path is not keyed.
//
// Which objects to look at comes from the document's change log
// (config.Doc.ChangesSince the document built last): only the disks and
// target LUNs it lists, the disks whose export it may have changed and
// the volatile ones (not reusable, or not frozen when read) are looked
// at; without a log (a decoded document, another branch) every disk is.
//
// The lio.Spec it returns shares its maps with the next ones: neither the
// caller nor lio.Builder may write them (it is Frozen). A map it changed
// is patched again into the spec after next (mapPair): the caller is done
// with a spec, lio.Builder.Build included, before it asks for the one
// after next.
type specMemo struct {
	mu    sync.Mutex
	valid bool
	key   specKey

	discOK   bool
	discAuth config.Auth
	discSpec lio.AuthSpec

	// disks are what each non-nil disk of the last document came to: the
	// keys of disksOut.cur, the last lio.Spec's Disks.
	disks    map[string]diskMemo
	disksOut mapPair[lio.DiskSpec]
	// bsCount counts the exported, resolved disks by backstore.
	bsCount map[string]int
	// dropped are the disks the last build left out of every target.
	dropped map[string]bool
	targets map[string]*targetMemo
	// sizes are the image sizes the remembered disks hold ("pool/image" ->
	// size), never changed once made: a caller may keep one build's.
	sizes *sizeSet
	// local are the targets built here last time, sorted.
	local []string
	// specGen counts the specs made: the lio.Spec.Gen of the last one,
	// which a hint (lio.SpecChanges) of the next names
	specGen uint64
	// stamp is the Stamp of the document built last (zero: none, or not a
	// fork): the next document's ChangesSince it names the disks and
	// targets that may differ, and a build looks at those only, instead
	// of thousands of disks and LUNs that did not change.
	stamp config.Stamp
	// pending are the changes since the document built last up to the one
	// at stamp, which the memo was told of (advance) but did not build: a
	// document of a content built before is not built again, and the
	// lineage of the next goes through it.
	pending []config.Change
	// volatile are the disks a build looks at again whatever the change
	// log says: their memo is not reusable (a failure, a block or fileio
	// device path, a dropped size) or they were not frozen when read.
	volatile map[string]bool
	// verify checks every conclusion drawn from a change log against a
	// full walk, and panics on a difference (Options.VerifyReuse): a test
	// must not pass over a change made behind the log's back.
	verify bool
	// guided counts the builds a change log guided, for tests
	guided int
}

type specKey struct {
	gateway  string
	settings lio.Settings
	keyPath  string
	addrs    []netip.Addr
	addrsSet bool
	// whether opts.Size and opts.Decrypt are set
	size, decrypt bool
	gen           uint64
}

func (k specKey) equal(o specKey) bool {
	return k.gateway == o.gateway && k.settings == o.settings && k.keyPath == o.keyPath &&
		k.addrsSet == o.addrsSet && slices.Equal(k.addrs, o.addrs) && k.size == o.size && k.decrypt == o.decrypt && k.gen == o.gen
}

// diskMemo is what a disk came to, besides its lio.DiskSpec (in
// disksOut): small, so that the memo's map holds it in place.
type diskMemo struct {
	src *config.Disk
	// bs is the backstore it counts in bsCount, "" for none
	bs string
	// size is its DiskSpec's Size, when sized
	size int64
	// frozen: src could no longer change when it was read
	frozen   bool
	exported bool
	// reusable: its DiskSpec may stand for src (resolved without error,
	// nothing unkeyed read for it)
	reusable bool
	// sized: the size was read, and is in sizes
	sized bool
}

// diskChange is a disk made again, as the edit of the spec's disks it
// is: key its id, val its DiskSpec.
type diskChange = mapEdit[lio.DiskSpec]

type targetMemo struct {
	src    *config.Target
	frozen bool
	// lunMap is the LUN map ts.Disks was made from; lunMapFrozen: nobody
	// writes it any more (it was a frozen target's)
	lunMap       map[string]config.LunRef
	lunMapFrozen bool
	local        []string
	// reusable: ts may stand for src with the same local addresses (no
	// error in it)
	reusable bool
	ts       lio.TargetSpec
	// luns make ts.Disks (its cur), carried from one memo of the target
	// to the next; clientsOut likewise ts.Clients when clients is set.
	luns       *mapPair[int]
	clientsOut *mapPair[lio.ClientSpec]
	authOK     bool
	auth       config.Auth
	// clients are what the clients in ts.Clients came to (nil: none
	// remembered)
	clients map[string]*clientMemo
}

type clientMemo struct {
	src    *config.Client
	frozen bool
	auth   config.Auth
	cs     lio.ClientSpec
}

// reset forgets everything.
func (m *specMemo) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clear()
}

func (m *specMemo) clear() {
	m.valid, m.key = false, specKey{}
	m.discOK, m.discAuth, m.discSpec = false, config.Auth{}, lio.AuthSpec{}
	m.disks, m.disksOut, m.bsCount, m.dropped = map[string]diskMemo{}, mapPair[lio.DiskSpec]{}, map[string]int{}, nil
	m.targets, m.sizes, m.local = map[string]*targetMemo{}, nil, nil
	m.stamp, m.pending, m.volatile = config.Stamp{}, nil, map[string]bool{}
}

// maxPending bounds specMemo.pending: past it a full walk costs less.
const maxPending = 256

// advance tells m of doc, whose state was found built already: the next
// document may be a fork of it, and the change log through doc tells
// what that one changed since the document m built last.
func (m *specMemo) advance(doc *config.Doc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.valid || m.stamp == (config.Stamp{}) {
		return
	}
	ch, ok := doc.ChangesSince(m.stamp)
	if !ok {
		// doc is no descendant: the next document may still be one of
		// the last stamp's
		return
	}
	if len(m.pending)+len(ch) > maxPending {
		m.stamp, m.pending = config.Stamp{}, nil
		return
	}
	m.pending = append(m.pending, ch...)
	m.stamp = doc.Stamp()
}

// pruneSizes runs prune, which drops sizes from the size cache and
// returns their ids, and forgets them: a disk whose size the memo holds is
// reused without asking its size again, so the memo holds only cached
// sizes. The memo is locked meanwhile: no build reuses one being dropped.
func (m *specMemo) pruneSizes(prune func() []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var edits map[string]sizeEdit
	for _, id := range prune() {
		if _, ok := m.sizes.get(id); !ok {
			continue
		}
		if edits == nil {
			edits = map[string]sizeEdit{}
		}
		edits[id] = sizeEdit{gone: true}
		if e, ok := m.disks[id]; ok {
			e.reusable, e.sized = false, false
			m.disks[id] = e
			m.volatile[id] = true
		}
	}
	if edits != nil {
		m.sizes = m.sizes.with(edits)
	}
}

// spec is SpecFromConfig(doc, gateway, s, opts), reusing what the last
// call built; it also returns the image sizes the spec holds that it did
// not ask opts.Size for. gen must change whenever opts.Size or
// opts.Decrypt may answer differently for the same question
// (opts.DevicePath is always asked). prefetch, when set, is told the disks
// whose facts are about to be asked for one by one, when there are several.
func (m *specMemo) spec(doc *config.Doc, gateway string, s *settings.Settings, opts FromConfigOptions, gen uint64,
	prefetch func(ids []string)) (lio.Spec, *sizeSet, error) {
	if s == nil {
		s = settings.Defaults()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if doc == nil || doc.Gateways[gateway] == nil || len(opts.ManagedTargets) > 0 || len(opts.ManagedStorageObjects) > 0 {
		m.clear()
		spec, err := SpecFromConfig(doc, gateway, s, opts)
		return spec, nil, err
	}
	key := specKey{gateway: gateway, settings: settingsFrom(s), keyPath: s.PrivKeyPath(),
		addrs: slices.Clone(opts.LocalAddrs), addrsSet: opts.LocalAddrs != nil,
		size: opts.Size != nil, decrypt: opts.Decrypt != nil, gen: gen}
	// the last spec is this memo's, made with the same facts: what
	// differs from it is what this build changes (lio.SpecChanges)
	hinted := m.valid && m.key.equal(key)
	if !hinted {
		m.clear()
		m.key = key
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &adapter{doc: doc, gateway: gateway, opts: opts, log: log, dec: opts.Decrypt}
	if a.dec == nil {
		a.dec = (&rsaDecrypter{path: key.keyPath}).decrypt
	}
	spec := lio.Spec{
		Gateway:  gateway,
		Settings: key.settings,
		Targets:  make(map[string]lio.TargetSpec, len(doc.Targets)),
		Names:    lio.NameRules{IQN: config.ValidateIQN, Object: config.ValidateSafeName},
		// its maps are never written once handed out (copied to be
		// patched), nor are the Controls of its disks (a frozen disk's,
		// or copied), so a Builder tells the unchanged ones at once
		Frozen: true,
	}
	// m is valid only if this build gets to its end
	m.valid = false
	stamp := doc.Stamp()
	b := memoBuild{m: m, a: a, doc: doc, prefetch: prefetch}
	if m.stamp != (config.Stamp{}) {
		if ch, ok := doc.ChangesSince(m.stamp); ok {
			b.log = changesOf(append(m.pending, ch...))
			m.guided++
		}
	}
	m.stamp, m.pending = config.Stamp{}, nil
	if hinted {
		b.hint = &lio.SpecChanges{Since: m.specGen, Targets: map[string]lio.TargetChanges{}}
	}
	disksSteps := m.disksOut.steps
	b.build(&spec)
	m.specGen++
	spec.Gen = m.specGen
	if b.hint != nil && m.disksOut.steps == disksSteps+1 && m.disksOut.stepKnown {
		b.hint.Disks = m.disksOut.step
		spec.Changes = b.hint
	}
	m.valid, m.stamp = true, stamp
	return spec, m.sizes, errors.Join(a.errs...)
}

type memoBuild struct {
	m        *specMemo
	a        *adapter
	doc      *config.Doc
	prefetch func(ids []string)
	// log is what may have changed since the document the memo built
	// last, nil when unknown: everything is looked at
	log *docChanges
	// hint gathers what this spec changes from the memo's last one (nil:
	// unknown), for lio.Builder
	hint *lio.SpecChanges
}

// lunsListed reports whether the log lists every LUN of target iqn
// (t, what prev came from last time) that may have changed: the
// target was not replaced as a whole, and its LUN map, nil or not, is
// changed only by the entries logged.
func (c *docChanges) lunsListed(iqn string, t *config.Target, prev *targetMemo) bool {
	if tc := c.targets[iqn]; tc != nil && tc.whole {
		return false
	}
	return (t.Disks == nil) == (prev.lunMap == nil)
}

// listedLuns are the LUNs of target iqn the log lists.
func (c *docChanges) listedLuns(iqn string) []string {
	if tc := c.targets[iqn]; tc != nil {
		return tc.luns
	}
	return nil
}

// authEqual compares what of an auth block reaches LIO.
func authEqual(x, y config.Auth) bool {
	return x.Username == y.Username && x.Password == y.Password && x.PasswordEncryptionEnabled == y.PasswordEncryptionEnabled &&
		x.MutualUsername == y.MutualUsername && x.MutualPassword == y.MutualPassword &&
		x.MutualPasswordEncryptionEnabled == y.MutualPasswordEncryptionEnabled
}

// authFields is c without what does not reach LIO, to be kept.
func authFields(c config.Auth) config.Auth {
	c.Extra = nil
	return c
}

// build is adapter.build, with the same problems in the same order.
func (b *memoBuild) build(spec *lio.Spec) {
	m, a, doc := b.m, b.a, b.doc
	if m.discOK && authEqual(m.discAuth, doc.DiscoveryAuth) {
		spec.DiscoveryAuth, spec.ManageDiscoveryAuth = m.discSpec, true
	} else {
		m.discOK = false
		disc, err := a.auth(doc.DiscoveryAuth)
		if err != nil {
			a.fail(lio.ObjectError{DiscoveryAuth: true}, "lio: discovery_auth: %w", err)
		} else {
			spec.DiscoveryAuth, spec.ManageDiscoveryAuth = disc, true
			m.discOK, m.discAuth, m.discSpec = true, authFields(doc.DiscoveryAuth), disc
		}
	}

	iqns := slices.Sorted(maps.Keys(doc.Targets))
	localIPs := map[string][]string{}
	var local []string
	var localDisks []map[string]config.LunRef
	for _, iqn := range iqns {
		t := doc.Targets[iqn]
		if t == nil {
			continue
		}
		if ips, ok := a.localIPs(iqn, t); ok {
			localIPs[iqn] = ips
			local = append(local, iqn)
			localDisks = append(localDisks, t.Disks)
		}
	}
	ex := exports{localDisks: localDisks}

	// What changed in each target's LUNs since the last build, when that
	// build left out no disk (its LUN maps are the targets' then): when
	// the same targets are built here, the disks exported or no longer
	// exported are among those, and nothing else need be looked up.
	diffs := map[string][]string{}
	if len(m.dropped) == 0 {
		for _, iqn := range iqns {
			t, prev := doc.Targets[iqn], m.targets[iqn]
			switch {
			case t == nil || prev == nil:
			case prev.lunMapFrozen && sameMap(t.Disks, prev.lunMap):
				// a target copied for a change of its clients borrows the
				// LUN map of the one it was copied from (config/cow.go),
				// which, frozen, nobody writes
				diffs[iqn] = nil
			case b.log != nil && b.log.lunsListed(iqn, t, prev):
				// a LUN not logged is what it was (config/lineage.go)
				diffs[iqn] = b.log.listedLuns(iqn)
				if m.verify {
					verifyListed("target "+iqn+" LUN", lunDiff(t.Disks, prev.ts.Disks), diffs[iqn])
				}
			default:
				diffs[iqn] = lunDiff(t.Disks, prev.ts.Disks)
			}
		}
		ex.known = m.disksOut.cur != nil && slices.Equal(local, m.local)
		for _, iqn := range local {
			d, ok := diffs[iqn]
			ex.known = ex.known && ok
			for _, id := range d {
				if ex.changed == nil {
					ex.changed = map[string]bool{}
				}
				ex.changed[id] = true
			}
		}
	}
	m.local = local

	dropped := b.disks(spec, &ex)
	// the disks whose being dropped changed, which the targets that use
	// them must see
	var flipped []string
	for id := range dropped {
		if !m.dropped[id] {
			flipped = append(flipped, id)
		}
	}
	for id := range m.dropped {
		if !dropped[id] {
			flipped = append(flipped, id)
		}
	}
	m.dropped = dropped

	for _, iqn := range iqns {
		t := doc.Targets[iqn]
		if t == nil {
			continue
		}
		local := localIPs[iqn]
		prev := m.targets[iqn]
		if prev != nil && prev.reusable && prev.frozen && prev.src == t && doc.Frozen(t) &&
			(prev.local == nil) == (local == nil) && slices.Equal(prev.local, local) && !usesAny(t, flipped) {
			spec.Targets[iqn] = prev.ts
			continue
		}
		d, known := diffs[iqn]
		tm := b.target(iqn, t, local, dropped, flipped, prev, d, known)
		m.targets[iqn] = tm
		spec.Targets[iqn] = tm.ts
		if b.hint != nil {
			// both maps patched from the last spec's in this build, the
			// target's other fields compared by the Builder
			tc := lio.TargetChanges{All: true}
			if prev != nil && tm.luns.stepKnown && tm.clientsOut != nil && tm.clientsOut.stepKnown && tm.clientsOut == prev.clientsOut {
				tc = lio.TargetChanges{Fields: true, Disks: tm.luns.step, Clients: tm.clientsOut.step}
			}
			b.hint.Targets[iqn] = tc
		}
	}
	if len(m.targets) > len(spec.Targets) {
		for iqn := range m.targets {
			if _, ok := spec.Targets[iqn]; !ok {
				delete(m.targets, iqn)
				if b.hint != nil {
					b.hint.Targets[iqn] = lio.TargetChanges{All: true}
				}
			}
		}
	}
}

// localIPs is this gateway's local TPG addresses of target t, as
// adapter.build computes them; ok false: t is not built here.
func (a *adapter) localIPs(iqn string, t *config.Target) (ips []string, ok bool) {
	p := t.Portals[a.gateway]
	if p == nil {
		return nil, false
	}
	ips = p.PortalIPAddresses
	if a.opts.LocalAddrs != nil {
		ips = nil
		for _, ip := range t.IPList {
			if isLocal(a.opts.LocalAddrs, ip) {
				ips = append(ips, ip)
			}
		}
		if len(ips) == 0 {
			// upstream's message, so operators can search for it
			a.fail(lio.ObjectError{Target: iqn}, "lio: target %s: gateway IP addresses provided do not match any ip on this host (ip_list %v)", iqn, t.IPList)
			return nil, false
		}
	}
	if ips == nil {
		ips = []string{} // listed here without addresses: built, with no local TPG
	}
	return ips, true
}

// usesAny reports whether target t or one of its clients has a LUN of one
// of the disks ids.
func usesAny(t *config.Target, ids []string) bool {
	for _, id := range ids {
		if _, ok := t.Disks[id]; ok {
			return true
		}
		for _, c := range t.Clients {
			if c != nil && lunsUse(c.Luns, ids) {
				return true
			}
		}
	}
	return false
}

func lunsUse(luns map[string]config.LunRef, ids []string) bool {
	for _, id := range ids {
		if _, ok := luns[id]; ok {
			return true
		}
	}
	return false
}

// disks fills spec.Disks and spec.Backstore, and returns the disks dropped
// from every target.
func (b *memoBuild) disks(spec *lio.Spec, ex *exports) map[string]bool {
	m, a, doc := b.m, b.a, b.doc
	dropped := map[string]bool{}
	var changed []diskChange
	var resolve []int // the changes to resolve: exported disks
	var failed []string
	failures := map[string]error{}
	visit := func(id string, d *config.Disk) {
		e, had := m.disks[id]
		var exp bool
		if had && ex.known && !ex.changed[id] {
			exp = e.exported
		} else {
			exp = ex.exported(id)
		}
		// (frozen when it was read, it still is: d itself is not read)
		if had && e.reusable && e.frozen && e.src == d && e.exported == exp {
			delete(m.volatile, id)
			return
		}
		if had {
			m.uncount(e)
		}
		ne := diskMemo{src: d, frozen: doc.Frozen(d), exported: exp, reusable: true}
		ds := lio.DiskSpec{Pool: d.Pool, Image: d.Image, WWN: d.WWN, BackstoreObjectName: d.BackstoreObjectName, Controls: d.Controls}
		if !ne.frozen {
			// the document may still write a disk it owns in place
			ds.Controls = maps.Clone(d.Controls)
		}
		if d.Owner != nil {
			ds.Owner = *d.Owner
		}
		m.disks[id] = ne
		changed = append(changed, diskChange{key: id, val: ds})
		if exp {
			resolve = append(resolve, len(changed)-1)
		}
	}
	var removed []string
	if b.log != nil && ex.known {
		// only the disks logged, those whose export may have changed and
		// the volatile ones can differ from what the memo holds
		visited := make(map[string]bool, len(b.log.disks)+len(ex.changed)+len(m.volatile))
		look := func(id string) {
			if visited[id] {
				return
			}
			visited[id] = true
			if d := doc.Disks[id]; d != nil {
				visit(id, d)
			} else if _, had := m.disks[id]; had {
				removed = append(removed, id)
			}
		}
		for id := range b.log.disks {
			look(id)
		}
		for id := range ex.changed {
			look(id)
		}
		for id := range m.volatile {
			look(id)
		}
		defer func() {
			if m.verify {
				b.verifyDisks(ex, visited)
			}
		}()
	} else {
		seen := 0
		for id, d := range doc.Disks {
			if d != nil {
				seen++
				visit(id, d)
			}
		}
		if len(m.disks) > seen {
			for id := range m.disks {
				if doc.Disks[id] == nil {
					removed = append(removed, id)
				}
			}
		}
	}
	for _, id := range removed {
		m.uncount(m.disks[id])
		delete(m.disks, id)
		delete(m.volatile, id)
	}
	if b.prefetch != nil && len(resolve) > 1 {
		ids := make([]string, len(resolve))
		for i, c := range resolve {
			ids[i] = changed[c].key
		}
		b.prefetch(ids)
	}
	for _, c := range resolve {
		id, ds := changed[c].key, &changed[c].val
		d, ne := doc.Disks[id], m.disks[id]
		bs, err := a.resolveDisk(id, d, ds)
		switch {
		case errors.Is(err, ErrImageNotFound):
			a.log.Warn("skipping disk: its RBD image does not exist", "disk", id, "err", err)
			dropped[id] = true
			ne.reusable = false
		case err != nil:
			failed = append(failed, id)
			failures[id] = err
			dropped[id] = true
			ne.reusable = false
		default:
			ne.bs = bs
			m.bsCount[bs]++
			// a device path is not keyed, and the sizes are kept
			// by their "pool/image"
			ne.reusable = bs == lio.BackstoreUserRBD && id == config.DiskID(d.Pool, d.Image)
			ne.sized = ne.reusable && a.opts.Size != nil
			ne.size = ds.Size
		}
		m.disks[id] = ne
	}
	for _, c := range changed {
		if e := m.disks[c.key]; e.reusable && e.frozen {
			delete(m.volatile, c.key)
		} else {
			m.volatile[c.key] = true
		}
	}
	b.patchDisks(spec, changed, removed)

	slices.Sort(failed)
	for _, id := range failed {
		a.errs = append(a.errs, &lio.ObjectError{Disk: id, Err: failures[id]})
	}
	spec.Backstore = lio.BackstoreUserRBD
	switch len(m.bsCount) {
	case 0:
	case 1:
		for bs := range m.bsCount {
			spec.Backstore = bs
		}
	default:
		backstores := map[string][]string{}
		for id, e := range m.disks {
			if e.bs != "" {
				backstores[e.bs] = append(backstores[e.bs], id)
			}
		}
		a.failMixed(backstores, dropped)
	}
	return dropped
}

// verifyDisks panics unless every disk of the document a build guided by
// the change log did not look at (visited) is one the memo holds as
// reusable, and the memo holds no disk the document does not.
func (b *memoBuild) verifyDisks(ex *exports, visited map[string]bool) {
	n := 0
	for id, d := range b.doc.Disks {
		if d == nil {
			continue
		}
		n++
		if visited[id] {
			continue
		}
		e, had := b.m.disks[id]
		if !had || !e.reusable || !e.frozen || e.src != d || e.exported != ex.exported(id) {
			panic(fmt.Sprintf("gateway: disk %s changed behind its document's change log", id))
		}
	}
	if n != len(b.m.disks) {
		panic(fmt.Sprintf("gateway: the spec memo holds %d disks, the document %d: one went behind its change log", len(b.m.disks), n))
	}
}

// verifyListed panics unless every id of full is in listed: what a change
// log listed must cover what a full walk finds.
func verifyListed(what string, full, listed []string) {
	for _, id := range full {
		if !slices.Contains(listed, id) {
			panic(fmt.Sprintf("gateway: %s %s changed behind its document's change log", what, id))
		}
	}
}

// exports says which disks the targets built here export.
type exports struct {
	localDisks []map[string]config.LunRef
	// known: a disk not in changed is exported as it was last time
	known   bool
	changed map[string]bool
}

func (x *exports) exported(id string) bool {
	for _, d := range x.localDisks {
		if _, ok := d[id]; ok {
			return true
		}
	}
	return false
}

// lunDiff lists the disks whose LUN differs between refs and last, a
// target's LUNs and what they came to last time.
func lunDiff(refs map[string]config.LunRef, last map[string]int) []string {
	var ids []string
	in := 0
	for id, l := range refs {
		v, ok := last[id]
		if ok {
			in++
		}
		if !ok || v != l.LunID {
			ids = append(ids, id)
		}
	}
	if in != len(last) {
		for id := range last {
			if _, ok := refs[id]; !ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// uncount takes e out of the backstore counts.
func (m *specMemo) uncount(e diskMemo) {
	if e.bs == "" {
		return
	}
	if m.bsCount[e.bs]--; m.bsCount[e.bs] == 0 {
		delete(m.bsCount, e.bs)
	}
}

// patchDisks makes spec.Disks the last one with the disks changed and
// removed patched in (the last one itself when none were: see mapPair),
// and the held sizes likewise.
func (b *memoBuild) patchDisks(spec *lio.Spec, changed []diskChange, removed []string) {
	m := b.m
	edits := changed
	for _, id := range removed {
		edits = append(edits, mapEdit[lio.DiskSpec]{key: id, del: true})
	}
	spec.Disks = m.disksOut.next(edits)

	var sizeEdits map[string]sizeEdit
	edit := func(id string, e sizeEdit) {
		if sizeEdits == nil {
			sizeEdits = map[string]sizeEdit{}
		}
		sizeEdits[id] = e
	}
	for _, c := range changed {
		e := m.disks[c.key]
		n, had := m.sizes.get(c.key)
		switch {
		case e.sized && (!had || n != e.size):
			edit(c.key, sizeEdit{n: e.size})
		case !e.sized && had:
			edit(c.key, sizeEdit{gone: true})
		}
	}
	for _, id := range removed {
		if _, had := m.sizes.get(id); had {
			edit(id, sizeEdit{gone: true})
		}
	}
	if sizeEdits != nil {
		m.sizes = m.sizes.with(sizeEdits)
	}
}

// sizeSet is an immutable "pool/image" -> size map: a base shared by the
// sets made from it, and the few edits since, so that a change of one
// disk does not copy the sizes of thousands. nil is the empty set.
type sizeSet struct {
	base  map[string]int64
	edits map[string]sizeEdit
	n     int
	// id names the set (0 is nil's), and hist are the last steps that
	// made it, oldest first: a reader holding a set from a few steps
	// before learns which sizes may differ without comparing thousands
	// (changedSince). It names the sets before by id, not pointer, so that
	// it keeps none of them alive.
	id   uint64
	hist []sizeStep
}

// sizeStep is one with: the set it was made from and the ids it edited.
type sizeStep struct {
	from uint64
	ids  []string
}

var sizeSetIDs atomic.Uint64

// sizeHist bounds a set's hist: the steps, and the ids they hold (the
// last step is kept whatever its size).
const sizeHistSteps, sizeHistIDs = 8, 512

// changedSince lists the ids whose size may differ between old and s (an
// id may be listed more than once), and true; false when s was not made
// from old in the last few steps.
func (s *sizeSet) changedSince(old *sizeSet) ([]string, bool) {
	var id, oldID uint64
	var hist []sizeStep
	if s != nil {
		id, hist = s.id, s.hist
	}
	if old != nil {
		oldID = old.id
	}
	if id == oldID {
		return nil, true
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].from == oldID {
			var ids []string
			for _, st := range hist[i:] {
				ids = append(ids, st.ids...)
			}
			return ids, true
		}
	}
	return nil, false
}

type sizeEdit struct {
	n    int64
	gone bool
}

func (s *sizeSet) get(id string) (int64, bool) {
	if s == nil {
		return 0, false
	}
	if e, ok := s.edits[id]; ok {
		return e.n, !e.gone
	}
	n, ok := s.base[id]
	return n, ok
}

func (s *sizeSet) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

func (s *sizeSet) each(f func(id string, n int64)) {
	if s == nil {
		return
	}
	for id, n := range s.base {
		if _, edited := s.edits[id]; !edited {
			f(id, n)
		}
	}
	for id, e := range s.edits {
		if !e.gone {
			f(id, e.n)
		}
	}
}

// with is s with edits made.
func (s *sizeSet) with(edits map[string]sizeEdit) *sizeSet {
	out := &sizeSet{n: s.len(), id: sizeSetIDs.Add(1)}
	step := sizeStep{ids: slices.Collect(maps.Keys(edits))}
	if s != nil {
		out.base = s.base
		out.edits = maps.Clone(s.edits)
		step.from = s.id
		hist, n := s.hist, len(step.ids)
		keep := len(hist)
		for keep > 0 && len(hist)-keep < sizeHistSteps-1 && n+len(hist[keep-1].ids) <= sizeHistIDs {
			keep--
			n += len(hist[keep].ids)
		}
		out.hist = append(out.hist, hist[keep:]...)
	}
	out.hist = append(out.hist, step)
	if out.edits == nil {
		out.edits = map[string]sizeEdit{}
	}
	for id, e := range edits {
		_, had := out.get(id)
		switch {
		case had && e.gone:
			out.n--
		case !had && !e.gone:
			out.n++
		}
		if _, inBase := out.base[id]; e.gone && !inBase {
			delete(out.edits, id)
		} else {
			out.edits[id] = e
		}
	}
	if len(out.edits) > 64+len(out.base)/16 {
		// the edits would cost more than a new base
		base := make(map[string]int64, out.n)
		out.each(func(id string, n int64) { base[id] = n })
		out.base, out.edits = base, nil
	}
	return out
}

// target is adapter.target for t, made from what prev (nil: nothing) came
// to where that still holds.
//
// diff, when known, lists the disks whose LUN changed since last time.
func (b *memoBuild) target(iqn string, t *config.Target, local []string, dropped map[string]bool, flipped []string, prev *targetMemo,
	diff []string, known bool) *targetMemo {
	a, doc := b.a, b.doc
	ts := lio.TargetSpec{
		ACLEnabled: t.ACLEnabled,
		Controls:   t.Controls,
		IPList:     t.IPList,
		Portals:    make(map[string][]string, len(t.Portals)),
	}
	luns := &mapPair[int]{}
	if prev != nil && prev.luns != nil {
		luns = prev.luns
	}
	if known {
		ts.Disks = luns.next(listedEdits(t.Disks, luns.cur, dropped, diff, flipped))
	} else {
		ts.Disks = luns.next(lunEdits(t.Disks, luns.cur, dropped))
	}
	for gw, p := range t.Portals {
		if p != nil && gw != a.gateway {
			ts.Portals[gw] = p.PortalIPAddresses
		}
	}
	tm := &targetMemo{src: t, frozen: doc.Frozen(t), local: slices.Clone(local), lunMap: t.Disks, luns: luns}
	// (a map once a frozen target's stays unwritten, whoever borrows it)
	tm.lunMapFrozen = tm.frozen || prev != nil && prev.lunMapFrozen && sameMap(t.Disks, prev.lunMap)
	if local == nil {
		ts.Clients = make(map[string]lio.ClientSpec, len(t.Clients))
		tm.ts, tm.reusable = ts, true // not built here: managed only
		return tm
	}
	var auth lio.AuthSpec
	if prev != nil && prev.authOK && authEqual(prev.auth, t.Auth) {
		auth = prev.ts.Auth
	} else {
		var err error
		if auth, err = a.auth(t.Auth); err != nil {
			// Without its CHAP the target would be open to anyone: leave it unbuilt.
			a.fail(lio.ObjectError{Target: iqn}, "lio: target %s: auth: %w", iqn, err)
			ts.Clients = make(map[string]lio.ClientSpec, len(t.Clients))
			tm.ts = ts
			return tm
		}
	}
	tm.authOK, tm.auth = true, authFields(t.Auth)
	ts.Auth = auth
	ts.Portals[a.gateway] = local

	// the clients in the last spec (out.cur), and the changes to them
	out := &mapPair[lio.ClientSpec]{}
	memo := map[string]*clientMemo{}
	if prev != nil && prev.clients != nil {
		out, memo = prev.clientsOut, prev.clients
	}
	var edits []mapEdit[lio.ClientSpec]
	var failed []string
	failures := map[string]error{}
	kept := 0
	for ini, c := range t.Clients {
		if c == nil {
			continue
		}
		ce := memo[ini]
		// (frozen when it was read, it still is: c itself is not read)
		if ce != nil && ce.frozen && ce.src == c && (len(flipped) == 0 || !lunsUse(c.Luns, flipped)) {
			kept++
			continue
		}
		sameAuth := ce != nil && authEqual(ce.auth, c.Auth)
		if sameAuth && sameLUNs(c.Luns, ce.cs.LUNs, dropped) {
			// a copy of what it was: frozen now, its pointer will do
			ce.src, ce.frozen = c, doc.Frozen(c)
			kept++
			continue
		}
		var auth lio.AuthSpec
		if sameAuth {
			auth = ce.cs.Auth
		} else {
			var err error
			if auth, err = a.auth(c.Auth); err != nil {
				failed = append(failed, ini)
				failures[ini] = err
				if ce != nil {
					delete(memo, ini)
					edits = append(edits, mapEdit[lio.ClientSpec]{key: ini, del: true})
				}
				continue
			}
		}
		cs := lio.ClientSpec{Auth: auth, LUNs: make(map[string]int, len(c.Luns))}
		for id, l := range c.Luns {
			if !dropped[id] {
				cs.LUNs[id] = l.LunID
			}
		}
		memo[ini] = &clientMemo{src: c, frozen: doc.Frozen(c), auth: authFields(c.Auth), cs: cs}
		edits = append(edits, mapEdit[lio.ClientSpec]{key: ini, val: cs})
		kept++
	}
	if len(memo) != kept {
		// clients gone since (or now nil)
		for ini := range memo {
			if t.Clients[ini] == nil {
				delete(memo, ini)
				edits = append(edits, mapEdit[lio.ClientSpec]{key: ini, del: true})
			}
		}
	}
	ts.Clients = out.next(edits)
	tm.clients, tm.clientsOut = memo, out
	slices.Sort(failed)
	for _, ini := range failed {
		a.fail(lio.ObjectError{Target: iqn, Client: ini}, "lio: target %s client %s: %w", iqn, ini, failures[ini])
	}
	tm.ts, tm.reusable = ts, len(failed) == 0
	return tm
}

// lunEdits are the edits that make prev (nil: none) the disk id -> LUN
// id map of refs without the dropped disks: none when that is what it
// holds.
func lunEdits(refs map[string]config.LunRef, prev map[string]int, dropped map[string]bool) []mapEdit[int] {
	var edits []mapEdit[int]
	n, added := 0, 0
	for id, l := range refs {
		if dropped[id] {
			continue
		}
		n++
		v, ok := prev[id]
		if ok && v == l.LunID {
			continue
		}
		if !ok {
			added++
		}
		edits = append(edits, mapEdit[int]{key: id, val: l.LunID})
	}
	if len(prev)+added != n {
		// some of prev are gone
		for id := range prev {
			if _, ok := refs[id]; !ok || dropped[id] {
				edits = append(edits, mapEdit[int]{key: id, del: true})
			}
		}
	}
	return edits
}

// listedEdits is lunEdits when only the disks of the lists can differ
// from prev.
func listedEdits(refs map[string]config.LunRef, prev map[string]int, dropped map[string]bool, lists ...[]string) []mapEdit[int] {
	var edits []mapEdit[int]
	for _, ids := range lists {
		for _, id := range ids {
			l, ok := refs[id]
			ok = ok && !dropped[id]
			v, had := prev[id]
			if ok == had && (!ok || v == l.LunID) {
				continue
			}
			// (an id in two lists is edited twice, to the same end)
			edits = append(edits, mapEdit[int]{key: id, val: l.LunID, del: !ok})
		}
	}
	return edits
}

// sameLUNs reports whether luns without the dropped disks is want.
func sameLUNs(luns map[string]config.LunRef, want map[string]int, dropped map[string]bool) bool {
	n := 0
	for id, l := range luns {
		if dropped[id] {
			continue
		}
		n++
		if v, ok := want[id]; !ok || v != l.LunID {
			return false
		}
	}
	return n == len(want)
}

// exportersMemo is blockExporters for the successive documents of one
// gateway: it walks every disk and target, and a change that touches no
// block disk, nor a LUN or portal of a target while there are any, leaves
// its answer as it was.
type exportersMemo struct {
	mu sync.Mutex
	// stamp is the Stamp of the document out is blockExporters of (zero:
	// none); block are the ids of its block disks.
	stamp config.Stamp
	out   map[string]int
	block map[string]bool
	// verify: see specMemo.verify
	verify bool
}

// get is blockExporters(doc), which the caller only reads.
func (m *exportersMemo) get(doc *config.Doc) map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stamp != (config.Stamp{}) {
		if log, ok := doc.ChangesSince(m.stamp); ok && !m.touched(doc, log) {
			if m.verify {
				if full := blockExporters(doc); !maps.Equal(full, m.out) {
					panic(fmt.Sprintf("gateway: block exporters changed behind the document's change log: %v, memoized %v", full, m.out))
				}
			}
			m.stamp = doc.Stamp()
			return m.out
		}
	}
	m.out = blockExporters(doc)
	m.stamp = doc.Stamp()
	clear(m.block)
	for id, d := range doc.Disks {
		if d != nil && d.Backstore == lio.BackstoreBlock {
			if m.block == nil {
				m.block = map[string]bool{}
			}
			m.block[id] = true
		}
	}
	return m.out
}

// touched reports whether a change of log may change blockExporters.
func (m *exportersMemo) touched(doc *config.Doc, log []config.Change) bool {
	for _, c := range log {
		switch c.Kind {
		case config.ChangedDisk:
			if d := doc.Disks[c.Key]; m.block[c.Key] || d != nil && d.Backstore == lio.BackstoreBlock {
				return true
			}
		case config.ChangedTargetLun:
			if m.block[c.Key] {
				return true
			}
		case config.ChangedTarget, config.ChangedPortal:
			// a target's LUNs or its gateways
			if len(m.block) > 0 {
				return true
			}
		}
	}
	return false
}
