package lio

import (
	"maps"
	"slices"
)

// NewPlanSince is NewPlan(observed, desired) for a caller that converged
// LIO to prev with a plan applied in full, and is the only writer of what
// it manages: every object prev and desired agree on then needs nothing,
// so only the objects that differ between them are planned, with what
// their operations depend on. A change then costs in proportion to what
// changed, plus one comparison of prev with desired, instead of a plan
// over every LUN and ACL of the gateway.
//
// The result equals NewPlan(observed, desired) when LIO holds prev. When
// it may not (start-up, a failed operation, held objects, a drift check),
// callers use NewPlan.
func NewPlanSince(prev, observed, desired State) Plan {
	s := newScope(prev, observed, desired)
	p := newPlanner(s.restrict(observed), s.restrict(desired))
	// an HBA is removed with its last storage object, of all observed
	p.hbaObjects = observed.StorageObjects
	p.preDeletes()
	p.creates()
	p.activate()
	p.staleDeletes()
	return Plan{Ops: p.ops}
}

// scope is what NewPlanSince plans: storage objects by name; whole
// targets; and in the other targets, LUNs by index and ACLs by initiator
// of each TPG.
type scope struct {
	sos     map[string]bool
	targets map[string]bool // planned whole
	luns    map[tpgKey]map[int]bool
	acls    map[tpgKey]map[string]bool
}

type tpgKey struct {
	iqn string
	tag int
}

func newScope(prev, observed, desired State) *scope {
	s := &scope{sos: map[string]bool{}, targets: map[string]bool{},
		luns: map[tpgKey]map[int]bool{}, acls: map[tpgKey]map[string]bool{}}

	// storage objects that changed, appeared, left, or changed ownership
	changed := map[string]bool{}
	ps, ds := soByName(prev.StorageObjects), soByName(desired.StorageObjects)
	for n, a := range ps {
		if b, ok := ds[n]; !ok || !soEqual(*a, *b) {
			changed[n] = true
		}
	}
	for n := range ds {
		if ps[n] == nil {
			changed[n] = true
		}
	}
	for n := range symmetricDiff(managedSOs(prev), managedSOs(desired)) {
		changed[n] = true
	}
	maps.Copy(s.sos, changed)

	// targets that appeared, left, changed ownership or TPGs; LUNs and
	// ACLs that changed
	for iqn := range symmetricDiff(managedTargets(prev), managedTargets(desired)) {
		s.targets[iqn] = true
	}
	// targets nobody here manages stay whole: the planner keeps what
	// they link
	dm := managedTargets(desired)
	for _, t := range observed.Targets {
		if !dm[t.IQN] {
			s.targets[t.IQN] = true
		}
	}
	pt, dt := targetByIQN(prev.Targets), targetByIQN(desired.Targets)
	for iqn, a := range pt {
		b := dt[iqn]
		if b == nil || !sameTPGHeaders(*a, *b) {
			s.targets[iqn] = true
			continue
		}
		for i := range a.TPGs {
			at, bt := &a.TPGs[i], findTPG(b, a.TPGs[i].Tag)
			k := tpgKey{iqn, at.Tag}
			al, bl := lunByIndex(at.LUNs), lunByIndex(bt.LUNs)
			for idx, l := range al {
				if m, ok := bl[idx]; !ok || *l != *m {
					s.addLUN(k, idx)
				}
			}
			for idx := range bl {
				if al[idx] == nil {
					s.addLUN(k, idx)
				}
			}
			aa, ba := aclByInitiator(at.ACLs), aclByInitiator(bt.ACLs)
			for ini, x := range aa {
				if y, ok := ba[ini]; !ok || !aclEqual(*x, *y) {
					s.addACL(k, ini)
				}
			}
			for ini := range ba {
				if aa[ini] == nil {
					s.addACL(k, ini)
				}
			}
		}
	}
	for iqn := range dt {
		if pt[iqn] == nil {
			s.targets[iqn] = true
		}
	}

	// What the planned objects depend on. A LUN of a changed storage
	// object may be re-created with it, and a mapped LUN with its LUN: so
	// LUNs of changed objects are planned, and ACLs mapping planned LUNs.
	// A planned LUN needs its storage object's path, whole targets every
	// storage object they link.
	for _, st := range []State{observed, desired} {
		for ti := range st.Targets {
			t := &st.Targets[ti]
			for gi := range t.TPGs {
				tpg := &t.TPGs[gi]
				k := tpgKey{t.IQN, tpg.Tag}
				for _, l := range tpg.LUNs {
					if changed[l.StorageObject] && !s.targets[t.IQN] {
						s.addLUN(k, l.Index)
					}
				}
			}
		}
	}
	for _, st := range []State{observed, desired} {
		for ti := range st.Targets {
			t := &st.Targets[ti]
			for gi := range t.TPGs {
				tpg := &t.TPGs[gi]
				k := tpgKey{t.IQN, tpg.Tag}
				whole := s.targets[t.IQN]
				for _, l := range tpg.LUNs {
					if whole || s.luns[k][l.Index] {
						s.sos[l.StorageObject] = true
					}
				}
				if whole || len(s.luns[k]) == 0 {
					continue
				}
				for _, a := range tpg.ACLs {
					for _, m := range a.MappedLUNs {
						if s.luns[k][m.TPGLUN] {
							s.addACL(k, a.Initiator)
						}
					}
				}
			}
		}
	}
	return s
}

func (s *scope) addLUN(k tpgKey, idx int) {
	if s.luns[k] == nil {
		s.luns[k] = map[int]bool{}
	}
	s.luns[k][idx] = true
}

