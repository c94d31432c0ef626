package config

import (
	"bytes"
	"errors"
	"slices"
)

// Incremental validate and encode.
//
// A commit changes a handful of objects in a document of thousands, yet
// ValidateAndMarshalSince validates and writes all of them. Documents are
// copy-on-write (cow.go): an object the next document still holds by the
// same pointer, at the same key, is unchanged, because shared objects are
// never written in place. An Encoding remembers, per object, its bytes in
// the output and what validating it found, so the next document's encode
// copies the bytes of every unchanged object and validates only what
// changed, plus the invariants that span objects.
//
// The incremental path only decides whether the document is valid; any
// error, and anything it does not handle (a document with unknown
// top-level keys, a null object), sends the whole document through
// ValidateAndMarshalSince, so errors and their order are always the full
// path's. TestIncrementalMatchesFull and FuzzIncremental hold the two paths
// to the same bytes and the same errors.

// Encoding is the result of ValidateAndMarshalFrom: a valid document's
// bytes, what each of its objects encoded to, and the document's invalid
// names. It is immutable once built, so one Encoding may serve any number
// of documents forked from the one it encodes, concurrently.
type Encoding struct {
	raw     []byte
	invalid map[string]error
	// disks and targets are nil when the document was encoded whole (it
	// has unknown top-level keys): the next encode starts from scratch.
	disks   *section[*Disk]
	targets *section[*Target]
	// diskNames[i] are the invalid names of disks.vals[i], usually nil.
	diskNames [][]error
	// tinfo[i] is what encoding targets.vals[i] left for the next encode.
	tinfo []*targetEncoding
	stats EncodingStats
}

// EncodingStats counts the disks, targets, clients, portals and groups an
// encode wrote afresh and the ones whose bytes it copied from the previous
// Encoding; gateways, few, are always written and counted as written. A
// document encoded whole (unknown top-level keys) counts as one.
type EncodingStats struct {
	Encoded, Reused int
}

// InvalidNames is the encoded document's InvalidNames, computed from the
// objects that changed: the names a commit on top of it tolerates. The
// map is shared; it must not be modified.
func (e *Encoding) InvalidNames() map[string]error {
	if e == nil {
		return nil
	}
	return e.invalid
}

// Bytes is the encoded document, shared: it must not be modified.
func (e *Encoding) Bytes() []byte {
	if e == nil {
		return nil
	}
	return e.raw
}

// Spare gives up e's bytes for a later encode to write into
// (ValidateAndMarshalInto), for the sole holder of e, which is done with
// it: e keeps no bytes and no per-object records after, so that any later
// use of it as a previous Encoding is a full encode, never a copy from
// bytes that are being overwritten.
func (e *Encoding) Spare() []byte {
	if e == nil || e.raw == nil {
		return nil
	}
	b := e.raw[:0]
	e.raw, e.disks, e.targets, e.tinfo, e.diskNames = nil, nil, nil, nil, nil
	return b
}

// Stats says how much of the document the encode that built e wrote and
// how much it copied.
func (e *Encoding) Stats() EncodingStats {
	if e == nil {
		return EncodingStats{}
	}
	return e.stats
}

// targetEncoding is the per-target part of an Encoding.
type targetEncoding struct {
	// the sections are nil when the target has unknown keys and was
	// encoded whole
	clients *section[*Client]
	portals *section[*Portal]
	groups  *section[*Group]
	disks   *section[LunRef]
	// names are the target's invalid names, its IQN's and its children's.
	names []error
	// badClients are the clients' invalid names by client, which only
	// change with the key.
	badClients map[string]error
	// disksNil says the target's disks map is nil, which exempts its
	// clients' and groups' LUNs from being the target's (validator.luns).
	disksNil bool
}

// span is an object's bytes in an Encoding's raw, as offsets from the
// start of the object that holds it (the document's, a target's).
type span struct{ start, end int }

// section is one JSON object of named children (the document's disks, a
// target's clients...): its keys in order and, for each, the value
// encoded and where its bytes are.
type section[T any] struct {
	keys []string
	// index is keys' positions; shared by the sections of successive
	// encodings while the key set does not change.
	index map[string]int
	vals  []T
	spans []span
}

