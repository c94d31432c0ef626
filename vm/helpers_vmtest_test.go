//go:build vmtest

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/lio"
)

const (
	configfs  = lio.DefaultRoot
	targetDir = configfs + "/target"
	// localIP is on lo in the guest (guest-vmtest.sh); remoteIP is the "other
	// gateway", never configured here (LIO binds portals with IP_FREEBIND).
	localIP  = "192.0.2.10"
	remoteIP = "192.0.2.11"
)

// TestMain refuses to run anywhere but the vm/run.sh guest: these tests
// rewrite the kernel's LIO configuration and log in with open-iscsi.
func TestMain(m *testing.M) {
	if os.Getenv("VM_OUT") == "" {
		fmt.Fprintln(os.Stderr, "vmtest: not inside the vm/run.sh guest (VM_OUT unset); run vm/test.sh")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// cephISCSIBin is the ceph-iscsi binary vm/test.sh builds and passes to a
// guest with Ceph.
func cephISCSIBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(envRestoreBin)
	if bin == "" {
		t.Fatalf("%s unset: vm/test.sh builds ceph-iscsi and passes its path", envRestoreBin)
	}
	return bin
}

// step logs with the time since the test started: the timings are part of
// what these tests report.
func step(t *testing.T, start time.Time, format string, args ...any) {
	t.Helper()
	t.Logf("[%5.2fs] %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func realFS(t *testing.T) lio.FS {
	t.Helper()
	f, err := lio.NewFS(configfs)
	if err != nil {
		t.Fatal(err)
	}
	if f.Emulated() {
		t.Fatal("lio.NewFS returned an emulated FS for the real configfs")
	}
	return f
}

func observe(t *testing.T, f lio.FS) lio.State {
	t.Helper()
	st, err := lio.Observe(f)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return st
}

// converge plans and applies once against the real kernel, then requires the
// next plan to be empty: Observe must read back exactly what Apply wrote.
func converge(t *testing.T, f lio.FS, desired lio.State) lio.Plan {
	t.Helper()
	plan := lio.NewPlan(observe(t, f), desired)
	if plan.Empty() {
		t.Fatal("plan is empty: nothing to test")
	}
	res, err := lio.Apply(context.Background(), f, plan)
	if err != nil {
		t.Fatalf("Apply: %v\nfailed: %v\nskipped: %v\nplan:\n%s", err, res.Failed, res.Skipped, plan)
	}
	if again := lio.NewPlan(observe(t, f), desired); !again.Empty() {
		t.Fatalf("real kernel is not at the fixed point; second plan:\n%s\nfirst plan:\n%s", again, plan)
	}
	return plan
}

// teardown applies the shutdown state and checks nothing managed is left.
func teardown(t *testing.T, f lio.FS, desired lio.State) {
	t.Helper()
	down := desired.ForTeardown()
	plan := lio.NewPlan(observe(t, f), down)
	if res, err := lio.Apply(context.Background(), f, plan); err != nil {
		t.Fatalf("teardown Apply: %v\nfailed: %v\nplan:\n%s", err, res.Failed, plan)
	}
	if again := lio.NewPlan(observe(t, f), down); !again.Empty() {
		t.Errorf("teardown not at a fixed point:\n%s", again)
	}
	ents, err := os.ReadDir(targetDir + "/iscsi")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != "discovery_auth" {
			t.Errorf("target left behind: iscsi/%s", e.Name())
		}
	}
	managed := map[string]bool{}
	for _, n := range down.Managed.StorageObjects {
		managed[n] = true
	}
	hbas, err := os.ReadDir(targetDir + "/core")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hbas {
		if !h.IsDir() || h.Name() == "alua" {
			continue
		}
		sos, _ := os.ReadDir(targetDir + "/core/" + h.Name())
		objects := 0
		for _, so := range sos {
			if !so.IsDir() {
				continue
			}
			objects++
			if managed[so.Name()] {
				t.Errorf("managed backstore left behind: core/%s/%s", h.Name(), so.Name())
			}
		}
		if objects == 0 {
			t.Errorf("empty HBA left behind: core/%s", h.Name())
		}
	}
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(b), "\n")
}

// firstLine reads the first line of an attribute (alua_tg_pt_gp and a few
// others print several).
func firstLine(t *testing.T, p string) string {
	t.Helper()
	l, _, _ := strings.Cut(readTrim(t, p), "\n")
	return l
}

// ---------------------------------------------------------------- initiator

type chap struct{ user, pass, mutualUser, mutualPass string }

// initiator is one open-iscsi identity: an iface that carries its own
// initiator name, so one iscsid serves several clients.
type initiator struct {
	name  string // IQN
	iface string
	auth  chap // node (session) CHAP; empty = none
	disc  chap // discovery CHAP; empty = none
}

func iscsiadm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "iscsiadm", args...).CombinedOutput()
	return string(out), err
}

