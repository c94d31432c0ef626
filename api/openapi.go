package api

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// OpenAPIPath is where the OpenAPI 3 description of routeTable is served.
// It is not an upstream route, so it stays out of routeTable and GET /api
// lists exactly upstream's rules.
const OpenAPIPath = "/api/openapi.json"

// field is one request parameter of an operation: a form field of the body
// for PUT, a query parameter for GET and DELETE (the server reads both
// places for every method, as upstream's clients use both).
type field struct {
	name, desc string
	required   bool
	enum       []string
}

// opDesc documents one method of one rule.
type opDesc struct {
	summary string
	fields  []field
	// data describes a 200 body that is not {"message": ...}.
	data string
}

func opt(name, desc string, enum ...string) field {
	return field{name: name, desc: desc, enum: enum}
}

func req(name, desc string, enum ...string) field {
	return field{name: name, desc: desc, required: true, enum: enum}
}

var boolValues = []string{"true", "false"}

func chapFields(required bool) []field {
	mk := opt
	if required {
		mk = req
	}
	return []field{
		mk("username", "CHAP user name, 8-64 characters of letters, digits and . : @ _ - (empty: no CHAP)"),
		mk("password", "CHAP password, 12-16 characters of letters, digits and @ - _ /"),
		mk("mutual_username", "mutual CHAP user name (same rules as username)"),
		mk("mutual_password", "mutual CHAP password (same rules as password)"),
	}
}

// pathParamDescs documents every <name> segment of routeTable.
var pathParamDescs = map[string]string{
	"query_type":   "what to report: ip_addresses, hostname, checkconf or checkversions",
	"target_iqn":   "iSCSI qualified name of the target (public routes lower-case it): iqn.yyyy-mm.<reversed domain>[:<suffix>], at most 223 bytes of a-z, 0-9, '-', '.', ':' and lower-case Unicode letters (RFC 3720/3722); escape it as one path segment",
	"gateway_name": "gateway name: the host's FQDN (RFC 1123 host name or IP address), the key in the config's gateways and portals",
	"pool":         "Ceph pool of the RBD image",
	"image":        "RBD image name",
	"name":         "snapshot name (no '/', '@' or control characters)",
	"client_iqn":   "iSCSI qualified name of the initiator, same rules as target_iqn",
	"group_name":   "host group name: 1-255 bytes, no '/', spaces or control characters",
}

