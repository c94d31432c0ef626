package settings

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// sectionOrder is the order upstream applies the sections in. It matters
// only for which error is reported first.
func sectionOrder() []string {
	return []string{SectionConfig, SectionDeviceStatus, SectionTarget}
}

// Read parses the settings file at path. A missing file is not an error:
// every setting keeps its default (and a warning says so). Values of the
// form config://<key> are left pending; see ResolveConfigKeys and Load.
func Read(path string) (*Settings, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		s := Defaults()
		s.path = path
		s.Warnings = []string{path + ": not found; using the built-in defaults"}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return Parse(path, data)
}

// Parse parses the contents of a settings file; path is only used in
// messages. All problems are reported, joined with errors.Join, each an
// *Error.
func Parse(path string, data []byte) (*Settings, error) {
	f, errs := readINI(path, data)
	if f == nil {
		return nil, errors.Join(errs...)
	}
	p := &parser{path: path, s: Defaults(), errs: errs, seen: map[string]bool{}}
	p.s.path = path
	p.run(f)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	p.s.sslVerify = p.s.APISSLVerify
	p.s.finish()
	return p.s, nil
}

type parser struct {
	path string
	s    *Settings
	errs []error
	seen map[string]bool // messages already reported
}

func (p *parser) fail(e *Error) {
	if msg := e.Error(); !p.seen[msg] {
		p.seen[msg] = true
		p.errs = append(p.errs, e)
	}
}

func (p *parser) warn(msg string) {
	msg = p.path + ": " + msg
	if !p.seen[msg] {
		p.seen[msg] = true
		p.s.Warnings = append(p.s.Warnings, msg)
	}
}

// item is one key as ConfigParser's items(section) yields it: the
// section's own keys plus those inherited from [DEFAULT].
type item struct {
	*iniOption
	from string // the section it was written in
}

func (p *parser) run(f *iniFile) {
	present := map[string]bool{}
	for _, sect := range f.sections {
		if slices.Contains(sectionOrder(), sect.name) {
			present[sect.name] = true
			continue
		}
		hint := ""
		if n := pyLower(pyTrim(sect.name)); n != sect.name && slices.Contains(sectionOrder(), n) {
			hint = " (did you mean [" + n + "]?)"
		}
		p.warn("unknown section [" + sect.name + "] ignored" + hint)
	}

	// Upstream only reads the three sections that are present, each with
	// [DEFAULT] merged in, and fails (KeyError) on a setting that belongs
	// to another section; a [DEFAULT] setting therefore works only if its
	// own section is the only one present.
	for _, o := range f.defaults.opts {
		d := lookup(o.key)
		if d == nil {
			continue
		}
		if !present[d.section()] {
			p.warn("[DEFAULT] " + o.key + " ignored: there is no [" + d.section() + "] section to inherit it")
		}
		for _, other := range sectionOrder() {
			if present[other] && other != d.section() {
				p.fail(&Error{Path: p.path, Line: o.line, Section: defaultSection, Key: o.key,
					Value: secretSafe(o.key, o.value), Secret: d.secret(),
					Rule: "setting belongs in section [" + d.section() + "], but [DEFAULT] also applies it to [" + other + "]"})
			}
		}
	}

	for _, name := range sectionOrder() {
		sect := f.byName[name]
		if sect == nil {
			continue
		}
		vars := map[string]string{}
		var items []item
		for _, o := range f.defaults.opts {
			if sect.byKey[o.key] == nil {
				items = append(items, item{o, defaultSection})
				vars[o.key] = o.value
			}
		}
		for _, o := range sect.opts {
			items = append(items, item{o, name})
			vars[o.key] = o.value
		}
		for _, it := range items {
			p.apply(name, it, vars)
		}
	}
}

