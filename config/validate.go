package config

import (
	"errors"
	"fmt"
	"slices"
)

// MaxLunID is the highest mapped (ACL) LUN id: client and group LUN maps
// keep upstream's 0-255.
const MaxLunID = 255

// MaxTargetLunID is the highest TPG LUN id a target's disks may use: the
// top of SAM's flat-space LUN addressing, which LIO uses to report LUNs
// above 255. Upstream sets no bound here, so a target may export thousands
// of disks.
const MaxTargetLunID = 16383

// Validate checks the invariants that every committed document must satisfy.
// It deliberately checks only cross-references that upstream itself
// maintains, so it never rejects a document a Python gateway could write.
// The result joins one *FieldError per violation.
func (d *Doc) Validate() error {
	_, err := d.validate(true)
	return err
}

// ValidateAndMarshal is Validate followed by Marshal, encoding the document once
// instead of twice: the store's commit path, where a large document's encoding is
// most of the CPU a commit costs.
func (d *Doc) ValidateAndMarshal() ([]byte, error) {
	return d.validate(false)
}

func (d *Doc) validate(discard bool) ([]byte, error) {
	var v validator
	if d.Version < CurrentVersion {
		v.add("version", fmt.Sprintf("must be at least %d", CurrentVersion))
	}
	if d.Epoch < 0 {
		v.add("epoch", "must not be negative")
	}
	for _, id := range sortedKeys(d.Disks) {
		if d.Disks[id] == nil {
			v.add(childPath("disks", id), "is null")
		}
	}
	for _, name := range sortedKeys(d.Gateways) {
		if d.Gateways[name] == nil {
			v.add(childPath("gateways", name), "is null")
		}
	}
	for _, iqn := range sortedKeys(d.Targets) {
		v.target(d, iqn)
	}
	raw, err := MarshalAny(d.toMap())
	if err != nil {
		v.add("", err.Error())
	}
	if len(v.errs) > 0 {
		return nil, fmt.Errorf("config: invalid document: %w", errors.Join(v.errs...))
	}
	if discard {
		return nil, nil
	}
	return raw, nil
}

type validator struct{ errs []error }

func (v *validator) add(path, rule string) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: rule})
}

// luns checks the lun_id range and per-map uniqueness, and (when known is
// non-nil) that every disk id is one of known's keys.
func (v *validator) luns(path string, luns map[string]LunRef, known map[string]LunRef, knownWhat string, maxID int) {
	seen := map[int]string{}
	for _, id := range sortedKeys(luns) {
		p := childPath(path, id)
		if known != nil {
			if _, ok := known[id]; !ok {
				v.add(p, "disk is not "+knownWhat)
			}
		}
		lun := luns[id].LunID
		if lun < 0 || lun > maxID {
			v.add(keyPath(p, "lun_id"), fmt.Sprintf("must be between 0 and %d, got %d", maxID, lun))
			continue
		}
		if other, dup := seen[lun]; dup {
			v.add(keyPath(p, "lun_id"), fmt.Sprintf("%d is also used by %q", lun, other))
			continue
		}
		seen[lun] = id
	}
}

func (v *validator) target(d *Doc, iqn string) {
	tp := childPath("targets", iqn)
	t := d.Targets[iqn]
	if t == nil {
		v.add(tp, "is null")
		return
	}

	dp := keyPath(tp, "disks")
	for _, id := range sortedKeys(t.Disks) {
		if _, ok := d.Disks[id]; !ok {
			v.add(childPath(dp, id), "disk is not defined in disks")
		}
	}
	v.luns(dp, t.Disks, nil, "", MaxTargetLunID)

	cp := keyPath(tp, "clients")
	for _, name := range sortedKeys(t.Clients) {
		p := childPath(cp, name)
		c := t.Clients[name]
		if c == nil {
			v.add(p, "is null")
			continue
		}
		v.luns(keyPath(p, "luns"), c.Luns, t.Disks, "exported by the target", MaxLunID)
		if c.GroupName == "" {
			continue
		}
		if g := t.Groups[c.GroupName]; g == nil || !slices.Contains(g.Members, name) {
			v.add(keyPath(p, "group_name"), fmt.Sprintf("client is not a member of group %q", c.GroupName))
		}
	}

	gp := keyPath(tp, "groups")
	for _, name := range sortedKeys(t.Groups) {
		p := childPath(gp, name)
		g := t.Groups[name]
		if g == nil {
			v.add(p, "is null")
			continue
		}
		v.luns(keyPath(p, "disks"), g.Disks, t.Disks, "exported by the target", MaxLunID)
		for i, m := range g.Members {
			mp := fmt.Sprintf("%s[%d]", keyPath(p, "members"), i)
			c := t.Clients[m]
			switch {
			case c == nil:
				v.add(mp, fmt.Sprintf("%q is not a client of the target", m))
			case c.GroupName != name:
				v.add(mp, fmt.Sprintf("client %q has group_name %q", m, c.GroupName))
			}
		}
	}

	pp := keyPath(tp, "portals")
	if len(t.Portals) > 0 && t.IPList == nil {
		v.add(keyPath(tp, "ip_list"), "missing although the target has portals")
	}
	for _, name := range sortedKeys(t.Portals) {
		p := childPath(pp, name)
		portal := t.Portals[name]
		if portal == nil {
			v.add(p, "is null")
			continue
		}
		if _, ok := d.Gateways[name]; !ok {
			v.add(p, "gateway is not defined in gateways")
		}
		if t.IPList == nil {
			continue
		}
		for i, ip := range portal.PortalIPAddresses {
			if !slices.Contains(t.IPList, ip) {
				v.add(fmt.Sprintf("%s[%d]", keyPath(p, "portal_ip_addresses"), i), fmt.Sprintf("%q is not in the target ip_list", ip))
			}
		}
	}
}
