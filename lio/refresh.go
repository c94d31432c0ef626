package lio

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// Refresh returns what LIO holds after plan was applied in full through f
// to a tree that held prev, a State Observe (or Refresh) read through f:
// the objects the plan touched (a storage object, a target made or
// removed, a TPG's settings, enable and portals, one TPG LUN, one ACL with
// its mapped LUNs) are read again, the rest is prev's. A caller that is the
// only writer of what it manages then pays for what changed, not for a
// walk of the whole tree, as NewPlanSince does for the plan; like it, it
// must observe in full at start-up, after a failed operation and on a
// drift check. A plan with a path outside the objects above makes it read
// everything (Observe).
//
// prev is not modified; the result shares its unchanged objects, which
// nobody may modify either.
func Refresh(f FS, prev State, plan Plan) (State, error) {
	return refresh(f, prev, plan, false)
}

// RefreshOwned is Refresh for a caller that hands prev over and keeps
// only the result: the lists of prev that a few objects join or leave are
// edited in place, kept sorted. Adding one storage object to thousands
// then moves part of one list within its array instead of copying the
// whole list into a new one (with the write barriers of its pointers, and
// the clearing of a new large allocation), which at 4096 LUNs cost more
// than the rest of a PUT /api/targetlun's apply. Nothing else may hold
// prev or one of its lists: a list that Observe or RefreshOwned made is
// the caller's alone. The lists stay sorted, so what seenSortedBy
// remembers of them stays true.
func RefreshOwned(f FS, prev State, plan Plan) (State, error) {
	return refresh(f, prev, plan, true)
}

func refresh(f FS, prev State, plan Plan, owned bool) (State, error) {
	t := touchedBy(plan)
	if t.unknown || !f.exists(targetDir) {
		return Observe(f)
	}
	st := prev
	if t.fabric {
		st.Fabric = f.exists(fabricDir)
		st.DiscoveryAuth = nil
		if st.Fabric {
			da := &DiscoveryAuth{Auth: readAuth(f, discAuth)}
			da.Enforce = readOr(f, discAuth+"/enforce_discovery_auth") == "1"
			st.DiscoveryAuth = da
		}
	}
	var err error
	if len(t.hbas) > 0 {
		st.HBAs, _ = refreshList(owned, st.HBAs, sortedKeys(t.hbas), strings.Compare, func(h string) (string, bool, error) {
			return h, f.exists(coreDir + "/" + h), nil
		})
	}
	if len(t.sos) > 0 {
		st.StorageObjects, err = refreshList(owned, st.StorageObjects, sortedKeys(t.sos), func(so StorageObject, p string) int { return cmp.Compare(so.Path, p) },
			func(p string) (StorageObject, bool, error) {
				if !f.exists(p) {
					return StorageObject{}, false, nil
				}
				plugin := Plugin(hbaRe.FindStringSubmatch(strings.Split(p, "/")[2])[1])
				so, err := cached(f, p, false, func(p string) (StorageObject, error) { return observeSO(f, plugin, p, false) })
				return so, true, err
			})
		if err != nil {
			return st, err
		}
	}
	if len(t.targets) == 0 && len(t.tpgs) == 0 {
		return st, nil
	}
	st.Targets, err = refreshList(owned, st.Targets, sortedKeys(t.targets), func(t Target, iqn string) int { return cmp.Compare(t.IQN, iqn) },
		func(iqn string) (Target, bool, error) {
			if !f.exists(targetPath(iqn)) {
				return Target{}, false, nil
			}
			tg, err := observeTarget(f, iqn, false)
			return tg, true, err
		})
	if err != nil {
		return st, err
	}
	if len(t.tpgs) > 0 {
		// refreshTPG replaces a target's TPG list in place: a list of a
		// few targets, which refreshList may have shared with prev
		st.Targets = slices.Clone(st.Targets)
	}
	byIQN := func(t Target, iqn string) int { return cmp.Compare(t.IQN, iqn) }
	for _, k := range sortedTPGKeys(t.tpgs) {
		if t.targets[k.iqn] {
			continue // read whole above
		}
		ti, found := slices.BinarySearchFunc(st.Targets, k.iqn, byIQN)
		if !found {
			// made since prev by something that was not planned here
			return Observe(f)
		}
		if err := refreshTPG(f, &st.Targets[ti], k.tag, t.tpgs[k], owned); err != nil {
			return st, err
		}
	}
	return st, nil
}

