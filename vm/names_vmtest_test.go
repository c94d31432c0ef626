//go:build vmtest

package vm

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
)

// Issue 8 item 1 against the real configfs: hostile names, through package
// lio directly and through the api daemon, change nothing outside
// /sys/kernel/config/target.

const (
	namesGW     = "vmgw"
	namesTarget = "iqn.2003-01.com.example.iscsi-gw:names"
	namesClient = "iqn.1994-05.com.example:names-client"
	// Enough ".." to climb from target/iscsi/<x>/tpgt_1/acls/<y> past /:
	// the guest's / is a writable tmpfs overlay, /sys/kernel is sysfs.
	climb = "../../../../../../../../../../../../"
)

// pwnedPaths are where a traversal would land: the configfs root's parent,
// /sys, and / (the guest's writable overlay).
var pwnedPaths = []string{"/sys/kernel/config", "/sys/kernel", "/sys", "/", "/tmp"}

// outsideTarget lists every path under /sys/kernel/config except the target
// subtree, plus any "pwned" entry in the directories a traversal reaches.
func outsideTarget(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(configfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == targetDir {
			return filepath.SkipDir
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range pwnedPaths {
		m, err := filepath.Glob(filepath.Join(dir, "pwned*"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	slices.Sort(out)
	return out
}

// findPwned walks the target subtree for an entry named like a traversal's
// payload (a '/' in a name would have nested it there).
func findPwned(t *testing.T) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(targetDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "pwned") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func namesSpec() (lio.Spec, []string) {
	badTarget := "iqn.2003-01.com.example:x/" + climb + "pwned-tgt"
	badClients := []string{
		"iqn.1994-05.com.example:x/" + climb + "pwned-client",
		"iqn.1994-05.com.example:a\x00b",
		"iqn.1994-05.com.example:" + strings.Repeat("c", 276),
	}
	clients := map[string]lio.ClientSpec{namesClient: {LUNs: map[string]int{}}}
	for _, c := range badClients {
		clients[c] = lio.ClientSpec{LUNs: map[string]int{}}
	}
	ts := lio.TargetSpec{
		ACLEnabled: true, IPList: []string{localIP},
		Portals: map[string][]string{namesGW: {localIP}},
		Disks:   map[string]int{}, Clients: clients,
	}
	bad := ts
	bad.Clients = map[string]lio.ClientSpec{}
	spec := lio.Spec{
		Gateway: namesGW, Backstore: lio.BackstoreFileIO, Settings: lio.DefaultSettings(),
		Disks:   map[string]lio.DiskSpec{},
		Targets: map[string]lio.TargetSpec{namesTarget: ts, badTarget: bad},
	}
	return spec, append([]string{badTarget}, badClients...)
}

// TestNamesTraversalLIO builds a configuration with traversal, NUL and
// overlong names on the real kernel: Build names and skips each, the valid
// target and client are built, a hand-made State with a traversal IQN is
// refused by the FS layer, and nothing outside target/ changes.
func TestNamesTraversalLIO(t *testing.T) {
	start := time.Now()
	f := realFS(t)
	before := outsideTarget(t)
	spec, bad := namesSpec()
	st, err := lio.Build(spec)
	if err == nil {
		t.Fatal("Build accepted the hostile names")
	}
	for _, n := range bad {
		if !strings.Contains(err.Error(), config.QuoteName(n)) {
			t.Errorf("Build error does not name %q:\n%v", n, err)
		}
	}
	step(t, start, "Build skipped %d objects: %v", len(bad), err)
	t.Cleanup(func() { teardown(t, f, st) })
	converge(t, f, st)
	requireDir(t, "iscsi/"+namesTarget+"/tpgt_1/acls/"+namesClient)
	step(t, start, "valid target and client built")

	hostile := lio.State{
		Targets: []lio.Target{{IQN: climb + "pwned-state", TPGs: []lio.TPG{{Tag: 1, Enabled: true, Portals: []string{localIP + ":3260"}}}}},
		Managed: lio.Managed{Targets: []string{climb + "pwned-state"}},
	}
	res, err := lio.Apply(context.Background(), f, lio.NewPlan(observe(t, f), hostile))
	if !errors.Is(err, lio.ErrUnsafePath) {
		t.Fatalf("Apply of a traversal State: %v (failed %v), want ErrUnsafePath", err, res.Failed)
	}
	step(t, start, "traversal State refused: %v", err)

	if after := outsideTarget(t); !slices.Equal(before, after) {
		t.Fatalf("outside target/ changed:\nbefore %q\nafter  %q", before, after)
	}
	if p := findPwned(t); len(p) > 0 {
		t.Fatalf("created in LIO: %q", p)
	}
}

// namesAPISettings is apiSettings with this test's own config object.
func namesAPISettings(t *testing.T) string {
	t.Helper()
	cfg := apiSettings(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "gateway_conf = "+apiObject, "gateway_conf = vmtest-names.conf", 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestNamesTraversalAPI sends issue 8's requests to the api daemon on the
// real kernel: percent-encoded traversal IQNs for a target, a client and a
// gateway add are refused with 400, the valid objects converge, and nothing
// outside target/ changes.
func TestNamesTraversalAPI(t *testing.T) {
	start := time.Now()
	if tcmuRunner(t) == 0 {
		t.Skip("no Ceph in this guest (CEPH_ISCSI_VM_RBD=0): the api daemon needs RADOS")
	}
	bin := cephISCSIBin(t)
	before := outsideTarget(t)
	d := startAPIDaemon(t, bin, namesAPISettings(t))
	t.Cleanup(func() {
		if !d.stopped {
			code, _ := d.terminate(t)
			t.Logf("api daemon stopped in cleanup: exit %d", code)
		}
	})
	step(t, start, "api daemon serving")
	travTarget := "iqn.2003-01.com.example:x" + strings.ReplaceAll("/"+climb+"pwned-tgt", "/", "%2F")
	travClient := "iqn.1994-05.com.example:x" + strings.ReplaceAll("/"+climb+"pwned-client", "/", "%2F")
	refuse := func(method, path string, form ...string) {
		t.Helper()
		status, body := d.curl(t, apiUser, apiPassword, method, path, form...)
		if status != http.StatusBadRequest || !strings.Contains(body, "Invalid iqn ") {
			t.Fatalf("%s %s: %d %s, want 400 Invalid iqn", method, path, status, body)
		}
	}
	refuse(http.MethodPut, "/api/target/"+travTarget)
	refuse(http.MethodPut, "/api/gateway/"+travTarget+"/"+namesGW, "ip_address="+localIP, "skipchecks=true")
	d.put(t, "/api/target/"+namesTarget)
	d.put(t, "/api/gateway/"+namesTarget+"/"+namesGW, "ip_address="+localIP, "skipchecks=true")
	refuse(http.MethodPut, "/api/client/"+namesTarget+"/"+travClient)
	refuse(http.MethodPut, "/api/client/"+namesTarget+"/iqn.1994-05.com.example:a%01b")
	refuse(http.MethodPut, "/api/client/"+namesTarget+"/iqn.1994-05.com.example:"+strings.Repeat("c", 276))
	d.put(t, "/api/client/"+namesTarget+"/"+namesClient)
	requireDir(t, "iscsi/"+namesTarget+"/tpgt_1/acls/"+namesClient)
	step(t, start, "hostile requests refused, valid target and client built")
	if after := outsideTarget(t); !slices.Equal(before, after) {
		t.Fatalf("outside target/ changed:\nbefore %q\nafter  %q", before, after)
	}
	if p := findPwned(t); len(p) > 0 {
		t.Fatalf("created in LIO: %q", p)
	}
	if code, _ := d.terminate(t); code != 0 {
		t.Errorf("api daemon exit %d; log:\n%s", code, d.log(t))
	}
	if _, err := os.Stat(filepath.Join(targetDir, "iscsi", namesTarget)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target left in LIO: %v", err)
	}
	if after := outsideTarget(t); !slices.Equal(before, after) {
		t.Fatalf("outside target/ changed:\nbefore %q\nafter  %q", before, after)
	}
}
