package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// typedCorpus is documents in every shape the typed encoder and decoder
// take apart: each test document, fullDoc with and without its unknown keys,
// a document with groups, portals, optional keys absent and present, and the
// issue 10 scale shape.
func typedCorpus(t *testing.T) map[string]*Doc {
	t.Helper()
	out := map[string]*Doc{}
	for _, name := range []string{"upstream-gateway.conf.json", "v3-two-node.golden.json", "v10.golden.json",
		"v9-rolling.node1.golden.json", "v9-rolling.node2.golden.json"} {
		d, _, err := Load(readTestdata(t, name), UpgradeOptions{Gateway: node1, Now: t1})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = d
	}
	full, err := parseGeneric([]byte(fullDoc))
	if err != nil {
		t.Fatal(err)
	}
	out["fullDoc"] = full
	plain := full.Clone()
	dropExtras(plain)
	out["fullDoc without unknown keys"] = plain

	shapes := scaleDoc(t, 8)
	tg := shapes.Targets["iqn.2003-01.com.example.bench:target"]
	tg.IPList = []string{}
	upd := "2024/01/01 00:00:09"
	tg.Updated = &upd
	tg.Controls = map[string]any{"cmdsn_depth": 64}
	tg.Portals["gw1"] = &Portal{PortalIPAddresses: []string{"192.0.2.1"}, GatewayIPList: []string{"192.0.2.1", "192.0.2.2"}, TPGs: 2}
	tg.Portals["gw2"] = &Portal{}
	tg.Groups["g"] = &Group{Members: []string{"iqn.1994-05.com.example:c00000"}, Disks: map[string]LunRef{"rbd/img00001": {LunID: 3}}}
	tg.Groups["empty"] = &Group{}
	tg.Clients["iqn.1994-05.com.example:c00000"].GroupName = "g"
	tg.Clients["iqn.1994-05.com.example:c00001"].Auth = Auth{Username: "u", Password: "p", PasswordEncryptionEnabled: true,
		MutualUsername: "mu", MutualPassword: "mp", MutualPasswordEncryptionEnabled: true}
	shapes.Disks["rbd/img00002"].Owner = nil
	shapes.Disks["rbd/img00003"].AllocatingHost = nil
	shapes.Disks["rbd/img00004"].Controls = map[string]any{"hw_max_sectors": 1024, "x": []any{"a", nil, true}}
	shapes.Gateways["gw1"] = &Gateway{ActiveLuns: 3, Created: "c", Updated: "u"}
	shapes.GatewaysUpgraded = []string{node1.FQDN}
	shapes.Epoch = 1 << 40
	out["shapes"] = shapes
	out["scale 256"] = scaleDoc(t, 256)
	return out
}

func dropExtras(d *Doc) {
	d.Extra, d.DiscoveryAuth.Extra = nil, nil
	for _, x := range d.Disks {
		x.Extra = nil
	}
	for _, g := range d.Gateways {
		g.Extra = nil
	}
	for _, t := range d.Targets {
		t.Extra, t.Auth.Extra = nil, nil
		for k, l := range t.Disks {
			l.Extra = nil
			t.Disks[k] = l
		}
		for _, c := range t.Clients {
			c.Extra, c.Auth.Extra = nil, nil
			for k, l := range c.Luns {
				l.Extra = nil
				c.Luns[k] = l
			}
		}
		for _, g := range t.Groups {
			g.Extra = nil
			for k, l := range g.Disks {
				l.Extra = nil
				g.Disks[k] = l
			}
		}
		for _, p := range t.Portals {
			p.Extra = nil
		}
	}
}

// The typed encoder writes the bytes of the generic one, and the typed
// decoder reads back exactly what the generic one does: any difference
// would change the object's bytes or what a peer believes it holds.
func TestTypedCodecMatchesGeneric(t *testing.T) {
	for name, d := range typedCorpus(t) {
		t.Run(name, func(t *testing.T) {
			want, err := MarshalAny(d.toMap())
			if err != nil {
				t.Fatal(err)
			}
			got, err := marshalDoc(d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("typed encoding differs:\n%s", diffLines(string(want), string(got)))
			}
			fast, ok := decodeFast(want)
			if !ok {
				t.Fatal("the typed decoder gave up on a plain document")
			}
			slow, err := parseGeneric(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("typed decoding differs:\n%s", diffLines(string(slow.Marshal()), string(fast.Marshal())))
			}
		})
	}
}

// What the typed decoder leaves to the generic path still decodes, or is
// refused, exactly as before.
func TestTypedDecoderGivesUp(t *testing.T) {
	base := string(scaleDoc(t, 4).Marshal())
	for name, raw := range map[string]string{
		"escape in a string":  strings.Replace(base, `"img00001"`, `"img\u0030001"`, 1),
		"non-ASCII":           strings.Replace(base, `"wwn-1"`, `"wwn-é"`, 1),
		"invalid UTF-8":       strings.Replace(base, `"wwn-1"`, "\"wwn-\xff\"", 1),
		"null owner":          strings.Replace(base, `"owner": "gw1"`, `"owner": null`, 1),
		"float lun_id":        strings.Replace(base, `"lun_id": 1`, `"lun_id": 1.0`, 1),
		"string lun_id":       strings.Replace(base, `"lun_id": 1`, `"lun_id": "1"`, 1),
		"older version":       strings.Replace(base, `"version": 11`, `"version": 10`, 1),
		"no version":          strings.Replace(base, `"version": 11`, `"x_version": 11`, 1),
		"trailing data":       base + " {}",
		"truncated":           base[:len(base)/2],
		"bad controls":        strings.Replace(base, `"controls": {}`, `"controls": [1]`, 1),
		"duplicate key":       strings.Replace(base, `"epoch": 0`, `"epoch": 0, "epoch": 7`, 1),
		"unknown key, nested": strings.Replace(base, `"epoch": 0`, `"epoch": 0, "x": {"a": [1, {"b": "\"}"}]}`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			slow, slowErr := parseGeneric([]byte(raw))
			got, err := Parse([]byte(raw))
			if (err == nil) != (slowErr == nil) || err != nil && err.Error() != slowErr.Error() {
				t.Fatalf("Parse: %v, the generic path: %v", err, slowErr)
			}
			if !reflect.DeepEqual(got, slow) {
				t.Fatal("Parse and the generic path decode differently")
			}
		})
	}
}
