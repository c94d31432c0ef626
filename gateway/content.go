package gateway

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"iter"
	"maps"
	"reflect"
	"sync"
	"unsafe"

	"ceph-iscsi/config"
)

// digest is a 128-bit fingerprint of what a document gives LIO.
type digest [2]uint64

// contentSeeds are this process's: a digest is never stored or sent.
var contentSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// hasher gathers what it is given in a buffer, hashed by two
// independently seeded hashes at sum: one call each instead of a call per
// field, which made the digest of a 4096-disk document cost milliseconds.
// Map entries are hashed each on their own and summed, so a map's digest
// does not depend on iteration order and needs no sort.
type hasher struct{ buf []byte }

func newHasher() *hasher { return &hasher{buf: make([]byte, 0, 256)} }

func (h *hasher) num(n uint64) { h.buf = binary.LittleEndian.AppendUint64(h.buf, n) }

func (h *hasher) str(s string) {
	h.num(uint64(len(s)))
	h.buf = append(h.buf, s...)
}

func (h *hasher) boolean(b bool) {
	if b {
		h.num(1)
	} else {
		h.num(0)
	}
}

func (h *hasher) digest(d digest) { h.num(d[0]); h.num(d[1]) }

func (h *hasher) sum() digest {
	return digest{maphash.Bytes(contentSeeds[0], h.buf), maphash.Bytes(contentSeeds[1], h.buf)}
}

// optStr tells an absent optional value from an empty one.
func (h *hasher) optStr(s *string) {
	if s == nil {
		h.num(0)
		return
	}
	h.num(1)
	h.str(*s)
}

// list tells an absent list from an empty one, as the encoding does.
func (h *hasher) list(l []string) {
	if l == nil {
		h.num(0)
		return
	}
	h.num(uint64(len(l)) + 1)
	for _, s := range l {
		h.str(s)
	}
}

// generic hashes a Controls or Extra map through its Go syntax (fmt sorts
// map keys). Two values that encode alike but differ in Go type (1 and
// 1.0) count as different: at worst one reconcile too many.
func (h *hasher) generic(m map[string]any) {
	if m == nil {
		h.num(0)
		return
	}
	h.num(uint64(len(m)) + 1)
	if len(m) > 0 {
		h.str(fmt.Sprintf("%#v", m))
	}
}

func (d *digest) add(e digest) { d[0] += e[0]; d[1] += e[1] }

func (d *digest) sub(e digest) { d[0] -= e[0]; d[1] -= e[1] }

// entriesSum sums the digests of m's entries, each of its key and of what
// one hashes of its value.
func entriesSum[V any](m map[string]V, value func(*hasher, V)) digest {
	var sum digest
	e := newHasher()
	for k, v := range m {
		sum.add(entry(e, k, v, value))
	}
	return sum
}

// entriesSumOf is the sum of entries' digests.
func entriesSumOf(by map[string]digest) digest {
	var sum digest
	for _, d := range by {
		sum.add(d)
	}
	return sum
}

// part is how a map is hashed into its holder: whether it is nil, its
// length and its entries' digests' sum.
func part[V any](h *hasher, m map[string]V, sum digest) {
	if m == nil {
		h.num(0)
		return
	}
	h.num(uint64(len(m)) + 1)
	h.digest(sum)
}

// entry is the digest of one map entry, hashed in e.
func entry[V any](e *hasher, k string, v V, value func(*hasher, V)) digest {
	e.buf = e.buf[:0]
	e.str(k)
	value(e, v)
	return e.sum()
}

// contentDigest fingerprints doc without what never reaches LIO: the
// epoch and the created/updated stamps. A gateway asked to apply a change
// before its coordinator commits it (upstream's order for removals)
// reconciles a preview, whose epoch and stamps are not those of the commit
// that follows; its content is, and the config watch then has nothing left
// to do. Equal documents otherwise have
// equal digests; different ones differ but for a chance of 2^-128. It
// replaces comparing encodings, which cost a full encode of the document
// (35 ms at 4096 disks) on every change.
//
// It hashes everything; a Reconciler digests through its digestMemo,
// which reuses what it hashed of the documents before.
func contentDigest(doc *config.Doc) digest {
	return (&digester{doc: doc, memo: &noMemo}).digest()
}

// noMemo has nil maps: nothing is found in it and nothing stored.
var noMemo digestMemo

