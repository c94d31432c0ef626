package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Rejection is a request refused by a mutation. Msg is upstream's message text
// verbatim, because the Dashboard and gwcli show it to users; Kind is one of
// the package sentinels so callers can choose a status with errors.Is.
type Rejection struct {
	Msg  string
	Kind error
}

func (r *Rejection) Error() string { return r.Msg }
func (r *Rejection) Unwrap() error { return r.Kind }

// iqnPattern is rtslib's normalize_wwn test for the "iqn" type; re.match
// anchors only at the start, hence no trailing anchor.
var iqnPattern = regexp.MustCompile(`^iqn\.[0-9]{4}-[0-1][0-9]\..*\..*`)

// ErrInvalidIQN is rtslib's message for a name that is not an iSCSI qualified
// name; upstream appends it to "Invalid iqn <x> - ".
var ErrInvalidIQN = errors.New("WWN not valid as: iqn")

// NormalizeIQN trims and lower-cases an initiator or target name and checks
// it the way LIO's tooling (rtslib normalize_wwn(['iqn'])) does, then
// against ValidateIQN, so a name we accept is never one the kernel side
// refuses later. rtslib's refusal is ErrInvalidIQN itself (upstream's
// text); a ValidateIQN refusal is a *NameError wrapping it.
func NormalizeIQN(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		// ToLower would turn the bad bytes into U+FFFD and hide them.
		return "", iqnErr(raw, "is not valid UTF-8 (RFC 3720 3.2.6.2)")
	}
	s := strings.ToLower(strings.TrimSpace(raw))
	if !iqnPattern.MatchString(s) || strings.ContainsAny(s, " _") {
		return "", ErrInvalidIQN
	}
	// rtslib's test leaves most of the name free; the iSCSI name rules
	// close it, so nothing that cannot be an LIO directory gets stored.
	if err := ValidateIQN(s); err != nil {
		return "", err
	}
	return s, nil
}

// Python's \w is Unicode-aware, and upstream's class also admits a backslash
// (`\\` inside a raw string); both are kept so names valid on Python gateways
// stay valid here. Length is checked separately, in characters.
var (
	chapUserPattern = regexp.MustCompile(`^[\p{L}\p{N}_\\.:@-]+$`)
	chapPassPattern = regexp.MustCompile(`^[\p{L}\p{N}_@/-]+$`)
)

// ValidCredentials applies upstream's CHAP rules (valid_credentials) and
// returns the first violation's message, or "" when the four values are
// acceptable. All four empty means "no CHAP".
func ValidCredentials(username, password, mutualUsername, mutualPassword string) string {
	switch {
	case username != "" && password == "":
		return "Password is required"
	case username == "" && (password != "" || mutualUsername != ""):
		return "Username is required"
	case mutualUsername != "" && mutualPassword == "":
		return "Mutual password is required"
	case mutualUsername == "" && mutualPassword != "":
		return "Mutual username is required"
	}
	checks := []struct {
		value, what string
		min, max    int
		re          *regexp.Regexp
	}{
		{username, "username", 8, 64, chapUserPattern},
		{mutualUsername, "mutual username", 8, 64, chapUserPattern},
		{password, "password", 12, 16, chapPassPattern},
		{mutualPassword, "mutual password", 12, 16, chapPassPattern},
	}
	for _, c := range checks {
		if c.value == "" {
			continue
		}
		n := utf8.RuneCountInString(c.value)
		switch {
		case n < c.min:
			return fmt.Sprintf("Minimum length of %s is %d characters", c.what, c.min)
		case n > c.max:
			return fmt.Sprintf("Maximum length of %s is %d characters", c.what, c.max)
		case !c.re.MatchString(c.value):
			return "Invalid " + c.what
		}
	}
	return ""
}

// RemoveTarget deletes targets[iqn], a null entry too.
func (d *Doc) RemoveTarget(iqn string) error {
	if _, ok := d.Targets[iqn]; !ok {
		return fmt.Errorf("config: target %q: %w", iqn, ErrNotFound)
	}
	d.dropTarget(iqn)
	return nil
}

