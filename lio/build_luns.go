package lio

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// lunPatchMax is how many disks of a target of n may change (one added,
// removed, moved to another LUN id or given another spec; a move counts
// twice) for its LUNs to be patched from the last build's: past it,
// copying the lists costs about what building them again does.
func lunPatchMax(n int) int { return n/8 + 16 }

// patch returns what the LUNs of ts come to in spec, made from p when ts
// differs from what p was made of in a few disks only: p's lists are
// copied with those disks' LUNs and storage objects taken out or made and
// put in, instead of every LUN being made again, and the result is what a
// build from scratch makes (TestBuilderLUNPatch). It returns p itself
// when nothing changed. ok is false when it cannot tell cheaply — the
// portals changed, too many disks did, a new disk would fail or share its
// storage object or LUN id, or another target made one of these storage
// objects — and the caller builds the LUNs again. A patch takes p's
// indexes over: p must not be used after a patch that succeeded.
func (p *lunsPiece) patch(spec Spec, iqn string, ts TargetSpec, sos *soSet, m *buildMemo) (_ *lunsPiece, moved map[string]bool, _ bool) {
	if p.gen != m.gen-1 {
		// p's disks have the specs of the build before, but for those
		// changed since (m.changedDisks), only when that build made or
		// took p
		return nil, nil, false
	}
	if !p.patchable {
		// duplicate LUN ids or storage objects: only whole matches
		return p, noneMoved, p.matches(ts, sos, m)
	}
	if len(p.tpgs) == 0 || !slices.Equal(p.ipList, ts.IPList) || !maps.EqualFunc(p.portals, ts.Portals, slices.Equal) {
		return nil, nil, false
	}
	if spec.Frozen && p.frozenDisks != nil && sameMap(p.frozenDisks, ts.Disks) {
		// the target's disks and LUN ids of the build before: whether a
		// disk of p changed is a look at the few that did
		had, touched := p.tpgs[0].lunByDisk, false
		for id := range m.changedDisks {
			_, in := had[id]
			touched = touched || in
		}
		if !touched && !sos.overlaps(p) {
			return p, noneMoved, true
		}
	}
	limit := lunPatchMax(len(p.ids))
	// gone are the positions in p.ids of the disks removed or changed
	var gone []int
	goneID := map[string]bool{}
	var added []string
	if tc, ok := m.hintFor(iqn); ok {
		// p is the last build's (p.gen), whose Spec the hint is since:
		// only the disks it names, and those whose spec changed, may
		// differ from p's
		cand := slices.Concat(tc.Disks, slices.Collect(maps.Keys(m.changedDisks)))
		had := p.tpgs[0].lunByDisk
		for _, id := range uniq(cand) {
			i, found := slices.BinarySearch(p.ids, id)
			n, in := ts.Disks[id]
			if found && in && n == p.lunIDs[i] && !m.changedDisks[id] {
				continue
			}
			if found {
				gone = append(gone, i)
				goneID[id] = true
			}
			if _, ok := had[id]; in && (!ok || goneID[id]) {
				added = append(added, id)
			}
			if len(gone)+len(added) > limit {
				return nil, nil, false
			}
		}
		if len(ts.Disks) == len(p.ids)-len(gone)+len(added) {
			slices.Sort(gone)
			return p.patchWith(spec, ts, sos, m, gone, goneID, added)
		}
		// a disk added or removed that the hint does not name: every one
		// is compared
		gone, goneID, added = nil, map[string]bool{}, nil
	}
	for i, id := range p.ids {
		if n, ok := ts.Disks[id]; ok && n == p.lunIDs[i] && !m.changedDisks[id] {
			continue
		}
		if len(gone) == limit {
			return nil, nil, false
		}
		gone = append(gone, i)
		goneID[id] = true
	}
	if kept := len(p.ids) - len(gone); len(ts.Disks) != kept {
		had := p.tpgs[0].lunByDisk // every disk of p has a LUN in each TPG
		for id := range ts.Disks {
			if _, ok := had[id]; ok && !goneID[id] {
				continue
			}
			if len(gone)+len(added) == limit {
				return nil, nil, false
			}
			added = append(added, id)
		}
	}
	return p.patchWith(spec, ts, sos, m, gone, goneID, added)
}

