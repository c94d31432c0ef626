package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseProcs(t *testing.T) {
	ps, err := parseProcs("daemon=12, ceph-osd=34")
	if err != nil || len(ps) != 3 || ps[0] != (proc{"apiload", "self"}) || ps[1] != (proc{"daemon", "12"}) || ps[2] != (proc{"ceph-osd", "34"}) {
		t.Fatalf("%+v %v", ps, err)
	}
	for _, bad := range []string{"daemon", "=12", "daemon=x"} {
		if _, err := parseProcs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The CPU of this process is read whole and by thread name: its main
// thread carries the test binary's name.
func TestCPUTicks(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if cpuTicks("self") < 0 {
		t.Fatal("cpuTicks(self) unreadable")
	}
	if cpuTicks("999999999") != -1 {
		t.Error("a missing process is not -1")
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := threadTicks("self")[strings.TrimSpace(string(comm))]; !ok {
		t.Errorf("threadTicks(self) has no thread named %q", strings.TrimSpace(string(comm)))
	}
}
