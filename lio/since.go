package lio

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"sync"
	"unsafe"
)

// NewPlanSince is NewPlan(observed, desired) for a caller that converged
// LIO to prev with a plan applied in full, and is the only writer of what
// it manages: every object prev and desired agree on then needs nothing,
// so only the objects that differ between them are planned, with what
// their operations depend on. A change then costs in proportion to what
// changed, plus one comparison of prev with desired, instead of a plan
// over every LUN and ACL of the gateway. Lists desired shares with prev
// (a Builder's for what did not change) are not compared at all.
//
// The result equals NewPlan(observed, desired) when LIO holds prev. When
// it may not (start-up, a failed operation, held objects, a drift check),
// callers use NewPlan.
func NewPlanSince(prev, observed, desired State) Plan {
	s := newScope(prev, observed, desired)
	if s == nil {
		return NewPlan(observed, desired)
	}
	p := newPlanner(s.restrict(observed, false), s.restrict(desired, s.byName))
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
	// byName: desired's storage objects and managed names were found
	// sorted by name (as a Builder makes them), so restrict looks the
	// planned ones up
	byName  bool
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

	// storage objects that changed, appeared, left, or changed ownership;
	// desired states list them sorted by name, so two walks side by side
	// compare them without indexing thousands of names
	// (a list a Builder shared with the state before is equal to it, sorted
	// or not: only the walk needs the order)
	changed := map[string]bool{}
	if !identical(prev.StorageObjects, desired.StorageObjects) && !bothSortedBy(prev.StorageObjects, desired.StorageObjects, soKey) ||
		!identical(prev.Managed.StorageObjects, desired.Managed.StorageObjects) &&
			!bothSortedBy(prev.Managed.StorageObjects, desired.Managed.StorageObjects, same) {
		return nil
	}
	s.byName = !identical(prev.StorageObjects, desired.StorageObjects) && !identical(prev.Managed.StorageObjects, desired.Managed.StorageObjects)
	mergeDiff(prev.StorageObjects, desired.StorageObjects, soKey, soEqual, func(n string) { changed[n] = true })
	mergeDiff(prev.Managed.StorageObjects, desired.Managed.StorageObjects, same, func(a, b string) bool { return true },
		func(n string) { changed[n] = true })
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
			// (the LUNs' order is also what the search for the LUNs of
			// changed storage objects below relies on)
			if !bothSortedBy(at.LUNs, bt.LUNs, lunIndex) ||
				!identical(at.ACLs, bt.ACLs) && !bothSortedBy(at.ACLs, bt.ACLs, aclInitiator) {
				// not as Build makes them (an index given twice): whole
				s.targets[iqn] = true
				break
			}
			mergeDiff(at.LUNs, bt.LUNs, lunIndex, func(a, b LUN) bool { return a == b }, func(i int) { s.addLUN(k, i) })
			mergeDiff(at.ACLs, bt.ACLs, aclInitiator, aclEqual, func(ini string) { s.addACL(k, ini) })
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
	// (one changed object, the usual, is looked for by comparing names:
	// the walk covers every LUN)
	var only string
	for n := range changed {
		only = n
	}
	for _, st := range []State{observed, desired} {
		for ti := range st.Targets {
			t := &st.Targets[ti]
			if len(changed) == 0 || s.targets[t.IQN] {
				continue
			}
			for gi := range t.TPGs {
				tpg := &t.TPGs[gi]
				k := tpgKey{t.IQN, tpg.Tag}
				for _, l := range tpg.LUNs {
					if len(changed) == 1 && l.StorageObject == only || len(changed) > 1 && changed[l.StorageObject] {
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
				if s.targets[t.IQN] {
					for _, l := range tpg.LUNs {
						s.sos[l.StorageObject] = true
					}
					continue
				}
				luns := s.luns[k]
				if len(luns) == 0 {
					continue
				}
				// LUNs are sorted by index, observed and desired alike
				for idx := range luns {
					i, found := slices.BinarySearchFunc(tpg.LUNs, idx, func(l LUN, idx int) int { return cmp.Compare(l.Index, idx) })
					for ; found && i < len(tpg.LUNs) && tpg.LUNs[i].Index == idx; i++ {
						s.sos[tpg.LUNs[i].StorageObject] = true
					}
				}
				for _, a := range tpg.ACLs {
					for _, m := range a.MappedLUNs {
						if luns[m.TPGLUN] {
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
// manages stay whole (the planner keeps what they use). byName is whether
// st's storage objects and managed names are sorted by name: the planned
// ones are then looked up rather than every one compared.
func (s *scope) restrict(st State, byName bool) State {
	out := st
	out.StorageObjects = nil
	out.Managed.StorageObjects = nil
	if len(s.sos) > 0 {
		// a few names, the usual, are compared rather than looked up: the
		// walks cover every storage object
		var few []string
		if len(s.sos) <= 4 {
			few = slices.Collect(maps.Keys(s.sos))
		}
		planned := func(name string) bool {
			if few == nil {
				return s.sos[name]
			}
			return slices.Contains(few, name)
		}
		if byName {
			names := sortedKeys(s.sos)
			out.StorageObjects = lookUp(st.StorageObjects, names, soKey)
			out.Managed.StorageObjects = lookUp(st.Managed.StorageObjects, names, same)
		} else {
			for i := range st.StorageObjects {
				if so := &st.StorageObjects[i]; planned(so.Name) {
					out.StorageObjects = append(out.StorageObjects, *so)
				}
			}
			// the planner asks whether a storage object is managed only of
			// the observed ones, which are restricted to s.sos too: the
			// names of the others would only fill its set
			for _, n := range st.Managed.StorageObjects {
				if planned(n) {
					out.Managed.StorageObjects = append(out.Managed.StorageObjects, n)
				}
			}
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
			if luns := s.luns[k]; len(luns) > 0 {
				// LUNs are sorted by index, observed and desired alike
				// (newScope)
				ntpg.LUNs = lookUp(tpg.LUNs, slices.Sorted(maps.Keys(luns)), lunIndex)
			}
			if acls := s.acls[k]; len(acls) > 0 {
				if seenSortedBy(tpg.ACLs, aclInitiator) {
					// (desired's were walked for order in newScope)
					ntpg.ACLs = lookUp(tpg.ACLs, slices.Sorted(maps.Keys(acls)), aclInitiator)
				} else {
					for _, a := range tpg.ACLs {
						if acls[a.Initiator] {
							ntpg.ACLs = append(ntpg.ACLs, a)
						}
					}
				}
			}
			nt.TPGs = append(nt.TPGs, ntpg)
		}
		out.Targets = append(out.Targets, nt)
	}
	return out
}

// lookUp returns the elements of l (sorted by key) whose key is one of
// keys (sorted, no key twice), in l's order; nil for none, as a walk
// appending them gives.
func lookUp[T any, K cmp.Ordered](l []T, keys []K, key func(T) K) []T {
	var out []T
	for _, k := range keys {
		i, found := slices.BinarySearchFunc(l, k, func(e T, k K) int { return cmp.Compare(key(e), k) })
		for ; found && i < len(l) && key(l[i]) == k; i++ {
			out = append(out, l[i])
		}
	}
	return out
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

func targetByIQN(l []Target) map[string]*Target {
	m := make(map[string]*Target, len(l))
	for i := range l {
		if m[l[i].IQN] == nil {
			m[l[i].IQN] = &l[i]
		}
	}
	return m
}

func soKey(so StorageObject) string { return so.Name }
func lunIndex(l LUN) int            { return l.Index }
func aclInitiator(a ACL) string     { return a.Initiator }
func same(s string) string          { return s }

// sortedBy reports whether l is sorted by key with no key twice.
func sortedBy[T any, K cmp.Ordered](l []T, key func(T) K) bool {
	for i := 1; i < len(l); i++ {
		if key(l[i-1]) >= key(l[i]) {
			return false
		}
	}
	return true
}

// bothSortedBy is sortedBy(a, key) && sortedBy(b, key), walking only
// what no call before found sorted (sortedSeen): the lists of the state
// before, and those a Builder shares with it or extends at their end
// (grown), are not walked again.
func bothSortedBy[T any, K cmp.Ordered](a, b []T, key func(T) K) bool {
	return seenSortedBy(a, key) && seenSortedBy(b, key)
}

// seenSortedBy is sortedBy(l, key), for lists of one key function per
// element type: the part of l a call before found sorted is not walked
// again. A state's lists are never modified out of order (Build, Refresh,
// Observe and NewPlanSince's callers only make new ones; RefreshOwned
// edits its caller's observed lists in place, keeping them sorted), so a
// list found sorted stays so, and so does each prefix of it, and a list
// that extends one in its array needs a walk of its new end only.
func seenSortedBy[T any, K cmp.Ordered](l []T, key func(T) K) bool {
	if len(l) < 2 {
		return true
	}
	first, typ := unsafe.Pointer(&l[0]), reflect.TypeFor[T]()
	from := sortedSeen.prefix(first, typ)
	if from >= len(l) {
		return true
	}
	if !sortedBy(l[max(from-1, 0):], key) {
		return false
	}
	sortedSeen.put(first, typ, len(l), l)
	return true
}

// sortedSeen remembers the last lists seenSortedBy found sorted, by their
// first element (and element type): how long a prefix of that array is
// sorted. Each entry keeps its list, so its array is not freed and its
// address not taken by another list while the entry lasts.
var sortedSeen sortedLists

const sortedListsMax = 16

type sortedLists struct {
	mu      sync.Mutex
	entries [sortedListsMax]sortedList
	next    int // the entry the next new list takes
}

type sortedList struct {
	first unsafe.Pointer
	typ   reflect.Type
	n     int
	keep  any
}

// prefix is how many elements from first on were found sorted; 0 if
// none.
func (s *sortedLists) prefix(first unsafe.Pointer, typ reflect.Type) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries {
		if e := &s.entries[i]; e.first == first && e.typ == typ {
			return e.n
		}
	}
	return 0
}

func (s *sortedLists) put(first unsafe.Pointer, typ reflect.Type, n int, keep any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries {
		if e := &s.entries[i]; e.first == first && e.typ == typ {
			if n > e.n {
				e.n, e.keep = n, keep
			}
			return
		}
	}
	s.entries[s.next] = sortedList{first: first, typ: typ, n: n, keep: keep}
	s.next = (s.next + 1) % sortedListsMax
}

// identical reports whether a and b are the very same list (a Builder
// returns the list of the build before for what did not change).
func identical[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// mergeDiff walks a and b, both sortedBy key, side by side and calls diff
// with each key only one has, or whose items are not equal.
func mergeDiff[T any, K cmp.Ordered](a, b []T, key func(T) K, equal func(T, T) bool, diff func(K)) {
	if identical(a, b) {
		// nobody changes a state's lists in place
		return
	}
	i, j := 0, 0
	if len(a) > 0 && len(b) > 0 && &a[0] == &b[0] {
		// one array, as a Builder's list grown or shortened at its end
		// (grown): what both show is the very same elements
		i = min(len(a), len(b))
		j = i
	}
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && key(a[i]) == key(b[j]):
			// first: the usual, and at once for the names a Builder copied
			if !equal(a[i], b[j]) {
				diff(key(a[i]))
			}
			i++
			j++
		case j == len(b) || (i < len(a) && key(a[i]) < key(b[j])):
			diff(key(a[i]))
			i++
		default: // only b has key(b[j])
			diff(key(b[j]))
			j++
		}
	}
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
	}
	return true
}

func authEqual(a, b *Auth) bool {
	if a == nil || b == nil || a == b {
		return a == b
	}
	return *a == *b
}

func soEqual(a, b StorageObject) bool {
	if a.Plugin != b.Plugin || a.Name != b.Name || a.Path != b.Path || a.Enabled != b.Enabled || a.WWN != b.WWN ||
		a.Config != b.Config || a.MaxDataAreaMB != b.MaxDataAreaMB || a.HWMaxSectors != b.HWMaxSectors ||
		a.Size != b.Size || !sameAttrs(a.Attrs, b.Attrs) || len(a.ALUA) != len(b.ALUA) {
		return false
	}
	if identical(a.ALUA, b.ALUA) {
		// a Builder's copy of the object of the state before
		return true
	}
	for i := range a.ALUA {
		x, y := a.ALUA[i], b.ALUA[i]
		if x.Name != y.Name || x.ID != y.ID || x.AccessType != y.AccessType || x.AccessState != y.AccessState || !sameAttrs(x.Attrs, y.Attrs) {
			return false
		}
	}
	return true
}

func aclEqual(a, b ACL) bool {
	return a.Initiator == b.Initiator && sameAttrs(a.Attrs, b.Attrs) && a.CmdSNDepth == b.CmdSNDepth &&
		authEqual(a.Auth, b.Auth) && (identical(a.MappedLUNs, b.MappedLUNs) || slices.Equal(a.MappedLUNs, b.MappedLUNs))
}

// sameMap reports whether a and b are one map, not only equal ones.
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// sameAttrs is maps.Equal, at once for one map: desired states built by
// one Builder share the attribute maps of the objects that did not change.
func sameAttrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() {
		return true
	}
	return maps.Equal(a, b)
}