// digester is one digest of doc, through memo. rec: the digest records
// each entry's digest by key in memo.state, for the next document's
// digestSince.
type digester struct {
	doc  *config.Doc
	memo *digestMemo
	rec  bool
}

func (g *digester) digest() digest {
	doc, m := g.doc, g.memo
	var st struct{ disks, gateways, targets *keyedSum }
	if g.rec {
		st.disks, st.gateways, st.targets = &m.state.disks, &m.state.gateways, &m.state.targets
		// a target's parts are recorded when it is hashed: one found in
		// the memo has none
		clear(m.state.targetParts)
	}
	return g.whole(
		objEntries(g, doc.Disks, m.disks, keyless(hashDisk), st.disks),
		objEntries(g, doc.Gateways, m.gateways, keyless(hashGateway), st.gateways),
		objEntries(g, doc.Targets, m.targets, g.hashTarget, st.targets))
}

// whole is the document's digest from the sums of its top-level maps.
func (g *digester) whole(disks, gateways, targets digest) digest {
	doc := g.doc
	h := newHasher()
	h.num(uint64(doc.Version))
	part(h, doc.Disks, disks)
	part(h, doc.Gateways, gateways)
	part(h, doc.Targets, targets)
	hashAuth(h, doc.DiscoveryAuth)
	h.list(doc.GatewaysUpgraded)
	h.generic(doc.Extra)
	return h.sum()
}

func keyless[V any](value func(*hasher, V)) func(*hasher, string, V) {
	return func(h *hasher, _ string, v V) { value(h, v) }
}

// objEntries is the sum of the entries' digests of a map of disks,
// gateways, targets, portals, clients or groups, recorded by key in rec
// when it is not nil: the digest of an entry whose
// object doc.Frozen reports is remembered in memo by the object's address,
// and found there the next time. Any other object is hashed afresh: the
// one a change copied, and every object of a document that is not a fork.
// A nil memo remembers nothing. value is given each entry's key too.
//
// An object found in memo is not asked whether it is frozen: it was, in
// the document it was remembered from, and frozen is for good (nobody
// holding it may write it in place again). Asking would read every object
// of the document, a cache miss each, where a lookup reads only the memo.
func objEntries[T any, P interface {
	*T
	config.Object
}](g *digester, m map[string]P, memo map[P]memoEntry, value func(*hasher, string, P), rec *keyedSum) digest {
	rec.reset(len(m))
	var sum digest
	e := newHasher()
	for k, v := range m {
		// the entry's digest covers its key: an object found under
		// another key than it was hashed with is hashed again
		if me, ok := memo[v]; ok && me.key == k {
			sum.add(me.d)
			rec.put(k, me.d)
			g.memo.reused++
			continue
		}
		e.buf = e.buf[:0]
		e.str(k)
		value(e, k, v)
		d := e.sum()
		sum.add(d)
		rec.put(k, d)
		if memo != nil && v != nil && g.memo.frozen(g.doc, v) {
			memo[v] = memoEntry{key: k, d: d}
		}
	}
	if rec != nil {
		rec.sum = sum
	}
	return sum
}

// keyedSum is the digests of a map's entries by key, and their sum; a nil
// one records nothing.
type keyedSum struct {
	by  map[string]digest
	sum digest
}

func (s *keyedSum) reset(n int) {
	if s == nil {
		return
	}
	if s.by == nil {
		s.by = make(map[string]digest, n)
	} else {
		clear(s.by)
	}
	s.sum = digest{}
}

// put records k's digest during objEntries, which sums them itself.
func (s *keyedSum) put(k string, d digest) {
	if s != nil {
		s.by[k] = d
	}
}

// update makes k's entry that of m[k], hashed in e (none when absent).
func update[V any](s *keyedSum, e *hasher, k string, m map[string]V, value func(*hasher, string, V)) {
	if old, ok := s.by[k]; ok {
		s.sum.sub(old)
		delete(s.by, k)
	}
	v, ok := m[k]
	if !ok {
		return
	}
	e.buf = e.buf[:0]
	e.str(k)
	value(e, k, v)
	d := e.sum()
	if s.by == nil {
		s.by = map[string]digest{}
	}
	s.by[k] = d
	s.sum.add(d)
}