// configure writes the iface and the iscsid.conf defaults that iscsiadm
// copies into new discovery and node records, and forgets earlier records:
// open-iscsi offers CHAP whenever a record holds credentials.
func (ini initiator) configure(t *testing.T) {
	t.Helper()
	iface := fmt.Sprintf("iface.iscsi_ifacename = %s\niface.transport_name = tcp\niface.initiatorname = %s\n", ini.iface, ini.name)
	if err := os.WriteFile("/etc/iscsi/ifaces/"+ini.iface, []byte(iface), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("node.startup = manual\nnode.session.scan = auto\n")
	b.WriteString("node.session.initial_login_retry_max = 1\nnode.conn[0].timeo.login_timeout = 15\n")
	if ini.auth.user != "" {
		fmt.Fprintf(&b, "node.session.auth.authmethod = CHAP\nnode.session.auth.username = %s\nnode.session.auth.password = %s\n", ini.auth.user, ini.auth.pass)
		if ini.auth.mutualUser != "" {
			fmt.Fprintf(&b, "node.session.auth.username_in = %s\nnode.session.auth.password_in = %s\n", ini.auth.mutualUser, ini.auth.mutualPass)
		}
	}
	if ini.disc.user != "" {
		fmt.Fprintf(&b, "discovery.sendtargets.auth.authmethod = CHAP\ndiscovery.sendtargets.auth.username = %s\ndiscovery.sendtargets.auth.password = %s\n", ini.disc.user, ini.disc.pass)
	}
	if err := os.WriteFile("/etc/iscsi/iscsid.conf", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/etc/iscsi/nodes", "/etc/iscsi/send_targets"} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
}

// discover runs SendTargets against portal and returns the targets seen.
func (ini initiator) discover(t *testing.T, portal string) ([]string, error) {
	t.Helper()
	out, err := iscsiadm(t, "-m", "discovery", "-t", "st", "-p", portal, "-I", ini.iface)
	if err != nil {
		return nil, fmt.Errorf("discovery: %v: %s", err, out)
	}
	var iqns []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		// "192.0.2.10:3260,1 iqn...."
		if f := strings.Fields(l); len(f) == 2 {
			iqns = append(iqns, f[0]+" "+f[1])
		}
	}
	return iqns, nil
}

func (ini initiator) login(t *testing.T, iqn, portal string) error {
	t.Helper()
	out, err := iscsiadm(t, "-m", "node", "-T", iqn, "-p", portal, "-I", ini.iface, "--login")
	if err != nil {
		return fmt.Errorf("login: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

func (ini initiator) logout(t *testing.T, iqn, portal string) {
	t.Helper()
	if out, err := iscsiadm(t, "-m", "node", "-T", iqn, "-p", portal, "-I", ini.iface, "--logout"); err != nil {
		t.Errorf("logout: %v: %s", err, out)
	}
}

// disks waits until the session of this initiator to iqn shows want LUNs as
// block devices and returns them by LUN number (no udev in the guest: the
// names come from sysfs).
func (ini initiator) disks(t *testing.T, iqn string, want int) map[int]string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[int]string{}
		sessions, _ := filepath.Glob("/sys/class/iscsi_session/session*")
		for _, s := range sessions {
			if strings.TrimSpace(readOr(s+"/targetname")) != iqn || strings.TrimSpace(readOr(s+"/initiatorname")) != ini.name {
				continue
			}
			blocks, _ := filepath.Glob(s + "/device/target*/*:*:*:*/block/*")
			for _, b := range blocks {
				hctl := filepath.Base(filepath.Dir(filepath.Dir(b)))
				parts := strings.Split(hctl, ":")
				lun, err := strconv.Atoi(parts[len(parts)-1])
				if err == nil {
					got[lun] = "/dev/" + filepath.Base(b)
				}
			}
		}
		if len(got) >= want {
			for _, dev := range got {
				waitDevNode(t, dev)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d LUNs appeared within 60s: %v", ini.name, len(got), want, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitDevNode(t *testing.T, dev string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(dev); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not appear in devtmpfs", dev)
}

func readOr(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// ------------------------------------------------------------------- I/O

const ioSize = 1 << 20

// pattern is ioSize bytes that differ per seed and per offset.
func pattern(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x6c696f))
	b := make([]byte, ioSize)
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// alignedBuf returns page-aligned memory, as O_DIRECT needs.
func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(b) })
	return b
}

// writeReadDirect writes data at off of dev with O_DIRECT, reads it back
// (O_DIRECT too, so the page cache cannot answer) and compares.
func writeReadDirect(t *testing.T, dev string, off int64, data []byte) {
	t.Helper()
	fh, err := os.OpenFile(dev, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	w := alignedBuf(t, len(data))
	copy(w, data)
	if n, err := fh.WriteAt(w, off); err != nil || n != len(w) {
		t.Fatalf("write %s: %d bytes, %v", dev, n, err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dev, err)
	}
	if r := readDirect(t, dev, off, len(data)); !bytes.Equal(r, data) {
		t.Fatalf("%s: read back differs from what was written (first diff at %d)", dev, firstDiff(r, data))
	}
}

// readDirect reads n bytes at off of dev with O_DIRECT.
func readDirect(t *testing.T, dev string, off int64, n int) []byte {
	t.Helper()
	fh, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r := alignedBuf(t, n)
	if got, err := fh.ReadAt(r, off); err != nil || got != n {
		t.Fatalf("read %s: %d bytes, %v", dev, got, err)
	}
	return append([]byte(nil), r...)
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// ------------------------------------------------------------ tree dump

// tree is a configfs subtree: directories, symlinks (dir of the link ->
// target, relative to the configfs root) and the first line of every
// readable attribute, keyed by path relative to the configfs root.
type tree struct {
	dirs   map[string]bool
	links  map[string]string
	values map[string]string
}

func dumpTree(t *testing.T) tree {
	t.Helper()
	tr := tree{dirs: map[string]bool{}, links: map[string]string{}, values: map[string]string{}}
	err := filepath.WalkDir(targetDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, configfs+"/")
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tgt, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !filepath.IsAbs(tgt) {
				tgt = filepath.Join(filepath.Dir(p), tgt)
			}
			tr.links[filepath.Dir(rel)] = strings.TrimPrefix(filepath.Clean(tgt), configfs+"/")
		case d.IsDir():
			tr.dirs[rel] = true
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				tr.values[rel] = "<unreadable>"
				return nil
			}
			line, _, _ := strings.Cut(string(b), "\n")
			if len(line) > 300 {
				line = line[:300]
			}
			tr.values[rel] = line
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// diffShape lists the directories and links in which got differs from want
// (wantName names want in the messages); values are each test's own rules.
func diffShape(got, want tree, wantName string) []string {
	var diffs []string
	for d := range want.dirs {
		if !got.dirs[d] {
			diffs = append(diffs, "missing dir "+d)
		}
	}
	for d := range got.dirs {
		if !want.dirs[d] {
			diffs = append(diffs, "extra dir "+d)
		}
	}
	for d, l := range want.links {
		if got.links[d] != l {
			diffs = append(diffs, fmt.Sprintf("link in %s: got %q, %s %q", d, got.links[d], wantName, l))
		}
	}
	for d, l := range got.links {
		if _, ok := want.links[d]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra link in %s -> %s", d, l))
		}
	}
	return diffs
}

func (tr tree) write(t *testing.T, file string) {
	t.Helper()
	var lines []string
	for d := range tr.dirs {
		lines = append(lines, "d "+d)
	}
	for d, l := range tr.links {
		lines = append(lines, "l "+d+" -> "+l)
	}
	for k, v := range tr.values {
		lines = append(lines, "f "+k+" = "+v)
	}
	sort.Strings(lines)
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Error(err)
	}
}

// ---------------------------------------------------------------- daemons

// daemon is a process a test runs for a while (our api or gw daemon,
// upstream's rbd-target-api), its output going to a file in the out dir so
// the artefacts keep it.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	stopped bool
}

