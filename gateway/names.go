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
// of thousands of names costs a lookup per name seen before.
func withValidNames(doc *config.Doc, known *validNames) (*config.Doc, []*lio.ObjectError) {
	if known != nil {
		known.mu.Lock()
		defer known.mu.Unlock()
		if len(known.objects)+len(known.iqns) > maxKnownNames {
			known.objects, known.iqns = nil, nil
		}
	}
	known.trim(doc)
	var errs []*lio.ObjectError
	badDisks := map[string]bool{}
	for id, d := range doc.Disks {
		if d == nil || known.diskPassed(diskAt{id, d}) {
			continue
		}
		if err := known.check(false, soName(id, d), config.ValidateSafeName); err != nil {
			errs = append(errs, &lio.ObjectError{Disk: id, Err: fmt.Errorf("disk %s: storage object name %w", config.QuoteName(id), err)})
			badDisks[id] = true
		} else if doc.Frozen(d) {
			known.passDisk(diskAt{id, d})
		}
	}
	type clientRef struct{ target, client string }
	var badClients []clientRef
	var badTargets []string
	for iqn, t := range doc.Targets {
		if t != nil && known.targetPassed(targetAt{iqn, t}) {
			continue
		}
		if err := known.check(true, iqn, config.ValidateIQN); err != nil {
			errs = append(errs, &lio.ObjectError{Target: iqn, Err: fmt.Errorf("target %w", err)})
			badTargets = append(badTargets, iqn)
			continue
		}
		if t == nil {
			continue
		}
		ok := true
		for ini := range t.Clients {
			if err := known.check(true, ini, config.ValidateIQN); err != nil {
				errs = append(errs, &lio.ObjectError{Target: iqn, Client: ini, Err: fmt.Errorf("target %s client %w", config.QuoteName(iqn), err)})
				badClients = append(badClients, clientRef{iqn, ini})
				ok = false
			}
		}
		if ok && doc.Frozen(t) {
			known.passTarget(targetAt{iqn, t})
		}
	}
	if len(errs) == 0 {
		return doc, nil
	}
	c := doc.Fork()
	for _, iqn := range badTargets {
		if err := c.RemoveTarget(iqn); err != nil {
			panic(err) // iqn is one of c's
		}
	}
	for _, r := range badClients {
		delete(c.MutTarget(r.target).Clients, r.client)
	}
	for id := range badDisks {
		c.DetachDisk(id)
		if err := c.RemoveDisk(id); err != nil {
			panic(err) // detached, nothing uses it
		}
	}
	slices.SortFunc(errs, func(a, b *lio.ObjectError) int { return strings.Compare(a.Error(), b.Error()) })
	return c, errs
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

// joinObjectErrors is errs as one error (nil when empty).
func joinObjectErrors(errs []*lio.ObjectError) error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
