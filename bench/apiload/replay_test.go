package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseServerTiming(t *testing.T) {
	got := parseServerTiming("version;dur=2.5, lock;dur=1.000, cache;desc=hit, total;dur=9")
	want := []stageRecord{{name: "version", ms: 2.5}, {name: "lock", ms: 1}, {name: "total", ms: 9}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := parseServerTiming(""); len(got) != 0 {
		t.Errorf("no header: %+v", got)
	}
}

// The stage lines of a -replay file are skipped by -summary, and printed
// per call as means by printStages, over every call of the segment.
func TestStageRecords(t *testing.T) {
	f := filepath.Join(t.TempDir(), "replay.txt")
	body := "call client 4 0.500000\nstage client 4 lock 10.000\nstage client 4 total 30.000\n" +
		"call client 8 0.700000\nstage client 8 lock 20.000\nstage client 8 total 50.000\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, _, err := readRecords(f)
	if err != nil || len(recs) != 2 {
		t.Fatalf("readRecords: %+v %v", recs, err)
	}
	var b bytes.Buffer
	printStages(&b, []stageRecord{
		{call: "client", disks: 4, name: "lock", ms: 10}, {call: "client", disks: 4, name: "total", ms: 30},
		{call: "client", disks: 8, name: "lock", ms: 20}, {call: "client", disks: 8, name: "total", ms: 50},
		{call: "client", disks: 8, name: "version", ms: 8},
		{call: "client", disks: 12, name: "lock", ms: 99},
	}, 1, 8)
	if !strings.Contains(b.String(), "client      lock=15.0 total=40.0 version=4.0(1/2)") {
		t.Errorf("printStages:\n%s", b.String())
	}
}
