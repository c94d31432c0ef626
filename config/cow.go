package config

import (
	"maps"
	"slices"
	"sync/atomic"
)

// Copy-on-write documents.
//
// A gateway keeps the document it last read or committed and starts every
// request from a copy of it; at thousands of LUNs a deep copy costs more
// than the change a request makes. Fork copies only the document's own
// fields and its three top-level maps, and shares every disk, gateway and
// target (with their portals, clients and groups) until one side changes
// one: the Mut accessors copy a shared object into the document before
// handing it out, so a change copies only what it changes.
//
// The contract for code that changes a document:
//   - the document's own fields may be written directly; its Disks,
//     Gateways and Targets maps only through its methods (the Add, Remove,
//     Drop and Mut ones), which log what they change (ChangesSince);
//   - a field of a disk, gateway or target, and anything in a target's maps,
//     is written only through the object MutDisk, MutGateway or MutTarget
//     returned (a target from MutTarget may have its Disks, Clients, Portals
//     and Groups maps written directly), before the document is read at a
//     Stamp;
//   - a field of a portal, client or group only through MutPortal,
//     MutClient or MutGroup;
//   - LunRef values and the generic Controls and Extra maps of an object are
//     replaced, never written in place, except through a Mut accessor's copy;
//   - an object the Add methods return belongs to d and may be written.
//
// A document that needs to be written any other way is a deep copy (Clone).

// owner is the mark a document stamps on the objects it may change in
// place. Fork revokes it, so that neither the source nor the fork changes
// in place what they now share; the next change takes a fresh mark.
type owner struct{ revoked atomic.Bool }

// mine reports whether o marks an object d may change in place.
func (d *Doc) mine(o *owner) bool {
	return o != nil && o == d.own && !o.revoked.Load()
}

// mark is d's current mark, a fresh one when d has none or gave it up.
func (d *Doc) mark() *owner {
	if d.own == nil || d.own.revoked.Load() {
		d.own = &owner{}
	}
	return d.own
}

// Fork returns a copy of d that shares every disk, gateway and target with
// d, and the maps holding them, until either document changes one (see the
// contract above): a constant cost, where Clone copies every object, and
// the first change of a map copies that map's pointers. Both documents may
// then be changed independently, and read
// concurrently with each other's changes; d must not be changed while Fork
// runs, but several Forks of one document may run at once.
func (d *Doc) Fork() *Doc {
	if d == nil {
		return nil
	}
	if d.own != nil {
		// everything d marked is shared from now on
		d.own.revoked.Store(true)
	}
	c := *d
	c.own, c.cow = nil, true
	c.line = d.forkLineage()
	// the three maps are shared: whichever document writes one first
	// copies it (ownMap), since d's mark is revoked and c has none
	c.disksOwn, c.gatewaysOwn, c.targetsOwn = nil, nil, nil
	c.DiscoveryAuth = d.DiscoveryAuth.clone()
	c.GatewaysUpgraded = slices.Clone(d.GatewaysUpgraded)
	c.Extra = cloneGeneric(d.Extra)
	return &c
}

// Object is a disk, gateway, target, portal, client or group of a
// document.
type Object interface{ ownedBy() *owner }

func (k *Disk) ownedBy() *owner    { return k.own }
func (g *Gateway) ownedBy() *owner { return g.own }
func (t *Target) ownedBy() *owner  { return t.own }
func (p *Portal) ownedBy() *owner  { return p.own }
func (c *Client) ownedBy() *owner  { return c.own }
func (g *Group) ownedBy() *owner   { return g.own }

// Frozen reports whether o, an object d holds, can no longer change in
// place: d is a fork, so it shares its objects copy-on-write, and it does
// not own o, so by the contract above nobody writes o again and
// what is derived from it may be remembered by its address. A frozen
// target is frozen with every portal, client and group it holds: changing
// one copies the target first. Only forks freeze: the objects of a Clone or
// of a document built by hand or decoded may be written directly, and a
// decoded document's are new anyway.
func (d *Doc) Frozen(o Object) bool {
	return d.cow && !d.mine(o.ownedBy())
}

// FrozenLuns reports whether the LUN map of t (t.Disks), a target d
// holds, can no longer change in place: t is frozen, or d is a fork and t
// still borrows the map from the target it was copied from, which is (a
// client's change copies the target but not its LUN map). What is derived
// from the map may then be remembered by the map's identity.
func (d *Doc) FrozenLuns(t *Target) bool {
	return d.cow && (!d.mine(t.own) || t.borrowed&borrowedDisks != 0)
}

