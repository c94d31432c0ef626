package settings

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestNormalizeControlsUpstream replays upstream's test/test_settings.py.
func TestNormalizeControlsUpstream(t *testing.T) {
	ok := []struct {
		raw  any
		key  string
		want any
	}{
		{3, "dataout_timeout", 3},
		{"3", "dataout_timeout", 3},
		{"Yes", "immediate_data", true},
		{"yes", "immediate_data", true},
		{true, "immediate_data", true},
		{"True", "immediate_data", true},
		{"true", "immediate_data", true},
		{"1", "immediate_data", true},
		{"No", "immediate_data", false},
		{"no", "immediate_data", false},
		{false, "immediate_data", false},
		{"False", "immediate_data", false},
		{"false", "immediate_data", false},
		{"0", "immediate_data", false},
	}
	for _, c := range ok {
		got, err := NormalizeTargetControls(map[string]any{c.key: c.raw})
		if err != nil || !maps.Equal(got, Controls{c.key: c.want}) {
			t.Errorf("%s=%#v: got %v, %v; want %v", c.key, c.raw, got, err, c.want)
		}
	}
	bad := []struct {
		raw  any
		key  string
		want string
	}{
		{1, "dataout_timeout", "expected integer >= 2 for dataout_timeout"},
		{64, "dataout_timeout", "expected integer <= 60 for dataout_timeout"},
		{"64", "dataout_timeout", "expected integer <= 60 for dataout_timeout"},
		{"abc", "dataout_timeout", "expected integer for dataout_timeout"},
		{"abc", "immediate_data", "expected yes or no for immediate_data"},
		{123, "immediate_data", "expected yes or no for immediate_data"},
	}
	for _, c := range bad {
		_, err := NormalizeTargetControls(map[string]any{c.key: c.raw})
		var ce *ControlError
		if err == nil || err.Error() != c.want || !errors.As(err, &ce) || ce.Key != c.key {
			t.Errorf("%s=%#v: error %v, want %q", c.key, c.raw, err, c.want)
		}
	}

	// The list half of test_settings.py runs normalize_controls over
	// SYS_SETTINGS; here that rule is the file's list type.
	s := mustParse(t, "[config]\ntrusted_ip_list = 10.1.1.1, 10.1.1.2 ,  10.1.1.3\n")
	if !slices.Equal(s.TrustedIPList, []string{"10.1.1.1", "10.1.1.2", "10.1.1.3"}) {
		t.Errorf("trusted_ip_list = %q", s.TrustedIPList)
	}
}

func TestNormalizeControlsJSONTypes(t *testing.T) {
	cases := []struct {
		json string
		want Controls
		err  string
	}{
		{`{"dataout_timeout": 30, "immediate_data": "no"}`, Controls{"dataout_timeout": 30, "immediate_data": false}, ""},
		{`{"dataout_timeout": 30.0}`, Controls{"dataout_timeout": 30}, ""},
		{`{"dataout_timeout": 3e1}`, Controls{"dataout_timeout": 30}, ""},
		{`{"dataout_timeout": " 30 "}`, Controls{"dataout_timeout": 30}, ""},
		{`{"dataout_timeout": 30.5}`, nil, "expected integer for dataout_timeout"},
		{`{"dataout_timeout": 1e300}`, nil, "expected integer <= 60 for dataout_timeout"},
		{`{"dataout_timeout": -1e300}`, nil, "expected integer >= 2 for dataout_timeout"},
		{`{"dataout_timeout": true}`, nil, "expected integer for dataout_timeout"},
		{`{"dataout_timeout": [1]}`, nil, "expected integer for dataout_timeout"},
		{`{"dataout_timeout": "", "cmdsn_depth": null}`, Controls{"dataout_timeout": nil, "cmdsn_depth": nil}, ""},
		{`{"immediate_data": 1}`, Controls{"immediate_data": true}, ""},
		{`{"immediate_data": 0}`, Controls{"immediate_data": false}, ""},
		{`{"immediate_data": 1.0}`, nil, "expected yes or no for immediate_data"},
		{`{"immediate_data": 2}`, nil, "expected yes or no for immediate_data"},
		{`{"immediate_data": {}}`, nil, "expected yes or no for immediate_data"},
		{`{"max_data_area_mb": 8}`, nil, `Supported controls: dataout_timeout,nopin_response_timeout,nopin_timeout,cmdsn_depth,immediate_data,initial_r2t,max_outstanding_r2t,first_burst_length,max_burst_length,max_recv_data_segment_length,max_xmit_data_segment_length`},
		{`[1]`, nil, "expected a JSON object"},
		{`{"a": 1} x`, nil, "invalid JSON: data after the object"},
		{`{"a": 1}]`, nil, "invalid JSON: data after the object"},
		{`{`, nil, "invalid JSON: unexpected EOF"},
		{`{}`, Controls{}, ""},
	}
	for _, c := range cases {
		got, err := ParseTargetControls(c.json)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: error %v, want %q", c.json, err, c.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, c.want) {
			t.Errorf("%s: got %#v, %v; want %#v", c.json, got, err, c.want)
		}
	}
	// Go numbers as a caller may build them.
	got, err := NormalizeTargetControls(map[string]any{"cmdsn_depth": int64(64), "max_outstanding_r2t": uint8(2)})
	if err != nil || got["cmdsn_depth"] != 64 || got["max_outstanding_r2t"] != 2 {
		t.Errorf("Go ints: %v %v", got, err)
	}
	// The first error is deterministic: keys are checked in sorted order.
	for range 5 {
		_, err := NormalizeTargetControls(map[string]any{"nopin_timeout": "x", "cmdsn_depth": "y", "initial_r2t": "z"})
		if err == nil || err.Error() != "expected integer for cmdsn_depth" {
			t.Fatalf("first error %v", err)
		}
	}
}

