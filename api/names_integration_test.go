package api

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ceph-iscsi/config"
)

// Regression tests of issue 8 items 1-3 on the real cluster: two gateway
// APIs on one real config object, each converging a real lio on its own
// emulated configfs root (or the recording fakeLIO where a test is about the
// document only).

// namesCluster is gw1 and gw2, portals of tIQN, on one cluster object.
type namesCluster struct {
	store   *clusterStore
	cl      *gwCluster
	parents map[string]string // gateway -> directory holding its root
	roots   map[string]string
	emus    map[string]*emuLIO
}

func newNamesCluster(t *testing.T, doc *config.Doc, realLIO bool) *namesCluster {
	t.Helper()
	nc := &namesCluster{store: openClusterStore(t, nil), parents: map[string]string{}, roots: map[string]string{}, emus: map[string]*emuLIO{}}
	nc.putRaw(t, doc.Marshal())
	nc.cl = newGWCluster(t, nc.store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, func(name string, d *Deps) {
		if !realLIO {
			return
		}
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		nc.parents[name], nc.roots[name] = parent, root
		nc.emus[name] = newEmuLIO(t, root, name)
		d.LIO = nc.emus[name]
	})
	return nc
}

// putRaw writes the object's bytes directly, as an older gateway or a hand
// edit would, bypassing every validation.
func (nc *namesCluster) putRaw(t *testing.T, raw []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(f, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := nc.store.cluster.Rados("-p", "rbd", "put", nc.store.object, f); err != nil {
		t.Fatalf("rados put: %v %s", err, out)
	}
}

func (nc *namesCluster) doc(t *testing.T) *config.Doc {
	t.Helper()
	d, _, err := config.Load(nc.store.bytes(), config.UpgradeOptions{})
	if err != nil {
		t.Fatalf("the object does not load: %v", err)
	}
	return d
}

func (nc *namesCluster) node(name string) *testEnv { return nc.cl.nodes[name].env }

// assertNothingOutside walks each gateway's root parent: only the root.
func (nc *namesCluster) assertNothingOutside(t *testing.T) {
	t.Helper()
	for gw, parent := range nc.parents {
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "root" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("%s: created outside the configfs root: %q", gw, names)
		}
		if err := filepath.WalkDir(nc.roots[gw], func(p string, _ os.DirEntry, err error) error {
			if err == nil && strings.Contains(p, "pwned") {
				t.Errorf("%s: %s exists", gw, p)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// rawDo sends a request whose target is already escaped (net/http would
// re-encode a decoded path).
func rawDo(t *testing.T, env *testEnv, method, target string, form url.Values) (int, string) {
	t.Helper()
	fe := &fuzzEnv{testEnv: env}
	body := ""
	if form != nil {
		body = form.Encode()
	}
	rec, ok := fe.send(t, method, target, body)
	if !ok {
		t.Fatalf("%s: not a request URI", target)
	}
	return rec.Code, msgOf(t, rec)
}

func twoGatewayDoc() *config.Doc {
	d := seedDoc(gw1, gw2)
	d.Targets[tIQN].Clients[cIQN] = config.NewClient()
	return d
}

const (
	travTarget = "iqn.2003-01.com.example:x%2F..%2F..%2F..%2F..%2Fpwned-tgt"
	travClient = "iqn.1994-05.com.example:x%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fpwned-client"
)

// Issue 8 item 1, the target case: PUT of a percent-encoded traversal IQN
// is refused and writes nothing; adding a gateway to it finds no target.
func TestIssue8TraversalTargetIQN(t *testing.T) {
	nc := newNamesCluster(t, twoGatewayDoc(), true)
	a := nc.node(gw1)
	expect(t, a.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN2, nil), 200, "client create/update successful")
	before := nc.store.bytes()
	status, msg := rawDo(t, a, "PUT", "/api/target/"+travTarget, nil)
	want := `Invalid iqn "iqn.2003-01.com.example:x/../../../../pwned-tgt" - target_iqn: has U+002F at byte 25: only a-z, 0-9, '-', '.' and ':' are allowed in ASCII (RFC 3722)`
	if status != 400 || msg != want {
		t.Fatalf("PUT target: %d %q, want 400 %q", status, msg, want)
	}
	status, msg = rawDo(t, a, "PUT", "/api/gateway/"+travTarget+"/"+gw1, url.Values{"ip_address": {"198.51.100.1"}, "skipchecks": {"true"}})
	if status != 400 || !strings.HasPrefix(msg, "Invalid iqn ") {
		t.Fatalf("PUT gateway: %d %q", status, msg)
	}
	if !bytes.Equal(before, nc.store.bytes()) {
		t.Fatal("a refused request changed the object")
	}
	nc.assertNothingOutside(t)
}

// Issue 8 item 1 in depth: the same IQN written into the object by hand,
// with a portal on both gateways, is skipped by lio with an error naming
// it, and nothing leaves either root.
func TestIssue8TraversalTargetInDocument(t *testing.T) {
	doc := twoGatewayDoc()
	bad := "iqn.2003-01.com.example:x/../../../../pwned-tgt"
	bt := doc.Clone().Targets[tIQN]
	bt.Groups = map[string]*config.Group{}
	bt.Clients = map[string]*config.Client{"iqn.1994-05.com.example:x/../../../../../../../pwned-client": config.NewClient()}
	doc.Targets[bad] = bt
	nc := newNamesCluster(t, doc, true)
	for _, gw := range []string{gw1, gw2} {
		err := nc.emus[gw].Reconcile(t.Context(), nc.doc(t))
		if err == nil || !strings.Contains(err.Error(), config.QuoteName(bad)) {
			t.Fatalf("%s: reconcile error %v does not name %q", gw, err, bad)
		}
	}
	nc.assertNothingOutside(t)
}

// Issue 8 item 1, the client case, through both gateways.
func TestIssue8TraversalClientIQN(t *testing.T) {
	nc := newNamesCluster(t, twoGatewayDoc(), true)
	for _, gw := range []string{gw1, gw2} {
		before := nc.store.bytes()
		status, msg := rawDo(t, nc.node(gw), "PUT", "/api/client/"+tIQN+"/"+travClient, nil)
		if status != 400 || !strings.HasPrefix(msg, `Invalid iqn "iqn.1994-05.com.example:x/../`) || !strings.Contains(msg, "client_iqn: has U+002F") {
			t.Fatalf("%s: %d %q", gw, status, msg)
		}
		if !bytes.Equal(before, nc.store.bytes()) {
			t.Fatal("a refused request changed the object")
		}
	}
	// A valid client still converges on both, so the roots are in use.
	expect(t, nc.node(gw1).do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN2, nil), 200, "client create/update successful")
	for _, gw := range []string{gw1, gw2} {
		if _, err := os.Stat(filepath.Join(nc.roots[gw], "target/iscsi", tIQN, "tpgt_1/acls", cIQN2)); gw == gw1 && err != nil {
			t.Fatalf("%s: valid client not built: %v", gw, err)
		}
	}
	nc.assertNothingOutside(t)
}

// issue8BadIQNs are item 2's names, as request path segments.
var issue8BadIQNs = map[string]string{
	"slash":         "x%2Fy",
	"tab":           "a%09b",
	"newline":       "a%0Ab",
	"NUL":           "a%00b",
	"0x01":          "a%01b",
	"0x7F":          "a%7Fb",
	"zero-width":    url.PathEscape("a\u200bb"),
	"bidi":          url.PathEscape("a\u202eb"),
	"invalid UTF-8": "a%FFb",
	"224 bytes":     strings.Repeat("a", 224-24),
	"5000 bytes":    strings.Repeat("a", 5000-24),
}

// Issue 8 item 2: target, client and host group member IQNs breaking the
// iSCSI name rules get a 400 naming the field and the rule, and the object
// keeps its bytes.
func TestIssue8InvalidIQNsRefused(t *testing.T) {
	nc := newNamesCluster(t, twoGatewayDoc(), false)
	a := nc.node(gw1)
	before := nc.store.bytes()
	for what, suffix := range issue8BadIQNs {
		for _, c := range []struct{ field, target, prefix string }{
			{"target_iqn", "/api/target/iqn.2003-01.com.example:" + suffix, "iqn.2003-01.com.example:"},
			{"client_iqn", "/api/client/" + tIQN + "/iqn.1994-05.com.example:" + suffix, "iqn.1994-05.com.example:"},
		} {
			status, msg := rawDo(t, a, "PUT", c.target, nil)
			if status != 400 || !strings.HasPrefix(msg, "Invalid iqn ") || !strings.Contains(msg, " - "+c.field+": ") {
				t.Errorf("%s %s: %d %q", what, c.field, status, msg)
			}
			if len(msg) > 500 {
				t.Errorf("%s: a message of %d bytes", what, len(msg))
			}
		}
		raw, _ := url.PathUnescape(suffix)
		status, msg := rawDo(t, a, "PUT", "/api/hostgroup/"+tIQN+"/grp", url.Values{"members": {"iqn.1994-05.com.example:" + raw}})
		if status != 400 {
			t.Errorf("%s: host group member: %d %q", what, status, msg)
		}
	}
	if !bytes.Equal(before, nc.store.bytes()) {
		t.Fatal("refused requests changed the object")
	}
}

// legacyDoc holds item 3's names, as an older version or a hand edit left
// them: a 300-character client, a NUL in a target IQN with portals, control
// characters in a client and a host group name, '%', ' ' and '/' in names.
func legacyDoc() (*config.Doc, map[string]string) {
	d := twoGatewayDoc()
	names := map[string]string{
		"long client": "iqn.1994-05.com.example:" + strings.Repeat("c", 276),
		"ctl client":  "iqn.1994-05.com.example:a\x01b",
		"odd client":  "iqn.1994-05.com.example:a b%2F/..",
		"ctl group":   "grp\x01\n /%",
		"nul target":  "iqn.2003-01.com.example:a\x00b",
	}
	tg := d.Targets[tIQN]
	for _, k := range []string{"long client", "ctl client", "odd client"} {
		tg.Clients[names[k]] = config.NewClient()
	}
	tg.Clients[names["ctl client"]].GroupName = names["ctl group"]
	tg.Groups[names["ctl group"]] = &config.Group{Members: []string{names["ctl client"]}, Disks: map[string]config.LunRef{}}
	nt := config.NewTarget(t0)
	nt.IPList = tg.IPList
	for gw, p := range tg.Portals {
		cp := *p
		nt.Portals[gw] = &cp
	}
	d.Targets[names["nul target"]] = nt
	return d, names
}

// Issue 8 item 3: the object with those names loads, unrelated mutations
// commit on both gateways, and every bad object is deleted through the API
// (the coordinator reaching the peer with the name escaped).
func TestIssue8LegacyInvalidNamesDoNotWedge(t *testing.T) {
	doc, names := legacyDoc()
	nc := newNamesCluster(t, doc, false)
	a, b := nc.node(gw1), nc.node(gw2)
	if len(nc.doc(t).InvalidNames()) != 5 {
		t.Fatalf("invalid names in the seeded object: %v", nc.doc(t).InvalidNames())
	}
	expect(t, a.do(t, "GET", "/api/config", nil), 200, "")
	// Unrelated mutations, on both gateways.
	expect(t, a.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN2, nil), 200, "client create/update successful")
	expect(t, b.do(t, "PUT", "/api/target/iqn.2003-01.com.example:other", nil), 200, "Target defined successfully")
	// New invalid names are still refused.
	status, msg := rawDo(t, a, "PUT", "/api/client/"+tIQN+"/iqn.1994-05.com.example:"+strings.Repeat("d", 276), nil)
	if status != 400 || !strings.Contains(msg, "client_iqn: is 300 bytes long; an iSCSI name is at most 223 bytes") {
		t.Fatalf("new 300-byte client: %d %q", status, msg)
	}
	// Every bad object is deletable, through either gateway.
	seg := url.PathEscape
	for _, step := range []struct {
		env    *testEnv
		target string
		msg    string
	}{
		{a, "/api/hostgroup/" + tIQN + "/" + seg(names["ctl group"]), "Group definition '" + names["ctl group"] + "' deleted"},
		{b, "/api/client/" + tIQN + "/" + seg(names["ctl client"]), "client delete successful"},
		{a, "/api/client/" + tIQN + "/" + seg(names["long client"]), "client delete successful"},
		{b, "/api/client/" + tIQN + "/" + seg(names["odd client"]), "client delete successful"},
		{a, "/api/gateway/" + seg(names["nul target"]) + "/" + gw2, "Gateway deletion successful"},
		{a, "/api/gateway/" + seg(names["nul target"]) + "/" + gw1 + "?confirm=true", "Gateway deletion successful"},
		{b, "/api/target/" + seg(names["nul target"]), "Target deleted."},
	} {
		status, msg := rawDo(t, step.env, "DELETE", step.target, nil)
		if status != 200 || msg != step.msg {
			t.Fatalf("DELETE %q: %d %q, want 200 %q", step.target, status, msg, step.msg)
		}
	}
	final := nc.doc(t)
	if bad := final.InvalidNames(); len(bad) != 0 {
		t.Fatalf("invalid names left: %v", bad)
	}
	if err := final.Validate(); err != nil {
		t.Fatal(err)
	}
	if final.Targets[tIQN].Clients[cIQN2] == nil || final.Targets["iqn.2003-01.com.example:other"] == nil {
		t.Fatal("the unrelated changes are gone")
	}
	// Both gateways converged to documents where nothing with a bad name
	// is theirs any more (the target left gw1 when its portal did).
	for _, gw := range []string{gw1, gw2} {
		last := nc.cl.nodes[gw].env.lio.last
		if last == nil {
			t.Fatalf("%s never reconciled", gw)
		}
		for path := range last.InvalidNames() {
			nt := last.Targets[names["nul target"]]
			if path == "targets["+strconv.Quote(names["nul target"])+"]" && nt.Portals[gw] == nil {
				continue
			}
			t.Errorf("%s last converged to a document with %s", gw, path)
		}
	}
}
