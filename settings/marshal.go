package settings

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MarshalINI renders every setting as a settings file that Parse, and the
// Python gateways, read back to the same values; pending config:// values
// are written as references. The output contains api_password in clear, so
// treat it like the file itself. A value the file format cannot carry (for
// example one with leading or trailing whitespace, which ConfigParser
// strips) is an error.
func (s *Settings) MarshalINI() ([]byte, error) {
	refs := map[string]string{}
	for _, p := range s.pending {
		refs[p.def.name] = ConfigKeyPrefix + p.key
	}
	var b strings.Builder
	for _, sect := range [...]string{SectionConfig, SectionTarget, SectionDeviceStatus} {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("[" + sect + "]\n")
		for i := range table {
			d := &table[i]
			if d.section() != sect {
				continue
			}
			text, ok := refs[d.name]
			if !ok {
				var err error
				if text, err = d.format(s); err != nil {
					return nil, err
				}
			}
			line, ok := iniLine(d.name, text)
			if !ok {
				return nil, d.unrepresentable()
			}
			b.WriteString(line)
		}
	}
	return []byte(b.String()), nil
}

// format renders the field as text that parse turns back into the same
// value.
func (d *setting) format(s *Settings) (string, error) {
	var text string
	switch v := d.get(s).(type) {
	case string:
		text = v
	case Secret:
		text = v.Reveal()
	case bool:
		text = strconv.FormatBool(v)
		if d.kind == kindLIOBool {
			text = strings.ToLower(LIOYesNo(v))
		}
	case int:
		text = strconv.Itoa(v)
	case []string:
		// An empty last item would leave a trailing space, which
		// ConfigParser strips.
		text = pyRstrip(strings.Join(v, ", "))
	}
	// Lists with items holding commas or outer whitespace, out-of-range
	// numbers and the like do not survive a round trip.
	back, rule := d.parse(text)
	if rule != "" || !sameValue(back, d.get(s)) {
		return "", d.unrepresentable()
	}
	return text, nil
}

func (d *setting) unrepresentable() error {
	return fmt.Errorf("settings: the value of %s cannot be written to a settings file", d.name)
}

// iniLine renders "key = value" with continuation lines so that
// ConfigParser reads back exactly value (with "%" escaped for its
// interpolation), or reports that it cannot.
func iniLine(key, value string) (string, bool) {
	if !utf8.ValidString(value) || strings.ContainsRune(value, '\r') || pyRstrip(value) != value {
		return "", false
	}
	lines := strings.Split(strings.ReplaceAll(value, "%", "%%"), "\n")
	var b strings.Builder
	b.WriteString(key + " =")
	for i, l := range lines {
		if pyTrim(l) != l {
			return "", false
		}
		switch {
		case i == 0:
			if l != "" {
				b.WriteString(" " + l)
			}
		case strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
			return "", false // a comment, not part of the value
		case l == "":
			b.WriteString("\n")
		default:
			b.WriteString("\n\t" + l)
		}
	}
	b.WriteString("\n")
	return b.String(), true
}

// sameValue compares two values of one setting, treating a Secret as its
// text and a nil list as empty.
func sameValue(a, b any) bool {
	if v, ok := a.(Secret); ok {
		a = v.Reveal()
	}
	if v, ok := b.(Secret); ok {
		b = v.Reveal()
	}
	if la, ok := a.([]string); ok {
		lb, ok := b.([]string)
		return ok && slices.Equal(la, lb)
	}
	return a == b
}
