package shell_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
	"ceph-iscsi/shell"
)

// upstreamRoot is where Debian's ceph-iscsi package is unpacked (never installed over
// ours), as bench/api.sh does; CEPH_ISCSI_UPSTREAM overrides it.
func upstreamRoot() string {
	if d := os.Getenv("CEPH_ISCSI_UPSTREAM"); d != "" {
		return filepath.Join(d, "root")
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "ceph-iscsi-upstream", "root")
}

// requireUpstream returns the unpacked package, or skips (fails under CI=true) when it or
// the Python modules upstream imports are missing.
func requireUpstream(t *testing.T) string {
	t.Helper()
	root := upstreamRoot()
	var missing []string
	if _, err := os.Stat(filepath.Join(root, "usr", "bin", "rbd-target-api")); err != nil {
		missing = append(missing, "the ceph-iscsi package unpacked in "+root+" (make deps, or dist/dev/upstream.sh)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography, requests").Run(); err != nil {
		missing = append(missing, "upstream's Python modules (python3-flask python3-rados python3-rbd python3-rtslib-fb python3-netifaces python3-openssl python3-cryptography python3-requests)")
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (upstream reads /etc/ceph/iscsi-gateway.cfg: a private mount namespace points it elsewhere)")
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("upstream's rbd-target-api cannot run: %s", strings.Join(missing, "; "))
		}
		t.Skipf("upstream's rbd-target-api cannot run: %s", strings.Join(missing, "; "))
	}
	return root
}

