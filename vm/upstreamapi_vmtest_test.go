//go:build vmtest

package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"ceph-iscsi/config"
	"ceph-iscsi/rbd"
)

// TestGwcliUpstreamAPI drives our gwcli one-shot commands (`ceph-iscsi cli`, as an
// operator types them) against upstream's Python rbd-target-api (Debian's ceph-iscsi,
// unpacked by dist/dev/upstream.sh, never installed) on the guest's kernel: upstream
// builds LIO with rtslib, which only a real kernel has. A rolling upgrade has our gwcli
// on a gateway whose API is still upstream's. Each command's output, the configuration
// object upstream commits and the LIO objects upstream builds are checked, then `ls`.
const (
	upAPIIQN    = "iqn.2003-01.com.example.iscsi-gw:gwcli-upstream"
	upAPIClient = "iqn.1994-05.com.example:gwcli-upstream-client"
	upAPIPort   = 5002 // not TestAPIDaemon's 5000
	upAPIImage  = "gwcliup"
	upAPIDisk   = "rbd/" + upAPIImage
	upAPISO     = "rbd." + upAPIImage
	upAPISize   = 64 << 20
	upAPIUser   = "admin"
	upAPIPass   = "vmtestUpstreamApi9"
	// upstream's ConfigWatcher polls the epoch of "gateway.conf" whatever gateway_conf
	// says: the default object keeps upstream whole
	upAPIObject = "gateway.conf"
	// envUpstream is the unpacked package's root (vm/test.sh: dist/dev/upstream.sh).
	envUpstream = "VMTEST_UPSTREAM"
)

var upAPICHAP = chap{"gwcliupuser", "gwcliupPass1234", "", ""}

// upstreamAPI is one running upstream rbd-target-api and the settings our gwcli reads.
type upstreamAPI struct {
	*daemon
	cfg     string // iscsi-gateway.cfg, shared by upstream (as /etc/ceph's) and our cli
	bin     string // ceph-iscsi
	gateway string // this guest's name as upstream sees it (socket.getfqdn())
}

