package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeResolver answers from two tables, like a hosts file would.
type fakeResolver struct {
	forward map[string][]string // name -> addresses, in order
	reverse map[string][]string // address -> names, primary first
}

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	for _, a := range f.forward[host] {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (f fakeResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	if n, ok := f.reverse[addr]; ok {
		return append([]string(nil), n...), nil
	}
	return nil, errors.New("no PTR record")
}

func TestFQDNSemantics(t *testing.T) {
	for _, c := range []struct {
		name     string
		hostname string
		r        fakeResolver
		want     string
	}{
		{
			name:     "debian hosts line: dotted primary",
			hostname: "gw1",
			r: fakeResolver{
				forward: map[string][]string{"gw1": {"127.0.1.1"}},
				reverse: map[string][]string{"127.0.1.1": {"gw1.example.com.", "gw1."}},
			},
			want: "gw1.example.com",
		},
		{
			name:     "dotted alias after a short primary",
			hostname: "gw1",
			r: fakeResolver{
				forward: map[string][]string{"gw1": {"10.0.0.1"}},
				reverse: map[string][]string{"10.0.0.1": {"gw1", "gw1.lab.test"}},
			},
			want: "gw1.lab.test",
		},
		{
			// Python still looks a dotted hostname up; the reverse name wins.
			name:     "dotted hostname is resolved too",
			hostname: "gw1.example.com",
			r: fakeResolver{
				forward: map[string][]string{"gw1.example.com": {"10.0.0.1"}},
				reverse: map[string][]string{"10.0.0.1": {"gw1.other.test"}},
			},
			want: "gw1.other.test",
		},
		{
			// upstream issues #158/#265: the phantom "localhost" gateway.
			name:     "hostname on the loopback line",
			hostname: "vm",
			r: fakeResolver{
				forward: map[string][]string{"vm": {"127.0.0.1"}},
				reverse: map[string][]string{"127.0.0.1": {"localhost.", "runsc.", "vm."}},
			},
			want: "localhost",
		},
		{
			name:     "loopback line with localdomain",
			hostname: "gw2",
			r: fakeResolver{
				forward: map[string][]string{"gw2": {"127.0.0.1"}},
				reverse: map[string][]string{"127.0.0.1": {"localhost", "localhost.localdomain", "gw2"}},
			},
			want: "localhost.localdomain",
		},
		{
			name:     "first address only",
			hostname: "gw3",
			r: fakeResolver{
				forward: map[string][]string{"gw3": {"10.0.0.3", "10.0.0.4"}},
				reverse: map[string][]string{"10.0.0.3": {"gw3"}, "10.0.0.4": {"gw3.wrong.test"}},
			},
			want: "gw3",
		},
		{
			name:     "unresolvable hostname",
			hostname: "lonely",
			r:        fakeResolver{},
			want:     "lonely",
		},
		{
			name:     "no reverse entry",
			hostname: "gw4",
			r:        fakeResolver{forward: map[string][]string{"gw4": {"10.0.0.9"}}},
			want:     "gw4",
		},
		{
			name:     "ipv6 address",
			hostname: "gw6",
			r: fakeResolver{
				forward: map[string][]string{"gw6": {"2001:db8::6"}},
				reverse: map[string][]string{"2001:db8::6": {"gw6.v6.test."}},
			},
			want: "gw6.v6.test",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fqdn(t.Context(), c.r, c.hostname); got != c.want {
				t.Errorf("fqdn(%q) = %q, want %q", c.hostname, got, c.want)
			}
		})
	}
}

// hermeticEnv makes the test binary a child that reports this host's names
// from inside the namespaces nameCase.run made; see TestMain.
const hermeticEnv = "CEPH_ISCSI_HOST_TEST_NAMES"

func TestMain(m *testing.M) {
	if os.Getenv(hermeticEnv) != "" {
		os.Exit(reportNames())
	}
	os.Exit(m.Run())
}

// nameCase is a hostname and the hosts file it resolves through.
type nameCase struct {
	desc, hostname, hosts string
	fqdn                  string // what getfqdn() returns there
}

// names is what the real resolver path gives inside a case's namespaces.
type names struct {
	FQDN, Python, Short, ResolvedName, ResolvedShort string
}

// run re-executes the test binary in new UTS and mount namespaces, where the
// hostname is the case's and /etc/hosts, /etc/nsswitch.conf ("hosts: files")
// and /etc/resolv.conf (no server) are the test's: the real resolver, glibc's
// and Go's, then answers the same on every machine, whatever its name, its
// hosts file or its DNS.
func (c nameCase) run(t *testing.T) names {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"hosts": c.hosts, "nsswitch.conf": "hosts: files\n", "resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hermeticEnv+"="+dir, "HOSTNAME_FOR_TEST="+c.hostname)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWNS}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: namespaced child: %v\n%s", c.desc, err, stderr.String())
	}
	var n names
	if err := json.Unmarshal(out, &n); err != nil {
		t.Fatalf("%s: child printed %q: %v\n%s", c.desc, out, err, stderr.String())
	}
	return n
}

