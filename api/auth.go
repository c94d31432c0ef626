package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// basicAuth is upstream's requires_basic_auth: credentials only, so a gateway
// that has not joined yet can still be probed through /api/sysinfo.
func (s *server) basicAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.checkCredentials(c); err != nil {
			return err
		}
		return next(c)
	}
}

// restrictedAuth is upstream's requires_restricted_auth: the source address
// must be allowed before the credentials are even looked at.
func (s *server) restrictedAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		addr := clientAddr(c.Request().RemoteAddr)
		if !s.allow.allowed(c.Request().Context(), addr) {
			return httpErr(http.StatusForbidden, "API access not available to %s", addr)
		}
		if err := s.checkCredentials(c); err != nil {
			return err
		}
		return next(c)
	}
}

func (s *server) checkCredentials(c echo.Context) error {
	r := c.Request()
	user, pass, ok := r.BasicAuth()
	if !ok {
		return httpErr(http.StatusUnauthorized, "Missing credentials")
	}
	src := clientAddr(r.RemoteAddr)
	if wait, blocked := s.logins.blocked(src); blocked {
		secs := int(max(1, math.Ceil(wait.Seconds())))
		c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		return httpErr(http.StatusTooManyRequests,
			"Too many failed logins from %s (api_failed_login_limit is %d): retry in %d seconds", src, s.Settings.APIFailedLoginLimit, secs)
	}
	// Comparing fixed-size digests keeps the time independent of where
	// (and whether) the strings differ, including their lengths.
	u1, u2 := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(s.Settings.APIUser))
	p1, p2 := sha256.Sum256([]byte(pass)), sha256.Sum256([]byte(s.Settings.APIPassword.Reveal()))
	if subtle.ConstantTimeCompare(u1[:], u2[:])&subtle.ConstantTimeCompare(p1[:], p2[:]) != 1 {
		if s.logins.failed(src) {
			// Once per source running out, not per attempt: an attack
			// must not flood the log. Never the credentials tried.
			s.Logger.Warn("failed API logins: source backed off", "source", src, "limit", s.Settings.APIFailedLoginLimit)
		}
		return httpErr(http.StatusUnauthorized, "username/password mismatch with the configuration file")
	}
	return nil
}

// clientAddr normalises the peer address as upstream does: no port, no
// %scope suffix, and IPv4-mapped IPv6 shown as plain IPv4.
func clientAddr(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	if i := strings.LastIndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return strings.TrimPrefix(host, "::ffff:")
}

// allowlist is the set of addresses restricted routes accept: every gateway
// name of the config (resolved), localhost, every target's portal IPs, this
// host's own addresses and trusted_ip_list. Upstream rebuilt it, DNS
// included, on every request, so slow DNS slowed every call; here the set is
// kept for a short time and names are resolved at most once per DNSTTL.
type allowlist struct {
	s *server

	mu    sync.Mutex
	set   map[string]bool
	built time.Time
	dns   map[string]dnsEntry
}

type dnsEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

// allowTTL bounds how stale the set may be; a miss rebuilds it at most every
// allowRetry, so a new gateway is admitted at once while a stranger's
// requests cannot force a config read or DNS lookups on each attempt.
const (
	allowTTL   = 10 * time.Second
	allowRetry = time.Second
)

func newAllowlist(s *server) *allowlist {
	return &allowlist{s: s, dns: map[string]dnsEntry{}}
}

func (a *allowlist) allowed(ctx context.Context, addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.s.now()
	age := now.Sub(a.built)
	if a.set == nil || age > allowTTL || (!a.set[addr] && age > allowRetry) {
		if set, err := a.build(ctx, now); err != nil {
			a.s.Logger.Warn("rebuilding the API allowlist", "err", err)
		} else {
			a.set, a.built = set, now
		}
	}
	return a.set[addr]
}

func (a *allowlist) build(ctx context.Context, now time.Time) (map[string]bool, error) {
	set := map[string]bool{}
	for _, ip := range a.s.Settings.TrustedIPList {
		set[normalizeIP(ip)] = true
	}
	names := []string{"localhost"}
	if local, err := a.s.LocalAddrs(); err == nil {
		for _, ip := range local {
			set[ip.Unmap().WithZone("").String()] = true
		}
	}
	doc, err := a.s.Store.Load(ctx)
	if err != nil {
		// Keep serving the trusted and local addresses: an operator must
		// still be able to reach a gateway whose config cannot be read.
		a.resolveInto(ctx, set, names, now)
		return set, nil
	}
	for gw, g := range doc.Gateways {
		if g != nil {
			names = append(names, gw)
		}
	}
	for _, t := range doc.Targets {
		if t == nil {
			continue
		}
		for _, ip := range t.IPList {
			set[normalizeIP(ip)] = true
		}
	}
	a.resolveInto(ctx, set, names, now)
	return set, nil
}

func (a *allowlist) resolveInto(ctx context.Context, set map[string]bool, names []string, now time.Time) {
	for _, name := range names {
		if ip, err := netip.ParseAddr(name); err == nil {
			set[ip.Unmap().WithZone("").String()] = true
			continue
		}
		e, ok := a.dns[name]
		if !ok || now.After(e.expires) {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			addrs, err := a.s.LookupHost(lctx, name)
			cancel()
			if err != nil {
				a.s.Logger.Warn("resolving gateway name for the API allowlist", "name", name, "err", err)
				if ok {
					addrs = e.addrs // a DNS hiccup must not lock a known peer out
				}
			}
			e = dnsEntry{addrs: addrs, expires: now.Add(a.s.DNSTTL)}
			a.dns[name] = e
		}
		for _, ip := range e.addrs {
			set[ip.Unmap().WithZone("").String()] = true
		}
	}
}

func normalizeIP(s string) string {
	if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return strings.TrimSpace(s)
}

func systemLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}
