package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
)

// envExecMain makes the test binary run the command line instead of the
// tests: the daemon tests start it as rbd-target-api processes, which get
// their own signals and exit codes.
const envExecMain = "CEPH_ISCSI_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envExecMain) == "1" {
		os.Exit(Run(append([]string{"ceph-iscsi"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	devcluster.Main(m)
}

const (
	testGateway = "gw1.test"
	testIQN     = "iqn.2003-01.com.example.restore:t1"
	testClient  = "iqn.1994-05.com.example:restore-client"
	imageSize   = 64 << 20
)

// Secrets seeded into the config; no output may contain them.
var testSecrets = []string{"Chap-Secret-77aa", "Mutual-Secret-88bb", "Disc-Secret-99cc"}

// fixture is one test's cluster objects and files: a settings file pointing at its
// own gateway.conf object, an RBD image, and an empty emulated configfs root.
type fixture struct {
	t        *testing.T
	settings string
	object   string
	image    string
	diskID   string
	root     string
	store    *rados.Store
	conn     *rados.Conn
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := devcluster.Require(t)
	suffix := fmt.Sprintf("%s.%08x", strings.NewReplacer("/", "_").Replace(t.Name()), rand.Uint32())
	fx := &fixture{
		t:      t,
		object: "gateway.conf.restore." + suffix,
		image:  "restore-" + strings.ToLower(suffix),
		root:   t.TempDir(),
	}
	fx.diskID = "rbd/" + fx.image

	gc, err := gorados.NewConnWithUser("admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.ReadConfigFile(c.Conf); err != nil {
		t.Fatal(err)
	}
	if err := gc.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gc.Shutdown)
	io, err := gc.OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(io.Destroy)
	if err := gorbd.CreateImage(io, fx.image, imageSize, gorbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create image: %v", err)
	}
	t.Cleanup(func() {
		_ = gorbd.RemoveImage(io, fx.image)
		_ = io.Delete(fx.object)
	})

	fx.settings = fx.writeSettings("rbd")

	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	fx.conn = conn
	fx.store, err = rados.OpenStore(t.Context(), conn, rados.StoreOptions{
		Pool: "rbd", Object: fx.object,
		Upgrade: config.UpgradeOptions{Gateway: config.Identity{FQDN: testGateway, ShortName: "gw1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fx.store.Close)
	fx.commit(fx.seed)
	return fx
}

// writeSettings writes a settings file for this fixture's object in pool.
func (fx *fixture) writeSettings(pool string) string {
	fx.t.Helper()
	p := filepath.Join(fx.t.TempDir(), "iscsi-gateway.cfg")
	text := fmt.Sprintf("[config]\npool = %s\ngateway_conf = %s\ncluster_client_name = client.admin\napi_password = Api-Secret-00dd\n", pool, fx.object)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		fx.t.Fatal(err)
	}
	return p
}

func (fx *fixture) commit(m rados.Mutation) {
	fx.t.Helper()
	if _, err := fx.store.Commit(fx.t.Context(), m); err != nil {
		fx.t.Fatalf("commit: %v", err)
	}
}

// seed is what upstream would have committed after: create target, add gateway
// gw1.test (127.0.0.1), create disk, add it to the target, add a CHAP client with
// the LUN, set discovery CHAP.
func (fx *fixture) seed(doc *config.Doc) error {
	now := time.Now()
	ts := config.Timestamp(now)
	owner, alloc := testGateway, testGateway
	doc.PutGateway(testGateway, &config.Gateway{ActiveLuns: 1, Created: ts, Updated: ts})
	doc.PutDisk(fx.diskID, &config.Disk{
		Pool: "rbd", Image: fx.image, PoolID: 1, WWN: "6a3cba94-bbf3-4d3f-8672-b3fe83c8bd14",
		Backstore: lio.BackstoreUserRBD, BackstoreObjectName: "rbd." + fx.image,
		AllocatingHost: &alloc, Owner: &owner, Controls: map[string]any{}, Created: ts, Updated: ts,
	})
	t, err := doc.AddTarget(testIQN, now)
	if err != nil {
		return err
	}
	t.IPList = []string{"127.0.0.1"}
	t.Portals[testGateway] = &config.Portal{
		PortalIPAddresses: []string{"127.0.0.1"}, GatewayIPList: []string{"127.0.0.1"},
		InactivePortalIPs: []string{}, TPGs: 1,
	}
	t.Disks[fx.diskID] = config.LunRef{LunID: 0}
	c, err := doc.AddClient(testIQN, testClient, now)
	if err != nil {
		return err
	}
	c.Auth = config.Auth{Username: "restoreuser", Password: testSecrets[0], MutualUsername: "mutualuser", MutualPassword: testSecrets[1]}
	c.Luns[fx.diskID] = config.LunRef{LunID: 0}
	doc.DiscoveryAuth = config.Auth{Username: "discuser", Password: testSecrets[2]}
	return nil
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs "ceph-iscsi restore" in-process as gateway gw1.test against the fixture.
func (fx *fixture) run(args ...string) result {
	fx.t.Helper()
	return fx.runWith(fx.settings, append([]string{"--gateway-name", testGateway}, args...)...)
}

func (fx *fixture) runWith(settingsPath string, args ...string) result {
	fx.t.Helper()
	var out, errb bytes.Buffer
	argv := append([]string{"ceph-iscsi", "restore", "--config", settingsPath, "--configfs-root", fx.root}, args...)
	code := Run(argv, &out, &errb)
	r := result{code, out.String(), errb.String()}
	for _, s := range append(testSecrets, "Api-Secret-00dd") {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			fx.t.Errorf("restore %v printed secret %q:\nstdout:\n%s\nstderr:\n%s", args, s, r.stdout, r.stderr)
		}
	}
	return r
}

func (fx *fixture) observe() lio.State {
	fx.t.Helper()
	f, err := lio.NewFS(fx.root)
	if err != nil {
		fx.t.Fatal(err)
	}
	st, err := lio.Observe(f)
	if err != nil {
		fx.t.Fatal(err)
	}
	return st
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, text)
		}
	}
}

func expectCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func decodeReport(t *testing.T, r result) restoreReport {
	t.Helper()
	var rep struct {
		restoreReport
		Plan []map[string]string `json:"plan"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, r.stdout)
	}
	rep.restoreReport.Plan = lio.Plan{}
	for _, o := range rep.Plan {
		rep.restoreReport.Plan.Ops = append(rep.restoreReport.Plan.Ops, lio.Op{Kind: lio.OpKind(o["op"]), Path: o["path"], Value: o["value"]})
	}
	return rep.restoreReport
}

func TestRestoreLifecycle(t *testing.T) {
	fx := newFixture(t)
	so := "target/core/user_0/rbd." + fx.image
	tpg := "target/iscsi/" + testIQN + "/tpgt_1"

	// Dry run: a full plan, nothing in LIO.
	r := fx.run("--dry-run")
	expectCode(t, r, 0)
	mustContain(t, "dry-run output", r.stdout,
		"gateway gw1.test: config rbd/"+fx.object+" epoch 1, emulated configfs "+fx.root,
		"mkdir "+so,
		fmt.Sprintf(`write %s/control "dev_config=rbd/rbd/%s;osd_op_timeout=30"`, so, fx.image),
		fmt.Sprintf(`write %s/control "dev_size=%d"`, so, imageSize),
		"mkdir "+tpg+"/acls/"+testClient,
		`write `+tpg+`/acls/`+testClient+`/auth/password "<redacted>"`,
		`write target/iscsi/discovery_auth/password "<redacted>"`,
		"enable "+tpg,
		"mkdir "+tpg+"/np/127.0.0.1:3260",
		"dry run: nothing applied")
	if st := fx.observe(); len(st.StorageObjects) != 0 || len(st.Targets) != 0 {
		t.Fatalf("dry run changed LIO: %+v", st)
	}

	// Restore.
	r = fx.run()
	expectCode(t, r, 0)
	mustContain(t, "restore output", r.stdout, "plan: ", ", 0 failed, 0 skipped")
	st := fx.observe()
	if len(st.StorageObjects) != 1 || st.StorageObjects[0].Size != imageSize || st.StorageObjects[0].WWN != "6a3cba94-bbf3-4d3f-8672-b3fe83c8bd14" {
		t.Fatalf("storage objects after restore: %+v", st.StorageObjects)
	}
	if len(st.Targets) != 1 || len(st.Targets[0].TPGs) != 1 || !st.Targets[0].TPGs[0].Enabled {
		t.Fatalf("targets after restore: %+v", st.Targets)
	}
	acls := st.Targets[0].TPGs[0].ACLs
	if len(acls) != 1 || acls[0].Auth == nil || acls[0].Auth.Password.Reveal() != testSecrets[0] || len(acls[0].MappedLUNs) != 1 {
		t.Fatalf("ACL after restore: %+v", acls)
	}

	// Again: in sync, nothing applied.
	r = fx.run()
	expectCode(t, r, 0)
	mustContain(t, "second restore", r.stdout, "in sync: nothing to do")
	if strings.Contains(r.stdout, "applied:") {
		t.Errorf("second restore applied something:\n%s", r.stdout)
	}
	rep := decodeReport(t, fx.run("--json"))
	if !rep.InSync || len(rep.Plan.Ops) != 0 || rep.Applied != nil || !rep.Member || !rep.Emulated || rep.Gateway != testGateway {
		t.Errorf("in-sync JSON report: %+v", rep)
	}

	// A config change is picked up: the client goes, so does its ACL.
	fx.commit(func(doc *config.Doc) error { return doc.RemoveClient(testIQN, testClient, time.Now()) })
	r = fx.run("--json")
	expectCode(t, r, 0)
	mustContain(t, "JSON output", r.stdout, `"op": "rmdir"`)
	rep = decodeReport(t, r)
	if rep.InSync || rep.Applied == nil || rep.Applied.Done != len(rep.Plan.Ops) || rep.Applied.Failed != 0 || rep.Epoch != 2 {
		t.Errorf("JSON report after removing the client: %+v", rep)
	}
	if acls := fx.observe().Targets[0].TPGs[0].ACLs; len(acls) != 0 {
		t.Errorf("ACLs after the client was removed: %+v", acls)
	}

	// Teardown: a dry run first, then for real, then nothing left to do.
	r = fx.run("--teardown", "--dry-run")
	expectCode(t, r, 0)
	mustContain(t, "teardown dry run", r.stdout, "rmdir "+so, "rmdir target/iscsi/"+testIQN, "dry run: nothing applied")
	if st := fx.observe(); len(st.StorageObjects) != 1 {
		t.Fatalf("teardown dry run changed LIO: %+v", st)
	}
	r = fx.run("--teardown")
	expectCode(t, r, 0)
	mustContain(t, "teardown", r.stdout, ", 0 failed, 0 skipped")
	if st := fx.observe(); len(st.StorageObjects) != 0 || len(st.Targets) != 0 {
		t.Fatalf("LIO after teardown: %+v", st)
	}
	r = fx.run("--teardown")
	expectCode(t, r, 0)
	mustContain(t, "second teardown", r.stdout, "nothing to tear down")
}

func TestRestoreBadSettings(t *testing.T) {
	p := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	if err := os.WriteFile(p, []byte("[config]\napi_port = seventy\napi_password = Api-Secret-00dd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Run([]string{"ceph-iscsi", "restore", "--config", p, "--configfs-root", t.TempDir()}, &out, &errb)
	if code != exitFatal {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFatal, errb.String())
	}
	mustContain(t, "stderr", errb.String(), "ceph-iscsi: restore: settings: ", p, "api_port = seventy")
	if strings.Contains(errb.String()+out.String(), "Api-Secret-00dd") {
		t.Errorf("api_password printed:\n%s", errb.String())
	}
}

func TestRestoreStartupErrors(t *testing.T) {
	fx := newFixture(t)
	r := fx.runWith(fx.writeSettings("no-such-pool-restore"), "--gateway-name", testGateway)
	expectCode(t, r, exitFatal)
	mustContain(t, "stderr", r.stderr, "ceph-iscsi: restore: config object no-such-pool-restore/"+fx.object, "no-such-pool-restore")

	t.Setenv(envCephConf, filepath.Join(t.TempDir(), "missing.conf"))
	r = fx.run()
	expectCode(t, r, exitFatal)
	mustContain(t, "stderr", r.stderr, "ceph-iscsi: restore: ", "missing.conf")

	t.Setenv(envCephConf, devcluster.Require(t).Conf)
	r = fx.run("--gateway-name", "bad name")
	expectCode(t, r, exitFatal)
	mustContain(t, "stderr", r.stderr, "gateway identity", `"bad name"`)
}

func TestRestoreNotAMember(t *testing.T) {
	fx := newFixture(t)
	r := fx.runWith(fx.settings, "--gateway-name", "stranger.test")
	expectCode(t, r, 0)
	mustContain(t, "stdout", r.stdout, "in sync: nothing to do")
	mustContain(t, "stderr", r.stderr, "not in the configuration", "gw1.test")
}

func TestRestoreBlockBackstore(t *testing.T) {
	fx := newFixture(t)
	fx.commit(func(doc *config.Doc) error {
		doc.MutDisk(fx.diskID).Backstore = lio.BackstoreBlock
		return nil
	})
	r := fx.run("--dry-run")
	expectCode(t, r, 0)
	mustContain(t, "dry run", r.stdout, "mkdir target/core/iblock_0/rbd."+fx.image, "/dev/rbd/rbd/"+fx.image)

	// On an emulated configfs nothing is mapped: the iblock device is the
	// path udev would link.
	r = fx.run()
	expectCode(t, r, 0)
	st := fx.observe()
	if len(st.StorageObjects) != 1 || st.StorageObjects[0].Plugin != lio.PluginBlock || st.StorageObjects[0].Config != "/dev/rbd/rbd/"+fx.image {
		t.Fatalf("block storage object: %+v", st.StorageObjects)
	}

	// A second gateway exporting the block disk is refused: krbd does not
	// fail over safely.
	fx.commit(func(doc *config.Doc) error {
		tg := doc.MutTarget(testIQN)
		tg.IPList = append(tg.IPList, "192.0.2.20")
		tg.Portals["gw2.test"] = &config.Portal{PortalIPAddresses: []string{"192.0.2.20"}, GatewayIPList: tg.IPList, InactivePortalIPs: []string{}, TPGs: 1}
		doc.PutGateway("gw2.test", &config.Gateway{Created: doc.Created, Updated: doc.Updated})
		return nil
	})
	r = fx.run()
	expectCode(t, r, exitFailure)
	mustContain(t, "stderr", r.stderr, "disk "+fx.diskID, "export not failover safe", "can be exported by one gateway only, not 2", "LIO keeps them as they are")
	// the disk is held as it was: still exported here, not re-planned
	if after := fx.observe(); len(after.StorageObjects) != 1 || len(after.Targets) != 1 || len(after.Targets[0].TPGs[0].LUNs) != 1 {
		t.Fatalf("a held disk changed in LIO: %+v", after)
	}
}

func TestRestoreMissingImageIsSkipped(t *testing.T) {
	fx := newFixture(t)
	fx.commit(func(doc *config.Doc) error {
		doc.MutDisk(fx.diskID).Image = fx.image + "-gone"
		return nil
	})
	r := fx.run()
	expectCode(t, r, 0)
	mustContain(t, "stderr", r.stderr, "skipping disk", fx.diskID)
	st := fx.observe()
	if len(st.StorageObjects) != 0 || len(st.Targets) != 1 || len(st.Targets[0].TPGs[0].LUNs) != 0 {
		t.Errorf("LIO with the image missing: %+v", st)
	}
}

func TestRestoreApplyFailure(t *testing.T) {
	fx := newFixture(t)
	// A fabric directory without the files the kernel creates in it: every
	// discovery-auth write fails, the rest goes on.
	if err := os.MkdirAll(filepath.Join(fx.root, "target", "iscsi"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := fx.run()
	expectCode(t, r, exitFailure)
	mustContain(t, "stdout", r.stdout, "failed:  write target/iscsi/discovery_auth/userid")
	mustContain(t, "stderr", r.stderr, "LIO operations failed", "running restore again completes them", "discovery_auth/password \"<redacted>\"")
	if st := fx.observe(); len(st.StorageObjects) != 1 || len(st.Targets) != 1 {
		t.Errorf("independent ops did not run: %+v", st)
	}
}

// TestRestoreConfigKeySettings resolves a config:// value through the cluster, as
// upstream does for secrets kept out of the settings file.
func TestRestoreConfigKeySettings(t *testing.T) {
	fx := newFixture(t)
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: devcluster.Require(t).Conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	key := "iscsi/restore-test/" + fx.object
	if err := conn.ConfigKeySet(key, fx.object); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.MonCommand(map[string]any{"prefix": "config-key rm", "key": key}) })
	write := func(k string) string {
		p := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
		if err := os.WriteFile(p, []byte("[config]\ngateway_conf = config://"+k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := fx.runWith(write(key), "--gateway-name", testGateway, "--dry-run")
	expectCode(t, r, 0)
	mustContain(t, "stdout", r.stdout, "config rbd/"+fx.object+" epoch 1")

	r = fx.runWith(write(key+"-missing"), "--gateway-name", testGateway, "--dry-run")
	expectCode(t, r, exitFatal)
	mustContain(t, "stderr", r.stderr, "ceph-iscsi: restore: settings: ", "gateway_conf", key+"-missing")
}
