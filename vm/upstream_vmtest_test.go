//go:build vmtest

package vm

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"ceph-iscsi/config"
	gwpkg "ceph-iscsi/gateway"
	"ceph-iscsi/lio"
)

// The reference: what upstream ceph-iscsi 3.5 built on this kernel (6.1) for
// upstream-gateway.conf.json, dumped with an initiator logged in.
const (
	upstreamDir     = "../lio/testdata"
	upstreamConf    = upstreamDir + "/upstream-gateway.conf.json"
	upstreamTree    = upstreamDir + "/upstream-configfs-tree.txt"
	upstreamValues  = upstreamDir + "/upstream-configfs-values-loggedin.txt"
	upstreamGateway = "igw1.fullstack.test"
	upstreamDisk    = 1 << 30 // rbd/disk2, created by vm/test.sh
)

// upstreamSpec maps the gateway.conf document to a Spec with the daemon's
// adapter, and returns its one target and its one client's CHAP.
func upstreamSpec(t *testing.T) (lio.Spec, string, config.Auth) {
	t.Helper()
	b, err := os.ReadFile(upstreamConf)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", upstreamConf, err)
	}
	spec, err := gwpkg.SpecFromConfig(doc, upstreamGateway, nil, gwpkg.FromConfigOptions{
		Size: func(pool, image string) (int64, error) { return upstreamDisk, nil },
	})
	if err != nil {
		t.Fatalf("%s: %v", upstreamConf, err)
	}
	if len(doc.Targets) != 1 {
		t.Fatalf("%s: expected one target", upstreamConf)
	}
	iqn := slices.Collect(maps.Keys(doc.Targets))[0]
	clients := slices.Collect(maps.Values(doc.Targets[iqn].Clients))
	if len(clients) != 1 {
		t.Fatalf("%s: expected one client", upstreamConf)
	}
	return spec, iqn, clients[0].Auth
}

// readUpstream parses the reference dumps into a tree keyed like dumpTree.
func readUpstream(t *testing.T) tree {
	t.Helper()
	const prefix = configfs + "/"
	tr := tree{dirs: map[string]bool{}, links: map[string]string{}, values: map[string]string{}}
	b, err := os.ReadFile(upstreamTree)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		p := strings.TrimPrefix(f[2], prefix)
		switch f[0] {
		case "d":
			tr.dirs[p] = true
		case "l":
			abs := filepath.Clean(filepath.Join(filepath.Dir(f[2]), f[4]))
			tr.links[filepath.Dir(p)] = strings.TrimPrefix(abs, prefix)
		}
	}
	b, err = os.ReadFile(upstreamValues)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, " = ")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		tr.values["target/"+k] = v
	}
	return tr
}

// historyDependent matches values that differ between two boots that built
// the same thing: counters and indexes of earlier objects, timestamps, the
// CPU count, statistics.
var historyDependent = regexp.MustCompile(`statistics/|/hba_info$|^target/iscsi/cpus_allowed_list$`)

// runSpecific are the values that name the kernel this guest booted, not
// anything the configuration built: the release in target/version moves on
// with every Debian kernel package (vm/run.sh boots whichever one the mirror
// serves today), so the reference's release names the machine that recorded
// it. Each is checked for its shape and against the running kernel instead;
// the rest of the value must still equal upstream's.
var runSpecific = map[string]func(got, ref string) error{
	"target/version": checkCoreVersion,
}

// coreVersion is target/version: TARGET_CORE_VERSION, utsname's sysname and
// machine, and the kernel release.
var coreVersion = regexp.MustCompile(`^(Target Engine Core ConfigFS Infrastructure v\S+ on \S+/\S+) on (\S+)$`)

