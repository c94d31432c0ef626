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

// entries sums the digests of m's entries, each of its key and of what one
// hashes of its value.
func entries[V any](h *hasher, m map[string]V, value func(*hasher, V)) {
	if m == nil {
		h.num(0)
		return
	}
	h.num(uint64(len(m)) + 1)
	var sum digest
	e := newHasher()
	for k, v := range m {
		sum.add(entry(e, k, v, value))
	}
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

// digester is one digest of doc, through memo.
type digester struct {
	doc  *config.Doc
	memo *digestMemo
}

func (g *digester) digest() digest {
	doc, m := g.doc, g.memo
	h := newHasher()
	h.num(uint64(doc.Version))
	objEntries(g, h, doc.Disks, m.disks, keyless(hashDisk))
	objEntries(g, h, doc.Gateways, m.gateways, keyless(hashGateway))
	objEntries(g, h, doc.Targets, m.targets, g.hashTarget)
	hashAuth(h, doc.DiscoveryAuth)
	h.list(doc.GatewaysUpgraded)
	h.generic(doc.Extra)
	return h.sum()
}

func keyless[V any](value func(*hasher, V)) func(*hasher, string, V) {
	return func(h *hasher, _ string, v V) { value(h, v) }
}

// objEntries is entries for a map of disks, gateways, targets, portals,
// clients or groups: the digest of an entry whose object doc.Frozen
// reports is remembered in memo by the object's address, and found there
// the next time. Any other object is hashed afresh: the one a change
// copied, and every object of a document that is not a fork. A nil memo
// remembers nothing. value is given each entry's key too.
//
// An object found in memo is not asked whether it is frozen: it was, in
// the document it was remembered from, and frozen is for good (nobody
// holding it may write it in place again). Asking would read every object
// of the document, a cache miss each, where a lookup reads only the memo.
func objEntries[T any, P interface {
	*T
	config.Object
}](g *digester, h *hasher, m map[string]P, memo map[P]memoEntry, value func(*hasher, string, P)) {
	if m == nil {
		h.num(0)
		return
	}
	h.num(uint64(len(m)) + 1)
	var sum digest
	e := newHasher()
	for k, v := range m {
		// the entry's digest covers its key: an object found under
		// another key than it was hashed with is hashed again
		if me, ok := memo[v]; ok && me.key == k {
			sum.add(me.d)
			g.memo.reused++
			continue
		}
		e.buf = e.buf[:0]
		e.str(k)
		value(e, k, v)
		d := e.sum()
		sum.add(d)
		if memo != nil && v != nil && g.memo.frozen(g.doc, v) {
			memo[v] = memoEntry{key: k, d: d}
		}
	}
	h.digest(sum)
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
	h.num(1)
	g.luns(h, t.Disks, lunPlace{target: iqn}, g.memo.luns != nil && g.doc.FrozenLuns(t))
	objEntries(g, h, t.Clients, g.memo.clients, func(h *hasher, ini string, c *config.Client) {
		if c == nil {
			h.num(0)
			return
		}
		h.num(1)
		hashAuth(h, c.Auth)
		g.luns(h, c.Luns, lunPlace{target: iqn, kind: 'c', name: ini}, false)
		h.str(c.GroupName)
		h.generic(c.Extra)
	})
	objEntries(g, h, t.Portals, g.memo.portals, keyless(hashPortal))
	objEntries(g, h, t.Groups, g.memo.groups, func(h *hasher, name string, gr *config.Group) {
		if gr == nil {
			h.num(0)
			return
		}
		h.num(1)
		h.list(gr.Members)
		g.luns(h, gr.Disks, lunPlace{target: iqn, kind: 'g', name: name}, false)
		h.generic(gr.Extra)
	})
	h.generic(t.Controls)
	h.boolean(t.ACLEnabled)
	hashAuth(h, t.Auth)
	h.list(t.IPList)
	h.generic(t.Extra)
}

// luns is entries of a LUN map, through a snapshot of the map last
// digested at the same place when it is large (see lunSnap). frozen: m
// can no longer change in place (config.Doc.FrozenLuns), so when the
// snapshot was last made from m itself it is m's, with no comparison.
func (g *digester) luns(h *hasher, m map[string]config.LunRef, at lunPlace, frozen bool) {
	if g.memo.luns == nil || len(m) < minLunSnap {
		entries(h, m, hashLun)
		return
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
		entries(h, m, hashLun)
		return
	default:
		g.memo.reused += s.same
		s.frozen = nil
		if frozen {
			s.frozen = m
		}
	}
	s.used = g.memo.gen
	h.num(uint64(len(m)) + 1)
	h.digest(s.sum)
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

// digestMemo makes the digest of a document that shares most of its
// objects with the last one digested cost in proportion to what differs,
// plus a pointer comparison per disk, client, portal and group. The digest
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
// before.
func (m *digestMemo) digest(doc *config.Doc) digest {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	d := (&digester{doc: doc, memo: m}).digest()
	m.bound(doc)
	return d
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
