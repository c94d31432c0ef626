package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ceph-iscsi/chap"
	"ceph-iscsi/config"
	"ceph-iscsi/lio"
	"ceph-iscsi/settings"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// loadTestdata decodes a testdata document through package config. The
// hand-written fixtures omit version and (demo) gateways, which the Python
// gateways always write, so those are filled in.
func loadTestdata(t testing.TB, file string, gateways ...string) *config.Doc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(lioTestdata, file))
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.ParseAny(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["version"]; !ok {
		m["version"] = json.Number("11")
	}
	gws, _ := m["gateways"].(map[string]any)
	if gws == nil {
		gws = map[string]any{}
		m["gateways"] = gws
	}
	for _, g := range gateways {
		if _, ok := gws[g]; !ok {
			gws[g] = map[string]any{"active_luns": json.Number("0"), "created": "", "updated": ""}
		}
	}
	doc, err := config.FromAny(m)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return doc
}

// lioTestdata holds the documents package lio's golden plans were
// reviewed with.
const lioTestdata = "../lio/testdata"

// goldenCases are package lio's golden cases: the document, the gateway
// and what the golden plan was built with.
var goldenCases = []struct {
	name, file, gateway, backstore string
	explicit                       bool
}{
	{"upstream", "upstream-gateway.conf.json", "igw1.fullstack.test", lio.BackstoreUserRBD, false},
	{"upstream-block", "upstream-gateway.conf.json", "igw1.fullstack.test", lio.BackstoreBlock, false},
	{"two-gw-node1", "two-gw.json", "node1.ceph.local", lio.BackstoreUserRBD, false},
	{"two-gw-node2-explicit", "two-gw.json", "node2.ceph.local", lio.BackstoreUserRBD, true},
	{"demo", "demo.json", "gw-a.example", lio.BackstoreUserRBD, false},
}

// goldenDiskSize is the size every image has in the golden plans.
const goldenDiskSize = 1 << 30

// goldenOptions are the RBD facts of the golden plans: every image has
// goldenDiskSize bytes and disk i (in sorted id order) is /dev/rbd<i>.
func goldenOptions(doc *config.Doc) FromConfigOptions {
	index := map[string]int{}
	for i, id := range slices.Sorted(maps.Keys(doc.Disks)) {
		d := doc.Disks[id]
		index[d.Pool+"/"+d.Image] = i
	}
	return FromConfigOptions{
		Size: func(pool, image string) (int64, error) { return goldenDiskSize, nil },
		DevicePath: func(pool, image string) (string, error) {
			return fmt.Sprintf("/dev/rbd%d", index[pool+"/"+image]), nil
		},
		Logger: quiet,
	}
}

// TestSpecFromConfigGolden is the translation's golden test: for every
// golden case of package lio, the plan from an empty tree to what
// SpecFromConfig builds must be the reviewed testdata/<name>.plan.golden
// (for "upstream", what upstream ceph-iscsi built on a real kernel).
func TestSpecFromConfigGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			doc := loadTestdata(t, c.file, c.gateway)
			for id, d := range doc.Disks {
				d.Backstore = c.backstore
				doc.Disks[id] = d
			}
			s := settings.Defaults()
			if c.explicit {
				s.AluaFailoverType = settings.AluaExplicit
			}
			spec, err := SpecFromConfig(doc, c.gateway, s, goldenOptions(doc))
			if err != nil {
				t.Fatalf("SpecFromConfig: %v", err)
			}
			got := lio.NewPlan(lio.State{}, mustBuild(t, spec)).String()
			want, err := os.ReadFile(filepath.Join(lioTestdata, c.name+".plan.golden"))
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s.plan.golden:\n%s\nwant:\n%s", c.name, got, want)
			}
		})
	}
}

func observe(t testing.TB, f lio.FS) lio.State {
	t.Helper()
	st, err := lio.Observe(f)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return st
}