// MutDisk returns disks[id] for changing (nil when absent), copied into d
// first when it is shared.
func (d *Doc) MutDisk(id string) *Disk {
	d.logChange(Change{Kind: ChangedDisk, Key: id})
	return mutEntry(d, d.Disks, func() map[string]*Disk { return ownMap(d, &d.Disks, &d.disksOwn) }, id, (*Disk).clone, func(k *Disk) **owner { return &k.own })
}

// MutGateway returns gateways[name] for changing (nil when absent).
func (d *Doc) MutGateway(name string) *Gateway {
	d.logChange(Change{Kind: ChangedGateway, Key: name})
	return mutEntry(d, d.Gateways, func() map[string]*Gateway { return ownMap(d, &d.Gateways, &d.gatewaysOwn) }, name, (*Gateway).clone, func(g *Gateway) **owner { return &g.own })
}

// MutTarget returns targets[iqn] for changing (nil when absent). A shared
// target is copied with its maps, not with the portals, clients and groups
// they hold: those are copied by MutPortal, MutClient and MutGroup.
func (d *Doc) MutTarget(iqn string) *Target {
	d.logChange(Change{Kind: ChangedTarget, Target: iqn})
	t := d.targetCopy(iqn)
	if t != nil {
		t.ownMaps(borrowedAll)
	}
	return t
}

// mutTargetLuns is MutTarget for a change of the target's fields and LUN
// map only: its clients, portals and groups maps stay borrowed, so that a
// LUN mapped to a target of a thousand clients does not copy their map.
// The caller logs each LUN it writes (dropTargetLun does).
func (d *Doc) mutTargetLuns(iqn string) *Target {
	t := d.targetCopy(iqn)
	if t != nil {
		t.ownMaps(borrowedDisks)
	}
	return t
}

// targetCopy is targets[iqn], copied into d when shared, whose maps may
// still be borrowed from the target it was copied from.
func (d *Doc) targetCopy(iqn string) *Target {
	d.logChange(Change{Kind: ChangedTargetFields, Target: iqn})
	return mutEntry(d, d.Targets, func() map[string]*Target { return ownMap(d, &d.Targets, &d.targetsOwn) }, iqn, (*Target).fork, func(t *Target) **owner { return &t.own })
}

// Which of a target's maps it shares with the target it was copied from
// (Target.borrowed). A client's change writes the clients map only; the
// target's LUN map, thousands of entries, is copied when something writes
// it, not with every client.
const (
	borrowedDisks uint8 = 1 << iota
	borrowedClients
	borrowedPortals
	borrowedGroups
	borrowedAll = borrowedDisks | borrowedClients | borrowedPortals | borrowedGroups
)

// ownMaps copies the maps of which that t borrows, so that they may be
// written.
func (t *Target) ownMaps(which uint8) {
	which &= t.borrowed
	if which&borrowedDisks != 0 {
		t.Disks = maps.Clone(t.Disks)
	}
	if which&borrowedClients != 0 {
		t.Clients = maps.Clone(t.Clients)
	}
	if which&borrowedPortals != 0 {
		t.Portals = maps.Clone(t.Portals)
	}
	if which&borrowedGroups != 0 {
		t.Groups = maps.Clone(t.Groups)
	}
	t.borrowed &^= which
}

// mutEntry is every Mut accessor: m[key], replaced by a copy d owns when
// it is shared.
func mutEntry[T any](d *Doc, m map[string]*T, writable func() map[string]*T, key string, copy func(*T) *T, own func(*T) **owner) *T {
	v := m[key]
	if v == nil || d.mine(*own(v)) {
		return v
	}
	v = copy(v)
	w := writable()
	*own(v) = d.mark()
	w[key] = v
	return v
}

// MutClient returns targets[iqn].clients[ini] for changing, copying the
// target and the client into d first where they are shared (nil when
// either is absent).
func (d *Doc) MutClient(iqn, ini string) *Client {
	return mutChild(d, iqn, ini, ChangedClient, borrowedClients, func(t *Target) map[string]*Client { return t.Clients }, (*Client).clone,
		func(c *Client) **owner { return &c.own })
}

// MutPortal returns targets[iqn].portals[gw] for changing (nil when absent).
func (d *Doc) MutPortal(iqn, gw string) *Portal {
	return mutChild(d, iqn, gw, ChangedPortal, borrowedPortals, func(t *Target) map[string]*Portal { return t.Portals }, (*Portal).clone,
		func(p *Portal) **owner { return &p.own })
}

