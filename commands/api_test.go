package commands

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/gateway"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

const (
	apiUser     = "admin"
	apiPassword = "Api-Daemon-Secret-4e"
	apiTarget   = "iqn.2003-01.com.example.apid:t1"
	apiClient   = "iqn.1994-05.com.example:apid-client"
	apiChapUser = "apidchapuser"
	apiChapPass = "Apid-Chap-1234"
	// convergeTimeout bounds the wait for every daemon to follow a change
	// through the watch (notify or the 1 s epoch poll).
	convergeTimeout = 20 * time.Second
)

// cluster is one test's gateways: a config object of its own, settings files
// for daemons on 127.0.0.N, and the store to inspect and seed the object.
type cluster struct {
	t       *testing.T
	conf    string // ceph.conf
	pool    string
	object  string
	port    int
	secure  bool
	extra   string // more [config] lines
	store   *rados.Store
	conn    *rados.Conn
	daemons map[string]*apiDaemon
}

func newCluster(t *testing.T, extra string) *cluster {
	t.Helper()
	return newClusterAt(t, "rbd", fmt.Sprintf("gateway.conf.api.%s.%08x", strings.NewReplacer("/", "_").Replace(t.Name()), mrand.Uint32()), extra)
}

// newClusterAt is newCluster with the config object pool/object.
func newClusterAt(t *testing.T, pool, object, extra string) *cluster {
	t.Helper()
	c := devcluster.Require(t)
	cl := &cluster{
		t: t, conf: c.Conf, extra: extra, pool: pool, object: object,
		port:    freePort(t),
		daemons: map[string]*apiDaemon{},
	}
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf})
	if err != nil {
		t.Fatal(err)
	}
	cl.conn = conn
	cl.store, err = rados.OpenStore(t.Context(), conn, rados.StoreOptions{Pool: cl.pool, Object: cl.object})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.store.Close()
		if io, err := conn.Raw().OpenIOContext(cl.pool); err == nil {
			_ = io.Delete(cl.object)
			io.Destroy()
		}
		conn.Close()
	})
	return cl
}

// freePort finds a TCP port free on 127.0.0.1-3, in 10000-19999: below the
// test clusters' mon and OSD ranges and the kernel's ephemeral ports (see
// devcluster.freePorts), so nothing the suite starts later takes it.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := 10000 + mrand.IntN(10000)
		ok := true
		for i := 1; i <= 3; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func (cl *cluster) settingsText() string {
	return fmt.Sprintf("[config]\npool = %s\ngateway_conf = %s\ncluster_client_name = client.admin\n"+
		"api_user = %s\napi_password = %s\napi_port = %d\napi_secure = %v\n"+
		"trusted_ip_list = 127.0.0.1,127.0.0.2,127.0.0.3\ndrift_check_interval = %d\n%s",
		cl.pool, cl.object, apiUser, apiPassword, cl.port, cl.secure, int(testDriftCheck/time.Second), cl.extra)
}

// testDriftCheck is the daemons' drift_check_interval in these tests.
const testDriftCheck = 5 * time.Second