func hashDisk(h *hasher, d *config.Disk) {
	if d == nil {
		h.num(0)
		return
	}
	h.num(1)
	h.str(d.Pool)
	h.str(d.Image)
	h.num(uint64(d.PoolID))
	h.str(d.WWN)
	h.str(d.Backstore)
	h.str(d.BackstoreObjectName)
	h.optStr(d.AllocatingHost)
	h.optStr(d.Owner)
	h.generic(d.Controls)
	h.generic(d.Extra)
}

func hashGateway(h *hasher, g *config.Gateway) {
	if g == nil {
		h.num(0)
		return
	}
	h.num(1)
	h.num(uint64(g.ActiveLuns))
	h.generic(g.Extra)
}

func hashLun(h *hasher, l config.LunRef) {
	h.num(uint64(l.LunID))
	h.generic(l.Extra)
}

func hashAuth(h *hasher, a config.Auth) {
	h.str(a.Username)
	h.str(a.Password)
	h.boolean(a.PasswordEncryptionEnabled)
	h.str(a.MutualUsername)
	h.str(a.MutualPassword)
	h.boolean(a.MutualPasswordEncryptionEnabled)
	h.generic(a.Extra)
}

func hashPortal(h *hasher, p *config.Portal) {
	if p == nil {
		h.num(0)
		return
	}
	h.num(1)
	h.list(p.PortalIPAddresses)
	h.list(p.GatewayIPList)
	h.list(p.InactivePortalIPs)
	h.num(uint64(p.TPGs))
	h.generic(p.Extra)
}

func (g *digester) hashTarget(h *hasher, iqn string, t *config.Target) {
	if t == nil {
		h.num(0)
		return
	}
	var tp *targetParts
	var c, p, gr *keyedSum
	if g.rec {
		// the parts a target had are made again in their maps: a target
		// of a thousand clients changed as a whole allocates nothing
		tp = g.memo.state.targetParts[iqn]
		if tp == nil {
			tp = &targetParts{}
			if g.memo.state.targetParts == nil {
				g.memo.state.targetParts = map[string]*targetParts{}
			}
			g.memo.state.targetParts[iqn] = tp
		}
		c, p, gr = &tp.clients, &tp.portals, &tp.groups
	}
	luns := g.lunsSum(t.Disks, lunPlace{target: iqn}, g.memo.luns != nil && g.doc.FrozenLuns(t))
	if tp != nil {
		tp.luns, tp.lunsByOK = luns, false
	}
	hashTargetParts(h, t, luns,
		objEntries(g, t.Clients, g.memo.clients, g.hashClient(iqn), c),
		objEntries(g, t.Portals, g.memo.portals, keyless(hashPortal), p),
		objEntries(g, t.Groups, g.memo.groups, g.hashGroup(iqn), gr))
}

// hashTargetParts hashes a target from the sums of its maps' entries.
func hashTargetParts(h *hasher, t *config.Target, luns, clients, portals, groups digest) {
	h.num(1)
	part(h, t.Disks, luns)
	part(h, t.Clients, clients)
	part(h, t.Portals, portals)
	part(h, t.Groups, groups)
	h.generic(t.Controls)
	h.boolean(t.ACLEnabled)
	hashAuth(h, t.Auth)
	h.list(t.IPList)
	h.generic(t.Extra)
}

func (g *digester) hashClient(iqn string) func(*hasher, string, *config.Client) {
	return func(h *hasher, ini string, c *config.Client) {
		if c == nil {
			h.num(0)
			return
		}
		h.num(1)
		hashAuth(h, c.Auth)
		part(h, c.Luns, g.lunsSum(c.Luns, lunPlace{target: iqn, kind: 'c', name: ini}, false))
		h.str(c.GroupName)
		h.generic(c.Extra)
	}
}

func (g *digester) hashGroup(iqn string) func(*hasher, string, *config.Group) {
	return func(h *hasher, name string, gr *config.Group) {
		if gr == nil {
			h.num(0)
			return
		}
		h.num(1)
		h.list(gr.Members)
		part(h, gr.Disks, g.lunsSum(gr.Disks, lunPlace{target: iqn, kind: 'g', name: name}, false))
		h.generic(gr.Extra)
	}
}