func TestGwcliUpstreamAPI(t *testing.T) {
	start := time.Now()
	if tcmuRunner(t) == 0 {
		t.Skip("no Ceph in this guest (CEPH_ISCSI_VM_RBD=0): upstream's rbd-target-api needs RADOS")
	}
	root := os.Getenv(envUpstream)
	if root == "" {
		t.Fatalf("%s unset: vm/test.sh unpacks upstream's package (dist/dev/upstream.sh) and passes its root", envUpstream)
	}
	bin := cephISCSIBin(t)
	gconn, ioctx := cephConn(t, start)
	requireNoUpstreamObjects(t)
	before := lioObjects(t)
	t.Cleanup(func() {
		// the next run of this guest's tests must not find this test's object or image
		_ = ioctx.Delete(upAPIObject)
		if err := rbd.Remove(context.Background(), gconn, "rbd", upAPIImage, rbd.RemoveOptions{}); err != nil {
			t.Logf("remove %s: %v", upAPIDisk, err)
		}
	})

	u := startUpstreamAPI(t, root, bin)
	step(t, start, "upstream rbd-target-api %d serving on 127.0.0.1:%d as gateway %q", u.cmd.Process.Pid, upAPIPort, u.gateway)
	t.Cleanup(func() { u.stop(t, before) })

	// target: upstream's GWTarget 'init' creates it in LIO and seeds the config
	u.must(t, "ok\n", "/iscsi-targets", "create", upAPIIQN)
	requireDir(t, "iscsi/"+upAPIIQN)
	doc := readUpstreamConf(t, ioctx)
	if tc := upTarget(t, doc); !tc.ACLEnabled || len(tc.Portals) != 0 {
		t.Fatalf("config after target create:\n%s", doc.Marshal())
	}
	step(t, start, "target %s created", upAPIIQN)

	// gateway: the first one must be this machine; upstream enables TPG 1 on its portal
	u.must(t, "OS version/package checks have been bypassed\nAdding gateway, sync'ing 0 disk(s) and 0 client(s)\nok\n",
		"/iscsi-targets/"+upAPIIQN+"/gateways", "create", u.gateway, localIP, "skipchecks=true")
	tpg := "iscsi/" + upAPIIQN + "/tpgt_1"
	requireDir(t, tpg+"/np/"+localIP+":3260")
	requireValue(t, tpg+"/enable", "1")
	doc = readUpstreamConf(t, ioctx)
	tc := upTarget(t, doc)
	if p, ok := tc.Portals[u.gateway]; !ok || !reflect.DeepEqual(p.PortalIPAddresses, []string{localIP}) ||
		!reflect.DeepEqual(tc.IPList, []string{localIP}) || doc.Gateways[u.gateway] == nil {
		t.Fatalf("config after gateway create (want %s with portal %s):\n%s", u.gateway, localIP, doc.Marshal())
	}
	step(t, start, "gateway %s: TPG 1 enabled on %s:3260", u.gateway, localIP)

	// disk: upstream creates the image, and a storage object only long enough to get
	// its WWN (lun.allocate(keep_dev_in_lio=False)): LIO holds it once a target maps it
	u.must(t, "ok\n", "/disks", "create", "pool=rbd", "image="+upAPIImage, "size=64M")
	if size, err := rbd.Size(gconn, "rbd", upAPIImage); err != nil || size != upAPISize {
		t.Fatalf("%s after disk create: size %d, %v; want %d", upAPIDisk, size, err, upAPISize)
	}
	if m, _ := filepath.Glob(filepath.Join(targetDir, "core", "*", upAPISO)); len(m) > 0 {
		t.Errorf("storage object in LIO before any target maps the disk: %v", m)
	}
	doc = readUpstreamConf(t, ioctx)
	if d, ok := doc.Disks[upAPIDisk]; !ok || d.Pool != "rbd" || d.Image != upAPIImage || d.Backstore != "user:rbd" || d.WWN == "" {
		t.Fatalf("config after disk create:\n%s", doc.Marshal())
	}
	step(t, start, "disk %s created: 64 MiB image, WWN %s", upAPIDisk, doc.Disks[upAPIDisk].WWN)

	// the disk becomes LUN 0 of the target, owned by this gateway, on its user:rbd object
	u.must(t, "ok\n", "/iscsi-targets/"+upAPIIQN+"/disks", "add", upAPIDisk)
	so := soDir(t, upAPISO)
	if hba := filepath.Base(filepath.Dir(so)); !strings.HasPrefix(hba, "user_") {
		t.Errorf("%s: not a user backstore", so)
	}
	if info := readTrim(t, so+"/info"); !strings.Contains(info, "rbd/"+upAPIDisk) {
		t.Errorf("%s/info = %q, want the rbd/%s cfgstring", so, info, upAPIDisk)
	}
	if got := readTrim(t, so+"/wwn/vpd_unit_serial"); !strings.HasSuffix(got, doc.Disks[upAPIDisk].WWN) {
		t.Errorf("%s serial %q, want the config's WWN %s", so, got, doc.Disks[upAPIDisk].WWN)
	}
	lun := tpg + "/lun/lun_0"
	requireDir(t, lun)
	if links, _ := filepath.Glob(filepath.Join(targetDir, lun, "*")); !hasLinkTo(links, so) {
		t.Errorf("%s does not link to %s: %v", lun, so, links)
	}
	doc = readUpstreamConf(t, ioctx)
	if l, ok := upTarget(t, doc).Disks[upAPIDisk]; !ok || l.LunID != 0 || doc.Disks[upAPIDisk] == nil ||
		doc.Disks[upAPIDisk].Owner == nil || *doc.Disks[upAPIDisk].Owner != u.gateway {
		t.Fatalf("config after disk add (want LUN 0 owned by %s):\n%s", u.gateway, doc.Marshal())
	}
	step(t, start, "%s is LUN 0 of %s on %s", upAPIDisk, upAPIIQN, so)

	// client: an ACL, then its CHAP and its LUN
	hosts := "/iscsi-targets/" + upAPIIQN + "/hosts"
	client := hosts + "/" + upAPIClient
	acl := tpg + "/acls/" + upAPIClient
	u.must(t, "ok\n", hosts, "create", upAPIClient)
	requireDir(t, acl)
	u.must(t, "ok\n", client, "auth", "username="+upAPICHAP.user, "password="+upAPICHAP.pass)
	requireValue(t, acl+"/auth/userid", upAPICHAP.user)
	requireValue(t, acl+"/auth/password", upAPICHAP.pass)
	u.must(t, "ok\n", client, "disk", "add", upAPIDisk)
	requireDir(t, acl+"/lun_0")
	doc = readUpstreamConf(t, ioctx)
	c := upTarget(t, doc).Clients[upAPIClient]
	if c == nil {
		t.Fatalf("client %s not in the config:\n%s", upAPIClient, doc.Marshal())
	}
	if l, mapped := c.Luns[upAPIDisk]; !mapped || l.LunID != 0 || c.Auth.Username != upAPICHAP.user {
		t.Fatalf("config after the client commands:\n%s", doc.Marshal())
	}
	step(t, start, "client %s: ACL with CHAP and LUN 0", upAPIClient)
	if t.Failed() {
		return
	}

	// export prints what upstream's GET /api/config answers: the committed object
	var exported, stored map[string]any
	if err := json.Unmarshal([]byte(u.must(t, "", "/", "export")), &exported); err != nil {
		t.Fatalf("export is not JSON: %v", err)
	}
	if err := json.Unmarshal(readObject(t, ioctx, upAPIObject), &stored); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(exported, stored) {
		t.Errorf("export differs from the RADOS object %s:\n%v\nstored\n%v", upAPIObject, exported, stored)
	}

	ls := u.must(t, "", "ls")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^o- / [. ]*\[\.\.\.\]$`),
		regexp.MustCompile(`(?m)^  o- disks [. ]*\[64M, Disks: 1\]$`),
		regexp.MustCompile(`(?m)^  \| o- rbd [. ]*\[rbd \(64M\)\]$`),
		regexp.MustCompile(`(?m)^  \|   o- ` + upAPIImage + ` [. ]*\[rbd/` + upAPIImage + ` \(\w+, 64M\)\]$`),
		regexp.MustCompile(`(?m)^  o- iscsi-targets [. ]*\[DiscoveryAuth: None, Targets: 1\]$`),
		regexp.MustCompile(`(?m)^    o- ` + regexp.QuoteMeta(upAPIIQN) + ` [. ]*\[Auth: None, Gateways: 1\]$`),
		regexp.MustCompile(`(?m)^      \| o- ` + regexp.QuoteMeta(upAPIDisk) + ` [. ]*\[Owner: ` + regexp.QuoteMeta(u.gateway) + `, Lun: 0\]$`),
		regexp.MustCompile(`(?m)^      o- gateways [. ]*\[Up: 1/1, Portals: 1\]$`),
		regexp.MustCompile(`(?m)^      \| o- ` + regexp.QuoteMeta(u.gateway) + ` [. ]*\[` + regexp.QuoteMeta(localIP) + ` \(UP\)\]$`),
		regexp.MustCompile(`(?m)^      o- hosts [. ]*\[Auth: ACL_ENABLED, Hosts: 1\]$`),
		regexp.MustCompile(`(?m)^        o- ` + regexp.QuoteMeta(upAPIClient) + ` [. ]*\[Auth: CHAP, Disks: 1\(64M\)\]$`),
		regexp.MustCompile(`(?m)^          o- lun 0 [. ]*\[` + regexp.QuoteMeta(upAPIDisk) + `\(64M\), Owner: ` + regexp.QuoteMeta(u.gateway) + `\]$`),
	} {
		if !want.MatchString(ls) {
			t.Errorf("ls lacks a line matching %s:\n%s", want, ls)
		}
	}
	step(t, start, "export equals the RADOS object; ls renders the group:\n%s", ls)
}

// startUpstreamAPI runs upstream's rbd-target-api from the unpacked package with python3,
// its /etc/ceph (where it reads iscsi-gateway.cfg) replaced by a private mount, and waits
// until it serves.
func startUpstreamAPI(t *testing.T, root, bin string) *upstreamAPI {
	t.Helper()
	script := filepath.Join(root, "usr", "bin", "rbd-target-api")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("upstream's package is not unpacked in %s (make deps, dist/dev/upstream.sh): %v", root, err)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c",
		"import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography, requests").CombinedOutput(); err != nil {
		t.Fatalf("upstream's Python modules are missing (make deps): %v: %s", err, out)
	}
	// upstream names this gateway socket.getfqdn(); the first gateway must be it
	out, err := exec.Command("/usr/bin/python3", "-c", "import socket; print(socket.getfqdn())").Output()
	if err != nil {
		t.Fatal(err)
	}
	gateway := strings.TrimSpace(string(out))
	cephDir := os.Getenv("VMTEST_CEPH_DIR") // ceph.conf and the admin keyring
	etc := t.TempDir()
	cfg := filepath.Join(etc, "iscsi-gateway.cfg")
	body := fmt.Sprintf(`[config]
cluster_name = ceph
cluster_client_name = client.admin
ceph_config_dir = %s
pool = rbd
gateway_conf = %s
api_secure = false
api_host = 0.0.0.0
api_port = %d
api_user = %s
api_password = %s
trusted_ip_list = 127.0.0.1,%s
minimum_gateways = 1
log_to_file = false
log_to_stderr = true
`, cephDir, upAPIObject, upAPIPort, upAPIUser, upAPIPass, localIP)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// Upstream calls its own API by its name (targetlun: call_api([this_host()] ...)), as
	// a gateway's name resolves in a real group: in upstream's namespace only, the name is
	// the portal address, where the API listens too (and on 127.0.0.1, for 'localhost').
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	hostsFile := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hostsFile, append([]byte(localIP+" "+gateway+"\n"), hosts...), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c",
		fmt.Sprintf("mount --bind %q /etc/ceph && mount --bind %q /etc/hosts && exec /usr/bin/python3 %q", etc, hostsFile, script))
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "usr", "lib", "python3", "dist-packages"))
	// python3 imports, `ceph osd blocklist ls` and the config object's creation: a minute
	// or more under TCG on a loaded host
	d := startDaemon(t, "upstream rbd-target-api", cmd, "upstream-api.log")
	d.waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api", upAPIPort), 300*time.Second)
	return &upstreamAPI{daemon: d, cfg: cfg, bin: bin, gateway: gateway}
}

// must runs one gwcli one-shot command, which must exit 0 with nothing on stderr; want
// "" skips the comparison of its output.
func (u *upstreamAPI) must(t *testing.T, want string, words ...string) string {
	t.Helper()
	args := append([]string{"cli", "--config", u.cfg, "--gateway-name", u.gateway,
		"--peer", fmt.Sprintf("%s=http://127.0.0.1:%d", u.gateway, upAPIPort)}, words...)
	cmd := exec.Command(u.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	t.Logf("gwcli %s: %.2fs", strings.Join(words, " "), time.Since(begin).Seconds())
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("gwcli %s: %v\nstdout:\n%s\nstderr:\n%s\nupstream's log:\n%s", strings.Join(words, " "), err,
			stdout.String(), stderr.String(), u.log(t))
	}
	if want != "" && stdout.String() != want {
		t.Fatalf("gwcli %s printed %q, want %q", strings.Join(words, " "), stdout.String(), want)
	}
	// export prints the document, CHAP secrets included, as upstream's does; nothing
	// prints the API password
	if strings.Contains(stdout.String(), upAPIPass) ||
		words[len(words)-1] != "export" && strings.Contains(stdout.String(), upAPICHAP.pass) {
		t.Errorf("gwcli %s printed a secret", strings.Join(words, " "))
	}
	return stdout.String()
}

// stop sends SIGTERM: upstream's handler removes its LIO objects. LIO must then hold what
// it held before the test, or later tests would find this one's target.
func (u *upstreamAPI) stop(t *testing.T, before []string) {
	t.Helper()
	if _, _, err := u.sigterm(180 * time.Second); err != nil {
		t.Error(err)
	}
	if after := lioObjects(t); !reflect.DeepEqual(after, before) {
		t.Errorf("LIO after upstream's SIGTERM differs from before its start:\nbefore %v\nafter  %v", before, after)
		// leave LIO clean for the next tests: our restore tears down what the config
		// object describes, and what a failed request left outside it goes by rmdir
		out, err := exec.Command(u.bin, "restore", "--teardown", "--config", u.cfg, "--gateway-name", u.gateway).CombinedOutput()
		t.Logf("restore --teardown: %v\n%s", err, out)
		left := lioObjects(t)
		slices.Reverse(left) // storage objects before their HBA
		for _, rel := range left {
			if !slices.Contains(before, rel) {
				if err := os.Remove(filepath.Join(targetDir, rel)); err != nil {
					t.Logf("rmdir %s: %v", rel, err)
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("upstream rbd-target-api's log:\n%s", u.log(t))
	}
}

// requireNoUpstreamObjects checks LIO holds nothing of this test before it starts.
func requireNoUpstreamObjects(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(targetDir, "iscsi", upAPIIQN)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target iscsi/%s already in LIO (%v)", upAPIIQN, err)
	}
	if m, _ := filepath.Glob(filepath.Join(targetDir, "core", "*", upAPISO)); len(m) > 0 {
		t.Fatalf("storage object already in LIO: %v", m)
	}
}

func hasLinkTo(links []string, dir string) bool {
	for _, l := range links {
		if tgt, err := filepath.EvalSymlinks(l); err == nil && tgt == dir {
			return true
		}
	}
	return false
}

func readObject(t *testing.T, ioctx *rados.IOContext, object string) []byte {
	t.Helper()
	st, err := ioctx.Stat(object)
	if err != nil {
		t.Fatalf("stat %s: %v", object, err)
	}
	b := make([]byte, st.Size)
	n, err := ioctx.Read(object, b, 0)
	if err != nil {
		t.Fatalf("read %s: %v", object, err)
	}
	return b[:n]
}

// readUpstreamConf reads what upstream's API committed, with our decoder.
func readUpstreamConf(t *testing.T, ioctx *rados.IOContext) *config.Doc {
	t.Helper()
	doc, err := config.Parse(readObject(t, ioctx, upAPIObject))
	if err != nil {
		t.Fatalf("%s: %v", upAPIObject, err)
	}
	return doc
}

func upTarget(t *testing.T, doc *config.Doc) *config.Target {
	t.Helper()
	tc := doc.Targets[upAPIIQN]
	if tc == nil {
		t.Fatalf("target %s not in the config:\n%s", upAPIIQN, doc.Marshal())
	}
	return tc
}
