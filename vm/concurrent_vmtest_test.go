//go:build vmtest

package vm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/lio"
	"ceph-iscsi/rbd"
)

const (
	concIQN   = "iqn.2003-01.com.example.vmtest:concurrent"
	concDisks = 32
	concDir   = "/run/vmtest-concurrent"
)

// buildOrderDependent matches what two builds of the same objects may
// show differently: statistics and HBA info (as historyDependent), and the
// member lists of ALUA groups, which follow the order the devices were
// created in (the default LU group holds every storage object).
var buildOrderDependent = regexp.MustCompile(`statistics/|/hba_info$|^target/iscsi/cpus_allowed_list$|/members$`)

// concurrentSpec is 32 disks on one target with a local TPG, and 8 CHAP
// clients of 4 LUNs each: user:rbd served by tcmu-runner when Ceph runs in
// the guest, fileio otherwise.
func concurrentSpec(t *testing.T, start time.Time) lio.Spec {
	t.Helper()
	spec := lio.Spec{
		Gateway: gateway, Backstore: lio.BackstoreFileIO, Settings: lio.DefaultSettings(),
		Disks: map[string]lio.DiskSpec{},
		Targets: map[string]lio.TargetSpec{concIQN: {
			ACLEnabled: true, IPList: []string{localIP},
			Portals: map[string][]string{gateway: {localIP}},
			Disks:   map[string]int{}, Clients: map[string]lio.ClientSpec{},
		}},
	}
	ts := spec.Targets[concIQN]
	user := tcmuRunner(t) != 0
	if user {
		spec.Backstore = lio.BackstoreUserRBD
		gconn, _ := cephConn(t, start)
		for i := range concDisks {
			img := fmt.Sprintf("conc%02d", i)
			if err := rbd.Create(gconn, "rbd", img, restoreImage, 0); err != nil {
				t.Fatalf("create %s: %v", img, err)
			}
			t.Cleanup(func() { _ = rbd.Remove(context.Background(), gconn, "rbd", img, rbd.RemoveOptions{}) })
		}
	} else if err := os.MkdirAll(concDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range concDisks {
		img := fmt.Sprintf("conc%02d", i)
		d := lio.DiskSpec{Pool: "rbd", Image: img, Owner: gateway, WWN: fmt.Sprintf("6e0c6d2a-7a51-4c1b-9f00-c0ffee%06d", i), Size: restoreImage}
		if !user {
			d.DevicePath = filepath.Join(concDir, img)
			if err := os.WriteFile(d.DevicePath, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(d.DevicePath, restoreImage); err != nil {
				t.Fatal(err)
			}
		}
		spec.Disks["rbd/"+img] = d
		ts.Disks["rbd/"+img] = i
	}
	for c := range concDisks / 4 {
		cs := lio.ClientSpec{Auth: lio.AuthSpec{Username: fmt.Sprintf("concuser%d", c), Password: "Concurrent-Pass-1"}, LUNs: map[string]int{}}
		for l := range 4 {
			cs.LUNs[fmt.Sprintf("rbd/conc%02d", 4*c+l)] = l
		}
		ts.Clients[fmt.Sprintf("iqn.1994-05.com.example:conc%d", c)] = cs
	}
	step(t, start, "%d %s disks ready", concDisks, spec.Backstore)
	return spec
}

// TestApplyConcurrent32 builds 32 disks with their LUNs and ACLs on the
// real kernel once strictly in order and once with lio's concurrent apply
// (storage objects, their enables and tcmu opens, LUNs and ACLs in
// parallel), tearing down in between the same two ways: both builds reach
// the fixed point and leave the same tree (but for statistics and the
// creation order in ALUA member lists), and both teardowns leave nothing
// of theirs. The concurrent pass plans through a lio.Model, as the daemon
// does, and tears down with a CHAP initiator logged in and foreign objects
// (a fileio storage object in its own HBA, a target) in LIO: the session
// is gone afterwards and the foreign objects are still there.
func TestApplyConcurrent32(t *testing.T) {
	start := time.Now()
	f := realFS(t)
	spec := concurrentSpec(t, start)
	st := build(t, spec)
	t.Cleanup(func() { teardown(t, f, st) })

	before := lioObjects(t)
	trees := map[int]tree{}
	for _, workers := range []int{1, lio.DefaultApplyWorkers} {
		f := f
		if workers > 1 {
			// as the daemon does: plan against what this process knows LIO
			// holds, reading back only what it changed
			f = f.WithModel(lio.NewModel())
		}
		was := observe(t, f)
		plan := lio.NewPlan(was, st)
		t0 := time.Now()
		res, err := lio.ApplyWith(context.Background(), f, plan, lio.ApplyOptions{Workers: workers})
		if err != nil {
			t.Fatalf("workers=%d: %v\nfailed: %v", workers, err, res.Failed)
		}
		step(t, start, "workers=%d: built with %d operations in %.2fs", workers, len(res.Done), time.Since(t0).Seconds())
		if workers > 1 {
			// What the daemon keeps after an apply (the state before it,
			// with what it touched read back) is what a full read of the
			// real kernel's tree finds: its drift check compares the two.
			kept, err := lio.Refresh(f, was, plan)
			if err != nil {
				t.Fatal(err)
			}
			if live := observe(t, f.Live()); !reflect.DeepEqual(kept, live) {
				t.Errorf("workers=%d: the kept state differs from a full read of LIO\nkept: %+v\nLIO: %+v", workers, kept, live)
			}
		}
		if again := lio.NewPlan(observe(t, f), st); !again.Empty() {
			t.Fatalf("workers=%d: not at the fixed point:\n%s", workers, again)
		}
		trees[workers] = dumpTree(t)
		trees[workers].write(t, filepath.Join(os.Getenv("VM_OUT"), fmt.Sprintf("concurrent-%d-configfs.txt", workers)))

		var foreign []string
		var ini *initiator
		if workers > 1 {
			// The concurrent teardown meets what a gateway meets: an
			// initiator logged in, and objects of someone else's, made
			// behind the model's back, which must stay.
			foreign = foreignObjects(t)
			ini = &initiator{name: "iqn.1994-05.com.example:conc0", iface: "conc", auth: chap{"concuser0", "Concurrent-Pass-1", "", ""}}
			ini.configure(t)
			if _, err := ini.discover(t, localIP); err != nil {
				t.Fatal(err)
			}
			// not ini.login: right after 32 tcmu opens on a loaded host the
			// login took longer than iscsiadm's 60 s there
			t.Cleanup(func() { _, _ = iscsiadm(t, "-m", "node", "-T", concIQN, "-p", localIP, "-I", ini.iface, "--logout") })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			t1 := time.Now()
			out, err := exec.CommandContext(ctx, "iscsiadm", "-m", "node", "-T", concIQN, "-p", localIP, "-I", ini.iface, "--login").CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("login: %v: %s", err, out)
			}
			step(t, start, "workers=%d: %s logged in after %.1fs", workers, ini.name, time.Since(t1).Seconds())
			if n, err := lio.TargetSessions(f, concIQN); n != 1 || err != nil {
				t.Fatalf("sessions of %s before the teardown: %d, %v; want 1", concIQN, n, err)
			}
			step(t, start, "workers=%d: %s logged in, foreign objects %v", workers, ini.name, foreign)
		}

		down := st.ForTeardown()
		plan = lio.NewPlan(observe(t, f), down)
		t0 = time.Now()
		if res, err := lio.ApplyWith(context.Background(), f, plan, lio.ApplyOptions{Workers: workers}); err != nil {
			t.Fatalf("workers=%d teardown: %v\nfailed: %v", workers, err, res.Failed)
		}
		step(t, start, "workers=%d: torn down with %d operations in %.2fs", workers, len(plan.Ops), time.Since(t0).Seconds())
		if again := lio.NewPlan(observe(t, f.Live()), down); !again.Empty() {
			t.Fatalf("workers=%d: teardown not at the fixed point:\n%s", workers, again)
		}
		want := slices.Sorted(slices.Values(append(slices.Clone(before), foreign...)))
		if left := lioObjects(t); !slices.Equal(left, want) {
			t.Fatalf("workers=%d: LIO after the teardown %v, want %v (what was there before and the foreign objects)", workers, left, want)
		}
		if ini != nil {
			waitSessionGone(t, concIQN)
			step(t, start, "workers=%d: the initiator's session is gone, the foreign objects stayed", workers)
		}
	}
	serial, conc := trees[1], trees[lio.DefaultApplyWorkers]
	diffs := diffShape(conc, serial, "serially")
	compared := 0
	for k, v := range serial.values {
		if buildOrderDependent.MatchString(k) {
			continue
		}
		if g, ok := conc.values[k]; !ok || g != v {
			diffs = append(diffs, fmt.Sprintf("%s = %q, serially %q", k, g, v))
		}
		compared++
	}
	sort.Strings(diffs)
	for _, d := range diffs {
		t.Error(d)
	}
	if len(serial.links) < concDisks*2 || compared < concDisks*20 {
		t.Errorf("only %d links and %d values compared", len(serial.links), compared)
	}
	step(t, start, "trees equal: %d dirs, %d links, %d values compared", len(serial.dirs), len(serial.links), compared)
}

const (
	foreignSO     = "core/fileio_4242/vmtest-foreign"
	foreignTarget = "iscsi/iqn.2003-01.com.example.vmtest:foreign"
	foreignFile   = "/run/vmtest-foreign.img"
)

// foreignObjects makes, by hand as another tool would, a fileio storage
// object in its own HBA and a target with a TPG, none of them in any spec
// of the test, and returns them as lioObjects names them. They go at the
// end of the test.
func foreignObjects(t *testing.T) []string {
	t.Helper()
	t.Cleanup(func() { removeForeign(t) })
	if err := os.WriteFile(foreignFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(targetDir, foreignSO)
	for _, d := range []string{filepath.Dir(so), so, filepath.Join(targetDir, foreignTarget), filepath.Join(targetDir, foreignTarget, "tpgt_1")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range [][2]string{{"control", "fd_dev_name=" + foreignFile + ",fd_dev_size=1048576"}, {"enable", "1"}} {
		if err := os.WriteFile(filepath.Join(so, w[0]), []byte(w[1]), 0o644); err != nil {
			t.Fatalf("%s/%s: %v", so, w[0], err)
		}
	}
	return []string{filepath.Dir(foreignSO), foreignSO, foreignTarget}
}

func removeForeign(t *testing.T) {
	t.Helper()
	for _, d := range []string{foreignTarget + "/tpgt_1", foreignTarget, foreignSO, filepath.Dir(foreignSO)} {
		if err := os.Remove(filepath.Join(targetDir, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("remove foreign %s: %v", d, err)
		}
	}
	_ = os.Remove(foreignFile)
}

// waitSessionGone waits until the initiator holds no logged-in session to
// iqn: the teardown disabled its TPG, and open-iscsi learns it when the
// connection drops.
func waitSessionGone(t *testing.T, iqn string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		live := ""
		ss, _ := filepath.Glob("/sys/class/iscsi_session/session*")
		for _, s := range ss {
			if strings.TrimSpace(readOr(s+"/targetname")) == iqn && strings.TrimSpace(readOr(s+"/state")) == "LOGGED_IN" {
				live = s
			}
		}
		if live == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still LOGGED_IN to %s 60s after the teardown", live, iqn)
		}
		time.Sleep(200 * time.Millisecond) // polling the initiator's view, not ordering events
	}
}