// patchWith is patch given the positions in p.ids of the disks gone (or
// changed), their ids, and the disks added (or changed).
func (p *lunsPiece) patchWith(spec Spec, ts TargetSpec, sos *soSet, m *buildMemo, gone []int, goneID map[string]bool, added []string) (_ *lunsPiece, moved map[string]bool, _ bool) {
	if sos.overlaps(p) {
		return nil, nil, false
	}
	if len(added) == 0 && len(gone) == 0 {
		return p, noneMoved, true
	}
	slices.Sort(added)

	// the new disks' storage objects and LUNs, made aside: nothing of p
	// changes before all of them are made
	specs := make([]DiskSpec, len(added))
	names := make([]string, len(added))
	newName, newIndex := map[string]bool{}, map[int]bool{}
	for i, id := range added {
		d, ok := spec.Disks[id]
		if !ok {
			return nil, nil, false // an error of a build from scratch
		}
		name, index := d.objectName(id), ts.Disks[id]
		if owner, ok := p.names[name]; (ok && !goneID[owner]) || newName[name] || sos.has(name) {
			return nil, nil, false
		}
		if owner, ok := p.indexes[index]; (ok && !goneID[owner]) || newIndex[index] {
			return nil, nil, false
		}
		newName[name], newIndex[index] = true, true
		specs[i], names[i] = d, name
	}
	made := &soSet{m: map[string]*StorageObject{}}
	addedLUNs := make([][]LUN, len(ts.IPList))
	for t, raw := range ts.IPList {
		ip, tag := trimBrackets(raw), t+1
		for i, id := range added {
			so, err := storageObject(spec, id, specs[i], made, m)
			if err != nil {
				return nil, nil, false
			}
			g, err := aluaGroup(spec.Settings, specs[i], so, ts, ip, tag, m)
			if err != nil {
				return nil, nil, false
			}
			addedLUNs[t] = append(addedLUNs[t], LUN{Index: ts.Disks[id], StorageObject: so.Name, ALUAGroup: g})
		}
		slices.SortFunc(addedLUNs[t], func(a, b LUN) int { return cmp.Compare(a.Index, b.Index) })
	}
	newSOs := make([]StorageObject, 0, len(added))
	for _, name := range names {
		so := *made.m[name]
		slices.SortFunc(so.ALUA, aluaByID)
		newSOs = append(newSOs, so)
	}
	slices.SortFunc(newSOs, func(a, b StorageObject) int { return strings.Compare(a.Name, b.Name) })

	// where the gone disks' storage objects and LUNs are in p's lists
	goneNames, goneIndexes := make([]string, 0, len(gone)), make([]int, 0, len(gone))
	var unmapped []int
	for _, i := range gone {
		goneNames, goneIndexes = append(goneNames, m.nameBefore(p.ids[i])), append(goneIndexes, p.lunIDs[i])
		if n, ok := ts.Disks[p.ids[i]]; !ok || n != p.lunIDs[i] {
			unmapped = append(unmapped, p.lunIDs[i])
		}
	}
	dropSOs, ok := positions(p.sos, goneNames, func(so StorageObject, n string) int { return strings.Compare(so.Name, n) })
	dropLUNs := make([][]int, len(p.tpgs))
	for t, tl := range p.tpgs {
		var found bool
		dropLUNs[t], found = positions(tl.luns, goneIndexes, func(l LUN, n int) int { return cmp.Compare(l.Index, n) })
		ok = ok && found
	}
	if !ok {
		return nil, nil, false // not as p was made: build again
	}

	// p's indexes become q's
	for k, name := range goneNames {
		delete(p.names, name)
		delete(p.indexes, goneIndexes[k])
	}
	for i, id := range added {
		p.names[names[i]], p.indexes[ts.Disks[id]] = id, id
	}
	q := &lunsPiece{ipList: p.ipList, portals: p.portals, names: p.names, indexes: p.indexes, patchable: true, gone: unmapped,
		tpgs: make([]tpgLUNs, len(p.tpgs))}
	byIndex := func(a, b LUN) int { return cmp.Compare(a.Index, b.Index) }
	for t, tl := range p.tpgs {
		for id := range goneID {
			delete(tl.lunByDisk, id)
		}
		for _, l := range addedLUNs[t] {
			tl.lunByDisk[p.indexes[l.Index]] = l.Index
		}
		q.tpgs[t] = tpgLUNs{lunByDisk: tl.lunByDisk, grown: tl.grown}
		q.tpgs[t].luns = q.tpgs[t].grown.splice(tl.luns, dropLUNs[t], addedLUNs[t], byIndex, eq[LUN])
	}
	q.sosG = p.sosG
	q.sos = q.sosG.splice(p.sos, dropSOs, newSOs, func(a, b StorageObject) int { return strings.Compare(a.Name, b.Name) }, sameSO)

	// the disks, sorted, with their LUN ids
	addedIDs := make([]int, len(added))
	for i, id := range added {
		addedIDs[i] = ts.Disks[id]
	}
	at, _ := positions(p.ids, added, strings.Compare)
	q.idsG, q.lunIDsG = p.idsG, p.lunIDsG
	q.ids = q.idsG.spliceAt(p.ids, gone, at, added, eq[string])
	q.lunIDs = q.lunIDsG.spliceAt(p.lunIDs, gone, at, addedIDs, eq[int])
	// the disks moved: had ones whether p had them
	moved = maps.Clone(goneID)
	for _, id := range added {
		moved[id] = goneID[id]
	}
	return q, moved, true
}