// apiDaemon is one rbd-target-api process: the test binary run as the
// command line (see envExecMain).
type apiDaemon struct {
	name, ip, root, cfg string
	args                []string
	env                 []string
	cmd                 *exec.Cmd
	out                 *syncBuffer
	done                chan struct{}
	code                int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon prepares gateway gwN on 127.0.0.N with its own settings file and
// emulated configfs; peers are every gateway of the cluster.
func (cl *cluster) daemon(n int, extraArgs ...string) *apiDaemon {
	cl.t.Helper()
	d := &apiDaemon{name: fmt.Sprintf("gw%d", n), ip: fmt.Sprintf("127.0.0.%d", n), root: cl.t.TempDir()}
	d.cfg = filepath.Join(cl.t.TempDir(), "iscsi-gateway.cfg")
	if err := os.WriteFile(d.cfg, []byte(cl.settingsText()), 0o600); err != nil {
		cl.t.Fatal(err)
	}
	d.args = []string{"api", "--config", d.cfg, "--configfs-root", d.root, "--gateway-name", d.name,
		"--listen", net.JoinHostPort(d.ip, fmt.Sprint(cl.port)), "--local-addr", d.ip}
	scheme := "http"
	if cl.secure {
		scheme = "https"
	}
	for i := 1; i <= 3; i++ {
		d.args = append(d.args, "--peer", fmt.Sprintf("gw%d=%s://127.0.0.%d:%d", i, scheme, i, cl.port))
	}
	d.args = append(d.args, extraArgs...)
	d.env = append(os.Environ(), envExecMain+"=1", "CEPH_CONF="+cl.conf)
	cl.daemons[d.name] = d
	return d
}

func (cl *cluster) start(d *apiDaemon) {
	cl.t.Helper()
	cl.launch(d)
	cl.waitServing(d)
}

// launch starts d without waiting for it to serve.
func (cl *cluster) launch(d *apiDaemon) {
	cl.t.Helper()
	d.out = &syncBuffer{}
	d.cmd = exec.Command(os.Args[0], d.args...)
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		cl.t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func() {
		err := d.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			d.code = 0
		case errors.As(err, &ee):
			d.code = ee.ExitCode()
		default:
			d.code = -1
		}
		close(d.done)
	}()
	cl.t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if cl.t.Failed() {
			cl.t.Logf("%s output:\n%s", d.name, d.out)
		}
		for _, s := range []string{apiPassword, apiChapPass} {
			if strings.Contains(d.out.String(), s) {
				cl.t.Errorf("%s logged a secret", d.name)
			}
		}
	})
}

func (cl *cluster) client() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed test certificate
	}}
}

func (cl *cluster) url(d *apiDaemon, path string) string {
	scheme := "http"
	if cl.secure {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(d.ip, fmt.Sprint(cl.port)), path)
}

func (cl *cluster) waitServing(d *apiDaemon) {
	cl.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			cl.t.Fatalf("%s exited with %d before serving:\n%s", d.name, d.code, d.out)
		default:
		}
		resp, err := cl.client().Get(cl.url(d, "/api"))
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl.t.Fatalf("%s does not serve:\n%s", d.name, d.out)
}

