package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
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
		return &fs.PathError{Op: op, Path: f.root + "/" + quoteName(rel), Err: fmt.Errorf("%w: %s", ErrUnsafePath, why)}
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

// NameRules are the grammars Build checks names against before they
// become configfs directory names. The gateway passes the configuration's
// (RFC 3720 iSCSI names, safe object names), which lio need not know; a nil
// rule checks only that the name is one path component configfs can hold.
type NameRules struct {
	IQN    func(name string) error // target IQNs and initiator names
	Object func(name string) error // storage object names
}

// maxIQNBytes is RFC 3720's limit, what LIO's ISCSI_IQN_LEN holds.
const maxIQNBytes = 223

func (r NameRules) iqn(name string) error {
	if r.IQN != nil {
		return r.IQN(name)
	}
	return componentRule(name, maxIQNBytes)
}

func (r NameRules) object(name string) error {
	if r.Object != nil {
		return r.Object(name)
	}
	return componentRule(name, nameMax)
}

// componentRule refuses a name that cannot be one configfs path component.
func componentRule(name string, maxLen int) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%s: %w: not a name", quoteName(name), ErrUnsafePath)
	case len(name) > maxLen:
		return fmt.Errorf("%s: %w: %d bytes long, at most %d are allowed", quoteName(name), ErrUnsafePath, len(name), maxLen)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%s: %w: has '/' or NUL", quoteName(name), ErrUnsafePath)
	}
	return nil
}

// checkTargetName refuses a target IQN or an initiator name that is not a
// valid iSCSI name: it becomes one configfs directory, so '/', NUL, "..",
// control characters or an overlong name must never reach the FS.
func checkTargetName(rules NameRules, what, name string) error {
	if err := rules.iqn(name); err != nil {
		return fmt.Errorf("%s %s: skipped, invalid name: %w", what, quoteName(name), err)
	}
	return nil
}

// checkObjectName refuses a storage object name that cannot be one
// configfs directory name.
func checkObjectName(rules NameRules, disk, name string) error {
	if err := rules.object(name); err != nil {
		return fmt.Errorf("disk %s: skipped, invalid storage object name: %w", quoteName(disk), err)
	}
	return nil
}

// quoteName quotes a name for a message as package config's QuoteName
// does (a gateway test holds them equal): control and invisible characters
// escaped, a very long name cut, with its length.
func quoteName(s string) string {
	const show = 256
	if len(s) <= show {
		return strconv.QuoteToASCII(s)
	}
	cut := show
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// checkPortalIP refuses a portal address that is not an IP address: the
// np directory is named after it.
func checkPortalIP(iqn, ip string) error {
	if _, err := netip.ParseAddr(ip); err != nil {
		// One target's problem: the target is held, the others converge.
		return &ObjectError{Target: iqn, Err: fmt.Errorf("target %s: portal %s skipped: not an IP address", quoteName(iqn), quoteName(ip))}
	}
	return nil
}