// opDescs documents every operation of routeTable, keyed "METHOD rule".
func opDescs() map[string]opDesc {
	committing := req("committing_host", "the gateway that writes the config change (the coordinator)")
	images := opt("image_list", "comma-separated disk ids (pool/image) the client maps; empty for none")
	return map[string]opDesc{
		"GET /api":                      {summary: "List the API's rules and methods", data: `{"api": [[rule and description, methods, details], ...]}`},
		"GET /api/sysinfo/<query_type>": {summary: "Report a fact about this host for a joining gateway's checks", data: `{"data": value}`},
		"GET /api/targets":              {summary: "List the target IQNs", data: `{"targets": [iqn, ...]}`},
		"PUT /api/target/<target_iqn>": {summary: "Create a target, or reconfigure its controls on every portal gateway", fields: []field{
			opt("mode", "absent to create; reconfigure to change controls", "reconfigure"),
			opt("controls", `JSON object of target settings, e.g. {"cmdsn_depth": 64}; null or "" resets a key`),
		}},
		"DELETE /api/target/<target_iqn>":  {summary: "Delete a target from every portal gateway"},
		"PUT /api/_target/<target_iqn>":    {summary: "Apply new target controls on this gateway", fields: []field{req("mode", "must be reconfigure", "reconfigure"), opt("controls", "JSON object of target settings")}},
		"DELETE /api/_target/<target_iqn>": {summary: "Remove this gateway's part of a target"},
		"GET /api/config": {summary: "Return the whole gateway.conf document", data: "the config document", fields: []field{
			opt("decrypt_passwords", "return CHAP passwords in clear text (case-insensitive)", "true", "false"),
		}},
		"GET /api/gateways/<target_iqn>": {summary: "Return a target's portals (gateways)", data: `{gateway_name: portal, ...}`},
		"PUT /api/gateway/<target_iqn>/<gateway_name>": {summary: "Add a gateway (portal) to a target; every portal gateway converges", fields: []field{
			req("ip_address", "comma-separated portal IP addresses of the new gateway"),
			opt("nosync", "true: the new gateway builds only the target and its TPGs, its LUNs and ACLs come later", boolValues...),
			opt("skipchecks", "true: skip the checks against the new gateway's /api/sysinfo", boolValues...),
		}},
		"DELETE /api/gateway/<target_iqn>/<gateway_name>": {summary: "Remove a gateway from a target; the others converge", fields: []field{
			opt("force", "true: edit the config without contacting the deleted gateway (when it is down), and allow removing the last gateway or going below minimum_gateways", boolValues...),
		}},
		"GET /api/_gateway/<target_iqn>/<gateway_name>": {summary: "Return one portal entry", data: "the portal entry"},
		"PUT /api/_gateway/<target_iqn>/<gateway_name>": {summary: "Build the target on this gateway and register its portal", fields: []field{
			req("gateway_ip_list", "comma-separated portal IPs of every gateway of the target, in TPG order"),
			opt("nosync", "true: build only the target and its TPGs when joining", "true", "false", "True", "False"),
		}},
		"DELETE /api/_gateway/<target_iqn>/<gateway_name>": {summary: "Leave the target (when gateway_name is this gateway), else converge to the target without it"},
		"PUT /api/targetlun/<target_iqn>": {summary: "Export a disk through a target on every portal gateway", fields: []field{
			req("disk", "disk id pool/image"), opt("lun_id", "LUN number (lowest free when absent)"),
		}},
		"DELETE /api/targetlun/<target_iqn>": {summary: "Stop exporting a disk through a target", fields: []field{req("disk", "disk id pool/image")}},
		"PUT /api/_targetlun/<target_iqn>": {summary: "Map a disk into the target's TPGs on this gateway", fields: []field{
			req("disk", "disk id pool/image"), opt("owner", "gateway with the active/optimised path"),
			opt("allocating_host", "gateway that commits the change"), opt("lun_id", "LUN number"),
		}},
		"DELETE /api/_targetlun/<target_iqn>": {summary: "Unmap a disk from the target on this gateway", fields: []field{
			req("disk", "disk id pool/image"), opt("purge_host", "gateway that commits the removal"),
		}},
		"GET /api/disks": {summary: "List the disks", data: `{"disks": [id, ...]} or, with config=yes, {"disks": {id: entry}}`, fields: []field{
			opt("config", "yes: return the full disk entries", "yes"),
			opt("status", "yes, with config=yes: add each disk's status as GET /api/disk/<pool>/<image> gives it (ours; upstream ignores it)", "yes"),
		}},
		"GET /api/disk/<pool>/<image>": {summary: "Return a disk's entry and its status", data: `the disk entry with "status": {"state": "Online"|"Degraded - ...", "lock_owner": gw, "gateways": {gw: {counter: n}}} from tcmu-runner's reports in the mgr's service map, or {"state": "Unknown"} when there are none`},
		"PUT /api/disk/<pool>/<image>": {summary: "Create, resize or reconfigure a disk", fields: []field{
			req("mode", "what to do", "create", "resize", "reconfigure"),
			opt("size", "size with unit M, G or T, e.g. 10G"), opt("count", "number of images to create (1-10)"),
			opt("controls", "JSON object of disk (tcmu) settings"), opt("backstore", "backstore (create only)", "user:rbd"),
			opt("wwn", "unit serial (create only)"), opt("create_image", "false: register an existing image", boolValues...),
			opt("pool", "ignored (gwcli sends it)"), opt("owner", "ignored (gwcli sends it)"),
		}},
		"DELETE /api/disk/<pool>/<image>": {summary: "Delete a disk on every gateway", fields: []field{
			opt("preserve_image", "true: keep the RBD image", "true"),
		}},
		"GET /api/_disk/<pool>/<image>": {summary: "Return a disk's entry", data: "the disk entry"},
		"PUT /api/_disk/<pool>/<image>": {summary: "Create, resize, deactivate or activate a disk on this gateway", fields: []field{
			req("mode", "what to do", "create", "resize", "deactivate", "activate"),
			opt("pool", "pool (create, resize)"), opt("image", "image base name"), opt("size", "size with unit"),
			opt("owner", "allocating gateway (create, resize)"), opt("backstore", "backstore (create)"),
			opt("wwn", "unit serial"), opt("controls", "JSON object of disk settings (create, activate)"),
		}},
		"DELETE /api/_disk/<pool>/<image>": {summary: "Remove a disk from this gateway", fields: []field{
			opt("purge_host", "gateway that deletes the image and commits"), opt("preserve_image", "true: keep the RBD image", "true"),
			opt("backstore", "backstore of the disk"),
		}},
		"PUT /api/disksnap/<pool>/<image>/<name>": {summary: "Create a snapshot, or roll the disk back to it", fields: []field{
			req("mode", "what to do", "create", "rollback"),
		}},
		"DELETE /api/disksnap/<pool>/<image>/<name>": {summary: "Delete a snapshot"},
		"PUT /api/discoveryauth":                     {summary: "Set discovery CHAP on every gateway", fields: chapFields(false)},
		"PUT /api/_discoveryauth/":                   {summary: "Apply discovery CHAP on this gateway", fields: chapFields(false)},
		"PUT /api/targetauth/<target_iqn>": {summary: "Switch ACL mode or set target CHAP on every portal gateway", fields: append([]field{
			opt("action", "switch initiator ACLs on or off instead of setting CHAP", "enable_acl", "disable_acl"),
		}, chapFields(false)...)},
		"PUT /api/_targetauth/<target_iqn>": {summary: "Apply ACL mode or target CHAP on this gateway", fields: append([]field{
			committing, opt("action", "ACL switch", "enable_acl", "disable_acl"),
		}, chapFields(true)...)},
		"GET /api/targetinfo/<target_iqn>":  {summary: "Count a target's sessions on every portal gateway", data: `{"num_sessions": n}`},
		"GET /api/_targetinfo/<target_iqn>": {summary: "Count a target's sessions on this gateway", data: `{"num_sessions": n}`},
		"GET /api/gatewayinfo": {summary: "Count the sessions on this gateway; \"reconcile\" (not upstream) says what its LIO could not take",
			data: `{"num_sessions": n, "reconcile": {"epoch": n, "converged": bool, "errors": [{"object": "...", "error": "..."}]}}`},
		"GET /api/clients/<target_iqn>":                 {summary: "List a target's clients", data: `{"clients": [iqn, ...]}`},
		"PUT /api/clientauth/<target_iqn>/<client_iqn>": {summary: "Set a client's CHAP on every portal gateway", fields: chapFields(false)},
		"PUT /api/_clientauth/<target_iqn>/<client_iqn>": {summary: "Apply a client's CHAP and LUNs on this gateway", fields: append([]field{
			committing, req(images.name, images.desc),
		}, chapFields(false)...)},
		"PUT /api/clientlun/<target_iqn>/<client_iqn>":    {summary: "Map a disk to a client on every portal gateway", fields: []field{req("disk", "disk id pool/image")}},
		"DELETE /api/clientlun/<target_iqn>/<client_iqn>": {summary: "Unmap a disk from a client on every portal gateway", fields: []field{req("disk", "disk id pool/image")}},
		"GET /api/_clientlun/<target_iqn>/<client_iqn>":   {summary: "Return a client's LUN map", data: `{"message": {disk: {"lun_id": n}, ...}}`},
		"PUT /api/_clientlun/<target_iqn>/<client_iqn>": {summary: "Apply a client's LUNs and CHAP on this gateway", fields: append([]field{
			committing, req(images.name, images.desc),
		}, chapFields(false)...)},
		"PUT /api/client/<target_iqn>/<client_iqn>":    {summary: "Create a client (initiator ACL) on every portal gateway"},
		"DELETE /api/client/<target_iqn>/<client_iqn>": {summary: "Delete a client on every portal gateway"},
		"GET /api/_client/<target_iqn>/<client_iqn>":   {summary: "Return a client's entry", data: "the client entry"},
		"PUT /api/_client/<target_iqn>/<client_iqn>": {summary: "Create or update a client on this gateway", fields: append([]field{
			committing, images,
		}, chapFields(false)...)},
		"DELETE /api/_client/<target_iqn>/<client_iqn>":  {summary: "Delete a client on this gateway", fields: []field{committing}},
		"GET /api/clientinfo/<target_iqn>/<client_iqn>":  {summary: "Report a client's sessions on every portal gateway", data: `{"alias": s, "ip_address": [ip, ...], "state": {STATE: [gateway, ...]}}`},
		"GET /api/_clientinfo/<target_iqn>/<client_iqn>": {summary: "Report a client's session on this gateway", data: `{"alias": s, "ip_address": [ip, ...], "state": s}`},
		"GET /api/hostgroups/<target_iqn>":               {summary: "List a target's host groups", data: `{"groups": [name, ...]}`},
		"GET /api/hostgroup/<target_iqn>/<group_name>":   {summary: "Return a host group", data: `{"disks": {...}, "members": [iqn, ...]}`, fields: []field{opt("action", "must be add or remove when given", "add", "remove")}},
		"PUT /api/hostgroup/<target_iqn>/<group_name>": {summary: "Create a host group or add/remove members and disks on every portal gateway", fields: []field{
			opt("action", "add (default) or remove the listed members and disks", "add", "remove"),
			opt("members", "comma-separated initiator IQNs"), opt("disks", "comma-separated disk ids"),
		}},
		"DELETE /api/hostgroup/<target_iqn>/<group_name>": {summary: "Delete a host group (members keep their LUNs)", fields: []field{opt("action", "must be add or remove when given", "add", "remove")}},
		"GET /api/settings":                             {summary: "Report defaults and limits of the controls", data: "settings object"},
		"GET /api/_hostgroup/<target_iqn>/<group_name>": {summary: "Return a host group", data: `{"disks": {...}, "members": [iqn, ...]}`},
		"PUT /api/_hostgroup/<target_iqn>/<group_name>": {summary: "Make a host group hold exactly these members and disks", fields: []field{
			opt("members", "comma-separated initiator IQNs (the final list)"), opt("disks", "comma-separated disk ids (the final list)"),
		}},
		"DELETE /api/_hostgroup/<target_iqn>/<group_name>": {summary: "Delete a host group on this gateway"},
		"GET /api/_ping": {summary: "Liveness: 200, or 503 when this gateway's iSCSI port is down"},
	}
}

