package lio

import (
	"cmp"
	"maps"
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
func (p *lunsPiece) patch(spec Spec, ts TargetSpec, sos *soSet, m *buildMemo) (*lunsPiece, bool) {
	if !p.patchable {
		// duplicate LUN ids or storage objects: only whole matches
		return p, p.matches(spec, ts, sos)
	}
	if len(p.tpgs) == 0 || !slices.Equal(p.ipList, ts.IPList) || !maps.EqualFunc(p.portals, ts.Portals, slices.Equal) {
		return nil, false
	}
	limit := lunPatchMax(len(p.ids))
	// p's specs are those of the build before but for the disks changed
	// since, when p was made or taken by it
	recent := p.gen == m.gen-1
	// gone are the positions in p.ids of the disks removed or changed
	var gone []int
	goneID := map[string]bool{}
	for i, id := range p.ids {
		if n, ok := ts.Disks[id]; ok && n == p.lunIDs[i] {
			if recent && !m.changedDisks[id] {
				continue
			}
			d, ok := spec.Disks[id]
			if !ok {
				return nil, false // an error of a build from scratch
			}
			if diskSpecEqual(p.specs[i], d) {
				continue
			}
		}
		if len(gone) == limit {
			return nil, false
		}
		gone = append(gone, i)
		goneID[id] = true
	}
	var added []string
	if kept := len(p.ids) - len(gone); len(ts.Disks) != kept {
		had := p.tpgs[0].lunByDisk // every disk of p has a LUN in each TPG
		for id := range ts.Disks {
			if _, ok := had[id]; ok && !goneID[id] {
				continue
			}
			if len(gone)+len(added) == limit {
				return nil, false
			}
			added = append(added, id)
		}
	}
	if sos.overlaps(p) {
		return nil, false
	}
	if len(added) == 0 && len(gone) == 0 {
		return p, true
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
			return nil, false
		}
		name, index := d.objectName(id), ts.Disks[id]
		if owner, ok := p.names[name]; (ok && !goneID[owner]) || newName[name] || sos.has(name) {
			return nil, false
		}
		if owner, ok := p.indexes[index]; (ok && !goneID[owner]) || newIndex[index] {
			return nil, false
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
				return nil, false
			}
			g, err := aluaGroup(spec.Settings, specs[i], so, ts, ip, tag, m)
			if err != nil {
				return nil, false
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

	// p's indexes become q's
	goneName, goneIndex := make(map[string]bool, len(gone)), make(map[int]bool, len(gone))
	for _, i := range gone {
		name := p.specs[i].objectName(p.ids[i])
		goneName[name], goneIndex[p.lunIDs[i]] = true, true
		delete(p.names, name)
		delete(p.indexes, p.lunIDs[i])
	}
	for i, id := range added {
		p.names[names[i]], p.indexes[ts.Disks[id]] = id, id
	}
	q := &lunsPiece{ipList: p.ipList, portals: p.portals, names: p.names, indexes: p.indexes, patchable: true,
		tpgs: make([]tpgLUNs, len(p.tpgs))}
	for t, tl := range p.tpgs {
		for id := range goneID {
			delete(tl.lunByDisk, id)
		}
		for _, l := range addedLUNs[t] {
			tl.lunByDisk[p.indexes[l.Index]] = l.Index
		}
		q.tpgs[t] = tpgLUNs{lunByDisk: tl.lunByDisk,
			luns: mergeSorted(tl.luns, addedLUNs[t], func(l LUN) bool { return goneIndex[l.Index] },
				func(a, b LUN) int { return cmp.Compare(a.Index, b.Index) })}
	}
	q.sos = mergeSorted(p.sos, newSOs, func(so StorageObject) bool { return goneName[so.Name] },
		func(a, b StorageObject) int { return strings.Compare(a.Name, b.Name) })

	// the disks, sorted, with their LUN ids and (copied) specs
	n := len(p.ids) - len(gone) + len(added)
	q.ids, q.lunIDs, q.specs = make([]string, 0, n), make([]int, 0, n), make([]DiskSpec, 0, n)
	j := 0
	for i, id := range p.ids {
		for ; j < len(added) && added[j] < id; j++ {
			q.ids, q.lunIDs, q.specs = append(q.ids, added[j]), append(q.lunIDs, ts.Disks[added[j]]), append(q.specs, specCopy(specs[j]))
		}
		if !goneID[id] {
			q.ids, q.lunIDs, q.specs = append(q.ids, id), append(q.lunIDs, p.lunIDs[i]), append(q.specs, p.specs[i])
		}
	}
	for ; j < len(added); j++ {
		q.ids, q.lunIDs, q.specs = append(q.ids, added[j]), append(q.lunIDs, ts.Disks[added[j]]), append(q.specs, specCopy(specs[j]))
	}
	return q, true
}

// mergeSorted returns a new list of old without what drop reports, and
// add, both sorted by cmp and without equal elements across them; nil
// when that is empty, as a build's lists are.
func mergeSorted[E any](old, add []E, drop func(E) bool, cmp func(a, b E) int) []E {
	var out []E
	if n := len(old) + len(add); n > 0 {
		out = make([]E, 0, n)
	}
	j := 0
	for _, e := range old {
		if drop(e) {
			continue
		}
		for ; j < len(add) && cmp(add[j], e) < 0; j++ {
			out = append(out, add[j])
		}
		out = append(out, e)
	}
	out = append(out, add[j:]...)
	if len(out) == 0 {
		return nil
	}
	return out
}

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
