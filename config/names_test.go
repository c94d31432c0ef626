package config

import (
	"errors"
	"strings"
	"testing"
)

// issue8Names are the hostile names of issue 8 items 1-3, each as it would
// be stored (lower case).
var issue8Names = map[string]string{
	"traversal":      "iqn.2003-01.com.example:x/../../../../pwned-tgt",
	"slash":          "iqn.2003-01.com.example:a/b",
	"tab":            "iqn.2003-01.com.example:a\tb",
	"newline":        "iqn.2003-01.com.example:a\nb",
	"nul":            "iqn.2003-01.com.example:a\x00b",
	"0x01":           "iqn.2003-01.com.example:a\x01b",
	"0x7f":           "iqn.2003-01.com.example:a\x7fb",
	"zero-width":     "iqn.2003-01.com.example:a\u200bb",
	"bidi":           "iqn.2003-01.com.example:a\u202eb",
	"invalid utf-8":  "iqn.2003-01.com.example:a\xffb",
	"224 bytes":      "iqn.2003-01.com.example:" + strings.Repeat("a", 224-24),
	"300 bytes":      "iqn.2003-01.com.example:" + strings.Repeat("a", 300-24),
	"5000 bytes":     "iqn.2003-01.com.example:" + strings.Repeat("a", 5000-24),
	"space":          "iqn.2003-01.com.example:a b",
	"percent":        "iqn.2003-01.com.example:a%2fb",
	"upper case":     "iqn.2003-01.com.example:A",
	"dot-dot":        "..",
	"empty":          "",
	"no date":        "iqn.com.example:x",
	"month 13":       "iqn.2003-13.com.example:x",
	"empty label":    "iqn.2003-01.com..example:x",
	"no authority":   "iqn.2003-01.:x",
	"eui short":      "eui.0123456789abcde",
	"eui upper":      "eui.0123456789ABCDEF",
	"naa 20":         "naa.01234567890123456789",
	"other type":     "wwn.0123456789abcdef",
	"underscore":     "iqn.2003-01.com.example:a_b",
	"fullwidth /":    "iqn.2003-01.com.example:a\uff0fb",
	"private use":    "iqn.2003-01.com.example:a\ue000b",
	"symbol":         "iqn.2003-01.com.example:a\u2603b",
	"unicode upper":  "iqn.2003-01.com.example:\u00c9",
	"unicode spaces": "iqn.2003-01.com.example:a\u00a0b",
}

func TestValidateIQNRefusesIssue8Names(t *testing.T) {
	for what, name := range issue8Names {
		err := ValidateIQN(name)
		if err == nil {
			t.Errorf("%s: ValidateIQN(%q) accepted it", what, name)
			continue
		}
		var ne *NameError
		if !errors.As(err, &ne) || !errors.Is(err, ErrInvalidIQN) {
			t.Errorf("%s: %v is not a *NameError wrapping ErrInvalidIQN", what, err)
		}
		if len(err.Error()) > 400 {
			t.Errorf("%s: message of %d bytes: a long name must be cut", what, len(err.Error()))
		}
		if strings.ContainsAny(err.Error(), "\x00\x01\t\n\x7f\u200b\u202e") {
			t.Errorf("%s: message %q shows a control or invisible character raw", what, err)
		}
	}
}

func TestValidateIQNAccepts(t *testing.T) {
	for _, name := range []string{
		"iqn.2003-01.com.example:t1",
		"iqn.2003-01.com.example",
		"iqn.1994-05.com.redhat:5b6f3c1a9e",
		"iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw",
		"iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
		"iqn.2001-04.com.example:storage.tape1.sys1.xyz",
		"iqn.2003-01.com.example:" + strings.Repeat("a", MaxIQNBytes-24),
		"iqn.2003-01.de.bücher:ünïcode-näme",
		"eui.02004567a425678d",
		"naa.52004567ba64678d",
		"naa.62004567ba64678d0123456789abcdef",
	} {
		if err := ValidateIQN(name); err != nil {
			t.Errorf("ValidateIQN(%q) = %v", name, err)
		}
	}
}

