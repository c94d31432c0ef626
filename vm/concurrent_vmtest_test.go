//go:build vmtest

package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
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
// creation order in ALUA member lists), and both teardowns leave nothing.
func TestApplyConcurrent32(t *testing.T) {
	start := time.Now()
	f := realFS(t)
	spec := concurrentSpec(t, start)
	st := build(t, spec)
	t.Cleanup(func() { teardown(t, f, st) })

	trees := map[int]tree{}
	for _, workers := range []int{1, lio.DefaultApplyWorkers} {
		plan := lio.NewPlan(observe(t, f), st)
		t0 := time.Now()
		res, err := lio.ApplyWith(context.Background(), f, plan, lio.ApplyOptions{Workers: workers})
		if err != nil {
			t.Fatalf("workers=%d: %v\nfailed: %v", workers, err, res.Failed)
		}
		step(t, start, "workers=%d: built with %d operations in %.2fs", workers, len(res.Done), time.Since(t0).Seconds())
		if again := lio.NewPlan(observe(t, f), st); !again.Empty() {
			t.Fatalf("workers=%d: not at the fixed point:\n%s", workers, again)
		}
		trees[workers] = dumpTree(t)
		trees[workers].write(t, filepath.Join(os.Getenv("VM_OUT"), fmt.Sprintf("concurrent-%d-configfs.txt", workers)))

		down := st.ForTeardown()
		plan = lio.NewPlan(observe(t, f), down)
		t0 = time.Now()
		if res, err := lio.ApplyWith(context.Background(), f, plan, lio.ApplyOptions{Workers: workers}); err != nil {
			t.Fatalf("workers=%d teardown: %v\nfailed: %v", workers, err, res.Failed)
		}
		step(t, start, "workers=%d: torn down with %d operations in %.2fs", workers, len(plan.Ops), time.Since(t0).Seconds())
		if again := lio.NewPlan(observe(t, f), down); !again.Empty() {
			t.Fatalf("workers=%d: teardown not at the fixed point:\n%s", workers, again)
		}
		if left := observe(t, f); len(left.Targets) != 0 {
			t.Fatalf("workers=%d: targets left: %+v", workers, left.Targets)
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
