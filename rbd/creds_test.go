package rbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type fakeResolver map[string][]string

func (r fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, fmt.Errorf("no such host %s", host)
}

func TestParseMonHost(t *testing.T) {
	res := fakeResolver{"mon1.example": {"192.0.2.1"}, "mon2.example": {"192.0.2.2", "2001:db8::2"}}
	cases := []struct {
		in     string
		v1, v2 []string
	}{
		{"[v2:127.0.0.1:3300,v1:127.0.0.1:3301]", []string{"127.0.0.1:3301"}, []string{"127.0.0.1:3300"}},
		{"[v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300,v1:10.0.0.2:6789]",
			[]string{"10.0.0.1:6789", "10.0.0.2:6789"}, []string{"10.0.0.1:3300", "10.0.0.2:3300"}},
		{"10.0.0.1:6789, 10.0.0.2:6789", []string{"10.0.0.1:6789", "10.0.0.2:6789"}, nil},
		{"10.0.0.1;10.0.0.2", []string{"10.0.0.1:6789", "10.0.0.2:6789"}, []string{"10.0.0.1:3300", "10.0.0.2:3300"}},
		{"10.0.0.1:3300", nil, []string{"10.0.0.1:3300"}},
		{"v2:10.0.0.1:3300", nil, []string{"10.0.0.1:3300"}},
		{"[v2:[2001:db8::1]:3300,v1:[2001:db8::1]:6789]", []string{"[2001:db8::1]:6789"}, []string{"[2001:db8::1]:3300"}},
		{"[2001:db8::1]:6789", []string{"[2001:db8::1]:6789"}, nil},
		{"mon1.example,mon2.example:6789",
			[]string{"192.0.2.1:6789", "192.0.2.2:6789", "[2001:db8::2]:6789"}, []string{"192.0.2.1:3300"}},
	}
	for _, tc := range cases {
		v1, v2, err := parseMonHost(context.Background(), tc.in, res)
		if err != nil || !slices.Equal(v1, tc.v1) || !slices.Equal(v2, tc.v2) {
			t.Errorf("parseMonHost(%q) = %q, %q, %v; want %q, %q", tc.in, v1, v2, err, tc.v1, tc.v2)
		}
	}
	for _, bad := range []string{"", "  ", "[v2:1.2.3.4:3300", "unknown.example"} {
		if v1, v2, err := parseMonHost(context.Background(), bad, res); err == nil {
			t.Errorf("parseMonHost(%q) = %q, %q; want an error", bad, v1, v2)
		}
	}
}

func TestKeyFromKeyring(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "keyring")
	content := `# comment
[client.other]
	key = AQOTHEROTHEROTHER==
[client.admin]
	key = AQADMINADMINADMIN==
	caps mon = "allow *"
[client.quoted]
key="AQQUOTED=="
`
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for entity, want := range map[string]string{
		"client.admin": "AQADMINADMINADMIN==", "client.other": "AQOTHEROTHEROTHER==",
		"client.quoted": "AQQUOTED==", "client.none": "",
	} {
		got, err := keyFromKeyring(p, entity)
		if err != nil || got != want {
			t.Errorf("keyFromKeyring(%s) = %q, %v; want %q", entity, got, err, want)
		}
	}
	if _, err := keyFromKeyring(filepath.Join(dir, "missing"), "client.admin"); err == nil {
		t.Error("missing keyring: no error")
	}
}

func TestCredentialsNeverShowKey(t *testing.T) {
	const key = "AQSECRETSECRETSECRET=="
	c := Credentials{Monitors: []string{"10.0.0.1:6789"}, ID: "admin", Key: key}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("creds", "c", c)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("creds", "c", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %s", c, c, c), buf.String()} {
		if strings.Contains(s, key) {
			t.Errorf("key leaked: %s", s)
		}
	}
}

func TestSanitize(t *testing.T) {
	const key = "AQSECRET=="
	args := []string{"map", "--key", key, "--key=" + key, "--keyring", "/etc/ceph/k",
		"10.0.0.1:6789 name=admin,secret=" + key + ",exclusive rbd img -"}
	got := strings.Join(sanitizeArgs(args), " ")
	want := "map --key *** --key=*** --keyring /etc/ceph/k 10.0.0.1:6789 name=admin,secret=***,exclusive rbd img -"
	if got != want {
		t.Errorf("sanitizeArgs:\n got %s\nwant %s", got, want)
	}
	if s := sanitizeText("failed: secret="+key+" and again "+key+" secret=", key); strings.Contains(s, key) {
		t.Errorf("sanitizeText leaked: %s", s)
	}
	base := errors.New("boom " + key)
	err := sanitizeErr(fmt.Errorf("wrapped: %w", base), key)
	if strings.Contains(err.Error(), key) || !errors.Is(err, base) {
		t.Errorf("sanitizeErr: %q, Is=%v", err, errors.Is(err, base))
	}
}
