package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
)

// Gateway (portal) messages: upstream's text (rbd-target-api.py gateway and
// _gateway, gwcli utils.valid_gateway), ours only where upstream crashed.
const (
	msgGatewayExists       = "Gateway already exists in configuration"
	msgGatewayUnknown      = "Gateway does not exist in configuration"
	msgInternalGWUnknown   = "Gateway doesn't exist in the configuration"
	msgFirstGatewayLocal   = "The first gateway defined must be the local machine"
	msgIPNotUsable         = "IP address provided is not usable (name doesn't resolve, or not a valid IPv4/IPv6 address)"
	msgMalformed           = "Malformed REST API response"
	msgLastGateway         = "Deleting the last gateway will remove all objects on this target. Use confirm=true"
	msgCreateTargetFailure = "Could not create target on gateway"
)

// formGatewayRemoved marks a coordinator's _gateway DELETE: the named
// gateway may already have removed itself from the config (it is called
// first). Python gateways ignore the field.
const formGatewayRemoved = "gateway_removed"

func (s *server) gateways() echo.HandlerFunc {
	return func(c echo.Context) error {
		iqn, err := s.iqnParam(c, "target_iqn")
		if err != nil {
			return err
		}
		doc, _, err := s.targetDoc(c.Request().Context(), iqn)
		if err != nil {
			return err
		}
		portals, _ := docPath(doc, "targets", iqn, "portals")
		if portals == nil {
			portals = map[string]any{}
		}
		return writeJSON(c, http.StatusOK, portals)
	}
}

func (s *server) gateway() echo.HandlerFunc {
	return func(c echo.Context) error {
		iqn, err := s.iqnParam(c, "target_iqn")
		if err != nil {
			return err
		}
		gw := param(c, "gateway_name")
		f, doc, t, err := s.loadTarget(c, iqn)
		if err != nil {
			return err
		}
		if c.Request().Method == http.MethodDelete {
			return s.deleteGateway(c, f, doc, t, iqn, gw)
		}
		// The name becomes the host of peer URLs.
		if err := config.ValidateGatewayName(gw); err != nil && t.Portals[gw] == nil {
			return invalidName("gateway", "gateway_name", gw, err)
		}
		return s.addGateway(c, f, t, iqn, gw)
	}
}

// parseNewIPs reads the ip_address list of a gateway add. Every entry must be
// an IP address (upstream also accepted names that resolve, which then never
// matched a local address); the stored form is the canonical one netifaces
// reports, so what /api/sysinfo/ip_addresses lists is what gets stored.
func parseNewIPs(raw string, t *config.Target) ([]string, error) {
	var out []string
	for _, s := range strings.Split(raw, ",") {
		a, err := netip.ParseAddr(trimBrackets(s))
		if err != nil || a.Zone() != "" {
			return nil, httpErr(http.StatusBadRequest, msgIPNotUsable)
		}
		ip := a.Unmap().String()
		if slices.Contains(out, ip) || slices.ContainsFunc(t.IPList, func(x string) bool { return sameIP(x, ip) }) {
			return nil, httpErr(http.StatusBadRequest, config.GatewayIPInUse)
		}
		out = append(out, ip)
	}
	return out, nil
}

