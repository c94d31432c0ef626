package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIQNBytes is the longest iSCSI name RFC 3720 (3.2.6.1) allows, in bytes
// of its UTF-8 encoding; LIO's ISCSI_IQN_LEN (224) holds it and its NUL.
const MaxIQNBytes = 223

// MaxNameBytes bounds the other names that become configfs directory names,
// URL path segments or command arguments: NAME_MAX of a path component.
const MaxNameBytes = 255

// NameError is a name that breaks its grammar. Rule says which rule, in words
// an operator can act on; Kind is the sentinel for errors.Is
// (ErrInvalidIQN for iSCSI names, ErrInvalidName for the others).
type NameError struct {
	Name string
	Rule string
	Kind error
}

func (e *NameError) Error() string { return QuoteName(e.Name) + " " + e.Rule }
func (e *NameError) Unwrap() error { return e.Kind }

// ErrInvalidName is the sentinel of a NameError for a name that is not an
// iSCSI name (host group, gateway, disk, backstore object).
var ErrInvalidName = errors.New("invalid name")

// QuoteName quotes a name for a message or a log line: control and
// invisible characters are escaped, and a very long name is cut, with its
// length, so one hostile name cannot flood a log.
func QuoteName(s string) string {
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

func iqnErr(name, format string, args ...any) error {
	return &NameError{Name: name, Rule: fmt.Sprintf(format, args...), Kind: ErrInvalidIQN}
}

// ValidateIQN checks an iSCSI name, as stored (already normalised), against
// RFC 3720 3.2.6 and the stringprep profile of RFC 3722: at most 223 bytes
// of valid UTF-8, lower case, and one of
//
//   - iqn.yyyy-mm.<reversed domain name>[:<anything allowed>], the date a
//     real month, the domain dot-separated non-empty labels;
//   - eui.<16 hex digits>, as rtslib's normalize_wwn("eui") accepts;
//   - naa.<16 or 32 hex digits> (RFC 3980).
//
// Allowed characters are a-z, 0-9, '-', '.', ':' and, beyond ASCII,
// lower-case or caseless letters, digits and combining marks: what
// nameprep can output. Controls, spaces, format characters (zero-width,
// bidi), symbols, punctuation and private-use or unassigned code points
// are refused, as are '/' and NUL, so a valid name is always a single,
// safe configfs path component.
//
// The API refuses new names that fail it, the document validation refuses
// to commit them, and the reconciler skips objects whose names fail it.
func ValidateIQN(name string) error {
	switch {
	case name == "":
		return iqnErr(name, "is empty")
	case len(name) > MaxIQNBytes:
		return iqnErr(name, "is %d bytes long; an iSCSI name is at most %d bytes (RFC 3720 3.2.6.1)", len(name), MaxIQNBytes)
	case !utf8.ValidString(name):
		return iqnErr(name, "is not valid UTF-8 (RFC 3720 3.2.6.2)")
	}
	for i, r := range name {
		if msg := iqnCharRule(r); msg != "" {
			return iqnErr(name, "has %U at byte %d: %s (RFC 3722)", r, i, msg)
		}
	}
	switch {
	case strings.HasPrefix(name, "iqn."):
		return validIQNType(name)
	case strings.HasPrefix(name, "eui."):
		if !isHex(name[4:], 16) {
			return iqnErr(name, "is not eui. followed by 16 hex digits (RFC 3720 3.2.6.3.2)")
		}
		return nil
	case strings.HasPrefix(name, "naa."):
		if !isHex(name[4:], 16) && !isHex(name[4:], 32) {
			return iqnErr(name, "is not naa. followed by 16 or 32 hex digits (RFC 3980)")
		}
		return nil
	}
	return iqnErr(name, `does not start with "iqn.", "eui." or "naa." (RFC 3720 3.2.6.3)`)
}

// iqnCharRule says why r may not appear in an iSCSI name, or "".
func iqnCharRule(r rune) string {
	if r < utf8.RuneSelf {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.', r == ':':
			return ""
		case r >= 'A' && r <= 'Z':
			return "upper case is not allowed"
		}
		return "only a-z, 0-9, '-', '.' and ':' are allowed in ASCII"
	}
	switch {
	case unicode.IsUpper(r) || unicode.IsTitle(r):
		return "upper case is not allowed"
	case unicode.IsLetter(r), unicode.IsDigit(r), unicode.In(r, unicode.Mn, unicode.Mc):
		return ""
	}
	return "only letters, digits and combining marks are allowed beyond ASCII"
}

func validIQNType(name string) error {
	rest := name[len("iqn."):]
	if len(rest) < 8 || !isDigits(rest[:4]) || rest[4] != '-' || !isDigits(rest[5:7]) || rest[7] != '.' {
		return iqnErr(name, "does not continue iqn. with a date yyyy-mm and a dot (RFC 3720 3.2.6.3.1)")
	}
	if m := (rest[5]-'0')*10 + rest[6] - '0'; m < 1 || m > 12 {
		return iqnErr(name, "has month %s; it must be 01 to 12 (RFC 3720 3.2.6.3.1)", rest[5:7])
	}
	authority, _, _ := strings.Cut(rest[8:], ":")
	if authority == "" {
		return iqnErr(name, "has no naming authority (reversed domain name) after the date (RFC 3720 3.2.6.3.1)")
	}
	for _, label := range strings.Split(authority, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return iqnErr(name, "has naming authority %q, which is not a reversed domain name: labels must be non-empty and not start or end with '-' (RFC 3720 3.2.6.3.1)", authority)
		}
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func nameErr(name, format string, args ...any) error {
	return &NameError{Name: name, Rule: fmt.Sprintf(format, args...), Kind: ErrInvalidName}
}

// ValidateSafeName is the rule for names that are not iSCSI names but still
// end up as a URL path segment, a directory name or a command argument
// (host group names, snapshot names, disk pools and images, backstore
// object names): 1 to 255 bytes of valid UTF-8, no '/', no "." or "..",
// and no control, format, separator (space), private-use or unassigned
// characters.
func ValidateSafeName(name string) error {
	switch {
	case name == "":
		return nameErr(name, "is empty")
	case len(name) > MaxNameBytes:
		return nameErr(name, "is %d bytes long; at most %d are allowed", len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return nameErr(name, "is not valid UTF-8")
	case name == "." || name == "..":
		return nameErr(name, "is a relative path component")
	}
	for i, r := range name {
		switch {
		case r == '/':
			return nameErr(name, "has '/' at byte %d; a name is a single path component", i)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) ||
			unicode.Is(unicode.Co, r) || !unicode.IsPrint(r):
			return nameErr(name, "has %U at byte %d: control, format, space, private-use and unassigned characters are not allowed", r, i)
		}
	}
	return nil
}

// ValidateGatewayName checks a gateway name: a host name (RFC 1123) or an IP
// address. Gateway names become the host of peer URLs, so anything else
// ('/', '@', '?', ':' ...) could send a peer call somewhere else.
func ValidateGatewayName(name string) error {
	switch {
	case name == "":
		return nameErr(name, "is empty")
	case len(name) > 253:
		return nameErr(name, "is %d bytes long; a host name is at most 253", len(name))
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return nil
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return nameErr(name, "is not a host name: labels are 1 to 63 characters and do not start or end with '-' (RFC 1123)")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return nameErr(name, "is not a host name: only letters, digits, '-' and '_' are allowed in a label (RFC 1123)")
			}
		}
	}
	return nil
}
