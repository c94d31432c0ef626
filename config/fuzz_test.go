package config

import (
	"bytes"
	"reflect"
	"testing"
)

func addSeeds(f *testing.F) {
	for _, name := range []string{"upstream-gateway.conf.json", "v3-two-node.json", "v3-two-node.golden.json",
		"v9-rolling.json", "v10.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(fullDoc))
	f.Add(scaleDoc(f, 4).Marshal())
	for _, s := range []string{
		`{"version": 11}`,
		`{"version": 11, "x": "\ud800", "y": "\u00e9\ud83d\ude00<&>", "z": [1e400, -0, 1.50]}`,
		`{"version": 11, "targets": {"t": {"disks": {"a": {"lun_id": 1}}, "ip_list": []}}, "gateways_upgraded": []}`,
		`{"version": 9.5, "gateways": {}}`,
		`{"version": 3, "gateways": {"iqn": "i", "n": {"iqn": "i"}}}`,
		`[]`, `null`, `{"version": 11} x`, "{\"a\": \"\xff\"}",
	} {
		f.Add([]byte(s))
	}
}

// FuzzParse: Parse never panics, whatever it accepts has a fixed point
// after one Marshal, and the typed decoder and encoder agree with the
// generic ones.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if fast, ok := decodeFast(raw); ok {
			slow, err := parseGeneric(raw)
			if err != nil {
				t.Fatalf("the typed decoder accepted what the generic one refuses (%v)", err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatal("the typed and generic decoders differ")
			}
		}
		doc, err := Parse(raw)
		if err != nil {
			return
		}
		_ = doc.Validate()
		first := doc.Marshal()
		if generic, err := MarshalAny(doc.toMap()); err != nil || !bytes.Equal(generic, first) {
			t.Fatalf("the typed and generic encoders differ (%v):\n%s", err, diffLines(string(generic), string(first)))
		}
		again, err := Parse(first)
		if err != nil {
			t.Fatalf("Parse(Marshal(x)) failed: %v\n%s", err, first)
		}
		if second := again.Marshal(); !bytes.Equal(first, second) {
			t.Fatalf("Marshal(Parse(Marshal(x))) != Marshal(x):\n%s", diffLines(string(first), string(second)))
		}
		if c := doc.Clone().Marshal(); !bytes.Equal(c, first) {
			t.Fatal("Clone changed the document")
		}
		// sharing never shows in the bytes: a fork, and its source after
		// the fork copied every object it shares
		f := doc.Fork()
		claim(f)
		if c := f.Marshal(); !bytes.Equal(c, first) {
			t.Fatal("Fork changed the document")
		}
		if c := doc.Marshal(); !bytes.Equal(c, first) {
			t.Fatal("Fork changed its source")
		}
	})
}

// FuzzLoad: the upgrade chain never panics on arbitrary documents, leaves
// its input alone on error, and is idempotent once it succeeded.
func FuzzLoad(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseAny(raw)
		if err != nil {
			return
		}
		before, err := MarshalAny(m)
		if err != nil {
			t.Fatal(err)
		}
		opts := UpgradeOptions{Gateway: node1, Now: t1}
		if _, err := UpgradeRaw(m, opts); err != nil {
			if after := mustMarshal(m); !bytes.Equal(before, after) {
				t.Fatal("UpgradeRaw modified its input on error")
			}
			return
		}
		if changed, err := UpgradeRaw(m, opts); err != nil || changed {
			t.Fatalf("second UpgradeRaw: changed=%v err=%v", changed, err)
		}
		if doc, err := FromAny(m); err == nil {
			_ = doc.Validate()
			_ = doc.Marshal()
		}
	})
}
