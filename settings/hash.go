package settings

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Hash returns the checkconf digest (GET /api/sysinfo/checkconf) that a new
// gateway's settings must match: the SHA-256, in lowercase hex, of Python's
// json.dumps of every setting except cluster_client_name and logger_level,
// in upstream table order. It must be byte-identical to what the Python
// gateways compute, so the JSON is produced by hand. Call it after
// ResolveConfigKeys: pending values still hold their defaults.
func (s *Settings) Hash() string {
	sum := sha256.Sum256([]byte(s.hashDocument()))
	return hex.EncodeToString(sum[:])
}

// hashDocument holds the password in clear; it must never be logged.
func (s *Settings) hashDocument() string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for i := range table {
		d := &table[i]
		if d.noHash {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		writePyJSONString(&b, d.name)
		b.WriteString(": ")
		switch v := d.get(s).(type) {
		case string:
			writePyJSONString(&b, v)
		case Secret:
			writePyJSONString(&b, v.Reveal())
		case bool:
			b.WriteString(strconv.FormatBool(v))
		case int:
			b.WriteString(strconv.Itoa(v))
		case []string:
			b.WriteByte('[')
			for j, item := range v {
				if j > 0 {
					b.WriteString(", ")
				}
				writePyJSONString(&b, item)
			}
			b.WriteByte(']')
		}
	}
	b.WriteByte('}')
	return b.String()
}

// writePyJSONString writes s as json.dumps does with ensure_ascii=True:
// short escapes for " \ \n \r \t \b \f, \u00XX for other control
// characters and DEL, and lowercase \uXXXX (a surrogate pair above the BMP)
// for everything outside printable ASCII.
func writePyJSONString(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		for shift := 12; shift >= 0; shift -= 4 {
			b.WriteByte(hexDigits[(r>>shift)&0xf])
		}
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= 0x20 && r <= 0x7e:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			u(0xd800 + (r >> 10))
			u(0xdc00 + (r & 0x3ff))
		default:
			// Invalid UTF-8 cannot come from Parse; for hand-built
			// values the decoder's U+FFFD is written.
			u(r)
		}
	}
	b.WriteByte('"')
}
