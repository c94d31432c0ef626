package shell_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ceph-iscsi/commands"
	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
	"ceph-iscsi/shell"
)

// envExecMain makes the test binary run the ceph-iscsi command line instead of the tests:
// the API daemons the commands talk to are this binary.
const envExecMain = "CEPH_ISCSI_SHELL_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envExecMain) == "1" {
		os.Exit(commands.Run(append([]string{"ceph-iscsi"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	devcluster.Main(m)
}

const (
	apiUser     = "admin"
	apiPassword = "Shell-Api-Secret-9f"
)

// gwGroup is a test's gateways: `ceph-iscsi api` daemons named by their addresses
// 127.0.0.N (so that a command calling a gateway by name reaches it without a resolver),
// sharing a config object of their own, each on an emulated configfs.
type gwGroup struct {
	t      *testing.T
	port   int
	object string
	cfg    string // the settings file, the same for every daemon
	conn   *rados.Conn
	store  *rados.Store
	outs   []*lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		p := 20000 + mrand.IntN(10000)
		free := true
		for i := 1; i <= n; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, p))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// startGateways starts n API daemons, 127.0.0.1 .. 127.0.0.n, and waits until each serves.
func startGateways(t *testing.T, n int) *gwGroup {
	t.Helper()
	c := devcluster.Require(t)
	g := &gwGroup{t: t, port: freePort(t, n),
		object: fmt.Sprintf("gateway.conf.shell.%s.%08x", strings.ReplaceAll(t.Name(), "/", "_"), mrand.Uint32())}
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf})
	if err != nil {
		t.Fatal(err)
	}
	g.conn = conn
	if g.store, err = rados.OpenStore(t.Context(), conn, rados.StoreOptions{Pool: "rbd", Object: g.object}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.store.Close()
		if io, err := conn.Raw().OpenIOContext("rbd"); err == nil {
			_ = io.Delete(g.object)
			io.Destroy()
		}
		conn.Close()
	})
	var ips []string
	for i := 1; i <= n; i++ {
		ips = append(ips, fmt.Sprintf("127.0.0.%d", i))
	}
	g.cfg = filepath.Join(t.TempDir(), "iscsi-gateway.cfg")
	text := fmt.Sprintf("[config]\npool = rbd\ngateway_conf = %s\ncluster_client_name = client.admin\n"+
		"api_user = %s\napi_password = %s\napi_port = %d\napi_secure = false\nminimum_gateways = 1\n"+
		"trusted_ip_list = %s\n", g.object, apiUser, apiPassword, g.port, strings.Join(ips, ","))
	if err := os.WriteFile(g.cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		args := []string{"api", "--config", g.cfg, "--configfs-root", t.TempDir(), "--gateway-name", ip,
			"--listen", net.JoinHostPort(ip, fmt.Sprint(g.port)), "--local-addr", ip}
		for _, peer := range ips {
			args = append(args, "--peer", fmt.Sprintf("%s=http://%s", peer, net.JoinHostPort(peer, fmt.Sprint(g.port))))
		}
		out := &lockedBuffer{}
		g.outs = append(g.outs, out)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), envExecMain+"=1", "CEPH_CONF="+c.Conf)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("gateway %s output:\n%s", ip, out)
			}
			if strings.Contains(out.String(), apiPassword) {
				t.Errorf("gateway %s logged the API password", ip)
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://" + net.JoinHostPort(ip, fmt.Sprint(g.port)) + "/api")
			if err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-done:
				t.Fatalf("gateway %s exited before serving:\n%s", ip, out)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway %s does not serve:\n%s", ip, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return g
}

// doc is the committed config object.
func (g *gwGroup) doc() *config.Doc {
	g.t.Helper()
	d, err := g.store.Load(g.t.Context())
	if err != nil {
		g.t.Fatal(err)
	}
	return d
}

// session is what a gwcli run gives commands: the client of the local API (127.0.0.1),
// the output, a snapshot loaded once per command and the current path.
type session struct {
	g   *gwGroup
	env *shell.Env
	out *bytes.Buffer
	cwd string
}

