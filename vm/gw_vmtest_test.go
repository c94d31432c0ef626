//go:build vmtest

package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/lio"
)

// TestGWExporter runs `ceph-iscsi gw` (rbd-target-gw) on the guest's
// kernel: after a CHAP login and 1 MiB written through the iSCSI disk, a
// scrape shows the client's write counter moved by at least 1 MiB, the
// client logged in, the LUN mapped, and the target-port counters moved.
const (
	gwStatsIQN    = "iqn.2003-01.com.example.iscsi-gw:gwstats"
	gwStatsClient = "iqn.1994-05.com.example:gwstats-client"
	gwStatsListen = "127.0.0.1:9287"
	gwStatsSO     = "rbd.gwimg"
	gwStatsPass   = "vmtestGwSecret42"
)

var gwStatsCHAP = chap{"gwstatsuser", "gwstatspass123", "", ""}

func TestGWExporter(t *testing.T) {
	start := time.Now()
	bin := os.Getenv(envRestoreBin)
	if bin == "" {
		bin = "/vm-out/ceph-iscsi" // vm/test.sh builds it in every mode
	}
	if err := os.MkdirAll(fileioDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := realFS(t)
	spec := lio.Spec{
		Gateway: gateway, Backstore: lio.BackstoreFileIO, Settings: lio.DefaultSettings(),
		Disks: map[string]lio.DiskSpec{"rbd/gwimg": {Pool: "rbd", Image: "gwimg", Owner: gateway, WWN: "vmtest-gwimg",
			Size: fileioSize, DevicePath: filepath.Join(fileioDir, "gwimg")}},
		Targets: map[string]lio.TargetSpec{gwStatsIQN: {
			ACLEnabled: true, IPList: []string{localIP}, Portals: map[string][]string{gateway: {localIP}},
			Disks:   map[string]int{"rbd/gwimg": 0},
			Clients: map[string]lio.ClientSpec{gwStatsClient: {Auth: gwStatsCHAP.spec(), LUNs: map[string]int{"rbd/gwimg": 0}}},
		}},
		// no discovery CHAP, whatever an earlier test left
		ManageDiscoveryAuth: true,
	}
	desired := build(t, spec)
	converge(t, f, desired)
	defer teardown(t, f, desired)
	step(t, start, "fileio target with a CHAP client created")

	d := startGWDaemon(t, bin)
	defer stopGWDaemon(t, d)
	step(t, start, "ceph-iscsi gw ready")

	gw := `gw_name="` + gateway + `"`
	cl := `client_iqn="` + gwStatsClient + `"`
	clientWrite := `ceph_iscsi_lun_write_bytes{` + cl + `,` + gw + `,lun_name="` + gwStatsSO + `"}`
	clientCmds := `ceph_iscsi_lun_iops{` + cl + `,` + gw + `,lun_name="` + gwStatsSO + `"}`
	login := `ceph_iscsi_client_login{` + cl + `,` + gw + `}`
	mapped := `ceph_iscsi_lun_mapped{` + gw + `,gw_owner="` + localIP + `",lun_name="` + gwStatsSO + `"}`
	port := func(what string) string {
		return `ceph_iscsi_lun_port_` + what + `_total{` + gw + `,lun_name="` + gwStatsSO + `",target_iqn="` + gwStatsIQN + `"}`
	}

	m0 := scrape(t)
	if m0[login] != 0 || m0[mapped] != 1 {
		t.Errorf("before login: login %v, lun_mapped %v", m0[login], m0[mapped])
	}

	c := initiator{name: gwStatsClient, iface: "gwstats", auth: gwStatsCHAP}
	c.configure(t)
	if _, err := c.discover(t, localIP); err != nil {
		t.Fatal(err)
	}
	if err := c.login(t, gwStatsIQN, localIP); err != nil {
		t.Fatal(err)
	}
	loggedIn := true
	defer func() {
		if loggedIn {
			c.logout(t, gwStatsIQN, localIP)
		}
	}()
	devs := c.disks(t, gwStatsIQN, 1)
	step(t, start, "logged in with CHAP, LUN 0 is %s", devs[0])

	m1 := scrape(t)
	writeReadDirect(t, devs[0], 5<<20, pattern(7))
	m2 := scrape(t)
	step(t, start, "1 MiB written and read back; scraped before and after")

	if m2[login] != 1 || m2[mapped] != 1 {
		t.Errorf("after I/O: login %v, lun_mapped %v", m2[login], m2[mapped])
	}
	if d := m2[clientWrite] - m1[clientWrite]; d < ioSize {
		t.Errorf("client write bytes moved by %v, want >= %d (%v -> %v)", d, ioSize, m1[clientWrite], m2[clientWrite])
	}
	if m2[clientCmds] <= m1[clientCmds] {
		t.Errorf("client commands did not move: %v -> %v", m1[clientCmds], m2[clientCmds])
	}
	for _, what := range []string{"commands", "write_bytes", "read_bytes"} {
		if m2[port(what)] <= m1[port(what)] {
			t.Errorf("port %s did not move: %v -> %v", what, m1[port(what)], m2[port(what)])
		}
	}
	if d := m2[port("write_bytes")] - m1[port("write_bytes")]; d < ioSize {
		t.Errorf("port write bytes moved by %v, want >= %d", d, ioSize)
	}
	if v := m2[`ceph_iscsi_target_sessions{`+gw+`,target_iqn="`+gwStatsIQN+`"}`]; v != 1 {
		t.Errorf("target sessions %v, want 1", v)
	}
	t.Logf("client write bytes %v -> %v, port commands %v -> %v, scrape %.4fs", m1[clientWrite], m2[clientWrite],
		m1[port("commands")], m2[port("commands")], m2[`ceph_iscsi_scrape_duration_seconds{`+gw+`}`])

	// the same reading as JSON, with the API's credentials
	req, _ := http.NewRequest(http.MethodGet, "http://"+gwStatsListen+"/api/stats", nil)
	req.SetBasicAuth("admin", gwStatsPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Clients []struct {
			ClientIQN        string `json:"client_iqn"`
			LoggedInSessions int    `json:"logged_in_sessions"`
			WriteBytes       uint64 `json:"write_bytes"`
		} `json:"clients"`
	}
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(rep.Clients) != 1 || rep.Clients[0].LoggedInSessions != 1 || rep.Clients[0].WriteBytes < ioSize {
		t.Errorf("GET /api/stats: %d %v %+v", resp.StatusCode, err, rep)
	}

	c.logout(t, gwStatsIQN, localIP)
	loggedIn = false
	if m := scrape(t); m[login] != 0 {
		t.Errorf("after logout: login %v", m[login])
	}
	step(t, start, "logged out; exporter checked")
}

// startGWDaemon runs the exporter and waits for its READY=1 on a notify
// socket, as systemd would.
func startGWDaemon(t *testing.T, bin string) *daemon {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	body := fmt.Sprintf("[config]\napi_secure = false\napi_user = admin\napi_password = %s\nprometheus_host = 127.0.0.1\nprometheus_port = 9287\n", gwStatsPass)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(bin, "gw", "--config", cfg, "--gateway-name", gateway)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	d := startDaemon(t, "ceph-iscsi gw", cmd, "gw-daemon.log")
	buf := make([]byte, 256)
	_ = conn.SetReadDeadline(time.Now().Add(120 * time.Second))
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		d.kill()
		t.Fatalf("no READY=1 from ceph-iscsi gw (%q, %v); log:\n%s", buf[:n], err, d.log(t))
	}
	return d
}

// stopGWDaemon sends SIGTERM: the exporter exits 0 and never logs the password.
func stopGWDaemon(t *testing.T, d *daemon) {
	t.Helper()
	if code, _, err := d.sigterm(60 * time.Second); err != nil || code != 0 {
		t.Errorf("ceph-iscsi gw after SIGTERM: exit %d, %v", code, err)
	}
	if strings.Contains(d.log(t), gwStatsPass) {
		t.Error("the exporter logged the API password")
	}
}

// scrape GETs /metrics and returns "name{labels}" -> value.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + gwStatsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}
