package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"ceph-iscsi/rbd"
	"ceph-iscsi/shell"
)

// cliGroup is a gateway group built through the API for the CLI tests: gw1 (named gw1,
// reached through --peer), 127.0.0.2 and 127.0.0.3 as gateways of one target, two disks
// exported, a CHAP client with a LUN, a mutual-CHAP client, a host group.
type cliGroup struct {
	cl       *cluster
	gw1      *apiDaemon
	gw2, gw3 *apiDaemon
	tgt      string
	disks    []string
	images   []string
}

const (
	cliTarget  = "iqn.2003-01.com.example.gwcli:t1"
	cliClientA = "iqn.1994-05.com.example:gwcli-a"
	cliClientB = "iqn.1994-05.com.example:gwcli-b"
	cliClientC = "iqn.1994-05.com.example:gwcli-c"
)

func newCLIGroup(t *testing.T) *cliGroup {
	t.Helper()
	cl := newCluster(t, "")
	g := &cliGroup{cl: cl, tgt: cliTarget}
	g.gw1 = cl.daemon(1)
	g.gw2 = cl.renamed(cl.daemon(2), "127.0.0.2")
	g.gw3 = cl.renamed(cl.daemon(3), "127.0.0.3")
	all := []string{g.gw1.name, g.gw2.name, g.gw3.name}
	for _, d := range []*apiDaemon{g.gw1, g.gw2, g.gw3} {
		cl.start(d)
	}
	tag := fmt.Sprintf("%08x", mrand.Uint32())
	for i := 1; i <= 2; i++ {
		img := fmt.Sprintf("gwcli-%s-%d", tag, i)
		g.images = append(g.images, img)
		g.disks = append(g.disks, "rbd/"+img)
	}
	t.Cleanup(func() {
		for _, img := range g.images {
			_ = rbd.Remove(context.Background(), cl.conn.Raw(), "rbd", img, rbd.RemoveOptions{})
		}
	})
	cl.mustCall(g.gw1, http.MethodPut, "/api/target/"+g.tgt, nil)
	cl.converge("target", all...)
	cl.mustCall(g.gw1, http.MethodPut, "/api/gateway/"+g.tgt+"/"+g.gw1.name, url.Values{"ip_address": {g.gw1.ip}, "skipchecks": {"true"}})
	cl.converge("gw1", all...)
	cl.mustCall(g.gw1, http.MethodPut, "/api/gateway/"+g.tgt+"/"+g.gw2.name, url.Values{"ip_address": {g.gw2.ip}})
	cl.converge("gw2", all...)
	cl.mustCall(g.gw1, http.MethodPut, "/api/gateway/"+g.tgt+"/"+g.gw3.name, url.Values{"ip_address": {g.gw3.ip}})
	cl.converge("gw3", all...)
	for i, img := range g.images {
		cl.mustCall(g.gw1, http.MethodPut, "/api/disk/rbd/"+img,
			url.Values{"mode": {"create"}, "size": {fmt.Sprintf("%dM", 64*(i+1))}, "pool": {"rbd"}, "count": {"1"}, "backstore": {"user:rbd"}})
		cl.converge("disk", all...)
		cl.mustCall(g.gw1, http.MethodPut, "/api/targetlun/"+g.tgt, url.Values{"disk": {g.disks[i]}})
		cl.converge("targetlun", all...)
	}
	cl.mustCall(g.gw1, http.MethodPut, "/api/client/"+g.tgt+"/"+cliClientA, nil)
	cl.mustCall(g.gw1, http.MethodPut, "/api/clientauth/"+g.tgt+"/"+cliClientA, url.Values{"username": {scenChapUserA}, "password": {scenChapPassA}})
	cl.mustCall(g.gw1, http.MethodPut, "/api/clientlun/"+g.tgt+"/"+cliClientA, url.Values{"disk": {g.disks[0]}})
	cl.mustCall(g.gw1, http.MethodPut, "/api/client/"+g.tgt+"/"+cliClientB, nil)
	cl.mustCall(g.gw1, http.MethodPut, "/api/clientauth/"+g.tgt+"/"+cliClientB, url.Values{
		"username": {scenChapUserB}, "password": {scenChapPassB},
		"mutual_username": {scenMutualUserB}, "mutual_password": {scenMutualPassB},
	})
	cl.mustCall(g.gw1, http.MethodPut, "/api/client/"+g.tgt+"/"+cliClientC, nil)
	cl.mustCall(g.gw1, http.MethodPut, "/api/hostgroup/"+g.tgt+"/grp1", url.Values{"members": {cliClientC}, "disks": {g.disks[1]}})
	cl.converge("clients", all...)
	return g
}

// args is the command line of gwcli on gw1.
func (g *cliGroup) args(words ...string) []string {
	scheme := "http"
	if g.cl.secure {
		scheme = "https"
	}
	a := []string{"ceph-iscsi", "cli", "--config", g.gw1.cfg, "--gateway-name", g.gw1.name,
		"--peer", fmt.Sprintf("localhost=%s://127.0.0.1:%d", scheme, g.cl.port),
		"--peer", fmt.Sprintf("%s=%s://127.0.0.1:%d", g.gw1.name, scheme, g.cl.port)}
	return append(a, words...)
}

