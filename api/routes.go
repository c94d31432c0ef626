package api

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

type authKind int

const (
	authNone authKind = iota
	authBasic
	authRestricted
)

// route is one upstream URL rule. rule is Flask's spelling, used by GET /api;
// doc is the first line of upstream's docstring ("" when it has none).
type route struct {
	rule    string
	methods []string
	auth    authKind
	doc     string
	handler func(s *server) echo.HandlerFunc
}

const (
	get = http.MethodGet
	put = http.MethodPut
	del = http.MethodDelete
)

// routeTable is the whole API surface: upstream's 36 rules, 57 operations.
// A nil handler answers 501, honestly, until the operation is written.
func routeTable() []route {
	r := authRestricted
	return []route{
		{"/api", []string{get}, authNone, "Display all the available API endpoints", (*server).apiInfo},
		{"/api/sysinfo/<query_type>", []string{get}, authBasic, "Provide system information based on the query_type", (*server).sysinfo},
		{"/api/targets", []string{get}, r, "List targets defined in the configuration.", (*server).targets},
		{"/api/target/<target_iqn>", []string{put, del}, r, "Handle the definition of the iscsi target name", (*server).target},
		{"/api/_target/<target_iqn>", []string{put, del}, r, "", (*server).internalTarget},
		{"/api/config", []string{get}, r, "Return the complete config object to the caller (must be authenticated)", (*server).getConfig},
		{"/api/gateways/<target_iqn>", []string{get}, r, "Return the gateway subsection of the config object to the caller", (*server).gateways},
		{"/api/gateway/<target_iqn>/<gateway_name>", []string{put, del}, r, "Define (PUT) or delete (DELETE) iscsi gateway(s) across node(s), adding", (*server).gateway},
		{"/api/_gateway/<target_iqn>/<gateway_name>", []string{get, put, del}, r, "Manage the local iSCSI gateway definition", (*server).internalGateway},
		{"/api/targetlun/<target_iqn>", []string{put, del}, r, "Coordinate the addition(PUT) and removal(DELETE) of a disk for a target", (*server).targetLun},
		{"/api/_targetlun/<target_iqn>", []string{put, del}, r, "Manage the addition/removal of disks from a target on the local gateway", (*server).internalTargetLun},
		{"/api/disks", []string{get}, r, "Show the rbd disks defined to the gateways", (*server).disks},
		{"/api/disk/<pool>/<image>", []string{get, put, del}, r, "Coordinate the create/delete of rbd images across the gateway nodes", (*server).disk},
		{"/api/_disk/<pool>/<image>", []string{get, put, del}, r, "Manage a disk definition on the local gateway", (*server).internalDisk},
		{"/api/disksnap/<pool>/<image>/<name>", []string{put, del}, r, "Coordinate the management of rbd image snapshots across the gateway", (*server).diskSnap},
		{"/api/discoveryauth", []string{put}, r, "Coordinate discovery authentication changes across each gateway node", (*server).discoveryAuth},
		{"/api/_discoveryauth/", []string{put}, r, "Manage discovery authentication credentials on the local gateway", (*server).internalDiscoveryAuth},
		{"/api/targetauth/<target_iqn>", []string{put}, r, "Coordinate the gen-acls or CHAP/MUTUAL_CHAP across each gateway node", (*server).targetAuth},
		{"/api/_targetauth/<target_iqn>", []string{put}, r, "Apply gen-acls or CHAP/MUTUAL_CHAP on the local gateway", (*server).internalTargetAuth},
		{"/api/targetinfo/<target_iqn>", []string{get}, r, "Returns the total number of active sessions for <target_iqn>", (*server).targetInfo},
		{"/api/_targetinfo/<target_iqn>", []string{get}, r, "Returns the number of active sessions for <target_iqn> on local gateway", (*server).internalTargetInfo},
		{"/api/gatewayinfo", []string{get}, r, "Returns the number of active sessions on local gateway", (*server).gatewayInfo},
		{"/api/clients/<target_iqn>", []string{get}, r, "List clients defined to the configuration.", (*server).clients},
		{"/api/clientauth/<target_iqn>/<client_iqn>", []string{put}, r, "Coordinate client authentication changes across each gateway node", (*server).clientAuth},
		{"/api/_clientauth/<target_iqn>/<client_iqn>", []string{put}, r, "Manage client authentication credentials on the local gateway", (*server).internalClientAuth},
		{"/api/clientlun/<target_iqn>/<client_iqn>", []string{put, del}, r, "Coordinate the addition(PUT) and removal(DELETE) of a disk for a client", (*server).clientLun},
		{"/api/_clientlun/<target_iqn>/<client_iqn>", []string{get, put}, r, "Manage the addition/removal of disks from a client on the local gateway", (*server).internalClientLun},
		{"/api/client/<target_iqn>/<client_iqn>", []string{put, del}, r, "Handle the client create/delete actions across gateways", (*server).client},
		{"/api/_client/<target_iqn>/<client_iqn>", []string{get, put, del}, r, "Manage a client definition on the local gateway", (*server).internalClient},
		{"/api/clientinfo/<target_iqn>/<client_iqn>", []string{get}, r, "Returns client alias, ip_address and state for each connected portal", (*server).clientInfo},
		{"/api/_clientinfo/<target_iqn>/<client_iqn>", []string{get}, r, "Returns client alias, ip_address and state for local gateway", (*server).internalClientInfo},
		{"/api/hostgroups/<target_iqn>", []string{get}, r, "Return the hostgroup names defined to the configuration", (*server).hostGroups},
		{"/api/hostgroup/<target_iqn>/<group_name>", []string{get, put, del}, r, "co-ordinate the management of host groups across iSCSI gateway hosts", (*server).hostGroup},
		{"/api/settings", []string{get}, r, "List settings.", (*server).getSettings},
		{"/api/_hostgroup/<target_iqn>/<group_name>", []string{get, put, del}, r, "Manage a hostgroup definition on the local iscsi gateway", (*server).internalHostGroup},
		{"/api/_ping", []string{get}, r, `Simple "is alive" ping responder.`, (*server).ping},
	}
}