func TestDiskControls(t *testing.T) {
	got, err := ParseDiskControls(`{"max_data_area_mb": "128", "qfull_timeout": 0, "osd_op_timeout": "", "hw_max_sectors": 8192}`)
	if err != nil || !maps.Equal(got, Controls{"max_data_area_mb": 128, "qfull_timeout": 0, "osd_op_timeout": nil, "hw_max_sectors": 8192}) {
		t.Errorf("got %v, %v", got, err)
	}
	for raw, want := range map[string]string{
		`{"max_data_area_mb": 0}`:    "expected integer >= 1 for max_data_area_mb",
		`{"hw_max_sectors": 8193}`:   "expected integer <= 8192 for hw_max_sectors",
		`{"osd_op_timeout": "1.5"}`:  "expected integer for osd_op_timeout",
		`{"dataout_timeout": 20}`:    `Supported controls: max_data_area_mb,qfull_timeout,osd_op_timeout,hw_max_sectors`,
		`{"backstore": "user:rbd"}`:  `Supported controls: max_data_area_mb,qfull_timeout,osd_op_timeout,hw_max_sectors`,
		`{"qfull_timeout": "-1"}`:    "expected integer >= 0 for qfull_timeout",
		`{"qfull_timeout": "6_0_0"}`: "", // Python's int() takes underscores
	} {
		_, err := ParseDiskControls(raw)
		if (want == "" && err != nil) || (want != "" && (err == nil || err.Error() != want)) {
			t.Errorf("%s: error %v, want %q", raw, err, want)
		}
	}
	if !slices.Equal(DiskControlNames(), []string{"max_data_area_mb", "qfull_timeout", "osd_op_timeout", "hw_max_sectors"}) {
		t.Errorf("DiskControlNames() = %q", DiskControlNames())
	}
}

func TestSplitAndLimits(t *testing.T) {
	c := Controls{"dataout_timeout": 3, "nopin_response_timeout": 4, "nopin_timeout": 5, "cmdsn_depth": 6,
		"immediate_data": false, "max_burst_length": 1024}
	tpg, client := c.Split()
	if !maps.Equal(tpg, Controls{"immediate_data": false, "max_burst_length": 1024}) ||
		!maps.Equal(client, Controls{"dataout_timeout": 3, "nopin_response_timeout": 4, "nopin_timeout": 5, "cmdsn_depth": 6}) {
		t.Errorf("Split: %v / %v", tpg, client)
	}
	if len(TargetControlNames()) != 11 || IsClientControl("immediate_data") || !IsClientControl("cmdsn_depth") || IsClientControl("bogus") {
		t.Error("control name helpers")
	}

	limits := map[string]ControlLimit{}
	for _, l := range TargetControlLimits() {
		limits[l.Name] = l
	}
	js, _ := json.Marshal(limits)
	for _, want := range []string{`"dataout_timeout":{"max":60,"min":2,"type":"int"}`, `"immediate_data":{"type":"bool"}`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("limits JSON %s lacks %s", js, want)
		}
	}
	js, _ = json.Marshal(DiskControlLimits())
	if !strings.Contains(string(js), `{"max":600,"min":0,"type":"int"}`) {
		t.Errorf("disk limits JSON %s lacks min 0", js)
	}

	s := mustParse(t, "[target]\ncmdsn_depth = 64\nimmediate_data = no\nhw_max_sectors = 512\n")
	js, _ = json.Marshal(s.TargetDefaults())
	if string(js) != `{"cmdsn_depth":64,"dataout_timeout":20,"first_burst_length":262144,"immediate_data":false,"initial_r2t":true,"max_burst_length":524288,"max_outstanding_r2t":1,"max_recv_data_segment_length":262144,"max_xmit_data_segment_length":262144,"nopin_response_timeout":5,"nopin_timeout":5}` {
		t.Errorf("TargetDefaults JSON %s", js)
	}
	if !maps.Equal(s.DiskDefaults(), Controls{"max_data_area_mb": 8, "qfull_timeout": 5, "osd_op_timeout": 30, "hw_max_sectors": 512}) {
		t.Errorf("DiskDefaults %v", s.DiskDefaults())
	}
}