// apply validates one key of section sect and stores its value.
func (p *parser) apply(sect string, it item, vars map[string]string) {
	d := lookup(it.key)
	// An unknown key may be a misspelt api_password: hide its value too.
	hide := d == nil || d.secret()
	mkErr := func(value, rule string) *Error {
		e := &Error{Path: p.path, Line: it.line, Section: it.from, Key: it.key, Value: value, Rule: rule}
		if hide {
			e.Value, e.Secret = "", true
		}
		return e
	}
	// Upstream interpolates every key of the section, known or not, and
	// crashes on a bad one; report it as an error instead.
	val, rule := interpolate(it.value, vars)
	if rule != "" {
		if hide {
			// Rules may quote a %(name)s from the value.
			rule = "bad %-interpolation (write %% for a literal %)"
		}
		p.fail(mkErr(it.value, rule))
		return
	}
	switch {
	case d == nil:
		p.warn("[" + it.from + "] unknown key " + fmt.Sprintf("%q", it.key) + " ignored")
		return
	case it.from == defaultSection && d.section() != sect:
		return // reported in run
	case d.section() != sect:
		p.fail(mkErr(val, "setting belongs in section ["+d.section()+"]"))
		return
	}
	if ref, ok := strings.CutPrefix(val, ConfigKeyPrefix); ok {
		if ref == "" {
			p.fail(mkErr(val, "expected "+ConfigKeyPrefix+"<config-key name>"))
			return
		}
		p.s.pending = append(p.s.pending, pendingRef{def: d, section: it.from, line: it.line, key: ref})
		return
	}
	v, rule := d.parse(val)
	if rule != "" {
		p.fail(mkErr(val, rule))
		return
	}
	d.set(p.s, v)
}

// finish applies the rules that relate settings to each other.
func (s *Settings) finish() {
	// Upstream: clients never verify certificates when the API is HTTPS.
	s.APISSLVerify = s.sslVerify && !s.APISecure
}

// maxInterpolationDepth is ConfigParser's MAX_INTERPOLATION_DEPTH.
const maxInterpolationDepth = 10

// Nested references can expand exponentially (ten levels of ten references
// each); Python would hang, we give up.
const (
	maxInterpolatedLen = 64 << 10
	maxReferences      = 10000
)

// interpolate expands a value like ConfigParser's BasicInterpolation: "%%"
// is a literal "%" and "%(key)s" is the raw value of another key of the
// same section (or [DEFAULT]), expanded in turn. It returns the broken rule
// on failure.
func interpolate(value string, vars map[string]string) (string, string) {
	if !strings.Contains(value, "%") {
		return value, ""
	}
	in := interpolation{vars: vars, refs: maxReferences}
	if rule := in.expand(value, 1); rule != "" {
		return "", rule
	}
	return in.b.String(), ""
}

type interpolation struct {
	b    strings.Builder
	vars map[string]string
	refs int // references left to expand
}

func (in *interpolation) expand(rest string, depth int) string {
	if depth > maxInterpolationDepth {
		return "%(key)s references nest more than 10 deep"
	}
	for rest != "" {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			in.b.WriteString(rest)
			break
		}
		in.b.WriteString(rest[:i])
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, "%%"):
			in.b.WriteByte('%')
			rest = rest[2:]
		case strings.HasPrefix(rest, "%("):
			end := strings.IndexByte(rest, ')')
			if end < 3 || !strings.HasPrefix(rest[end:], ")s") {
				return "bad %(key)s reference (write %% for a literal %)"
			}
			name := pyLower(rest[2:end])
			rest = rest[end+2:]
			v, ok := in.vars[name]
			if !ok {
				return fmt.Sprintf("%%(%s)s refers to a key not in this section or [DEFAULT]", name)
			}
			if in.refs--; in.refs < 0 {
				return "%(key)s references expand too many times"
			}
			if !strings.Contains(v, "%") {
				in.b.WriteString(v)
			} else if rule := in.expand(v, depth+1); rule != "" {
				return rule
			}
		default:
			return "'%' must be followed by '%' or '(' (write %% for a literal %)"
		}
		if in.b.Len() > maxInterpolatedLen {
			return "value longer than 64 KiB after %(key)s expansion"
		}
	}
	if in.b.Len() > maxInterpolatedLen {
		return "value longer than 64 KiB after %(key)s expansion"
	}
	return ""
}