// noneMoved is the moved disks of a patch that changed nothing (read only).
var noneMoved = map[string]bool{}

// positions returns where the keys are in l, sorted by key with no key
// twice: their positions, sorted, and whether l has every key (a key not
// in l gives the position it would have).
func positions[E, K any](l []E, keys []K, cmp func(E, K) int) ([]int, bool) {
	out := make([]int, len(keys))
	all := true
	for i, k := range keys {
		var found bool
		out[i], found = slices.BinarySearchFunc(l, k, cmp)
		all = all && found
	}
	slices.Sort(out)
	return out, all
}

// spliceAt returns a new list of old without the elements at the
// positions drop (sorted) and with add[i] before old[at[i]] (at sorted;
// len(old) for the end); nil when that is empty. Its capacity is at least
// room.
func spliceAt[E any](old []E, drop, at []int, add []E, room int) []E {
	n := len(old) - len(drop) + len(add)
	if n == 0 {
		return nil
	}
	out := make([]E, 0, max(n, room))
	i, d := 0, 0 // old[i:] is left to copy, drop[d:] to skip
	upTo := func(end int) {
		for ; d < len(drop) && drop[d] < end; d++ {
			out = append(out, old[i:drop[d]]...)
			i = drop[d] + 1
		}
		if i < end {
			out = append(out, old[i:end]...)
			i = end
		}
	}
	for k, e := range add {
		upTo(at[k])
		out = append(out, e)
	}
	upTo(len(old))
	return out
}

// grown is the backing array of lists that one owner alone extends, under
// its lock: a Builder's memo, whose lists of a target's LUNs, storage
// objects and disk names the next build patches. all[:len(all)] are the
// slots ever handed out, in any list made from it, which are never
// written again; the capacity past them is the owner's only, as the lists
// it hands out are clipped (an append to one copies). A disk added at the
// end of a list of thousands (the next LUN id, the next image name) then
// fills one slot instead of copying the list, and one removed from the end
// leaves a prefix; the states before, which hold shorter or equal lists of
// the same array, see nothing change.
//
// A grown is moved, never shared: copying one and extending both copies
// would write one slot twice.
type grown[E any] struct{ all []E }

// splice returns a list of old, sorted by cmp, without the elements at the
// positions drop (sorted) and with add (sorted, no element equal to one
// kept) put in order; nil when that is empty, as a build's lists are. It
// is made in the array of g when old is a list g handed out, else copied
// once (with room) into an array g then holds.
func (g *grown[E]) splice(old []E, drop []int, add []E, cmp func(a, b E) int, same func(a, b E) bool) []E {
	at, _ := positions(old, add, cmp)
	return g.spliceAt(old, drop, at, add, same)
}

// spliceAt is spliceAt(old, drop, at, add) made as splice says. A slot
// past old already handed out is taken again only when it holds what
// would be put there (same), as after a disk removed and added back.
func (g *grown[E]) spliceAt(old []E, drop, at []int, add []E, same func(a, b E) bool) []E {
	n := len(old) - len(drop) + len(add)
	if n == 0 {
		return nil
	}
	if len(old) <= len(g.all) && (len(old) == 0 || &old[0] == &g.all[0]) {
		// drop sorted with no position twice: the last ones of old
		if len(add) == 0 && len(drop) > 0 && drop[0] == n {
			return old[:n:n]
		}
		if len(drop) == 0 && len(add) > 0 && at[0] == len(old) && n <= cap(g.all) {
			i := len(old)
			for ; i < n; i++ {
				e := add[i-len(old)]
				if i == len(g.all) {
					g.all = append(g.all, e)
				} else if !same(g.all[i], e) {
					break
				}
			}
			if i == n {
				return g.all[:n:n]
			}
		}
	}
	// one copy, with room for the next ones (an eighth: a list grown at
	// its end is copied every n/8 additions)
	out := spliceAt(old, drop, at, add, n+n/8+4)
	g.all = out
	return out[:n:n]
}

func eq[E comparable](a, b E) bool { return a == b }

// sameSO is whether two storage objects are alike in every respect a
// state can show (reflect.DeepEqual: nil and empty maps differ too).
func sameSO(a, b StorageObject) bool { return reflect.DeepEqual(a, b) }

// specCopy is d with its own copy of what may change under the caller (the
// document's controls map).
func specCopy(d DiskSpec) DiskSpec {
	c := d.Controls
	d.Controls = nil
	if len(c) > 0 {
		d.Controls = maps.Clone(c)
	}
	return d
}