// TestCommandsAgainstUpstreamAPI drives the shell against upstream's Python rbd-target-api
// serving a group that our gateway built with the shell (a rolling upgrade has both): the
// read paths ls, info and export. Every write of upstream's API (even a target create)
// needs the kernel's LIO on upstream's side, which this host lacks.
func TestCommandsAgainstUpstreamAPI(t *testing.T) {
	up := requireUpstream(t)
	c := devcluster.Require(t)

	// the group, built by our API through the shell
	g := startGateways(t, 1)
	ours := g.session()
	const tgt = "iqn.2003-01.com.example.shell:upstream"
	const cli = "iqn.1994-05.com.example:shell-upstream"
	disk := fmt.Sprintf("rbd/shup%d", g.port)
	t.Cleanup(func() { _ = rbdRemove(g, disk) })
	ours.must("/iscsi-targets", "create", "ok\n", tgt)
	ours.must("/iscsi-targets/"+tgt+"/gateways", "create", "OS version/package checks have been bypassed\n"+
		"Adding gateway, sync'ing 0 disk(s) and 0 client(s)\nok\n", "127.0.0.1", "127.0.0.1", "skipchecks=true")
	ours.must("/disks", "create", "ok\n", disk, "32M")
	ours.must("/iscsi-targets/"+tgt+"/hosts", "create", "ok\n", cli)
	ours.must("/iscsi-targets/"+tgt+"/hosts/"+cli, "disk", "ok\n", "add", disk)
	oursExport, err := ours.run("/", "export")
	if err != nil {
		t.Fatal(err)
	}

	port := freePort(t, 1)
	object := g.object
	etc := t.TempDir()
	cfgText := fmt.Sprintf("[config]\ncluster_name = ceph\nceph_config_dir = %s\ncluster_client_name = client.admin\n"+
		"pool = rbd\ngateway_conf = %s\napi_secure = false\napi_host = 127.0.0.1\napi_port = %d\n"+
		"api_user = %s\napi_password = %s\ntrusted_ip_list = 127.0.0.1\nminimum_gateways = 1\n"+
		"log_to_file = false\nlog_to_stderr = true\n", filepath.Dir(c.Conf), object, port, apiUser, apiPassword)
	cfg := filepath.Join(etc, "iscsi-gateway.cfg")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if filepath.Base(c.Conf) != "ceph.conf" {
		t.Fatalf("upstream finds ceph.conf as <ceph_config_dir>/<cluster_name>.conf; the dev cluster's is %s", c.Conf)
	}
	// /etc/ceph of the upstream process only is the test's directory.
	script := fmt.Sprintf("mount --bind %q /etc/ceph && exec /usr/bin/python3 %q", etc, filepath.Join(up, "usr", "bin", "rbd-target-api"))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(up, "usr", "lib", "python3", "dist-packages"))
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	serve(t, "upstream rbd-target-api", cmd, "http://"+addr+"/api", 90*time.Second, nil)

	st, err := settings.Read(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := shell.NewClient(false, port, apiUser, apiPassword, 60*time.Second)
	client.Peers = map[string]string{"localhost": "http://" + addr}
	conn, err := devclusterConn(c.Conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	var buf bytes.Buffer
	sh := shell.New(shell.Options{API: client, Out: &buf, LocalName: "127.0.0.1", Settings: st,
		Load: func(ctx context.Context) (*shell.Snapshot, error) {
			return shell.Load(ctx, shell.LoadOptions{API: client, Conn: conn, ClusterName: "ceph", Conf: c.Conf,
				ClientName: "client.admin", LocalName: "127.0.0.1"})
		}})
	run := func(line string) string {
		t.Helper()
		buf.Reset()
		if err := sh.Exec(t.Context(), line); err != nil {
			t.Fatalf("%s: %v (printed %q)", line, err, buf.String())
		}
		return buf.String()
	}

	ls := run("ls /")
	for _, want := range []string{"o- / ", "o- disks ", "[32M, Disks: 1]", "o- iscsi-targets ",
		"[DiscoveryAuth: None, Targets: 1]", "o- " + tgt + " ", "[Auth: None, Gateways: 1]",
		"o- gateways ", "Portals: 1]", "o- hosts ", "[Auth: ACL_ENABLED, Hosts: 1]",
		"o- " + cli + " ", "Auth: None, Disks: 1(32M)]", "o- lun 0 ", "[" + disk + "(32M), Owner: 127.0.0.1]"} {
		if !strings.Contains(ls, want) {
			t.Fatalf("ls lacks %q:\n%s", want, ls)
		}
	}
	info := run("/iscsi-targets/" + tgt + " info")
	if !strings.HasPrefix(info, "Target Iqn     .. "+tgt+"\nAuth\n- mutual_password .. \n") ||
		!strings.Contains(info, "- cmdsn_depth .. 128\n") {
		t.Fatalf("target info:\n%s", info)
	}
	if got := run("/ info"); !strings.Contains(got, fmt.Sprintf("Rest API port      : %d\n", port)) {
		t.Fatalf("root info:\n%s", got)
	}
	// export: what upstream's gwcli prints is Python's json.dumps of the API's answer
	export := run("/ export")
	raw, err := getConfigFrom(client)
	if err != nil {
		t.Fatal(err)
	}
	py := exec.Command("/usr/bin/python3", "-c", "import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True, indent=4, separators=(',', ': ')))")
	py.Stdin = bytes.NewReader(raw)
	want, err := py.Output()
	if err != nil {
		t.Fatal(err)
	}
	if export != string(want) {
		t.Fatalf("export differs from Python's json.dumps:\n%s\nwant\n%s", export, want)
	}
	if !strings.Contains(export, `"`+tgt+`": {`) {
		t.Fatalf("export lacks the target:\n%s", export)
	}
	if export != oursExport {
		t.Fatalf("export through upstream's API differs from ours:\n%s\nours\n%s", export, oursExport)
	}
	dinfo := run("/disks/" + disk + " info")
	if !strings.Contains(dinfo, "Size H                .. 32M\n") || !strings.Contains(dinfo, "Owner                 .. 127.0.0.1\n") {
		t.Fatalf("disk info:\n%s", dinfo)
	}
	if got := run("/iscsi-targets/" + tgt + "/disks/" + disk + " info"); got != "Name  .. "+disk+"\nOwner .. 127.0.0.1\n\n" {
		t.Fatalf("target disk info:\n%s", got)
	}
}

func rbdRemove(g *gwGroup, disk string) error {
	pool, image, _ := strings.Cut(disk, "/")
	return rbd.Remove(context.Background(), g.conn.Raw(), pool, image, rbd.RemoveOptions{})
}

func devclusterConn(conf string) (*rados.Conn, error) {
	return rados.Connect(rados.ConnOptions{ConfFile: conf})
}

func getConfigFrom(c *shell.Client) ([]byte, error) {
	var raw []byte
	err := c.Do(context.Background(), http.MethodGet, c.URL("localhost", "config"), nil, &raw)
	return raw, err
}
