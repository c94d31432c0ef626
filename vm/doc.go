// Package vm holds the real-kernel tests of package lio. They need configfs,
// LIO, TCMU and an iSCSI initiator, which this project's build machines lack,
// so they run inside a throw-away qemu guest booting Debian's kernel:
//
//	vm/test.sh            # make vm-test: build, prepare Ceph, boot, test
//	vm/run.sh SCRIPT ...  # the generic runner: any script as root in the guest
//
// The tests are guarded by the vmtest build tag (go test -c -tags
// pacific,vmtest) and refuse to run outside the guest: they write to
// /sys/kernel/config and log in with open-iscsi. Plain go test ./... only
// compiles this file.
package vm
