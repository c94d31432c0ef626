package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
)

// soName is the storage-object name of a disk.
func soName(id string, d *config.Disk) string {
	return lio.ObjectName(id, d.Pool, d.Image, d.BackstoreObjectName)
}

// withValidNames returns doc without the targets, clients and disks whose
// names break the iSCSI name rules or cannot become configfs paths, and an
// error naming each of them.
// doc itself is not changed; it is returned as is when every name is valid.
//
// known, if not nil, remembers the names found valid, so that a document
// of thousands of names costs a lookup per name seen before, and the last
// document it found valid: one whose changes since are known
// (config.Doc.ChangesSince) costs the check of the names they touch.
func withValidNames(doc *config.Doc, known *validNames) (*config.Doc, []*lio.ObjectError) {
	if known != nil {
		known.mu.Lock()
		defer known.mu.Unlock()
		if len(known.objects)+len(known.iqns) > maxKnownNames {
			known.objects, known.iqns = nil, nil
		}
		if known.lastValid {
			if changes, ok := known.last.since(doc); ok && known.changesValid(doc, changes) {
				known.last.moveTo(doc, true)
				known.sinceHits++
				return doc, nil
			}
		}
	}
	errs := checkNames(doc, known)
	if known != nil {
		known.last.moveTo(doc, false)
		known.lastValid = len(errs) == 0
	}
	if len(errs) == 0 {
		return doc, nil
	}
	return withoutBadNames(doc, errs), errs
}

