package rados

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// BlocklistEntry is one fenced client address.
type BlocklistEntry struct {
	// Addr is "ip:port/nonce", with IPv6 addresses in brackets.
	Addr  string `json:"addr"`
	Until string `json:"until"`
}

// IP is the address part of the entry.
func (e BlocklistEntry) IP() (netip.Addr, error) {
	host := e.Addr
	if i := strings.LastIndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	ap, err := netip.ParseAddrPort(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("blocklist entry %q: %w", e.Addr, err)
	}
	return ap.Addr().Unmap(), nil
}

// blocklistWords are the command spellings, newest first: clusters before Pacific only
// know "blacklist".
var blocklistWords = []struct{ prefix, op string }{
	{"osd blocklist", "blocklistop"},
	{"osd blacklist", "blacklistop"},
}

// Blocklist lists the OSD blocklist.
func (c *Conn) Blocklist() ([]BlocklistEntry, error) {
	var lastErr error
	for _, w := range blocklistWords {
		out, err := c.MonCommand(map[string]any{"prefix": w.prefix + " ls", "format": "json"})
		if err != nil {
			lastErr = err
			if Errno(err) == errnoEINVAL || Errno(err) == errnoENOENT {
				continue // unknown command on this release: try the older spelling
			}
			return nil, err
		}
		return decodeBlocklist(out)
	}
	return nil, lastErr
}

// decodeBlocklist reads the JSON the mon prints for "blocklist ls": one array of
// entries, and since Pacific a second array of range entries right after it.
func decodeBlocklist(out []byte) ([]BlocklistEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	var all []BlocklistEntry
	for {
		var part []BlocklistEntry
		err := dec.Decode(&part)
		if errors.Is(err, io.EOF) {
			return all, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode blocklist: %w", err)
		}
		all = append(all, part...)
	}
}

// BlocklistRemove removes one entry, by its "ip:port/nonce" address.
func (c *Conn) BlocklistRemove(addr string) error {
	var lastErr error
	for _, w := range blocklistWords {
		_, err := c.MonCommand(map[string]any{"prefix": w.prefix, w.op: "rm", "addr": addr})
		if err == nil {
			return nil
		}
		lastErr = err
		if Errno(err) != errnoEINVAL && Errno(err) != errnoENOENT {
			break
		}
	}
	return fmt.Errorf("remove blocklist entry %s: %w", addr, lastErr)
}

// BlocklistAdd fences addr for expireSeconds. Tests and failover tooling use it.
func (c *Conn) BlocklistAdd(addr string, expireSeconds float64) error {
	cmd := map[string]any{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr}
	if expireSeconds > 0 {
		// the mon insists on a non-integer JSON number here
		cmd["expire"] = json.Number(fmt.Sprintf("%.1f", expireSeconds))
	}
	if _, err := c.MonCommand(cmd); err != nil {
		return fmt.Errorf("blocklist %s: %w", addr, err)
	}
	return nil
}

// UnblockHost removes every blocklist entry whose address is one of hostIPs and returns
// the entries removed. A crashed gateway's tcmu-runner/librbd clients are fenced on
// failover; the gateway must be let back in before it restores LIO. Unlike upstream,
// which only compared IPv4 addresses, IPv6 entries count too.
func (c *Conn) UnblockHost(hostIPs []netip.Addr) ([]string, error) {
	entries, err := c.Blocklist()
	if err != nil {
		return nil, err
	}
	mine := make(map[netip.Addr]bool, len(hostIPs))
	for _, ip := range hostIPs {
		mine[ip.Unmap()] = true
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		ip, err := e.IP()
		if err != nil || !mine[ip] {
			continue
		}
		if err := c.BlocklistRemove(e.Addr); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Addr)
	}
	return removed, errors.Join(errs...)
}