var pathParamRE = regexp.MustCompile(`<([^<>/]+)>`)

// openAPIPathOf turns Flask's "<name>" segments into OpenAPI's "{name}".
func openAPIPathOf(rule string) string { return pathParamRE.ReplaceAllString(rule, "{$1}") }

func pathParams(rule string) []string {
	var out []string
	for _, m := range pathParamRE.FindAllStringSubmatch(rule, -1) {
		out = append(out, m[1])
	}
	return out
}

func operationID(method, rule string) string {
	id := strings.ToLower(method) + strings.NewReplacer("/", "_", "<", "", ">", "").Replace(rule)
	return strings.TrimRight(id, "_")
}

func messageResponse(desc string) map[string]any {
	return map[string]any{
		"description": desc,
		"content": map[string]any{"application/json": map[string]any{
			"schema": map[string]any{"$ref": "#/components/schemas/Message"},
		}},
	}
}

func fieldSchema(f field) map[string]any {
	s := map[string]any{"type": "string"}
	if len(f.enum) > 0 {
		s["enum"] = f.enum
	}
	return s
}

// buildOpenAPI generates the OpenAPI 3.0.3 document of routeTable from the
// descriptions above; it fails on an operation or path parameter without
// one, so the document can neither miss nor invent a route.
func buildOpenAPI() (map[string]any, error) {
	descs := opDescs()
	used := map[string]bool{}
	paths := map[string]any{}
	for _, rt := range routeTable() {
		var params []any
		for _, p := range pathParams(rt.rule) {
			d, ok := pathParamDescs[p]
			if !ok {
				return nil, fmt.Errorf("openapi: path parameter <%s> of %s has no description", p, rt.rule)
			}
			params = append(params, map[string]any{
				"name": p, "in": "path", "required": true, "description": d, "schema": map[string]any{"type": "string"},
			})
		}
		item := map[string]any{}
		if len(params) > 0 {
			item["parameters"] = params
		}
		for _, m := range rt.methods {
			key := m + " " + rt.rule
			d, ok := descs[key]
			if !ok {
				return nil, fmt.Errorf("openapi: %s has no description", key)
			}
			used[key] = true
			item[strings.ToLower(m)] = operation(rt, m, d)
		}
		paths[openAPIPathOf(rt.rule)] = item
	}
	for key := range descs {
		if !used[key] {
			return nil, fmt.Errorf("openapi: description of %s, which is not a route", key)
		}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "ceph-iscsi gateway REST API (rbd-target-api)",
			"version": "2",
			"description": "Wire-compatible with upstream ceph-iscsi 3.x. Request parameters are form fields " +
				"(application/x-www-form-urlencoded) for every method; the query string is read too. " +
				"Routes whose path starts with /api/_ are internal: gateways call them on each other.",
		},
		"tags": []any{
			map[string]any{"name": "public", "description": "routes for gwcli, the Ceph Dashboard and other clients"},
			map[string]any{"name": "internal", "description": "gateway-to-gateway routes"},
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"basicAuth": map[string]any{"type": "http", "scheme": "basic", "description": "api_user and api_password of iscsi-gateway.cfg"},
			},
			"schemas": map[string]any{
				"Message": map[string]any{
					"type":     "object",
					"required": []string{"message"},
					"properties": map[string]any{"message": map[string]any{
						"description": "the outcome as text (GET /api/_clientlun puts its LUN map here)",
					}},
				},
			},
		},
	}, nil
}