// RemoveTargetGateway takes gateway gw out of target iqn the way upstream's
// "clearconfig" does on each gateway: drop its portal and its portal IPs from
// ip_list, delete the target once no portal or IP is left (or if it never had
// portals), and forget the gateway once no target uses it.
func (d *Doc) RemoveTargetGateway(iqn, gw string, now time.Time) error {
	t, err := d.target(iqn)
	if err != nil {
		return err
	}
	if len(t.Portals) == 0 {
		d.dropTarget(iqn)
		return nil
	}
	t = d.MutTarget(iqn)
	if p := t.Portals[gw]; p != nil {
		t.IPList = slices.DeleteFunc(slices.Clone(t.IPList), func(ip string) bool {
			return slices.Contains(p.PortalIPAddresses, ip)
		})
	}
	delete(t.Portals, gw)
	if len(t.IPList) == 0 || len(t.Portals) == 0 {
		d.dropTarget(iqn)
	} else {
		t.stamp(now)
	}
	for _, other := range d.Targets {
		if other != nil && other.Portals[gw] != nil {
			return nil
		}
	}
	d.dropGateway(gw)
	return nil
}

// SetTargetControls replaces a target's stored control overrides.
func (d *Doc) SetTargetControls(iqn string, controls map[string]any, now time.Time) error {
	t, err := d.mutTarget(iqn)
	if err != nil {
		return err
	}
	t.Controls = controls
	t.stamp(now)
	return nil
}

// SetTargetAuth replaces a target's (TPG) CHAP block.
func (d *Doc) SetTargetAuth(iqn string, a Auth, now time.Time) error {
	t, err := d.mutTarget(iqn)
	if err != nil {
		return err
	}
	t.Auth = a
	t.stamp(now)
	return nil
}

// SetACLEnabled switches a target between initiator ACLs and demo mode.
func (d *Doc) SetACLEnabled(iqn string, enabled bool, now time.Time) error {
	t, err := d.mutTarget(iqn)
	if err != nil {
		return err
	}
	t.ACLEnabled = enabled
	t.stamp(now)
	return nil
}

// SetClientAuth replaces a client's CHAP block.
func (d *Doc) SetClientAuth(targetIQN, clientIQN string, a Auth, now time.Time) error {
	if _, err := d.target(targetIQN); err != nil {
		return err
	}
	c := d.MutClient(targetIQN, clientIQN)
	if c == nil {
		return fmt.Errorf("config: client %q of target %q: %w", clientIQN, targetIQN, ErrNotFound)
	}
	c.Auth = a
	d.Targets[targetIQN].stamp(now)
	return nil
}

// Group messages, upstream's text. Every validation failure of a group change
// is reported with the generic GroupValidationFailed, as upstream overwrites
// the specific reason; the specific one is in the Rejection's wrapped detail.
const (
	GroupValidationFailed = "Group request failed validation"
	GroupDuplicateMembers = "Member must contain unique clients - no duplication"
	GroupDoesNotExist     = "Group name requested does not exist"
)

// GroupError is a refused group change: Msg is what the API reports, Detail
// the specific reason upstream logs.
type GroupError struct {
	Msg    string
	Detail string
}

func (e *GroupError) Error() string {
	if e.Detail == "" {
		return e.Msg
	}
	return e.Msg + ": " + e.Detail
}

func (e *GroupError) Unwrap() error { return ErrConflict }

