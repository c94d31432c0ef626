package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"

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
func withValidNames(doc *config.Doc) (*config.Doc, []*lio.ObjectError) {
	var errs []*lio.ObjectError
	badDisks := map[string]bool{}
	for id, d := range doc.Disks {
		if d == nil {
			continue
		}
		if err := config.ValidateSafeName(soName(id, d)); err != nil {
			errs = append(errs, &lio.ObjectError{Disk: id, Err: fmt.Errorf("disk %s: storage object name %w", config.QuoteName(id), err)})
			badDisks[id] = true
		}
	}
	type clientRef struct{ target, client string }
	var badClients []clientRef
	var badTargets []string
	for iqn, t := range doc.Targets {
		if err := config.ValidateIQN(iqn); err != nil {
			errs = append(errs, &lio.ObjectError{Target: iqn, Err: fmt.Errorf("target %w", err)})
			badTargets = append(badTargets, iqn)
			continue
		}
		if t == nil {
			continue
		}
		for ini := range t.Clients {
			if err := config.ValidateIQN(ini); err != nil {
				errs = append(errs, &lio.ObjectError{Target: iqn, Client: ini, Err: fmt.Errorf("target %s client %w", config.QuoteName(iqn), err)})
				badClients = append(badClients, clientRef{iqn, ini})
			}
		}
	}
	if len(errs) == 0 {
		return doc, nil
	}
	c := doc.Clone()
	for _, iqn := range badTargets {
		delete(c.Targets, iqn)
	}
	for _, r := range badClients {
		delete(c.Targets[r.target].Clients, r.client)
	}
	for id := range badDisks {
		delete(c.Disks, id)
		c.DetachDisk(id)
	}
	slices.SortFunc(errs, func(a, b *lio.ObjectError) int { return strings.Compare(a.Error(), b.Error()) })
	return c, errs
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