// call sends an authenticated form request and returns the status and the
// reply's message.
func (cl *cluster) call(d *apiDaemon, method, path string, form url.Values) (int, string) {
	cl.t.Helper()
	req, err := http.NewRequest(method, cl.url(d, path), strings.NewReader(form.Encode()))
	if err != nil {
		cl.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(apiUser, apiPassword)
	resp, err := cl.client().Do(req)
	if err != nil {
		cl.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &m)
	if m.Message == "" {
		m.Message = string(body)
	}
	return resp.StatusCode, m.Message
}

func (cl *cluster) mustCall(d *apiDaemon, method, path string, form url.Values) {
	cl.t.Helper()
	if status, msg := cl.call(d, method, path, form); status != http.StatusOK {
		cl.t.Fatalf("%s %s: %d %s", method, path, status, msg)
	}
}

// desired is what lio builds from doc for gateway d.
func (cl *cluster) desired(doc *config.Doc, d *apiDaemon) lio.State {
	cl.t.Helper()
	s, err := settings.Read(d.cfg)
	if err != nil {
		cl.t.Fatal(err)
	}
	spec, err := gateway.SpecFromConfig(doc, d.name, s, gateway.FromConfigOptions{
		LocalAddrs: []netip.Addr{netip.MustParseAddr(d.ip)},
	})
	if err != nil {
		cl.t.Fatal(err)
	}
	st, err := lio.Build(spec)
	if err != nil {
		cl.t.Fatal(err)
	}
	return st
}

func observe(t *testing.T, root string) lio.State {
	t.Helper()
	st, err := tryObserve(root)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func tryObserve(root string) (lio.State, error) {
	f, err := lio.NewFS(root)
	if err != nil {
		return lio.State{}, err
	}
	return lio.Observe(f)
}

// converge waits until the configfs of every named daemon holds exactly what
// lio builds from the committed configuration for it.
func (cl *cluster) converge(what string, names ...string) *config.Doc {
	cl.t.Helper()
	return cl.convergeValid(what, nil, names...)
}

// convergeValid is converge against the document with strip applied (nil:
// as committed): the objects it removes are those the gateways must hold
// as they are.
func (cl *cluster) convergeValid(what string, strip func(*config.Doc), names ...string) *config.Doc {
	cl.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		doc, err := cl.store.Load(cl.t.Context())
		if err != nil {
			cl.t.Fatal(err)
		}
		valid := doc
		if strip != nil {
			valid = doc.Clone()
			strip(valid)
		}
		var behind []string
		for _, n := range names {
			d := cl.daemons[n]
			// A daemon may be removing directories while they are read.
			st, err := tryObserve(d.root)
			if err != nil {
				behind = append(behind, fmt.Sprintf("%s: %v", n, err))
				continue
			}
			if p := lio.NewPlan(st, cl.desired(valid, d)); !p.Empty() {
				behind = append(behind, fmt.Sprintf("%s still needs:\n%s", n, p))
			}
		}
		if len(behind) == 0 {
			return doc
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("%s: not converged on epoch %d after %s:\n%s", what, doc.Epoch, convergeTimeout, strings.Join(behind, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *apiDaemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (d *apiDaemon) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-d.done:
		return d.code
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit:\n%s", d.name, d.out)
		return -1
	}
}

// managedLeft lists the LIO objects of the configuration still in root.
func managedLeft(t *testing.T, root string, doc *config.Doc) []string {
	t.Helper()
	var left []string
	st := observe(t, root)
	for _, tg := range st.Targets {
		if doc.Targets[tg.IQN] != nil {
			left = append(left, tg.IQN)
		}
	}
	for _, so := range st.StorageObjects {
		left = append(left, so.Name)
	}
	return left
}

func TestAPIDaemonsConverge(t *testing.T) {
	cl := newCluster(t, "")
	gw1, gw2, gw3 := cl.daemon(1), cl.daemon(2), cl.daemon(3)
	// gw3 also writes the debugging CPU profile, checked when it stops
	profile := filepath.Join(t.TempDir(), "gw3.pprof")
	gw3.env = append(gw3.env, cpuProfileEnv+"="+profile)
	for _, d := range []*apiDaemon{gw1, gw2, gw3} {
		cl.start(d)
	}
	all := []string{"gw1", "gw2", "gw3"}

	cl.mustCall(gw1, http.MethodPut, "/api/target/"+apiTarget, nil)
	cl.converge("target created", all...)

	for i, d := range []*apiDaemon{gw1, gw2, gw3} {
		cl.mustCall(gw1, http.MethodPut, "/api/gateway/"+apiTarget+"/"+d.name,
			url.Values{"ip_address": {d.ip}, "skipchecks": {"true"}})
		doc := cl.converge("gateway "+d.name+" added", all...)
		if st := observe(t, d.root); len(st.Targets) != 1 || len(st.Targets[0].TPGs) != i+1 {
			t.Fatalf("%s after adding it: %+v", d.name, st.Targets)
		}
		if n := len(doc.Targets[apiTarget].Portals); n != i+1 {
			t.Fatalf("%d portals after adding %s", n, d.name)
		}
	}

	cl.mustCall(gw1, http.MethodPut, "/api/client/"+apiTarget+"/"+apiClient, nil)
	cl.mustCall(gw1, http.MethodPut, "/api/clientauth/"+apiTarget+"/"+apiClient,
		url.Values{"username": {apiChapUser}, "password": {apiChapPass}})
	cl.converge("client with CHAP", all...)
	for _, d := range []*apiDaemon{gw1, gw2, gw3} {
		st := observe(t, d.root)
		var acl *lio.ACL
		for i := range st.Targets[0].TPGs {
			tpg := &st.Targets[0].TPGs[i]
			for j := range tpg.ACLs {
				if tpg.ACLs[j].Initiator == apiClient {
					acl = &tpg.ACLs[j]
				}
			}
		}
		if acl == nil || acl.Auth.UserID != apiChapUser || acl.Auth.Password.Reveal() != apiChapPass {
			t.Fatalf("%s: client ACL with CHAP missing: %+v", d.name, acl)
		}
	}

	// A disk through the API: created in RBD, exported, given to the client;
	// every gateway sizes it through its own connection.
	image := fmt.Sprintf("apid-%08x", mrand.Uint32())
	t.Cleanup(func() {
		_ = rbd.Remove(context.Background(), cl.conn.Raw(), "rbd", image, rbd.RemoveOptions{})
	})
	cl.mustCall(gw1, http.MethodPut, "/api/disk/rbd/"+image, url.Values{"mode": {"create"}, "size": {"64M"}, "pool": {"rbd"}, "count": {"1"}})
	cl.mustCall(gw1, http.MethodPut, "/api/targetlun/"+apiTarget, url.Values{"disk": {"rbd/" + image}})
	cl.mustCall(gw1, http.MethodPut, "/api/clientlun/"+apiTarget+"/"+apiClient, url.Values{"disk": {"rbd/" + image}})
	cl.converge("disk exported to the client", all...)
	for _, d := range []*apiDaemon{gw1, gw2, gw3} {
		st := observe(t, d.root)
		if len(st.StorageObjects) != 1 || st.StorageObjects[0].Size != 64<<20 {
			t.Fatalf("%s: storage objects %+v", d.name, st.StorageObjects)
		}
	}

	// SIGHUP re-applies what was lost locally.
	aclDir := filepath.Join(gw2.root, "target/iscsi", apiTarget, "tpgt_2/acls", apiClient)
	if _, err := os.Stat(aclDir); err != nil {
		t.Fatalf("gw2's ACL: %v", err)
	}
	if err := os.RemoveAll(aclDir); err != nil {
		t.Fatal(err)
	}
	gw2.signal(t, syscall.SIGHUP)
	cl.converge("gw2 after SIGHUP", "gw2")
	if _, err := os.Stat(aclDir); err != nil {
		t.Fatalf("SIGHUP did not restore gw2's ACL: %v", err)
	}

	// A gateway down: gw3 tears its LIO down and exits 0 on SIGTERM.
	gw3.signal(t, syscall.SIGTERM)
	if code := gw3.wait(t); code != 0 {
		t.Fatalf("gw3 exited %d on SIGTERM:\n%s", code, gw3.out)
	}
	doc, err := cl.store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if left := managedLeft(t, gw3.root, doc); len(left) != 0 {
		t.Fatalf("gw3 left LIO objects after SIGTERM: %v", left)
	}
	if b, err := os.ReadFile(profile); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("gw3's CPU profile is not a gzipped profile (%d bytes): %v", len(b), err)
	}
	// Public changes that need gw3 are refused while it is down.
	status, msg := cl.call(gw1, http.MethodPut, "/api/client/"+apiTarget+"/"+apiClient+"-2", nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(msg, "unavailable:") || !strings.Contains(msg, "gw3") {
		t.Fatalf("change with gw3 down: %d %q", status, msg)
	}
	// The config moves on without it (a commit made elsewhere)... On gw2
	// a file stands where the new ACL goes, so its reconcile fails until
	// the obstacle is gone; the watch retries without a new epoch.
	obstacle := filepath.Join(gw2.root, "target/iscsi", apiTarget, "tpgt_2/acls", apiClient+"-3")
	if err := os.WriteFile(obstacle, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.store.Commit(t.Context(), func(d *config.Doc) error {
		_, err := d.AddClient(apiTarget, apiClient+"-3", time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cl.converge("a commit seen through the watch", "gw1")
	for deadline := time.Now().Add(convergeTimeout); !strings.Contains(gw2.out.String(), "will retry"); {
		if time.Now().After(deadline) {
			t.Fatalf("gw2 did not report the failed reconcile:\n%s", gw2.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.Remove(obstacle); err != nil {
		t.Fatal(err)
	}
	cl.converge("gw2 retried", "gw2")
	// ...and gw3 catches up when it comes back.
	cl.start(gw3)
	doc = cl.converge("gw3 back", all...)
	if doc.Targets[apiTarget].Clients[apiClient+"-3"] == nil {
		t.Fatal("the commit made while gw3 was down is missing")
	}

	for _, d := range []*apiDaemon{gw1, gw2, gw3} {
		d.signal(t, syscall.SIGTERM)
	}
	for _, d := range []*apiDaemon{gw1, gw2, gw3} {
		if code := d.wait(t); code != 0 {
			t.Errorf("%s exited %d on SIGTERM", d.name, code)
		}
		if left := managedLeft(t, d.root, doc); len(left) != 0 {
			t.Errorf("%s left LIO objects after SIGTERM: %v", d.name, left)
		}
	}
}

// TestAPIReadinessNotify is the Type=notify contract of rbd-target-api.service:
// READY=1 only once LIO holds the configuration committed before the start
// and the API answers; RELOADING=1 on SIGHUP and READY=1 only once the
// reload's reconcile has repaired LIO; STOPPING=1 on SIGTERM, then exit 0.
func TestAPIReadinessNotify(t *testing.T) {
	cl := newCluster(t, "")
	if _, err := cl.store.Commit(t.Context(), func(d *config.Doc) error {
		now := time.Now()
		if _, err := d.AddTarget(apiTarget, now); err != nil {
			return err
		}
		if _, err := d.AddTargetGateway(apiTarget, "gw1", []string{"127.0.0.1"}, []string{"127.0.0.1"}, now); err != nil {
			return err
		}
		_, err := d.AddClient(apiTarget, apiClient, now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	doc, err := cl.store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := cl.daemon(1)
	d.env = append(d.env, "NOTIFY_SOCKET="+sock)
	cl.launch(d)

	read := func(want string) {
		t.Helper()
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v\n%s", want, err, d.out)
		}
		if got := string(buf[:n]); got != want {
			t.Fatalf("sd_notify got %q, want %q\n%s", got, want, d.out)
		}
	}
	// What READY=1 promises, checked the moment it arrives: LIO holds the
	// whole configuration, and the API answers.
	ready := func(what string) {
		t.Helper()
		if p := lio.NewPlan(observe(t, d.root), cl.desired(doc, d)); !p.Empty() {
			t.Fatalf("%s: READY=1 before LIO holds the configuration; still needed:\n%s", what, p)
		}
		resp, err := cl.client().Get(cl.url(d, "/api"))
		if err != nil {
			t.Fatalf("%s: READY=1 but the API does not answer: %v", what, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: READY=1 but GET /api answers %d", what, resp.StatusCode)
		}
	}
	read("READY=1")
	ready("start")
	if len(aclOf(observe(t, d.root), apiTarget, apiClient)) != 1 {
		t.Fatalf("the restored LIO has no ACL for %s", apiClient)
	}

	// LIO loses the ACL behind the daemon's back; the reload puts it back
	// before READY=1.
	acl := filepath.Join(d.root, "target/iscsi", apiTarget, "tpgt_1/acls", apiClient)
	if err := os.RemoveAll(acl); err != nil {
		t.Fatal(err)
	}
	d.signal(t, syscall.SIGHUP)
	read("RELOADING=1")
	read("READY=1")
	ready("SIGHUP")

	d.signal(t, syscall.SIGTERM)
	read("STOPPING=1")
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestAPIStartupFailures(t *testing.T) {
	devcluster.Require(t)
	bad := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	if err := os.WriteFile(bad, []byte("[config]\napi_port = not-a-port\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Run([]string{"ceph-iscsi", "api", "--config", bad, "--configfs-root", t.TempDir()}, &out, &errb)
	if code != exitFatal || !strings.Contains(errb.String(), "api: settings:") || !strings.Contains(errb.String(), "api_port") {
		t.Fatalf("bad settings: exit %d\n%s", code, errb.String())
	}

	errb.Reset()
	code = Run([]string{"ceph-iscsi", "api", "--config", filepath.Join(t.TempDir(), "missing.cfg")}, &out, &errb)
	if code != exitFatal || !strings.Contains(errb.String(), "missing.cfg") {
		t.Fatalf("missing settings: exit %d\n%s", code, errb.String())
	}

	errb.Reset()
	code = Run([]string{"ceph-iscsi", "api", "--peer", "gw2"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "NAME=scheme://host:port") {
		t.Fatalf("bad --peer: exit %d\n%s", code, errb.String())
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and PEM text.
func selfSigned(t *testing.T) (certPath, keyPath string, certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "iscsi-gateway"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, certPEM, keyPEM
}

func tlsHandshake(addr string, maxVersion uint16) (uint16, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: maxVersion}) //nolint:gosec // probing the server's versions
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().Version, nil
}

func TestAPITLS(t *testing.T) {
	cl := newCluster(t, "")
	cl.secure = true
	certPath, keyPath, certPEM, keyPEM := selfSigned(t)
	missing := filepath.Join(t.TempDir(), "absent")

	// Neither files nor config-key entries: fatal.
	nokey := cl.daemon(1, "--tls-cert", missing+".crt", "--tls-key", missing+".key")
	var out, errb bytes.Buffer
	t.Setenv("CEPH_CONF", cl.conf)
	_ = cl.conn.ConfigKeySet("iscsi/client.admin/iscsi-gateway.crt", "")
	_ = cl.conn.ConfigKeySet("iscsi/client.admin/iscsi-gateway.key", "")
	code := Run(append([]string{"ceph-iscsi"}, nokey.args...), &out, &errb)
	if code != exitFatal || !strings.Contains(errb.String(), "api: TLS:") {
		t.Fatalf("TLS without certificate: exit %d\n%s", code, errb.String())
	}

	// Files.
	d := cl.daemon(1, "--tls-cert", certPath, "--tls-key", keyPath)
	cl.start(d)
	addr := net.JoinHostPort(d.ip, fmt.Sprint(cl.port))
	if v, err := tlsHandshake(addr, tls.VersionTLS12); err != nil || v != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2: version %x, %v", v, err)
	}
	if _, err := tlsHandshake(addr, tls.VersionTLS11); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	if status, _ := cl.call(d, http.MethodGet, "/api/_ping", nil); status != http.StatusOK {
		t.Fatalf("ping over TLS: %d", status)
	}
	d.signal(t, syscall.SIGTERM)
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// The config-key store, where cephadm puts them, when a file is missing.
	if err := cl.conn.ConfigKeySet("iscsi/client.admin/iscsi-gateway.crt", string(certPEM)); err != nil {
		t.Fatal(err)
	}
	if err := cl.conn.ConfigKeySet("iscsi/client.admin/iscsi-gateway.key", string(keyPEM)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cl.conn.ConfigKeySet("iscsi/client.admin/iscsi-gateway.crt", "")
		_ = cl.conn.ConfigKeySet("iscsi/client.admin/iscsi-gateway.key", "")
	})
	d2 := cl.daemon(2, "--tls-cert", missing+".crt", "--tls-key", missing+".key")
	cl.start(d2)
	if v, err := tlsHandshake(net.JoinHostPort(d2.ip, fmt.Sprint(cl.port)), tls.VersionTLS13); err != nil || v < tls.VersionTLS12 {
		t.Fatalf("TLS from config-key: version %x, %v", v, err)
	}
	if !strings.Contains(d2.out.String(), "config-key store") {
		t.Errorf("no log line saying where the certificate came from:\n%s", d2.out)
	}
}