// reportNames is the child of nameCase.run: it sets the namespace up and
// prints what FQDN, Python's socket.getfqdn(), ShortName and Resolve say.
func reportNames() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	dir := os.Getenv(hermeticEnv)
	// private first: the bind mounts below must not reach the host's namespace
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make / private: %w", err))
	}
	for _, name := range []string{"hosts", "nsswitch.conf", "resolv.conf"} {
		if err := syscall.Mount(filepath.Join(dir, name), "/etc/"+name, "", syscall.MS_BIND, ""); err != nil {
			return fail(fmt.Errorf("bind %s over /etc/%s: %w", name, name, err))
		}
	}
	if err := syscall.Sethostname([]byte(os.Getenv("HOSTNAME_FOR_TEST"))); err != nil {
		return fail(fmt.Errorf("sethostname: %w", err))
	}
	var n names
	var err error
	if n.FQDN, err = FQDN(); err != nil {
		return fail(err)
	}
	if n.Short, err = ShortName(); err != nil {
		return fail(err)
	}
	id, err := Resolve("")
	if err != nil {
		return fail(err)
	}
	n.ResolvedName, n.ResolvedShort = id.Name, id.ShortName
	py, err := exec.Command("python3", "-c", "import socket; print(socket.getfqdn())").Output()
	if err != nil {
		return fail(fmt.Errorf("python3: %w", err))
	}
	n.Python = strings.TrimSpace(string(py))
	if err := json.NewEncoder(os.Stdout).Encode(n); err != nil {
		return fail(err)
	}
	return 0
}

// TestFQDNMatchesPython checks the real resolver path against the implementation it
// imitates, Python's socket.getfqdn(), and against the expected name, for hostnames
// and hosts files the test sets up in namespaces of its own (see nameCase.run).
func TestFQDNMatchesPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 not installed (make deps installs it): it is what FQDN is checked against")
	}
	for _, c := range []nameCase{
		{"dotted name first", "gw1", "192.0.2.5 gw1.example.test gw1\n", "gw1.example.test"},
		{"dotted alias", "gw2", "192.0.2.6 gw2 gw2.example.test\n", "gw2.example.test"},
		{"no dotted name", "gw3", "192.0.2.7 gw3\n", "gw3"},
		{"not in the hosts file", "gw4", "192.0.2.8 other.example.test\n", "gw4"},
		{"dotted hostname", "gw5.example.test", "192.0.2.9 gw5.example.test gw5\n", "gw5.example.test"},
		{"loopback line", "vm", "127.0.0.1 localhost\n127.0.1.1 vm.example.test vm\n", "vm.example.test"},
		{"localhost first (upstream #158)", "gw6", "127.0.0.1 localhost gw6\n", "localhost"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			n := c.run(t)
			if n.FQDN != c.fqdn || n.Python != c.fqdn {
				t.Errorf("hostname %q: FQDN() = %q, Python socket.getfqdn() = %q, want %q", c.hostname, n.FQDN, n.Python, c.fqdn)
			}
			short, _, _ := strings.Cut(c.hostname, ".")
			if n.Short != short || n.ResolvedName != c.fqdn || n.ResolvedShort != short {
				t.Errorf("hostname %q: ShortName() = %q, Resolve(\"\") = %q/%q; want %q/%q", c.hostname, n.Short, n.ResolvedName, n.ResolvedShort, c.fqdn, short)
			}
		})
	}
}

func TestShortName(t *testing.T) {
	s, err := ShortName()
	if err != nil {
		t.Fatal(err)
	}
	if s == "" || strings.Contains(s, ".") {
		t.Errorf("ShortName() = %q", s)
	}
}

func TestAddrs(t *testing.T) {
	addrs, err := Addrs()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Errorf("address %v: want valid, unmapped, without zone", a)
		}
		if seen[a] {
			t.Errorf("address %v listed twice", a)
		}
		seen[a] = true
	}
	if !seen[netip.MustParseAddr("127.0.0.1")] {
		t.Logf("127.0.0.1 not among %v (loopback down?)", addrs)
	}
}

func TestUniqueAddrs(t *testing.T) {
	_, n4, _ := net.ParseCIDR("192.0.2.5/24")
	n4.IP = net.ParseIP("192.0.2.5") // 16-byte form, as the kernel list gives
	in := []net.Addr{
		n4,
		&net.IPNet{IP: net.ParseIP("::ffff:192.0.2.5"), Mask: net.CIDRMask(120, 128)},
		&net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"},
		&net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(64, 128)},
		&net.UnixAddr{Name: "/x", Net: "unix"},
	}
	got := uniqueAddrs(in)
	want := []netip.Addr{
		netip.MustParseAddr("192.0.2.5"),
		netip.MustParseAddr("fe80::1"),
		netip.MustParseAddr("2001:db8::1"),
	}
	if len(got) != len(want) {
		t.Fatalf("uniqueAddrs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("uniqueAddrs[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestResolve(t *testing.T) {
	id, err := Resolve("gw1.test")
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "gw1.test" || id.ShortName != "gw1" || !id.Overridden || len(id.Addrs) == 0 {
		t.Errorf("Resolve(gw1.test) = %+v", id)
	}
	// Resolve("") is checked with TestFQDNMatchesPython's hostnames
	for _, bad := range []string{"has space", "a/b", "tab\tname", "nl\n"} {
		if _, err := Resolve(bad); err == nil {
			t.Errorf("Resolve(%q): no error", bad)
		}
	}
}
