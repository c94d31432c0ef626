package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Gateway (portal) messages, upstream's text where upstream has one.
const (
	GatewayNoLocalIP = "gateway IP addresses provided do not match any ip on this host"
	GatewayIPInUse   = "IP address already defined to the configuration"
)

// AddTargetGateway registers gateway gw as a portal of target iqn the way
// upstream's define_target bookkeeping (GWTarget.manage("target")) does on the
// gateway that joins: ip_list is set if absent; gateways[gw] is seeded with
// active_luns 0; if gw is not a portal yet, every other portal whose
// gateway_ip_list differs gets the new list, its TPG count and its inactive
// IPs, gw gets a portal whose portal_ip_addresses are activeIPs, and ip_list
// becomes gatewayIPList. gatewayIPList is the target's ip_list followed by
// gw's new IPs (TPG order on every gateway); activeIPs are the entries of it
// that are gw's own. It reports whether the document changed, so a repeated
// request commits nothing.
//
// Unlike upstream, which crashed with a ValueError, a list that lacks the
// portal IPs of an existing portal (a stale list from a racing coordinator)
// and an IP already owned by another portal are refused, since either would
// break TPG numbering on every gateway.
func (d *Doc) AddTargetGateway(iqn, gw string, gatewayIPList, activeIPs []string, now time.Time) (bool, error) {
	t, err := d.target(iqn)
	if err != nil {
		return false, err
	}
	if gw == "" {
		return false, fmt.Errorf("config: add gateway to %q: empty gateway name", iqn)
	}
	if len(activeIPs) == 0 {
		return false, &Rejection{Msg: GatewayNoLocalIP, Kind: ErrConflict}
	}
	for _, ip := range activeIPs {
		if !slices.Contains(gatewayIPList, ip) {
			return false, fmt.Errorf("config: add gateway %q to %q: active IP %s is not in the gateway IP list", gw, iqn, ip)
		}
	}
	if hasDuplicates(gatewayIPList) {
		return false, &Rejection{Msg: GatewayIPInUse, Kind: ErrConflict}
	}
	joining := t.Portals[gw] == nil
	if joining {
		// Check everything before changing anything: a refusal must leave
		// the document as it was.
		for _, other := range sortedKeys(t.Portals) {
			p := t.Portals[other]
			if p == nil || other == gw {
				continue
			}
			for _, ip := range p.PortalIPAddresses {
				if slices.Contains(activeIPs, ip) {
					return false, &Rejection{Msg: GatewayIPInUse, Kind: ErrConflict}
				}
				if !slices.Contains(gatewayIPList, ip) {
					return false, &Rejection{
						Msg:  fmt.Sprintf("gateway IP list %s lacks portal IP %s of %s", joinComma(gatewayIPList), ip, other),
						Kind: ErrConflict,
					}
				}
			}
		}
	}

	changed, gatewayAdded := false, false
	if t.IPList == nil {
		t = d.MutTarget(iqn)
		t.IPList = slices.Clone(gatewayIPList)
		changed = true
	}
	if d.Gateways[gw] == nil {
		stamp := Timestamp(now)
		d.PutGateway(gw, &Gateway{ActiveLuns: 0, Created: stamp, Updated: stamp})
		gatewayAdded = true
	}
	if joining {
		t = d.MutTarget(iqn)
		if t.Portals == nil {
			t.Portals = map[string]*Portal{}
		}
		for _, other := range sortedKeys(t.Portals) {
			p := t.Portals[other]
			if p == nil || slices.Equal(p.GatewayIPList, gatewayIPList) {
				continue
			}
			p = d.MutPortal(iqn, other)
			p.GatewayIPList = slices.Clone(gatewayIPList)
			p.TPGs = len(gatewayIPList)
			p.InactivePortalIPs = without(gatewayIPList, p.PortalIPAddresses)
		}
		t.Portals[gw] = &Portal{
			PortalIPAddresses: slices.Clone(activeIPs),
			GatewayIPList:     slices.Clone(gatewayIPList),
			InactivePortalIPs: without(gatewayIPList, activeIPs),
			TPGs:              len(gatewayIPList),
			own:               d.mark(),
		}
		t.IPList = slices.Clone(gatewayIPList)
		changed = true
	}
	if changed {
		t.stamp(now)
	}
	return changed || gatewayAdded, nil
}

