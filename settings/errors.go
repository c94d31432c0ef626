package settings

import (
	"strconv"
	"strings"
	"unicode"
)

// Error is one problem found in a settings file. Parse and Read join several
// of them with errors.Join; use errors.As to get the first.
type Error struct {
	Path    string
	Line    int    // 1-based line of the key or syntax error; 0 if unknown
	Section string // section of the key, "" for file-level problems
	Key     string // lower-cased key, "" for syntax errors
	// Value is the offending value as written. It is empty for api_password,
	// whose value is never shown.
	Value  string
	Secret bool   // the value exists but is withheld
	Rule   string // what was expected, e.g. "expected integer <= 65535"
	Err    error  // underlying cause, e.g. from a KeyResolver
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	b.WriteString(": ")
	if e.Key == "" {
		if e.Line > 0 {
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(e.Line))
			b.WriteString(": ")
		}
		if e.Section != "" {
			b.WriteString("[" + e.Section + "] ")
		}
	} else {
		b.WriteString("[" + e.Section + "] " + e.Key)
		if e.Secret {
			b.WriteString(": invalid value (not shown)")
		} else {
			b.WriteString(" = " + displayValue(e.Value))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Rule)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// displayValue keeps plain values readable (api_port = 70000) and quotes
// anything that would be ambiguous on one log line.
func displayValue(v string) string {
	const maxRunes = 80
	if r := []rune(v); len(r) > maxRunes {
		v = string(r[:maxRunes]) + "..."
	}
	plain := v != "" && pyTrim(v) == v
	for _, r := range v {
		if !unicode.IsGraphic(r) {
			plain = false
			break
		}
	}
	if plain {
		return v
	}
	return strconv.Quote(v)
}

// ControlError is a rejected control. Its message is upstream's text
// verbatim (e.g. "expected integer >= 2 for dataout_timeout") because the
// Dashboard and gwcli show it to users.
type ControlError struct {
	Key string
	Msg string
}

func (e *ControlError) Error() string { return e.Msg }