func (g *gwGroup) session() *session {
	g.t.Helper()
	st, err := settings.Read(g.cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	s := &session{g: g, out: &bytes.Buffer{}}
	client := shell.NewClient(false, g.port, apiUser, apiPassword, 60*time.Second)
	var cached *shell.Snapshot
	s.env = &shell.Env{API: client, Out: s.out, LocalName: "127.0.0.1", Settings: st,
		Refresh: func() { cached = nil },
		Cd:      func(p string) { s.cwd = p },
		Snapshot: func(ctx context.Context) (*shell.Snapshot, error) {
			if cached == nil {
				snap, err := g.loadSnapshot(ctx, client)
				if err != nil {
					return nil, err
				}
				cached = snap
			}
			return cached, nil
		}}
	return s
}

// loadSnapshot reads what the commands check against: the config from the local API, the
// pools from the cluster's OSD map, each disk's image from RBD.
func (g *gwGroup) loadSnapshot(ctx context.Context, c *shell.Client) (*shell.Snapshot, error) {
	var raw []byte
	if err := c.Do(ctx, http.MethodGet, c.URL("localhost", "config"), nil, &raw); err != nil {
		return nil, err
	}
	doc, err := config.Parse(raw)
	if err != nil {
		return nil, err
	}
	s := &shell.Snapshot{Raw: raw, Config: doc, Pools: map[string]shell.PoolFacts{}, Images: map[string]shell.ImageFacts{},
		Gateways: map[string]shell.GatewayState{},
		Cluster:  shell.ClusterFacts{Name: "ceph", Conf: os.Getenv("CEPH_CONF"), Client: "client.admin"}}
	out, err := g.conn.MonCommand(map[string]any{"prefix": "osd dump", "format": "json"})
	if err != nil {
		return nil, err
	}
	var dump struct {
		Pools []struct {
			Name string `json:"pool_name"`
			Type int    `json:"type"`
			Size int    `json:"size"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		return nil, err
	}
	for _, p := range dump.Pools {
		s.Pools[p.Name] = shell.PoolFacts{Name: p.Name, Replicated: p.Type == 1, Size: p.Size}
	}
	for id, d := range doc.Disks {
		info, err := rbd.Info(g.conn.Raw(), d.Pool, d.Image)
		if err != nil {
			continue // NOT FOUND
		}
		im := shell.ImageFacts{Size: uint64(info.Size), Features: info.FeatureNames, SnapshotSizes: map[string]uint64{}}
		snaps, err := rbd.ListSnapshots(g.conn.Raw(), d.Pool, d.Image)
		if err != nil {
			return nil, err
		}
		for _, sn := range snaps {
			im.Snapshots = append(im.Snapshots, sn.Name)
			im.SnapshotSizes[sn.Name] = uint64(sn.Size)
		}
		s.Images[id] = im
	}
	return s, nil
}

// run runs one command on node and returns what it printed; the snapshot is loaded afresh
// for each command, as one gwcli one-shot does.
func (s *session) run(n *shell.Node, name string, words ...string) (string, error) {
	s.g.t.Helper()
	cmd := shell.Lookup(n.Kind, name)
	if cmd == nil {
		s.g.t.Fatalf("no command %s on %s", name, n.Kind)
	}
	s.env.Refresh()
	s.out.Reset()
	err := cmd.Run(s.g.t.Context(), s.env, n, bindWords(s.g.t, cmd, words))
	return s.out.String(), err
}

// must runs a command that has to succeed and print want.
func (s *session) must(n *shell.Node, name string, want string, words ...string) {
	s.g.t.Helper()
	out, err := s.run(n, name, words...)
	if err != nil {
		s.g.t.Fatalf("%s %s %v: %v (printed %q)", n.Path(), name, words, err, out)
	}
	if out != want {
		s.g.t.Fatalf("%s %s %v printed\n%q\nwant\n%q", n.Path(), name, words, out, want)
	}
}

// bindWords binds like configshell: positional words in order, name=value anywhere, extra
// words into a variadic last parameter.
func bindWords(t *testing.T, c *shell.Command, words []string) shell.Args {
	t.Helper()
	a := shell.Args{Values: map[string]string{}, Given: map[string]bool{}}
	pos := 0
	for _, w := range words {
		if k, v, isKV := strings.Cut(w, "="); isKV {
			a.Values[k], a.Given[k] = v, true
			continue
		}
		switch {
		case pos < len(c.Params):
			a.Values[c.Params[pos].Name], a.Given[c.Params[pos].Name] = w, true
			pos++
		case c.Variadic:
			a.Values[c.Params[len(c.Params)-1].Name] += " " + w
		default:
			t.Fatalf("%s: too many arguments", c.Name)
		}
	}
	for _, p := range c.Params {
		if !a.Given[p.Name] {
			if p.Required {
				t.Fatalf("%s: %s is required", c.Name, p.Name)
			}
			a.Values[p.Name] = p.Default
		}
	}
	return a
}

// node builds a tree node by hand: parents named by path (their kinds do not matter to
// the commands), the node itself with its kind and identity fields.
func node(kind shell.Kind, id shell.Node, path ...string) *shell.Node {
	parent := &shell.Node{Name: "/", Kind: shell.KindRoot}
	if len(path) == 0 {
		return parent
	}
	for _, p := range path[:len(path)-1] {
		c := &shell.Node{Name: p, Parent: parent}
		parent.Children = append(parent.Children, c)
		parent = c
	}
	id.Name, id.Kind, id.Parent = path[len(path)-1], kind, parent
	n := &id
	parent.Children = append(parent.Children, n)
	return n
}