// written is what writeSection did, for its caller's checks.
type written struct {
	// from[i] is the position in the previous section of the key at i,
	// -1 for a new key; nil when the keys are the previous ones.
	from []int
	// fresh are the positions written afresh (new or changed values), in
	// order.
	fresh []int
	// dropped says a key of the previous section is gone.
	dropped bool
}

func (w *written) prevAt(i int) int {
	if w.from == nil {
		return i
	}
	return w.from[i]
}

// unchanged says the section holds exactly the previous section's values.
func (w *written) unchanged() bool { return len(w.fresh) == 0 && !w.dropped }

// layout orders m's keys, reusing prev's order (and index, when the key
// set is the same) instead of sorting them again.
func layout[T any](prev *section[T], m map[string]T) (keys []string, index map[string]int, w written) {
	if prev == nil {
		keys = sortedKeys(m)
		w.from = make([]int, len(keys))
		for i := range w.from {
			w.from[i] = -1
		}
		return keys, indexOf(keys), w
	}
	present := 0
	for _, k := range prev.keys {
		if _, ok := m[k]; ok {
			present++
		}
	}
	if present == len(prev.keys) && len(m) == present {
		return prev.keys, prev.index, w
	}
	w.dropped = present < len(prev.keys)
	var added []string
	if len(m) > present {
		for k := range m {
			if _, ok := prev.index[k]; !ok {
				added = append(added, k)
			}
		}
		slices.Sort(added)
	}
	keys = make([]string, 0, len(m))
	w.from = make([]int, 0, len(m))
	a := 0
	for pi, k := range prev.keys {
		if _, ok := m[k]; !ok {
			continue
		}
		for ; a < len(added) && added[a] < k; a++ {
			keys = append(keys, added[a])
			w.from = append(w.from, -1)
		}
		keys = append(keys, k)
		w.from = append(w.from, pi)
	}
	for ; a < len(added); a++ {
		keys = append(keys, added[a])
		w.from = append(w.from, -1)
	}
	return keys, indexOf(keys), w
}

func indexOf(keys []string) map[string]int {
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		index[k] = i
	}
	return index
}

// child is one member of a section as writeSection visits it: at is its
// key's position in the previous section (-1: a new key), and reused says
// its bytes were copied from there; otherwise the visitor writes them at
// depth.
// encodeChild writes c unless its bytes are reused, counting either way; a
// null entry (c.v nil) is left to the full path.
func encodeChild[T any](e *Encoding, c child[*T], b *bytes.Buffer, enc func(*T, *bytes.Buffer, int) error) error {
	if c.reused {
		e.stats.Reused++
		return nil
	}
	if c.v == nil {
		return errIncomplete
	}
	e.stats.Encoded++
	return enc(c.v, b, c.depth)
}

type child[T any] struct {
	i      int
	key    string
	v      T
	at     int
	reused bool
	depth  int
}

// writeSection writes the member k of o, an object of m's values in key
// order: a value that is the previous section's at the same key (same)
// has its bytes copied from prevRaw, any other is written by visit, which
// sees every member in order. Spans are offsets from the start of the
// enclosing object, base in o's buffer and prevRaw's start in the previous
// one, so that an object copied whole keeps its children's spans.
func writeSection[T any](o *objectWriter, k string, m map[string]T, base int, prev *section[T], prevRaw []byte,
	same func(a, b T) bool, visit func(c child[T]) error) (*section[T], written, error) {
	o.key(k)
	keys, index, w := layout(prev, m)
	s := &section[T]{keys: keys, index: index, vals: make([]T, len(keys)), spans: make([]span, len(keys))}
	c := openObject(o.b, o.depth+1)
	for i, name := range keys {
		c.key(name)
		v := m[name]
		start := o.b.Len() - base
		at := w.prevAt(i)
		reused := at >= 0 && same(prev.vals[at], v)
		if reused {
			sp := prev.spans[at]
			o.b.Write(prevRaw[sp.start:sp.end])
		} else {
			w.fresh = append(w.fresh, i)
		}
		if err := visit(child[T]{i: i, key: name, v: v, at: at, reused: reused, depth: o.depth + 2}); err != nil {
			return nil, w, err
		}
		s.vals[i] = v
		s.spans[i] = span{start, o.b.Len() - base}
	}
	c.close()
	return s, w, nil
}

