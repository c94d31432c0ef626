package shell

import (
	"context"
	"slices"
	"sort"
	"strings"
)

// Complete returns the candidates for the word being typed at the end of line (the text
// before the cursor), whole words that replace it: paths (with a trailing "/" when the
// node has children) and bookmarks, command names, argument names ("name=") and live
// argument values (Param.Complete). It uses the last tree, loading one only if there is
// none.
func (sh *Shell) Complete(ctx context.Context, line string) []string {
	if strings.TrimSpace(line) == "" {
		// no menu over an empty prompt
		return nil
	}
	root := sh.Cached()
	if root == nil {
		var err error
		if root, err = sh.Tree(ctx); err != nil {
			return nil
		}
	}
	words, cur := splitForCompletion(line)
	cwd, err := Resolve(root, root, sh.cwd)
	if err != nil {
		cwd = root
	}
	n, pathGiven := cwd, false
	if len(words) > 0 && isPath(words[0]) {
		t, err := sh.resolve(words[0])
		if err != nil {
			return nil
		}
		n, words, pathGiven = t, words[1:], true
	}
	if len(words) == 0 {
		// The first word is a command or a path; after a path, a command of that node.
		out := filterPrefix(commandNames(n), cur)
		if !pathGiven && cur != "" {
			out = append(out, sh.completePath(root, cwd, cur)...)
		}
		return out
	}
	cmd, args := words[0], words[1:]
	c := spec(n, cmd)
	if c == nil {
		return nil
	}
	return sh.completeArg(ctx, root, n, c, args, cur)
}

// splitForCompletion returns the complete words of line and the word being typed ("" after
// a space).
func splitForCompletion(line string) ([]string, string) {
	words, err := Split(line)
	if err != nil {
		// an open quote: complete the words as typed
		words = strings.Fields(line)
	}
	if line == "" || strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") {
		return words, ""
	}
	if len(words) == 0 {
		return nil, ""
	}
	return words[:len(words)-1], words[len(words)-1]
}

func filterPrefix(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// completePath is configshell's path completion: the children of the typed directory
// whose name starts with the rest, then matching bookmarks.
func (sh *Shell) completePath(root, cwd *Node, text string) []string {
	var out []string
	base, partial := "", text
	if i := strings.LastIndex(text, "/"); i >= 0 {
		base, partial = text[:i+1], text[i+1:]
	}
	dir := cwd
	if base != "" {
		d, err := Resolve(root, cwd, base)
		if err != nil {
			return sh.completeBookmarks(text)
		}
		dir = d
	}
	for _, c := range sortedChildren(dir) {
		if !strings.HasPrefix(c.Name, partial) {
			continue
		}
		name := c.Name
		if strings.ContainsAny(name, " \t") {
			name = "'" + name + "'"
		}
		s := base + name
		if len(c.Children) > 0 {
			s += "/"
		}
		out = append(out, s)
	}
	return append(out, sh.completeBookmarks(text)...)
}

func (sh *Shell) completeBookmarks(text string) []string {
	var out []string
	for _, b := range sortedKeys(sh.prefs.Bookmarks) {
		if strings.HasPrefix("@"+b, text) {
			out = append(out, "@"+b)
		}
	}
	return out
}

// completeArg completes the argument being typed for command c on n.
func (sh *Shell) completeArg(ctx context.Context, root, n *Node, c *Command, args []string, cur string) []string {
	// Which parameters are already given, by position or by name.
	given := map[string]bool{}
	pos := 0
	for _, a := range args {
		if m := kparamRe.FindStringSubmatch(a); m != nil {
			given[m[1]] = true
			continue
		}
		if pos < len(c.Params) {
			given[c.Params[pos].Name] = true
		}
		pos++
	}
	if m := kparamRe.FindStringSubmatch(cur); m != nil {
		// name=value: complete the value of that parameter
		i := slices.IndexFunc(c.Params, func(p Param) bool { return p.Name == m[1] })
		if i < 0 {
			return nil
		}
		var out []string
		for _, v := range sh.paramValues(ctx, root, n, c, c.Params[i], m[2]) {
			out = append(out, m[1]+"="+v)
		}
		return out
	}
	var out []string
	if pos < len(c.Params) && !given[c.Params[pos].Name] {
		out = append(out, sh.paramValues(ctx, root, n, c, c.Params[pos], cur)...)
	}
	for _, p := range c.Params {
		if !given[p.Name] && strings.HasPrefix(p.Name+"=", cur) && cur != "" {
			out = append(out, p.Name+"=")
		}
	}
	return out
}

// paramValues lists the candidates for p's value starting with prefix.
func (sh *Shell) paramValues(ctx context.Context, root, n *Node, c *Command, p Param, prefix string) []string {
	if builtinSpecs[c.Name] == c {
		switch {
		case p.Name == "path":
			return sh.completePath(root, n, prefix)
		case c.Name == "help" && p.Name == "topic":
			return filterPrefix(commandNames(n), prefix)
		case c.Name == "bookmarks" && p.Name == "action":
			return filterPrefix([]string{"add", "del", "go", "show"}, prefix)
		case c.Name == "bookmarks" && p.Name == "bookmark", c.Name == "goto":
			return filterPrefix(sortedKeys(sh.prefs.Bookmarks), prefix)
		case c.Name == "ls" && p.Name == "depth":
			return filterPrefix([]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, prefix)
		}
		return nil
	}
	if p.Complete == nil {
		return nil
	}
	env := &Env{
		API: sh.o.API, Out: sh.o.Out, LocalName: sh.o.LocalName, Settings: sh.o.Settings,
		Snapshot: func(ctx context.Context) (*Snapshot, error) {
			if sh.snap == nil {
				if _, err := sh.Tree(ctx); err != nil {
					return nil, err
				}
			}
			return sh.snap, nil
		},
		Refresh: func() {},
		Cd:      func(string) {},
	}
	vals := filterPrefix(p.Complete(ctx, env, n), prefix)
	sort.Strings(vals)
	return slices.Compact(vals)
}