// MutGroup returns targets[iqn].groups[name] for changing (nil when absent).
func (d *Doc) MutGroup(iqn, name string) *Group {
	return mutChild(d, iqn, name, ChangedGroup, borrowedGroups, func(t *Target) map[string]*Group { return t.Groups }, (*Group).clone,
		func(g *Group) **owner { return &g.own })
}

// mutChild is MutClient, MutPortal and MutGroup: the target only becomes
// d's when the child exists, so asking for an absent one copies nothing,
// and only the map holding the child (which) is copied with it.
func mutChild[T any](d *Doc, iqn, name string, kind ChangeKind, which uint8, of func(*Target) map[string]*T, clone func(*T) *T, own func(*T) **owner) *T {
	t := d.Targets[iqn]
	if t == nil || of(t)[name] == nil {
		return nil
	}
	t = d.targetCopy(iqn)
	d.logChange(Change{Kind: kind, Target: iqn, Key: name})
	t.ownMaps(which)
	return mutEntry(d, of(t), func() map[string]*T { return of(t) }, name, clone, own)
}

// fork is a copy of t that shares its portals, clients, groups and LUN
// references, and borrows the maps holding them until one is written (see
// ownMaps; MutTarget owns them all).
func (t *Target) fork() *Target {
	c := t.withOwnFields()
	c.borrowed = borrowedAll
	return c
}

// withOwnFields is a copy of t, unowned, with its own copies of everything
// but its four maps, which fork and clone copy each their way.
func (t *Target) withOwnFields() *Target {
	c := *t
	c.own, c.borrowed = nil, 0
	c.Controls = cloneGeneric(t.Controls)
	c.Auth = t.Auth.clone()
	c.IPList = slices.Clone(t.IPList)
	c.Updated = clonePtr(t.Updated)
	c.Extra = cloneGeneric(t.Extra)
	return &c
}

// PutGateway sets gateways[name] to g, which d now owns: a gateway made by
// hand (the API adds gateways with their portals, AddTargetGateway).
func (d *Doc) PutGateway(name string, g *Gateway) {
	if g != nil {
		g.own = d.mark()
	}
	ownMap(d, &d.Gateways, &d.gatewaysOwn)[name] = g
	d.logChange(Change{Kind: ChangedGateway, Key: name})
}

// PutDisk sets disks[id] to k, which d now owns: a disk made by hand (the
// API adds disks with AddDisk).
func (d *Doc) PutDisk(id string, k *Disk) {
	k.own = d.mark()
	ownMap(d, &d.Disks, &d.disksOwn)[id] = k
	d.logChange(Change{Kind: ChangedDisk, Key: id})
}

// PutTarget sets targets[iqn] to t, which d now owns: a target made by
// hand (the API adds targets with AddTarget).
func (d *Doc) PutTarget(iqn string, t *Target) {
	t.own = d.mark()
	ownMap(d, &d.Targets, &d.targetsOwn)[iqn] = t
	d.logChange(Change{Kind: ChangedTarget, Target: iqn})
}

// dropTarget deletes targets[iqn], logged.
func (d *Doc) dropTarget(iqn string) {
	delete(ownMap(d, &d.Targets, &d.targetsOwn), iqn)
	d.logChange(Change{Kind: ChangedTarget, Target: iqn})
}

// dropDisk deletes disks[id], logged.
func (d *Doc) dropDisk(id string) {
	delete(ownMap(d, &d.Disks, &d.disksOwn), id)
	d.logChange(Change{Kind: ChangedDisk, Key: id})
}

// dropGateway deletes gateways[name], logged.
func (d *Doc) dropGateway(name string) {
	delete(ownMap(d, &d.Gateways, &d.gatewaysOwn), name)
	d.logChange(Change{Kind: ChangedGateway, Key: name})
}

// ownMap returns *m, one of d's three maps, for writing: a fork shares
// them with its source until either writes one (see Fork), and the map is
// d's own only while the mark it was copied under (*mark) is d's. A nil
// map becomes an empty one.
func ownMap[V any](d *Doc, m *map[string]V, mark **owner) map[string]V {
	if !d.mine(*mark) {
		c := maps.Clone(*m)
		if c == nil {
			c = map[string]V{}
		}
		*m, *mark = c, d.mark()
	}
	return *m
}

// dropTargetLun deletes disk from the LUN map of target iqn, logged.
func (d *Doc) dropTargetLun(iqn, disk string) {
	delete(d.mutTargetLuns(iqn).Disks, disk)
	d.logChange(Change{Kind: ChangedTargetLun, Target: iqn, Key: disk})
}
