package lio

import (
	"slices"
	"strings"
)

// ObjectError is a problem confined to one object of the configuration: a
// disk, a target, one client of a target, or the discovery auth. Build and
// SpecFromConfig leave such an object out of what they return, so a caller
// can keep it as LIO has it (see Hold) and converge everything else.
type ObjectError struct {
	Disk          string // disk id "<pool>/<image>"
	Target        string // target IQN
	Client        string // initiator IQN, a client of Target
	DiscoveryAuth bool
	Err           error
}

func (e *ObjectError) Error() string { return e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }

// Object names the object the way operators and the API see it.
func (e *ObjectError) Object() string {
	switch {
	case e.DiscoveryAuth:
		return "discovery_auth"
	case e.Client != "":
		return "client " + e.Client + " of target " + e.Target
	case e.Disk != "" && e.Target != "":
		return "disk " + e.Disk + " of target " + e.Target
	case e.Disk != "":
		return "disk " + e.Disk
	}
	return "target " + e.Target
}

// SplitObjectErrors takes apart err (errors.Join trees included): the
// problems confined to one object, and the others.
func SplitObjectErrors(err error) (objs []*ObjectError, other []error) {
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if oe, ok := e.(*ObjectError); ok {
			objs = append(objs, oe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		other = append(other, e)
	}
	walk(err)
	return objs, other
}

// Hold names objects of the configuration that must stay as LIO has them:
// their desired state could not be built, and neither creating, changing
// nor removing them would be right.
type Hold struct {
	// Targets are target IQNs, held with everything inside them.
	Targets []string
	// ACLs are one initiator's ACL in every TPG of a target.
	ACLs []ACLRef
	// StorageObjects are storage-object names, held with the TPG LUNs
	// that link to them and the mapped LUNs that link to those.
	StorageObjects []string
}

// ACLRef names one initiator's ACLs in a target.
type ACLRef struct{ Target, Initiator string }

// Empty reports whether nothing is held.
func (h Hold) Empty() bool {
	return len(h.Targets) == 0 && len(h.ACLs) == 0 && len(h.StorageObjects) == 0
}

// Without returns p without the operations on held objects, and those
// operations. observed is the State p was planned from: it tells which LUNs
// link to a held storage object.
func (p Plan) Without(observed State, h Hold) (kept Plan, held []Op) {
	if h.Empty() {
		return p, nil
	}
	var prefixes []string
	for _, iqn := range h.Targets {
		prefixes = append(prefixes, targetPath(iqn))
	}
	for _, t := range observed.Targets {
		for _, tpg := range t.TPGs {
			tp := tpgPath(t.IQN, tpg.Tag)
			for _, a := range h.ACLs {
				if a.Target == t.IQN {
					prefixes = append(prefixes, aclPath(tp, a.Initiator))
				}
			}
		}
	}
	heldSO := map[string]bool{}
	for _, n := range h.StorageObjects {
		heldSO[n] = true
	}
	heldSOPath := map[string]bool{}
	heldHBA := map[string]bool{} // not removed while a held object lives there
	for _, so := range observed.StorageObjects {
		if heldSO[so.Name] {
			heldSOPath[so.Path] = true
			heldHBA[path2dir(so.Path)] = true
			prefixes = append(prefixes, so.Path)
		}
	}
	for _, t := range observed.Targets {
		for _, tpg := range t.TPGs {
			tp := tpgPath(t.IQN, tpg.Tag)
			heldLUN := map[int]bool{}
			for _, l := range tpg.LUNs {
				if heldSOPath[l.Link] {
					heldLUN[l.Index] = true
					prefixes = append(prefixes, lunPath(tp, l.Index))
				}
			}
			for _, acl := range tpg.ACLs {
				for _, m := range acl.MappedLUNs {
					if heldLUN[m.TPGLUN] {
						prefixes = append(prefixes, mappedPath(aclPath(tp, acl.Initiator), m.Index))
					}
				}
			}
		}
	}
	isHeld := func(op Op) bool {
		if op.Kind == OpRmdir && heldHBA[op.Path] {
			return true
		}
		if slices.ContainsFunc(prefixes, func(pre string) bool {
			return op.Path == pre || strings.HasPrefix(op.Path, pre+"/")
		}) {
			return true
		}
		// a new ACL of a held client, in a TPG not observed yet
		for _, a := range h.ACLs {
			rest, ok := strings.CutPrefix(op.Path, targetPath(a.Target)+"/")
			if !ok {
				continue
			}
			tpg, rest, _ := strings.Cut(rest, "/")
			if !tpgRe.MatchString(tpg) {
				continue
			}
			if rest, ok = strings.CutPrefix(rest, "acls/"+a.Initiator); ok && (rest == "" || rest[0] == '/') {
				return true
			}
		}
		// a storage object of a held name created under a new HBA
		if rest, ok := strings.CutPrefix(op.Path, coreDir+"/"); ok {
			parts := strings.SplitN(rest, "/", 3)
			if len(parts) >= 2 && heldSO[parts[1]] {
				return true
			}
		}
		return false
	}
	for _, op := range p.Ops {
		if isHeld(op) {
			held = append(held, op)
		} else {
			kept.Ops = append(kept.Ops, op)
		}
	}
	return kept, held
}