func TestNormalizeIQNAppliesISCSINameRules(t *testing.T) {
	// rtslib's own refusals keep upstream's text exactly.
	if _, err := NormalizeIQN("iqn.2003-01.com"); err != ErrInvalidIQN {
		t.Errorf("NormalizeIQN(short) = %v, want ErrInvalidIQN itself", err)
	}
	for _, what := range []string{"traversal", "nul", "0x01", "224 bytes", "zero-width", "bidi", "invalid utf-8", "percent"} {
		name := issue8Names[what]
		got, err := NormalizeIQN(name)
		var ne *NameError
		if !errors.As(err, &ne) || !errors.Is(err, ErrInvalidIQN) {
			t.Errorf("%s: NormalizeIQN(%q) = %q, %v; want a *NameError", what, name, got, err)
		}
	}
	// What is still rtslib's upper-case fold.
	if got, err := NormalizeIQN(" IQN.2003-01.COM.Example:T "); err != nil || got != "iqn.2003-01.com.example:t" {
		t.Errorf("NormalizeIQN = %q, %v", got, err)
	}
}

func TestValidateSafeName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00b", "a\x01", "a\x7f", "a b", "a\tb",
		"a\u200b", "a\u202e", "a\xff", "\ue000", strings.Repeat("a", 256)} {
		if err := ValidateSafeName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateSafeName(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"g", "group-1", "my.img", "a%2fb", "äöü", "x@y", strings.Repeat("a", 255)} {
		if err := ValidateSafeName(good); err != nil {
			t.Errorf("ValidateSafeName(%q) = %v", good, err)
		}
	}
}

func TestValidateGatewayName(t *testing.T) {
	for _, bad := range []string{"", "a/b", "evil.example@x", "h:5000", "a b", "-a", "a..b", "a\x00", "x?y", strings.Repeat("a", 64)} {
		if err := ValidateGatewayName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateGatewayName(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"node1", "node1.lab.example", "node1.lab.example.", "ceph_gw-1", "127.0.0.1", "::1"} {
		if err := ValidateGatewayName(good); err != nil {
			t.Errorf("ValidateGatewayName(%q) = %v", good, err)
		}
	}
}

// Issue 8 item 2: no path can commit an invalid name; item 3: names already
// present do not wedge later commits.
func TestValidateNames(t *testing.T) {
	const iqn = "iqn.2003-01.com.example.iscsi-gw:lab"
	tp := `targets["` + iqn + `"]`
	bad := issue8Names["traversal"]
	cases := []struct {
		name   string
		mutate func(d *Doc)
		want   string
	}{
		{"target iqn", func(d *Doc) { d.Targets[bad] = &Target{} }, `targets["` + bad + `"]: invalid name: `},
		{"client iqn", func(d *Doc) { d.Targets[iqn].Clients[issue8Names["300 bytes"]] = &Client{} },
			tp + `.clients["` + issue8Names["300 bytes"] + `"]: invalid name: "iqn.2003-01.com.example:aaaa`},
		{"group name", func(d *Doc) { d.Targets[iqn].Groups["g\x01"] = &Group{} }, tp + `.groups["g\x01"]: invalid name: "g\x01" has U+0001`},
		{"gateway name", func(d *Doc) { d.Gateways["evil.example/x?"] = &Gateway{} }, `gateways["evil.example/x?"]: invalid name`},
		{"portal name", func(d *Doc) {
			d.Gateways["a b"] = &Gateway{}
			d.Targets[iqn].Portals["a b"] = &Portal{}
		}, tp + `.portals["a b"]: invalid name`},
		{"backstore object", func(d *Doc) { d.Disks["ssd/fast"].BackstoreObjectName = "../x" }, `disks["ssd/fast"].backstore_object_name: invalid name`},
		{"image", func(d *Doc) { d.Disks["ssd/fast"].Image = "a\x00" }, `disks["ssd/fast"].image: invalid name`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := Parse(readTestdata(t, "v3-two-node.golden.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(doc.InvalidNames()) != 0 {
				t.Fatalf("the golden document has invalid names: %v", doc.InvalidNames())
			}
			c.mutate(doc)
			err = doc.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v\nwant it to contain %s", err, c.want)
			}
			if _, err := doc.ValidateAndMarshalSince(nil); err == nil {
				t.Error("ValidateAndMarshalSince(nil) accepted a new invalid name")
			}
			known := doc.InvalidNames()
			if len(known) == 0 {
				t.Fatal("InvalidNames is empty")
			}
			// A later, unrelated mutation commits despite the bad name.
			doc.Epoch++
			doc.Targets[iqn].Clients["iqn.1994-05.com.example:new"] = &Client{Luns: map[string]LunRef{}}
			if _, err := doc.ValidateAndMarshalSince(known); err != nil {
				t.Errorf("unrelated change refused: %v", err)
			}
			// A second invalid name is still refused.
			doc.Targets[iqn].Clients[issue8Names["nul"]] = &Client{}
			if _, err := doc.ValidateAndMarshalSince(known); err == nil {
				t.Error("a new invalid name was tolerated")
			}
		})
	}
}