// refreshTPG reads again what w says was touched in TPG tag of tg, whose
// TPG list it replaces by a copy; owned: as RefreshOwned.
func refreshTPG(f FS, tg *Target, tag int, w *tpgTouch, owned bool) error {
	tg.TPGs = slices.Clone(tg.TPGs)
	p := tpgPath(tg.IQN, tag)
	i, found := slices.BinarySearchFunc(tg.TPGs, tag, func(t TPG, tag int) int { return cmp.Compare(t.Tag, tag) })
	if !f.exists(p) {
		if found {
			tg.TPGs = orNil(slices.Delete(tg.TPGs, i, i+1))
		}
		return nil
	}
	if !found {
		tpg, err := observeTPG(f, tg.IQN, tag, false)
		if err != nil {
			return err
		}
		tg.TPGs = slices.Insert(tg.TPGs, i, tpg)
		return nil
	}
	tpg := &tg.TPGs[i]
	if w.header {
		h, err := observeTPGHeader(f, p, tag, false)
		if err != nil {
			return err
		}
		h.LUNs, h.ACLs = tpg.LUNs, tpg.ACLs
		*tpg = h
	}
	var err error
	if len(w.luns) > 0 {
		tpg.LUNs, err = refreshList(owned, tpg.LUNs, slices.Sorted(maps.Keys(w.luns)), func(l LUN, idx int) int { return cmp.Compare(l.Index, idx) },
			func(idx int) (LUN, bool, error) {
				lp := lunPath(p, idx)
				if !f.exists(lp) {
					return LUN{}, false, nil
				}
				l, err := observeLUN(f, lp, idx, false)
				return l, true, err
			})
		if err != nil {
			return err
		}
	}
	if len(w.acls) > 0 {
		tpg.ACLs, err = refreshList(owned, tpg.ACLs, sortedKeys(w.acls), func(a ACL, ini string) int { return cmp.Compare(a.Initiator, ini) },
			func(ini string) (ACL, bool, error) {
				ap := aclPath(p, ini)
				if !f.exists(ap) {
					return ACL{}, false, nil
				}
				a, err := cached(f, ap, false, func(p string) (ACL, error) { return observeACL(f, p, false) })
				return a, true, err
			})
		if err != nil {
			return err
		}
	}
	return nil
}

// inPlaceEdits is how many edits refreshList makes in an owned list, each
// moving its tail; more are made in one pass into a new list.
const inPlaceEdits = 8

// refreshList returns l (sorted by key, no key twice) with the element of
// each of keys (sorted) read again: read returns it, or false when it is
// gone. Unless owned, l is not modified: the result is l itself when
// nothing was there or came, a prefix of l when only its last elements
// went, else a new list made in one pass. (Cloning l and inserting into
// the clone copied a list of thousands of storage objects twice, each
// element with its pointers' write barriers, for every LUN added.) owned:
// l is the caller's alone, and a few edits are made in it.
func refreshList[E, K any](owned bool, l []E, keys []K, cmp func(E, K) int, read func(K) (E, bool, error)) ([]E, error) {
	type edit struct {
		at          int  // position in l
		found, keep bool // l has it at at; it stays (with e)
		e           E
	}
	var eds []edit
	n, drops := len(l), 0
	for _, k := range keys {
		i, found := slices.BinarySearchFunc(l, k, cmp)
		e, ok, err := read(k)
		if err != nil {
			return l, err
		}
		switch {
		case !found && !ok:
			continue
		case !found:
			n++
		case !ok:
			n--
			drops++
		}
		eds = append(eds, edit{at: i, found: found, keep: ok, e: e})
	}
	switch {
	case len(eds) == 0:
		return l, nil
	case n == 0:
		if owned {
			clear(l)
		}
		return nil, nil
	case owned && len(eds) <= inPlaceEdits:
		// from the last edit back, so that each position still holds;
		// inserts at one position go in before one another, the last key
		// first
		for _, ed := range slices.Backward(eds) {
			switch {
			case ed.found && ed.keep:
				l[ed.at] = ed.e
			case ed.found:
				l = slices.Delete(l, ed.at, ed.at+1)
			default:
				l = slices.Insert(l, ed.at, ed.e)
			}
		}
		return l, nil
	case drops == len(eds) && eds[0].at == n:
		// only the last ones went (their positions are distinct and
		// sorted): l's prefix, clipped so that an append to it copies
		// rather than overwrite what l holds
		return l[:n:n], nil
	}
	out := make([]E, 0, n)
	i := 0 // l[i:] is left to copy
	for _, ed := range eds {
		out = append(out, l[i:ed.at]...)
		i = ed.at
		if ed.found {
			i++
		}
		if ed.keep {
			out = append(out, ed.e)
		}
	}
	return append(out, l[i:]...), nil
}