func samePtr[T any](a, b *T) bool { return a == b }

func sameLun(a, b LunRef) bool { return a.LunID == b.LunID && len(a.Extra) == 0 && len(b.Extra) == 0 }

// errIncomplete stops the incremental path: the document is invalid or
// holds something only the full path handles; that path decides which.
var errIncomplete = errors.New("config: incremental encode gave up")

// ValidateAndMarshalFrom is ValidateAndMarshalSince(tolerated) for a
// document forked (directly or after other commits) from the one prev
// encodes: it validates and writes only the objects that are not prev's,
// plus the invariants that span objects, and returns the same bytes as the
// full path with the Encoding the next commit builds on. prev may be nil
// (everything is written). The bytes are shared with the Encoding and must
// not be modified. d gives up its ownership mark, so that none of the
// objects the Encoding records is changed in place later (a change copies
// them, see cow.go). On an invalid document the error is the full path's
// and the Encoding nil.
func (d *Doc) ValidateAndMarshalFrom(prev *Encoding, tolerated map[string]error) ([]byte, *Encoding, error) {
	return d.ValidateAndMarshalInto(prev, tolerated, nil)
}

// ValidateAndMarshalInto is ValidateAndMarshalFrom writing into spare's
// storage when it is large enough: the bytes of an Encoding its sole
// holder gave up (Spare). A store that commits a document of megabytes
// then neither allocates nor clears them on every commit. spare must not be
// prev's own bytes (it is ignored if it is).
func (d *Doc) ValidateAndMarshalInto(prev *Encoding, tolerated map[string]error, spare []byte) ([]byte, *Encoding, error) {
	if d.own != nil {
		d.own.revoked.Store(true)
	}
	if prev != nil && cap(spare) > 0 && cap(prev.raw) > 0 && &spare[:1][0] == &prev.raw[:1][0] {
		spare = nil
	}
	if len(d.Extra) == 0 {
		if e, err := d.encodeFrom(prev, tolerated, spare); err == nil {
			sizeHint.Store(int64(len(e.raw)))
			return e.raw, e, nil
		}
	}
	raw, err := d.validate(false, tolerated)
	if err != nil {
		return nil, nil, err
	}
	// Valid, though the incremental path gave up (unknown top-level
	// keys): an Encoding without per-object records.
	return raw, &Encoding{raw: raw, invalid: d.InvalidNames(), stats: EncodingStats{Encoded: 1}}, nil
}

// incremental is one encodeFrom: the previous Encoding and the new one
// being built.
type incremental struct {
	d         *Doc
	prev      *Encoding
	prevRaw   []byte
	e         *Encoding
	tolerated map[string]error
	// disksDropped says a disk of the previous document is gone, so every
	// target's disks must be looked up again.
	disksDropped bool
}

// name records a name error as validator.name does, and gives up on one
// that is not tolerated.
func (in *incremental) name(list *[]error, path string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := in.tolerated[path]; !ok {
		return errIncomplete
	}
	*list = append(*list, &FieldError{Path: path, Msg: "invalid name: " + err.Error(), Err: err})
	return nil
}

// stillTolerated gives up when a name found invalid before is no longer
// tolerated.
func (in *incremental) stillTolerated(names []error) error {
	for _, n := range names {
		if _, ok := in.tolerated[n.(*FieldError).Path]; !ok {
			return errIncomplete
		}
	}
	return nil
}

