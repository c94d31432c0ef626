package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// upstreamDir is where dist/dev/upstream.sh (run by make deps) unpacked
// Debian's ceph-iscsi.
func upstreamDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CEPH_ISCSI_UPSTREAM")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatal(err)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "ceph-iscsi-upstream")
	}
	if _, err := os.Stat(filepath.Join(dir, "root/usr/bin/rbd-target-api")); err != nil {
		t.Fatalf("upstream's rbd-target-api is not unpacked in %s (run make deps, or dist/dev/upstream.sh): %v", dir, err)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import flask, rados, rbd, rtslib_fb, netifaces, OpenSSL, cryptography").CombinedOutput(); err != nil {
		t.Fatalf("upstream's Python dependencies are missing (run make deps): %v\n%s", err, out)
	}
	return dir
}

// objectState is the config object as RADOS holds it.
type objectState struct {
	data    []byte
	epoch   string // the epoch xattr
	version uint64 // RADOS's object version: any write bumps it
}

func (cl *cluster) objectState() objectState {
	cl.t.Helper()
	io, err := cl.conn.Raw().OpenIOContext(cl.pool)
	if err != nil {
		cl.t.Fatal(err)
	}
	defer io.Destroy()
	st, err := io.Stat(cl.object)
	if err != nil {
		cl.t.Fatal(err)
	}
	buf := make([]byte, st.Size+1)
	n, err := io.Read(cl.object, buf, 0)
	if err != nil {
		cl.t.Fatal(err)
	}
	s := objectState{data: buf[:n]}
	if s.version, err = io.GetLastVersion(); err != nil {
		cl.t.Fatal(err)
	}
	x := make([]byte, 64)
	if n, err = io.GetXattr(cl.object, "epoch", x); err != nil {
		cl.t.Fatal(err)
	}
	s.epoch = string(x[:n])
	return s
}

func (cl *cluster) requireObject(what string, want objectState) {
	cl.t.Helper()
	got := cl.objectState()
	if !bytes.Equal(got.data, want.data) || got.epoch != want.epoch || got.version != want.version {
		cl.t.Fatalf("%s changed the config object: epoch %s -> %s, object version %d -> %d, bytes equal %v",
			what, want.epoch, got.epoch, want.version, got.version, bytes.Equal(got.data, want.data))
	}
}

// upstreamAPI is upstream's rbd-target-api (Python) on 127.0.0.1, on the
// cluster's config object. Its settings path is fixed
// (/etc/ceph/iscsi-gateway.cfg): a private mount namespace shows it a
// directory of ours there.
type upstreamAPI struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	port int
	done chan struct{}
	code int
}

func (cl *cluster) startUpstream(dir string) *upstreamAPI {
	cl.t.Helper()
	u := &upstreamAPI{out: &syncBuffer{}, port: freePort(cl.t), done: make(chan struct{})}
	etc := cl.t.TempDir()
	cfg := fmt.Sprintf("[config]\ncluster_name = %s\nceph_config_dir = %s\npool = %s\ngateway_conf = %s\n"+
		"cluster_client_name = client.admin\napi_secure = false\napi_host = 127.0.0.1\napi_port = %d\n"+
		"api_user = %s\napi_password = %s\ntrusted_ip_list = 127.0.0.1,127.0.0.2,127.0.0.3\n"+
		"minimum_gateways = 1\nlog_to_file = false\nlog_to_stderr = true\n",
		strings.TrimSuffix(filepath.Base(cl.conf), ".conf"), filepath.Dir(cl.conf), cl.pool, cl.object,
		u.port, apiUser, apiPassword)
	if err := os.WriteFile(filepath.Join(etc, "iscsi-gateway.cfg"), []byte(cfg), 0o600); err != nil {
		cl.t.Fatal(err)
	}
	// unshare execs the shell, which execs python: the pid stays upstream's.
	u.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", `mount --bind "$0" /etc/ceph && exec /usr/bin/python3 "$1"`,
		etc, filepath.Join(dir, "root/usr/bin/rbd-target-api"))
	u.cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(dir, "root/usr/lib/python3/dist-packages"))
	u.cmd.Stdout, u.cmd.Stderr = u.out, u.out
	if err := u.cmd.Start(); err != nil {
		cl.t.Fatal(err)
	}
	go func() {
		err := u.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			u.code = ee.ExitCode()
		default:
			u.code = -1
		}
		close(u.done)
	}()
	cl.t.Cleanup(func() {
		select {
		case <-u.done:
		default:
			_ = u.cmd.Process.Kill()
			<-u.done
		}
		if cl.t.Failed() {
			cl.t.Logf("upstream rbd-target-api output:\n%s", u.out)
		}
	})
	// Python under load: minutes are possible, a hang is not.
	deadline := time.Now().Add(180 * time.Second)
	for {
		select {
		case <-u.done:
			cl.t.Fatalf("upstream rbd-target-api exited %d during start-up:\n%s", u.code, u.out)
		default:
		}
		resp, err := http.Get(u.url("/api"))
		if err == nil {
			resp.Body.Close()
			return u
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("upstream rbd-target-api does not answer:\n%s", u.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (u *upstreamAPI) url(path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(u.port)) + path
}

func (u *upstreamAPI) stop(t *testing.T) {
	t.Helper()
	if err := u.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-u.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("upstream rbd-target-api still running 60 s after SIGTERM:\n%s", u.out)
	}
}

// getConfig is GET /api/config, decoded.
func getConfig(t *testing.T, rawURL string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(apiUser, apiPassword)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", rawURL, resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s: %v: %s", rawURL, err, body)
	}
	return m
}

