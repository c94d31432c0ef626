package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testPath = "/etc/ceph/iscsi-gateway.cfg"

// defaultsHash is the spec's reference digest of the all-defaults settings.
const defaultsHash = "d602fefb8d199f8fe793952798acbed895a06f46704380a1505f30a93082d5f6"

// pythonCases were hashed by upstream ceph-iscsi 3.9's Settings(conffile).hash()
// under Python 3.11 (rados stubbed out); the digests are pasted here.
var pythonCases = []struct {
	name, text, hash string
}{
	{
		name: "changed values, non-ASCII password, quotes and backslashes",
		text: "[config]\ncluster_name = ceph\npool = iscsi\napi_secure = False\napi_ssl_verify = yes\napi_port = 5001\ntrusted_ip_list = 10.0.0.1, 10.0.0.2 ,fd00::1\nminimum_gateways = 1\ndebug = 1\nlog_to_stderr_prefix = \"quoted\" \\back\\slash\napi_password = p\xc3\xa4ssw\xc3\xb6rd\U0001f600\nalua_failover_type = explicit\nlogger_level = 20\ncluster_client_name = client.iscsi\n\n[target]\nimmediate_data = No\ncmdsn_depth = 64\nqfull_timeout = 0\nosd_op_timeout = 25\nmax_burst_length = 16777215\n\n[device_status]\nlock_lost_cnt_threshhold = 1_000\nstatus_check_interval = +5\n",
		hash: "6b6810dbaaf6ad349d9fd78f0c827345f767f1b3db2a646b785aa009e3261b8f",
	},
	{
		name: "DEFAULT, interpolation, continuation lines, comments, control characters",
		text: "# leading comment\n; another comment\n[DEFAULT]\nbase = /srv/ceph\n\n[config]\nceph_config_dir = %(base)s/etc\nAPI_User: Admin User\napi_password = 100%% sure\there\ngateway_conf = first line\n\tsecond line\n  # a comment inside the value\n\n  third line\npriv_key = #notacomment\npub_key = key;with=delims:here\napi_host = ::1\nprometheus_host = 0.0.0.0\ntrusted_ip_list =\nlog_to_stderr_prefix = \x7f\x01 DEL \u20ac \u4e2d\u6587\n    [not a section]\n  PROMETHEUS_PORT   :   9999\nunknown_key = whatever\n\n[target]\nnopin_timeout=7\ninitial_r2t : FALSE\n\n[other]\napi_port = not checked here\n",
		hash: "93979c243c7d798a4d5cc2cffeb2d4c4c365a7b0be743cd939dbe6e10d9b483a",
	},
	{
		name: "CRLF and CR line ends, forced api_ssl_verify, list of empty items",
		text: "[config]\r\napi_secure = true\r\napi_ssl_verify = true\r\ntrusted_ip_list = ,\r\nceph_user = a\r\n  b\r\ntime_out = 600\rloop_delay = 60\r\n",
		hash: "57d642a9e880302aad6454b704af10bb0dcd05f61b223e841218ce63b58a7599",
	},
}

func mustParse(t *testing.T, text string) *Settings {
	t.Helper()
	s, err := Parse(testPath, []byte(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return s
}

func TestDefaults(t *testing.T) {
	s := Defaults()
	if got := s.Hash(); got != defaultsHash {
		t.Errorf("Defaults().Hash() = %s, want %s", got, defaultsHash)
	}
	if got := mustParse(t, "").Hash(); got != defaultsHash {
		t.Errorf("empty file hash = %s", got)
	}
	counts := map[group]int{}
	for i := range table {
		counts[table[i].group]++
	}
	if want := (map[group]int{groupSys: 29, groupTgt: 11, groupTCMU: 4, groupDevStatus: 3}); !equalMaps(counts, want) {
		t.Errorf("settings per group = %v, want %v", counts, want)
	}
	if s.APIPort != 5000 || !s.APISecure || s.APISSLVerify || s.MinimumGateways != 2 ||
		s.APIPassword.Reveal() != "admin" || s.Target.CmdsnDepth != 128 || !s.Target.ImmediateData ||
		s.Disk.OsdOpTimeout != 30 || s.DeviceStatus.LockLostCntThreshhold != 12 ||
		s.TrustedIPList == nil || len(s.TrustedIPList) != 0 || s.AluaFailoverType != AluaImplicit || s.DriftCheckInterval != 60 {
		t.Errorf("unexpected defaults: %+v", s)
	}
}

func equalMaps[K comparable](a, b map[K]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPythonHashes(t *testing.T) {
	for _, c := range pythonCases {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, c.text)
			if got := s.Hash(); got != c.hash {
				t.Errorf("Hash() = %s, want %s\ndocument: %s", got, c.hash, s.hashDocument())
			}
		})
	}
}

