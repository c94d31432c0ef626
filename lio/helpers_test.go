package lio

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// confDoc is the subset of the v11 gateway.conf document (spec 3.2) the
// tests feed to Build: the same mapping the daemon's adapter performs.
type confDoc struct {
	DiscoveryAuth confAuth `json:"discovery_auth"`
	Disks         map[string]struct {
		Pool, Image, WWN, Owner string
		BackstoreObjectName     string         `json:"backstore_object_name"`
		Controls                map[string]any `json:"controls"`
	} `json:"disks"`
	Targets map[string]struct {
		ACLEnabled bool           `json:"acl_enabled"`
		Auth       confAuth       `json:"auth"`
		Controls   map[string]any `json:"controls"`
		IPList     []string       `json:"ip_list"`
		Portals    map[string]struct {
			PortalIPAddresses []string `json:"portal_ip_addresses"`
		} `json:"portals"`
		Disks map[string]struct {
			LunID int `json:"lun_id"`
		} `json:"disks"`
		Clients map[string]struct {
			Auth confAuth `json:"auth"`
			LUNs map[string]struct {
				LunID int `json:"lun_id"`
			} `json:"luns"`
		} `json:"clients"`
	} `json:"targets"`
}

type confAuth struct {
	Username       string `json:"username"`
	Password       string `json:"password"`
	MutualUsername string `json:"mutual_username"`
	MutualPassword string `json:"mutual_password"`
}

func (a confAuth) spec() AuthSpec {
	return AuthSpec{a.Username, Secret(a.Password), a.MutualUsername, Secret(a.MutualPassword)}
}

const testDiskSize = 1 << 30

func specFromConfig(t testing.TB, file, gateway, backstore string) Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var doc confDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	spec := Spec{
		Gateway: gateway, Backstore: backstore, Settings: DefaultSettings(),
		Disks: map[string]DiskSpec{}, Targets: map[string]TargetSpec{},
		DiscoveryAuth: doc.DiscoveryAuth.spec(), ManageDiscoveryAuth: true,
	}
	for i, id := range sortedKeys(doc.Disks) {
		d := doc.Disks[id]
		spec.Disks[id] = DiskSpec{Pool: d.Pool, Image: d.Image, WWN: d.WWN, Owner: d.Owner,
			BackstoreObjectName: d.BackstoreObjectName, Controls: d.Controls,
			Size: testDiskSize, DevicePath: fmt.Sprintf("/dev/rbd%d", i)}
	}
	for iqn, tc := range doc.Targets {
		ts := TargetSpec{ACLEnabled: tc.ACLEnabled, Auth: tc.Auth.spec(), Controls: tc.Controls,
			IPList: tc.IPList, Portals: map[string][]string{}, Disks: map[string]int{}, Clients: map[string]ClientSpec{}}
		for gw, p := range tc.Portals {
			ts.Portals[gw] = p.PortalIPAddresses
		}
		for id, d := range tc.Disks {
			ts.Disks[id] = d.LunID
		}
		for ini, c := range tc.Clients {
			cs := ClientSpec{Auth: c.Auth.spec(), LUNs: map[string]int{}}
			for id, l := range c.LUNs {
				cs.LUNs[id] = l.LunID
			}
			ts.Clients[ini] = cs
		}
		spec.Targets[iqn] = ts
	}
	return spec
}

func mustBuild(t testing.TB, spec Spec) State {
	t.Helper()
	st, err := Build(spec)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return st
}

func newEmu(t testing.TB) FS {
	t.Helper()
	f, err := NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustObserve(t testing.TB, f FS) State {
	t.Helper()
	st, err := Observe(f)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return st
}

// reconcile observes, plans and applies once, then checks the fixed point.
func reconcile(t testing.TB, f FS, desired State) Plan {
	t.Helper()
	plan := NewPlan(mustObserve(t, f), desired)
	if _, err := Apply(t.Context(), f, plan); err != nil {
		t.Fatalf("Apply: %v\nplan:\n%s", err, plan)
	}
	if again := NewPlan(mustObserve(t, f), desired); !again.Empty() {
		t.Fatalf("not a fixed point; second plan:\n%s\nfirst plan:\n%s", again, plan)
	}
	return plan
}

// emulatedStats matches the statistics and session files the emulation
// seeds for ReadStatistics (see statsDefaults): kernel-generated, they are
// left out of renderings, as the reference comparison leaves them out.
var emulatedStats = regexp.MustCompile(`/(statistics|fabric_statistics)(/|$)|/acls/[^/]+/info$`)

var hbaIndexRe = regexp.MustCompile(`core/([a-z_]+?)_[0-9]+(/|$)`)

// render dumps the tree under target/ as sorted text: "d path", "f path =
// value", "l path -> target". HBA indexes are replaced by '*' because they
// depend on history (rtslib reuses the lowest free index).
func render(t testing.TB, f FS) string { return renderTree(t, f, true) }

// renderTree is render; canonical=false keeps HBA indexes, link names and
// "NULL" values as they are.
func renderTree(t testing.TB, f FS, canonical bool) string {
	t.Helper()
	var lines []string
	canon := func(s string) string {
		if !canonical {
			return s
		}
		return hbaIndexRe.ReplaceAllString(s, "core/${1}_*$2")
	}
	err := filepath.WalkDir(f.abs(targetDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(f.root, p)
		r = filepath.ToSlash(r)
		if emulatedStats.MatchString(r) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tgt, err := f.readlink(r)
			if err != nil {
				return err
			}
			if canonical {
				r = path2dir(r) + "/*"
			}
			lines = append(lines, "l "+canon(r)+" -> "+canon(tgt))
		case d.IsDir():
			lines = append(lines, "d "+canon(r))
		default:
			v, err := f.read(r)
			if err != nil {
				return err
			}
			if v == "NULL" && canonical { // the kernel's "unset"
				v = ""
			}
			lines = append(lines, "f "+canon(r)+" = "+canon(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s mismatch (-want +got):\n%s", name, lineDiff(string(want), got))
	}
}

// lineDiff is a small unified-ish diff, enough to read a golden mismatch.
func lineDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	inA, inB := map[string]int{}, map[string]int{}
	for _, l := range as {
		inA[l]++
	}
	for _, l := range bs {
		inB[l]++
	}
	var out []string
	for _, l := range as {
		if inB[l] == 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if inA[l] == 0 {
			out = append(out, "+ "+l)
		}
	}
	if len(out) == 0 {
		return "(same lines, different order)"
	}
	return strings.Join(out, "\n")
}