func requireSameJSON(t *testing.T, what string, a, b map[string]any) {
	t.Helper()
	if reflect.DeepEqual(a, b) {
		return
	}
	ja, _ := json.MarshalIndent(a, "", "  ")
	jb, _ := json.MarshalIndent(b, "", "  ")
	t.Fatalf("%s differ:\n%s\nvs\n%s", what, ja, jb)
}

// TestGoingBackToUpstream proves the README's way back: upstream's Python
// rbd-target-api (Debian's ceph-iscsi) serves a config object ours last
// wrote, and ours serves one upstream last wrote, each without writing it
// (same bytes, epoch xattr and RADOS object version after a start, a GET
// /api/config and a stop), and both answer GET /api/config with the same
// JSON. Upstream cannot configure anything here (each of its changes goes
// through the kernel's LIO first), so what it writes is its start-up
// upgrade of a version-10 object (upstream before 3.4: a target's disks as
// a list, no target auth), as a gateway coming from that version does.
func TestGoingBackToUpstream(t *testing.T) {
	dir := upstreamDir(t)
	// A pool of its own: upstream's epoch watcher always reads gateway.conf.
	pool := fmt.Sprintf("goingback-%08x", mrand.Uint32())
	cl := newClusterAtPool(t, pool, "gateway.conf")

	// --- ours writes, upstream reads ---
	gw := cl.daemon(1)
	cl.start(gw)
	img := fmt.Sprintf("goingback-%08x", mrand.Uint32())
	t.Cleanup(func() { _ = rbd.Remove(t.Context(), cl.conn.Raw(), "rbd", img, rbd.RemoveOptions{}) })
	cl.mustCall(gw, http.MethodPut, "/api/target/"+apiTarget, nil)
	cl.mustCall(gw, http.MethodPut, "/api/gateway/"+apiTarget+"/gw1", url.Values{"ip_address": {gw.ip}, "skipchecks": {"true"}})
	cl.mustCall(gw, http.MethodPut, "/api/disk/rbd/"+img, url.Values{"mode": {"create"}, "size": {"64M"}, "backstore": {"user:rbd"}})
	cl.mustCall(gw, http.MethodPut, "/api/targetlun/"+apiTarget, url.Values{"disk": {"rbd/" + img}})
	cl.mustCall(gw, http.MethodPut, "/api/client/"+apiTarget+"/"+apiClient, nil)
	cl.mustCall(gw, http.MethodPut, "/api/clientauth/"+apiTarget+"/"+apiClient, url.Values{
		"username": {apiChapUser}, "password": {apiChapPass},
		"mutual_username": {apiChapUser + "m"}, "mutual_password": {apiChapPass + "m"}})
	cl.mustCall(gw, http.MethodPut, "/api/clientlun/"+apiTarget+"/"+apiClient, url.Values{"disk": {"rbd/" + img}})
	ours := getConfig(t, cl.url(gw, "/api/config"))
	oursLast := cl.objectState()
	gw.signal(t, syscall.SIGTERM)
	if code := gw.wait(t); code != 0 {
		t.Fatalf("ours exited %d on SIGTERM", code)
	}
	cl.requireObject("our daemon's stop", oursLast)

	up := cl.startUpstream(dir)
	requireSameJSON(t, "GET /api/config of ours and of upstream on the object ours wrote", ours, getConfig(t, up.url("/api/config")))
	up.stop(t)
	cl.requireObject("upstream's start, GET /api/config and stop", oursLast)

	// --- upstream writes, ours reads ---
	epoch := int64(ours["epoch"].(float64))
	v10 := version10(t, oursLast.data, epoch+1)
	cl.writeObject(v10, fmt.Sprint(epoch+1))
	up = cl.startUpstream(dir)
	upstreamJSON := getConfig(t, up.url("/api/config"))
	up.stop(t)
	upLast := cl.objectState()
	if bytes.Equal(upLast.data, v10) || upLast.epoch != fmt.Sprint(epoch+2) {
		t.Fatalf("upstream did not upgrade the version-10 object (epoch %s):\n%s", upLast.epoch, upLast.data)
	}
	// Upstream's upgrade gives back what ours wrote, but for the time
	// stamps of its commit (the document's and each target's) and the epoch.
	strip := func(m map[string]any) map[string]any {
		var c map[string]any
		b, _ := json.Marshal(m)
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		delete(c, "epoch")
		delete(c, "updated")
		for _, tg := range c["targets"].(map[string]any) {
			delete(tg.(map[string]any), "updated")
		}
		return c
	}
	requireSameJSON(t, "ours before and upstream's upgrade of its version-10 form", strip(ours), strip(upstreamJSON))

	gw = cl.daemon(1)
	cl.start(gw)
	cl.converge("ours restores what upstream wrote", "gw1")
	requireSameJSON(t, "GET /api/config of upstream and of ours on the object upstream wrote", upstreamJSON, getConfig(t, cl.url(gw, "/api/config")))
	gw.signal(t, syscall.SIGTERM)
	if code := gw.wait(t); code != 0 {
		t.Fatalf("ours exited %d on SIGTERM", code)
	}
	cl.requireObject("our daemon's start, GET /api/config and stop", upLast)
}

