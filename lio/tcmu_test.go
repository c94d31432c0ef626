package lio

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestEnablesUserBackstores(t *testing.T) {
	user := State{StorageObjects: []StorageObject{{Plugin: PluginUser, Name: "rbd.x", Config: "rbd/rbd/x", Size: 1 << 20}}}
	if !NewPlan(State{}, user).EnablesUserBackstores() {
		t.Error("creating a user backstore: EnablesUserBackstores = false")
	}
	if NewPlan(State{}, State{}).EnablesUserBackstores() {
		t.Error("empty plan: EnablesUserBackstores = true")
	}
}

func TestCheckTCMURunner(t *testing.T) {
	proc := t.TempDir()
	write := func(pid, comm string) {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "init")
	if err := CheckTCMURunner(proc); !errors.Is(err, ErrNoTCMURunner) {
		t.Fatalf("without tcmu-runner: %v", err)
	}
	write("42", "tcmu-runner")
	if err := CheckTCMURunner(proc); err != nil {
		t.Fatalf("with tcmu-runner: %v", err)
	}
}