// lunsSum is the sum of a LUN map's entries' digests, through a snapshot
// of the map last digested at the same place when it is large (see
// lunSnap). frozen: m can no longer change in place
// (config.Doc.FrozenLuns), so when the snapshot was last made from m
// itself it is m's, with no comparison.
func (g *digester) lunsSum(m map[string]config.LunRef, at lunPlace, frozen bool) digest {
	if g.memo.luns == nil || len(m) < minLunSnap {
		return entriesSum(m, hashLun)
	}
	s := g.memo.luns[at]
	if s == nil {
		s = &lunSnap{index: make(map[*byte]int32, len(m)), refs: make([]lunSnapRef, 0, len(m))}
		g.memo.luns[at] = s
	}
	switch {
	case frozen && s.frozen != nil && sameMap(s.frozen, m):
		g.memo.reused += len(m)
	case !s.update(m):
		delete(g.memo.luns, at)
		return entriesSum(m, hashLun)
	default:
		g.memo.reused += s.same
		s.frozen = nil
		if frozen {
			s.frozen = m
		}
	}
	s.used = g.memo.gen
	return s.sum
}

// sameMap reports whether a and b are one map.
func sameMap(a, b map[string]config.LunRef) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// update makes s a snapshot of m, and its sum m's entries' digests,
// hashing only the entries that differ; false when it cannot (two keys at
// one address), and s is then to be dropped.
func (s *lunSnap) update(m map[string]config.LunRef) bool {
	s.pass++
	s.same = 0
	e := newHasher()
	had, found := len(s.refs), 0
	for k, v := range m {
		p := unsafe.StringData(k)
		if i, ok := s.index[p]; ok {
			r := &s.refs[i]
			if len(r.key) != len(k) {
				return false
			}
			r.seen = s.pass
			found++
			// an Extra map is told apart by nothing cheaper than its hash
			if !r.extra && v.Extra == nil && r.id == v.LunID {
				s.same++
				continue
			}
			s.sum.sub(r.d)
			r.id, r.extra, r.d = v.LunID, v.Extra != nil, entry(e, k, v, hashLun)
			s.sum.add(r.d)
			continue
		}
		d := entry(e, k, v, hashLun)
		s.sum.add(d)
		s.index[p] = int32(len(s.refs))
		s.refs = append(s.refs, lunSnapRef{key: k, id: v.LunID, extra: v.Extra != nil, seen: s.pass, d: d})
	}
	if found == had {
		return true
	}
	// some of s's keys are gone from m, or are in it as other strings
	for i := 0; i < len(s.refs); {
		r := &s.refs[i]
		if r.seen == s.pass {
			i++
			continue
		}
		s.sum.sub(r.d)
		delete(s.index, unsafe.StringData(r.key))
		last := len(s.refs) - 1
		if i != last {
			*r = s.refs[last]
			s.index[unsafe.StringData(r.key)] = int32(i)
		}
		s.refs[last] = lunSnapRef{}
		s.refs = s.refs[:last]
	}
	return true
}

// minLunSnap is the size from which a LUN map is digested through a
// snapshot: comparing an entry with the snapshot's costs about half of
// hashing it, which below a few dozen entries is not worth a snapshot's
// memory.
const minLunSnap = 32

// digestMemo makes the digest of a document cost in proportion to what
// changed since the last one digested. When the document's change log
// tells (config.Doc.ChangesSince: a fork of the last document, or the
// last one changed since), only the entries it lists are hashed again,
// into the sums of the entries' digests by key (docState) that the last
// document left: at 4096 disks and 1024 clients a client's change costs
// microseconds instead of a walk of every map. Otherwise (a decoded
// document, another branch of the lineage) the document is walked, at the
// cost of a pointer comparison per disk, client, portal and group. The digest
// is a sum of per-entry digests (entries), and a fork's frozen objects
// never change (config.Doc.Frozen): their entries' digests are remembered
// by address, and a frozen target found again is reused with everything it
// holds. What a change copied is hashed again, each of its portals,
// clients and groups that it still shares found in the memo. A target's
// LUN map is a value map that every copy of the target copies: it is
// compared with a snapshot of the last one digested for the same target
// (lunSnap), which costs a map lookup per LUN rather than a hash, and
// nothing when it is the very map the snapshot was made from and can no
// longer change (config.Doc.FrozenLuns: a client's change leaves it
// borrowed).
//
// Its memory is bounded by the last document's size: the memo of a kind
// of object that outgrows twice what the document holds is rebuilt from
// it, an amortized constant per object hashed, and the snapshot of a LUN
// map the document no longer holds is dropped.
type digestMemo struct {
	mu       sync.Mutex
	disks    map[*config.Disk]memoEntry
	gateways map[*config.Gateway]memoEntry
	targets  map[*config.Target]memoEntry
	clients  map[*config.Client]memoEntry
	portals  map[*config.Portal]memoEntry
	groups   map[*config.Group]memoEntry
	luns     map[lunPlace]*lunSnap
	// gen counts digests, for lunSnap.used.
	gen uint64
	// reused counts the entries found in the memo or a snapshot, for
	// tests.
	reused int
	// frozen is config.Doc.Frozen; a test breaks it to show what an
	// object reused while it can still change does.
	frozen func(*config.Doc, config.Object) bool
	// last is the document last digested; state holds its entries'
	// digests by key when it is a fork.
	last  logCursor
	state docState
	// sinceHits counts the digests made through a change log, for tests;
	// ignore is a kind of change they skip: a test's broken memo.
	sinceHits int
	ignore    config.ChangeKind
}

