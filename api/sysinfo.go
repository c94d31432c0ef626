package api

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ipAddresses is what a new gateway reports to the coordinator that checks
// its portal IPs: every address except loopback and the scoped (link-local
// IPv6) ones, which upstream's netifaces listing shows with a %zone and skips.
func (s *server) ipAddresses() ([]string, error) {
	addrs, err := s.LocalAddrs()
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	out := []string{}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Zone() != "" || a.Is6() && a.IsLinkLocalUnicast() {
			continue
		}
		if a == netip.MustParseAddr("127.0.0.1") || a == netip.IPv6Loopback() {
			continue
		}
		if str := a.String(); !slices.Contains(out, str) {
			out = append(out, str)
		}
	}
	return out, nil
}

// osErrors is upstream's pre_reqs_errors: the distribution and its release
// (the first two components as a number) must be one upstream supports.
func osErrors(path string) ([]string, error) {
	rel, err := readOSRelease(path)
	if err != nil {
		return nil, err
	}
	minimum := map[string]float64{"rhel": 7.4, "suse": 15.1, "debian": 10, "ubuntu": 18.04}
	dist := strings.ToLower(rel["ID"])
	switch dist {
	case "centos":
		dist = "rhel"
	case "opensuse-leap":
		dist = "suse"
	}
	want, ok := minimum[dist]
	if !ok {
		return []string{"OS is unsupported"}, nil
	}
	parts := strings.Split(rel["VERSION_ID"], ".")
	if len(parts) > 2 {
		parts = parts[:2]
	}
	v, err := strconv.ParseFloat(strings.Join(parts, "."), 64)
	if err != nil {
		return nil, fmt.Errorf("%s: VERSION_ID %q is not a number: %w", path, rel["VERSION_ID"], err)
	}
	if v < want {
		return []string{"OS version is unsupported"}, nil
	}
	return nil, nil
}

func readOSRelease(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		out[k] = strings.Trim(v, `"'`)
	}
	return out, sc.Err()
}

// iscsiListening is upstream's iscsi_active: something listens on port 3260
// (0x0CBC) in /proc/net/tcp or tcp6. Upstream matched the substring anywhere
// in the local address, which also hits addresses containing 0CBC; only the
// port is compared here.
func iscsiListening() bool {
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.HasSuffix(f[1], ":0CBC") && f[3] == "0A" {
				return true
			}
		}
	}
	return false
}
