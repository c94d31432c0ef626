package config

import (
	"fmt"
	"slices"
	"time"
)

// Error is the type of this package's sentinel errors; being a string type
// lets them be constants.
type Error string

func (e Error) Error() string { return string(e) }

// Sentinel errors of the mutation helpers; test with errors.Is.
const (
	ErrNotFound = Error("not found")
	ErrExists   = Error("already exists")
	ErrConflict = Error("conflict")
)

// Touch records a commit the way upstream's _commit_rbd does: epoch+1 and
// updated=now. The store calls it exactly once per write.
func (d *Doc) Touch(now time.Time) {
	d.Epoch++
	d.Updated = Timestamp(now)
}

// AddTarget creates targets[iqn] from the NewTarget seed.
func (d *Doc) AddTarget(iqn string, now time.Time) (*Target, error) {
	if iqn == "" {
		return nil, fmt.Errorf("config: add target: empty IQN")
	}
	if _, ok := d.Targets[iqn]; ok {
		return nil, fmt.Errorf("config: target %q: %w", iqn, ErrExists)
	}
	t := NewTarget(now)
	d.PutTarget(iqn, t)
	return t, nil
}

// AddClient creates a client on a target from the NewClient seed and stamps
// the target's updated time, as upstream's update_item on the target does.
func (d *Doc) AddClient(targetIQN, clientIQN string, now time.Time) (*Client, error) {
	t, err := d.target(targetIQN)
	if err != nil {
		return nil, err
	}
	if clientIQN == "" {
		return nil, fmt.Errorf("config: add client: empty IQN")
	}
	if _, ok := t.Clients[clientIQN]; ok {
		return nil, fmt.Errorf("config: client %q of target %q: %w", clientIQN, targetIQN, ErrExists)
	}
	t = d.MutTarget(targetIQN)
	if t.Clients == nil {
		t.Clients = map[string]*Client{}
	}
	c := NewClient()
	c.own = d.mark()
	t.Clients[clientIQN] = c
	t.stamp(now)
	return c, nil
}

// RemoveClient deletes a client. Like the API, it refuses a client that is a
// member of a host group, because the group would be left pointing at it.
func (d *Doc) RemoveClient(targetIQN, clientIQN string, now time.Time) error {
	t, err := d.target(targetIQN)
	if err != nil {
		return err
	}
	c, ok := t.Clients[clientIQN]
	if !ok {
		return fmt.Errorf("config: client %q of target %q: %w", clientIQN, targetIQN, ErrNotFound)
	}
	if c != nil && c.GroupName != "" {
		return fmt.Errorf("config: client %q belongs to group %q: %w", clientIQN, c.GroupName, ErrConflict)
	}
	t = d.MutTarget(targetIQN)
	delete(t.Clients, clientIQN)
	t.stamp(now)
	return nil
}

func (d *Doc) target(iqn string) (*Target, error) {
	t := d.Targets[iqn]
	if t == nil {
		return nil, fmt.Errorf("config: target %q: %w", iqn, ErrNotFound)
	}
	return t, nil
}

// mutTarget is MutTarget, with target's error for an unknown IQN.
func (d *Doc) mutTarget(iqn string) (*Target, error) {
	if _, err := d.target(iqn); err != nil {
		return nil, err
	}
	return d.MutTarget(iqn), nil
}

// stamp sets t's updated time; t is one MutTarget returned.
func (t *Target) stamp(now time.Time) {
	s := Timestamp(now)
	t.Updated = &s
}

// Clone returns a deep copy: the caller may write any part of it directly.
// A copy that is only changed through the Mut accessors is Fork's, which
// costs a fraction of this at thousands of LUNs.
func (d *Doc) Clone() *Doc {
	if d == nil {
		return nil
	}
	c := *d
	c.own, c.cow, c.line = nil, false, nil
	c.disksOwn, c.gatewaysOwn, c.targetsOwn = nil, nil, nil
	c.Disks = cloneMap(d.Disks, (*Disk).clone)
	c.Gateways = cloneMap(d.Gateways, (*Gateway).clone)
	c.Targets = cloneMap(d.Targets, (*Target).clone)
	c.DiscoveryAuth = d.DiscoveryAuth.clone()
	c.GatewaysUpgraded = slices.Clone(d.GatewaysUpgraded)
	c.Extra = cloneGeneric(d.Extra)
	return &c
}

func cloneMap[T any](m map[string]T, clone func(T) T) map[string]T {
	if m == nil {
		return nil
	}
	out := make(map[string]T, len(m))
	for k, v := range m {
		out[k] = clone(v)
	}
	return out
}

func cloneGeneric(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return deepCopy(m).(map[string]any)
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func (d *Disk) clone() *Disk {
	if d == nil {
		return nil
	}
	c := *d
	c.own = nil
	c.AllocatingHost = clonePtr(d.AllocatingHost)
	c.Owner = clonePtr(d.Owner)
	c.Controls = cloneGeneric(d.Controls)
	c.Extra = cloneGeneric(d.Extra)
	return &c
}

func (g *Gateway) clone() *Gateway {
	if g == nil {
		return nil
	}
	c := *g
	c.own = nil
	c.Extra = cloneGeneric(g.Extra)
	return &c
}

func (t *Target) clone() *Target {
	if t == nil {
		return nil
	}
	c := t.withOwnFields()
	c.Disks = cloneMap(t.Disks, LunRef.clone)
	c.Clients = cloneMap(t.Clients, (*Client).clone)
	c.Portals = cloneMap(t.Portals, (*Portal).clone)
	c.Groups = cloneMap(t.Groups, (*Group).clone)
	return c
}

func (p *Portal) clone() *Portal {
	if p == nil {
		return nil
	}
	c := *p
	c.own = nil
	c.PortalIPAddresses = slices.Clone(p.PortalIPAddresses)
	c.GatewayIPList = slices.Clone(p.GatewayIPList)
	c.InactivePortalIPs = slices.Clone(p.InactivePortalIPs)
	c.Extra = cloneGeneric(p.Extra)
	return &c
}

func (c *Client) clone() *Client {
	if c == nil {
		return nil
	}
	n := *c
	n.own = nil
	n.Auth = c.Auth.clone()
	n.Luns = cloneMap(c.Luns, LunRef.clone)
	n.Extra = cloneGeneric(c.Extra)
	return &n
}

func (g *Group) clone() *Group {
	if g == nil {
		return nil
	}
	c := *g
	c.own = nil
	c.Members = slices.Clone(g.Members)
	c.Disks = cloneMap(g.Disks, LunRef.clone)
	c.Extra = cloneGeneric(g.Extra)
	return &c
}

func (a Auth) clone() Auth {
	a.Extra = cloneGeneric(a.Extra)
	return a
}

func (l LunRef) clone() LunRef {
	l.Extra = cloneGeneric(l.Extra)
	return l
}
