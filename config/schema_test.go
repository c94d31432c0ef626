package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// fullDoc is a v11 document with an unknown key ("x_*") at every level,
// including nested JSON values of every type, as a newer gateway might write.
const fullDoc = `{
    "created": "2024/01/01 00:00:00",
    "discovery_auth": {
        "mutual_password": "",
        "mutual_password_encryption_enabled": false,
        "mutual_username": "",
        "password": "",
        "password_encryption_enabled": false,
        "username": "",
        "x_auth": "discovery"
    },
    "disks": {
        "rbd/a": {
            "allocating_host": "gw1.example",
            "backstore": "user:rbd",
            "backstore_object_name": "rbd.a",
            "controls": {
                "future_knob": [
                    1,
                    2.5,
                    null
                ],
                "qfull_timeout": 18
            },
            "created": "2024/01/01 00:00:01",
            "image": "a",
            "owner": "gw1.example",
            "pool": "rbd",
            "pool_id": 1,
            "updated": "2024/01/01 00:00:02",
            "wwn": "",
            "x_disk": {
                "deep": {
                    "list": [],
                    "obj": {}
                }
            }
        }
    },
    "epoch": 3,
    "gateways": {
        "gw1.example": {
            "active_luns": 1,
            "created": "2024/01/01 00:00:03",
            "updated": "2024/01/01 00:00:04",
            "x_gateway": true
        }
    },
    "targets": {
        "iqn.2003-01.com.example:t": {
            "acl_enabled": false,
            "auth": {
                "mutual_password": "",
                "mutual_password_encryption_enabled": false,
                "mutual_username": "",
                "password": "",
                "password_encryption_enabled": false,
                "username": "",
                "x_auth": "target"
            },
            "clients": {
                "iqn.1994-05.com.example:c": {
                    "auth": {
                        "mutual_password": "",
                        "mutual_password_encryption_enabled": false,
                        "mutual_username": "",
                        "password": "p",
                        "password_encryption_enabled": false,
                        "username": "u",
                        "x_auth": "client"
                    },
                    "group_name": "g",
                    "luns": {
                        "rbd/a": {
                            "lun_id": 0,
                            "x_lun": "client"
                        }
                    },
                    "x_client": 1.50
                }
            },
            "controls": {
                "immediate_data": false
            },
            "created": "2024/01/01 00:00:05",
            "disks": {
                "rbd/a": {
                    "lun_id": 0,
                    "x_lun": "target"
                }
            },
            "groups": {
                "g": {
                    "disks": {
                        "rbd/a": {
                            "lun_id": 0,
                            "x_lun": "group"
                        }
                    },
                    "members": [
                        "iqn.1994-05.com.example:c"
                    ],
                    "x_group": null
                }
            },
            "ip_list": [
                "192.0.2.1"
            ],
            "portals": {
                "gw1.example": {
                    "gateway_ip_list": [
                        "192.0.2.1"
                    ],
                    "inactive_portal_ips": [],
                    "portal_ip_addresses": [
                        "192.0.2.1"
                    ],
                    "tpgs": 1,
                    "x_portal": -7
                }
            },
            "updated": "2024/01/01 00:00:06",
            "x_target": "\u00e9\ud83d\ude00"
        }
    },
    "updated": "2024/01/01 00:00:07",
    "version": 11,
    "x_top": 123456789012345678901234567890
}`

func TestUnknownKeysRoundTrip(t *testing.T) {
	doc, err := Parse([]byte(fullDoc))
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Marshal(); string(got) != fullDoc {
		t.Fatalf("round trip lost data:\n%s", diffLines(fullDoc, string(got)))
	}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	tg := doc.Targets["iqn.2003-01.com.example:t"]
	c := tg.Clients["iqn.1994-05.com.example:c"]
	checks := map[string]map[string]any{
		"x_top":     doc.Extra,
		"x_disk":    doc.Disks["rbd/a"].Extra,
		"x_gateway": doc.Gateways["gw1.example"].Extra,
		"x_target":  tg.Extra,
		"x_portal":  tg.Portals["gw1.example"].Extra,
		"x_client":  c.Extra,
		"x_group":   tg.Groups["g"].Extra,
	}
	for key, extra := range checks {
		if _, ok := extra[key]; !ok || len(extra) != 1 {
			t.Errorf("Extra for %s = %v", key, extra)
		}
	}
	for name, a := range map[string]Auth{"discovery": doc.DiscoveryAuth, "target": tg.Auth, "client": c.Auth} {
		if a.Extra["x_auth"] != name {
			t.Errorf("%s auth Extra = %v", name, a.Extra)
		}
	}
	for name, l := range map[string]LunRef{"target": tg.Disks["rbd/a"], "client": c.Luns["rbd/a"], "group": tg.Groups["g"].Disks["rbd/a"]} {
		if l.Extra["x_lun"] != name {
			t.Errorf("%s lun Extra = %v", name, l.Extra)
		}
	}
	if doc.Extra["x_top"] != json.Number("123456789012345678901234567890") {
		t.Errorf("x_top = %#v", doc.Extra["x_top"])
	}

	// A key in Extra that collides with a field must not override it.
	doc.Disks["rbd/a"].Extra["pool"] = "evil"
	doc.Disks["rbd/a"].Owner = nil
	doc.Disks["rbd/a"].Extra["owner"] = "evil"
	out := string(doc.Marshal())
	if strings.Contains(out, "evil") {
		t.Errorf("Extra overrode a known key:\n%s", out)
	}
}