func operation(rt route, method string, d opDesc) map[string]any {
	tag := "public"
	if strings.Contains(rt.rule, "/_") {
		tag = "internal"
	}
	desc := rt.doc
	if desc == "" {
		desc = d.summary
	}
	op := map[string]any{
		"operationId": operationID(method, rt.rule),
		"summary":     d.summary,
		"description": desc,
		"tags":        []string{tag},
	}
	if len(d.fields) > 0 {
		if method == http.MethodPut {
			props := map[string]any{}
			var required []string
			for _, f := range d.fields {
				s := fieldSchema(f)
				s["description"] = f.desc
				props[f.name] = s
				if f.required {
					required = append(required, f.name)
				}
			}
			schema := map[string]any{"type": "object", "properties": props}
			if len(required) > 0 {
				slices.Sort(required)
				schema["required"] = required
			}
			op["requestBody"] = map[string]any{
				"content": map[string]any{"application/x-www-form-urlencoded": map[string]any{"schema": schema}},
			}
		} else {
			var params []any
			for _, f := range d.fields {
				params = append(params, map[string]any{
					"name": f.name, "in": "query", "required": f.required,
					"description": f.desc + " (a form body is read too)", "schema": fieldSchema(f),
				})
			}
			op["parameters"] = params
		}
	}
	ok := messageResponse("success")
	if d.data != "" {
		ok = map[string]any{
			"description": "success: " + d.data,
			"content":     map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}},
		}
	}
	responses := map[string]any{
		"200": ok,
		"400": messageResponse("invalid request, refused change or failure reported by a gateway"),
		"404": messageResponse("unknown target, gateway, disk, client or group"),
		"408": messageResponse("the request body was not received in time"),
		"413": messageResponse("the request body is larger than 1 MiB"),
		"415": messageResponse("the request body is not a form (URL-encoded or multipart)"),
		"500": messageResponse("unexpected failure (Unhandled exception: ...)"),
		"503": messageResponse("a gateway the change needs is unavailable"),
	}
	switch rt.auth {
	case authBasic:
		op["security"] = []any{map[string]any{"basicAuth": []string{}}}
		responses["401"] = messageResponse("missing or wrong credentials")
		responses["429"] = backedOff
	case authRestricted:
		op["security"] = []any{map[string]any{"basicAuth": []string{}}}
		responses["401"] = messageResponse("missing or wrong credentials")
		responses["403"] = messageResponse("the client address is not allowed")
		responses["429"] = backedOff
	default:
		op["security"] = []any{}
	}
	op["responses"] = responses
	return op
}

// backedOff is the answer to a source out of failed-login attempts
// (api_failed_login_limit).
var backedOff = func() map[string]any {
	r := messageResponse("too many failed logins from this source; wait Retry-After seconds")
	r["headers"] = map[string]any{"Retry-After": map[string]any{
		"description": "seconds until this source may try again",
		"schema":      map[string]any{"type": "integer", "minimum": 1},
	}}
	return r
}()

// openAPI serves the document without authentication, like GET /api: it
// describes only the route table, which GET /api already discloses to
// anyone, holds no configuration or secret, and API tools fetch it before
// they know credentials.
func (s *server) openAPI() echo.HandlerFunc {
	doc, err := buildOpenAPI()
	var body []byte
	if err == nil {
		body, err = encodeJSON(doc)
	}
	return func(c echo.Context) error {
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
	}
}
