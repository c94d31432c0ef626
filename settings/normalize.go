package settings

import (
	"strconv"
	"strings"
	"unicode"
)

// The Python gateways parse the same file, so whitespace, case and integer
// syntax follow Python's str.strip, str.lower and int() exactly wherever that
// can change a value (and with it the checkconf hash).

// pyIsSpace is Python's str.isspace for one character: Go's unicode.IsSpace
// plus the four ASCII information separators.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

func pyTrim(s string) string   { return strings.TrimFunc(s, pyIsSpace) }
func pyRstrip(s string) string { return strings.TrimRightFunc(s, pyIsSpace) }

// pyLower is str.lower as far as it matters for matching ASCII key names:
// Python lower-cases U+0130 to "i" plus a combining dot, so a key spelled with
// it never matches, while Go's simple mapping would yield a plain "i".
func pyLower(s string) string {
	if strings.ContainsRune(s, '\u0130') {
		s = strings.ReplaceAll(s, "\u0130", "i\u0307")
	}
	return strings.ToLower(s)
}

// intLimit bounds parsed integers; every range in the table is far inside
// it, so saturating keeps the min/max messages right without big integers.
const intLimit = 1 << 40

// pyInt parses text the way Python's int(str) does for ASCII digits:
// surrounding whitespace, an optional sign, and single underscores between
// digits. Magnitudes beyond intLimit saturate.
func pyInt(text string) (int, bool) {
	s := pyTrim(text)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	n := 0
	prevDigit := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n < intLimit {
				n = n*10 + int(c-'0')
			}
			prevDigit = true
		case c == '_' && prevDigit && i+1 < len(s):
			prevDigit = false
		default:
			return 0, false
		}
	}
	if !prevDigit {
		return 0, false
	}
	n = min(n, intLimit)
	if neg {
		n = -n
	}
	return n, true
}

// pyBool is upstream's convert_str_to_bool for text.
func pyBool(text string) (bool, bool) {
	switch pyLower(text) {
	case "1", "true", "yes":
		return true, true
	case "0", "false", "no":
		return false, true
	}
	return false, false
}

// The rule texts below are upstream's messages without their " for <key>"
// suffix, so file errors and control errors read the same.

func (d *setting) boolRule() string {
	if d.kind == kindLIOBool {
		return "expected yes or no"
	}
	return "expected true or false"
}

func (d *setting) checkInt(n int) (int, string) {
	if n < d.min {
		return 0, "expected integer >= " + strconv.Itoa(d.min)
	}
	if n > d.max {
		return 0, "expected integer <= " + strconv.Itoa(d.max)
	}
	return n, ""
}

// parse normalises a text value (from the file or the config-key store). It
// returns the typed value, or the rule the text breaks.
func (d *setting) parse(text string) (any, string) {
	switch d.kind {
	case kindBool, kindLIOBool:
		b, ok := pyBool(text)
		if !ok {
			return nil, d.boolRule()
		}
		return b, ""
	case kindInt:
		n, ok := pyInt(text)
		if !ok {
			return nil, "expected integer"
		}
		return d.checkIntAny(n)
	case kindList:
		if text == "" {
			return []string{}, ""
		}
		items := strings.Split(text, ",")
		for i := range items {
			items[i] = pyTrim(items[i])
		}
		return items, ""
	case kindEnum:
		for _, v := range d.values {
			if text == v {
				return v, ""
			}
		}
		return nil, "expected " + strings.Join(d.values, " or ")
	default:
		if d.name == "cluster_client_name" {
			// Upstream takes any text and fails later (librados rejects
			// the name, the tcmu cfgstring code raises IndexError); say
			// so now.
			if typ, id, ok := strings.Cut(text, "."); !ok || typ == "" || id == "" {
				return nil, "expected <type>.<id>, e.g. client.admin"
			}
		}
		return text, ""
	}
}
