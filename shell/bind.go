package shell

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// kparamRe is configshell's keyword parameter: Word(alphanums + '_-') '=' [value].
var kparamRe = regexp.MustCompile(`^([A-Za-z0-9_-]+)=(.*)$`)

// Bind gives c's parameters their values from the words after the command, as configshell
// does: a word name=value is a keyword parameter, any other a positional one; positional
// words fill the Params in order, absent optional ones take their Default. The errors are
// configshell's (its "positionnal" spelling included), checked in its order.
func Bind(c *Command, words []string) (Args, error) {
	var pparams []string
	kparams := map[string]string{}
	var korder []string
	for _, w := range words {
		if m := kparamRe.FindStringSubmatch(w); m != nil {
			if _, dup := kparams[m[1]]; dup {
				return Args{}, userErrorf("Duplicate parameter %s.", m[1])
			}
			kparams[m[1]] = m[2]
			korder = append(korder, m[1])
			continue
		}
		pparams = append(pparams, w)
	}

	names := make([]string, len(c.Params))
	var opt []string
	for i, p := range c.Params {
		names[i] = p.Name
		if !p.Required {
			opt = append(opt, p.Name)
		}
	}
	nMax := len(names)
	nMin := nMax - len(opt)

	var missing []string
	if len(pparams) < len(names) {
		for _, n := range names[len(pparams):] {
			if _, given := kparams[n]; !given && !slices.Contains(opt, n) {
				missing = append(missing, n)
			}
		}
	}
	slices.Sort(missing)
	switch {
	case len(missing) == 1:
		return Args{}, userErrorf("Missing required parameter %s", missing[0])
	case len(missing) > 1:
		return Args{}, userErrorf("Missing required parameters %s", quoteJoin(missing))
	}

	var unexpected []string
	for k := range kparams {
		if !slices.Contains(names, k) {
			unexpected = append(unexpected, k)
		}
	}
	slices.Sort(unexpected)
	switch {
	case len(unexpected) == 1:
		return Args{}, userErrorf("Unexpected keyword parameter '%s'.", unexpected[0])
	case len(unexpected) > 1:
		return Args{}, userErrorf("Unexpected keyword parameters %s.", quoteJoin(unexpected))
	}

	// A keyword naming a parameter that a positional word already filled.
	positional := names[:min(len(pparams), len(names))]
	for _, k := range korder {
		if slices.Contains(positional, k) {
			return Args{}, userErrorf("Duplicate parameter %s.", k)
		}
	}

	nStandard := len(pparams) + len(kparams)
	if !c.Variadic {
		if len(opt) == 0 && nStandard != nMin {
			return Args{}, userErrorf("Got %d positionnal parameters, expected exactly %d.", nStandard, nMin)
		}
		if nStandard > nMax {
			return Args{}, userErrorf("Got %d positionnal parameters, expected at most %d.", nStandard, nMax)
		}
	}

	a := Args{Values: map[string]string{}, Given: map[string]bool{}}
	for i, p := range c.Params {
		switch {
		case i < len(pparams):
			v := pparams[i]
			if c.Variadic && i == len(c.Params)-1 {
				v = strings.Join(pparams[i:], " ")
			}
			a.Values[p.Name], a.Given[p.Name] = v, true
		default:
			if v, ok := kparams[p.Name]; ok {
				a.Values[p.Name], a.Given[p.Name] = v, true
			} else {
				a.Values[p.Name] = p.Default
			}
		}
	}
	return a, nil
}

func quoteJoin(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("'%s'", n)
	}
	return strings.Join(q, ", ")
}