// applyState converges f on desired in one plan.
func applyState(t testing.TB, f lio.FS, desired lio.State) {
	t.Helper()
	plan := lio.NewPlan(observe(t, f), desired)
	if _, err := lio.Apply(t.Context(), f, plan); err != nil {
		t.Fatalf("Apply: %v\nplan:\n%s", err, plan)
	}
}

func mustBuild(t testing.TB, spec lio.Spec) lio.State {
	t.Helper()
	st, err := lio.Build(spec)
	if err != nil {
		t.Fatalf("lio.Build: %v", err)
	}
	return st
}

func TestSettingsFrom(t *testing.T) {
	if got := settingsFrom(settings.Defaults()); got != lio.DefaultSettings() {
		t.Errorf("settings.Defaults() maps to\n%+v\nwant lio.DefaultSettings()\n%+v", got, lio.DefaultSettings())
	}
	s, err := settings.Parse("test.cfg", []byte(`[config]
cluster_name = site2
ceph_config_dir = /etc/ceph-site2
cluster_client_name = client.igw
alua_failover_type = explicit
[target]
nopin_timeout = 9
immediate_data = No
max_burst_length = 1048576
max_data_area_mb = 32
osd_op_timeout = 45
`))
	if err != nil {
		t.Fatal(err)
	}
	want := lio.DefaultSettings()
	want.ALUAFailover, want.ClusterClientName, want.CephConf = "explicit", "client.igw", "/etc/ceph-site2/site2.conf"
	want.NopinTimeout, want.ImmediateData, want.MaxBurstLength = 9, false, 1048576
	want.MaxDataAreaMB, want.OSDOpTimeout = 32, 45
	if got := settingsFrom(s); got != want {
		t.Errorf("settingsFrom =\n%+v\nwant\n%+v", got, want)
	}
	if got, w := lio.CfgString("rbd", "img", settingsFrom(s)), "rbd/rbd/img;osd_op_timeout=45;conf=/etc/ceph-site2/site2.conf;id=igw"; got != w {
		t.Errorf("cfgstring %q, want %q", got, w)
	}
}

// testDoc is a two-gateway document built through package config: one
// target on 192.0.2.1 (gw1) and 192.0.2.2 (gw2), disks rbd/a (owned by gw1)
// and rbd/b (owned by gw2), a CHAP client mapping both, and a second target
// that only gw2 serves.
func testDoc(t testing.TB) *config.Doc {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	doc := config.NewDoc(now)
	for _, gw := range []string{"gw1.test", "gw2.test"} {
		doc.Gateways[gw] = &config.Gateway{Created: config.Timestamp(now)}
	}
	for _, d := range []struct{ image, owner string }{{"a", "gw1.test"}, {"b", "gw2.test"}} {
		owner, alloc := d.owner, d.owner
		doc.Disks["rbd/"+d.image] = &config.Disk{
			Pool: "rbd", Image: d.image, PoolID: 1, WWN: "00000000-0000-4000-8000-00000000000" + d.image,
			Backstore: lio.BackstoreUserRBD, BackstoreObjectName: "rbd." + d.image,
			AllocatingHost: &alloc, Owner: &owner, Controls: map[string]any{},
		}
	}
	const iqn = "iqn.2003-01.com.example:t1"
	tg, err := doc.AddTarget(iqn, now)
	if err != nil {
		t.Fatal(err)
	}
	tg.IPList = []string{"192.0.2.1", "192.0.2.2"}
	tg.Portals["gw1.test"] = &config.Portal{PortalIPAddresses: []string{"192.0.2.1"}, GatewayIPList: tg.IPList, TPGs: 2}
	tg.Portals["gw2.test"] = &config.Portal{PortalIPAddresses: []string{"192.0.2.2"}, GatewayIPList: tg.IPList, TPGs: 2}
	tg.Disks["rbd/a"] = config.LunRef{LunID: 0}
	tg.Disks["rbd/b"] = config.LunRef{LunID: 1}
	c, err := doc.AddClient(iqn, "iqn.1994-05.com.example:client", now)
	if err != nil {
		t.Fatal(err)
	}
	c.Auth = config.Auth{Username: "chapuser", Password: "chapsecret123"}
	c.Luns["rbd/a"] = config.LunRef{LunID: 0}
	c.Luns["rbd/b"] = config.LunRef{LunID: 1}

	t2, err := doc.AddTarget("iqn.2003-01.com.example:t2", now)
	if err != nil {
		t.Fatal(err)
	}
	t2.IPList = []string{"192.0.2.2"}
	t2.Portals["gw2.test"] = &config.Portal{PortalIPAddresses: []string{"192.0.2.2"}, GatewayIPList: t2.IPList, TPGs: 1}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	return doc
}

