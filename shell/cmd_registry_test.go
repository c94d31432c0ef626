package shell

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestCommandRegistry checks the 46 ceph-iscsi node/command pairs of spec §10.2 (goto, the
// 47th, is the shell's built-in) are registered once each, with help.
func TestCommandRegistry(t *testing.T) {
	want := map[Kind][]string{
		KindRoot:            {"export", "info"},
		KindClusters:        {"refresh"},
		KindCluster:         {"info", "refresh"},
		KindPool:            {"info"},
		KindTopology:        {"info"},
		KindDisks:           {"attach", "create", "delete", "detach", "info", "reconfigure", "resize"},
		KindDisk:            {"info", "reconfigure", "resize", "snapshot"},
		KindTargets:         {"clearconfig", "create", "delete", "discovery_auth"},
		KindTarget:          {"auth", "info", "reconfigure"},
		KindTargetDisks:     {"add", "delete"},
		KindTargetDisk:      {"info"},
		KindGateways:        {"create", "delete", "info", "refresh"},
		KindGateway:         {"info", "refresh"},
		KindHostGroups:      {"create", "delete"},
		KindHostGroup:       {"disk", "host"},
		KindHostGroupMember: {"info"},
		KindClients:         {"auth", "create", "delete"},
		KindClient:          {"auth", "disk", "info"},
		KindMappedLun:       {"info"},
	}
	total := 0
	for _, kind := range []Kind{KindRoot, KindClusters, KindCluster, KindPools, KindPool, KindTopology, KindDisks,
		KindDiskPool, KindDisk, KindTargets, KindTarget, KindTargetDisks, KindTargetDisk, KindGateways, KindGateway,
		KindHostGroups, KindHostGroup, KindHostGroupMember, KindClients, KindClient, KindMappedLun} {
		var names []string
		for _, c := range CommandsOf(kind) {
			names = append(names, c.Name)
			if c.Summary == "" || c.Help == "" || c.Run == nil {
				t.Errorf("%s %s: summary, help and run are required", kind, c.Name)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, want[kind]) {
			t.Errorf("%s: commands %v, want %v", kind, names, want[kind])
		}
		total += len(names)
	}
	if total != 46 {
		t.Errorf("%d commands, want 46 (+ goto)", total)
	}
}

// TestControlsJSON compares the controls form field with Python's json.dumps, which
// upstream's gwcli sends.
func TestControlsJSON(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 (a build dependency) is needed as the oracle: %v", err)
	}
	values := []string{"", "128", "yes", `a"b\c`, "tab\there\nnl", "é ü 日本 \U0001F600", "\x7f\x01", "<&>"}
	in, _ := json.Marshal(values)
	out, err := exec.Command(python, "-c", "import json,sys\nfor v in json.loads(sys.argv[1]): print(json.dumps({'max_data_area_mb': v}))", string(in)).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(values) {
		t.Fatalf("python printed %d lines for %d values", len(lines), len(values))
	}
	for i, v := range values {
		if got := controlsJSON("max_data_area_mb", v); got != lines[i] {
			t.Errorf("%q: got %s, python %s", v, got, lines[i])
		}
	}
}

func TestPyTitle(t *testing.T) {
	for in, want := range map[string]string{"overcommit PCT": "Overcommit Pct", "size h": "Size H",
		"gateway ip list": "Gateway Ip List", "2ndary x": "2Ndary X"} {
		if got := pyTitle(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	if !strings.HasPrefix(infoText([]infoField{{"a", infoDict{}}}), "A .. UNDEFINED\n\n") {
		t.Error("an empty dict prints UNDEFINED and a blank line, as upstream")
	}
}
