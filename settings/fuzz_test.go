package settings

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks, for any input: Parse does not panic; its errors are all
// *Error; on success the hash is stable and MarshalINI produces a file that
// parses back to the same hash and pending config:// keys.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"[config]\n",
		"[config]\napi_port = 70000\n",
		"[config]\nqfull_timeout = 5\n",
		"[DEFAULT]\nx = 1\n[config]\npool = %(x)s%%\n",
		"[config]\npool = a\n  b\n\n  c\n# c\n; c\n",
		"[config]\napi_password = config://iscsi/pw\n",
		"[config]\ntrusted_ip_list = ,a, b ,\n[target]\nimmediate_data = No\n",
		"\ufeff[config]\r\npool: x\rapi_user =\n\ty\n",
		"[config] x\n[a]b]\nk\n=v\n",
		"[config]\npool = \x7f\u20ac\U0001f600\"\\\n",
	}
	for _, c := range pythonCases {
		seeds = append(seeds, c.text)
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(testPath, data)
		if err != nil {
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("error %T is not joined", err)
			}
			for _, e := range joined.Unwrap() {
				var se *Error
				if !errors.As(e, &se) || !strings.HasPrefix(e.Error(), testPath+": ") {
					t.Fatalf("error %q is not an *Error naming the file", e)
				}
			}
			return
		}
		h := s.Hash()
		if len(h) != 64 || s.Hash() != h {
			t.Fatalf("unstable hash %q", h)
		}
		if s.APISecure && s.APISSLVerify {
			t.Fatal("api_ssl_verify not forced off")
		}
		out, err := s.MarshalINI()
		if err != nil {
			t.Fatalf("MarshalINI: %v", err)
		}
		back, err := Parse(testPath, out)
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", out, err)
		}
		if back.Hash() != h || strings.Join(back.PendingConfigKeys(), "\x00") != strings.Join(s.PendingConfigKeys(), "\x00") ||
			back.ClusterClientName != s.ClusterClientName || back.LoggerLevel != s.LoggerLevel {
			t.Fatalf("round trip changed the settings:\n%s", out)
		}
	})
}