// run runs gwcli in this process, as root, with HOME and CEPH_CONF of the test.
func (g *cliGroup) run(t *testing.T, words ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(g.args(words...), &out, &errb)
	return code, out.String(), errb.String()
}

func cliEnv(t *testing.T, g *cliGroup) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CEPH_CONF", g.cl.conf)
}

// lsLine matches one line of ls for name with summary, dots padding it to 132 columns.
func lsLine(t *testing.T, out, name, summary string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^[ |]*o- ` + regexp.QuoteMeta(name) + ` \.+ \[` + regexp.QuoteMeta(summary) + `\]$`)
	if !re.MatchString(out) {
		t.Errorf("no line for %q [%s] in:\n%s", name, summary, out)
	}
}

func TestCLIAgainstDaemons(t *testing.T) {
	g := newCLIGroup(t)
	cliEnv(t, g)

	// gw3 goes down: its state is UNKNOWN (the ping is refused) and the rest renders.
	g.gw3.signal(t, syscall.SIGTERM)
	g.gw3.wait(t)

	code, out, errOut := g.run(t, "ls")
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s%s", code, out, errOut)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if len(l) != shell.MaxWidth {
			t.Errorf("line %q is %d long, want %d", l, len(l), shell.MaxWidth)
		}
	}
	lsLine(t, out, "/", "...")
	lsLine(t, out, "cluster", "Clusters: 1")
	lsLine(t, out, "topology", "OSDs: 1,MONs: 1")
	lsLine(t, out, "disks", "192M, Disks: 2")
	lsLine(t, out, g.images[0], g.disks[0]+" (Unknown, 64M)")
	lsLine(t, out, g.images[1], g.disks[1]+" (Unknown, 128M)")
	lsLine(t, out, "iscsi-targets", "DiscoveryAuth: None, Targets: 1")
	lsLine(t, out, g.tgt, "Auth: None, Gateways: 3")
	lsLine(t, out, "gateways", "Up: 2/3, Portals: 3")
	lsLine(t, out, "gw1", "127.0.0.1 (UP)")
	lsLine(t, out, "127.0.0.2", "127.0.0.2 (UP)")
	lsLine(t, out, "127.0.0.3", "127.0.0.3 (UNKNOWN)")
	// The API picks each disk's owner among the gateways.
	if !regexp.MustCompile(`(?m)^      \| o- ` + regexp.QuoteMeta(g.disks[0]) + ` \.+ \[Owner: (gw1|127\.0\.0\.[23]), Lun: 0\]$`).MatchString(out) {
		t.Errorf("no target disk line for %s:\n%s", g.disks[0], out)
	}
	lsLine(t, out, "host-groups", "Groups : 1")
	lsLine(t, out, "grp1", "Hosts: 1, Disks: 1")
	lsLine(t, out, cliClientC, "host")
	lsLine(t, out, "hosts", "Auth: MISCONFIG, Hosts: 3")
	lsLine(t, out, cliClientA, "Auth: CHAP, Disks: 1(64M)")
	lsLine(t, out, cliClientB, "Auth: CHAP_MUTUAL, Disks: 0(0.00Y)")
	lsLine(t, out, cliClientC, "Auth: None, Disks: 1(128M)")
	if !regexp.MustCompile(`(?m)^  +\| o- lun 0 \.+ \[` + regexp.QuoteMeta(g.disks[0]) + `\(64M\), Owner: (gw1|127\.0\.0\.[23])\]$`).MatchString(out) {
		t.Errorf("no lun 0 line:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^  \| o- ceph \.+ \[HEALTH_(OK|WARN|ERR)\]$`).MatchString(out) {
		t.Errorf("no cluster health line:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^  \|   \| o- rbd \.+ \[\(x1\), Commit: 192M/\S+ \(\d+%\), Used: \S+\]$`).MatchString(out) {
		t.Errorf("no rbd pool line with the commit of both disks:\n%s", out)
	}

	// ls of a path, with a depth; a path through a node whose name holds a slash.
	code, out, _ = g.run(t, "ls", "/iscsi-targets/"+g.tgt+"/disks", "1")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, "o- disks ") {
		t.Errorf("ls disks 1: %d\n%s", code, out)
	}
	code, out, _ = g.run(t, "/iscsi-targets/"+g.tgt+"/disks/"+g.disks[1], "pwd")
	if want := "/iscsi-targets/" + g.tgt + "/disks/" + g.disks[1] + "\n"; code != 0 || out != want {
		t.Errorf("pwd in a target disk: %d %q, want %q", code, out, want)
	}
	code, out, _ = g.run(t, "/iscsi-targets/"+g.tgt+"/hosts/"+cliClientA, "ls", "lun 0")
	if code != 0 || !strings.HasPrefix(out, "o- lun 0 ") {
		t.Errorf("ls 'lun 0': %d %q", code, out)
	}

	// --json
	code, out, _ = g.run(t, "--json", "ls", "/disks")
	var tree shell.TreeJSON
	if err := json.Unmarshal([]byte(out), &tree); code != 0 || err != nil {
		t.Fatalf("ls --json: %d %v\n%s", code, err, out)
	}
	if tree.Path != "/disks" || tree.Summary != "192M, Disks: 2" || len(tree.Children) != 1 || len(tree.Children[0].Children) != 2 ||
		tree.Children[0].Children[0].Kind != shell.KindDisk {
		t.Errorf("ls --json /disks: %+v", tree)
	}
	code, out2, _ := g.run(t, "ls", "/disks", "--json")
	if code != 0 || out2 != out {
		t.Errorf("ls /disks --json differs from --json ls /disks:\n%s", out2)
	}

	// Errors: one line naming the object, exit 255 as upstream's -1.
	for _, tc := range []struct {
		words []string
		msg   string
	}{
		{[]string{"ls", "/nothing"}, "No such path /nothing\n"},
		{[]string{"/iscsi-targets/iqn.2003-01.com.example.gwcli:t9", "ls"}, "No such path /iscsi-targets/iqn.2003-01.com.example.gwcli:t9\n"},
		{[]string{"/disks", "frobnicate"}, "Command not found frobnicate\n"},
		{[]string{"ls", "/", "deep"}, "The tree depth must be a number.\n"},
		{[]string{"pwd", "extra"}, "Got 1 positionnal parameters, expected exactly 0.\n"},
		{[]string{"bookmarks"}, "Missing required parameter action\n"},
		{[]string{"goto", "nowhere"}, "No such bookmark nowhere\n"},
	} {
		code, out, errOut := g.run(t, tc.words...)
		if code != 255 || errOut != tc.msg || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 255 and %q", tc.words, code, out, errOut, tc.msg)
		}
	}

	// Batch from a file stops at the first error; bookmarks persist in ~/.gwcli.
	script := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(script, []byte("# setup\ncd /iscsi-targets\n\nbookmarks add tg\ncd /\ngoto tg\npwd\ncd @hosts\npwd\ncd -\npwd\nls /nothing\npwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = g.run(t, "-f", script)
	wantOut := "Bookmarked /iscsi-targets as tg.\n/iscsi-targets\n/iscsi-targets/" + g.tgt + "/hosts\n/iscsi-targets\n"
	if code != 255 || out != wantOut || errOut != script+":12: ls /nothing: No such path /nothing\n" {
		t.Errorf("batch: exit %d\nstdout %q\nwant   %q\nstderr %q", code, out, wantOut, errOut)
	}
	code, out, _ = g.run(t, "bookmarks", "show")
	if code != 0 || !strings.Contains(out, "tg\n--\n/iscsi-targets\n") || !strings.Contains(out, "gateways\n--------\n/iscsi-targets/"+g.tgt+"/gateways\n") {
		t.Errorf("bookmarks show: %d\n%s", code, out)
	}

	// Batch from standard input, as a separate process (the test binary runs the CLI).
	cmd := exec.Command(os.Args[0], g.args()[1:]...)
	cmd.Env = append(os.Environ(), envExecMain+"=1")
	cmd.Stdin = strings.NewReader("cd /disks\npwd\nexit\npwd\n")
	var sout, serr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &sout, &serr
	if err := cmd.Run(); err != nil || sout.String() != "/disks\n" {
		t.Errorf("stdin batch: %v %q %q", err, sout.String(), serr.String())
	}
}

func TestCLIStartup(t *testing.T) {
	cl := newCluster(t, "")
	d := cl.daemon(1)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CEPH_CONF", cl.conf)
	var out, errb bytes.Buffer

	if code := Run([]string{"gwcli", "-v"}, &out, &errb); code != 0 || out.String() != "gwcli - 2.7\nceph-iscsi "+version+"\n" {
		t.Errorf("-v: %d %q %q", code, out.String(), errb.String())
	}

	saved := getuid
	getuid = func() int { return 1000 }
	out.Reset()
	code := Run([]string{"gwcli", "--config", d.cfg, "ls"}, &out, &errb)
	getuid = saved
	if code != 255 || out.String() != "CLI only supports root level access\n" {
		t.Errorf("non-root: %d %q", code, out.String())
	}

	// The daemon is not started: the local API does not answer.
	out.Reset()
	errb.Reset()
	local := fmt.Sprintf("http://127.0.0.1:%d", cl.port)
	code = Run([]string{"gwcli", "--config", d.cfg, "--peer", "localhost=" + local, "ls"}, &out, &errb)
	if want := "Unable to contact the local API endpoint (" + local + "/api): "; code != 255 || !strings.HasPrefix(errb.String(), want) ||
		strings.Count(errb.String(), "\n") != 1 || out.Len() != 0 {
		t.Errorf("API down: %d %q %q, want a line starting %q", code, out.String(), errb.String(), want)
	}
}