// ApplyGroup makes host group name of target targetIQN hold exactly members
// and disks, as upstream's Group.apply does: a new group is seeded, added
// members must be clients without LUNs and without a group, added disks must
// be exported by the target, each added disk gets the target's LUN id when it
// is free within the group (else the lowest free id), every member's LUN map
// becomes the group's disks, and removed members leave the group keeping
// their LUNs. It reports whether the document changed.
func (d *Doc) ApplyGroup(targetIQN, name string, members, disks []string, now time.Time) (bool, error) {
	t, err := d.target(targetIQN)
	if err != nil {
		return false, err
	}
	g, exists := t.Groups[name]
	if !exists || g == nil {
		if hasDuplicates(members) {
			return false, &GroupError{Msg: GroupDuplicateMembers}
		}
		g = NewGroup()
	}
	members = dedupe(members)
	disks = dedupe(disks)
	curDisks := sortedKeys(g.Disks)
	if exists && sameSet(members, g.Members) && sameSet(disks, curDisks) {
		return false, nil
	}
	addedM, removedM := listDiff(g.Members, members)
	addedD, removedD := listDiff(curDisks, disks)

	fail := func(format string, args ...any) (bool, error) {
		return false, &GroupError{Msg: GroupValidationFailed, Detail: fmt.Sprintf(format, args...)}
	}
	for _, m := range addedM {
		c := t.Clients[m]
		switch {
		case c == nil:
			return fail("client '%s' doesn't exist", m)
		case len(c.Luns) > 0:
			return fail("Client '%s' already has luns. Only clients without prior lun maps can be added to a group", m)
		case c.GroupName != "":
			return fail("Client already assigned to %s - a client can only belong to one host group", c.GroupName)
		}
	}
	for _, disk := range addedD {
		if _, ok := t.Disks[disk]; !ok {
			return fail("disk '%s' doesn't exist", disk)
		}
	}

	gd := cloneMap(g.Disks, LunRef.clone)
	if gd == nil {
		gd = map[string]LunRef{}
	}
	for _, disk := range addedD {
		lun, ok := nextGroupLun(gd, t.Disks[disk].LunID)
		if !ok {
			return fail("no free LUN id for disk '%s'", disk)
		}
		gd[disk] = LunRef{LunID: lun}
	}
	for _, disk := range removedD {
		delete(gd, disk)
	}
	t = d.MutTarget(targetIQN)
	if len(addedD) > 0 || len(removedD) > 0 {
		for _, m := range members {
			if c := d.MutClient(targetIQN, m); c != nil {
				c.Luns = cloneMap(gd, LunRef.clone)
			}
		}
	}
	for _, m := range addedM {
		c := d.MutClient(targetIQN, m)
		c.GroupName = name
		c.Luns = cloneMap(gd, LunRef.clone)
	}
	for _, m := range removedM {
		if c := d.MutClient(targetIQN, m); c != nil {
			c.GroupName = ""
		}
	}
	if members == nil {
		members = []string{}
	}
	if t.Groups[name] != nil {
		g = d.MutGroup(targetIQN, name)
	} else {
		g.own = d.mark()
	}
	g.Members = members
	g.Disks = gd
	if t.Groups == nil {
		t.Groups = map[string]*Group{}
	}
	t.Groups[name] = g
	t.stamp(now)
	return true, nil
}

// RemoveGroup deletes a host group; its members leave it but keep their LUN
// mappings, as upstream's purge does.
func (d *Doc) RemoveGroup(targetIQN, name string, now time.Time) error {
	t, err := d.target(targetIQN)
	if err != nil {
		return err
	}
	g := t.Groups[name]
	if g == nil {
		return &Rejection{Msg: GroupDoesNotExist, Kind: ErrNotFound}
	}
	for _, m := range g.Members {
		if c := d.MutClient(targetIQN, m); c != nil {
			c.GroupName = ""
		}
	}
	t = d.MutTarget(targetIQN)
	delete(t.Groups, name)
	t.stamp(now)
	return nil
}

// nextGroupLun is upstream's Group._next_lun: the preferred (target-level)
// id if the group does not use it, else the lowest id the group leaves free.
func nextGroupLun(used map[string]LunRef, preferred int) (int, bool) {
	taken := map[int]bool{}
	for _, l := range used {
		taken[l.LunID] = true
	}
	if preferred >= 0 && preferred <= MaxLunID && !taken[preferred] {
		return preferred, true
	}
	for id := 0; id <= MaxLunID; id++ {
		if !taken[id] {
			return id, true
		}
	}
	return 0, false
}

func hasDuplicates(s []string) bool { return len(dedupe(s)) != len(s) }

func dedupe(s []string) []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	for _, v := range b {
		if !slices.Contains(a, v) {
			return false
		}
	}
	return true
}

// listDiff is upstream's ListComparison: what is in next but not in cur, and
// what is in cur but not in next, each in list order.
func listDiff(cur, next []string) (added, removed []string) {
	for _, v := range next {
		if !slices.Contains(cur, v) {
			added = append(added, v)
		}
	}
	for _, v := range cur {
		if !slices.Contains(next, v) {
			removed = append(removed, v)
		}
	}
	return added, removed
}
