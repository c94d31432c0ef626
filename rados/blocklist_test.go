package rados

import (
	"net/netip"
	"slices"
	"testing"
)

func TestDecodeBlocklistTwoArrays(t *testing.T) {
	out := []byte(`[{"addr":"127.0.0.1:0/123","until":"2026-11-24T05:00:00"}]` + "\n" +
		`[{"addr":"[::1]:0/7","until":"x"}]`)
	got, err := decodeBlocklist(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Addr != "[::1]:0/7" {
		t.Fatalf("decoded %+v", got)
	}
	ip, err := got[1].IP()
	if err != nil || ip != netip.MustParseAddr("::1") {
		t.Errorf("IP of %s = %v %v", got[1].Addr, ip, err)
	}
	if _, err := decodeBlocklist([]byte(`[{"addr":`)); err == nil {
		t.Error("truncated JSON decoded without error")
	}
}

func TestUnblockHostRemovesOnlyThisHostsEntries(t *testing.T) {
	conn := connect(t)
	mine := "198.51.100.7:0/424242" // not loopback: restore tests clear 127.0.0.1 entries
	theirs := "192.0.2.77:0/99"
	for _, a := range []string{mine, theirs} {
		if err := conn.BlocklistAdd(a, 600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = conn.BlocklistRemove(theirs) })
	removed, err := conn.UnblockHost([]netip.Addr{netip.MustParseAddr("198.51.100.7")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, mine) || slices.Contains(removed, theirs) {
		t.Errorf("removed %v; want %s and not %s", removed, mine, theirs)
	}
	left, err := conn.Blocklist()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, e := range left {
		addrs = append(addrs, e.Addr)
	}
	if slices.Contains(addrs, mine) || !slices.Contains(addrs, theirs) {
		t.Errorf("blocklist after cleanup: %v", addrs)
	}
}

func TestConfigKeyRoundTrip(t *testing.T) {
	conn := connect(t)
	key := "iscsi/test/" + uniqueObject(t)
	if err := conn.ConfigKeySet(key, "value with spaces"); err != nil {
		t.Fatal(err)
	}
	got, err := conn.ConfigKeyGet(key)
	if err != nil || got != "value with spaces" {
		t.Errorf("ConfigKeyGet = %q, %v", got, err)
	}
	if _, err := conn.ConfigKeyGet(key + "-missing"); err == nil {
		t.Error("missing key: no error")
	}
}
