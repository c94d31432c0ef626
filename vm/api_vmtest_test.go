//go:build vmtest

package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/rbd"
)

// TestAPIDaemon runs `ceph-iscsi api` against the guest's kernel as an
// operator would run rbd-target-api: a settings file, the binary, and curl.
// Everything LIO holds is built by the daemon from what the REST calls
// commit; the test only reads configfs, logs in with open-iscsi and reads the
// image through librbd.
const (
	apiIQN      = "iqn.2003-01.com.example.iscsi-gw:apidaemon"
	apiClient   = "iqn.1994-05.com.example:api-client"
	apiGateway  = "vmgw"
	apiListen   = "127.0.0.1:5000"
	apiPool     = "rbd"
	apiImage    = "apivm1"
	apiDisk     = apiPool + "/" + apiImage
	apiSO       = apiPool + "." + apiImage // upstream's "pool.image" storage object
	apiSize     = 64 << 20
	apiUser     = "admin"
	apiPassword = "vmtestApiSecret77"
	apiObject   = "vmtest-api.conf"
	apiIface    = "apid"
)

var apiCHAP = chap{"apiclient01", "apiChapPass123", "apitarget01", "apiMutualPw567"}

// apiDaemon is one running `ceph-iscsi api`.
type apiDaemon struct{ *daemon }

// apiSettings writes the daemon's iscsi-gateway.cfg. api_port matches
// --listen only for tidiness: there is no peer to reach.
func apiSettings(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	body := fmt.Sprintf(`[config]
cluster_name = ceph
cluster_client_name = client.admin
pool = %s
gateway_conf = %s
ceph_config_dir = /etc/ceph
api_secure = false
api_port = 5000
api_user = %s
api_password = %s
trusted_ip_list = 127.0.0.1
minimum_gateways = 1

[device_status]
status_check_interval = 1
`, apiPool, apiObject, apiUser, apiPassword)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startAPIDaemon starts the daemon and waits until GET /api answers.
func startAPIDaemon(t *testing.T, bin, cfg string) *apiDaemon {
	t.Helper()
	d := startDaemon(t, "api daemon", exec.Command(bin, "api", "--config", cfg, "--gateway-name", apiGateway,
		"--listen", apiListen, "--local-addr", localIP), "api-daemon.log")
	d.waitHTTP(t, "http://"+apiListen+"/api", 120*time.Second)
	return &apiDaemon{d}
}

// terminate sends SIGTERM and returns the exit code and how long the
// shutdown (HTTP drain plus LIO teardown) took.
func (d *apiDaemon) terminate(t *testing.T) (int, time.Duration) {
	t.Helper()
	code, took, err := d.sigterm(180 * time.Second)
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, d.log(t))
	}
	return code, took
}

// curl runs one request the way an operator does. The credentials and the
// form travel in a curl config on stdin (-K -), so no secret is on the
// command line; the form is url-encoded as curl's --data-urlencode does.
func (d *apiDaemon) curl(t *testing.T, user, pass, method, path string, form ...string) (int, string) {
	t.Helper()
	q := func(s string) string { return strconv.Quote(s) } // curl's config quoting is a subset of Go's
	var c strings.Builder
	fmt.Fprintf(&c, "silent\nshow-error\nmax-time = 300\nuser = %s\nrequest = %s\nurl = %s\n",
		q(user+":"+pass), q(method), q("http://"+apiListen+path))
	c.WriteString("write-out = \"\\n%{http_code}\"\n")
	for _, kv := range form {
		fmt.Fprintf(&c, "data-urlencode = %s\n", q(kv))
	}
	cmd := exec.Command("curl", "-K", "-")
	cmd.Stdin = strings.NewReader(c.String())
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("curl %s %s: %v: %s", method, path, err, stderr)
	}
	body, code, ok := cutLast(string(out), "\n")
	status, cerr := strconv.Atoi(code)
	if !ok || cerr != nil {
		t.Fatalf("curl %s %s: no status in output %q", method, path, out)
	}
	t.Logf("curl %s %s: %d in %.2fs: %s", method, path, status, time.Since(start).Seconds(), strings.TrimSpace(body))
	return status, body
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// put is a request that must succeed with 200.
func (d *apiDaemon) put(t *testing.T, path string, form ...string) {
	t.Helper()
	if status, body := d.curl(t, apiUser, apiPassword, http.MethodPut, path, form...); status != http.StatusOK {
		t.Fatalf("PUT %s: %d %s; daemon log:\n%s", path, status, body, d.log(t))
	}
}

