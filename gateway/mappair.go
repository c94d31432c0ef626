package gateway

import "maps"

// mapPair makes the successive versions of one map of the lio.Spec the
// spec memo hands out (the disks, a target's LUNs, a target's clients)
// without copying thousands of entries to change one.
//
// A map handed to lio.Builder must not change while the Builder may still
// take it for what it was: the Builder remembers the maps of the build
// before by identity (a Frozen spec's) and takes one that comes again for
// the same content. It compares with that build's maps only (the disks of
// buildMemo.diskNames, a lunsPiece patched only from the build just before,
// the ACL lists and CHAP answers of the last build), so a map two builds
// old is nobody's once the build after it is done: the pair patches that
// one into the next version, two versions on, instead of copying the last
// one. Each version is a map other than the version before it, and comes
// again only as the same content. specMemo's callers finish with a spec
// before asking for the one after next (Reconciler.specMu), so nobody reads
// the map being patched.
type mapPair[V any] struct {
	// cur is the version handed out last, spare the one before it (nil:
	// none yet), behind the keys where spare may differ from cur.
	cur, spare map[string]V
	behind     []string
	// step lists the keys the last next changed from the version before
	// it (none when it handed cur out again); stepKnown is false when that
	// call made the first version. steps counts the calls. A lio.Spec
	// hint (lio.SpecChanges) is made of them.
	step      []string
	stepKnown bool
	steps     uint64
}

// mapEdit sets key to val in a map, or deletes it (del).
type mapEdit[V any] struct {
	key string
	val V
	del bool
}

// next is the version after cur with edits made: cur itself when there are
// none (it does not change), else a map other than cur, which the pair
// will patch again two versions on.
func (p *mapPair[V]) next(edits []mapEdit[V]) map[string]V {
	p.steps++
	p.stepKnown, p.step = p.cur != nil, nil
	for _, e := range edits {
		p.step = append(p.step, e.key)
	}
	if len(edits) == 0 && p.cur != nil {
		return p.cur
	}
	out := p.spare
	switch {
	case p.cur == nil:
		out = make(map[string]V, len(edits))
	case out == nil || len(p.behind) > len(p.cur)/2+16:
		// the first change, or one after many: a copy costs no more
		out = maps.Clone(p.cur)
	default:
		// catch up with cur where it moved on from spare
		for _, k := range p.behind {
			if v, ok := p.cur[k]; ok {
				out[k] = v
			} else {
				delete(out, k)
			}
		}
	}
	behind := p.behind[:0]
	for _, e := range edits {
		if e.del {
			delete(out, e.key)
		} else {
			out[e.key] = e.val
		}
		behind = append(behind, e.key)
	}
	p.spare, p.cur, p.behind = p.cur, out, behind
	return out
}
