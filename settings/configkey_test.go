package settings

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeStore is a config-key store that counts lookups.
type fakeStore struct {
	values map[string]string
	calls  []string
}

var errNoKey = errors.New("ENOENT")

func (f *fakeStore) resolve(key string) (string, error) {
	f.calls = append(f.calls, key)
	v, ok := f.values[key]
	if !ok {
		return "", fmt.Errorf("config-key %s: %w", key, errNoKey)
	}
	return v, nil
}

func TestResolveConfigKeys(t *testing.T) {
	s := mustParse(t, "[config]\napi_password = config://iscsi/pw\napi_user = config://iscsi/user\n"+
		"api_port = config://iscsi/port\ntrusted_ip_list = config://iscsi/ips\napi_secure = config://iscsi/secure\n"+
		"api_ssl_verify = true\n[target]\ncmdsn_depth = config://iscsi/port-depth\n[device_status]\n"+
		"status_check_interval = config://iscsi/port-depth\n")
	if got := s.PendingConfigKeys(); !slices.Equal(got, []string{"iscsi/pw", "iscsi/user", "iscsi/port", "iscsi/ips", "iscsi/secure", "iscsi/port-depth"}) {
		t.Errorf("PendingConfigKeys() = %q", got)
	}
	// Pending values hold defaults until resolved.
	if s.APIPort != 5000 || s.APIPassword.Reveal() != "admin" || s.APISSLVerify {
		t.Errorf("pending values changed: %+v", s)
	}
	store := &fakeStore{values: map[string]string{
		"iscsi/pw": "from mon", "iscsi/user": "monuser", "iscsi/port": " 5001\n",
		"iscsi/ips": "10.0.0.1, 10.0.0.2", "iscsi/secure": "false", "iscsi/port-depth": "64",
	}}
	if err := s.ResolveConfigKeys(store.resolve); err != nil {
		t.Fatal(err)
	}
	if s.APIPassword.Reveal() != "from mon" || s.APIUser != "monuser" || s.APIPort != 5001 ||
		!slices.Equal(s.TrustedIPList, []string{"10.0.0.1", "10.0.0.2"}) || s.APISecure ||
		!s.APISSLVerify || s.Target.CmdsnDepth != 64 || s.DeviceStatus.StatusCheckInterval != 64 {
		t.Errorf("resolved settings wrong: %+v", s)
	}
	if len(store.calls) != 6 {
		t.Errorf("resolver called %d times for 6 distinct keys: %q", len(store.calls), store.calls)
	}
	if len(s.PendingConfigKeys()) != 0 {
		t.Error("still pending after resolution")
	}
	// Nothing pending: the resolver is not called, even a nil one.
	if err := s.ResolveConfigKeys(nil); err != nil {
		t.Error(err)
	}
}

func TestResolveConfigKeysErrors(t *testing.T) {
	s := mustParse(t, "[config]\napi_password = config://iscsi/pw\napi_port = config://iscsi/port\npool = config://iscsi/pool\n")
	store := &fakeStore{values: map[string]string{"iscsi/port": "70000", "iscsi/pool": "\xff"}}
	err := s.ResolveConfigKeys(store.resolve)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		testPath + `: [config] api_password: invalid value (not shown): config-key get "iscsi/pw" failed: config-key iscsi/pw: ENOENT`,
		testPath + `: [config] api_port = 70000: expected integer <= 65535 (value of config-key "iscsi/port")`,
		testPath + `: [config] pool = config://iscsi/pool: config-key "iscsi/pool" is not valid UTF-8`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if !errors.Is(err, errNoKey) {
		t.Error("resolver error not wrapped")
	}
	var e *Error
	if !errors.As(err, &e) || e.Key != "api_password" || e.Section != "config" || e.Line != 2 {
		t.Errorf("first error %#v", e)
	}
	// A failed resolution changes nothing.
	if s.APIPort != 5000 || len(s.PendingConfigKeys()) != 3 {
		t.Errorf("settings changed by a failed resolution: %+v", s)
	}
	if err := s.ResolveConfigKeys(nil); err == nil {
		t.Error("nil resolver accepted with pending keys")
	}
	// A secret resolved from the store never appears in errors either.
	s = mustParse(t, "[config]\napi_password = config://pw\ndebug = config://pw\n")
	err = s.ResolveConfigKeys((&fakeStore{values: map[string]string{"pw": "hunter2"}}).resolve)
	if err == nil || !strings.Contains(err.Error(), "[config] debug = hunter2: expected true or false") {
		// debug is not secret, so its value is shown; api_password resolved fine.
		t.Errorf("unexpected error %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "iscsi-gateway.cfg")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write("[config]\ncluster_name = backup\ncluster_client_name = client.iscsi\nceph_config_dir = /ceph\napi_password = config://iscsi/pw\n")
	var partial *Settings
	store := &fakeStore{values: map[string]string{"iscsi/pw": "secret"}}
	s, err := Load(path, func(p *Settings) (KeyResolver, error) {
		partial = p
		return store.resolve, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if partial == nil || partial.CephConfPath() != "/ceph/backup.conf" || partial.ClusterClientName != "client.iscsi" {
		t.Errorf("connect got %+v", partial)
	}
	if s.APIPassword.Reveal() != "secret" || !slices.Equal(store.calls, []string{"iscsi/pw"}) {
		t.Errorf("Load: password %q, calls %q", s.APIPassword.Reveal(), store.calls)
	}

	// No config:// value: connect is never called, so a daemon without
	// cluster access still starts.
	write("[config]\napi_port = 5001\n")
	s, err = Load(path, func(*Settings) (KeyResolver, error) {
		t.Error("connect called without config:// values")
		return nil, errors.New("unreachable")
	})
	if err != nil || s.APIPort != 5001 {
		t.Errorf("Load = %v, %v", s, err)
	}
	if s, err := Load(filepath.Join(dir, "missing"), nil); err != nil || s.Hash() != defaultsHash {
		t.Errorf("Load(missing) = %v, %v", s, err)
	}

	write("[config]\napi_password = config://iscsi/pw\n")
	errDown := errors.New("cluster down")
	_, err = Load(path, func(*Settings) (KeyResolver, error) { return nil, errDown })
	if !errors.Is(err, errDown) || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("connect failure: %v", err)
	}
	if _, err := Load(path, nil); err == nil {
		t.Error("nil connect accepted with config:// values")
	}
	write("[config]\napi_port = x\n")
	if _, err := Load(path, nil); err == nil {
		t.Error("parse error not returned")
	}
}