// requireDir fails unless p (relative to targetDir) exists.
func requireDir(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(targetDir, p)); err != nil {
		t.Fatalf("LIO: %v", err)
	}
}

func requireValue(t *testing.T, p, want string) {
	t.Helper()
	if got := readTrim(t, filepath.Join(targetDir, p)); got != want {
		t.Errorf("LIO %s = %q, want %q", p, got, want)
	}
}

// requireNoAPIObjects checks LIO holds nothing of this test: no target, no
// storage object, and not the HBA that held it (hba "" skips that).
func requireNoAPIObjects(t *testing.T, hba string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(targetDir, "iscsi", apiIQN)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target iscsi/%s still in LIO (%v)", apiIQN, err)
	}
	if m, _ := filepath.Glob(filepath.Join(targetDir, "core", "*", apiSO)); len(m) > 0 {
		t.Errorf("storage object still in LIO: %v", m)
	}
	if hba != "" {
		if _, err := os.Stat(filepath.Join(targetDir, "core", hba)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("HBA core/%s still in LIO (%v)", hba, err)
		}
	}
}

// lioObjects lists the targets, HBAs and storage objects in LIO, relative to
// targetDir: what the daemon's teardown must restore exactly.
func lioObjects(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"iscsi/*", "core/*", "core/*/*"} {
		m, err := filepath.Glob(filepath.Join(targetDir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			rel, _ := filepath.Rel(targetDir, p)
			if fi, err := os.Lstat(p); err == nil && fi.IsDir() &&
				rel != "iscsi/discovery_auth" && rel != "core/alua" && !strings.HasPrefix(rel, "core/alua/") {
				out = append(out, rel)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestAPIDaemon(t *testing.T) {
	start := time.Now()
	if tcmuRunner(t) == 0 {
		t.Skip("no Ceph in this guest (CEPH_ISCSI_VM_RBD=0): the api daemon needs RADOS")
	}
	bin := cephISCSIBin(t)
	gconn, ioctx := cephConn(t, start)
	requireNoAPIObjects(t, "")
	before := lioObjects(t)
	if len(before) > 0 {
		t.Logf("LIO before the daemon starts (left by earlier tests): %v", before)
	}
	cfg := apiSettings(t)

	d := startAPIDaemon(t, bin, cfg)
	step(t, start, "api daemon %d serving on %s", d.cmd.Process.Pid, apiListen)
	t.Cleanup(func() {
		if d.stopped {
			return
		}
		code, _ := d.terminate(t)
		t.Logf("api daemon stopped in cleanup: exit %d", code)
		if _, err := os.Stat(filepath.Join(targetDir, "iscsi", apiIQN)); err == nil {
			// the daemon's teardown failed: leave LIO clean for the next test
			out, err := exec.Command(bin, "restore", "--teardown", "--config", cfg, "--gateway-name", apiGateway).CombinedOutput()
			t.Logf("restore --teardown after a failed daemon teardown: %v\n%s", err, out)
		}
	})

	// Wrong API credentials are refused before anything is looked at.
	if status, _ := d.curl(t, apiUser, "not-the-password", http.MethodPut, "/api/target/"+apiIQN); status != http.StatusUnauthorized {
		t.Errorf("PUT target with a wrong API password: %d, want 401", status)
	}
	if _, err := os.Stat(filepath.Join(targetDir, "iscsi", apiIQN)); err == nil {
		t.Fatal("a refused request created the target")
	}

	d.put(t, "/api/target/"+apiIQN)
	d.put(t, "/api/gateway/"+apiIQN+"/"+apiGateway, "ip_address="+localIP, "skipchecks=true")
	tpg := "iscsi/" + apiIQN + "/tpgt_1"
	requireDir(t, tpg+"/np/"+localIP+":3260")
	requireValue(t, tpg+"/enable", "1")
	step(t, start, "target and gateway %s defined: TPG 1 enabled on %s:3260", apiGateway, localIP)

	d.put(t, "/api/disk/"+apiDisk, "mode=create", "size=64M", "backstore=user:rbd")
	if size, err := rbd.Size(gconn, apiPool, apiImage); err != nil || size != apiSize {
		t.Fatalf("rbd/%s after the API's create: size %d, %v; want %d", apiImage, size, err, apiSize)
	}
	d.put(t, "/api/targetlun/"+apiIQN, "disk="+apiDisk)
	so := soDir(t, apiSO)
	hba := filepath.Base(filepath.Dir(so))
	if !strings.HasPrefix(hba, "user_") {
		t.Errorf("%s: not a user backstore", so)
	}
	if info := readTrim(t, so+"/info"); !strings.Contains(info, "rbd/"+apiDisk) {
		t.Errorf("%s/info = %q, want the rbd/%s cfgstring", so, info, apiDisk)
	}
	if got := readTrim(t, so+"/attrib/dev_size"); got != strconv.Itoa(apiSize) {
		t.Errorf("%s dev_size %s, want %d", so, got, apiSize)
	}
	requireDir(t, tpg+"/lun/lun_0")
	step(t, start, "disk %s created (64 MiB image) and exported as LUN 0 from core/%s", apiDisk, hba)

	acl := tpg + "/acls/" + apiClient
	d.put(t, "/api/client/"+apiIQN+"/"+apiClient)
	requireDir(t, acl)
	d.put(t, "/api/clientauth/"+apiIQN+"/"+apiClient, "username="+apiCHAP.user, "password="+apiCHAP.pass,
		"mutual_username="+apiCHAP.mutualUser, "mutual_password="+apiCHAP.mutualPass)
	requireValue(t, acl+"/auth/userid", apiCHAP.user)
	requireValue(t, acl+"/auth/password", apiCHAP.pass)
	requireValue(t, acl+"/auth/userid_mutual", apiCHAP.mutualUser)
	requireValue(t, acl+"/auth/password_mutual", apiCHAP.mutualPass)
	// Bad input: upstream's 400 text, and nothing changes in LIO.
	status, body := d.curl(t, apiUser, apiPassword, http.MethodPut, "/api/clientauth/"+apiIQN+"/"+apiClient,
		"username="+apiCHAP.user, "password=short")
	var msg struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &msg); status != http.StatusBadRequest || err != nil ||
		msg.Message != "Minimum length of password is 12 characters" {
		t.Errorf("clientauth with a 5-character password: %d %q, want 400 with upstream's message", status, body)
	}
	requireValue(t, acl+"/auth/password", apiCHAP.pass)
	requireValue(t, acl+"/auth/userid_mutual", apiCHAP.mutualUser)
	d.put(t, "/api/clientlun/"+apiIQN+"/"+apiClient, "disk="+apiDisk)
	requireDir(t, acl+"/lun_0")
	dumpTree(t).write(t, filepath.Join(os.Getenv("VM_OUT"), "api-daemon-configfs.txt"))
	step(t, start, "client %s with CHAP + mutual CHAP and LUN 0 in LIO", apiClient)
	if t.Failed() {
		return
	}

	// open-iscsi refuses or is refused with either secret wrong.
	for _, bad := range []chap{
		{apiCHAP.user, "wrongChapPass1", apiCHAP.mutualUser, apiCHAP.mutualPass},
		{apiCHAP.user, apiCHAP.pass, apiCHAP.mutualUser, "wrongMutualPw1"},
	} {
		ini := initiator{name: apiClient, iface: apiIface, auth: bad}
		ini.configure(t)
		if _, err := ini.discover(t, localIP); err != nil {
			t.Fatal(err)
		}
		if err := ini.login(t, apiIQN, localIP); err == nil {
			ini.logout(t, apiIQN, localIP)
			t.Errorf("login with a wrong secret (password %v, mutual %v) succeeded",
				bad.pass != apiCHAP.pass, bad.mutualPass != apiCHAP.mutualPass)
		}
	}
	step(t, start, "logins with a wrong CHAP or mutual-CHAP secret refused")

	ini := initiator{name: apiClient, iface: apiIface, auth: apiCHAP}
	ini.configure(t)
	if _, err := ini.discover(t, localIP); err != nil {
		t.Fatal(err)
	}
	if err := ini.login(t, apiIQN, localIP); err != nil {
		t.Fatalf("%v; daemon log:\n%s", err, d.log(t))
	}
	loggedIn := true
	defer func() {
		if loggedIn {
			ini.logout(t, apiIQN, localIP)
		}
	}()
	dev := ini.disks(t, apiIQN, 1)[0]
	data := pattern(31)
	const off = 3 << 20
	writeReadDirect(t, dev, off, data)
	checkImage(t, ioctx, apiImage, off, data)
	step(t, start, "logged in with CHAP: 1 MiB written through %s, read back, found in rbd/%s", dev, apiImage)

	// The real tcmu-runner reports the image to the guest cluster's mgr; the
	// daemon's device-status tracker serves it (spec 9).
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var disk struct {
		Status struct {
			State     string                      `json:"state"`
			LockOwner string                      `json:"lock_owner"`
			Gateways  map[string]map[string]int64 `json:"gateways"`
		} `json:"status"`
	}
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		status, body := d.curl(t, apiUser, apiPassword, http.MethodGet, "/api/disk/"+apiDisk)
		if err := json.Unmarshal([]byte(body), &disk); status != http.StatusOK || err != nil {
			t.Fatalf("GET disk: %d %s", status, body)
		}
		if disk.Status.LockOwner != "" || time.Now().After(deadline) {
			break
		}
	}
	if st := disk.Status; st.State != "Online" || st.LockOwner != host || len(st.Gateways) != 1 ||
		len(st.Gateways[host]) != 3 {
		t.Errorf("disk status %+v: want Online, tcmu-runner of %s as the lock owner with its 3 counters", st, host)
	}
	step(t, start, "device status from tcmu-runner through the mgr: %+v", disk.Status)

	// The daemon reads the session from the kernel.
	status, body = d.curl(t, apiUser, apiPassword, http.MethodGet, "/api/clientinfo/"+apiIQN+"/"+apiClient)
	var info struct {
		State     map[string][]string `json:"state"`
		IPAddress []string            `json:"ip_address"`
	}
	if err := json.Unmarshal([]byte(body), &info); status != http.StatusOK || err != nil ||
		!slices.Contains(info.State["LOGGED_IN"], apiGateway) || len(info.IPAddress) == 0 {
		t.Errorf("clientinfo while logged in: %d %s; want LOGGED_IN on %s and the initiator's address", status, body, apiGateway)
	}

	ini.logout(t, apiIQN, localIP)
	loggedIn = false

	code, took := d.terminate(t)
	if code != 0 {
		t.Errorf("api daemon exit %d after SIGTERM, want 0", code)
	}
	step(t, start, "SIGTERM: exit %d after %.2fs", code, took.Seconds())
	requireNoAPIObjects(t, hba)
	if after := lioObjects(t); !slices.Equal(after, before) {
		t.Errorf("LIO after the daemon's teardown differs from before its start:\nbefore %v\nafter  %v", before, after)
	}
	// the teardown removed the export, not the data
	checkImage(t, ioctx, apiImage, off, data)
	step(t, start, "LIO holds no target, storage object or HBA of the daemon; the data is still in rbd/%s", apiImage)

	log := d.log(t)
	for _, s := range []string{apiPassword, apiCHAP.pass, apiCHAP.mutualPass} {
		if strings.Contains(log, s) {
			t.Errorf("the daemon's log contains a secret (%d characters)", len(s))
		}
	}
	if !strings.Contains(log, "LIO torn down") {
		t.Errorf("the daemon's log does not report its teardown:\n%s", log)
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", log)
	}
}
