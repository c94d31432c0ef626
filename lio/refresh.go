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
	if len(t.hbas) > 0 {
		st.HBAs = slices.Clone(st.HBAs)
		for _, h := range sortedKeys(t.hbas) {
			i, found := slices.BinarySearch(st.HBAs, h)
			switch have := f.exists(coreDir + "/" + h); {
			case have && !found:
				st.HBAs = slices.Insert(st.HBAs, i, h)
			case !have && found:
				st.HBAs = orNil(slices.Delete(st.HBAs, i, i+1))
			}
		}
	}
	if len(t.sos) > 0 {
		st.StorageObjects = slices.Clone(st.StorageObjects)
		for _, p := range sortedKeys(t.sos) {
			i, found := slices.BinarySearchFunc(st.StorageObjects, p, func(so StorageObject, p string) int { return cmp.Compare(so.Path, p) })
			if !f.exists(p) {
				if found {
					st.StorageObjects = orNil(slices.Delete(st.StorageObjects, i, i+1))
				}
				continue
			}
			plugin := Plugin(hbaRe.FindStringSubmatch(strings.Split(p, "/")[2])[1])
			so, err := cached(f, p, false, func(p string) (StorageObject, error) { return observeSO(f, plugin, p, false) })
			if err != nil {
				return st, err
			}
			if found {
				st.StorageObjects[i] = so
			} else {
				st.StorageObjects = slices.Insert(st.StorageObjects, i, so)
			}
		}
	}
	if len(t.targets) == 0 && len(t.tpgs) == 0 {
		return st, nil
	}
	st.Targets = slices.Clone(st.Targets)
	byIQN := func(t Target, iqn string) int { return cmp.Compare(t.IQN, iqn) }
	for _, iqn := range sortedKeys(t.targets) {
		i, found := slices.BinarySearchFunc(st.Targets, iqn, byIQN)
		if !f.exists(targetPath(iqn)) {
			if found {
				st.Targets = orNil(slices.Delete(st.Targets, i, i+1))
			}
			continue
		}
		tg, err := observeTarget(f, iqn, false)
		if err != nil {
			return st, err
		}
		if found {
			st.Targets[i] = tg
		} else {
			st.Targets = slices.Insert(st.Targets, i, tg)
		}
	}
	for _, k := range sortedTPGKeys(t.tpgs) {
		if t.targets[k.iqn] {
			continue // read whole above
		}
		ti, found := slices.BinarySearchFunc(st.Targets, k.iqn, byIQN)
		if !found {
			// made since prev by something that was not planned here
			return Observe(f)
		}
		if err := refreshTPG(f, &st.Targets[ti], k.tag, t.tpgs[k]); err != nil {
			return st, err
		}
	}
	return st, nil
}

// refreshTPG reads again what w says was touched in TPG tag of tg, whose
// TPG list it replaces by a copy.
func refreshTPG(f FS, tg *Target, tag int, w *tpgTouch) error {
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
	if len(w.luns) > 0 {
		tpg.LUNs = slices.Clone(tpg.LUNs)
		for _, idx := range slices.Sorted(maps.Keys(w.luns)) {
			lp := lunPath(p, idx)
			j, found := slices.BinarySearchFunc(tpg.LUNs, idx, func(l LUN, idx int) int { return cmp.Compare(l.Index, idx) })
			if !f.exists(lp) {
				if found {
					tpg.LUNs = orNil(slices.Delete(tpg.LUNs, j, j+1))
				}
				continue
			}
			l, err := observeLUN(f, lp, idx, false)
			if err != nil {
				return err
			}
			if found {
				tpg.LUNs[j] = l
			} else {
				tpg.LUNs = slices.Insert(tpg.LUNs, j, l)
			}
		}
	}
	if len(w.acls) > 0 {
		tpg.ACLs = slices.Clone(tpg.ACLs)
		for _, ini := range sortedKeys(w.acls) {
			ap := aclPath(p, ini)
			j, found := slices.BinarySearchFunc(tpg.ACLs, ini, func(a ACL, ini string) int { return cmp.Compare(a.Initiator, ini) })
			if !f.exists(ap) {
				if found {
					tpg.ACLs = orNil(slices.Delete(tpg.ACLs, j, j+1))
				}
				continue
			}
			a, err := cached(f, ap, false, func(p string) (ACL, error) { return observeACL(f, p, false) })
			if err != nil {
				return err
			}
			if found {
				tpg.ACLs[j] = a
			} else {
				tpg.ACLs = slices.Insert(tpg.ACLs, j, a)
			}
		}
	}
	return nil
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
