package api

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// routeOps lists "METHOD /openapi/path" for every operation of routeTable.
func routeOps() []string {
	var out []string
	for _, rt := range routeTable() {
		for _, m := range rt.methods {
			out = append(out, m+" "+openAPIPathOf(rt.rule))
		}
	}
	sort.Strings(out)
	return out
}

func fetchOpenAPI(t *testing.T) []byte {
	t.Helper()
	env := newEnv(t, newMemStore(seedDoc(gw1)), gw1, nil)
	// No credentials, from an address outside the allowlist.
	rec := env.do(t, "GET", OpenAPIPath, nil, noAuth(), from("203.0.113.7:4000"))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %q %s", OpenAPIPath, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	return rec.Body.Bytes()
}

// TestOpenAPIDescribesExactlyTheRouteTable: every operation of routeTable
// is in the document and the document has nothing else.
func TestOpenAPIDescribesExactlyTheRouteTable(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(fetchOpenAPI(t), &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for path, item := range doc.Paths {
		for k := range item {
			if k == "parameters" {
				continue
			}
			got = append(got, strings.ToUpper(k)+" "+path)
		}
	}
	sort.Strings(got)
	want := routeOps()
	if !slices.Equal(got, want) {
		t.Fatalf("document operations\n%s\nroute table\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(want) != 57 {
		t.Fatalf("%d operations, want upstream's 57", len(want))
	}
}

// TestOpenAPIDescriptionTable: the hand-written table has an entry for every
// route and method, and none for anything else; buildOpenAPI refuses both.
func TestOpenAPIDescriptionTable(t *testing.T) {
	descs := opDescs()
	seen := map[string]bool{}
	for _, rt := range routeTable() {
		for _, m := range rt.methods {
			key := m + " " + rt.rule
			seen[key] = true
			d, ok := descs[key]
			if !ok {
				t.Errorf("%s has no description entry", key)
				continue
			}
			if d.summary == "" {
				t.Errorf("%s has no summary", key)
			}
		}
		for _, p := range pathParams(rt.rule) {
			if pathParamDescs[p] == "" {
				t.Errorf("path parameter <%s> of %s has no description", p, rt.rule)
			}
		}
	}
	for key := range descs {
		if !seen[key] {
			t.Errorf("description entry %s is not a route", key)
		}
	}
	if _, err := buildOpenAPI(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAPIValidates loads the served document with kin-openapi and
// validates it against the OpenAPI 3.0 rules, then checks what the
// validator does not: path templates and declared path parameters agree,
// and every operation documents the error statuses its auth can give.
func TestOpenAPIValidates(t *testing.T) {
	body := fetchOpenAPI(t)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("invalid OpenAPI document: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	auth := map[string]authKind{}
	for _, rt := range routeTable() {
		auth[openAPIPathOf(rt.rule)] = rt.auth
	}
	tmpl := regexp.MustCompile(`\{([^{}]+)\}`)
	for path, item := range doc.Paths.Map() {
		var inPath []string
		for _, m := range tmpl.FindAllStringSubmatch(path, -1) {
			inPath = append(inPath, m[1])
		}
		var declared []string
		for _, p := range item.Parameters {
			if p.Value.In == "path" {
				if !p.Value.Required {
					t.Errorf("%s: path parameter %s not required", path, p.Value.Name)
				}
				declared = append(declared, p.Value.Name)
			}
		}
		if !slices.Equal(inPath, declared) {
			t.Errorf("%s: template parameters %v, declared %v", path, inPath, declared)
		}
		for method, op := range item.Operations() {
			codes := []string{"200", "400", "404", "408", "413", "415", "500", "503"}
			switch auth[path] {
			case authBasic:
				codes = append(codes, "401", "429")
			case authRestricted:
				codes = append(codes, "401", "403", "429")
			}
			for _, code := range codes {
				r := op.Responses.Value(code)
				if r == nil {
					t.Errorf("%s %s: no %s response", method, path, code)
					continue
				}
				if code == "200" {
					continue
				}
				mt := r.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Message" {
					t.Errorf("%s %s %s: not the message schema", method, path, code)
				}
			}
			if want := auth[path] != authNone; (op.Security != nil && len(*op.Security) > 0) != want {
				t.Errorf("%s %s: security %v, auth kind %d", method, path, op.Security, auth[path])
			}
			if method == "PUT" && op.RequestBody != nil {
				if op.RequestBody.Value.Content.Get("application/x-www-form-urlencoded") == nil {
					t.Errorf("%s %s: body is not a form", method, path)
				}
			}
		}
	}
	// Spot checks of the per-operation tables.
	put := doc.Paths.Find("/api/gateway/{target_iqn}/{gateway_name}").Put
	schema := put.RequestBody.Value.Content.Get("application/x-www-form-urlencoded").Schema.Value
	if !slices.Equal(schema.Required, []string{"ip_address"}) || schema.Properties["skipchecks"] == nil || schema.Properties["nosync"] == nil {
		t.Fatalf("PUT gateway form: required %v properties %v", schema.Required, schema.Properties)
	}
	get := doc.Paths.Find("/api/config").Get
	if p := get.Parameters.GetByInAndName("query", "decrypt_passwords"); p == nil {
		t.Fatal("GET /api/config lacks decrypt_passwords")
	}
}

// TestOpenAPIKeepsAPIListingUpstream: the extra route is not in GET /api.
func TestOpenAPIKeepsAPIListingUpstream(t *testing.T) {
	env := newEnv(t, newMemStore(seedDoc(gw1)), gw1, nil)
	rec := env.do(t, "GET", "/api", nil, noAuth())
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "openapi") {
		t.Fatalf("GET /api: %d %s", rec.Code, rec.Body)
	}
	var m map[string][][]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	// upstream lists its 23 public rules plus the undocumented /api/_target
	if len(m["api"]) != 24 {
		t.Fatalf("%d rules listed", len(m["api"]))
	}
}