// sizes answers Size from a table and counts the lookups.
type sizes struct {
	mu    sync.Mutex
	size  map[string]int64
	err   map[string]error
	asked []string
}

func (s *sizes) lookup(pool, image string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := pool + "/" + image
	s.asked = append(s.asked, id)
	if err := s.err[id]; err != nil {
		return 0, err
	}
	return s.size[id], nil
}

func buildFrom(t *testing.T, doc *config.Doc, gw string, opts FromConfigOptions) (lio.State, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	spec, err := SpecFromConfig(doc, gw, nil, opts)
	st, berr := lio.Build(spec)
	if berr != nil {
		t.Fatalf("lio.Build: %v", berr)
	}
	return st, err
}

// summary renders what a gateway serves in one line per object, enough to
// compare states in the tests below.
func summary(st lio.State) string {
	var b strings.Builder
	for _, so := range st.StorageObjects {
		fmt.Fprintf(&b, "so %s %s %s size=%d\n", so.Plugin, so.Name, so.Config, so.Size)
	}
	for _, tg := range st.Targets {
		for _, tpg := range tg.TPGs {
			fmt.Fprintf(&b, "tpg %s/%d enabled=%v portals=%v auth=%s\n", tg.IQN, tpg.Tag, tpg.Enabled, tpg.Portals, tpg.Attrs["authentication"])
			for _, l := range tpg.LUNs {
				fmt.Fprintf(&b, "  lun %d %s %s\n", l.Index, l.StorageObject, l.ALUAGroup)
			}
			for _, a := range tpg.ACLs {
				fmt.Fprintf(&b, "  acl %s user=%s", a.Initiator, a.Auth.UserID)
				for _, m := range a.MappedLUNs {
					fmt.Fprintf(&b, " m%d->%d", m.Index, m.TPGLUN)
				}
				b.WriteString("\n")
			}
		}
	}
	fmt.Fprintf(&b, "managed so=%v targets=%v discovery=%v\n", st.Managed.StorageObjects, st.Managed.Targets, st.DiscoveryAuth != nil)
	return b.String()
}

func TestSpecFromConfigTwoGateways(t *testing.T) {
	doc := testDoc(t)
	sz := &sizes{size: map[string]int64{"rbd/a": 1 << 30, "rbd/b": 2 << 30}}
	st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{Size: sz.lookup})
	if err != nil {
		t.Fatal(err)
	}
	want := `so user rbd.a rbd/rbd/a;osd_op_timeout=30 size=1073741824
so user rbd.b rbd/rbd/b;osd_op_timeout=30 size=2147483648
tpg iqn.2003-01.com.example:t1/1 enabled=true portals=[192.0.2.1:3260] auth=1
  lun 0 rbd.a ao
  lun 1 rbd.b ano1
  acl iqn.1994-05.com.example:client user=chapuser m0->0 m1->1
tpg iqn.2003-01.com.example:t1/2 enabled=false portals=[192.0.2.2:3260] auth=0
  lun 0 rbd.a ano2
  lun 1 rbd.b ao
managed so=[rbd.a rbd.b] targets=[iqn.2003-01.com.example:t1 iqn.2003-01.com.example:t2] discovery=true
`
	if got := summary(st); got != want {
		t.Errorf("gw1 state:\n%s\nwant:\n%s", got, want)
	}
	// Only the disks this gateway exports are looked up.
	slices.Sort(sz.asked)
	if !slices.Equal(sz.asked, []string{"rbd/a", "rbd/b"}) {
		t.Errorf("sizes asked for %v", sz.asked)
	}
	if p := st.Targets[0].TPGs[0].ACLs[0].Auth.Password.Reveal(); p != "chapsecret123" {
		t.Errorf("client password %q", p)
	}
}

