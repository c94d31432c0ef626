package lio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserBackstoreEnables(t *testing.T) {
	user := State{StorageObjects: []StorageObject{
		{Plugin: PluginUser, Name: "rbd.x", Config: "rbd/rbd/x", Size: 1 << 20},
		{Plugin: PluginUser, Name: "rbd.y", Config: "rbd/rbd/y", Size: 1 << 20},
	}}
	if n := NewPlan(State{}, user).UserBackstoreEnables(); n != 2 {
		t.Errorf("creating two user backstores: UserBackstoreEnables = %d, want 2", n)
	}
	if n := NewPlan(State{}, State{}).UserBackstoreEnables(); n != 0 {
		t.Errorf("empty plan: UserBackstoreEnables = %d", n)
	}
}

// procLimits is the format of /proc/PID/limits (Linux 6.1), head and the
// open-files line.
const procLimits = `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            %s                 524288               files     
Max locked memory         8388608              8388608              bytes     
`

func TestCheckTCMURunner(t *testing.T) {
	proc := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(proc, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1/comm", "init\n")
	if err := CheckTCMURunner(proc, 1); !errors.Is(err, ErrNoTCMURunner) {
		t.Fatalf("without tcmu-runner: %v", err)
	}
	write("42/comm", "tcmu-runner\n")
	if err := CheckTCMURunner(proc, 1); err != nil {
		t.Fatalf("with tcmu-runner, its limits unreadable: %v", err)
	}
	// 1024 open files, 100 in use: room for (1024-100)/16 = 57 images
	write("42/limits", fmt.Sprintf(procLimits, "1024"))
	for i := range 100 {
		write(fmt.Sprintf("42/fd/%d", i), "")
	}
	if err := CheckTCMURunner(proc, 57); err != nil {
		t.Fatalf("57 images within the limit: %v", err)
	}
	err := CheckTCMURunner(proc, 58)
	if !errors.Is(err, ErrTCMURunnerFiles) {
		t.Fatalf("58 images beyond the limit: %v", err)
	}
	for _, want := range []string{"100 of its 1024 open files", "58 user:rbd disks", "LimitNOFILE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	write("42/limits", fmt.Sprintf(procLimits, "unlimited"))
	if err := CheckTCMURunner(proc, 1<<20); err != nil {
		t.Fatalf("unlimited: %v", err)
	}
}

// TestOpenFileLimitOfThisKernel: the limits file of the running kernel
// parses.
func TestOpenFileLimitOfThisKernel(t *testing.T) {
	limit, err := openFileLimit("/proc/self/limits")
	if err != nil || limit <= 0 {
		t.Fatalf("open-file limit of this process: %d, %v", limit, err)
	}
}
