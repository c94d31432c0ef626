package settings

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// defaultSection is ConfigParser's DEFAULT section, whose keys appear in
// every other section.
const defaultSection = "DEFAULT"

type iniOption struct {
	key   string // lower-cased
	line  int
	lines []string
	value string // lines joined, as ConfigParser stores it
}

type iniSection struct {
	name  string
	line  int
	opts  []*iniOption
	byKey map[string]*iniOption
}

func newSection(name string, line int) *iniSection {
	return &iniSection{name: name, line: line, byKey: map[string]*iniOption{}}
}

type iniFile struct {
	defaults *iniSection
	sections []*iniSection
	byName   map[string]*iniSection
}

// readINI reads data the way Python's ConfigParser._read does with upstream's
// options (strict, "=" and ":" delimiters, "#" and ";" full-line comments, no
// inline comments, blank lines kept inside values), so a file means the same
// to a Python gateway and to us. Where ConfigParser raises, readINI reports
// an *Error, and it keeps going to report every problem at once.
func readINI(path string, data []byte) (*iniFile, []error) {
	f := &iniFile{defaults: newSection(defaultSection, 0), byName: map[string]*iniSection{}}
	var errs []error
	syntaxErr := func(line int, sect *iniSection, rule string) {
		e := &Error{Path: path, Line: line, Rule: rule}
		if sect != nil {
			e.Section = sect.name
		}
		errs = append(errs, e)
	}

	// Python decodes the file as UTF-8 and fails on anything else. A BOM
	// would make it fail to see the first section header; accepting it is
	// harmless.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if !utf8.Valid(data) {
		line := 1
		for len(data) > 0 {
			r, size := utf8.DecodeRune(data)
			if r == utf8.RuneError && size <= 1 {
				break
			}
			if r == '\n' {
				line++
			}
			data = data[size:]
		}
		syntaxErr(line, nil, "file is not valid UTF-8")
		return nil, errs
	}
	// Python's universal newlines: \r\n and a lone \r both end a line.
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}

	var cur *iniSection
	var opt *iniOption // ConfigParser's "optname": the value being continued
	indentLevel := 0
	for i, line := range lines {
		lineno := i + 1
		value := pyTrim(line)
		comment := strings.HasPrefix(value, "#") || strings.HasPrefix(value, ";")
		if comment || value == "" {
			// A blank line may sit inside a multi-line value; trailing
			// ones are stripped when the value is joined. Comment lines
			// are dropped without ending the value.
			if !comment && opt != nil {
				opt.lines = append(opt.lines, "")
			}
			continue
		}
		indent := 0
		for _, r := range line {
			if !pyIsSpace(r) {
				break
			}
			indent++
		}
		if cur != nil && opt != nil && indent > indentLevel {
			opt.lines = append(opt.lines, value)
			continue
		}
		indentLevel = indent

		if name, ok := sectionHeader(value); ok {
			switch {
			case name == defaultSection:
				cur = f.defaults
			case f.byName[name] != nil:
				cur = f.byName[name]
				syntaxErr(lineno, nil, "duplicate section ["+name+"] (first at line "+strconv.Itoa(cur.line)+")")
			default:
				cur = newSection(name, lineno)
				f.sections = append(f.sections, cur)
				f.byName[name] = cur
			}
			opt = nil
			continue
		}
		if cur == nil {
			syntaxErr(lineno, nil, "expected a [section] header before any setting")
			continue
		}
		delim := strings.IndexAny(value, "=:")
		if delim < 0 {
			// ConfigParser records the error and, oddly, keeps the
			// previous option open for continuation lines; so do we.
			syntaxErr(lineno, cur, `expected "key = value", "key: value" or a [section] header`)
			continue
		}
		key := pyLower(pyRstrip(value[:delim]))
		if key == "" {
			syntaxErr(lineno, cur, "missing key before '"+value[delim:delim+1]+"'")
			opt = nil
			continue
		}
		if prev := cur.byKey[key]; prev != nil {
			errs = append(errs, &Error{Path: path, Line: lineno, Section: cur.name, Key: key,
				Secret: isSecretKey(key), Value: secretSafe(key, pyTrim(value[delim+1:])),
				Rule: "duplicate key (first at line " + strconv.Itoa(prev.line) + ")"})
			opt = &iniOption{} // swallow its continuation lines
			continue
		}
		opt = &iniOption{key: key, line: lineno, lines: []string{pyTrim(value[delim+1:])}}
		cur.opts = append(cur.opts, opt)
		cur.byKey[key] = opt
	}

	for _, sect := range append([]*iniSection{f.defaults}, f.sections...) {
		for _, o := range sect.opts {
			o.value = pyRstrip(strings.Join(o.lines, "\n"))
		}
	}
	return f, errs
}

// sectionHeader matches ConfigParser's SECTCRE, \[(?P<header>.+)\], against
// the start of a stripped line: the name runs to the last "]", and anything
// after that is ignored.
func sectionHeader(value string) (string, bool) {
	if !strings.HasPrefix(value, "[") {
		return "", false
	}
	end := strings.LastIndexByte(value, ']')
	if end < 2 {
		return "", false
	}
	return value[1:end], true
}

func isSecretKey(key string) bool {
	d := lookup(key)
	return d != nil && d.secret()
}

// secretSafe returns value unless key holds a secret.
func secretSafe(key, value string) string {
	if isSecretKey(key) {
		return ""
	}
	return value
}
