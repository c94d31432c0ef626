//go:build vmtest

package vm

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"ceph-iscsi/lio"
)

// TestTCMURunnerOpenFileRoom: the check that keeps a plan from enabling
// user:rbd disks tcmu-runner cannot open (the kernel would wait for its
// answer for good) reads the real runner's limit and descriptor table: with
// its limit lowered to what it has open plus a few, one more image is
// refused, naming the limit; with the limit back, it passes.
func TestTCMURunnerOpenFileRoom(t *testing.T) {
	pid := tcmuRunner(t)
	if pid == 0 {
		t.Skip("no tcmu-runner in this guest (CEPH_ISCSI_VM_RBD=0)")
	}
	if err := lio.CheckTCMURunner("/proc", 1); err != nil {
		t.Fatalf("tcmu-runner as the guest starts it (the packaged unit's limit): %v", err)
	}
	var saved unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &saved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &saved, nil); err != nil {
			t.Errorf("restoring tcmu-runner's open-file limit: %v", err)
		}
	})
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := unix.Rlimit{Cur: uint64(len(fds) + 4), Max: saved.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatal(err)
	}
	err = lio.CheckTCMURunner("/proc", 1)
	if !errors.Is(err, lio.ErrTCMURunnerFiles) {
		t.Fatalf("tcmu-runner with %d open files and a limit of %d: %v, want ErrTCMURunnerFiles", len(fds), low.Cur, err)
	}
	t.Logf("refused as it should be: %v", err)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &saved, nil); err != nil {
		t.Fatal(err)
	}
	if err := lio.CheckTCMURunner("/proc", 1); err != nil {
		t.Fatalf("with its limit back: %v", err)
	}
}