func TestMergeAndEffective(t *testing.T) {
	// The global value comes from the settings file, not the built-in
	// default: here cmdsn_depth's global value is 64.
	s := mustParse(t, "[target]\ncmdsn_depth = 64\n")
	stored := map[string]any{"nopin_timeout": json.Number("7"), "immediate_data": false, "legacy_key": 1}
	changes, err := ParseTargetControls(`{"cmdsn_depth": 64, "dataout_timeout": "30", "nopin_timeout": "", "initial_r2t": "no"}`)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := s.MergeTargetControls(stored, changes)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"immediate_data": false, "legacy_key": 1, "dataout_timeout": 30, "initial_r2t": false}
	if !maps.Equal(merged, want) {
		t.Errorf("merged = %v, want %v", merged, want)
	}
	if len(stored) != 3 || stored["nopin_timeout"] != json.Number("7") {
		t.Errorf("Merge modified its input: %v", stored)
	}
	// Setting a value back to the global one drops the override.
	merged, _ = s.MergeTargetControls(merged, Controls{"dataout_timeout": 20})
	if _, ok := merged["dataout_timeout"]; ok {
		t.Errorf("override equal to the global value kept: %v", merged)
	}
	if _, err := s.MergeTargetControls(nil, Controls{"hw_max_sectors": 5}); err == nil {
		t.Error("Merge accepted a disk control for a target")
	}
	if m, err := s.MergeDiskControls(nil, Controls{"hw_max_sectors": 1024, "qfull_timeout": 9}); err != nil || !maps.Equal(m, map[string]any{"qfull_timeout": 9}) {
		t.Errorf("MergeDiskControls = %v, %v", m, err)
	}

	stored = map[string]any{"nopin_timeout": json.Number("7"), "immediate_data": "Yes", "cmdsn_depth": 64.0,
		"initial_r2t": false, "dataout_timeout": nil, "legacy_key": "x"}
	values, err := s.TargetControlValues(stored)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, v := range values {
		texts = append(texts, v.Name+"="+v.String())
	}
	wantTexts := []string{"dataout_timeout=20", "nopin_response_timeout=5", "nopin_timeout=7 (override)",
		"cmdsn_depth=64", "immediate_data=yes", "initial_r2t=no (override)", "max_outstanding_r2t=1",
		"first_burst_length=262144", "max_burst_length=524288", "max_recv_data_segment_length=262144",
		"max_xmit_data_segment_length=262144"}
	if !slices.Equal(texts, wantTexts) {
		t.Errorf("values:\n got %q\nwant %q", texts, wantTexts)
	}
	eff, err := s.EffectiveTarget(stored)
	if err != nil || eff.NopinTimeout != 7 || eff.InitialR2T || !eff.ImmediateData || eff.CmdsnDepth != 64 || eff.DataoutTimeout != 20 {
		t.Errorf("EffectiveTarget = %+v, %v", eff, err)
	}
	disk, err := s.EffectiveDisk(map[string]any{"max_data_area_mb": 128.0})
	if err != nil || disk != (DiskSettings{MaxDataAreaMB: 128, QfullTimeout: 5, OsdOpTimeout: 30, HwMaxSectors: 1024}) {
		t.Errorf("EffectiveDisk = %+v, %v", disk, err)
	}
	if _, err := s.EffectiveTarget(map[string]any{"cmdsn_depth": 999}); err == nil ||
		err.Error() != "stored control: expected integer <= 512 for cmdsn_depth" {
		t.Errorf("bad stored control: %v", err)
	}
	if v, _ := s.DiskControlValues(nil); len(v) != 4 || v[0].Override {
		t.Errorf("DiskControlValues(nil) = %v", v)
	}
}
