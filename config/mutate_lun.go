package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// LUN messages, upstream's text where upstream has one. The range and
// "no free LUN id" wording is ours: upstream stored any integer, and ran out
// of client LUN ids with a Python IndexError (a 500).
const (
	msgLunDiskUndefined   = "Disk %s is not defined in the configuration"
	msgLunDiskMapped      = "Disk %s cannot be used because it is already mapped on target %s"
	msgLunIDInUse         = "Lun id %d already in use"
	msgLunOutOfRange      = "Lun id %d is out of range (0-%d)"
	msgLunNotInTarget     = "Disk %s is not defined in target %s"
	msgLunInGroup         = "Disk %s belongs to group %s"
	msgLunAllocated       = "Unable to delete %s - allocated to %s"
	msgLunOwnerUndefined  = "Gateway %s does not exist in configuration"
	msgLunNoFreeTargetLun = "no free LUN id (0-%d) left in target %s"
	msgLunNoFreeClientLun = "no free LUN id (0-%d) left for %s"
	msgLunNonExistent     = "Non-existent images %s requested for %s"
)

func lunRejection(kind error, format string, args ...any) *Rejection {
	return &Rejection{Msg: fmt.Sprintf(format, args...), Kind: kind}
}

// LunOwner is upstream's LUN.get_owner: the portal gateway of the target
// with the fewest active LUNs, ties going to the first in name order (the
// order of the stored, sorted document). A new LUN's ALUA active/optimised
// path is on it, which spreads the LUNs over the gateways.
func (d *Doc) LunOwner(targetIQN string) (string, error) {
	t, err := d.target(targetIQN)
	if err != nil {
		return "", err
	}
	owner, best := "", 0
	for _, gw := range sortedKeys(t.Portals) {
		n := 0
		if g := d.Gateways[gw]; g != nil {
			n = g.ActiveLuns
		}
		if owner == "" || n < best {
			owner, best = gw, n
		}
	}
	if owner == "" {
		return "", lunRejection(ErrConflict, "target %s has no gateways to own a LUN", targetIQN)
	}
	return owner, nil
}

// CheckTargetLunAdd is the coordinator's validation of exporting disk
// through target targetIQN (upstream's target_disk PUT): the disk must be
// defined, exported by no target yet (a disk belongs to one target only),
// and a requested LUN id must be in range and unused by the target.
func (d *Doc) CheckTargetLunAdd(targetIQN, disk string, lunID *int) error {
	t, err := d.target(targetIQN)
	if err != nil {
		return err
	}
	if d.Disks[disk] == nil {
		return lunRejection(ErrConflict, msgLunDiskUndefined, disk)
	}
	for _, iqn := range sortedKeys(d.Targets) {
		if other := d.Targets[iqn]; other != nil {
			if _, ok := other.Disks[disk]; ok {
				return lunRejection(ErrConflict, msgLunDiskMapped, disk, iqn)
			}
		}
	}
	if lunID != nil {
		return checkTargetLunID(t, disk, *lunID)
	}
	return nil
}

func checkTargetLunID(t *Target, disk string, id int) error {
	if id < 0 || id > MaxTargetLunID {
		return lunRejection(ErrConflict, msgLunOutOfRange, id, MaxTargetLunID)
	}
	// map order: the refusal names no disk, and sorting thousands of keys
	// for it cost more than the rest of a LUN's checks
	for other, ref := range t.Disks {
		if other != disk && ref.LunID == id {
			return lunRejection(ErrConflict, msgLunIDInUse, id)
		}
	}
	return nil
}

