package shell

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// The commands of a target's gateways and of each gateway (upstream's gateway.py
// GatewayGroup and Gateway).

func init() {
	register(&Command{Kind: KindGateways, Name: "create",
		Params: []Param{{Name: "gateway_name", Required: true, Complete: completeGatewayNames},
			{Name: "ip_addresses", Required: true}, {Name: "nosync", Default: "False", Complete: fixed("true", "false")},
			{Name: "skipchecks", Default: "false", Complete: fixed("true", "false")}},
		Summary: "Define a gateway to the gateway group for this iscsi target.",
		Help: `Define a gateway to the gateway group for this iscsi target. The
first host added should be the gateway running the command

gateway_name ... should resolve to the hostname of the gateway
ip_addresses ... are the IPv4/IPv6 addresses of the interfaces the
                 iSCSI portals should use
nosync ......... by default new gateways are sync'd with the
                 existing configuration by cli. By specifying nosync
                 the sync step is bypassed - so the new gateway
                 will need to have it's rbd-target-api daemon
                 restarted to apply the current configuration
                 (default = False)
skipchecks ..... set this to true to force gateway validity checks
                 to be bypassed(default = false). This is a developer
                 option ONLY. Skipping these checks has the potential
                 to result in an unstable configuration.`,
		Run: runGatewayCreate})
	register(&Command{Kind: KindGateways, Name: "delete",
		Params:  []Param{{Name: "gateway_name", Required: true, Complete: completePortals}, {Name: "confirm", Complete: fixed("true")}},
		Summary: "Delete a gateway from the group.",
		Help: `Delete a gateway from the group. This will stop and delete the target
running on the gateway.

If this is the last gateway the target is mapped to all objects added
to it will be removed, and confirm=True is required.`,
		Run: runGatewayDelete})
	register(&Command{Kind: KindGateways, Name: "info", Summary: "List configured gateways.",
		Help: "List configured gateways.",
		Run: func(ctx context.Context, e *Env, n *Node, _ Args) error {
			_, t, err := snapTarget(ctx, e, n.Target)
			if err != nil {
				return err
			}
			if e.JSON {
				return writeJSON(e.Out, sortedKeys(t.Portals))
			}
			for _, gw := range sortedKeys(t.Portals) {
				printInfo(e.Out, gw)
			}
			return nil
		}})
	register(&Command{Kind: KindGateways, Name: "refresh", Summary: "Check the up/down state of each gateway.",
		Help: `refresh allows you to refresh the connection status of each of the
configured gateways (i.e. check the up/down state).`,
		Run: func(ctx context.Context, e *Env, n *Node, _ Args) error {
			_, t, err := snapTarget(ctx, e, n.Target)
			if err != nil {
				return err
			}
			if len(t.Portals) == 0 {
				return refuse("No gateways to refresh")
			}
			e.Refresh()
			return nil
		}})

	register(&Command{Kind: KindGateway, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.", Run: runGatewayInfo})
	register(&Command{Kind: KindGateway, Name: "refresh", Summary: "Check the gateway's API and iSCSI state.",
		Help: `The refresh command will initiate a check against the gateway node,
checking that the API is available, and that the iscsi port is
listening`,
		Run: func(_ context.Context, e *Env, _ *Node, _ Args) error {
			e.Refresh()
			return nil
		}})
}

func runGatewayCreate(ctx context.Context, e *Env, n *Node, a Args) error {
	name := a.Get("gateway_name")
	var ips []string
	for _, ip := range strings.Split(a.Get("ip_addresses"), ",") {
		ips = append(ips, normalizeIP(ip))
	}
	_, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	if name != e.LocalName && len(t.Portals) == 0 {
		return refuse("The first gateway defined must be the local machine")
	}
	skip := a.Get("skipchecks")
	if skip != "true" && skip != "false" {
		return refuse("skipchecks must be either true or false")
	}
	// Python's truthiness: any nosync the user typed, even "false", skips the sync text.
	syncText := fmt.Sprintf("sync'ing %d disk(s) and %d client(s)", len(t.Disks), len(t.Clients))
	if a.Given["nosync"] && a.Get("nosync") != "" {
		syncText = "sync skipped"
	}
	if skip == "true" {
		say(e, "OS version/package checks have been bypassed")
	}
	var host struct {
		Data string `json:"data"`
	}
	if err := e.API.Do(ctx, "GET", e.API.URL(name, "sysinfo", "hostname"), nil, &host); err != nil {
		return withMsg(err, "Get gateway hostname failed : %s\nPlease check api_host setting and make sure host %s IP is listening on port %d",
			apiMessage(err), name, e.API.Port)
	}
	say(e, "Adding gateway, %s", syncText)
	form := url.Values{"nosync": {a.Get("nosync")}, "skipchecks": {skip}, "ip_address": {strings.Join(ips, ",")}}
	if err := put(ctx, e, local(e, "gateway", n.Target, name), form); err != nil {
		return fail("Failed : ", err)
	}
	e.Refresh()
	// The new gateway's view is current (the others may lag until they see the change).
	var raw []byte
	if err := e.API.Do(ctx, "GET", e.API.URL(name, "config"), nil, &raw); err != nil {
		return fail(fmt.Sprintf("Unable to refresh local config over API - sync aborted, restart rbd-target-api on %s to sync: ", name), err)
	}
	return ok(e)
}

func runGatewayDelete(ctx context.Context, e *Env, n *Node, a Args) error {
	name := a.Get("gateway_name")
	confirm, err := evalBool(a, "confirm", false)
	if err != nil {
		return err
	}
	say(e, "Deleting gateway, %s", name)
	_, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	switch len(t.Portals) {
	case 0:
		return refuse("Target is not mapped to any gateways.")
	case 1:
		if !confirm {
			return refuse("Deleting the last gateway will remove all objects on this target. Use confirm=true")
		}
	}
	force := "false"
	if confirm {
		force = "true"
	}
	if err := del(ctx, e, local(e, "gateway", n.Target, name), url.Values{"force": {force}}); err != nil {
		if strings.Contains(apiMessage(err), "unavailable:"+name) {
			return withMsg(err, "Could not contact %s. If the gateway is permanently down. Use confirm=true to "+
				"force removal. WARNING: Forcing removal of a gateway that can still be reached by an "+
				"initiator may result in data corruption.", name)
		}
		return fail("Failed : ", err)
	}
	e.Refresh()
	return nil
}

// serviceState is upstream's _ping lookup: the iscsi and api words of a gateway state.
func serviceState(st GatewayState) (iscsi, api string) {
	switch st {
	case GatewayUp:
		return "UP", "UP"
	case GatewayPartial:
		return "DOWN", "UP"
	case GatewayUnauthorized, GatewayForbidden:
		return "UNKNOWN", "UP"
	case GatewayDown:
		return "DOWN", "DOWN"
	}
	return "UNKNOWN", "UNKNOWN"
}

func runGatewayInfo(ctx context.Context, e *Env, n *Node, _ Args) error {
	s, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	p := t.Portals[n.Gateway]
	if p == nil {
		return fmt.Errorf("gateway %s is not a portal of %s", n.Gateway, n.Target)
	}
	st, known := s.Gateways[n.Gateway]
	if !known {
		st = GatewayDown
	}
	iscsi, api := serviceState(st)
	return showInfo(e, []infoField{
		{"name", n.Gateway}, {"gateway_ip_list", p.GatewayIPList}, {"portal_ip_addresses", p.PortalIPAddresses},
		{"inactive_portal_ips", p.InactivePortalIPs}, {"tpgs", p.TPGs},
		{"service_state", infoDict{"iscsi": iscsi, "api": api}},
	})
}