// RemoveTargetGateways is upstream's remove_from_config (the gateway being
// deleted, or the coordinator of a forced delete, runs it): gw's portal
// leaves target iqn, its portal IPs leave ip_list and every other portal's
// gateway_ip_list and inactive_portal_ips, and the other portals' TPG count
// follows. A target left without portals loses its disks, clients, controls
// and groups, since nothing can export them. gw is forgotten once no target
// lists it, and disks it owned get a new owner (ReassignOwners). It reports
// whether the document changed.
//
// Upstream decremented tpgs by one whatever the number of IPs removed; here
// it is the length of the new gateway_ip_list, which is the same for the
// usual one IP per gateway and right for several.
func (d *Doc) RemoveTargetGateways(iqn, gw string, now time.Time) (bool, error) {
	changed := false
	if t := d.Targets[iqn]; t != nil {
		if p := t.Portals[gw]; p != nil {
			t = d.MutTarget(iqn)
			delete(t.Portals, gw)
			t.IPList = without(t.IPList, p.PortalIPAddresses)
			if t.IPList == nil {
				t.IPList = []string{}
			}
			for _, other := range sortedKeys(t.Portals) {
				op := d.MutPortal(iqn, other)
				if op == nil {
					continue
				}
				op.GatewayIPList = nonNil(without(op.GatewayIPList, p.PortalIPAddresses))
				op.InactivePortalIPs = nonNil(without(op.InactivePortalIPs, p.PortalIPAddresses))
				op.TPGs = len(op.GatewayIPList)
			}
			if len(t.Portals) == 0 {
				t.Disks = map[string]LunRef{}
				t.Clients = map[string]*Client{}
				t.Controls = map[string]any{}
				t.Groups = map[string]*Group{}
			}
			t.stamp(now)
			changed = true
		}
	}
	if _, ok := d.Gateways[gw]; ok && !d.gatewayInUse(gw) {
		d.dropGateway(gw)
		changed = true
	}
	if d.ReassignOwners(now) {
		changed = true
	}
	return changed, nil
}

func (d *Doc) gatewayInUse(gw string) bool {
	for _, t := range d.Targets {
		if t != nil && t.Portals[gw] != nil {
			return true
		}
	}
	return false
}

// ReassignOwners is upstream's LUN.reassign_owners: a disk whose owner is no
// longer a gateway moves to the portal with the fewest active LUNs (ties by
// name) of the first target (by IQN) that exports it, whose active_luns
// grows by one; a disk no target exports, or with no gateway left at all,
// loses its owner. Portals missing from gateways are skipped where upstream
// crashed with a KeyError.
func (d *Doc) ReassignOwners(now time.Time) bool {
	changed := false
	for _, id := range sortedKeys(d.Disks) {
		disk := d.Disks[id]
		if disk == nil || disk.Owner == nil {
			continue
		}
		if d.Gateways[*disk.Owner] != nil {
			continue
		}
		var candidates []string
		if len(d.Gateways) > 0 {
			for _, iqn := range sortedKeys(d.Targets) {
				t := d.Targets[iqn]
				if t == nil {
					continue
				}
				if _, ok := t.Disks[id]; !ok {
					continue
				}
				for _, gw := range sortedKeys(t.Portals) {
					if d.Gateways[gw] != nil {
						candidates = append(candidates, gw)
					}
				}
				break
			}
		}
		disk = d.MutDisk(id)
		if len(candidates) == 0 {
			disk.Owner = nil
		} else {
			sort.SliceStable(candidates, func(i, j int) bool {
				return d.Gateways[candidates[i]].ActiveLuns < d.Gateways[candidates[j]].ActiveLuns
			})
			owner := candidates[0]
			disk.Owner = &owner
			g := d.MutGateway(owner)
			g.ActiveLuns++
			g.Updated = Timestamp(now)
		}
		disk.Updated = Timestamp(now)
		changed = true
	}
	return changed
}

// without returns list minus the first occurrence of each of drop, in list
// order (Python's list.remove, one call per dropped value).
func without(list, drop []string) []string {
	out := slices.Clone(list)
	for _, v := range drop {
		if i := slices.Index(out, v); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
	}
	if out == nil && list != nil {
		out = []string{}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func joinComma(s []string) string { return strings.Join(s, ",") }
