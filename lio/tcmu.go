package lio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoTCMURunner means a plan would enable a user (TCMU) backstore while no
// tcmu-runner serves it.
var ErrNoTCMURunner = errors.New("tcmu-runner is not running")

// EnablesUserBackstores reports whether applying p enables a user (TCMU) storage
// object. Once tcmu-runner has run in a boot, enabling one while no runner is up blocks
// the writing process in the kernel for good (even SIGKILL does not end it), so such a
// plan must only be applied with tcmu-runner alive.
func (p Plan) EnablesUserBackstores() bool {
	for _, op := range p.Ops {
		if op.Kind == OpEnable && strings.HasPrefix(op.Path, "target/core/user_") {
			return true
		}
	}
	return false
}

// CheckTCMURunner returns ErrNoTCMURunner, with what to do about it, when no process
// named tcmu-runner runs according to the proc filesystem at procRoot ("/proc").
func CheckTCMURunner(procRoot string) error {
	comms, err := filepath.Glob(filepath.Join(procRoot, "[0-9]*", "comm"))
	if err != nil {
		return fmt.Errorf("looking for tcmu-runner: %w", err)
	}
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err == nil && strings.TrimSpace(string(b)) == "tcmu-runner" {
			return nil
		}
	}
	return fmt.Errorf("%w: user:rbd disks need it to serve their I/O, and enabling one without it can hang this process in the kernel; start it (systemctl start tcmu-runner) and retry", ErrNoTCMURunner)
}