func (d *Doc) encodeFrom(prev *Encoding, tolerated map[string]error, spare []byte) (*Encoding, error) {
	if d.Version < CurrentVersion || d.Epoch < 0 {
		return nil, errIncomplete
	}
	in := &incremental{d: d, tolerated: tolerated, e: &Encoding{}}
	if prev != nil && prev.disks != nil {
		in.prev, in.prevRaw = prev, prev.raw
	}
	size := int(sizeHint.Load())
	if in.prev != nil {
		size = len(in.prevRaw)
	}
	b := *bytes.NewBuffer(spare[:0])
	b.Grow(max(16<<10, size+1<<10))

	// Doc.encode, with the disks and targets built on prev's
	o := openObject(&b, 0)
	o.str("created", d.Created)
	o.key("discovery_auth")
	if err := d.DiscoveryAuth.encode(&b, 1); err != nil {
		return nil, err
	}
	if err := in.disks(&o); err != nil {
		return nil, err
	}
	o.int("epoch", d.Epoch)
	var gwNames []error
	for name, g := range d.Gateways {
		if g == nil {
			return nil, errIncomplete
		}
		if err := in.name(&gwNames, childPath("gateways", name), ValidateGatewayName(name)); err != nil {
			return nil, err
		}
	}
	if err := encodeChildren(&o, "gateways", d.Gateways, (*Gateway).encode); err != nil {
		return nil, err
	}
	in.e.stats.Encoded += len(d.Gateways)
	if d.GatewaysUpgraded != nil {
		o.list("gateways_upgraded", d.GatewaysUpgraded)
	}
	if err := in.targets(&o); err != nil {
		return nil, err
	}
	o.str("updated", d.Updated)
	o.int("version", int64(d.Version))
	o.close()

	e := in.e
	e.raw = b.Bytes()
	e.invalid = map[string]error{}
	add := func(errs []error) {
		for _, err := range errs {
			e.invalid[err.(*FieldError).Path] = err
		}
	}
	for _, errs := range e.diskNames {
		add(errs)
	}
	add(gwNames)
	for _, t := range e.tinfo {
		add(t.names)
	}
	return e, nil
}

func (in *incremental) disks(o *objectWriter) error {
	var prev *section[*Disk]
	if in.prev != nil {
		prev = in.prev.disks
	}
	e := in.e
	e.diskNames = make([][]error, 0, len(in.d.Disks))
	s, w, err := writeSection(o, "disks", in.d.Disks, 0, prev, in.prevRaw, samePtr[Disk], func(c child[*Disk]) error {
		if c.reused {
			names := in.prev.diskNames[c.at]
			e.diskNames = append(e.diskNames, names)
			e.stats.Reused++
			return in.stillTolerated(names)
		}
		disk := c.v
		if disk == nil {
			return errIncomplete
		}
		if err := disk.encode(o.b, c.depth); err != nil {
			return err
		}
		e.stats.Encoded++
		var names []error
		for _, f := range [...]struct{ key, value string }{
			{"pool", disk.Pool}, {"image", disk.Image}, {"backstore_object_name", disk.BackstoreObjectName},
		} {
			if f.value == "" {
				continue
			}
			if err := in.name(&names, keyPath(childPath("disks", c.key), f.key), ValidateSafeName(f.value)); err != nil {
				return err
			}
		}
		e.diskNames = append(e.diskNames, names)
		return nil
	})
	if err != nil {
		return err
	}
	in.disksDropped = w.dropped
	e.disks = s
	return nil
}

func (in *incremental) targets(o *objectWriter) error {
	var prev *section[*Target]
	if in.prev != nil {
		prev = in.prev.targets
	}
	e := in.e
	e.tinfo = make([]*targetEncoding, 0, len(in.d.Targets))
	s, _, err := writeSection(o, "targets", in.d.Targets, 0, prev, in.prevRaw, samePtr[Target], func(c child[*Target]) error {
		t := c.v
		if t == nil {
			return errIncomplete
		}
		var pt *targetEncoding
		if c.at >= 0 {
			pt = in.prev.tinfo[c.at]
		}
		if c.reused {
			e.tinfo = append(e.tinfo, pt)
			e.stats.Reused++
			if err := in.stillTolerated(pt.names); err != nil {
				return err
			}
			return in.checkTargetRefs(t, nil, false)
		}
		var prevRaw []byte
		if pt != nil {
			sp := prev.spans[c.at]
			prevRaw = in.prevRaw[sp.start:sp.end]
		}
		te, err := in.target(c.key, t, o.b, c.depth, pt, prevRaw)
		if err != nil {
			return err
		}
		e.tinfo = append(e.tinfo, te)
		return nil
	})
	if err != nil {
		return err
	}
	e.targets = s
	return nil
}

