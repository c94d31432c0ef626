// Package host owns this host's gateway identity: the name under which it appears in
// the shared gateway configuration (upstream's socket.getfqdn()), the short hostname
// older configuration versions used, and the addresses it can serve portals on. It
// resolves names through the system resolver and reads the interface list, and must
// not talk to RADOS, LIO/configfs or HTTP.
package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unicode"
)

// EnvGatewayName is the environment variable that overrides the gateway name, so that
// several daemons on one host (tests, VM harnesses) can act as different gateways.
const EnvGatewayName = "CEPH_ISCSI_GATEWAY_NAME"

// lookupTimeout bounds the name resolution of FQDN. Python has no such bound, but a
// daemon stuck at start-up on a dead DNS server is worse than falling back to the
// hostname, which is what getfqdn does on any resolver error.
const lookupTimeout = 10 * time.Second

// resolver is the part of *net.Resolver that FQDN uses; tests replace it.
type resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// FQDN returns the gateway name upstream uses, socket.getfqdn(): the hostname is
// resolved to its first address, that address is looked up in reverse (the hosts file
// first, then DNS, as nsswitch says), and the first of the primary name and its
// aliases that contains a dot wins; with no dotted name it is the primary name, and on
// any lookup failure the hostname itself. Matching Python exactly matters: the name is
// the key of this gateway in a configuration that Python gateways share, including its
// quirks (a hostname resolving to 127.0.0.1 named "localhost" first in /etc/hosts
// yields "localhost", upstream issues #158 and #265).
//
// One known difference: glibc reports only the first hosts-file line of an address,
// while Go merges the names of every line with that address, so a dotted name on a
// later line can win here and not in Python. Use --gateway-name when it matters.
func FQDN() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host: hostname: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	return fqdn(ctx, net.DefaultResolver, h), nil
}

func fqdn(ctx context.Context, r resolver, name string) string {
	name = strings.TrimSpace(name)
	ips, err := r.LookupIPAddr(ctx, name)
	if err != nil || len(ips) == 0 {
		return name
	}
	names, err := r.LookupAddr(ctx, ips[0].IP.String())
	if err != nil || len(names) == 0 {
		return name
	}
	// Go reports absolute names ("a.example.") where libc does not; the root dot
	// must not count as "has a dot" for a single-label name like "localhost.".
	for i := range names {
		names[i] = strings.TrimSuffix(names[i], ".")
	}
	for _, n := range names {
		if strings.Contains(n, ".") {
			return n
		}
	}
	return names[0]
}

// ShortName is the hostname up to its first dot, socket.gethostname().split('.')[0]:
// the name gateways had in configuration versions before 10, which the schema upgrade
// renames to the FQDN.
func ShortName() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host: hostname: %w", err)
	}
	short, _, _ := strings.Cut(h, ".")
	return short, nil
}

// Addrs lists every address of every local interface, IPv4 and IPv6 (IPv4-mapped
// IPv6 addresses unmapped, zones dropped, duplicates removed), in the kernel's order.
// It is upstream's netifaces walk: a portal IP is local when it is one of these.
func Addrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("host: interface addresses: %w", err)
	}
	return uniqueAddrs(ifAddrs), nil
}

func uniqueAddrs(ifAddrs []net.Addr) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, a := range ifAddrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		addr = addr.Unmap().WithZone("")
		if !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	return out
}

// Identity is who this process is among the gateways of the configuration.
type Identity struct {
	// Name is the gateway name: the key of gateways and of target portals in the
	// configuration, FQDN() unless overridden.
	Name string
	// ShortName is the pre-v10 name the schema upgrade looks for: ShortName(), or
	// the first label of an override.
	ShortName string
	// Overridden reports whether Name came from an override rather than the
	// resolver.
	Overridden bool
	// Addrs are the local addresses, Addrs().
	Addrs []netip.Addr
}

// Resolve returns this host's identity. A non-empty override (from --gateway-name or
// EnvGatewayName) replaces the resolved name, so that several gateways can run on one
// host; it must be a plausible host name, since it becomes a configuration key and a
// REST API path element.
func Resolve(override string) (Identity, error) {
	addrs, err := Addrs()
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Addrs: addrs}
	if override != "" {
		if err := ValidName(override); err != nil {
			return Identity{}, err
		}
		id.Name, id.Overridden = override, true
		id.ShortName, _, _ = strings.Cut(override, ".")
		return id, nil
	}
	if id.Name, err = FQDN(); err != nil {
		return Identity{}, err
	}
	if id.ShortName, err = ShortName(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// ValidName reports whether name can serve as a gateway name: non-empty, and free of
// spaces, control characters and slashes, which would break the REST API paths that
// carry it.
func ValidName(name string) error {
	if name == "" {
		return errors.New("host: empty gateway name")
	}
	for _, r := range name {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("host: gateway name %q: must not contain spaces, control characters or '/'", name)
		}
	}
	return nil
}
