package commands

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/lio"
)

const (
	gwTarget = "iqn.2003-01.com.example.gwd:t1"
	gwClient = "iqn.1994-05.com.example:gwd-client"
	gwName   = "gw1.gwd.test"
)

// gwTree builds on an emulated configfs what gateway gw1 holds for one
// target with two disks, the second owned by gw2, and one client mapped to
// both.
func gwTree(t *testing.T) lio.FS {
	t.Helper()
	spec := lio.Spec{
		Gateway: gwName, Backstore: lio.BackstoreUserRBD, Settings: lio.DefaultSettings(),
		Disks: map[string]lio.DiskSpec{
			"rbd/a": {Pool: "rbd", Image: "a", WWN: "wwn-a", Owner: gwName, Size: 1 << 30},
			"rbd/b": {Pool: "rbd", Image: "b", WWN: "wwn-b", Owner: "gw2.gwd.test", Size: 2 << 30},
		},
		Targets: map[string]lio.TargetSpec{gwTarget: {
			ACLEnabled: true, IPList: []string{"127.0.0.1", "127.0.0.2"},
			Portals: map[string][]string{gwName: {"127.0.0.1"}, "gw2.gwd.test": {"127.0.0.2"}},
			Disks:   map[string]int{"rbd/a": 0, "rbd/b": 1},
			Clients: map[string]lio.ClientSpec{gwClient: {LUNs: map[string]int{"rbd/a": 0, "rbd/b": 1}}},
		}},
	}
	desired, err := lio.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := lio.NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	observed, err := lio.Observe(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lio.Apply(t.Context(), f, lio.NewPlan(observed, desired)); err != nil {
		t.Fatal(err)
	}
	return f
}

// setStat writes a kernel-generated file under the target, as I/O would.
func setStat(t *testing.T, f lio.FS, rel, value string) {
	t.Helper()
	p := filepath.Join(f.Root(), "target/iscsi", gwTarget, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(value+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type gwDaemon struct {
	*apiDaemon
	addr   string
	notify *net.UnixConn
}

// startGW runs `ceph-iscsi gw` on 127.0.0.1 over root and waits for its
// READY=1.
func startGW(t *testing.T, root, extraSettings string, args ...string) *gwDaemon {
	t.Helper()
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	text := fmt.Sprintf("[config]\napi_user = %s\napi_password = %s\nprometheus_host = 127.0.0.1\nprometheus_port = %d\n%s",
		apiUser, apiPassword, port, extraSettings)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &gwDaemon{
		apiDaemon: &apiDaemon{name: "gw", ip: "127.0.0.1", root: root, cfg: cfg,
			args: append([]string{"gw", "--config", cfg, "--configfs-root", root, "--gateway-name", gwName}, args...),
			env:  append(os.Environ(), envExecMain+"=1", "NOTIFY_SOCKET="+sock)},
		addr:   net.JoinHostPort("127.0.0.1", fmt.Sprint(port)),
		notify: conn,
	}
	cl := &cluster{t: t, daemons: map[string]*apiDaemon{}}
	cl.launch(d.apiDaemon)
	d.expect(t, "READY=1")
	return d
}

func (d *gwDaemon) expect(t *testing.T, want string) {
	t.Helper()
	buf := make([]byte, 512)
	_ = d.notify.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, _, err := d.notify.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("waiting for %s: %v\n%s", want, err, d.out)
	}
	if got := string(buf[:n]); got != want {
		t.Fatalf("sd_notify %q, want %q", got, want)
	}
}

func (d *gwDaemon) get(t *testing.T, scheme, path, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, scheme+"://"+d.addr+path, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := (&cluster{}).client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// samples parses the text exposition into "name{labels}" -> value.
func samples(body string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			out[l[:i]] = l[i+1:]
		}
	}
	return out
}

func TestGWDaemon(t *testing.T) {
	f := gwTree(t)
	d := startGW(t, f.Root(), "api_secure = false\n")
	code, body := d.get(t, "http", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	m := samples(body)
	gw := `gw_name="` + gwName + `"`
	cl := `client_iqn="` + gwClient + `"`
	for k, v := range map[string]string{
		`ceph_iscsi_gateway_info{` + gw + `,version="` + version + `"}`:                                 "1",
		`ceph_iscsi_up{` + gw + `}`:                                                                     "1",
		`ceph_iscsi_gateway_tpg_total{gw_iqn="` + gwTarget + `"}`:                                       "2",
		`ceph_iscsi_lun_mapped{` + gw + `,gw_owner="127.0.0.1",lun_name="rbd.a"}`:                       "1",
		`ceph_iscsi_lun_mapped{` + gw + `,gw_owner="127.0.0.2",lun_name="rbd.b"}`:                       "1",
		`ceph_iscsi_lun_size_bytes{` + gw + `,lun_name="rbd.b"}`:                                        "2.147483648e+09",
		`ceph_iscsi_client_login{` + cl + `,` + gw + `}`:                                                "0",
		`ceph_iscsi_client_lun{` + cl + `,` + gw + `,lun_name="rbd.b"}`:                                 "1",
		`ceph_iscsi_lun_write_bytes{` + cl + `,` + gw + `,lun_name="rbd.a"}`:                            "0",
		`ceph_iscsi_lun_port_commands_total{` + gw + `,lun_name="rbd.a",target_iqn="` + gwTarget + `"}`: "0",
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %s", k, m[k], v)
		}
	}
	if !strings.Contains(body, "# TYPE ceph_iscsi_lun_iops counter") || !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, "process_cpu_seconds_total") {
		t.Errorf("types or Go/process collectors missing:\n%s", body)
	}
	if t.Failed() {
		t.FailNow()
	}

	// I/O and a login show in the next scrape
	setStat(t, f, "tpgt_1/acls/"+gwClient+"/lun_0/statistics/scsi_auth_intr/write_mbytes", "3")
	setStat(t, f, "tpgt_1/lun/lun_0/statistics/scsi_tgt_port/write_mbytes", "3")
	setStat(t, f, "tpgt_1/acls/"+gwClient+"/info", "InitiatorName: "+gwClient+
		"\nSession State: TARG_SESS_STATE_LOGGED_IN\n   Address 127.0.0.9 TCP  StatSN: 0x1\n")
	_, body = d.get(t, "http", "/metrics", "", "")
	m = samples(body)
	if v := m[`ceph_iscsi_lun_write_bytes{`+cl+`,`+gw+`,lun_name="rbd.a"}`]; v != "3.145728e+06" {
		t.Errorf("client write bytes %q", v)
	}
	if v := m[`ceph_iscsi_lun_port_write_bytes_total{`+gw+`,lun_name="rbd.a",target_iqn="`+gwTarget+`"}`]; v != "3.145728e+06" {
		t.Errorf("port write bytes %q", v)
	}
	if v := m[`ceph_iscsi_client_login{`+cl+`,`+gw+`}`]; v != "1" {
		t.Errorf("login %q", v)
	}

	// /api/stats: the API's credentials
	if code, body := d.get(t, "http", "/api/stats", "", ""); code != 401 {
		t.Errorf("no credentials: %d %s", code, body)
	}
	if code, body := d.get(t, "http", "/api/stats", apiUser, "wrong"); code != 401 {
		t.Errorf("wrong password: %d %s", code, body)
	}
	code, body = d.get(t, "http", "/api/stats", apiUser, apiPassword)
	var rep struct {
		Gateway string
		Clients []struct {
			ClientIQN        string `json:"client_iqn"`
			LoggedInSessions int    `json:"logged_in_sessions"`
			WriteBytes       uint64 `json:"write_bytes"`
		}
	}
	if err := json.Unmarshal([]byte(body), &rep); code != 200 || err != nil || rep.Gateway != gwName || len(rep.Clients) != 1 ||
		rep.Clients[0].WriteBytes != 3<<20 || rep.Clients[0].LoggedInSessions != 1 {
		t.Fatalf("GET /api/stats: %d %v %s", code, err, body)
	}
	if code, body := d.get(t, "http", "/", "", ""); code != 200 || !strings.Contains(body, "Ceph/iSCSI Prometheus Exporter") {
		t.Errorf("GET /: %d %s", code, body)
	}

	d.signal(t, syscall.SIGTERM)
	d.expect(t, "STOPPING=1")
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, d.out)
	}
}

