package shell_test

import (
	"bytes"
	"context"
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
	"ceph-iscsi/settings"
	"ceph-iscsi/shell"
)

// envExecMain makes the test binary run the ceph-iscsi command line instead of the tests:
// the API daemons the commands talk to are this binary.
const envExecMain = "CEPH_ISCSI_SHELL_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if code, ran := shell.RunTestChild(); ran {
		os.Exit(code)
	}
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
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), envExecMain+"=1", "CEPH_CONF="+c.Conf)
		out := serve(t, "gateway "+ip, cmd, "http://"+net.JoinHostPort(ip, fmt.Sprint(g.port))+"/api", 60*time.Second,
			func(out string) {
				if strings.Contains(out, apiPassword) {
					t.Errorf("gateway %s logged the API password", ip)
				}
			})
		g.outs = append(g.outs, out)
	}
	return g
}

// serve starts cmd (a daemon called name) and waits until GET url answers: its exit
// before that, or no answer within limit, is fatal. On cleanup it is killed, its output
// is logged if the test failed, and check (if not nil) reads that output.
func serve(t *testing.T, name string, cmd *exec.Cmd, url string, limit time.Duration, check func(out string)) *lockedBuffer {
	t.Helper()
	out := &lockedBuffer{}
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
			t.Logf("%s output:\n%s", name, out)
		}
		if check != nil {
			check(out.String())
		}
	})
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return out
		}
		select {
		case <-done:
			t.Fatalf("%s exited before serving:\n%s", name, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not serve:\n%s", name, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
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

// session is one gwcli: the shell (the frame's tree, binding and Load) over the client
// of the local API, 127.0.0.1, with its output captured per command line.
type session struct {
	g   *gwGroup
	sh  *shell.Shell
	out *bytes.Buffer
}

func (g *gwGroup) session() *session {
	g.t.Helper()
	st, err := settings.Read(g.cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	client := shell.NewClient(false, g.port, apiUser, apiPassword, 60*time.Second)
	client.Peers = map[string]string{"localhost": "http://" + net.JoinHostPort("127.0.0.1", fmt.Sprint(g.port))}
	s := &session{g: g, out: &bytes.Buffer{}}
	conf := os.Getenv("CEPH_CONF")
	s.sh = shell.New(shell.Options{API: client, Out: s.out, LocalName: "127.0.0.1", Interactive: true, Settings: st,
		Load: func(ctx context.Context) (*shell.Snapshot, error) {
			return shell.Load(ctx, shell.LoadOptions{API: client, Conn: g.conn, ClusterName: "ceph", Conf: conf,
				ClientName: "client.admin", LocalName: "127.0.0.1"})
		}})
	return s
}

// line is a command line as an operator types it: path, command, then the words, each
// quoted when it holds a space.
func line(path, name string, words ...string) string {
	parts := []string{quoteWord(path), name}
	for _, w := range words {
		parts = append(parts, quoteWord(w))
	}
	return strings.Join(parts, " ")
}

func quoteWord(w string) string {
	if strings.ContainsAny(w, " \t'") {
		return `"` + w + `"`
	}
	return w
}

// run runs one command line and returns what it printed.
func (s *session) run(path, name string, words ...string) (string, error) {
	s.g.t.Helper()
	s.out.Reset()
	err := s.sh.Exec(s.g.t.Context(), line(path, name, words...))
	return s.out.String(), err
}

// must runs a command line that has to succeed and print want.
func (s *session) must(path, name string, want string, words ...string) {
	s.g.t.Helper()
	out, err := s.run(path, name, words...)
	if err != nil {
		s.g.t.Fatalf("%s: %v (printed %q)", line(path, name, words...), err, out)
	}
	if out != want {
		s.g.t.Fatalf("%s printed\n%q\nwant\n%q", line(path, name, words...), out, want)
	}
}