func TestParsedValues(t *testing.T) {
	s := mustParse(t, pythonCases[1].text)
	checks := []struct {
		name      string
		got, want any
	}{
		{"ceph_config_dir", s.CephConfigDir, "/srv/ceph/etc"},
		{"api_user", s.APIUser, "Admin User"},
		{"api_password", s.APIPassword.Reveal(), "100% sure\there"},
		{"gateway_conf", s.GatewayConf, "first line\nsecond line\n\nthird line"},
		{"priv_key", s.PrivKey, "#notacomment"},
		{"pub_key", s.PubKey, "key;with=delims:here"},
		{"prometheus_port", s.PrometheusPort, 9287},
		{"log_to_stderr_prefix", s.LogToStderrPrefix, "\x7f\x01 DEL \u20ac \u4e2d\u6587\n[not a section]\nPROMETHEUS_PORT   :   9999"},
		{"nopin_timeout", s.Target.NopinTimeout, 7},
		{"initial_r2t", s.Target.InitialR2T, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	wantWarnings := []string{
		testPath + `: [config] unknown key "unknown_key" ignored`,
		testPath + `: unknown section [other] ignored`,
		testPath + `: [DEFAULT] unknown key "base" ignored`,
	}
	for _, w := range wantWarnings {
		if !slices.Contains(s.Warnings, w) {
			t.Errorf("missing warning %q in %q", w, s.Warnings)
		}
	}
	if len(s.Warnings) != len(wantWarnings) {
		t.Errorf("warnings = %q", s.Warnings)
	}

	s = mustParse(t, pythonCases[2].text)
	if !slices.Equal(s.TrustedIPList, []string{"", ""}) || s.CephUser != "a\nb" || s.TimeOut != 600 ||
		s.LoopDelay != 60 || s.APISSLVerify {
		t.Errorf("crlf case parsed as %+v", s)
	}
}

// TestTypes covers every normalisation rule on a value in the file.
func TestTypes(t *testing.T) {
	type tc struct {
		sect, key, value string
		want             any    // field value on success
		rule             string // expected rule on failure
	}
	cases := []tc{
		// bool
		{"config", "debug", "1", true, ""},
		{"config", "debug", "TRUE", true, ""},
		{"config", "debug", "Yes", true, ""},
		{"config", "debug", "0", false, ""},
		{"config", "debug", "False", false, ""},
		{"config", "debug", "NO", false, ""},
		{"config", "debug", "on", nil, "expected true or false"},
		{"config", "debug", "", nil, "expected true or false"},
		{"config", "debug", "2", nil, "expected true or false"},
		// LIO bool
		{"target", "immediate_data", "yes", true, ""},
		{"target", "immediate_data", "No", false, ""},
		{"target", "immediate_data", "true", true, ""},
		{"target", "immediate_data", "0", false, ""},
		{"target", "immediate_data", "y", nil, "expected yes or no"},
		// int, Python int() syntax
		{"config", "api_port", "1", 1, ""},
		{"config", "api_port", "65535", 65535, ""},
		{"config", "api_port", "+80", 80, ""},
		{"config", "api_port", "0_80", 80, ""},
		{"config", "api_port", "00443", 443, ""},
		{"config", "api_port", "0", nil, "expected integer >= 1"},
		{"config", "api_port", "-5", nil, "expected integer >= 1"},
		{"config", "api_port", "70000", nil, "expected integer <= 65535"},
		{"config", "api_port", "99999999999999999999999999", nil, "expected integer <= 65535"},
		{"config", "api_port", "-99999999999999999999999999", nil, "expected integer >= 1"},
		{"config", "api_port", "5000.0", nil, "expected integer"},
		{"config", "api_port", "0x10", nil, "expected integer"},
		{"config", "api_port", "1__0", nil, "expected integer"},
		{"config", "api_port", "_10", nil, "expected integer"},
		{"config", "api_port", "10_", nil, "expected integer"},
		{"config", "api_port", "+", nil, "expected integer"},
		{"config", "api_port", "", nil, "expected integer"},
		{"config", "api_port", "- 5", nil, "expected integer"},
		{"config", "logger_level", "9", nil, "expected integer >= 10"},
		{"config", "logger_level", "50", 50, ""},
		{"target", "qfull_timeout", "0", 0, ""},
		{"target", "first_burst_length", "511", nil, "expected integer >= 512"},
		{"target", "first_burst_length", "16777216", nil, "expected integer <= 16777215"},
		{"device_status", "lock_lost_cnt_threshhold", "1000000", 1000000, ""},
		{"device_status", "lock_lost_cnt_threshhold", "1000001", nil, "expected integer <= 1000000"},
		// list
		{"config", "trusted_ip_list", "10.1.1.1,10.1.1.2,10.1.1.3", []string{"10.1.1.1", "10.1.1.2", "10.1.1.3"}, ""},
		{"config", "trusted_ip_list", "10.1.1.1, 10.1.1.2 ,  10.1.1.3", []string{"10.1.1.1", "10.1.1.2", "10.1.1.3"}, ""},
		{"config", "trusted_ip_list", "", []string{}, ""},
		{"config", "trusted_ip_list", "a,,b", []string{"a", "", "b"}, ""},
		// enum
		{"config", "alua_failover_type", "explicit", "explicit", ""},
		{"config", "alua_failover_type", "implicit", "implicit", ""},
		{"config", "alua_failover_type", "Explicit", nil, "expected implicit or explicit"},
		// str
		{"config", "pool", "my pool", "my pool", ""},
		{"config", "api_host", "", "", ""},
		{"config", "cluster_client_name", "client.iscsi.gw", "client.iscsi.gw", ""},
		{"config", "cluster_client_name", "admin", nil, "expected <type>.<id>, e.g. client.admin"},
		{"config", "cluster_client_name", "client.", nil, "expected <type>.<id>, e.g. client.admin"},
	}
	for _, c := range cases {
		text := fmt.Sprintf("[%s]\n%s = %s\n", c.sect, c.key, c.value)
		s, err := Parse(testPath, []byte(text))
		if c.rule != "" {
			var e *Error
			if !errors.As(err, &e) || e.Rule != c.rule || e.Key != c.key || e.Section != c.sect || e.Line != 2 {
				t.Errorf("%s = %q: error %v, want rule %q", c.key, c.value, err, c.rule)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s = %q: %v", c.key, c.value, err)
			continue
		}
		got := lookup(c.key).get(s)
		if !sameValue(got, c.want) {
			t.Errorf("%s = %q: got %#v, want %#v", c.key, c.value, got, c.want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[config]\napi_port = 70000\n",
			"/etc/ceph/iscsi-gateway.cfg: [config] api_port = 70000: expected integer <= 65535"},
		{"[config]\nqfull_timeout = 5\n",
			"/etc/ceph/iscsi-gateway.cfg: [config] qfull_timeout = 5: setting belongs in section [target]"},
		{"[target]\napi_port = 5000\n",
			"/etc/ceph/iscsi-gateway.cfg: [target] api_port = 5000: setting belongs in section [config]"},
		{"[device_status]\nmax_data_area_mb = 8\n",
			"/etc/ceph/iscsi-gateway.cfg: [device_status] max_data_area_mb = 8: setting belongs in section [target]"},
		{"[config]\npool = \n",
			""},
		{"[config]\napi_host = a\n  b\ndebug = maybe so\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] debug = maybe so: expected true or false`},
		{"[config]\nloop_delay =\n  5 7\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] loop_delay = "\n5 7": expected integer`},
		{"[config]\npool = 50%\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] pool = 50%: '%' must be followed by '%' or '(' (write %% for a literal %)`},
		{"[config]\npool = %(nope)s\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] pool = %(nope)s: %(nope)s refers to a key not in this section or [DEFAULT]`},
		{"[config]\npool = %(pool)s\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] pool = %(pool)s: %(key)s references nest more than 10 deep`},
		{"[config]\npool = %()s\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] pool = %()s: bad %(key)s reference (write %% for a literal %)`},
		{"[config]\npool = config://\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] pool = config://: expected config://<config-key name>`},
		{"pool = rbd\n",
			`/etc/ceph/iscsi-gateway.cfg: line 1: expected a [section] header before any setting`},
		{"[config]\njust some words\n",
			`/etc/ceph/iscsi-gateway.cfg: line 2: [config] expected "key = value", "key: value" or a [section] header`},
		{"[config]\n= value\n",
			`/etc/ceph/iscsi-gateway.cfg: line 2: [config] missing key before '='`},
		{"[config]\n[target]\n[config]\n",
			`/etc/ceph/iscsi-gateway.cfg: line 3: duplicate section [config] (first at line 1)`},
		{"[config]\npool = a\nPool = b\n",
			`/etc/ceph/iscsi-gateway.cfg: [config] pool = b: duplicate key (first at line 2)`},
		{"[config]\npool = \xff\n",
			`/etc/ceph/iscsi-gateway.cfg: line 2: file is not valid UTF-8`},
		{"[DEFAULT]\napi_port = 5001\n[config]\n[target]\n",
			`/etc/ceph/iscsi-gateway.cfg: [DEFAULT] api_port = 5001: setting belongs in section [config], but [DEFAULT] also applies it to [target]`},
	}
	for _, c := range cases {
		_, err := Parse(testPath, []byte(c.text))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("Parse(%q):\n got: %s\nwant: %s", c.text, got, c.want)
		}
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := Parse(testPath, []byte("[config]\napi_port = 0\nloop_delay = x\n[target]\ndebug = 1\n"))
	if err == nil {
		t.Fatal("no error")
	}
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *Error
		if !errors.As(e, &se) {
			t.Fatalf("%T is not *Error", e)
		}
		keys = append(keys, se.Key)
	}
	if !slices.Equal(keys, []string{"api_port", "loop_delay", "debug"}) {
		t.Errorf("errors for %q", keys)
	}
}

func TestINISemantics(t *testing.T) {
	// [DEFAULT] applies when only its key's section is present.
	s := mustParse(t, "[DEFAULT]\napi_port = 5001\n[config]\n")
	if s.APIPort != 5001 {
		t.Errorf("DEFAULT api_port not inherited: %d", s.APIPort)
	}
	s = mustParse(t, "[DEFAULT]\napi_port = 5001\n")
	if s.APIPort != 5000 || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "no [config] section") {
		t.Errorf("DEFAULT without its section: port %d, warnings %q", s.APIPort, s.Warnings)
	}
	// The section's own value wins over [DEFAULT]; interpolation sees both.
	s = mustParse(t, "[DEFAULT]\npool = x\n[config]\npool = y\napi_user = %(pool)s-%(POOL)s%%\n")
	if s.Pool != "y" || s.APIUser != "y-y%" {
		t.Errorf("pool %q api_user %q", s.Pool, s.APIUser)
	}
	// A header ends at the last "]"; section names are case-sensitive.
	s = mustParse(t, "[config] trailing ; text\npool = a\n[Target]\napi_port = nope\n")
	if s.Pool != "a" || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "[Target] ignored (did you mean [target]?)") {
		t.Errorf("pool %q warnings %q", s.Pool, s.Warnings)
	}
	// Indented keys after a header are keys; deeper lines continue them.
	s = mustParse(t, "[config]\n  pool = a\n  api_user = b\n    c\n\n\n  ceph_user = d\n")
	if s.Pool != "a" || s.APIUser != "b\nc" || s.CephUser != "d" {
		t.Errorf("pool %q api_user %q ceph_user %q", s.Pool, s.APIUser, s.CephUser)
	}
	// Blank lines inside a value are kept, trailing ones dropped; a value
	// may start on the next line.
	s = mustParse(t, "[config]\npool =\n  a\n\n  b\n\n\napi_user = x\n")
	if s.Pool != "\na\n\nb" {
		t.Errorf("pool %q", s.Pool)
	}
	// The first delimiter splits; keys are lower-cased; BOM tolerated.
	s = mustParse(t, "\ufeff[config]\nAPI_HOST:a=b:c\n")
	if s.APIHost != "a=b:c" {
		t.Errorf("api_host %q", s.APIHost)
	}
	// Python's lower() turns U+0130 into two characters, so this key
	// matches nothing there; it must not match here either.
	s = mustParse(t, "[target]\n\u0130mmediate_data = no\n")
	if !s.Target.ImmediateData || len(s.Warnings) != 1 {
		t.Errorf("U+0130 key matched: %v %q", s.Target.ImmediateData, s.Warnings)
	}
	// Python's strip() also removes U+001C..U+001F.
	s = mustParse(t, "[config]\npool = \x1crbd2\x1f\n")
	if s.Pool != "rbd2" {
		t.Errorf("pool %q", s.Pool)
	}
}

func TestSSLVerifyForced(t *testing.T) {
	for _, c := range []struct {
		text string
		want bool
	}{
		{"[config]\napi_ssl_verify = true\n", false},
		{"[config]\napi_secure = true\napi_ssl_verify = true\n", false},
		{"[config]\napi_secure = false\napi_ssl_verify = true\n", true},
		{"[config]\napi_secure = false\n", false},
	} {
		if got := mustParse(t, c.text).APISSLVerify; got != c.want {
			t.Errorf("%q: api_ssl_verify = %v", c.text, got)
		}
	}
}

func TestPasswordNeverLeaks(t *testing.T) {
	const pw = "Sup3rS3cret"
	texts := []string{
		"[config]\napi_password = " + pw + "%\n",
		"[config]\napi_password = " + pw + "%(x)s\n",
		"[config]\napi_password = a\napi_password = " + pw + "\n",
		"[target]\napi_password = " + pw + "\n",
		"[DEFAULT]\napi_password = " + pw + "\n[config]\n[target]\n",
		"[config]\napi_password " + pw + "\n",
		"[config]\napi_pasword = " + pw + "%\n",
		"[config]\napi_pasword = %(" + pw + ")s\n",
	}
	for _, text := range texts {
		_, err := Parse(testPath, []byte(text))
		if err == nil {
			t.Errorf("%q: no error", text)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error leaks the password: %v", err)
		}
		var e *Error
		if errors.As(err, &e) && e.Key == "api_password" && (!e.Secret || e.Value != "") {
			t.Errorf("error carries the password: %#v", e)
		}
	}

	s := mustParse(t, "[config]\napi_password = "+pw+"\n")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("settings", "settings", s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("settings", "settings", s, "pw", s.APIPassword)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("settings", "value", *s)
	fmt.Fprintf(&buf, "%v %+v %#v %s %q %x %d", *s, s, s, s.APIPassword, s.APIPassword, s.APIPassword, s.APIPassword)
	js, _ := json.Marshal(s)
	buf.Write(js)
	if strings.Contains(buf.String(), pw) || !strings.Contains(buf.String(), "REDACTED") {
		t.Errorf("password leaked or not redacted:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), `"api_port":5000`) {
		t.Errorf("LogValue lacks settings:\n%s", buf.String())
	}
	if s.APIPassword.Reveal() != pw {
		t.Errorf("Reveal() = %q", s.APIPassword.Reveal())
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.cfg")
	s, err := Read(missing)
	if err != nil || s.Hash() != defaultsHash || len(s.Warnings) != 1 {
		t.Fatalf("Read(missing) = %v, %v", s, err)
	}
	if _, err := Read(dir); err == nil {
		t.Error("Read(directory) succeeded")
	}
	path := filepath.Join(dir, "gw.cfg")
	if err := os.WriteFile(path, []byte("[config]\napi_port = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Read(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": [config] api_port = 0: ") {
		t.Errorf("Read error %v does not name the file", err)
	}
}

func TestAccessors(t *testing.T) {
	s := Defaults()
	if s.CephConfPath() != "/etc/ceph/ceph.conf" || s.ClientID() != "admin" || !s.IsDefaultClient() ||
		s.PrivKeyPath() != "/etc/ceph/iscsi-gateway.key" || s.PubKeyPath() != "/etc/ceph/iscsi-gateway-pub.key" ||
		s.APIAddr() != "[::]:5000" || s.PrometheusAddr() != "[::]:9287" || s.APIScheme() != "https" ||
		s.LogLevel() != slog.LevelDebug {
		t.Errorf("defaults accessors wrong")
	}
	s = mustParse(t, "[config]\nceph_config_dir = /opt/ceph/\ncluster_name = c2\ncluster_client_name = client.iscsi.gw1\n"+
		"priv_key = /keys/priv.pem\napi_host = 10.0.0.1\napi_secure = no\nlogger_level = 40\n")
	if s.CephConfPath() != "/opt/ceph//c2.conf" || s.ClientID() != "iscsi.gw1" || s.IsDefaultClient() ||
		s.PrivKeyPath() != "/keys/priv.pem" || s.PubKeyPath() != "/opt/ceph/iscsi-gateway-pub.key" ||
		s.APIAddr() != "10.0.0.1:5000" || s.APIScheme() != "http" || s.LogLevel() != slog.LevelError {
		t.Errorf("accessors wrong: %s %s %s %s %s %v", s.CephConfPath(), s.ClientID(), s.PrivKeyPath(), s.PubKeyPath(), s.APIAddr(), s.LogLevel())
	}
	if LIOYesNo(true) != "Yes" || LIOYesNo(false) != "No" {
		t.Error("LIOYesNo")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	texts := []string{""}
	for _, c := range pythonCases {
		texts = append(texts, c.text)
	}
	texts = append(texts, "[config]\npool = config://iscsi/pool\napi_port = config://iscsi/port\n")
	for _, text := range texts {
		s := mustParse(t, text)
		out, err := s.MarshalINI()
		if err != nil {
			t.Errorf("MarshalINI after %q: %v", text, err)
			continue
		}
		back := mustParse(t, string(out))
		if back.Hash() != s.Hash() || !slices.Equal(back.PendingConfigKeys(), s.PendingConfigKeys()) ||
			back.ClusterClientName != s.ClusterClientName || back.LoggerLevel != s.LoggerLevel {
			t.Errorf("round trip of %q changed the settings:\n%s", text, out)
		}
	}
	for _, bad := range []func(*Settings){
		func(s *Settings) { s.Pool = " leading" },
		func(s *Settings) { s.Pool = "a\n#comment" },
		func(s *Settings) { s.Pool = "a\rb" },
		func(s *Settings) { s.TrustedIPList = []string{"a,b"} },
		func(s *Settings) { s.TrustedIPList = []string{""} },
		func(s *Settings) { s.APIPort = 0 },
	} {
		s := Defaults()
		bad(s)
		if _, err := s.MarshalINI(); err == nil {
			t.Errorf("MarshalINI accepted an unrepresentable value")
		}
	}
}

func TestInterpolationBlowUp(t *testing.T) {
	for _, leaf := range []string{"%%", ""} {
		var b strings.Builder
		b.WriteString("[config]\nk0 = " + leaf + "\n")
		for i := 1; i <= 9; i++ {
			fmt.Fprintf(&b, "k%d = %s\n", i, strings.Repeat(fmt.Sprintf("%%(k%d)s", i-1), 10))
		}
		b.WriteString("pool = %(k9)s\n")
		_, err := Parse(testPath, []byte(b.String()))
		if err == nil || !strings.Contains(err.Error(), "[config] pool = %(k9)s: ") {
			t.Errorf("leaf %q: error %v", leaf, err)
		}
	}
}
