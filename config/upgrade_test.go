package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden.json files")

// The golden files were generated with -update and then cross-checked
// against upstream's common.py (_upgrade_config with rados mocked, the same
// hostnames, times and key availability): byte-identical output.
var (
	t1 = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	t2 = t1.Add(time.Second)

	node1 = NewIdentity("node1", "node1.lab.example")
	// gethostname() may return the FQDN; only the first label is the
	// short name.
	node2 = NewIdentity("node2.lab.example", "node2.lab.example")
)

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n%s", name, diffLines(string(want), string(got)))
	}
}

// upgradeBytes runs one gateway's upgrade on raw bytes and returns the bytes
// it would write.
func upgradeBytes(t *testing.T, raw []byte, opts UpgradeOptions) ([]byte, bool) {
	t.Helper()
	m, err := ParseAny(raw)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := UpgradeRaw(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := MarshalAny(m)
	if err != nil {
		t.Fatal(err)
	}
	return out, changed
}

func mustLoadValid(t *testing.T, raw []byte) *Doc {
	t.Helper()
	doc, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	return doc
}

// upstream's test_common.py scenario on a hand-written v3 fixture: node1
// runs the whole chain, node2 then only its rolling rename.
func TestUpgradeV3TwoNodes(t *testing.T) {
	raw := readTestdata(t, "v3-two-node.json")
	if !NeedsUpgrade(mustParseAny(t, raw), node1) {
		t.Fatal("v3 does not need an upgrade")
	}
	after1, changed := upgradeBytes(t, raw, UpgradeOptions{Gateway: node1, Now: t1})
	if !changed {
		t.Fatal("node1 upgrade reported no change")
	}
	checkGolden(t, "v3-two-node.node1.golden.json", after1)
	doc1 := mustLoadValid(t, after1)
	if !reflect.DeepEqual(doc1.GatewaysUpgraded, []string{"node1.lab.example"}) {
		t.Errorf("after node1 gateways_upgraded = %v", doc1.GatewaysUpgraded)
	}
	if !doc1.NeedsUpgrade(node2) || doc1.NeedsUpgrade(node1) {
		t.Error("after node1 only node2 should need the rename")
	}

	after2, changed := upgradeBytes(t, after1, UpgradeOptions{Gateway: node2, Now: t2})
	if !changed {
		t.Fatal("node2 upgrade reported no change")
	}
	checkGolden(t, "v3-two-node.golden.json", after2)
	doc := mustLoadValid(t, after2)
	if doc.GatewaysUpgraded != nil || doc.Version != 11 || doc.Epoch != 42 {
		t.Errorf("final doc: version %d epoch %d gateways_upgraded %v", doc.Version, doc.Epoch, doc.GatewaysUpgraded)
	}
	tg := doc.Targets["iqn.2003-01.com.example.iscsi-gw:lab"]
	if tg == nil {
		t.Fatal("target missing")
	}
	wantLuns := map[string]int{"rbd/disk_1": 0, "rbd/vm/boot": 1, "ssd/fast": 2}
	for id, lun := range wantLuns {
		if tg.Disks[id].LunID != lun {
			t.Errorf("lun of %s = %d, want %d", id, tg.Disks[id].LunID, lun)
		}
	}
	if d := doc.Disks["rbd/vm/boot"]; d.BackstoreObjectName != "rbd.vm.boot" || *d.Owner != "node2.lab.example" {
		t.Errorf("rbd/vm/boot = %+v", d)
	}
	a := tg.Clients["iqn.1994-05.com.example:host-a"].Auth
	if a.Username != "alice" || a.Password != "secret/with/slash" {
		t.Errorf("chap split: %+v", a)
	}
	if doc.Targets[""] != nil || doc.Extra["x_tool"] == nil {
		t.Error("unexpected target or lost unknown key")
	}
	for _, gw := range []Identity{node1, node2} {
		if changed, err := UpgradeRaw(mustParseAny(t, after2), UpgradeOptions{Gateway: gw, Now: t2}); changed || err != nil {
			t.Errorf("final doc not stable for %s: %v %v", gw.FQDN, changed, err)
		}
	}
}

func TestUpgradeV9Rolling(t *testing.T) {
	raw := readTestdata(t, "v9-rolling.json")
	after1, _ := upgradeBytes(t, raw, UpgradeOptions{Gateway: node1, Now: t1})
	checkGolden(t, "v9-rolling.node1.golden.json", after1)
	doc1 := mustLoadValid(t, after1)
	if doc1.Version != 11 || !reflect.DeepEqual(doc1.GatewaysUpgraded, []string{"node1.lab.example"}) {
		t.Errorf("after node1: version %d, gateways_upgraded %v", doc1.Version, doc1.GatewaysUpgraded)
	}
	if _, ok := doc1.Gateways["node2"]; !ok {
		t.Error("node1 renamed node2's entry")
	}

	after2, _ := upgradeBytes(t, after1, UpgradeOptions{Gateway: node2, Now: t2})
	checkGolden(t, "v9-rolling.node2.golden.json", after2)
	doc2 := mustLoadValid(t, after2)
	if doc2.GatewaysUpgraded != nil {
		t.Errorf("gateways_upgraded not removed: %v", doc2.GatewaysUpgraded)
	}
	if got := *doc2.Disks["rbd/db"].AllocatingHost; got != "node2.lab.example" {
		t.Errorf("allocating_host = %q", got)
	}
	if doc2.Disks["rbd/unmapped"].Owner != nil {
		t.Error("owner appeared on an unmapped disk")
	}

	// The order does not matter: node2 first gives the same final content
	// apart from timestamps.
	b1, _ := upgradeBytes(t, raw, UpgradeOptions{Gateway: node2, Now: t1})
	b2, _ := upgradeBytes(t, b1, UpgradeOptions{Gateway: node1, Now: t2})
	if !bytes.Equal(b2, after2) {
		t.Errorf("node2-then-node1 differs:\n%s", diffLines(string(after2), string(b2)))
	}
}

func TestUpgradeV10(t *testing.T) {
	gw := NewIdentity("gw1", "gw1.example.org")
	after, changed := upgradeBytes(t, readTestdata(t, "v10.json"), UpgradeOptions{Gateway: gw, Now: t1})
	if !changed {
		t.Fatal("no change")
	}
	checkGolden(t, "v10.golden.json", after)
	doc := mustLoadValid(t, after)
	tg := doc.Targets["iqn.2003-01.com.example.iscsi-gw:ten"]
	want := map[string]LunRef{"rbd/alpha": {LunID: 0}, "rbd/zeta": {LunID: 1}, "ssd/mid": {LunID: 2}}
	if !reflect.DeepEqual(tg.Disks, want) {
		t.Errorf("disks = %v", tg.Disks)
	}
	empty := doc.Targets["iqn.2003-01.com.example.iscsi-gw:empty"]
	if empty.IPList != nil || len(empty.Disks) != 0 || empty.Updated == nil {
		t.Errorf("empty target = %+v", empty)
	}
}

func TestUpgradeIdempotent(t *testing.T) {
	for _, name := range []string{"upstream-gateway.conf.json", "v3-two-node.golden.json", "v10.golden.json"} {
		raw := readTestdata(t, name)
		out, changed := upgradeBytes(t, raw, UpgradeOptions{Gateway: node1, Now: t2})
		if changed || !bytes.Equal(out, raw) {
			t.Errorf("%s: upgrading a v11 document changed it (%v)", name, changed)
		}
		doc, upgraded, err := Load(raw, UpgradeOptions{Gateway: node1, Now: t2})
		if err != nil || upgraded || !bytes.Equal(doc.Marshal(), raw) {
			t.Errorf("%s: Load: %v %v", name, upgraded, err)
		}
	}
}

func mustParseAny(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	m, err := ParseAny(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// upgradeString upgrades a small inline document and decodes the result.
func upgradeString(t *testing.T, raw string, opts UpgradeOptions) *Doc {
	t.Helper()
	doc, _, err := Load([]byte(raw), opts)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// #118: when the FQDN is the hostname, the rename must not drop the entry.
func TestUpgradeFQDNEqualsHostname(t *testing.T) {
	raw := `{"version": 9, "disks": {"rbd/a": {"owner": "gw"}}, "gateways": {"gw": {"active_luns": 1}},
		"targets": {"t": {"disks": ["rbd/a"], "portals": {"gw": {"portal_ip_addresses": ["1.1.1.1"]}}, "ip_list": ["1.1.1.1"]}}}`
	doc := upgradeString(t, raw, UpgradeOptions{Gateway: NewIdentity("gw", "gw"), Now: t1})
	if doc.Gateways["gw"] == nil || doc.Targets["t"].Portals["gw"] == nil || *doc.Disks["rbd/a"].Owner != "gw" {
		t.Errorf("gateway lost: %s", doc.Marshal())
	}
	if doc.GatewaysUpgraded != nil || doc.Version != 11 {
		t.Errorf("version %d, gateways_upgraded %v", doc.Version, doc.GatewaysUpgraded)
	}
}

// #162 and #61: a v2 document without a target, and a v3 one without
// controls, upgrade cleanly.
func TestUpgradeOldEdgeCases(t *testing.T) {
	doc := upgradeString(t, `{"version": 2, "created": "c", "disks": {}, "gateways": {"created": "c"}, "clients": {}}`,
		UpgradeOptions{Gateway: node1, Now: t1})
	if len(doc.Targets) != 0 || len(doc.Gateways) != 0 || doc.Extra != nil {
		t.Errorf("v2 without target: %s", doc.Marshal())
	}

	raw := `{"version": 3, "disks": {"rbd.a": {"pool": "rbd", "image": "a"}},
		"gateways": {"iqn": "iqn.2003-01.com.example:y", "ip_list": ["1.1.1.1"], "node1": {"iqn": "iqn.2003-01.com.example:y", "active_luns": 0,
		"portal_ip_address": "1.1.1.1", "gateway_ip_list": ["1.1.1.1"], "inactive_portal_ips": [], "tpgs": 1}},
		"clients": {}, "groups": {}}`
	doc = upgradeString(t, raw, UpgradeOptions{Gateway: node1, Now: t1})
	tg := doc.Targets["iqn.2003-01.com.example:y"]
	if tg == nil || len(tg.Controls) != 0 || tg.Disks["rbd/a"].LunID != 0 {
		t.Fatalf("v3 without controls: %s", doc.Marshal())
	}
	if g := doc.Gateways["node1.lab.example"]; g == nil || g.Created != "" {
		t.Errorf("gateway: %s", doc.Marshal())
	}
	if d := doc.Disks["rbd/a"]; d.Created != Timestamp(t1) || d.BackstoreObjectName != "rbd.a" {
		t.Errorf("disk without created: %+v", d)
	}
	if err := doc.Validate(); err != nil {
		t.Error(err)
	}
}

// 7->8: a client password longer than 16 characters is taken for legacy
// ciphertext only when this gateway has the keys; discovery never is.
func TestUpgradeChapSplit(t *testing.T) {
	raw := `{"version": 7, "disks": {}, "gateways": {},
		"discovery_auth": {"chap": "duser/dpass-that-is-very-long", "chap_mutual": "nouser"},
		"targets": {"t": {"disks": [], "portals": {}, "clients": {
			"c1": {"auth": {"chap": "u1/0123456789abcdefX", "chap_mutual": "m1/short"}, "luns": {}, "group_name": ""},
			"c2": {"auth": {"chap": "u2/0123456789abcdef", "chap_mutual": "m2/0123456789abcdef\u00e9"}, "luns": {}, "group_name": ""}
		}}}}`
	for _, keys := range []bool{false, true} {
		doc := upgradeString(t, raw, UpgradeOptions{Gateway: node1, Now: t1, EncryptionKeysPresent: keys})
		da := doc.DiscoveryAuth
		if da.Username != "duser" || da.Password != "dpass-that-is-very-long" || da.PasswordEncryptionEnabled ||
			da.MutualUsername != "" || da.MutualPassword != "" || da.Extra != nil {
			t.Errorf("discovery auth: %+v", da)
		}
		c1 := doc.Targets["t"].Clients["c1"].Auth
		c2 := doc.Targets["t"].Clients["c2"].Auth
		if c1.PasswordEncryptionEnabled != keys || c1.MutualPasswordEncryptionEnabled {
			t.Errorf("keys=%v c1: %+v", keys, c1)
		}
		// 16 characters is not "longer than 16"; 16 + é is (runes, not bytes).
		if c2.PasswordEncryptionEnabled || c2.MutualPasswordEncryptionEnabled != keys {
			t.Errorf("keys=%v c2: %+v", keys, c2)
		}
		if c1.Username != "u1" || c1.MutualUsername != "m1" || c1.MutualPassword != "short" || c1.Extra != nil {
			t.Errorf("c1 split: %+v", c1)
		}
	}
}

// 6->7 turns every dot into a slash, so names with dots are mangled, and
// colliding ids collapse; backstore_object_name keeps the old id.
func TestUpgradeDotToSlash(t *testing.T) {
	raw := `{"version": 6, "gateways": {}, "discovery_auth": {"chap": "", "chap_mutual": ""},
		"disks": {"rbd.my.img": {"pool": "rbd", "image": "my.img"}, "rbd.x": {"pool": "rbd", "image": "x"}},
		"targets": {"iqn.2003-01.com.example:t": {"disks": ["rbd.my.img", "rbd.x"], "portals": {},
			"clients": {"iqn.1994-05.com.example:c": {"auth": {"chap": "", "chap_mutual": ""}, "luns": {"rbd.my.img": {"lun_id": 3}}, "group_name": "g"}},
			"groups": {"g": {"members": ["iqn.1994-05.com.example:c"], "disks": {"rbd.my.img": {"lun_id": 3}}}}}}}`
	doc := upgradeString(t, raw, UpgradeOptions{Gateway: node1, Now: t1})
	d := doc.Disks["rbd/my/img"]
	if d == nil || d.BackstoreObjectName != "rbd.my.img" || d.Image != "my.img" {
		t.Fatalf("disks: %s", doc.Marshal())
	}
	tg := doc.Targets["iqn.2003-01.com.example:t"]
	if _, ok := tg.Clients["iqn.1994-05.com.example:c"].Luns["rbd/my/img"]; !ok {
		t.Errorf("client luns not renamed: %v", tg.Clients["iqn.1994-05.com.example:c"].Luns)
	}
	if _, ok := tg.Groups["g"].Disks["rbd/my/img"]; !ok {
		t.Errorf("group disks not renamed: %v", tg.Groups["g"].Disks)
	}
	if !reflect.DeepEqual(tg.Disks, map[string]LunRef{"rbd/my/img": {LunID: 0}, "rbd/x": {LunID: 1}}) {
		t.Errorf("target disks: %v", tg.Disks)
	}
	if err := doc.Validate(); err != nil {
		t.Error(err)
	}
}

// Releases before #144 wrote version 9.5 during the rolling upgrade.
func TestUpgradeVersion9Point5(t *testing.T) {
	raw := `{"version": 9.5, "disks": {}, "gateways": {"node1.lab.example": {}, "node2": {}},
		"gateways_upgraded": ["node1.lab.example"], "targets": {"t": {"disks": [], "portals": {}}}}`
	doc := upgradeString(t, raw, UpgradeOptions{Gateway: node2, Now: t1})
	if doc.Version != 11 || doc.GatewaysUpgraded != nil || doc.Gateways["node2.lab.example"] == nil {
		t.Errorf("9.5: %s", doc.Marshal())
	}
}

func TestNeedsUpgrade(t *testing.T) {
	cases := []struct {
		raw  string
		want bool
	}{
		{`{"version": 11}`, false},
		{`{"version": 12}`, false},
		{`{"version": 10}`, true},
		{`{"version": 9}`, true},
		{`{"version": 1}`, true},
		{`{"version": 11, "gateways_upgraded": ["node1.lab.example"]}`, false},
		{`{"version": 11, "gateways_upgraded": ["other"]}`, true},
		{`{"version": 11, "gateways_upgraded": []}`, true},
		{`{"version": 11, "gateways_upgraded": null}`, false},
		{`{"version": "x"}`, true},
		{`{}`, true},
	}
	for _, c := range cases {
		if got := NeedsUpgrade(mustParseAny(t, []byte(c.raw)), node1); got != c.want {
			t.Errorf("NeedsUpgrade(%s) = %v, want %v", c.raw, got, c.want)
		}
	}
}

func TestUpgradeErrors(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`{}`, "version: missing"},
		{`{"version": "11"}`, "version: expected number, got string"},
		{`{"version": 8.5}`, "version: unsupported value 8.5"},
		{`{"version": 3}`, "gateways: missing"},
		{`{"version": 10, "targets": {"t": {"disks": "rbd/a"}}}`, `targets["t"].disks: expected array, got string`},
		{`{"version": 7, "targets": {"t": {"clients": {"c": {"auth": {"chap": 5}}}}}}`,
			`targets["t"].clients["c"].auth.chap: expected string, got number`},
		{`{"version": 11, "gateways_upgraded": "x"}`, "gateways_upgraded: expected array, got string"},
		{`{"version": 5, "targets": []}`, "targets: expected object, got array"},
	}
	for _, c := range cases {
		m := mustParseAny(t, []byte(c.raw))
		before := mustMarshal(m)
		_, err := UpgradeRaw(m, UpgradeOptions{Gateway: node1, Now: t1})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("UpgradeRaw(%s) error = %v, want %q", c.raw, err, c.want)
		}
		var fe *FieldError
		if c.raw != `{"version": 8.5}` && !errors.As(err, &fe) {
			t.Errorf("UpgradeRaw(%s) error %v is not a *FieldError", c.raw, err)
		}
		if !bytes.Equal(mustMarshal(m), before) {
			t.Errorf("UpgradeRaw(%s) modified its input on error", c.raw)
		}
	}
}
