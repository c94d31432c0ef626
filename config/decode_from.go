package config

import "bytes"

// Decoding what changed.
//
// A peer reads the config object again after every commit another gateway
// makes, and decoding all of it gave a document of all-new objects: at
// thousands of LUNs that was the parse of every disk, client and LUN map,
// and every memo the gateway keeps by object (Doc.Frozen) missed. A
// Decoding records where each disk, target, client, portal, group and LUN
// map lay in the bytes it decoded, with the object they gave; the next
// LoadFrom compares each one's bytes with the ones at the same key there
// and takes the old object when they are equal, so a document differing in
// one client is one client's parse, and shares everything else with the
// last one. Equal bytes decode to equal objects (the typed decoder reads a
// value from its own bytes alone), so this is exact, not a heuristic.

// Decoding is what LoadFrom recorded of a document it decoded on the
// typed path. It is immutable, as are the objects it holds.
type Decoding struct {
	raw     []byte
	disks   map[string]placed[*Disk]
	targets map[string]placed[*targetDecoding]
	stats   DecodingStats
}

// DecodingStats counts the disks, targets, clients, portals, groups and
// target LUN maps a LoadFrom parsed and the ones it took from its base.
type DecodingStats struct {
	Decoded, Reused int
}

// Stats says how much of its document the LoadFrom that made d parsed.
func (d *Decoding) Stats() DecodingStats {
	if d == nil {
		return DecodingStats{}
	}
	return d.stats
}

// placed is an object and where its bytes are: offsets from the start of
// the value that holds it (the document's, a target's).
type placed[T any] struct {
	start, end int
	v          T
}

// targetDecoding is a target and where its children lie in its bytes.
type targetDecoding struct {
	t       *Target
	clients map[string]placed[*Client]
	portals map[string]placed[*Portal]
	groups  map[string]placed[*Group]
	// luns is the value of the target's "disks" member; has says there
	// was one.
	luns placed[map[string]LunRef]
	has  bool
}

// LoadFrom is Load for a caller that keeps the Decoding of the document it
// decoded last (base; nil: none), the config store: every object whose
// bytes are the ones base decoded at the same key is base's object. The
// document is a shared snapshot, like the source of a fork: it and base's
// are changed only through a Fork (Doc.Frozen holds for their objects).
// The Decoding is nil when the document took the generic path (an
// upgrade, bytes the typed decoder leaves to it).
func LoadFrom(raw []byte, opts UpgradeOptions, base *Decoding) (doc *Doc, upgraded bool, dec *Decoding, err error) {
	if d, rec, ok := decodeFrom(raw, base); ok && !d.NeedsUpgrade(opts.Gateway) {
		d.cow = true
		return d, false, rec, nil
	}
	doc, upgraded, err = Load(raw, opts)
	if doc != nil {
		doc.cow = true
	}
	return doc, upgraded, nil, err
}

// decodeFrom is decodeFast recording a Decoding and reusing base's objects.
func decodeFrom(raw []byte, base *Decoding) (d *Doc, rec *Decoding, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, is := r.(giveUp); !is {
				panic(r)
			}
			d, rec, ok = nil, nil, false
		}
	}()
	if base == nil {
		base = &Decoding{}
	}
	rec = &Decoding{raw: raw}
	p := &scanner{s: raw, base: base, rec: rec}
	d = p.doc()
	p.ws()
	if p.i != len(p.s) {
		return nil, nil, false
	}
	return d, rec, true
}

// reuse reads the member value at p.i, of a container that starts at
// origin in p.s: base's object when the bytes there are the ones it came
// from (baseRaw is the base container's bytes), else dec's.
func reuse[T any](p *scanner, stats *DecodingStats, base placed[T], found bool, baseRaw []byte, origin int, dec func(*scanner) T) placed[T] {
	p.ws()
	start := p.i
	if found {
		n := base.end - base.start
		if start+n <= len(p.s) && bytes.Equal(p.s[start:start+n], baseRaw[base.start:base.end]) {
			p.i = start + n
			stats.Reused++
			return placed[T]{start - origin, p.i - origin, base.v}
		}
	}
	v := dec(p)
	stats.Decoded++
	return placed[T]{start - origin, p.i - origin, v}
}

// childrenFrom is childMap reusing base's children (nil: none); it
// returns where each child lies too.
func childrenFrom[T any](p *scanner, base map[string]placed[T], baseRaw []byte, origin int, dec func(*scanner) T) (map[string]T, map[string]placed[T]) {
	out := make(map[string]T, len(base))
	at := make(map[string]placed[T], len(base))
	p.members(func(k string) {
		b, found := base[k]
		v := reuse(p, &p.rec.stats, b, found, baseRaw, origin, dec)
		out[k], at[k] = v.v, v
	})
	return out, at
}

// disksFrom reads the document's disks member.
func (p *scanner) disksFrom() map[string]*Disk {
	disks, at := childrenFrom(p, p.base.disks, p.base.raw, 0, (*scanner).disk)
	p.rec.disks = at
	return disks
}

// targetsFrom reads the document's targets member: a target whose bytes
// did not change is base's; one that did is read with its children
// reused.
func (p *scanner) targetsFrom() map[string]*Target {
	out := make(map[string]*Target, len(p.base.targets))
	p.rec.targets = make(map[string]placed[*targetDecoding], len(p.base.targets))
	p.members(func(k string) {
		b, found := p.base.targets[k]
		var bt *targetDecoding
		var braw []byte
		if found {
			bt, braw = b.v, p.base.raw[b.start:b.end]
		}
		v := reuse(p, &p.rec.stats, b, found, p.base.raw, 0, func(p *scanner) *targetDecoding {
			return p.targetFrom(bt, braw)
		})
		out[k], p.rec.targets[k] = v.v.t, v
	})
	return out
}

// targetFrom is target, reusing the children of bt (nil: none), which
// came from braw.
func (p *scanner) targetFrom(bt *targetDecoding, braw []byte) *targetDecoding {
	if bt == nil {
		bt = &targetDecoding{}
	}
	p.ws()
	origin := p.i
	td := &targetDecoding{}
	t := &Target{Disks: map[string]LunRef{}, Clients: map[string]*Client{}, Portals: map[string]*Portal{}, Groups: map[string]*Group{}}
	p.members(func(k string) {
		switch k {
		case "disks":
			td.luns = reuse(p, &p.rec.stats, bt.luns, bt.has, braw, origin, func(p *scanner) map[string]LunRef {
				return childMap(p, (*scanner).lunRef)
			})
			td.has = true
			t.Disks = td.luns.v
		case "clients":
			t.Clients, td.clients = childrenFrom(p, bt.clients, braw, origin, (*scanner).client)
		case "portals":
			t.Portals, td.portals = childrenFrom(p, bt.portals, braw, origin, (*scanner).portal)
		case "groups":
			t.Groups, td.groups = childrenFrom(p, bt.groups, braw, origin, (*scanner).group)
		default:
			p.targetField(t, k)
		}
	})
	td.t = t
	return td
}