// newClusterAtPool is newClusterAt in a new pool, deleted afterwards.
func newClusterAtPool(t *testing.T, pool, object string) *cluster {
	t.Helper()
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: devcluster.Require(t).Conf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.MonCommand(map[string]any{"prefix": "osd pool create", "pool": pool, "pg_num": 8}); err != nil {
		conn.Close()
		t.Fatalf("osd pool create %s: %v", pool, err)
	}
	t.Cleanup(func() {
		_, _ = conn.MonCommand(map[string]any{"prefix": "osd pool delete", "pool": pool, "pool2": pool,
			"yes_i_really_really_mean_it": true})
		conn.Close()
	})
	return newClusterAt(t, pool, object, "minimum_gateways = 1\n")
}

// version10 is doc in the layout upstream wrote before 3.4 (config
// version 10): a target's disks as a sorted list, no target auth; keys
// sorted and indented as upstream's json.dumps(sort_keys=True, indent=4);
// epoch is the one it was committed at.
func version10(t *testing.T, doc []byte, epoch int64) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	m["version"] = 10
	m["epoch"] = epoch
	for _, tg := range m["targets"].(map[string]any) {
		tg := tg.(map[string]any)
		var disks []string
		for d := range tg["disks"].(map[string]any) {
			disks = append(disks, d)
		}
		sort.Strings(disks)
		tg["disks"] = disks
		delete(tg, "auth")
	}
	b, err := json.MarshalIndent(m, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (cl *cluster) writeObject(data []byte, epoch string) {
	cl.t.Helper()
	io, err := cl.conn.Raw().OpenIOContext(cl.pool)
	if err != nil {
		cl.t.Fatal(err)
	}
	defer io.Destroy()
	if err := io.WriteFull(cl.object, data); err != nil {
		cl.t.Fatal(err)
	}
	if err := io.SetXattr(cl.object, "epoch", []byte(epoch)); err != nil {
		cl.t.Fatal(err)
	}
}
