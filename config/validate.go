package config

import (
	"errors"
	"fmt"
	"maps"
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
	_, err := d.validate(true, nil)
	return err
}

// ValidateAndMarshal is Validate followed by Marshal, encoding the document once
// instead of twice: the store's commit path, where a large document's encoding is
// most of the CPU a commit costs.
func (d *Doc) ValidateAndMarshal() ([]byte, error) {
	return d.validate(false, nil)
}

// InvalidNames lists, by field path, the names in d that break their
// grammar (see ValidateIQN, ValidateGatewayName, ValidateSafeName). Such
// names can only come from an older gateway or a hand edit; the reconciler
// skips their objects.
func (d *Doc) InvalidNames() map[string]error {
	var v validator
	v.names(d)
	out := map[string]error{}
	for _, e := range v.errs {
		var fe *FieldError
		if errors.As(e, &fe) {
			out[fe.Path] = e
		}
	}
	return out
}

// ValidateAndMarshalSince is ValidateAndMarshal for a commit on top of a
// document whose invalid names were known (prev.InvalidNames()): those
// names are tolerated, so one bad object committed by an older version does
// not wedge every later mutation, including its own DELETE, while a new
// invalid name is still refused.
func (d *Doc) ValidateAndMarshalSince(known map[string]error) ([]byte, error) {
	return d.validate(false, known)
}

func (d *Doc) validate(discard bool, tolerated map[string]error) ([]byte, error) {
	// A valid document, the common case, is checked in map order: sorting
	// thousands of keys for nothing cost more than the checks. Only a
	// document with errors is checked again in sorted order, so that its
	// errors come in a stable order.
	v := validator{tolerated: tolerated}
	v.doc(d)
	if len(v.errs) > 0 {
		v = validator{tolerated: tolerated, sorted: true}
		v.doc(d)
	}
	raw, err := marshalDoc(d)
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

func (v *validator) doc(d *Doc) {
	v.names(d)
	if d.Version < CurrentVersion {
		v.add("version", fmt.Sprintf("must be at least %d", CurrentVersion))
	}
	if d.Epoch < 0 {
		v.add("epoch", "must not be negative")
	}
	for _, id := range keysOf(v, d.Disks) {
		if d.Disks[id] == nil {
			v.add(childPath("disks", id), "is null")
		}
	}
	for _, name := range keysOf(v, d.Gateways) {
		if d.Gateways[name] == nil {
			v.add(childPath("gateways", name), "is null")
		}
	}
	for _, iqn := range keysOf(v, d.Targets) {
		v.target(d, iqn)
	}
}

type validator struct {
	errs      []error
	tolerated map[string]error
	// sorted visits keys in order, for errors in a stable order.
	sorted bool
}

// keysOf is m's keys, sorted when v.sorted.
func keysOf[T any](v *validator, m map[string]T) []string {
	if v.sorted {
		return sortedKeys(m)
	}
	return slices.Collect(maps.Keys(m))
}

// name records err (a *NameError or nil) for the name at path, unless the
// path is tolerated.
func (v *validator) name(path string, err error) {
	if err == nil {
		return
	}
	if _, ok := v.tolerated[path]; ok {
		return
	}
	v.errs = append(v.errs, &FieldError{Path: path, Msg: "invalid name: " + err.Error(), Err: err})
}

// names checks every name that becomes a configfs directory, a URL path
// segment or a command argument: target and client IQNs, host group names,
// gateway names, disk pools, images and backstore object names.
func (v *validator) names(d *Doc) {
	for _, id := range keysOf(v, d.Disks) {
		// The key is not checked: upstream's v3 upgrade turned every '.' of
		// "pool.image" into '/', so only the fields name the image.
		disk := d.Disks[id]
		if disk == nil {
			continue
		}
		for _, f := range [...]struct{ key, value string }{
			{"pool", disk.Pool}, {"image", disk.Image}, {"backstore_object_name", disk.BackstoreObjectName},
		} {
			if f.value == "" {
				continue
			}
			if err := ValidateSafeName(f.value); err != nil {
				v.name(keyPath(childPath("disks", id), f.key), err)
			}
		}
	}
	for _, name := range keysOf(v, d.Gateways) {
		if err := ValidateGatewayName(name); err != nil {
			v.name(childPath("gateways", name), err)
		}
	}
	for _, iqn := range keysOf(v, d.Targets) {
		tp := childPath("targets", iqn)
		v.name(tp, ValidateIQN(iqn))
		t := d.Targets[iqn]
		if t == nil {
			continue
		}
		for _, c := range keysOf(v, t.Clients) {
			if err := ValidateIQN(c); err != nil {
				v.name(childPath(keyPath(tp, "clients"), c), err)
			}
		}
		for _, g := range keysOf(v, t.Groups) {
			if err := ValidateSafeName(g); err != nil {
				v.name(childPath(keyPath(tp, "groups"), g), err)
			}
		}
		for _, gw := range keysOf(v, t.Portals) {
			if err := ValidateGatewayName(gw); err != nil {
				v.name(childPath(keyPath(tp, "portals"), gw), err)
			}
		}
	}
}

func (v *validator) add(path, rule string) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: rule})
}

// luns checks the lun_id range and per-map uniqueness, and (when known is
// non-nil) that every disk id is one of known's keys. path is the map's
// path, made only for an error.
func (v *validator) luns(path func() string, luns map[string]LunRef, known map[string]LunRef, knownWhat string, maxID int) {
	seen := make(map[int]string, len(luns))
	for _, id := range keysOf(v, luns) {
		if known != nil {
			if _, ok := known[id]; !ok {
				v.add(childPath(path(), id), "disk is not "+knownWhat)
			}
		}
		lun := luns[id].LunID
		if lun < 0 || lun > maxID {
			v.add(keyPath(childPath(path(), id), "lun_id"), fmt.Sprintf("must be between 0 and %d, got %d", maxID, lun))
			continue
		}
		if other, dup := seen[lun]; dup {
			v.add(keyPath(childPath(path(), id), "lun_id"), fmt.Sprintf("%d is also used by %q", lun, other))
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
	for _, id := range keysOf(v, t.Disks) {
		if _, ok := d.Disks[id]; !ok {
			v.add(childPath(dp, id), "disk is not defined in disks")
		}
	}
	v.luns(func() string { return dp }, t.Disks, nil, "", MaxTargetLunID)

	cp := keyPath(tp, "clients")
	for _, name := range keysOf(v, t.Clients) {
		// paths are made only for an error: most documents have none
		p := func() string { return childPath(cp, name) }
		c := t.Clients[name]
		if c == nil {
			v.add(p(), "is null")
			continue
		}
		v.luns(func() string { return keyPath(p(), "luns") }, c.Luns, t.Disks, "exported by the target", MaxLunID)
		if c.GroupName == "" {
			continue
		}
		if g := t.Groups[c.GroupName]; g == nil || !slices.Contains(g.Members, name) {
			v.add(keyPath(p(), "group_name"), fmt.Sprintf("client is not a member of group %q", c.GroupName))
		}
	}

	gp := keyPath(tp, "groups")
	for _, name := range keysOf(v, t.Groups) {
		p := childPath(gp, name)
		g := t.Groups[name]
		if g == nil {
			v.add(p, "is null")
			continue
		}
		v.luns(func() string { return keyPath(p, "disks") }, g.Disks, t.Disks, "exported by the target", MaxLunID)
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
	for _, name := range keysOf(v, t.Portals) {
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