// docState is the digests of the last document's entries by key, and of
// its targets' parts: what the next document's changes since it are
// applied to (digestSince).
type docState struct {
	disks, gateways, targets keyedSum
	// targetParts are those of the targets hashed when the document was
	// (not those found in the memo), by IQN.
	targetParts map[string]*targetParts
}

// targetParts are the sums of a target's maps' entries.
type targetParts struct {
	luns digest
	// lunsBy is the LUN map's entries' digests by key when lunsByOK: made
	// at the first change of single LUNs (MapTargetLun), which then cost
	// a hash each rather than a comparison of the whole map with its
	// snapshot; a change of the whole target unmakes it.
	lunsBy                   keyedSum
	lunsByOK                 bool
	clients, portals, groups keyedSum
}

// memoEntry is the digest of a frozen object's entry and the key it was
// hashed with.
type memoEntry struct {
	key string
	d   digest
}

// lunPlace is where a LUN map is in a document: a target's LUNs (kind 0),
// or those of its client (kind 'c') or group (kind 'g') name.
type lunPlace struct {
	target string
	kind   byte
	name   string
}

// lunSnap is the LUN map last digested at a place, with its entries'
// digests and their sum. It is the memo's own copy, compared by value, so
// its use needs nothing of the copy-on-write contract: a LUN map is
// written in place by whoever owns it, and every copy of a target copies
// it anyway.
//
// Its entries are found by the address of their key's bytes, not by the
// key: a copied map holds the same strings, and a lookup by address
// neither hashes nor compares the key (about half the cost of one by key
// at 4096 LUNs). A string at the same address and of the same length is
// the same string, which the snapshot keeps alive; a key stored again as
// another string is one entry gone and another added.
type lunSnap struct {
	// frozen is the map s was last made from when that map could no
	// longer change (kept, so that its address is not another map's).
	frozen map[string]config.LunRef
	// index is refs' index by the address of their key's bytes.
	index map[*byte]int32
	refs  []lunSnapRef
	sum   digest
	// pass counts updates, for lunSnapRef.seen; same is how many entries
	// the last one found unchanged.
	pass uint64
	same int
	// used is the memo's gen when it was last compared with.
	used uint64
}

type lunSnapRef struct {
	key string
	id  int
	// extra: the LUN reference had an Extra map, so the next one is
	// hashed again whatever it holds
	extra bool
	// seen is the last pass that found the key in the map
	seen uint64
	d    digest
}

func newDigestMemo() *digestMemo {
	return &digestMemo{
		disks:    map[*config.Disk]memoEntry{},
		gateways: map[*config.Gateway]memoEntry{},
		targets:  map[*config.Target]memoEntry{},
		clients:  map[*config.Client]memoEntry{},
		portals:  map[*config.Portal]memoEntry{},
		groups:   map[*config.Group]memoEntry{},
		luns:     map[lunPlace]*lunSnap{},
		frozen:   (*config.Doc).Frozen,
	}
}

