package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
)

// maxIQN is RFC 3720's limit on an iSCSI name, in bytes.
const maxIQN = 223

// checkName refuses a name that cannot be one configfs directory name.
// It is a stand-in until package config validates iSCSI names itself (issue
// 8 item 2, config.ValidateIQN), and deliberately narrower: a name refused
// here could never be applied, whatever the iSCSI grammar allows.
func checkName(what, name string, limit int) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid %s name %q", what, name)
	case len(name) > limit:
		return fmt.Errorf("invalid %s name: %d bytes, at most %d allowed", what, len(name), limit)
	case !utf8.ValidString(name):
		return fmt.Errorf("invalid %s name %q: not UTF-8", what, name)
	}
	for _, r := range name {
		if r == '/' || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("invalid %s name %q: character %U is not allowed", what, name, r)
		}
	}
	return nil
}

// soName is the storage-object name of a disk (lio's rule: the
// backstore_object_name, else "<pool>.<image>").
func soName(id string, d *config.Disk) string {
	if d.BackstoreObjectName != "" {
		return d.BackstoreObjectName
	}
	pool, image, _ := strings.Cut(id, "/")
	if d.Pool != "" {
		pool, image = d.Pool, d.Image
	}
	return pool + "." + image
}

// withValidNames returns doc without the targets, clients and disks whose
// names cannot become configfs paths, and an error naming each of them.
// doc itself is not changed; it is returned as is when every name is valid.
func withValidNames(doc *config.Doc) (*config.Doc, []*lio.ObjectError) {
	var errs []*lio.ObjectError
	badDisks := map[string]bool{}
	for id, d := range doc.Disks {
		if d == nil {
			continue
		}
		if err := checkName("storage object", soName(id, d), 255); err != nil {
			errs = append(errs, &lio.ObjectError{Disk: id, Err: fmt.Errorf("disk %s: %w", id, err)})
			badDisks[id] = true
		}
	}
	type clientRef struct{ target, client string }
	var badClients []clientRef
	var badTargets []string
	for iqn, t := range doc.Targets {
		if err := checkName("target", iqn, maxIQN); err != nil {
			errs = append(errs, &lio.ObjectError{Target: iqn, Err: fmt.Errorf("target %q: %w", iqn, err)})
			badTargets = append(badTargets, iqn)
			continue
		}
		if t == nil {
			continue
		}
		for ini := range t.Clients {
			if err := checkName("client", ini, maxIQN); err != nil {
				errs = append(errs, &lio.ObjectError{Target: iqn, Client: ini, Err: fmt.Errorf("target %s client %q: %w", iqn, ini, err)})
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
		for _, t := range c.Targets {
			if t == nil {
				continue
			}
			delete(t.Disks, id)
			for _, cl := range t.Clients {
				if cl != nil {
					delete(cl.Luns, id)
				}
			}
		}
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