// kernelRelease is the shape of a kernel release (6.1.0-56-amd64).
var kernelRelease = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\S*$`)

func checkCoreVersion(got, ref string) error {
	g, r := coreVersion.FindStringSubmatch(got), coreVersion.FindStringSubmatch(ref)
	switch {
	case r == nil || !kernelRelease.MatchString(r[2]):
		return fmt.Errorf("upstream's %q does not have the expected shape: reference not parsed?", ref)
	case g == nil || !kernelRelease.MatchString(g[2]):
		return fmt.Errorf("%q does not have the shape %s", got, coreVersion)
	case g[1] != r[1]:
		return fmt.Errorf("%q, upstream %q (only the kernel release may differ)", got, ref)
	}
	running, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return err
	}
	if rel := strings.TrimSpace(string(running)); g[2] != rel {
		return fmt.Errorf("%q names kernel %s, the guest runs %s", got, g[2], rel)
	}
	return nil
}

// sessionOnly matches what differs unless an initiator is logged in and a
// tcmu-runner serves the device: session parameters, and the kernel's
// nl_reply_supported, which drops to 0 when no runner answers the enable.
var sessionOnly = regexp.MustCompile(`/acls/[^/]+/(param/|info$)|/attrib/nl_reply_supported$`)

// compareTrees reports every difference between the real tree and upstream's.
func compareTrees(t *testing.T, got, want tree, loggedIn bool) {
	t.Helper()
	diffs := diffShape(got, want, "upstream")
	compared, running := 0, 0
	for k, v := range want.values {
		if historyDependent.MatchString(k) || (!loggedIn && sessionOnly.MatchString(k)) {
			continue
		}
		g, ok := got.values[k]
		check := runSpecific[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %s (upstream %q)", k, v))
		case check != nil:
			if err := check(g, v); err != nil {
				diffs = append(diffs, fmt.Sprintf("%s: %v", k, err))
			} else {
				running++
			}
		case g != v:
			diffs = append(diffs, fmt.Sprintf("%s = %q, upstream %q", k, g, v))
		default:
			compared++
		}
	}
	for k, v := range got.values {
		if _, ok := want.values[k]; !ok && !historyDependent.MatchString(k) && !(!loggedIn && sessionOnly.MatchString(k)) {
			diffs = append(diffs, fmt.Sprintf("extra %s = %q", k, v))
		}
	}
	sort.Strings(diffs)
	for _, d := range diffs {
		t.Error(d)
	}
	if compared < 150 {
		t.Errorf("only %d values compared: reference not parsed?", compared)
	}
	if running != len(runSpecific) {
		t.Errorf("%d of the %d run-specific values checked", running, len(runSpecific))
	}
	t.Logf("real kernel tree vs upstream: %d dirs, %d links, %d equal values, %d run-specific values checked against this kernel, %d differences",
		len(want.dirs), len(want.links), compared, running, len(diffs))
}

// tcmuRunner returns the pid of the live tcmu-runner the guest started, or 0
// when the guest runs without Ceph. A user backstore must never be enabled
// while a runner that once ran is gone: the write blocks forever.
func tcmuRunner(t *testing.T) int {
	t.Helper()
	s := os.Getenv("VMTEST_TCMU_PID")
	if s == "" {
		return 0
	}
	pid, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	if comm := strings.TrimSpace(readOr(fmt.Sprintf("/proc/%d/comm", pid))); comm != "tcmu-runner" {
		t.Fatalf("tcmu-runner (pid %d) is not running (comm %q): refusing to enable user backstores", pid, comm)
	}
	return pid
}

// cephConn connects as client.admin once the restarted cluster serves I/O.
func cephConn(t *testing.T, start time.Time) (*rados.Conn, *rados.IOContext) {
	t.Helper()
	deadline := time.Now().Add(180 * time.Second)
	for attempt := 1; ; attempt++ {
		conn, ioctx, err := tryConn(os.Getenv("VMTEST_CEPH_CONF"))
		if err == nil {
			step(t, start, "Ceph serves I/O (attempt %d)", attempt)
			t.Cleanup(func() { ioctx.Destroy(); conn.Shutdown() })
			return conn, ioctx
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ceph not ready after 180s: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func tryConn(conf string) (*rados.Conn, *rados.IOContext, error) {
	conn, err := rados.NewConnWithUser("admin")
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*rados.Conn, *rados.IOContext, error) { conn.Shutdown(); return nil, nil, err }
	if err := conn.ReadConfigFile(conf); err != nil {
		return fail(err)
	}
	for k, v := range map[string]string{"client_mount_timeout": "20", "rados_mon_op_timeout": "20", "rados_osd_op_timeout": "20"} {
		if err := conn.SetConfigOption(k, v); err != nil {
			return fail(err)
		}
	}
	if err := conn.Connect(); err != nil {
		return fail(err)
	}
	ioctx, err := conn.OpenIOContext("rbd")
	if err != nil {
		return fail(err)
	}
	ioctx.SetNamespace("vmtest")
	if err := ioctx.WriteFull("ready", []byte("ok")); err != nil {
		ioctx.Destroy()
		return fail(err)
	}
	ioctx.SetNamespace("")
	return conn, ioctx, nil
}

// TestUpstreamUserRBD applies upstream's reference configuration (a
// user:rbd disk behind one CHAP client) to the real kernel through package lio
// and compares the tree, without a session, with what upstream built. It is
// the guest without Ceph's version of TestRestoreUpstreamTree, which does the
// same through the restore binary with a login, I/O and a live resize, and
// makes this one redundant when Ceph runs. An enabled user backstore without
// a runner is safe here only because no runner ever ran in this boot.
func TestUpstreamUserRBD(t *testing.T) {
	start := time.Now()
	if tcmuRunner(t) != 0 {
		t.Skip("Ceph and tcmu-runner run in this guest: TestRestoreUpstreamTree covers this with a session")
	}
	spec, _, _ := upstreamSpec(t)
	f := realFS(t)
	desired := build(t, spec)
	plan := converge(t, f, desired)
	step(t, start, "upstream config applied: %d ops, re-plan empty", len(plan.Ops))
	defer func() {
		teardown(t, f, desired)
		step(t, start, "teardown done")
	}()
	real := dumpTree(t)
	real.write(t, filepath.Join(os.Getenv("VM_OUT"), "upstream-real-configfs.txt"))
	compareTrees(t, real, readUpstream(t), false)
	step(t, start, "tree compared with upstream's (no session)")
}