// MapTargetLun is the config half of upstream's map_lun: export disk through
// the target with lunID (nil: the lowest id the target does not use), make
// owner the disk's owner and count the LUN in the owner's active_luns. It is
// idempotent: a disk the target already exports keeps its id and is only
// re-owned, so every gateway of a fan-out may run it. It reports whether the
// document changed and the disk's target LUN id.
func (d *Doc) MapTargetLun(targetIQN, disk string, lunID *int, owner string, now time.Time) (bool, int, error) {
	t, err := d.target(targetIQN)
	if err != nil {
		return false, 0, err
	}
	dk := d.Disks[disk]
	if dk == nil {
		return false, 0, lunRejection(ErrConflict, msgLunDiskUndefined, disk)
	}
	gw := d.Gateways[owner]
	if gw == nil {
		return false, 0, lunRejection(ErrConflict, msgLunOwnerUndefined, owner)
	}
	ts := Timestamp(now)
	if ref, ok := t.Disks[disk]; ok {
		if dk.Owner != nil && *dk.Owner == owner {
			return false, ref.LunID, nil
		}
		dk = d.MutDisk(disk)
		o := owner
		dk.Owner = &o
		dk.Updated = ts
		return true, ref.LunID, nil
	}
	var id int
	if lunID != nil {
		if err := checkTargetLunID(t, disk, *lunID); err != nil {
			return false, 0, err
		}
		id = *lunID
	} else {
		var ok bool
		if id, ok = lowestFreeRef(t.Disks, MaxTargetLunID); !ok {
			return false, 0, lunRejection(ErrConflict, msgLunNoFreeTargetLun, MaxTargetLunID, targetIQN)
		}
	}
	t = d.mutTargetLuns(targetIQN)
	if t.Disks == nil {
		t.Disks = map[string]LunRef{}
	}
	t.Disks[disk] = LunRef{LunID: id}
	d.logChange(Change{Kind: ChangedTargetLun, Target: targetIQN, Key: disk})
	dk = d.MutDisk(disk)
	o := owner
	dk.Owner = &o
	dk.Updated = ts
	gw = d.MutGateway(owner)
	gw.ActiveLuns++
	gw.Updated = ts
	t.stamp(now)
	return true, id, nil
}

// CheckTargetLunRemove is the coordinator's validation of a target LUN
// removal (upstream's target_disk DELETE): the disk must be defined and
// exported by the target, and no host group of the target may hold it.
func (d *Doc) CheckTargetLunRemove(targetIQN, disk string) error {
	t, err := d.target(targetIQN)
	if err != nil {
		return err
	}
	if d.Disks[disk] == nil {
		return lunRejection(ErrConflict, msgLunDiskUndefined, disk)
	}
	if _, ok := t.Disks[disk]; !ok {
		return lunRejection(ErrConflict, msgLunNotInTarget, disk, targetIQN)
	}
	for _, name := range sortedKeys(t.Groups) {
		if g := t.Groups[name]; g != nil {
			if _, ok := g.Disks[disk]; ok {
				return lunRejection(ErrConflict, msgLunInGroup, disk, name)
			}
		}
	}
	return nil
}

// UnmapTargetLun is the config half of upstream's unmap_lun on the purge
// host: the target stops exporting disk, the owner's active_luns drops by
// one (never below zero) and the disk loses its owner. It refuses what
// CheckTargetLunRemove refuses, and a disk a client still maps (naming the
// first such client in document order), except that a disk the target does
// not export is no change, so a repeated delete succeeds.
func (d *Doc) UnmapTargetLun(targetIQN, disk string, now time.Time) (bool, error) {
	t, err := d.target(targetIQN)
	if err != nil {
		return false, err
	}
	if _, ok := t.Disks[disk]; !ok && d.Disks[disk] != nil {
		return false, nil
	}
	if err := d.CheckTargetLunRemove(targetIQN, disk); err != nil {
		return false, err
	}
	// the first client in name order is named, found without sorting them
	user := ""
	for c, cl := range t.Clients {
		if cl != nil && (user == "" || c < user) {
			if _, ok := cl.Luns[disk]; ok {
				user = c
			}
		}
	}
	if user != "" {
		return false, lunRejection(ErrConflict, msgLunAllocated, disk, user)
	}
	d.dropTargetLun(targetIQN, disk)
	t = d.Targets[targetIQN]
	ts := Timestamp(now)
	dk := d.MutDisk(disk)
	if dk.Owner != nil {
		if gw := d.Gateways[*dk.Owner]; gw != nil && gw.ActiveLuns > 0 {
			gw = d.MutGateway(*dk.Owner)
			gw.ActiveLuns--
			gw.Updated = ts
		}
		dk.Owner = nil
	}
	dk.Updated = ts
	t.stamp(now)
	return true, nil
}

