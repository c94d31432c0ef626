package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The reference file was written by upstream's Python gateway; reproducing it
// byte for byte proves the key order, indentation, separators and number
// and string formatting.
func TestGoldenUpstreamBytes(t *testing.T) {
	raw := readTestdata(t, "upstream-gateway.conf.json")
	doc, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Marshal(); !bytes.Equal(got, raw) {
		t.Errorf("Parse+Marshal differs from upstream bytes:\n%s", diffLines(string(raw), string(got)))
	}
	m, err := ParseAny(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalAny(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Errorf("ParseAny+MarshalAny differs from upstream bytes")
	}
	if doc.Disks["rbd/disk2"].Owner == nil || *doc.Disks["rbd/disk2"].Owner != "igw1.fullstack.test" {
		t.Errorf("owner not decoded: %+v", doc.Disks["rbd/disk2"])
	}
}

// Expected values come from Python 3: json.dumps(s) (ensure_ascii=True).
func TestStringEscaping(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`quote"back\slash`, `"quote\"back\\slash"`},
		{"slash/<tag>&amp;", `"slash/<tag>&amp;"`},
		{"nl\ncr\rtab\tbs\bff\f", `"nl\ncr\rtab\tbs\bff\f"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f\u007f"`},
		{"café", `"caf\u00e9"`},
		{"\u00e9\u0080\u009f\u00ff", `"\u00e9\u0080\u009f\u00ff"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"日本", `"\u65e5\u672c"`},
		{"\U0001F600", `"\ud83d\ude00"`},
		{"a\U00010000z\U0010FFFF", `"a\ud800\udc00z\udbff\udfff"`},
		{"\ufffd", `"\ufffd"`},
		{"'single'", `"'single'"`},
		// the edges of what is copied as is
		{" ~!", `" ~!"`},
		{"a\x7fz", `"a\u007fz"`},
		{"a\x1fz", `"a\u001fz"`},
		{"a\u0080z", `"a\u0080z"`},
		// Not producible by Python; Go callers get U+FFFD.
		{"bad\xffbyte", `"bad\ufffdbyte"`},
	}
	for _, c := range cases {
		got, err := MarshalAny(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("MarshalAny(%q) = %s, want %s", c.in, got, c.want)
		}
		if !strings.Contains(c.in, "\xff") {
			var back string
			if err := json.Unmarshal(got, &back); err != nil || back != c.in {
				t.Errorf("%s does not decode back to %q: %q %v", got, c.in, back, err)
			}
		}
	}
}

// Expected values come from Python 3: json.dumps(float).
func TestFloatFormat(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {1, "1.0"}, {1.5, "1.5"}, {0.1, "0.1"},
		{100, "100.0"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {1.5e16, "1.5e+16"},
		{123456789.125, "123456789.125"}, {0.0001, "0.0001"}, {0.00001, "1e-05"},
		{1.5e-5, "1.5e-05"}, {1e22, "1e+22"}, {1e-7, "1e-07"}, {2.5e-300, "2.5e-300"},
		{1.7976931348623157e308, "1.7976931348623157e+308"}, {5e-324, "5e-324"},
		{3.14159, "3.14159"}, {-2.5, "-2.5"},
	}
	for _, c := range cases {
		got, err := MarshalAny(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("MarshalAny(%v) = %s, want %s", c.in, got, c.want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := MarshalAny(f); err == nil {
			t.Errorf("MarshalAny(%v) succeeded", f)
		}
	}
}

// Expected bytes come from Python 3:
// json.dumps(v, sort_keys=True, indent=4, separators=(',', ': ')).
func TestLayout(t *testing.T) {
	v := map[string]any{
		"b": []any{}, "a": map[string]any{}, "c": []any{1, map[string]any{"x": nil}},
		"é": 1, "z": true, "Z": false,
	}
	want := "{\n    \"Z\": false,\n    \"a\": {},\n    \"b\": [],\n    \"c\": [\n        1,\n        {\n" +
		"            \"x\": null\n        }\n    ],\n    \"z\": true,\n    \"\\u00e9\": 1\n}"
	got, err := MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestNumbersKeepTheirText(t *testing.T) {
	raw := `{"big": 123456789012345678901234567890, "exp": 1E2, "frac": 1.50, "neg": -0, "small": 7}`
	m, err := ParseAny([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalAny(m)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n    \"big\": 123456789012345678901234567890,\n    \"exp\": 1E2,\n    \"frac\": 1.50,\n" +
		"    \"neg\": -0,\n    \"small\": 7\n}"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := MarshalAny(json.Number("12abc")); err == nil {
		t.Error("invalid json.Number accepted")
	}
}

func TestMarshalAnyGoTypes(t *testing.T) {
	type level int
	v := map[string]any{
		"ints":    []int{1, 2},
		"named":   level(3),
		"strmap":  map[string]int{"b": 2, "a": 1},
		"u":       uint8(9),
		"ptr":     (*int)(nil),
		"nilList": []int(nil),
	}
	want := "{\n    \"ints\": [\n        1,\n        2\n    ],\n    \"named\": 3,\n    \"nilList\": [],\n" +
		"    \"ptr\": null,\n    \"strmap\": {\n        \"a\": 1,\n        \"b\": 2\n    },\n    \"u\": 9\n}"
	got, err := MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := MarshalAny(map[string]any{"ch": make(chan int)}); err == nil {
		t.Error("channel accepted")
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ name, raw, want string }{
		{"empty", "", "empty document"},
		{"blank", " \n ", "empty document"},
		{"not json", "hello", "invalid JSON"},
		{"truncated", `{"version": 11`, "invalid JSON"},
		{"trailing", `{"version": 11} {}`, "invalid JSON"},
		{"array", `[1, 2]`, "document is a JSON array, expected object"},
		{"string", `"x"`, "document is a JSON string, expected object"},
		{"null", `null`, "document is a JSON null, expected object"},
		{"bad utf8", "{\"a\": \"\xff\"}", "not valid UTF-8"},
		{"no version", `{"epoch": 1}`, "version: missing"},
		{"old version", `{"version": 9}`, "version: document is version 9 and needs an upgrade"},
		{"epoch type", `{"version": 11, "epoch": "x"}`, "epoch: expected integer, got string"},
		{"epoch float", `{"version": 11, "epoch": 1.5}`, "epoch: expected integer, got number"},
		{"disks type", `{"version": 11, "disks": []}`, "disks: expected object, got array"},
		{"target disks", `{"version": 11, "targets": {"iqn.x:y": {"disks": []}}}`,
			`targets["iqn.x:y"].disks: expected object, got array`},
		{"lun id", `{"version": 11, "targets": {"iqn.x:y": {"disks": {"rbd/a": {"lun_id": "0"}}}}}`,
			`targets["iqn.x:y"].disks["rbd/a"].lun_id: expected integer, got string`},
		{"owner", `{"version": 11, "disks": {"rbd/a": {"owner": 1}}}`,
			`disks["rbd/a"].owner: expected string, got number`},
		{"ip list item", `{"version": 11, "targets": {"t": {"ip_list": ["1.2.3.4", 5]}}}`,
			`targets["t"].ip_list[1]: expected string, got number`},
		{"client auth", `{"version": 11, "targets": {"t": {"clients": {"c": {"auth": {"password_encryption_enabled": "no"}}}}}}`,
			`targets["t"].clients["c"].auth.password_encryption_enabled: expected boolean, got string`},
		{"gateway null", `{"version": 11, "gateways": {"g": null}}`, `gateways["g"]: expected object, got null`},
		{"upgraded", `{"version": 11, "gateways_upgraded": "g"}`, `gateways_upgraded: expected array, got string`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.raw))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", c.raw)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	var fe *FieldError
	_, err := Parse([]byte(`{"version": 11, "epoch": "x"}`))
	if !errors.As(err, &fe) || fe.Path != "epoch" {
		t.Errorf("error %v is not a *FieldError for epoch", err)
	}
}

// diffLines shows the first differing line, enough to locate a format bug.
func diffLines(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + itoa(i+1) + ":\nwant: " + w + "\ngot:  " + g
		}
	}
	return "(equal)"
}

func itoa(i int) string { return string(mustMarshal(i)) }

func mustMarshal(v any) []byte {
	b, err := MarshalAny(v)
	if err != nil {
		panic(err)
	}
	return b
}