// echoPath turns "<name>" segments into echo's ":name".
func echoPath(rule string) string {
	segs := strings.Split(rule, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
			segs[i] = ":" + s[1:len(s)-1]
		}
	}
	return strings.Join(segs, "/")
}

func (s *server) routes(e *echo.Echo) {
	for _, rt := range routeTable() {
		var h echo.HandlerFunc
		if rt.handler != nil {
			h = rt.handler(s)
		} else {
			h = notImplemented
		}
		mw := []echo.MiddlewareFunc{s.serverTiming, s.clientGone}
		switch rt.auth {
		case authBasic:
			mw = append(mw, s.basicAuth)
		case authRestricted:
			mw = append(mw, s.restrictedAuth)
		}
		mw = append(mw, readForm)
		for _, m := range rt.methods {
			e.Add(m, echoPath(rt.rule), h, mw...)
		}
	}
}

// clientGone turns a 5xx into a 400 when the request's context was
// cancelled, i.e. the client closed (or half-closed) its connection and the
// work it asked for failed because of that: the client's doing, not the
// server's. handleError words errors of that kind itself; this catches the
// answers handlers compose from a failure's text (the fan-out's "failed on
// <gw>. ... - context canceled"). The original status is logged.
func (s *server) clientGone(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		res := c.Response()
		res.Before(func() {
			if res.Status >= 500 && errors.Is(c.Request().Context().Err(), context.Canceled) {
				s.Logger.Warn("request failed after the client closed its connection",
					"method", c.Request().Method, "path", c.Request().URL.Path, "status", res.Status)
				res.Status = http.StatusBadRequest
			}
		})
		return next(c)
	}
}

// readForm parses the form of every request once authenticated, so a body
// that cannot be read or parsed gets the same 4xx on every route, whether
// or not its handler looks at the form.
func readForm(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := params(c); err != nil {
			return err
		}
		return next(c)
	}
}

func notImplemented(c echo.Context) error {
	return message(c, http.StatusNotImplemented, "not implemented yet: "+c.Request().Method+" "+c.Request().URL.Path)
}

// apiInfo lists the public rules as upstream's GET /api does: sorted by rule,
// internal ones omitted except /api/_target, which upstream lists because it
// has no docstring.
func (s *server) apiInfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		rules := routeTable()
		sort.Slice(rules, func(i, j int) bool { return rules[i].rule < rules[j].rule })
		links := [][]any{}
		for _, rt := range rules {
			desc := rt.doc
			if desc == "" {
				desc = "Missing description - FIXME!"
			} else if strings.Contains(rt.rule, "/_") {
				continue
			}
			links = append(links, []any{rt.rule + " : " + desc, "Methods: " + strings.Join(rt.methods, ","), []string{}})
		}
		return writeJSON(c, http.StatusOK, map[string]any{"api": links})
	}
}