// checkTargetRefs checks what a target's validity depends on outside it:
// its disks are the document's and its portals name gateways. The disks
// are looked up again when all says so or a disk of the document is gone,
// otherwise only fresh, the keys its encode wrote afresh.
func (in *incremental) checkTargetRefs(t *Target, fresh []string, all bool) error {
	if all || in.disksDropped {
		for id := range t.Disks {
			if _, ok := in.d.Disks[id]; !ok {
				return errIncomplete
			}
		}
	} else {
		for _, id := range fresh {
			if _, ok := in.d.Disks[id]; !ok {
				return errIncomplete
			}
		}
	}
	for name := range t.Portals {
		if _, ok := in.d.Gateways[name]; !ok {
			return errIncomplete
		}
	}
	return nil
}

// lunsValid is validator.luns's verdict: ids in range, unique, and (known
// non-nil) every disk one of known's.
func lunsValid(luns, known map[string]LunRef, maxID int) bool {
	var small [MaxLunID + 1]bool
	seen := small[:]
	if maxID > MaxLunID {
		seen = make([]bool, maxID+1)
	}
	for id, l := range luns {
		if known != nil {
			if _, ok := known[id]; !ok {
				return false
			}
		}
		if l.LunID < 0 || l.LunID > maxID || seen[l.LunID] {
			return false
		}
		seen[l.LunID] = true
	}
	return true
}

// clientValid is validator.target's check of one client's LUNs.
func clientValid(t *Target, c *Client) bool {
	return c != nil && lunsValid(c.Luns, t.Disks, MaxLunID)
}

// groupsAndPortalsValid is validator.target's checks of the groups, the
// clients' group names and the portals, all cheap enough to run on every
// changed target: a target has few groups and portals, and only grouped
// clients are looked at.
func groupsAndPortalsValid(t *Target) bool {
	for name, c := range t.Clients {
		if c == nil {
			return false
		}
		if c.GroupName == "" {
			continue
		}
		if g := t.Groups[c.GroupName]; g == nil || !slices.Contains(g.Members, name) {
			return false
		}
	}
	for name, g := range t.Groups {
		if g == nil || !lunsValid(g.Disks, t.Disks, MaxLunID) {
			return false
		}
		for _, m := range g.Members {
			if c := t.Clients[m]; c == nil || c.GroupName != name {
				return false
			}
		}
	}
	if len(t.Portals) > 0 && t.IPList == nil {
		return false
	}
	for _, p := range t.Portals {
		if p == nil {
			return false
		}
		if t.IPList == nil {
			continue
		}
		for _, ip := range p.PortalIPAddresses {
			if !slices.Contains(t.IPList, ip) {
				return false
			}
		}
	}
	return true
}

// childNames records the invalid names of a target's groups and portals.
func (in *incremental) childNames(te *targetEncoding, tp string, t *Target) error {
	for g := range t.Groups {
		if err := in.name(&te.names, childPath(keyPath(tp, "groups"), g), ValidateSafeName(g)); err != nil {
			return err
		}
	}
	for gw := range t.Portals {
		if err := in.name(&te.names, childPath(keyPath(tp, "portals"), gw), ValidateGatewayName(gw)); err != nil {
			return err
		}
	}
	return nil
}