func trimBrackets(s string) string {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

func sameIP(a, b string) bool {
	x, err1 := netip.ParseAddr(trimBrackets(a))
	y, err2 := netip.ParseAddr(trimBrackets(b))
	if err1 != nil || err2 != nil {
		return a == b
	}
	return x.Unmap().WithZone("") == y.Unmap().WithZone("")
}

func isTrue(v string) bool { return strings.EqualFold(v, "true") }

// addGateway is upstream's PUT /api/gateway: validate, then _gateway PUT on
// the new gateway first and the existing portals after, each converging its
// LIO; the joining gateway registers itself, as upstream's define_target does.
func (s *server) addGateway(c echo.Context, f form, t *config.Target, iqn, gw string) error {
	ctx := c.Request().Context()
	if t.Portals[gw] != nil {
		return httpErr(http.StatusBadRequest, msgGatewayExists)
	}
	existing := sortedNames(t.Portals)
	// gwcli's rule, kept here for every client: until the target has a
	// portal only localhost and trusted addresses pass the allowlist, so
	// only this gateway can be the first one (its name is ignored upstream,
	// which registered whichever host received the call).
	if len(existing) == 0 && gw != s.Gateway {
		return httpErr(http.StatusBadRequest, msgFirstGatewayLocal)
	}
	raw, err := required(f, "ip_address")
	if err != nil {
		return err
	}
	ips, err := parseNewIPs(raw, t)
	if err != nil {
		return err
	}
	if isTrue(f.get("skipchecks", "false")) {
		s.Logger.Warn("gateway request received, with validity checks disabled", "target", iqn, "new_gateway", gw)
	} else if msg := s.validGateway(ctx, gw, ips); msg != "" {
		return httpErr(http.StatusBadRequest, "%s", msg)
	}
	nosync := f.get("nosync", "false")
	if len(t.Disks)+len(t.Clients) == 0 {
		nosync = "true"
	}
	list := append(slices.Clone(t.IPList), ips...)

	order := append([]string{gw}, existing...)
	p := plan{
		label: s.Gateway, method: http.MethodPut, endpoint: "_gateway", element: pathSegments(iqn, gw),
		vars:      map[string]string{"gateway_ip_list": strings.Join(list, ","), "nosync": nosync},
		localFail: msgCreateTargetFailure,
	}
	p.before, p.after = splitAt(order, s.Gateway)
	if gw == s.Gateway {
		p.commit = func(ctx context.Context) (*config.Doc, error) {
			return s.joinTarget(ctx, iqn, list, isTrue(nosync))
		}
	} else {
		// The new gateway registered itself before this step; registering
		// it again is a no-op, unless it is a gateway that answered 200
		// without doing so.
		p.commit = func(ctx context.Context) (*config.Doc, error) {
			return s.commit(ctx, func(d *config.Doc) error {
				changed, err := d.AddTargetGateway(iqn, gw, list, ips, s.now())
				if err == nil && !changed {
					return errNoChange
				}
				return err
			})
		}
	}
	text, status, err := s.coordinate(ctx, p)
	if err != nil {
		return err
	}
	return message(c, status, "Gateway creation "+text)
}

// splitAt puts the local step where this gateway is in order (last when it
// is not in it).
func splitAt(order []string, local string) (before, after []string) {
	i := slices.Index(order, local)
	if i < 0 {
		return order, nil
	}
	return order[:i], order[i+1:]
}

// validGateway is upstream's valid_gateway beyond the checks that need no
// network: the name resolves, and the new gateway's /api/sysinfo says the
// IPs are its own, its settings hash equals ours and its OS is supported.
// It returns "" when the gateway is usable, else upstream's message.
func (s *server) validGateway(ctx context.Context, gw string, ips []string) string {
	if _, err := netip.ParseAddr(trimBrackets(gw)); err != nil {
		addrs, err := s.LookupHost(ctx, gw)
		if err != nil || len(addrs) == 0 {
			return fmt.Sprintf("Gateway '%s' is not resolvable to an IP address", gw)
		}
	}
	status, body := s.sysinfoOf(ctx, gw, "ip_addresses")
	if status != http.StatusOK {
		return fmt.Sprintf("ip_addresses query to %s failed - check rbd-target-api log. Is the API server running and in the right mode (http/https)?", gw)
	}
	var ipr struct {
		Data []string `json:"data"`
	}
	if json.Unmarshal(body, &ipr) != nil || ipr.Data == nil {
		return msgMalformed
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(ipr.Data, func(x string) bool { return sameIP(x, ip) }) {
			return fmt.Sprintf("IP address of %s is not available on %s. Valid IPs are :%s", ip, gw, strings.Join(ipr.Data, ","))
		}
	}
	status, body = s.sysinfoOf(ctx, gw, "checkconf")
	if status != http.StatusOK {
		return fmt.Sprintf("checkconf API call to %s failed with code %d", gw, status)
	}
	var conf struct {
		Data any `json:"data"`
	}
	if json.Unmarshal(body, &conf) != nil || fmt.Sprint(conf.Data) != s.Settings.Hash() {
		return fmt.Sprintf("/etc/ceph/iscsi-gateway.cfg on %s does not match the local version. Correct and retry request", gw)
	}
	status, body = s.sysinfoOf(ctx, gw, "checkversions")
	if status != http.StatusOK {
		var vr struct {
			Data []string `json:"data"`
		}
		if json.Unmarshal(body, &vr) != nil || vr.Data == nil {
			return msgMalformed
		}
		return fmt.Sprintf("%s failed package validation checks - %s", gw, strings.Join(vr.Data, ","))
	}
	return ""
}

// sysinfoOf queries a gateway's /api/sysinfo; a gateway that cannot be
// reached answers the synthetic 500 upstream's APIRequest makes up.
func (s *server) sysinfoOf(ctx context.Context, gw, query string) (int, []byte) {
	status, body, err := s.peers.call(ctx, http.MethodGet, gw, "/api/sysinfo/"+pathSegments(query), nil)
	if err != nil {
		s.Logger.Warn("sysinfo query failed", "gateway", gw, "query", query, "err", err)
		return http.StatusInternalServerError, nil
	}
	return status, body
}

// localIPs are the entries of list that are addresses of this host, in list
// order: upstream's active portal IPs. Loopback counts (upstream's netifaces
// listing dropped 127.0.0.1 and ::1); the pre-flight checks still refuse
// them unless skipped.
func (s *server) localIPs(list []string) ([]string, error) {
	addrs, err := s.LocalAddrs()
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	var out []string
	for _, ip := range list {
		a, err := netip.ParseAddr(trimBrackets(ip))
		if err != nil {
			continue
		}
		a = a.Unmap().WithZone("")
		if slices.ContainsFunc(addrs, func(x netip.Addr) bool { return x.Unmap().WithZone("") == a }) && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

// joinTarget is upstream's define_target config bookkeeping for this gateway
// (committed only when something changes, so it is idempotent), returning
// what local LIO must become. With nosync a joining gateway builds only the
// target and its TPGs; its disks and clients come with the next full
// reconcile, as upstream's target_only left them to a daemon restart.
func (s *server) joinTarget(ctx context.Context, iqn string, list []string, nosync bool) (*config.Doc, error) {
	active, err := s.localIPs(list)
	if err != nil {
		return nil, err
	}
	if len(active) == 0 {
		return nil, httpErr(http.StatusBadRequest, "%s: %s", msgCreateTargetFailure, config.GatewayNoLocalIP)
	}
	joining := false
	doc, err := s.commit(ctx, func(d *config.Doc) error {
		t, err := targetOf(d, iqn)
		if err != nil {
			return err
		}
		joining = t.Portals[s.Gateway] == nil
		changed, err := d.AddTargetGateway(iqn, s.Gateway, list, active, s.now())
		if err != nil {
			return err
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if joining && nosync {
		doc = doc.Fork()
		if t := doc.MutTarget(iqn); t != nil {
			t.Disks = map[string]config.LunRef{}
			t.Clients = map[string]*config.Client{}
			t.Groups = map[string]*config.Group{}
		}
	}
	return doc, nil
}

// deleteGateway is upstream's DELETE /api/gateway: the deleted gateway first
// (it removes itself from the config), then the others rebuild their TPGs;
// with force and a gateway other than this one, this gateway edits the config
// and the deleted one is never contacted.
func (s *server) deleteGateway(c echo.Context, f form, doc *config.Doc, t *config.Target, iqn, gw string) error {
	ctx := c.Request().Context()
	if doc.Gateways[gw] == nil {
		return httpErr(http.StatusNotFound, msgGatewayUnknown)
	}
	if t.Portals[gw] == nil {
		// Upstream crashed (list.remove) on a gateway of another target.
		return httpErr(http.StatusNotFound, "Gateway %s is not a portal of target %s", gw, iqn)
	}
	force := isTrue(f.get("force", "false"))
	var remaining []string
	for _, name := range sortedNames(t.Portals) {
		if name != gw && t.Portals[name] != nil {
			remaining = append(remaining, name)
		}
	}
	if !force {
		// gwcli's confirm rule and the Dashboard's portal minimum, enforced
		// here for every client: force=true (gwcli's confirm=true) overrides.
		switch objects := len(t.Disks) + len(t.Clients); {
		case len(remaining) == 0 && objects+len(t.Groups) > 0:
			return httpErr(http.StatusBadRequest, msgLastGateway)
		case len(remaining) > 0 && len(remaining) < s.Settings.MinimumGateways && objects > 0:
			return httpErr(http.StatusBadRequest,
				"Removing %s would leave %d gateway(s) for the disks and clients of %s, fewer than minimum_gateways (%d). Use confirm=true",
				gw, len(remaining), iqn, s.Settings.MinimumGateways)
		}
	}
	remove := func(ctx context.Context) (*config.Doc, error) {
		return s.commit(ctx, s.removeGateway(iqn, gw))
	}
	p := plan{
		label: s.Gateway, method: http.MethodDelete, endpoint: "_gateway", element: pathSegments(iqn, gw),
		vars:      map[string]string{formGatewayRemoved: "true"},
		localFail: "Gateway deletion failed", commit: remove,
	}
	if force && gw != s.Gateway {
		p.after = slices.DeleteFunc(slices.Clone(remaining), func(n string) bool { return n == s.Gateway })
		p.commit = func(ctx context.Context) (*config.Doc, error) {
			doc, err := remove(ctx)
			if err != nil {
				return nil, httpErr(http.StatusBadRequest, "Could not update config: %s.", s.errText(err))
			}
			return doc, nil
		}
	} else {
		p.before, p.after = splitAt(append([]string{gw}, remaining...), s.Gateway)
	}
	text, status, err := s.coordinate(ctx, p)
	if err != nil {
		return err
	}
	return message(c, status, "Gateway deletion "+text)
}

func (s *server) errText(err error) string {
	_, msg := s.classify(err)
	return msg
}

// removeGateway is the idempotent remove_from_config of gw.
func (s *server) removeGateway(iqn, gw string) func(*config.Doc) error {
	return func(d *config.Doc) error {
		changed, err := d.RemoveTargetGateways(iqn, gw, s.now())
		if err == nil && !changed {
			return errNoChange
		}
		return err
	}
}

func (s *server) internalGateway() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		iqn, gw := param(c, "target_iqn"), param(c, "gateway_name")
		f, doc, _, err := s.loadTarget(c, iqn)
		if err != nil {
			return err
		}
		switch c.Request().Method {
		case http.MethodGet:
			return writeDocEntry(c, doc, msgInternalGWUnknown, "targets", iqn, "portals", gw)
		case http.MethodPut:
			raw, err := required(f, "gateway_ip_list")
			if err != nil {
				return err
			}
			var list []string
			for _, ip := range strings.Split(raw, ",") {
				ip = trimBrackets(ip)
				if _, err := netip.ParseAddr(ip); err != nil || slices.Contains(list, ip) {
					return httpErr(http.StatusBadRequest, "%s: invalid gateway_ip_list %q", msgCreateTargetFailure, raw)
				}
				list = append(list, ip)
			}
			doc, err := s.joinTarget(ctx, iqn, list, isTrue(f.get("nosync", "false")))
			if err != nil {
				return internalFailure(err, msgCreateTargetFailure)
			}
			if err := s.reconcile(ctx, doc); err != nil {
				return httpErr(http.StatusInternalServerError, "%s: %v", msgCreateTargetFailure, err)
			}
			return message(c, http.StatusOK, "Gateway defined/mapped")
		}
		// DELETE: the deleted gateway takes itself out of the config (upstream's
		// remove_from_config); the others converge to the config it wrote,
		// where upstream tore the target down and rebuilt it. By then the
		// gateway is gone from the config, so only a coordinator's call
		// (marked) may name one that is not a portal of the target; upstream
		// answered 200 for any name.
		if doc.Targets[iqn].Portals[gw] == nil && !isTrue(f.get(formGatewayRemoved, "false")) {
			return httpErr(http.StatusNotFound, msgInternalGWUnknown)
		}
		if gw == s.Gateway {
			doc, err = s.commit(ctx, s.removeGateway(iqn, gw))
			if err != nil {
				return httpErr(http.StatusBadRequest, "Gateway deletion failed: %s.", s.errText(err))
			}
		}
		if err := s.reconcile(ctx, doc); err != nil {
			// Upstream's status for any failure of this step.
			return httpErr(http.StatusBadRequest, "Gateway deletion failed: %v.", err)
		}
		return message(c, http.StatusOK, "Gateway deleted.")
	}
}