// SetClientLuns makes the LUN map of a client hold exactly images (disk
// ids), as upstream's update_client does (spec 5.4). Kept disks keep their
// ids; a newly mapped disk gets the disk's target-level id when no client of
// the target uses that number (and it is within 0..MaxLunID), otherwise the
// lowest id the client leaves free. Ids the client holds before the change are not reused within it,
// as upstream's ACL still holds them while it maps. A client in a host group
// is left alone: the group decides its LUNs (see ApplyGroup). Every image
// must be exported by the target; the refusal names the missing ones by
// storage object name, as upstream. It reports whether the document changed.
func (d *Doc) SetClientLuns(targetIQN, clientIQN string, images []string, now time.Time) (bool, error) {
	t, err := d.target(targetIQN)
	if err != nil {
		return false, err
	}
	c := t.Clients[clientIQN]
	if c == nil {
		return false, fmt.Errorf("config: client %q of target %q: %w", clientIQN, targetIQN, ErrNotFound)
	}
	if c.GroupName != "" {
		return false, nil
	}
	var bad []string
	for _, img := range images {
		if _, ok := t.Disks[img]; ok {
			continue
		}
		name := img
		if dk := d.Disks[img]; dk != nil {
			name = dk.BackstoreObjectName
		}
		bad = append(bad, name)
	}
	if len(bad) > 0 {
		return false, lunRejection(ErrConflict, msgLunNonExistent, pyList(bad), clientIQN)
	}
	if sameSet(images, sortedKeys(c.Luns)) {
		return false, nil
	}

	taken := map[int]bool{}
	for _, ref := range c.Luns {
		taken[ref.LunID] = true
	}
	luns := make(map[string]LunRef, len(images))
	for _, img := range images {
		if ref, ok := c.Luns[img]; ok {
			luns[img] = ref.clone()
		}
	}
	// which of the new disks' target-level ids some client maps already:
	// one pass over the clients' LUNs against those few ids, not a set of
	// every id the target's clients use (thousands at 4096 LUNs)
	usedByClients := map[int]bool{}
	for _, img := range images {
		if _, ok := luns[img]; !ok {
			usedByClients[t.Disks[img].LunID] = false
		}
	}
	// (a removal maps nothing new: no client need be read)
	for _, other := range t.Clients {
		if len(usedByClients) == 0 {
			break
		}
		if other == nil {
			continue
		}
		for _, ref := range other.Luns {
			if _, ok := usedByClients[ref.LunID]; ok {
				usedByClients[ref.LunID] = true
			}
		}
	}
	// Target-level ids first, so a lowest-free pick never takes the id a
	// later disk of the same request was entitled to (upstream then failed
	// to create the second mapped LUN).
	for _, img := range images {
		if _, ok := luns[img]; ok {
			continue
		}
		if id := t.Disks[img].LunID; id >= 0 && id <= MaxLunID && !usedByClients[id] && !taken[id] {
			taken[id] = true
			luns[img] = LunRef{LunID: id}
		}
	}
	for _, img := range images {
		if _, ok := luns[img]; ok {
			continue
		}
		id, ok := lowestFreeLun(taken, MaxLunID)
		if !ok {
			return false, lunRejection(ErrConflict, msgLunNoFreeClientLun, MaxLunID, clientIQN)
		}
		taken[id] = true
		luns[img] = LunRef{LunID: id}
	}
	c = d.MutClient(targetIQN, clientIQN)
	c.Luns = luns
	d.Targets[targetIQN].stamp(now)
	return true, nil
}

// lowestFreeRef is the lowest LUN id in 0..maxID that no ref of refs
// has. Of n refs, it is at most n: a set of the ids up to n finds it,
// where a set of every id would hold thousands.
func lowestFreeRef(refs map[string]LunRef, maxID int) (int, bool) {
	used := make([]bool, min(len(refs), maxID)+1)
	for _, ref := range refs {
		if ref.LunID >= 0 && ref.LunID < len(used) {
			used[ref.LunID] = true
		}
	}
	if id := slices.Index(used, false); id >= 0 {
		return id, true
	}
	return 0, false
}

// lowestFreeLun is the lowest id in 0..maxID not in used.
func lowestFreeLun(used map[int]bool, maxID int) (int, bool) {
	for id := 0; id <= maxID; id++ {
		if !used[id] {
			return id, true
		}
	}
	return 0, false
}

// pyList renders strings as Python's repr of a list does, because upstream
// puts that repr in its messages.
func pyList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", `\'`) + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// ClientLunsAfter is the image list a clientlun request asks for: the
// client's current disks (in document order) plus disk, or minus it. ok is
// false for a removal of a disk the client does not map.
func ClientLunsAfter(c *Client, disk string, add bool) ([]string, bool) {
	cur := sortedKeys(c.Luns)
	if add {
		return append(cur, disk), true
	}
	i := slices.Index(cur, disk)
	if i < 0 {
		return cur, false
	}
	return slices.Delete(cur, i, i+1), true
}
