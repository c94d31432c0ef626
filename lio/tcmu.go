package lio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNoTCMURunner means a plan would enable a user (TCMU) backstore while no
// tcmu-runner serves it.
var ErrNoTCMURunner = errors.New("tcmu-runner is not running")

// UserBackstoreEnables counts the user (TCMU) storage objects applying p
// enables. Once tcmu-runner has run in a boot, enabling one while no runner
// is up blocks the writing process in the kernel for good (even SIGKILL does
// not end it), and so does enabling one that tcmu-runner cannot open, so
// such a plan must only be applied with tcmu-runner alive and able to open
// that many more images (CheckTCMURunner).
func (p Plan) UserBackstoreEnables() int {
	n := 0
	for _, op := range p.Ops {
		if op.Kind == OpEnable && strings.HasPrefix(op.Path, "target/core/user_") {
			n++
		}
	}
	return n
}

// ErrTCMURunnerFiles means tcmu-runner lacks the open files to open the
// images a plan would enable.
var ErrTCMURunnerFiles = errors.New("tcmu-runner is short of open files")

// tcmuFilesPerImage is what tcmu-runner holds open per user:rbd image: its
// rbd handler opens each image with its own RADOS connection (messenger
// workers' epoll and event descriptors, the monitor and OSD sockets, an
// admin socket) besides the device's uio file: 14 per image in the VM
// guest (16 images took it from 9 descriptors to 233).
const tcmuFilesPerImage = 16

// CheckTCMURunner returns ErrNoTCMURunner, with what to do about it, when no
// process named tcmu-runner runs according to the proc filesystem at procRoot
// ("/proc"), and ErrTCMURunnerFiles when its open-file limit leaves no room to
// open enables more images. A limit or descriptor table it cannot read is not
// held against it.
func CheckTCMURunner(procRoot string, enables int) error {
	pid, err := tcmuRunnerPID(procRoot)
	if err != nil {
		return err
	}
	limit, err := openFileLimit(filepath.Join(procRoot, pid, "limits"))
	if err != nil {
		return nil
	}
	fds, err := os.ReadDir(filepath.Join(procRoot, pid, "fd"))
	if err != nil {
		return nil
	}
	if need := len(fds) + enables*tcmuFilesPerImage; need > limit {
		return fmt.Errorf("%w: it has %d of its %d open files in use and each of the %d user:rbd disks to enable needs about %d (the kernel would wait for it for good); raise its limit (the packaged tcmu-runner.service sets LimitNOFILE=1000000) and restart it",
			ErrTCMURunnerFiles, len(fds), limit, enables, tcmuFilesPerImage)
	}
	return nil
}

func tcmuRunnerPID(procRoot string) (string, error) {
	comms, err := filepath.Glob(filepath.Join(procRoot, "[0-9]*", "comm"))
	if err != nil {
		return "", fmt.Errorf("looking for tcmu-runner: %w", err)
	}
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err == nil && strings.TrimSpace(string(b)) == "tcmu-runner" {
			return filepath.Base(filepath.Dir(c)), nil
		}
	}
	return "", fmt.Errorf("%w: user:rbd disks need it to serve their I/O, and enabling one without it can hang this process in the kernel; start it (systemctl start tcmu-runner) and retry", ErrNoTCMURunner)
}

// openFileLimit reads the soft "Max open files" of a proc limits file.
func openFileLimit(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		if f[0] == "unlimited" {
			return math.MaxInt, nil
		}
		return strconv.Atoi(f[0])
	}
	return 0, fmt.Errorf("%s: no open-file limit", path)
}