// checkNames checks every name of doc, but those of the frozen objects
// known found valid before.
func checkNames(doc *config.Doc, known *validNames) []*lio.ObjectError {
	known.trim(doc)
	var errs []*lio.ObjectError
	for id, d := range doc.Disks {
		if d == nil || known.diskPassed(diskAt{id, d}) {
			continue
		}
		if err := known.check(false, soName(id, d), config.ValidateSafeName); err != nil {
			errs = append(errs, &lio.ObjectError{Disk: id, Err: fmt.Errorf("disk %s: storage object name %w", config.QuoteName(id), err)})
		} else if doc.Frozen(d) {
			known.passDisk(diskAt{id, d})
		}
	}
	for iqn, t := range doc.Targets {
		if t != nil && known.targetPassed(targetAt{iqn, t}) {
			continue
		}
		if err := known.check(true, iqn, config.ValidateIQN); err != nil {
			errs = append(errs, &lio.ObjectError{Target: iqn, Err: fmt.Errorf("target %w", err)})
			continue
		}
		if t == nil {
			continue
		}
		ok := true
		for ini := range t.Clients {
			if err := known.check(true, ini, config.ValidateIQN); err != nil {
				errs = append(errs, &lio.ObjectError{Target: iqn, Client: ini, Err: fmt.Errorf("target %s client %w", config.QuoteName(iqn), err)})
				ok = false
			}
		}
		if ok && doc.Frozen(t) {
			known.passTarget(targetAt{iqn, t})
		}
	}
	slices.SortFunc(errs, func(a, b *lio.ObjectError) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

// withoutBadNames is a fork of doc without the objects errs names.
func withoutBadNames(doc *config.Doc, errs []*lio.ObjectError) *config.Doc {
	c := doc.Fork()
	for _, e := range errs {
		switch {
		case e.Client != "":
			if t := c.Targets[e.Target]; t != nil {
				if _, ok := t.Clients[e.Client]; ok {
					delete(c.MutTarget(e.Target).Clients, e.Client)
				}
			}
		case e.Target != "":
			if _, ok := c.Targets[e.Target]; ok {
				if err := c.RemoveTarget(e.Target); err != nil {
					panic(err) // e.Target is one of c's
				}
			}
		case e.Disk != "":
			c.DetachDisk(e.Disk)
			if err := c.RemoveDisk(e.Disk); err != nil {
				panic(err) // detached, nothing uses it
			}
		}
	}
	return c
}

// changesValid reports whether the names changes touch in doc are valid:
// those of the disks they list, and of the targets and clients they may
// have added. A target's own fields, LUNs, portals and groups hold no
// name that is checked, nor do gateways. false sends the caller to a full
// check, which names what is wrong.
func (v *validNames) changesValid(doc *config.Doc, changes []config.Change) bool {
	for _, c := range changes {
		if c.Kind == v.ignore {
			continue
		}
		switch c.Kind {
		case config.ChangedDisk:
			if d := doc.Disks[c.Key]; d != nil && v.check(false, soName(c.Key, d), config.ValidateSafeName) != nil {
				return false
			}
		case config.ChangedTarget:
			t, ok := doc.Targets[c.Target]
			if !ok {
				continue
			}
			if v.check(true, c.Target, config.ValidateIQN) != nil {
				return false
			}
			if t == nil || v.targetPassed(targetAt{c.Target, t}) {
				continue
			}
			for ini := range t.Clients {
				if v.check(true, ini, config.ValidateIQN) != nil {
					return false
				}
			}
		case config.ChangedClient:
			if t := doc.Targets[c.Target]; t != nil {
				if _, ok := t.Clients[c.Key]; ok && v.check(true, c.Key, config.ValidateIQN) != nil {
					return false
				}
			}
		case config.ChangedGateway, config.ChangedTargetFields, config.ChangedTargetLun, config.ChangedPortal, config.ChangedGroup:
		default:
			// a kind this check does not know may bring names
			return false
		}
	}
	return true
}

// validNames are names that passed their rule (a nil *validNames
// remembers nothing), and the frozen disks and targets whose names all
// passed: a copy-on-write document of thousands of disks then costs a
// pointer lookup for each object the change did not touch, instead of
// making and looking up each storage-object name. A frozen object never
// changes (config.Doc.Frozen), and the key holds the name it is under.
type validNames struct {
	mu            sync.Mutex
	objects, iqns map[string]bool
	disks         map[diskAt]bool
	targets       map[targetAt]bool
	// last is the document checked last, and lastValid whether every name
	// of it was valid.
	last      logCursor
	lastValid bool
	// sinceHits counts the documents checked through their changes, for
	// tests; ignore is a kind of change they skip: a test's broken check.
	sinceHits int
	ignore    config.ChangeKind
}

type diskAt struct {
	id string
	d  *config.Disk
}

// targetAt is a frozen target whose IQN and every client's passed.
type targetAt struct {
	iqn string
	t   *config.Target
}

func (v *validNames) diskPassed(k diskAt) bool     { return v != nil && v.disks[k] }
func (v *validNames) targetPassed(k targetAt) bool { return v != nil && v.targets[k] }

func (v *validNames) passDisk(k diskAt) {
	if v == nil {
		return
	}
	if v.disks == nil {
		v.disks = map[diskAt]bool{}
	}
	v.disks[k] = true
}

func (v *validNames) passTarget(k targetAt) {
	if v == nil {
		return
	}
	if v.targets == nil {
		v.targets = map[targetAt]bool{}
	}
	v.targets[k] = true
}

// trim forgets the frozen objects when they outnumber doc's disks and
// targets twice: most are gone, and holding them keeps old documents'
// objects alive.
func (v *validNames) trim(doc *config.Doc) {
	if v != nil && len(v.disks)+len(v.targets) > 2*(len(doc.Disks)+len(doc.Targets))+64 {
		v.disks, v.targets = nil, nil
	}
}

// maxKnownNames bounds what a validNames remembers: names of objects long
// gone are dropped with the rest when it is reached.
const maxKnownNames = 1 << 16

// check is rule(name), answered from memory (under v.mu) for a name that
// passed before; iqn says which kind of name it is.
func (v *validNames) check(iqn bool, name string, rule func(string) error) error {
	if v == nil {
		return rule(name)
	}
	set := &v.objects
	if iqn {
		set = &v.iqns
	}
	if (*set)[name] {
		return nil
	}
	err := rule(name)
	if err == nil {
		if *set == nil {
			*set = map[string]bool{}
		}
		(*set)[name] = true
	}
	return err
}

// holdOf is what LIO must keep as it is because of errs.
func holdOf(doc *config.Doc, errs []*lio.ObjectError) lio.Hold {
	var h lio.Hold
	for _, e := range errs {
		switch {
		case e.DiscoveryAuth:
			// left unmanaged by the build itself
		case e.Client != "":
			h.ACLs = append(h.ACLs, lio.ACLRef{Target: e.Target, Initiator: e.Client})
		case e.Target != "":
			h.Targets = append(h.Targets, e.Target)
		case e.Disk != "":
			if d := doc.Disks[e.Disk]; d != nil {
				h.StorageObjects = append(h.StorageObjects, soName(e.Disk, d))
			}
		}
	}
	return h
}

// objectErrorTexts are the texts of errs, in order.
func objectErrorTexts(errs []*lio.ObjectError) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

// joinObjectErrors is errs as one error (nil when empty).
func joinObjectErrors(errs []*lio.ObjectError) error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
