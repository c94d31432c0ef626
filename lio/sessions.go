package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Session is an initiator's iSCSI session on one target of this gateway, as
// the kernel reports it in the node ACL's info file.
type Session struct {
	Initiator string `json:"initiator"`
	Alias     string `json:"alias"`
	// State is the session state without the kernel's TARG_SESS_STATE_
	// prefix ("LOGGED_IN", "FAILED", ...), as rtslib reports it.
	State string `json:"state"`
	// Addresses are the initiator addresses of the session's connections.
	Addresses []string `json:"ip_address"`
}

// TargetSessions reads the number of sessions of target iqn from its
// fabric statistics, as upstream's get_num_sessions does; a target that is
// not in LIO has none. The emulated configfs has no statistics: 0.
func TargetSessions(f FS, iqn string) (int, error) {
	f = f.Live() // sessions come and go behind any Model's back
	p := targetPath(iqn)
	if !f.exists(p) {
		return 0, nil
	}
	v, err := f.read(p + "/fabric_statistics/iscsi_instance/sessions")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lio: sessions of %s: %w", iqn, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("lio: sessions of %s: unexpected value %q", iqn, v)
	}
	return n, nil
}

// ClientSession returns the session of initiator client on target iqn, and
// whether there is one. As upstream's get_client_info, only enabled TPGs
// count, and the connection addresses are reported only for a logged-in
// session; with several TPGs, the highest tag with a session wins.
func ClientSession(f FS, iqn, client string) (Session, bool, error) {
	f = f.Live() // sessions come and go behind any Model's back
	var out Session
	found := false
	if !f.exists(targetPath(iqn)) {
		return out, false, nil
	}
	dirs, _, _, err := f.entries(targetPath(iqn))
	if err != nil {
		return out, false, fmt.Errorf("lio: sessions of %s: %w", iqn, err)
	}
	var tags []int
	for _, d := range dirs {
		if m := tpgRe.FindStringSubmatch(d); m != nil {
			tags = append(tags, atoi(m[1]))
		}
	}
	slices.Sort(tags)
	for _, tag := range tags {
		tp := tpgPath(iqn, tag)
		if readOr(f, tp+"/enable") != "1" {
			continue
		}
		// Only a listed ACL is read: a client name that cannot be a
		// directory name (too long, a slash) has no ACL, not an error.
		acls, _, _, err := f.entries(tp + "/acls")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return out, false, fmt.Errorf("lio: session of %s on %s: %w", client, iqn, err)
		}
		if !slices.Contains(acls, client) {
			continue
		}
		info, err := f.read(tp + "/acls/" + client + "/info")
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, false, fmt.Errorf("lio: session of %s on %s: %w", client, iqn, err)
		}
		if s, ok := ParseACLInfo(info); ok {
			out, found = s, true
		}
	}
	return out, found, nil
}

// ParseACLInfo parses the info file of a node ACL (the kernel's
// lio_target_nacl_info_show), the way rtslib's NodeACL.session does. It
// reports false when the initiator has no active session.
func ParseACLInfo(info string) (Session, bool) {
	lines := strings.Split(strings.ReplaceAll(info, "\x00", ""), "\n")
	if len(lines) == 0 || strings.HasPrefix(lines[0], "No active iSCSI Session") || strings.TrimSpace(info) == "" {
		return Session{}, false
	}
	var s Session
	for _, line := range lines {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "InitiatorName:"):
			s.Initiator = strings.TrimSpace(strings.TrimPrefix(line, "InitiatorName:"))
		case strings.HasPrefix(line, "InitiatorAlias:"):
			s.Alias = strings.TrimSpace(strings.TrimPrefix(line, "InitiatorAlias:"))
		case strings.Contains(line, "TARG_SESS_STATE_"):
			_, rest, _ := strings.Cut(line, "TARG_SESS_STATE_")
			s.State = firstField(rest)
		case strings.HasPrefix(line, "Address "):
			if a := firstField(strings.TrimPrefix(line, "Address ")); a != "" && !slices.Contains(s.Addresses, a) {
				s.Addresses = append(s.Addresses, a)
			}
		}
	}
	if s.State != "LOGGED_IN" {
		s.Addresses = nil
	}
	return s, true
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}
