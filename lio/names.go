package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"

	"ceph-iscsi/config"
)

// ErrUnsafePath is what every FS operation returns for a path that could
// leave the root or that configfs cannot hold: an empty, "." or ".."
// component, a NUL, or a component longer than NAME_MAX. It is checked on
// the whole path because a '/' inside a name is indistinguishable from a
// separator once joined; Build refuses such names before they get there.
var ErrUnsafePath = errors.New("unsafe configfs path")

const nameMax = 255

// check refuses rel unless it is a clean path below the root.
func (f FS) check(op, rel string) error {
	bad := func(why string) error {
		// Not joined: Join would clean the ".." away and show the escape's
		// destination instead of the path that was refused.
		return &fs.PathError{Op: op, Path: f.root + "/" + config.QuoteName(rel), Err: fmt.Errorf("%w: %s", ErrUnsafePath, why)}
	}
	if rel == "" {
		return bad("empty")
	}
	for _, c := range strings.Split(rel, "/") {
		switch {
		case c == "":
			return bad("empty component")
		case c == "." || c == "..":
			return bad("relative component " + c)
		case strings.IndexByte(c, 0) >= 0:
			return bad("NUL byte")
		case len(c) > nameMax:
			return bad(fmt.Sprintf("component of %d bytes", len(c)))
		}
	}
	return nil
}

// checkTargetName refuses a target IQN or an initiator name that is not a
// valid iSCSI name: it becomes one configfs directory, so '/', NUL, "..",
// control characters or an overlong name must never reach the FS.
func checkTargetName(what, name string) error {
	if err := config.ValidateIQN(name); err != nil {
		return fmt.Errorf("%s %s: skipped, invalid name: %w", what, config.QuoteName(name), err)
	}
	return nil
}

// checkObjectName refuses a storage object name that cannot be one
// configfs directory name.
func checkObjectName(disk, name string) error {
	if err := config.ValidateSafeName(name); err != nil {
		return fmt.Errorf("disk %s: skipped, invalid storage object name: %w", config.QuoteName(disk), err)
	}
	return nil
}

// checkPortalIP refuses a portal address that is not an IP address: the
// np directory is named after it.
func checkPortalIP(iqn, ip string) error {
	if _, err := netip.ParseAddr(ip); err != nil {
		// One target's problem: the target is held, the others converge.
		return &ObjectError{Target: iqn, Err: fmt.Errorf("target %s: portal %s skipped: not an IP address", config.QuoteName(iqn), config.QuoteName(ip))}
	}
	return nil
}