// TestGWDaemonNoTarget: where upstream answers 404, an empty gateway is
// healthy: 200 with the gateway's own metrics.
func TestGWDaemonNoTarget(t *testing.T) {
	f, err := lio.NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := startGW(t, f.Root(), "api_secure = false\n")
	code, body := d.get(t, "http", "/metrics", "", "")
	m := samples(body)
	if code != 200 || m[`ceph_iscsi_gateway_info{gw_name="`+gwName+`",version="`+version+`"}`] != "1" ||
		m[`ceph_iscsi_up{gw_name="`+gwName+`"}`] != "1" || strings.Contains(body, "ceph_iscsi_gateway_tpg_total") {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	d.signal(t, syscall.SIGINT)
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestGWDaemonTLS: with api_secure the port speaks both: Prometheus keeps
// scraping over plain HTTP, /api/stats answers only over TLS.
func TestGWDaemonTLS(t *testing.T) {
	f := gwTree(t)
	cert, key, _, _ := selfSigned(t)
	d := startGW(t, f.Root(), "api_secure = true\n", "--tls-cert", cert, "--tls-key", key)
	for _, scheme := range []string{"http", "https"} {
		if code, body := d.get(t, scheme, "/metrics", "", ""); code != 200 || !strings.Contains(body, "ceph_iscsi_lun_mapped") {
			t.Errorf("%s /metrics: %d", scheme, code)
		}
	}
	if code, body := d.get(t, "http", "/api/stats", apiUser, apiPassword); code != 403 {
		t.Errorf("plain /api/stats: %d %s", code, body)
	}
	if code, body := d.get(t, "https", "/api/stats", apiUser, apiPassword); code != 200 || !strings.Contains(body, gwClient) {
		t.Errorf("https /api/stats: %d %s", code, body)
	}
	d.signal(t, syscall.SIGTERM)
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestGWDaemonDisabled: prometheus_exporter false exits 0, as upstream.
func TestGWDaemonDisabled(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	if err := os.WriteFile(cfg, []byte("[config]\nprometheus_exporter = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	if code := Run([]string{"rbd-target-gw", "--config", cfg, "--configfs-root", t.TempDir()}, &out, &errb); code != 0 ||
		!strings.Contains(errb.String(), "exporter is disabled") {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	errb.Reset()
	if code := Run([]string{"ceph-iscsi", "gw", "--config", filepath.Join(t.TempDir(), "missing.cfg")}, &out, &errb); code != exitFatal {
		t.Fatalf("missing settings: exit %d\n%s", code, errb.String())
	}
}