// digest is contentDigest(doc), from what m remembers of the documents
// before: when doc's changes since the last one are known
// (config.Doc.ChangesSince), only the entries they list are hashed again.
func (m *digestMemo) digest(doc *config.Doc) digest {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	var d digest
	changes, ok := m.last.since(doc)
	if ok {
		d, ok = m.digestSince(doc, changes)
	}
	m.last.moveTo(doc, ok)
	if !ok {
		// only a fork's digests by key can be of use: a document that is
		// not one has no changes since anything, nor have its forks
		rec := doc.Stamp() != config.Stamp{}
		if !rec {
			m.state = docState{}
		}
		d = (&digester{doc: doc, memo: m, rec: rec}).digest()
	}
	m.bound(doc)
	return d
}

// digestSince is doc's digest from m.state, the last document's, and
// doc's changes since it; false when it cannot tell, and m.state is then
// to be made again.
func (m *digestMemo) digestSince(doc *config.Doc, changes []config.Change) (digest, bool) {
	g := &digester{doc: doc, memo: m, rec: true}
	st := &m.state
	e := newHasher()
	var targets map[string]*targetChanges
	for _, c := range changes {
		if c.Kind == m.ignore {
			continue
		}
		switch c.Kind {
		case config.ChangedDisk:
			update(&st.disks, e, c.Key, doc.Disks, keyless(hashDisk))
		case config.ChangedGateway:
			update(&st.gateways, e, c.Key, doc.Gateways, keyless(hashGateway))
		case config.ChangedTarget, config.ChangedTargetFields, config.ChangedTargetLun, config.ChangedClient,
			config.ChangedPortal, config.ChangedGroup:
			addTargetChange(&targets, c)
		default:
			return digest{}, false
		}
	}
	for iqn, tc := range targets {
		g.retarget(e, iqn, tc)
	}
	// what the log may have missed (a map written directly, against the
	// contract) shows at least in its length
	if len(st.disks.by) != len(doc.Disks) || len(st.gateways.by) != len(doc.Gateways) || len(st.targets.by) != len(doc.Targets) {
		return digest{}, false
	}
	m.reused += len(doc.Disks) + len(doc.Gateways) + len(doc.Targets) - len(changes)
	m.sinceHits++
	return g.whole(st.disks.sum, st.gateways.sum, st.targets.sum), true
}

// retarget makes target iqn's entry in m.state that of g.doc after tc: from
// its parts, of which only the changed ones are hashed again, when they
// are known; else hashed as a whole.
func (g *digester) retarget(e *hasher, iqn string, tc *targetChanges) {
	st := &g.memo.state
	t := g.doc.Targets[iqn]
	tp := st.targetParts[iqn]
	if !tc.whole && t != nil && tp != nil {
		if len(tc.luns) > 0 {
			if !tp.lunsByOK {
				tp.lunsBy.reset(len(t.Disks))
				for k, v := range t.Disks {
					tp.lunsBy.by[k] = entry(e, k, v, hashLun)
				}
				tp.lunsBy.sum = entriesSumOf(tp.lunsBy.by)
				tp.lunsByOK = true
			} else {
				for _, k := range tc.luns {
					update(&tp.lunsBy, e, k, t.Disks, keyless(hashLun))
				}
			}
			tp.luns = tp.lunsBy.sum
		}
		for _, k := range tc.clients {
			update(&tp.clients, e, k, t.Clients, g.hashClient(iqn))
		}
		for _, k := range tc.portals {
			update(&tp.portals, e, k, t.Portals, keyless(hashPortal))
		}
		for _, k := range tc.groups {
			update(&tp.groups, e, k, t.Groups, g.hashGroup(iqn))
		}
		if len(tp.clients.by) == len(t.Clients) && len(tp.portals.by) == len(t.Portals) && len(tp.groups.by) == len(t.Groups) &&
			(!tp.lunsByOK || len(tp.lunsBy.by) == len(t.Disks)) {
			e.buf = e.buf[:0]
			e.str(iqn)
			hashTargetParts(e, t, tp.luns, tp.clients.sum, tp.portals.sum, tp.groups.sum)
			if old, ok := st.targets.by[iqn]; ok {
				st.targets.sum.sub(old)
			}
			d := e.sum()
			st.targets.by[iqn] = d
			st.targets.sum.add(d)
			return
		}
	}
	// hashTarget makes the parts anew (of a target that is not nil)
	if t == nil {
		delete(st.targetParts, iqn)
	}
	update(&st.targets, e, iqn, g.doc.Targets, g.hashTarget)
}