func TestSpecFromConfigNotAMember(t *testing.T) {
	doc := testDoc(t)
	st, err := buildFrom(t, doc, "stranger.test", FromConfigOptions{
		ManagedTargets: []string{"iqn.2003-01.com.example:gone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Like upstream's define() and shutdown: nothing of the config is ours,
	// and fabric-wide discovery auth is left alone.
	want := "managed so=[] targets=[iqn.2003-01.com.example:gone] discovery=false\n"
	if got := summary(st); got != want {
		t.Errorf("state of a non-member:\n%s\nwant:\n%s", got, want)
	}
}

func TestSpecFromConfigExtraManaged(t *testing.T) {
	doc := testDoc(t)
	st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{
		ManagedTargets:        []string{"iqn.2003-01.com.example:deleted", "iqn.2003-01.com.example:t1"},
		ManagedStorageObjects: []string{"rbd.deleted", "rbd.a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Managed.StorageObjects, []string{"rbd.a", "rbd.b", "rbd.deleted"}) {
		t.Errorf("managed storage objects %v", st.Managed.StorageObjects)
	}
	if !slices.Contains(st.Managed.Targets, "iqn.2003-01.com.example:deleted") || len(st.Targets) != 1 {
		t.Errorf("managed targets %v, built %d", st.Managed.Targets, len(st.Targets))
	}

	// A leftover of the deleted disk is removed; a foreign object stays.
	f, err := lio.NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	applyState(t, f, lio.State{StorageObjects: []lio.StorageObject{
		{Plugin: lio.PluginUser, Name: "rbd.deleted", Config: "rbd/rbd/deleted;osd_op_timeout=30", Size: 1 << 20},
		{Plugin: lio.PluginUser, Name: "other.disk", Config: "rbd/other/disk;osd_op_timeout=30", Size: 1 << 20},
	}, Managed: lio.Managed{StorageObjects: []string{"rbd.deleted", "other.disk"}}})
	applyState(t, f, st)
	var names []string
	for _, so := range observe(t, f).StorageObjects {
		names = append(names, so.Name)
	}
	if !slices.Equal(names, []string{"other.disk", "rbd.a", "rbd.b"}) {
		t.Errorf("storage objects after reconcile: %v", names)
	}
}

// TestAddExtrasWithoutNamesIsFree: a member's build, which names no
// leftovers, adds nothing and makes nothing of its thousands of disks (the
// pass was a map of every object name, on every build).
func TestAddExtrasWithoutNamesIsFree(t *testing.T) {
	spec := lio.Spec{Disks: map[string]lio.DiskSpec{}, Targets: map[string]lio.TargetSpec{}}
	for i := range 1000 {
		spec.Disks[fmt.Sprintf("rbd/img%04d", i)] = lio.DiskSpec{Pool: "rbd", Image: fmt.Sprintf("img%04d", i)}
	}
	a := adapter{}
	if allocs := testing.AllocsPerRun(5, func() { a.addExtras(&spec) }); allocs != 0 {
		t.Errorf("addExtras without names allocated %v times", allocs)
	}
	if len(spec.Disks) != 1000 || len(spec.Targets) != 0 {
		t.Errorf("addExtras without names changed the spec: %d disks, %d targets", len(spec.Disks), len(spec.Targets))
	}
}

func TestSpecFromConfigMissingImageIsSkipped(t *testing.T) {
	doc := testDoc(t)
	sz := &sizes{
		size: map[string]int64{"rbd/a": 1 << 30},
		err:  map[string]error{"rbd/b": fmt.Errorf("open rbd/b: %w", ErrImageNotFound)},
	}
	var logs bytes.Buffer
	st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{Size: sz.lookup, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("a missing image must be skipped, not fail: %v", err)
	}
	want := `so user rbd.a rbd/rbd/a;osd_op_timeout=30 size=1073741824
tpg iqn.2003-01.com.example:t1/1 enabled=true portals=[192.0.2.1:3260] auth=1
  lun 0 rbd.a ao
  acl iqn.1994-05.com.example:client user=chapuser m0->0
tpg iqn.2003-01.com.example:t1/2 enabled=false portals=[192.0.2.2:3260] auth=0
  lun 0 rbd.a ano2
managed so=[rbd.a rbd.b] targets=[iqn.2003-01.com.example:t1 iqn.2003-01.com.example:t2] discovery=true
`
	if got := summary(st); got != want {
		t.Errorf("state:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(logs.String(), "disk=rbd/b") {
		t.Errorf("skip not logged: %s", logs.String())
	}

	sz.err["rbd/b"] = errors.New("connection timed out")
	if _, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{Size: sz.lookup}); err == nil || !strings.Contains(err.Error(), "disk rbd/b: size: connection timed out") {
		t.Errorf("size failure: %v", err)
	}
}

func TestSpecFromConfigBackstores(t *testing.T) {
	paths := func(pool, image string) (string, error) { return "/dev/rbd/" + pool + "/" + image, nil }
	t.Run("block", func(t *testing.T) {
		doc := testDoc(t)
		for _, d := range doc.Disks {
			d.Backstore = lio.BackstoreBlock
		}
		st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{DevicePath: paths})
		if err != nil {
			t.Fatal(err)
		}
		if so := st.StorageObjects[0]; so.Plugin != lio.PluginBlock || so.Config != "/dev/rbd/rbd/a" {
			t.Errorf("block storage object %+v", so)
		}
	})
	t.Run("block without device paths", func(t *testing.T) {
		doc := testDoc(t)
		doc.Disks["rbd/b"].Backstore = lio.BackstoreBlock
		_, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{})
		if err == nil || !strings.Contains(err.Error(), "disk rbd/b: backstore block needs a device path") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("device path failure", func(t *testing.T) {
		doc := testDoc(t)
		doc.Disks["rbd/a"].Backstore = lio.BackstoreBlock
		doc.Disks["rbd/b"].Backstore = lio.BackstoreBlock
		_, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{DevicePath: func(pool, image string) (string, error) {
			return "", errors.New("map: krbd refused the image")
		}})
		if err == nil || !strings.Contains(err.Error(), "disk rbd/a: device path: map: krbd refused the image") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		doc := testDoc(t)
		doc.Disks["rbd/a"].Backstore = "user:qcow"
		_, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{})
		if err == nil || !strings.Contains(err.Error(), `disk rbd/a: unknown backstore "user:qcow"`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("mixed", func(t *testing.T) {
		doc := testDoc(t)
		doc.Disks["rbd/b"].Backstore = lio.BackstoreBlock
		st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{DevicePath: paths})
		if err == nil || !strings.Contains(err.Error(), "block: rbd/b; user:rbd: rbd/a") {
			t.Errorf("err = %v", err)
		}
		if len(st.StorageObjects) != 0 {
			t.Errorf("mixed backstores still built %v", st.StorageObjects)
		}
	})
	t.Run("empty means user:rbd", func(t *testing.T) {
		doc := testDoc(t)
		doc.Disks["rbd/a"].Backstore = ""
		st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{})
		if err != nil || st.StorageObjects[0].Plugin != lio.PluginUser {
			t.Errorf("err = %v, objects %+v", err, st.StorageObjects)
		}
	})
}

func TestSpecFromConfigLocalAddrs(t *testing.T) {
	doc := testDoc(t)
	// ip_list order is TPG order; the local TPG follows this host's
	// addresses, not what portal_ip_addresses claims.
	doc.Targets["iqn.2003-01.com.example:t1"].Portals["gw1.test"].PortalIPAddresses = []string{"192.0.2.9"}
	st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("::1")}})
	if err != nil {
		t.Fatal(err)
	}
	if tpgs := st.Targets[0].TPGs; !tpgs[0].Enabled || tpgs[1].Enabled {
		t.Errorf("TPGs %+v", tpgs)
	}

	_, err = buildFrom(t, doc, "gw1.test", FromConfigOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr("10.9.9.9")}})
	if err == nil || !strings.Contains(err.Error(), "target iqn.2003-01.com.example:t1: gateway IP addresses provided do not match any ip on this host") {
		t.Errorf("err = %v", err)
	}
}