func TestPresence(t *testing.T) {
	raw := `{"version": 11, "disks": {"rbd/a": {}}, "targets": {"t": {}, "u": {"ip_list": [], "updated": ""}}}`
	doc, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	d := doc.Disks["rbd/a"]
	if d.Owner != nil || d.AllocatingHost != nil {
		t.Errorf("absent owner/allocating_host decoded as present: %+v", d)
	}
	if doc.GatewaysUpgraded != nil {
		t.Error("absent gateways_upgraded decoded as present")
	}
	tt, tu := doc.Targets["t"], doc.Targets["u"]
	if tt.IPList != nil || tt.Updated != nil {
		t.Errorf("absent ip_list/updated decoded as present: %+v", tt)
	}
	if tu.IPList == nil || len(tu.IPList) != 0 || tu.Updated == nil || *tu.Updated != "" {
		t.Errorf("present-but-empty ip_list/updated lost: %+v", tu)
	}
	out := string(doc.Marshal())
	for _, absent := range []string{`"owner"`, `"allocating_host"`, `"gateways_upgraded"`} {
		if strings.Contains(out, absent) {
			t.Errorf("%s written although absent:\n%s", absent, out)
		}
	}
	// updated: "" appears for target u, the zero-filled disk and the top level,
	// but not for target t.
	if strings.Count(out, `"ip_list": []`) != 1 || strings.Count(out, `"updated": ""`) != 3 {
		t.Errorf("presence of ip_list/updated not preserved:\n%s", out)
	}
	// Required keys missing from the input are filled in with zero values.
	for _, want := range []string{`"pool_id": 0`, `"controls": {}`, `"acl_enabled": false`, `"discovery_auth": {`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}

	d.Owner = new("gw1")
	doc.GatewaysUpgraded = []string{}
	out = string(doc.Marshal())
	if !strings.Contains(out, `"owner": "gw1"`) || !strings.Contains(out, `"gateways_upgraded": []`) {
		t.Errorf("set optional keys not written:\n%s", out)
	}
}

func TestSeeds(t *testing.T) {
	now := time.Date(2024, 2, 3, 4, 5, 6, 0, time.FixedZone("CET", 3600))
	if got := Timestamp(now); got != "2024/02/03 03:05:06" {
		t.Errorf("Timestamp = %q", got)
	}
	// Python: json.dumps(Config.seed_config with created set, sort_keys=True,
	// indent=4, separators=(',', ': ')).
	want := `{
    "created": "2024/02/03 03:05:06",
    "discovery_auth": {
        "mutual_password": "",
        "mutual_password_encryption_enabled": false,
        "mutual_username": "",
        "password": "",
        "password_encryption_enabled": false,
        "username": ""
    },
    "disks": {},
    "epoch": 0,
    "gateways": {},
    "targets": {},
    "updated": "",
    "version": 11
}`
	if got := string(NewDoc(now).Marshal()); got != want {
		t.Errorf("seed:\n%s", diffLines(want, got))
	}

	doc := NewDoc(now)
	if _, err := doc.AddTarget("iqn.2003-01.com.example:t", now); err != nil {
		t.Fatal(err)
	}
	wantTarget := `{
    "acl_enabled": true,
    "auth": {
        "mutual_password": "",
        "mutual_password_encryption_enabled": false,
        "mutual_username": "",
        "password": "",
        "password_encryption_enabled": false,
        "username": ""
    },
    "clients": {},
    "controls": {},
    "created": "2024/02/03 03:05:06",
    "disks": {},
    "groups": {},
    "portals": {}
}`
	if got := string(mustMarshal(doc.Targets["iqn.2003-01.com.example:t"].toMap())); got != wantTarget {
		t.Errorf("target seed:\n%s", diffLines(wantTarget, got))
	}
	wantClient := "{\n    \"auth\": {\n        \"mutual_password\": \"\",\n        \"mutual_password_encryption_enabled\": false,\n" +
		"        \"mutual_username\": \"\",\n        \"password\": \"\",\n        \"password_encryption_enabled\": false,\n" +
		"        \"username\": \"\"\n    },\n    \"group_name\": \"\",\n    \"luns\": {}\n}"
	if got := string(mustMarshal(NewClient().toMap())); got != wantClient {
		t.Errorf("client seed:\n%s", diffLines(wantClient, got))
	}
	if got := string(mustMarshal(NewGroup().toMap())); got != "{\n    \"disks\": {},\n    \"members\": []\n}" {
		t.Errorf("group seed:\n%s", got)
	}
	if err := NewDoc(now).Validate(); err != nil {
		t.Error(err)
	}
}

func TestMarshalDoesNotAliasInput(t *testing.T) {
	m, err := ParseAny([]byte(fullDoc))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := FromAny(m)
	if err != nil {
		t.Fatal(err)
	}
	m["disks"].(map[string]any)["rbd/a"].(map[string]any)["x_disk"].(map[string]any)["deep"] = "changed"
	m["disks"].(map[string]any)["rbd/a"].(map[string]any)["controls"].(map[string]any)["future_knob"] = "changed"
	if got := doc.Marshal(); !bytes.Equal(got, []byte(fullDoc)) {
		t.Error("decoded document shares containers with its input")
	}
}
