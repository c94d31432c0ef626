package rbd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	gorados "github.com/ceph/go-ceph/rados"
)

// Default monitor ports, for mon_host entries that name no port.
const (
	monPortV1 = "6789"
	monPortV2 = "3300"
)

// Credentials are what a kernel (krbd) or rbd-nbd mapping needs to reach the
// cluster on its own. Key is secret: String and LogValue redact it.
type Credentials struct {
	// Monitors are msgr v1 "ip:port" addresses (krbd's default legacy mode).
	Monitors []string
	// MonitorsV2 are msgr v2 addresses, used (with ms_mode=prefer-crc) only when
	// the cluster announces no v1 address.
	MonitorsV2 []string
	// ID is the cephx id without the "client." prefix.
	ID string
	// Key is the base64 cephx secret.
	Key string
	// Keyring is a keyring file holding Key, if one was found; rbd-nbd is pointed at
	// it so the key never appears on a command line.
	Keyring string
	// ConfFile is the ceph.conf rbd-nbd reads (its default search path when empty).
	ConfFile string
}

// String never includes the key, so a Credentials passed to fmt by mistake is safe.
func (c Credentials) String() string {
	return fmt.Sprintf("{mons=%v mons_v2=%v id=%s key=%s keyring=%s conf=%s}",
		c.Monitors, c.MonitorsV2, c.ID, redacted, c.Keyring, c.ConfFile)
}

// LogValue keeps the key out of structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("mons", c.Monitors), slog.Any("mons_v2", c.MonitorsV2),
		slog.String("id", c.ID), slog.String("key", redacted),
		slog.String("keyring", c.Keyring), slog.String("conf", c.ConfFile))
}

// CredentialsFromConn collects the monitor addresses and the cephx key of client
// (e.g. "client.admin" or "admin": librados does not reveal the name a connection
// was made with, so the caller passes it). Monitors come from the connection's
// mon_host, with host names resolved, since the kernel takes only addresses. The key
// comes from the first keyring file of the connection's `keyring` option that holds
// it, else from the monitors (`auth get-key`, which needs mon caps the admin has but
// a restricted gateway user may not). confFile is handed through to rbd-nbd.
func CredentialsFromConn(ctx context.Context, conn *gorados.Conn, client, confFile string) (Credentials, error) {
	id := strings.TrimPrefix(client, "client.")
	if id == "" {
		return Credentials{}, fmt.Errorf("credentials: empty client name")
	}
	creds := Credentials{ID: id, ConfFile: confFile}
	monHost, err := conn.GetConfigOption("mon_host")
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: read mon_host: %w", err)
	}
	if creds.Monitors, creds.MonitorsV2, err = parseMonHost(ctx, monHost, net.DefaultResolver); err != nil {
		return Credentials{}, fmt.Errorf("credentials: %w", err)
	}
	if paths, err := conn.GetConfigOption("keyring"); err == nil {
		for _, p := range splitList(paths) {
			key, err := keyFromKeyring(p, "client."+id)
			if err == nil && key != "" {
				creds.Key, creds.Keyring = key, p
				return creds, nil
			}
		}
	}
	cmd, err := json.Marshal(map[string]string{"prefix": "auth get-key", "entity": "client." + id, "format": "json"})
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: encode auth get-key: %w", err)
	}
	out, status, err := conn.MonCommand(cmd)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: no keyring holds the key of client.%s, and auth get-key failed: %s: %w", id, status, err)
	}
	var reply struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &reply); err != nil || reply.Key == "" {
		// out holds the key when it parses; never quote it in the error
		return Credentials{}, fmt.Errorf("credentials: auth get-key for client.%s: unexpected reply", id)
	}
	creds.Key = reply.Key
	return creds, nil
}

// splitList splits a Ceph list option (commas, semicolons or spaces).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t'
	})
}

// keyFromKeyring returns the key of entity in a keyring file ("" if absent).
func keyFromKeyring(path, entity string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			in = strings.TrimSpace(strings.Trim(line, "[]")) == entity
		case in:
			k, v, ok := strings.Cut(line, "=")
			if ok && strings.TrimSpace(k) == "key" {
				return strings.Trim(strings.TrimSpace(v), `"`), nil
			}
		}
	}
	return "", sc.Err()
}

// hostResolver is the part of *net.Resolver parseMonHost uses.
type hostResolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// parseMonHost turns a mon_host value into v1 and v2 "ip:port" lists. It accepts
// what Ceph does: entries separated by commas, semicolons or spaces; bracketed
// address vectors ("[v2:1.2.3.4:3300,v1:1.2.3.4:6789]"); "v1:"/"v2:" prefixes; bare
// hosts or IPs (both default ports); IPv6 in brackets.
func parseMonHost(ctx context.Context, s string, r hostResolver) (v1, v2 []string, err error) {
	var entries []string
	for rest := strings.TrimSpace(s); rest != ""; rest = strings.TrimLeft(rest, ",; \t") {
		if strings.HasPrefix(rest, "[v") {
			// an IPv6 address inside the vector has its own brackets
			end := -1
			for depth, i := 0, 0; i < len(rest); i++ {
				if rest[i] == '[' {
					depth++
				} else if rest[i] == ']' {
					depth--
					if depth == 0 {
						end = i
						break
					}
				}
			}
			if end < 0 {
				return nil, nil, fmt.Errorf("mon_host %q: unterminated address vector", s)
			}
			entries = append(entries, strings.Split(rest[1:end], ",")...)
			rest = rest[end+1:]
			continue
		}
		end := strings.IndexAny(rest, ",; \t")
		if end < 0 {
			end = len(rest)
		}
		entries = append(entries, rest[:end])
		rest = rest[end:]
	}
	for _, e := range entries {
		kind := ""
		if k, a, ok := strings.Cut(e, ":"); ok && (k == "v1" || k == "v2") {
			kind, e = k, a
		}
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			// no port (a bare host or IP, IPv6 perhaps bracketed)
			host, port = strings.Trim(e, "[]"), ""
		}
		if host == "" {
			return nil, nil, fmt.Errorf("mon_host %q: empty address", s)
		}
		ips := []string{host}
		if net.ParseIP(host) == nil {
			if ips, err = r.LookupHost(ctx, host); err != nil {
				return nil, nil, fmt.Errorf("mon_host %q: resolve %s: %w", s, host, err)
			}
		}
		for _, ip := range ips {
			switch {
			case kind == "v1" || (kind == "" && port != "" && port != monPortV2):
				v1 = append(v1, net.JoinHostPort(ip, orDefault(port, monPortV1)))
			case kind == "v2" || port == monPortV2:
				// Ceph takes an unprefixed address on the IANA msgr2 port for v2
				v2 = append(v2, net.JoinHostPort(ip, orDefault(port, monPortV2)))
			default:
				v1 = append(v1, net.JoinHostPort(ip, monPortV1))
				v2 = append(v2, net.JoinHostPort(ip, monPortV2))
			}
		}
	}
	if len(v1) == 0 && len(v2) == 0 {
		return nil, nil, errors.New("mon_host is empty")
	}
	return v1, v2, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