func TestSpecFromConfigControls(t *testing.T) {
	doc := testDoc(t)
	doc.Targets["iqn.2003-01.com.example:t1"].Controls = map[string]any{"cmdsn_depth": json.Number("64"), "immediate_data": false}
	doc.Disks["rbd/a"].Controls = map[string]any{"max_data_area_mb": json.Number("128")}
	st, err := buildFrom(t, doc, "gw1.test", FromConfigOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tpg := st.Targets[0].TPGs[0]
	if tpg.ACLs[0].CmdSNDepth != 64 || tpg.Params["ImmediateData"] != "No" || st.StorageObjects[0].MaxDataAreaMB != 128 || st.StorageObjects[1].MaxDataAreaMB != 8 {
		t.Errorf("controls not applied: acl %+v params %v objects %+v", tpg.ACLs[0], tpg.Params, st.StorageObjects)
	}
}

// Encrypted CHAP.

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKey
}

func encrypt(t testing.TB, h func() hash.Hash, plain string) string {
	t.Helper()
	ct, err := rsa.EncryptOAEP(h(), rand.Reader, &rsaKey(t).PublicKey, []byte(plain), nil)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(ct)
}

// keySettings writes the private key the way upstream keeps it and returns
// settings that point at it.
func keySettings(t testing.TB, pkcs8 bool) *settings.Settings {
	t.Helper()
	dir := t.TempDir()
	blk := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey(t))}
	if pkcs8 {
		der, err := x509.MarshalPKCS8PrivateKey(rsaKey(t))
		if err != nil {
			t.Fatal(err)
		}
		blk = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	s := settings.Defaults()
	s.CephConfigDir = dir
	if err := os.WriteFile(s.PrivKeyPath(), pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSpecFromConfigEncryptedCHAP(t *testing.T) {
	const (
		client = "iqn.1994-05.com.example:client"
		iqn    = "iqn.2003-01.com.example:t1"
	)
	for _, c := range []struct {
		name  string
		h     func() hash.Hash
		pkcs8 bool
	}{{"oaep-sha256 pkcs1", sha256.New, false}, {"oaep-sha1 fallback pkcs8", sha1.New, true}} {
		t.Run(c.name, func(t *testing.T) {
			doc := testDoc(t)
			cl := doc.Targets[iqn].Clients[client]
			cl.Auth.Password, cl.Auth.PasswordEncryptionEnabled = encrypt(t, c.h, "chapsecret123"), true
			cl.Auth.MutualUsername = "mutualuser"
			cl.Auth.MutualPassword, cl.Auth.MutualPasswordEncryptionEnabled = encrypt(t, c.h, "mutualsecret12"), true
			doc.DiscoveryAuth = config.Auth{Username: "disc", Password: encrypt(t, c.h, "discsecret123"), PasswordEncryptionEnabled: true}
			spec, err := SpecFromConfig(doc, "gw1.test", keySettings(t, c.pkcs8), FromConfigOptions{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			got := spec.Targets[iqn].Clients[client].Auth
			if got.Password.Reveal() != "chapsecret123" || got.MutualPassword.Reveal() != "mutualsecret12" || spec.DiscoveryAuth.Password.Reveal() != "discsecret123" {
				t.Errorf("decrypted %q/%q/%q", got.Password.Reveal(), got.MutualPassword.Reveal(), spec.DiscoveryAuth.Password.Reveal())
			}
			// The plan carries the secrets to Apply, but never shows them.
			plan := lio.NewPlan(lio.State{}, mustBuild(t, spec))
			j, _ := json.Marshal(plan)
			for _, out := range []string{plan.String(), string(j)} {
				for _, secret := range []string{"chapsecret123", "mutualsecret12", "discsecret123"} {
					if strings.Contains(out, secret) {
						t.Errorf("plan shows %s", secret)
					}
				}
			}
		})
	}
}

func TestSpecFromConfigEncryptedCHAPErrors(t *testing.T) {
	const (
		client = "iqn.1994-05.com.example:client"
		iqn    = "iqn.2003-01.com.example:t1"
	)
	doc := testDoc(t)
	ct := encrypt(t, sha256.New, "chapsecret123")
	cl := doc.Targets[iqn].Clients[client]
	cl.Auth.Password, cl.Auth.PasswordEncryptionEnabled = ct, true

	noKey := settings.Defaults()
	noKey.CephConfigDir = t.TempDir()
	spec, err := SpecFromConfig(doc, "gw1.test", noKey, FromConfigOptions{Logger: quiet})
	if err == nil {
		t.Fatal("missing key: no error")
	}
	msg := err.Error()
	for _, want := range []string{"client " + client, "password", noKey.PrivKeyPath()} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, ct) || strings.Contains(msg, "chapsecret123") {
		t.Errorf("error shows the password: %q", msg)
	}
	if _, ok := spec.Targets[iqn].Clients[client]; ok {
		t.Error("a client whose password cannot be decrypted still gets an ACL")
	}

	// A different key: the ciphertext does not decrypt.
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, err = SpecFromConfig(doc, "gw1.test", nil, FromConfigOptions{Logger: quiet, Decrypt: func(s string) (string, error) {
		return chap.Decrypt(other, s)
	}})
	if err == nil || !strings.Contains(err.Error(), "does not decrypt") || strings.Contains(err.Error(), ct) {
		t.Errorf("wrong key: %v", err)
	}

	// Target auth that cannot be decrypted leaves the target unbuilt.
	doc = testDoc(t)
	ta := &doc.Targets[iqn].Auth
	ta.Username, ta.Password, ta.PasswordEncryptionEnabled = "tgt", "!!not base64!!", true
	spec, err = SpecFromConfig(doc, "gw1.test", keySettings(t, false), FromConfigOptions{Logger: quiet})
	st := mustBuild(t, spec)
	if err == nil || !strings.Contains(err.Error(), "target "+iqn+": auth: password: stored encrypted, but not valid base64") {
		t.Errorf("target auth: %v", err)
	}
	if len(st.Targets) != 0 {
		t.Errorf("target built without its CHAP: %+v", st.Targets)
	}
}

// TestSpecFromConfigNameRules: the Spec carries the configuration's name
// grammars, so Build skips a name config refuses even when it is a safe
// path component, and lio's messages quote names as config does.
func TestSpecFromConfigNameRules(t *testing.T) {
	const iqn = "iqn.2003-01.com.example:t1"
	spec, err := SpecFromConfig(testDoc(t), "gw1.test", nil, FromConfigOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	upper := "iqn.1994-05.com.example:UPPER"
	long := "iqn.1994-05.com.example:" + strings.Repeat("é", 200)
	ts := spec.Targets[iqn]
	ts.Clients[upper] = lio.ClientSpec{LUNs: map[string]int{}}
	ts.Clients[long] = lio.ClientSpec{LUNs: map[string]int{}}
	_, err = lio.Build(spec)
	if !errors.Is(err, config.ErrInvalidIQN) {
		t.Fatalf("Build with config's rules: %v, want ErrInvalidIQN", err)
	}
	for _, n := range []string{upper, long} {
		if !strings.Contains(err.Error(), config.QuoteName(n)) {
			t.Errorf("error does not quote %s as config does:\n%v", n, err)
		}
	}
	spec.Names = lio.NameRules{}
	if _, err := lio.Build(spec); err == nil || strings.Contains(err.Error(), config.QuoteName(upper)) || !strings.Contains(err.Error(), config.QuoteName(long)) {
		t.Errorf("without rules only the overlong name is refused: %v", err)
	}
}