// startDaemon starts cmd with its output in logName in the out dir.
func startDaemon(t *testing.T, name string, cmd *exec.Cmd, logName string) *daemon {
	t.Helper()
	logPath := filepath.Join(os.Getenv("VM_OUT"), logName)
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	return d
}

// waitHTTP waits until GET url answers 200. The daemon's exit meanwhile, or
// no answer within limit, is fatal, with its log.
func (d *daemon) waitHTTP(t *testing.T, url string, limit time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-d.done:
			t.Fatalf("%s exited during start-up (%v); log:\n%s", d.name, d.waitErr, d.log(t))
		default:
		}
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			d.kill()
			t.Fatalf("%s not serving GET %s after %s; log:\n%s", d.name, url, limit, d.log(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *daemon) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		t.Errorf("read the log of %s: %v", d.name, err)
	}
	return string(b)
}

func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
	d.stopped = true
}

// sigterm sends SIGTERM (unless the daemon has exited) and waits up to
// limit. It returns the exit code and how long the shutdown took; a daemon
// that had to be killed, or whose wait failed otherwise, is an error.
func (d *daemon) sigterm(limit time.Duration) (int, time.Duration, error) {
	start := time.Now()
	select {
	case <-d.done:
	default:
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return -1, 0, fmt.Errorf("SIGTERM %s: %w", d.name, err)
		}
		select {
		case <-d.done:
		case <-time.After(limit):
			d.kill()
			return -1, time.Since(start), fmt.Errorf("%s still running %s after SIGTERM (killed)", d.name, limit)
		}
	}
	d.stopped = true
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case d.waitErr == nil:
		return 0, took, nil
	case errors.As(d.waitErr, &ee):
		return ee.ExitCode(), took, nil
	}
	return -1, took, fmt.Errorf("%s: %w", d.name, d.waitErr)
}
