package api

import (
	"strings"
	"testing"

	"ceph-iscsi/config"
)

// nameCases are issue 8's refusals of names, part of the bad-input table
// (memStore and real cluster): the exact messages clients see.
func nameCases() []badCase {
	ex := "iqn.2003-01.com.example:"
	rule := func(field, raw, r string) string {
		return "Invalid iqn " + config.QuoteName(raw) + " - " + field + ": " + r
	}
	ascii := "only a-z, 0-9, '-', '.' and ':' are allowed in ASCII (RFC 3722)"
	long := strings.Repeat("a", 200)
	return []badCase{
		{"iqn traversal", "PUT", "/api/target/" + ex + "x%2F..%2F..%2Fpwned", nil, nil, 400, rule("target_iqn", ex+"x/../../pwned", "has U+002F at byte 25: "+ascii)},
		{"iqn tab", "PUT", "/api/target/" + ex + "a%09b", nil, nil, 400, rule("target_iqn", ex+"a\tb", "has U+0009 at byte 25: "+ascii)},
		{"iqn NUL", "PUT", "/api/target/" + ex + "a%00b", nil, nil, 400, rule("target_iqn", ex+"a\x00b", "has U+0000 at byte 25: "+ascii)},
		{"iqn DEL", "PUT", "/api/target/" + ex + "a%7Fb", nil, nil, 400, rule("target_iqn", ex+"a\x7fb", "has U+007F at byte 25: "+ascii)},
		{"iqn zero-width", "PUT", "/api/target/" + ex + "a%E2%80%8Bb", nil, nil, 400, rule("target_iqn", ex+"a\u200bb", "has U+200B at byte 25: only letters, digits and combining marks are allowed beyond ASCII (RFC 3722)")},
		{"iqn bidi", "PUT", "/api/target/" + ex + "a%E2%80%AEb", nil, nil, 400, rule("target_iqn", ex+"a\u202eb", "has U+202E at byte 25: only letters, digits and combining marks are allowed beyond ASCII (RFC 3722)")},
		{"iqn invalid utf-8", "PUT", "/api/target/" + ex + "a%FFb", nil, nil, 400, rule("target_iqn", ex+"a\xffb", "is not valid UTF-8 (RFC 3720 3.2.6.2)")},
		{"iqn 224 bytes", "PUT", "/api/target/" + ex + long, nil, nil, 400, rule("target_iqn", ex+long, "is 224 bytes long; an iSCSI name is at most 223 bytes (RFC 3720 3.2.6.1)")},
		{"iqn month 00", "PUT", "/api/target/iqn.2003-00.com.example:t", nil, nil, 400, rule("target_iqn", "iqn.2003-00.com.example:t", "has month 00; it must be 01 to 12 (RFC 3720 3.2.6.3.1)")},
		{"client iqn control", "PUT", "/api/client/" + tIQN + "/iqn.1994-05.com.example:a%01b", nil, nil, 400, rule("client_iqn", "iqn.1994-05.com.example:a\x01b", "has U+0001 at byte 25: "+ascii)},
		{"client iqn 300 bytes", "PUT", "/api/client/" + tIQN + "/iqn.1994-05.com.example:" + strings.Repeat("c", 276), nil, nil, 400,
			rule("client_iqn", "iqn.1994-05.com.example:"+strings.Repeat("c", 276), "is 300 bytes long; an iSCSI name is at most 223 bytes (RFC 3720 3.2.6.1)")},
		{"delete unknown invalid iqn", "DELETE", "/api/client/" + tIQN + "/iqn.1994-05.com.example:a%01b", nil, nil, 400, rule("client_iqn", "iqn.1994-05.com.example:a\x01b", "has U+0001 at byte 25: "+ascii)},
		{"group name control", "PUT", "/api/hostgroup/" + tIQN + "/g%01", v("members", cIQN2), nil, 400,
			`Invalid group name "g\x01" - group_name: has U+0001 at byte 1: control, format, space, private-use and unassigned characters are not allowed`},
		{"group name slash", "PUT", "/api/hostgroup/" + tIQN + "/a%2Fb", v("members", cIQN2), nil, 400,
			`Invalid group name "a/b" - group_name: has '/' at byte 1; a name is a single path component`},
		{"gateway name url", "PUT", "/api/gateway/" + tIQN + "/evil.example%2Fx%3F", v("ip_address", "198.51.100.7", "skipchecks", "true"), nil, 400,
			`Invalid gateway name "evil.example/x?" - gateway_name: is not a host name: only letters, digits, '-' and '_' are allowed in a label (RFC 1123)`},
	}
}

func TestPathSegments(t *testing.T) {
	for in, want := range map[string]string{
		"iqn.2003-01.com.example:t": "iqn.2003-01.com.example:t",
		"a/b":                       "a%2Fb",
		"a\x01b":                    "a%01b",
		"a b%":                      "a%20b%25",
		"..":                        "..",
		"a?#":                       "a%3F%23",
	} {
		if got := pathSegments(in); got != want {
			t.Errorf("pathSegments(%q) = %q, want %q", in, got, want)
		}
	}
	if got := pathSegments("t", "a/b"); got != "t/a%2Fb" {
		t.Errorf("two segments: %q", got)
	}
}

// A gateway name that is not a host name (an older version's or a hand
// edit's) is never contacted: as a URL host it could send the internal call
// and its credentials anywhere. It can still be removed with force.
func TestPeerCallRefusesInvalidGatewayName(t *testing.T) {
	bad := "evil.example/x?"
	d := seedDoc(gw1)
	d.Gateways[bad] = &config.Gateway{}
	tg := d.Targets[tIQN]
	tg.IPList = append(tg.IPList, "198.51.100.7")
	tg.Portals[bad] = &config.Portal{PortalIPAddresses: []string{"198.51.100.7"}}
	var contacted []string
	env := newEnv(t, newMemStore(d), gw1, func(dp *Deps) {
		dp.PeerURL = func(gw string) string {
			contacted = append(contacted, gw)
			return "http://127.0.0.1:1"
		}
	})
	rec := env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN2, nil)
	if rec.Code != 503 || !strings.Contains(msgOf(t, rec), "gateway(s) unavailable") {
		t.Fatalf("client create with an invalid peer: %d %s", rec.Code, rec.Body)
	}
	expect(t, env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+pathSegments(bad), v("force", "true")), 200, "Gateway deletion successful")
	if len(contacted) != 0 {
		t.Fatalf("contacted %q", contacted)
	}
	if doc := loadDoc(t, env.store); doc.Gateways[bad] != nil || doc.Targets[tIQN].Portals[bad] != nil {
		t.Fatal("the invalid gateway is still in the document")
	}
}
