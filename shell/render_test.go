package shell

import (
	"os"
	"strings"
	"testing"

	"ceph-iscsi/config"
)

func ptr[T any](v T) *T { return &v }

const gib = uint64(1) << 30

// referenceSnapshot is the state upstream's gwcli printed in
// /work/shared/reference/upstream-gwcli-ls.txt (a copy lives in testdata).
func referenceSnapshot() *Snapshot {
	const tgt = "iqn.2003-01.com.example.iscsi-gw:test"
	const gw = "igw1.fullstack.test"
	const cli = "iqn.1994-05.com.redhat:fullstack-client"
	doc := &config.Doc{
		Disks:    map[string]*config.Disk{"rbd/disk2": {Pool: "rbd", Image: "disk2", Owner: ptr(gw)}},
		Gateways: map[string]*config.Gateway{gw: {}},
		Targets: map[string]*config.Target{tgt: {
			Disks:   map[string]config.LunRef{"rbd/disk2": {LunID: 0}},
			Portals: map[string]*config.Portal{gw: {PortalIPAddresses: []string{"192.0.2.10"}}},
			Clients: map[string]*config.Client{cli: {
				Auth: config.Auth{Username: "fullstackuser", Password: "secret"},
				Luns: map[string]config.LunRef{"rbd/disk2": {LunID: 0}},
			}},
			Groups:     map[string]*config.Group{},
			ACLEnabled: true,
		}},
	}
	return &Snapshot{
		Config:  doc,
		Cluster: ClusterFacts{Name: "ceph", Health: "HEALTH_OK", OSDs: 1, MONs: 1},
		Pools: map[string]PoolFacts{
			"device_health_metrics": {Name: "device_health_metrics", Replicated: true, Size: 1, MaxAvail: 2035872128},
			"rbd":                   {Name: "rbd", Replicated: true, Size: 1, MaxAvail: 2035872128, Used: 4197648},
		},
		Images:     map[string]ImageFacts{"rbd/disk2": {Size: gib}},
		Gateways:   map[string]GatewayState{gw: GatewayUp},
		DiskStatus: map[string]string{"rbd/disk2": "Online"},
		LoggedIn:   map[string]bool{},
	}
}

// TestRenderReference renders the reference state and compares it line by line with
// upstream's output (its first line is configshell's warning about a missing prefs file,
// not part of ls).
func TestRenderReference(t *testing.T) {
	raw, err := os.ReadFile("testdata/upstream-gwcli-ls.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.SplitAfter(string(raw), "\n")
	if strings.HasPrefix(want[0], "Warning:") {
		want = want[1:]
	}
	got := strings.SplitAfter(Render(Build(referenceSnapshot()), "/", 0, 200), "\n")
	compareLines(t, got, want)
}

func compareLines(t *testing.T, got, want []string) {
	t.Helper()
	for len(want) > 0 && want[len(want)-1] == "" {
		want = want[:len(want)-1]
	}
	for len(got) > 0 && got[len(got)-1] == "" {
		got = got[:len(got)-1]
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
		}
	}
}

func TestRenderWidthAndDepth(t *testing.T) {
	root := Build(referenceSnapshot())
	out := Render(root, "/", 1, 60)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("depth 1: %d lines, want the root and its 3 children:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if len(l) != 60 {
			t.Errorf("width 60: line %q is %d long", l, len(l))
		}
	}
	if lines[1] != "  o- cluster ................................. [Clusters: 1]" {
		t.Errorf("line 2 = %q", lines[1])
	}
	// A summary longer than the width gets no dots but keeps its single spaces.
	narrow := Render(root, "/iscsi-targets", 0, 20)
	if !strings.HasPrefix(narrow, "o- iscsi-targets  [DiscoveryAuth: None, Targets: 1]\n") {
		t.Errorf("narrow render starts %q", strings.SplitN(narrow, "\n", 2)[0])
	}
	if Render(root, "/nowhere", 0, 80) != "" {
		t.Error("an unknown path rendered something")
	}
}

func TestNameOrder(t *testing.T) {
	n := &Node{Name: "x"}
	for _, name := range []string{"lun 10", "lun 2", "disk", "lun 1", "disk01", "a"} {
		n.add(&Node{Name: name})
	}
	var got []string
	for _, c := range sortedChildren(n) {
		got = append(got, c.Name)
	}
	want := "a,disk,disk01,lun 1,lun 2,lun 10"
	if strings.Join(got, ",") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}
