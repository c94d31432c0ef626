package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// ParseAny decodes raw into the generic representation used by UpgradeRaw:
// objects are map[string]any, arrays []any, numbers json.Number (so their
// original text survives, whatever their size), plus string, bool and nil.
// It rejects empty input, invalid UTF-8, anything that is not exactly one JSON
// value, and JSON values other than objects.
func ParseAny(raw []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("config: empty document")
	}
	// encoding/json would silently replace invalid bytes with U+FFFD, and
	// the Python gateways refuse such an object, so refuse it too.
	if !utf8.Valid(raw) {
		return nil, errors.New("config: document is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("config: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the top-level value")
		}
		return nil, fmt.Errorf("config: invalid JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("config: document is a JSON %s, expected object", kindOf(v))
	}
	return m, nil
}

// MarshalAny encodes a generic value the way Python's
// json.dumps(v, sort_keys=True, indent=4, separators=(',', ': ')) does with
// its default ensure_ascii=True. Besides the ParseAny types it accepts Go
// integers, floats, []string and any slice or string-keyed map of encodable
// values; other types are an error.
func MarshalAny(v any) ([]byte, error) {
	var b bytes.Buffer
	// the last encoding's size, so that a large document is not copied over
	// and over while its buffer doubles
	b.Grow(max(16<<10, int(sizeHint.Load())+1<<10))
	if err := encodeValue(&b, v, 0); err != nil {
		return nil, err
	}
	sizeHint.Store(int64(b.Len()))
	return b.Bytes(), nil
}

// sizeHint is the size of the last MarshalAny output.
var sizeHint atomic.Int64

func encodeValue(b *bytes.Buffer, v any, depth int) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		writeString(b, x)
	case json.Number:
		if !validNumber(string(x)) {
			return fmt.Errorf("config: invalid json.Number %q", string(x))
		}
		b.WriteString(string(x))
	case int:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case int32:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case uint:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case uint32:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case float64:
		s, err := pyFloat(x)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case float32:
		s, err := pyFloat(float64(x))
		if err != nil {
			return err
		}
		b.WriteString(s)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		return encodeObject(b, keys, func(k string) any { return x[k] }, depth)
	case []any:
		return encodeList(b, len(x), func(i int) any { return x[i] }, depth)
	case []string:
		return encodeList(b, len(x), func(i int) any { return x[i] }, depth)
	default:
		return encodeReflect(b, v, depth)
	}
	return nil
}

// encodeReflect covers the less common shapes a caller may put into Controls
// or Extra (map[string]int, []int, named integer types, ...).
func encodeReflect(b *bytes.Buffer, v any, depth int) error {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		return encodeValue(b, rv.Bool(), depth)
	case reflect.String:
		return encodeValue(b, rv.String(), depth)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return encodeValue(b, rv.Int(), depth)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return encodeValue(b, rv.Uint(), depth)
	case reflect.Float32, reflect.Float64:
		return encodeValue(b, rv.Float(), depth)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			b.WriteString("[]")
			return nil
		}
		return encodeList(b, rv.Len(), func(i int) any { return rv.Index(i).Interface() }, depth)
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		keys := make([]string, 0, rv.Len())
		byName := make(map[string]reflect.Value, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			k := it.Key().String()
			keys = append(keys, k)
			byName[k] = it.Value()
		}
		return encodeObject(b, keys, func(k string) any { return byName[k].Interface() }, depth)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			b.WriteString("null")
			return nil
		}
		return encodeValue(b, rv.Elem().Interface(), depth)
	}
	return fmt.Errorf("config: cannot encode value of type %T", v)
}

func encodeObject(b *bytes.Buffer, keys []string, get func(string) any, depth int) error {
	if len(keys) == 0 {
		b.WriteString("{}")
		return nil
	}
	// Python sorts str keys by code point; for valid UTF-8 that is the same
	// as Go's byte-wise string order.
	slices.Sort(keys)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		newline(b, depth+1)
		writeString(b, k)
		b.WriteString(": ")
		if err := encodeValue(b, get(k), depth+1); err != nil {
			return err
		}
	}
	newline(b, depth)
	b.WriteByte('}')
	return nil
}

func encodeList(b *bytes.Buffer, n int, get func(int) any, depth int) error {
	if n == 0 {
		b.WriteString("[]")
		return nil
	}
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		newline(b, depth+1)
		if err := encodeValue(b, get(i), depth+1); err != nil {
			return err
		}
	}
	newline(b, depth)
	b.WriteByte(']')
	return nil
}

// indent is a newline followed by enough spaces for the deepest nesting the schema
// has (with room to spare); deeper levels fall back to a loop.
const indent = "\n                                                                "

func newline(b *bytes.Buffer, depth int) {
	if n := 1 + 4*depth; n <= len(indent) {
		b.WriteString(indent[:n])
		return
	}
	b.WriteByte('\n')
	for range depth {
		b.WriteString("    ")
	}
}

const hexDigits = "0123456789abcdef"

// PyString is s as a JSON string the way Python's json.dumps writes it
// (ensure_ascii=True), for the form fields upstream's clients build with it.
func PyString(s string) string {
	var b bytes.Buffer
	writeString(&b, s)
	return b.String()
}

// writeString mirrors CPython's ensure_ascii string encoder: only printable
// ASCII is written as is; everything else becomes an escape, astral code
// points as a UTF-16 surrogate pair.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	if plainASCII(s) {
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch c {
			case '"':
				b.WriteString(`\"`)
			case '\\':
				b.WriteString(`\\`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			default:
				if c < 0x20 || c == 0x7f {
					writeU(b, rune(c))
				} else {
					b.WriteByte(c)
				}
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r > 0xffff {
			r -= 0x10000
			writeU(b, 0xd800+(r>>10)&0x3ff)
			writeU(b, 0xdc00+r&0x3ff)
			continue
		}
		// Invalid UTF-8 cannot come from ParseAny; from Go callers it
		// becomes U+FFFD, as DecodeRuneInString reports it.
		writeU(b, r)
	}
	b.WriteByte('"')
}

// plainASCII reports whether s is printable ASCII without '"' or '\\': what
// writeString copies as is (names, stamps, addresses: nearly every string of
// a document).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func writeU(b *bytes.Buffer, r rune) {
	b.WriteString(`\u`)
	b.WriteByte(hexDigits[r>>12&0xf])
	b.WriteByte(hexDigits[r>>8&0xf])
	b.WriteByte(hexDigits[r>>4&0xf])
	b.WriteByte(hexDigits[r&0xf])
}

// pyFloat formats f like Python's float.__repr__, which json.dumps uses:
// shortest round-trip digits, positional notation for decimal exponents in
// [-4, 16) with at least one fractional digit, scientific notation otherwise.
// Non-finite values are refused: Python would write NaN or Infinity, which no
// JSON parser (including ours) accepts back.
func pyFloat(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("config: cannot encode non-finite float %v", f)
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	epos := strings.IndexByte(sci, 'e')
	exp, _ := strconv.Atoi(sci[epos+1:])
	if exp < -4 || exp >= 16 {
		return sci, nil
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s, nil
}

// validNumber reports whether s matches the JSON number grammar, so a
// hand-made json.Number cannot corrupt the document.
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// kindOf names a generic value's JSON type for error messages.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, int, int64, float64:
		return "number"
	case []any, []string:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