func (s *scope) addACL(k tpgKey, ini string) {
	if s.acls[k] == nil {
		s.acls[k] = map[string]bool{}
	}
	s.acls[k][ini] = true
}

// restrict returns st with only what s plans: the HBAs, discovery auth,
// ownership and every target's TPG settings stay, and targets nobody
// manages stay whole (the planner keeps what they use).
func (s *scope) restrict(st State) State {
	out := st
	out.StorageObjects = nil
	for _, so := range st.StorageObjects {
		if s.sos[so.Name] {
			out.StorageObjects = append(out.StorageObjects, so)
		}
	}
	out.Targets = make([]Target, 0, len(st.Targets))
	for _, t := range st.Targets {
		if s.targets[t.IQN] {
			out.Targets = append(out.Targets, t)
			continue
		}
		nt := Target{IQN: t.IQN, TPGs: make([]TPG, 0, len(t.TPGs))}
		for _, tpg := range t.TPGs {
			k := tpgKey{t.IQN, tpg.Tag}
			ntpg := tpg
			ntpg.LUNs, ntpg.ACLs = nil, nil
			for _, l := range tpg.LUNs {
				if s.luns[k][l.Index] {
					ntpg.LUNs = append(ntpg.LUNs, l)
				}
			}
			for _, a := range tpg.ACLs {
				if s.acls[k][a.Initiator] {
					ntpg.ACLs = append(ntpg.ACLs, a)
				}
			}
			nt.TPGs = append(nt.TPGs, ntpg)
		}
		out.Targets = append(out.Targets, nt)
	}
	return out
}

// managedSOs are the storage-object names st owns.
func managedSOs(st State) map[string]bool {
	m := make(map[string]bool, len(st.Managed.StorageObjects)+len(st.StorageObjects))
	for _, n := range st.Managed.StorageObjects {
		m[n] = true
	}
	for _, so := range st.StorageObjects {
		m[so.Name] = true
	}
	return m
}

func managedTargets(st State) map[string]bool {
	m := make(map[string]bool, len(st.Managed.Targets)+len(st.Targets))
	for _, n := range st.Managed.Targets {
		m[n] = true
	}
	for _, t := range st.Targets {
		m[t.IQN] = true
	}
	return m
}

func symmetricDiff(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		if !b[k] {
			out[k] = true
		}
	}
	for k := range b {
		if !a[k] {
			out[k] = true
		}
	}
	return out
}

// soByName indexes objects by name, the first of each: a desired state
// has one object per name (Build makes it so).
func soByName(l []StorageObject) map[string]*StorageObject {
	m := make(map[string]*StorageObject, len(l))
	for i := range l {
		if m[l[i].Name] == nil {
			m[l[i].Name] = &l[i]
		}
	}
	return m
}

func targetByIQN(l []Target) map[string]*Target {
	m := make(map[string]*Target, len(l))
	for i := range l {
		if m[l[i].IQN] == nil {
			m[l[i].IQN] = &l[i]
		}
	}
	return m
}

func lunByIndex(l []LUN) map[int]*LUN {
	m := make(map[int]*LUN, len(l))
	for i := range l {
		if m[l[i].Index] == nil {
			m[l[i].Index] = &l[i]
		}
	}
	return m
}

func aclByInitiator(l []ACL) map[string]*ACL {
	m := make(map[string]*ACL, len(l))
	for i := range l {
		if m[l[i].Initiator] == nil {
			m[l[i].Initiator] = &l[i]
		}
	}
	return m
}

// sameTPGHeaders reports whether two targets have the same TPGs with the
// same settings, whatever their LUNs and ACLs.
func sameTPGHeaders(a, b Target) bool {
	if len(a.TPGs) != len(b.TPGs) {
		return false
	}
	for i := range a.TPGs {
		x, y := &a.TPGs[i], findTPG(&b, a.TPGs[i].Tag)
		if y == nil || x.Enabled != y.Enabled || !slices.Equal(x.Portals, y.Portals) ||
			!maps.Equal(x.Attrs, y.Attrs) || !maps.Equal(x.Params, y.Params) || !authEqual(x.Auth, y.Auth) {
			return false
		}
		// a LUN index or initiator given twice is beyond what the index
		// maps compare
		if len(lunByIndex(x.LUNs)) != len(x.LUNs) || len(lunByIndex(y.LUNs)) != len(y.LUNs) ||
			len(aclByInitiator(x.ACLs)) != len(x.ACLs) || len(aclByInitiator(y.ACLs)) != len(y.ACLs) {
			return false
		}
	}
	return true
}

func authEqual(a, b *Auth) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func soEqual(a, b StorageObject) bool {
	if a.Plugin != b.Plugin || a.Name != b.Name || a.Path != b.Path || a.Enabled != b.Enabled || a.WWN != b.WWN ||
		a.Config != b.Config || a.MaxDataAreaMB != b.MaxDataAreaMB || a.HWMaxSectors != b.HWMaxSectors ||
		a.Size != b.Size || !maps.Equal(a.Attrs, b.Attrs) || len(a.ALUA) != len(b.ALUA) {
		return false
	}
	for i := range a.ALUA {
		x, y := a.ALUA[i], b.ALUA[i]
		if x.Name != y.Name || x.ID != y.ID || x.AccessType != y.AccessType || x.AccessState != y.AccessState || !maps.Equal(x.Attrs, y.Attrs) {
			return false
		}
	}
	return true
}

func aclEqual(a, b ACL) bool {
	return a.Initiator == b.Initiator && maps.Equal(a.Attrs, b.Attrs) && a.CmdSNDepth == b.CmdSNDepth &&
		authEqual(a.Auth, b.Auth) && slices.Equal(a.MappedLUNs, b.MappedLUNs)
}
