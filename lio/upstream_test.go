package lio

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readUpstream loads the reference dumps of what upstream ceph-iscsi 3.5
// built for testdata/upstream-gateway.conf.json on kernel 6.1 (with an
// initiator logged in): directories, symlinks (dir -> target) and values,
// all relative to the configfs root.
func readUpstream(t *testing.T) (dirs map[string]bool, links map[string]string, values map[string]string) {
	t.Helper()
	const prefix = "/sys/kernel/config/"
	dirs, links, values = map[string]bool{}, map[string]string{}, map[string]string{}
	tree, err := os.Open(filepath.Join("testdata", "upstream-configfs-tree.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	sc := bufio.NewScanner(tree)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		p := strings.TrimPrefix(f[2], prefix)
		switch f[0] {
		case "d":
			dirs[p] = true
		case "l":
			// Targets are relative to the link's directory.
			abs := filepath.Clean(filepath.Join(filepath.Dir(f[2]), f[4]))
			links[path2dir(p)] = strings.TrimPrefix(abs, prefix)
		}
	}
	vals, err := os.ReadFile(filepath.Join("testdata", "upstream-configfs-values-loggedin.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(vals), "\n") {
		k, v, ok := strings.Cut(l, " = ")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		values["target/"+k] = v
	}
	return dirs, links, values
}

// kernelOnly matches what the kernel generates by itself (statistics,
// session state, module info): never written by upstream, not emulated.
var kernelOnly = regexp.MustCompile(`/(statistics|fabric_statistics)(/|$)|` +
	`/(info|members|hba_info|dynamic_sessions|alua_access_status|cmd_ring_size_mb|data_pages_per_blk|alua_lu_gp)$|` +
	`^target/(version|dbroot|iscsi/lio_version|iscsi/cpus_allowed_list)$|` +
	`/acls/[^/]+/param/|/pr/|/action/(free_kept_buf|reset_ring)$|/control$|` +
	`/core/alua/lu_gps/default_lu_gp/members$`)

// upstreamWritten lists the attributes whose value upstream chose (the
// rest are kernel defaults). Each must exist in our tree with the same
// value.
var upstreamWritten = regexp.MustCompile(`/enable$|/vpd_unit_serial$|` +
	`/attrib/(dev_config|dev_size|max_data_area_mb|hw_max_sectors|cmd_time_out|qfull_time_out)$|` +
	`/alua/ao/|/alua_tg_pt_gp$|` +
	`tpgt_1/attrib/(authentication|generate_node_acls|demo_mode_write_protect|tpg_enabled_sendtargets)$|` +
	`tpgt_1/param/(ImmediateData|InitialR2T|MaxOutstandingR2T|FirstBurstLength|MaxBurstLength|MaxRecvDataSegmentLength|MaxXmitDataSegmentLength|AuthMethod)$|` +
	`/auth/(userid|password|userid_mutual|password_mutual)$|` +
	`/discovery_auth/enforce_discovery_auth$|` +
	`/acls/[^/]+/(cmdsn_depth|attrib/(dataout_timeout|nopin_response_timeout|nopin_timeout))$`)

// TestMatchesUpstream builds the emulated tree for the reference config and
// compares it with what upstream built on a real kernel: same directories
// (objects and the kernel's default groups), same symlink targets, and the
// same value for every attribute present in both trees. Deliberate
// differences: symlink names (rtslib picks random hex; ours derive from the
// link target) and kernel-generated statistics/session files, which are
// not emulated.
func TestMatchesUpstream(t *testing.T) {
	f := newEmu(t)
	spec := specFromConfig(t, "upstream-gateway.conf.json", "igw1.fullstack.test", BackstoreUserRBD)
	reconcile(t, f, mustBuild(t, spec))
	upDirs, upLinks, upValues := readUpstream(t)

	ourDirs, ourLinks, ourValues := map[string]bool{}, map[string]string{}, map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(renderTree(t, f, false)), "\n") {
		kind, rest := l[:1], l[2:]
		switch kind {
		case "d":
			ourDirs[rest] = true
		case "l":
			link, tgt, _ := strings.Cut(rest, " -> ")
			ourLinks[path2dir(link)] = tgt
		case "f":
			k, v, _ := strings.Cut(rest, " = ")
			ourValues[k] = v
		}
	}
	for d := range upDirs {
		if !kernelOnly.MatchString(d) && !ourDirs[d] {
			t.Errorf("upstream directory missing: %s", d)
		}
	}
	for d := range ourDirs {
		if !upDirs[d] {
			t.Errorf("directory upstream does not have: %s", d)
		}
	}
	for d, tgt := range upLinks {
		if ourLinks[d] != tgt {
			t.Errorf("link in %s: got %q, upstream %q", d, ourLinks[d], tgt)
		}
	}
	if len(ourLinks) != len(upLinks) {
		t.Errorf("got %d links, upstream %d", len(ourLinks), len(upLinks))
	}
	compared, written := 0, 0
	for k, v := range upValues {
		if kernelOnly.MatchString(k) {
			continue
		}
		got, ok := ourValues[k]
		if upstreamWritten.MatchString(k) {
			written++
			if !ok {
				t.Errorf("upstream attribute missing: %s = %q", k, v)
			}
		}
		if !ok {
			continue
		}
		compared++
		if got != v {
			t.Errorf("%s: got %q, upstream %q", k, got, v)
		}
	}
	// Guard against a vacuous pass if the reference format changes.
	if compared < 100 || written < 40 {
		t.Errorf("compared %d values (%d upstream-written): reference not parsed?", compared, written)
	}
	t.Logf("compared %d values, %d of them written by upstream", compared, written)
}