// target writes and checks a target that is not prev's (pt: what the
// previous Encoding recorded for the target at this key, nil if none).
// prevRaw is the previous target's bytes.
func (in *incremental) target(iqn string, t *Target, b *bytes.Buffer, depth int, pt *targetEncoding, prevRaw []byte) (*targetEncoding, error) {
	base := b.Len()
	in.e.stats.Encoded++
	te := &targetEncoding{disksNil: t.Disks == nil}
	tp := childPath("targets", iqn)
	cp := keyPath(tp, "clients")
	if err := in.name(&te.names, tp, ValidateIQN(iqn)); err != nil {
		return nil, err
	}
	if err := in.childNames(te, tp, t); err != nil {
		return nil, err
	}
	if len(t.Extra) > 0 {
		// encoded whole, through the generic tree, and checked whole
		if err := t.encode(b, depth); err != nil {
			return nil, err
		}
		for name, c := range t.Clients {
			if err := in.name(&te.names, childPath(cp, name), ValidateIQN(name)); err != nil {
				return nil, err
			}
			if !clientValid(t, c) {
				return nil, errIncomplete
			}
		}
		if !lunsValid(t.Disks, nil, MaxTargetLunID) || !groupsAndPortalsValid(t) {
			return nil, errIncomplete
		}
		return te, in.checkTargetRefs(t, nil, true)
	}
	if pt != nil && pt.clients == nil {
		pt = nil // encoded whole last time: nothing to build on
	}
	var (
		prevClients *section[*Client]
		prevPortals *section[*Portal]
		prevGroups  *section[*Group]
		prevDisks   *section[LunRef]
	)
	if pt != nil {
		prevClients, prevPortals, prevGroups, prevDisks = pt.clients, pt.portals, pt.groups, pt.disks
	}
	raw := prevRaw
	e := in.e
	var err error

	// Target.encode, with the four maps built on pt's
	o := openObject(b, depth)
	o.bool("acl_enabled", t.ACLEnabled)
	o.key("auth")
	if err := t.Auth.encode(b, depth+1); err != nil {
		return nil, err
	}
	var cw written
	te.clients, cw, err = writeSection(&o, "clients", t.Clients, base, prevClients, raw, samePtr[Client], func(c child[*Client]) error {
		if c.at >= 0 {
			// same key, same name verdict
			if n := pt.badClients[c.key]; n != nil {
				if err := in.stillTolerated([]error{n}); err != nil {
					return err
				}
				te.badClient(c.key, n)
			}
		} else {
			var names []error
			if err := in.name(&names, childPath(cp, c.key), ValidateIQN(c.key)); err != nil {
				return err
			}
			if len(names) > 0 {
				te.badClient(c.key, names[0])
			}
		}
		return encodeChild(e, c, b, (*Client).encode)
	})
	if err != nil {
		return nil, err
	}
	for _, n := range te.badClients {
		te.names = append(te.names, n)
	}
	if err := o.generic("controls", t.Controls); err != nil {
		return nil, err
	}
	o.str("created", t.Created)
	var dw written
	te.disks, dw, err = writeSection(&o, "disks", t.Disks, base, prevDisks, raw, sameLun, func(c child[LunRef]) error {
		if c.reused {
			return nil
		}
		return c.v.encode(b, c.depth)
	})
	if err != nil {
		return nil, err
	}
	te.groups, _, err = writeSection(&o, "groups", t.Groups, base, prevGroups, raw, samePtr[Group], func(c child[*Group]) error {
		return encodeChild(e, c, b, (*Group).encode)
	})
	if err != nil {
		return nil, err
	}
	if t.IPList != nil {
		o.list("ip_list", t.IPList)
	}
	te.portals, _, err = writeSection(&o, "portals", t.Portals, base, prevPortals, raw, samePtr[Portal], func(c child[*Portal]) error {
		return encodeChild(e, c, b, (*Portal).encode)
	})
	if err != nil {
		return nil, err
	}
	o.optStr("updated", t.Updated)
	o.close()

	// validator.target's checks, on what changed where the previous
	// target's validity says the rest holds
	freshDisks := make([]string, len(dw.fresh))
	for i, at := range dw.fresh {
		freshDisks[i] = te.disks.keys[at]
	}
	if err := in.checkTargetRefs(t, freshDisks, pt == nil); err != nil {
		return nil, err
	}
	if !dw.unchanged() && !lunsValid(t.Disks, nil, MaxTargetLunID) {
		return nil, errIncomplete
	}
	// a client's LUNs must be the target's disks: all clients again when
	// a disk left the target (or the check's nil-map exemption changed)
	if pt == nil || dw.dropped || pt.disksNil != te.disksNil {
		for _, c := range t.Clients {
			if !clientValid(t, c) {
				return nil, errIncomplete
			}
		}
	} else {
		for _, i := range cw.fresh {
			if !clientValid(t, te.clients.vals[i]) {
				return nil, errIncomplete
			}
		}
	}
	if !groupsAndPortalsValid(t) {
		return nil, errIncomplete
	}
	return te, nil
}

// badClient records the invalid name of the client called name.
func (te *targetEncoding) badClient(name string, err error) {
	if te.badClients == nil {
		te.badClients = map[string]error{}
	}
	te.badClients[name] = err
}