// logCursor is where a reader of documents is in their change logs: the
// last document it read, at which stamp, and the last entry of that
// document's log then. A change that repeats the log's last entry is not
// logged again (config's logChange), so a document changed again after
// it was read at a stamp (a check, then more changes to the same fork)
// may still be at that stamp: its changes since are those listed plus
// that last entry, which the cursor then revisits too.
type logCursor struct {
	doc   *config.Doc
	stamp config.Stamp
	// tail is the log's last entry at stamp (zero Kind: none), when
	// known; tailKnown is false after a document read in full, whose log
	// the reader never saw.
	tail      config.Change
	tailKnown bool
	// next is the tail since returned changes up to, for moveTo.
	next config.Change
}

// since is what may have changed in doc since the cursor's document, to
// be revisited; false when that is not known, and doc is read in full.
// moveTo must follow.
func (c *logCursor) since(doc *config.Doc) ([]config.Change, bool) {
	changes, ok := doc.ChangesSince(c.stamp)
	if !ok {
		return nil, false
	}
	// doc is c.doc changed since, or a fork of it (whose log is all of
	// changes; a document holds its lineage from its fork on)
	same := doc == c.doc
	if same && !c.tailKnown {
		return nil, false
	}
	c.next = config.Change{}
	if same {
		c.next = c.tail
	}
	if len(changes) > 0 {
		c.next = changes[len(changes)-1]
	}
	if same && c.tail.Kind != 0 {
		changes = append(changes[:len(changes):len(changes)], c.tail)
	}
	return changes, true
}

// moveTo moves c to doc, read through since's changes (ok) or in full.
func (c *logCursor) moveTo(doc *config.Doc, ok bool) {
	c.doc, c.stamp = doc, doc.Stamp()
	c.tail, c.tailKnown = c.next, ok
	if c.stamp == (config.Stamp{}) {
		// a document that is not a fork is not kept alive for nothing
		c.doc = nil
	}
}

// bound keeps m's memory in proportion to doc's size.
func (m *digestMemo) bound(doc *config.Doc) {
	m.disks = keepLive(m.disks, len(doc.Disks), maps.Values(doc.Disks))
	m.gateways = keepLive(m.gateways, len(doc.Gateways), maps.Values(doc.Gateways))
	m.targets = keepLive(m.targets, len(doc.Targets), maps.Values(doc.Targets))
	var clients, portals, groups int
	for _, t := range doc.Targets {
		if t != nil {
			clients += len(t.Clients)
			portals += len(t.Portals)
			groups += len(t.Groups)
		}
	}
	m.clients = keepLive(m.clients, clients, children(doc, func(t *config.Target) map[string]*config.Client { return t.Clients }))
	m.portals = keepLive(m.portals, portals, children(doc, func(t *config.Target) map[string]*config.Portal { return t.Portals }))
	m.groups = keepLive(m.groups, groups, children(doc, func(t *config.Target) map[string]*config.Group { return t.Groups }))
	for at, s := range m.luns {
		if s.used != m.gen && len(lunsAt(doc, at)) < minLunSnap {
			delete(m.luns, at)
		}
	}
}

// keepLive is memo, or when it holds more than twice the live objects
// (those of the document, which objects lists), a memo of only those.
func keepLive[P comparable](memo map[P]memoEntry, live int, objects iter.Seq[P]) map[P]memoEntry {
	if len(memo) <= 2*live+64 {
		return memo
	}
	kept := make(map[P]memoEntry, live)
	for o := range objects {
		if e, ok := memo[o]; ok {
			kept[o] = e
		}
	}
	return kept
}

// children are the objects of a kind that doc's targets hold.
func children[P any](doc *config.Doc, of func(*config.Target) map[string]P) iter.Seq[P] {
	return func(yield func(P) bool) {
		for _, t := range doc.Targets {
			if t == nil {
				continue
			}
			for _, o := range of(t) {
				if !yield(o) {
					return
				}
			}
		}
	}
}

// lunsAt is the LUN map at a place of doc (nil when there is none).
func lunsAt(doc *config.Doc, at lunPlace) map[string]config.LunRef {
	t := doc.Targets[at.target]
	if t == nil {
		return nil
	}
	switch at.kind {
	case 'c':
		if c := t.Clients[at.name]; c != nil {
			return c.Luns
		}
	case 'g':
		if g := t.Groups[at.name]; g != nil {
			return g.Disks
		}
	default:
		return t.Disks
	}
	return nil
}
