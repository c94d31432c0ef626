package config

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// DiskID is the key of a disk in disks and in the LUN maps: "pool/image".
func DiskID(pool, image string) string { return pool + "/" + image }

// SplitDiskID splits a disk id on its first '/', as upstream does; ok is
// false when either half is empty.
func SplitDiskID(id string) (pool, image string, ok bool) {
	pool, image, found := strings.Cut(id, "/")
	return pool, image, found && pool != "" && image != ""
}

// NewDisk is what a disk create registers; the document fills in the
// backstore object name and the timestamps.
type NewDisk struct {
	Pool, Image string
	PoolID      int64
	// WWN is the unit serial; it must be unique among the document's disks.
	WWN       string
	Backstore string
	// AllocatingHost is the gateway that created or registered the disk.
	AllocatingHost string
	// Controls are the stored overrides (only values differing from the
	// global settings); nil is stored as {}.
	Controls map[string]any
}

// Disk messages, upstream's text.
const (
	msgDiskExists = "at least one rbd image(s) with that name/prefix is already defined"
)

func diskNotDefined(id string) *Rejection {
	pool, image, _ := strings.Cut(id, "/")
	return &Rejection{Msg: fmt.Sprintf("rbd %s/%s is not defined to the configuration", pool, image), Kind: ErrNotFound}
}

// AddDisk registers a disk, as upstream's add_disk_item does on the
// allocating host. It refuses an id already defined and a WWN another disk
// uses. There is deliberately no limit on the number of disks: upstream's
// "Disk limit of 256 reached." came from an old LIO limit that a disk
// which is not mapped anywhere never meets.
func (d *Doc) AddDisk(n NewDisk, now time.Time) (*Disk, error) {
	if n.Pool == "" || n.Image == "" || strings.Contains(n.Pool, "/") {
		return nil, fmt.Errorf("config: add disk %q/%q: invalid pool or image name", n.Pool, n.Image)
	}
	id := DiskID(n.Pool, n.Image)
	if _, ok := d.Disks[id]; ok {
		return nil, &Rejection{Msg: msgDiskExists, Kind: ErrExists}
	}
	if n.WWN != "" {
		if other := d.DiskByWWN(n.WWN); other != "" {
			return nil, &Rejection{Msg: fmt.Sprintf("WWN %s is already in use by %s", n.WWN, other), Kind: ErrConflict}
		}
	}
	host := n.AllocatingHost
	ts := Timestamp(now)
	disk := &Disk{
		Pool: n.Pool, Image: n.Image, PoolID: n.PoolID, WWN: n.WWN,
		Backstore:           n.Backstore,
		BackstoreObjectName: BackstoreObjectName(d.Disks, n.Pool, n.Image),
		AllocatingHost:      &host,
		Controls:            maps.Clone(n.Controls),
		Created:             ts, Updated: ts,
	}
	if disk.Controls == nil {
		disk.Controls = map[string]any{}
	}
	d.PutDisk(id, disk)
	return disk, nil
}

// DiskByWWN returns the id of the disk whose WWN is wwn ("" when none), the
// lowest id when several share it.
func (d *Doc) DiskByWWN(wwn string) string {
	found := ""
	for id, disk := range d.Disks {
		if disk != nil && disk.WWN == wwn && (found == "" || id < found) {
			found = id
		}
	}
	return found
}

// BackstoreObjectName is upstream's get_backstore_object_name: "pool.image",
// or with ".1", ".2", ... appended while another disk's storage object has
// that name ("a.b/c" is "a.b.c", then "a/b.c" is "a.b.c.1").
func BackstoreObjectName(disks map[string]*Disk, pool, image string) string {
	taken := func(name string) bool {
		for _, disk := range disks {
			if disk != nil && disk.BackstoreObjectName == name {
				return true
			}
		}
		return false
	}
	base := pool + "." + image
	name := base
	for i := 1; taken(name); i++ {
		name = fmt.Sprintf("%s.%d", base, i)
	}
	return name
}

// SetDiskControls replaces a disk's stored control overrides and stamps it.
func (d *Doc) SetDiskControls(id string, controls map[string]any, now time.Time) error {
	disk := d.MutDisk(id)
	if disk == nil {
		return diskNotDefined(id)
	}
	disk.Controls = maps.Clone(controls)
	if disk.Controls == nil {
		disk.Controls = map[string]any{}
	}
	disk.Updated = Timestamp(now)
	return nil
}

// DiskUsers lists who still uses a disk: the clients whose LUN maps hold it
// and the targets exporting it, each in document (sorted) order, as
// upstream's valid_disk(mode='delete') collects them.
func (d *Doc) DiskUsers(id string) (clients, targets []string) {
	for _, iqn := range sortedKeys(d.Targets) {
		t := d.Targets[iqn]
		if t == nil {
			continue
		}
		if _, ok := t.Disks[id]; ok {
			targets = append(targets, iqn)
		}
		for _, c := range sortedKeys(t.Clients) {
			if cl := t.Clients[c]; cl != nil {
				if _, ok := cl.Luns[id]; ok {
					clients = append(clients, c)
				}
			}
		}
	}
	return clients, targets
}

// CheckDiskDeletable is upstream's valid_disk(mode='delete'): the disk must
// be defined, in no client's LUN map and exported by no target.
func (d *Doc) CheckDiskDeletable(id string) error {
	if d.Disks[id] == nil {
		return diskNotDefined(id)
	}
	clients, targets := d.DiskUsers(id)
	if len(clients) > 0 {
		return &Rejection{Msg: fmt.Sprintf("Unable to delete %s. Allocated to: %s", id, strings.Join(clients, ",")), Kind: ErrConflict}
	}
	if len(targets) > 0 {
		return &Rejection{Msg: fmt.Sprintf("Unable to delete %s. Mapped to: %s", id, strings.Join(targets, ",")), Kind: ErrConflict}
	}
	return nil
}

// RemoveDisk deletes disks[id] once nothing uses it. The refusal while a
// target still exports it is the internal route's (remove_lun) wording,
// which the API prefixes with "Failed to remove the LUN - ".
func (d *Doc) RemoveDisk(id string) error {
	if d.Disks[id] == nil {
		return diskNotDefined(id)
	}
	clients, targets := d.DiskUsers(id)
	if len(targets) > 0 {
		return &Rejection{Msg: fmt.Sprintf("Unable to delete %s - allocated to %s", id, targets[0]), Kind: ErrConflict}
	}
	if len(clients) > 0 {
		return &Rejection{Msg: fmt.Sprintf("Unable to delete %s. Allocated to: %s", id, strings.Join(clients, ",")), Kind: ErrConflict}
	}
	d.dropDisk(id)
	return nil
}

// DetachDisk removes every reference to the disk id from the targets, their
// clients and host groups, leaving the disk itself defined: the document as
// LIO should see it while the disk is deactivated or cannot be built.
func (d *Doc) DetachDisk(id string) {
	for iqn, t := range d.Targets {
		if t == nil {
			continue
		}
		// t is read, what holds the disk is changed through d
		if _, ok := t.Disks[id]; ok {
			d.dropTargetLun(iqn, id)
		}
		for ini, cl := range t.Clients {
			if cl == nil {
				continue
			}
			if _, ok := cl.Luns[id]; ok {
				delete(d.MutClient(iqn, ini).Luns, id)
			}
		}
		for name, g := range t.Groups {
			if g == nil {
				continue
			}
			if _, ok := g.Disks[id]; ok {
				delete(d.MutGroup(iqn, name).Disks, id)
			}
		}
	}
}
