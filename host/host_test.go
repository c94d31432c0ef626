package host

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
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

// TestFQDNMatchesPython checks the real resolver path against the implementation it
// imitates, when python3 is around.
func TestFQDNMatchesPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", "import socket; print(socket.getfqdn())").Output()
	if err != nil {
		t.Skipf("python3: %v", err)
	}
	got, err := FQDN()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(out)); got != want {
		t.Errorf("FQDN() = %q, Python socket.getfqdn() = %q", got, want)
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
	id, err = Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	fq, _ := FQDN()
	short, _ := ShortName()
	if id.Name != fq || id.ShortName != short || id.Overridden {
		t.Errorf("Resolve(\"\") = %+v, want name %q short %q", id, fq, short)
	}
	for _, bad := range []string{"has space", "a/b", "tab\tname", "nl\n"} {
		if _, err := Resolve(bad); err == nil {
			t.Errorf("Resolve(%q): no error", bad)
		}
	}
}