// touched is what a plan's operations may have changed, by object.
type touched struct {
	// unknown: an op outside the objects below; everything is read again
	unknown bool
	// fabric: target/iscsi or its discovery_auth
	fabric  bool
	hbas    map[string]bool // HBA names made or removed
	sos     map[string]bool // storage-object paths
	targets map[string]bool // IQNs of targets made or removed
	tpgs    map[tpgKey]*tpgTouch
}

// tpgTouch is what was touched in one TPG.
type tpgTouch struct {
	// header: the TPG itself, its enable, attributes, parameters, auth or
	// portals
	header bool
	luns   map[int]bool
	acls   map[string]bool
}

func touchedBy(plan Plan) *touched {
	t := &touched{hbas: map[string]bool{}, sos: map[string]bool{}, targets: map[string]bool{}, tpgs: map[tpgKey]*tpgTouch{}}
	for _, op := range plan.Ops {
		if !t.add(op.Path) {
			t.unknown = true
			return t
		}
	}
	return t
}

// add records what an op at path may change, or reports false for a path
// Refresh cannot tell.
func (t *touched) add(path string) bool {
	p := strings.Split(path, "/")
	if len(p) < 3 || p[0] != "target" {
		return len(p) == 2 && p[0] == "target" && p[1] == "iscsi" && t.setFabric()
	}
	switch p[1] {
	case "core":
		if p[2] == "alua" || !hbaRe.MatchString(p[2]) {
			return false
		}
		if len(p) == 3 {
			t.hbas[p[2]] = true
			return true
		}
		t.sos[strings.Join(p[:4], "/")] = true
		return true
	case "iscsi":
	default:
		return false
	}
	if p[2] == "discovery_auth" {
		return t.setFabric()
	}
	if len(p) == 3 {
		t.targets[p[2]] = true
		return true
	}
	m := tpgRe.FindStringSubmatch(p[3])
	if m == nil {
		return false
	}
	k := tpgKey{p[2], atoi(m[1])}
	w := t.tpgs[k]
	if w == nil {
		w = &tpgTouch{luns: map[int]bool{}, acls: map[string]bool{}}
		t.tpgs[k] = w
	}
	switch {
	case len(p) == 4 || (p[4] != "lun" && p[4] != "acls"):
		w.header = true
	case len(p) == 5:
		return false // the lun or acls group itself
	case p[4] == "lun":
		lm := lunRe.FindStringSubmatch(p[5])
		if lm == nil {
			return false
		}
		w.luns[atoi(lm[1])] = true
	default:
		w.acls[p[5]] = true
	}
	return true
}

func (t *touched) setFabric() bool {
	t.fabric = true
	return true
}

func sortedTPGKeys(m map[tpgKey]*tpgTouch) []tpgKey {
	ks := maps.Keys(m)
	return slices.SortedFunc(ks, func(a, b tpgKey) int {
		return cmp.Or(cmp.Compare(a.iqn, b.iqn), cmp.Compare(a.tag, b.tag))
	})
}

// orNil is l, or nil when it is empty: what Observe leaves of a list it
// found nothing for.
func orNil[T any](l []T) []T {
	if len(l) == 0 {
		return nil
	}
	return l
}
