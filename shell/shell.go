package shell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"ceph-iscsi/settings"
)

// Options configure a Shell.
type Options struct {
	API *Client
	// Load returns a fresh snapshot; the shell calls it once per command that needs the
	// tree (see Shell.Exec).
	Load func(ctx context.Context) (*Snapshot, error)
	Out  io.Writer
	// Width reports the terminal width for ls (0: not a terminal, MaxWidth is used).
	Width func() int
	// PrefsDir holds prefs.json (bookmarks and the get/set preferences); "" keeps them in
	// memory only.
	PrefsDir string
	// LocalName is this host's gateway name (Env.LocalName).
	LocalName string
	// Interactive lets commands move the shell (Env.Cd) and makes `exit` end the session.
	Interactive bool
	// JSON makes ls, info and export print JSON.
	JSON bool
	// Settings is iscsi-gateway.cfg (Env.Settings).
	Settings *settings.Settings
}

// Prefs are the configshell preferences gwcli keeps between sessions: bookmarks and the
// "global" group of get/set.
type Prefs struct {
	Bookmarks    map[string]string `json:"bookmarks"`
	TreeMaxDepth int               `json:"tree_max_depth"`
	PromptLength int               `json:"prompt_length"`
}

// Shell runs command lines against the tree: the configshell grammar
// `[path] [command] [parameters]`, the built-ins and the registered Commands.
type Shell struct {
	o     Options
	snap  *Snapshot
	root  *Node
	cwd   string // path of the current node
	prev  string // path before the last cd, for `cd -`
	prefs Prefs
	done  bool
	// fresh says the tree was loaded since the last command ran, so the next command
	// needs no other load (the start-up load serves a one-shot command).
	fresh bool
	// stale says a command may have changed the state since the tree was loaded.
	stale bool
}

// New returns a shell at "/", with the preferences of o.PrefsDir.
func New(o Options) *Shell {
	sh := &Shell{o: o, cwd: "/", prev: "/", prefs: Prefs{Bookmarks: map[string]string{}, PromptLength: 30}}
	if o.Out == nil {
		sh.o.Out = io.Discard
	}
	if o.Width == nil {
		sh.o.Width = func() int { return 0 }
	}
	if o.PrefsDir != "" {
		if raw, err := os.ReadFile(filepath.Join(o.PrefsDir, "prefs.json")); err == nil {
			_ = json.Unmarshal(raw, &sh.prefs)
		}
		if sh.prefs.Bookmarks == nil {
			sh.prefs.Bookmarks = map[string]string{}
		}
	}
	return sh
}

// Done reports whether `exit` ran.
func (sh *Shell) Done() bool { return sh.done }

// Cwd is the current path.
func (sh *Shell) Cwd() string { return sh.cwd }

// Prefs returns the current preferences.
func (sh *Shell) Prefs() Prefs { return sh.prefs }

func (sh *Shell) savePrefs() error {
	if sh.o.PrefsDir == "" {
		return nil
	}
	raw, err := json.MarshalIndent(sh.prefs, "", "  ")
	if err != nil {
		return fmt.Errorf("preferences: %w", err)
	}
	if err := os.MkdirAll(sh.o.PrefsDir, 0o700); err != nil {
		return fmt.Errorf("preferences: %w", err)
	}
	if err := os.WriteFile(filepath.Join(sh.o.PrefsDir, "prefs.json"), append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("preferences: %w", err)
	}
	return nil
}

// Tree returns the tree of the last snapshot, loading one if there is none.
func (sh *Shell) Tree(ctx context.Context) (*Node, error) {
	if sh.root == nil {
		if err := sh.reload(ctx); err != nil {
			return nil, err
		}
	}
	return sh.root, nil
}

// Cached returns the tree of the last snapshot without loading (nil if none): completion
// uses it so that a key press never waits for the API.
func (sh *Shell) Cached() *Node { return sh.root }

// reload takes a fresh snapshot and rebuilds the tree; the current path moves up to the
// nearest node that still exists.
func (sh *Shell) reload(ctx context.Context) error {
	s, err := sh.o.Load(ctx)
	if err != nil {
		return err
	}
	sh.snap, sh.root, sh.fresh, sh.stale = s, Build(s), true, false
	for {
		if _, err := Resolve(sh.root, sh.root, sh.cwd); err == nil || sh.cwd == "/" {
			break
		}
		sh.cwd = parentPath(sh.cwd)
	}
	sh.autoBookmarks()
	return nil
}

// autoBookmarks are upstream's gateways, hosts and host-groups bookmarks, kept on the most
// recent target (here: the last in name order).
func (sh *Shell) autoBookmarks() {
	targets := sh.root.Child("iscsi-targets")
	if targets == nil || len(targets.Children) == 0 {
		return
	}
	kids := sortedChildren(targets)
	last := kids[len(kids)-1]
	changed := false
	for _, b := range []string{"gateways", "hosts", "host-groups"} {
		if c := last.Child(b); c != nil && sh.prefs.Bookmarks[b] != c.Path() {
			sh.prefs.Bookmarks[b] = c.Path()
			changed = true
		}
	}
	if changed {
		_ = sh.savePrefs()
	}
}

func parentPath(p string) string {
	i := strings.LastIndex(strings.TrimRight(p, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// resolve finds path (a bookmark "@name" too) from the current node.
func (sh *Shell) resolve(path string) (*Node, error) {
	if strings.HasPrefix(path, "@") {
		name := strings.TrimSpace(strings.TrimPrefix(path, "@"))
		p, ok := sh.prefs.Bookmarks[name]
		if !ok {
			return nil, userErrorf("No such bookmark %s", name)
		}
		path = p
	}
	cwd, err := Resolve(sh.root, sh.root, sh.cwd)
	if err != nil {
		cwd = sh.root
	}
	return Resolve(sh.root, cwd, path)
}

// Split breaks a command line into words at white space; single or double quotes and a
// backslash keep white space in a word (configshell has no quoting, so "lun 0" could not be
// named there).
func Split(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, userErrorf("Unterminated quote in %q", line)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// isPath is configshell's test for a first word that is a path rather than a command: a
// bookmark, anything with a slash, ".", ".." or "*"; and "-" for `cd -`'s sake no.
func isPath(w string) bool {
	return strings.HasPrefix(w, "@") || strings.Contains(w, "/") || w == "." || w == ".." || w == "*"
}

var commandRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// Exec runs one command line. The tree is loaded afresh before `ls` and every ceph-iscsi
// command (so that what they show and check is current), and dropped after a ceph-iscsi
// command so that the next one sees its effect; navigation uses the last tree.
func (sh *Shell) Exec(ctx context.Context, line string) error {
	words, err := Split(line)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return nil
	}
	path := ""
	if isPath(words[0]) {
		path, words = words[0], words[1:]
	}
	cmd := "cd"
	if len(words) > 0 {
		cmd, words = words[0], words[1:]
	} else {
		words = []string{"."}
	}
	if !commandRe.MatchString(cmd) {
		return userErrorf("Command not found %s", cmd)
	}
	iterall := strings.HasSuffix(path, "*")
	path = strings.TrimSuffix(path, "*")
	if iterall && cmd == "cd" {
		cmd, words = "ls", nil
	}

	json := sh.o.JSON
	if cmd == "ls" || cmd == "info" || cmd == "export" {
		if i := slices.Index(words, "--json"); i >= 0 {
			json = true
			words = slices.Delete(words, i, i+1)
		}
	}

	builtin := builtins[cmd]
	needFresh := cmd == "ls" || builtin == nil
	if (needFresh && !sh.fresh) || sh.root == nil || sh.stale {
		if err := sh.reload(ctx); err != nil {
			return err
		}
	}
	sh.fresh = false
	target, err := sh.resolve(path)
	if err != nil {
		return err
	}
	targets := []*Node{target}
	if iterall {
		targets = sortedChildren(target)
	}
	for _, n := range targets {
		if iterall {
			fmt.Fprintf(sh.o.Out, "[%s]\n", n.Path())
		}
		if builtin != nil {
			if err := builtin(ctx, sh, n, words, json); err != nil {
				return err
			}
			continue
		}
		c := Lookup(n.Kind, cmd)
		if c == nil {
			return userErrorf("Command not found %s", cmd)
		}
		if err := sh.run(ctx, c, n, words, json); err != nil {
			return err
		}
	}
	return nil
}

// run binds and runs a ceph-iscsi command on n.
func (sh *Shell) run(ctx context.Context, c *Command, n *Node, words []string, json bool) error {
	a, err := Bind(c, words)
	if err != nil {
		return err
	}
	var cdTo string
	loaded := true // the snapshot taken for this command is current until Refresh
	env := &Env{
		API: sh.o.API, Out: sh.o.Out, LocalName: sh.o.LocalName, JSON: json, Settings: sh.o.Settings,
		Snapshot: func(ctx context.Context) (*Snapshot, error) {
			if !loaded {
				if err := sh.reload(ctx); err != nil {
					return nil, err
				}
				loaded = true
			}
			return sh.snap, nil
		},
		Refresh: func() { loaded = false },
		Cd:      func(p string) { cdTo = p },
	}
	err = c.Run(ctx, env, n, a)
	// Whatever the command changed, the next command must not see the tree as it was;
	// completion keeps the old one until then.
	sh.fresh, sh.stale = false, true
	if err != nil {
		return err
	}
	if cdTo != "" && sh.o.Interactive {
		sh.prev, sh.cwd = sh.cwd, absPath(n, cdTo)
	}
	return nil
}

// absPath makes p absolute relative to n's path.
func absPath(n *Node, p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return strings.TrimRight(n.Path(), "/") + "/" + p
}

// builtin is a configshell built-in command run on node n with its raw words.
type builtin func(ctx context.Context, sh *Shell, n *Node, words []string, json bool) error

var builtins map[string]builtin

func init() {
	builtins = map[string]builtin{
		"ls": builtinLs, "cd": builtinCd, "pwd": builtinPwd, "help": builtinHelp, "exit": builtinExit,
		"bookmarks": builtinBookmarks, "goto": builtinGoto, "get": builtinGet, "set": builtinSet,
	}
}

// builtinSpecs are the built-ins' parameters, for Bind, help and completion.
var builtinSpecs = map[string]*Command{
	"ls": {Name: "ls", Params: []Param{{Name: "path"}, {Name: "depth"}},
		Summary: "Display either the nodes tree relative to path or to the current node."},
	"cd": {Name: "cd", Params: []Param{{Name: "path"}},
		Summary: "Change current path to path (absolute, relative, .., a @bookmark, or - for the previous one)."},
	"pwd":  {Name: "pwd", Summary: "Displays the current path."},
	"help": {Name: "help", Params: []Param{{Name: "topic"}}, Summary: "Displays the manual page for a topic, or list available topics."},
	"exit": {Name: "exit", Summary: "Exits the command line interface."},
	"bookmarks": {Name: "bookmarks", Params: []Param{{Name: "action", Required: true}, {Name: "bookmark"}},
		Summary: "Manage your bookmarks: add (the current path), del, go, show."},
	"goto": {Name: "goto", Params: []Param{{Name: "shortcut", Default: "/"}},
		Summary: "cd to the bookmark at shortcut. See 'help bookmarks' for more info on bookmarks."},
	"get": {Name: "get", Params: []Param{{Name: "group"}, {Name: "parameter"}}, Variadic: true,
		Summary: "Gets the value of one or more configuration parameters in the given group."},
	"set": {Name: "set", Params: []Param{{Name: "group"}},
		Summary: "Sets one or more configuration parameters in the given group."},
}

func builtinLs(_ context.Context, sh *Shell, n *Node, words []string, json bool) error {
	a, err := Bind(builtinSpecs["ls"], words)
	if err != nil {
		return err
	}
	target := n
	if p := a.Get("path"); p != "" {
		saved := sh.cwd
		sh.cwd = n.Path()
		target, err = sh.resolve(p)
		sh.cwd = saved
		if err != nil {
			return err
		}
	}
	depth := sh.prefs.TreeMaxDepth
	if d := a.Get("depth"); d != "" {
		depth, err = strconv.Atoi(d)
		if err != nil {
			return userErrorf("The tree depth must be a number.")
		}
	}
	if json {
		return writeJSON(sh.o.Out, treeJSON(target, depth, depth <= 0))
	}
	_, err = io.WriteString(sh.o.Out, Render(target, target.Path(), depth, sh.o.Width()))
	return err
}

// TreeJSON is a node of `ls --json`.
type TreeJSON struct {
	Name     string      `json:"name"`
	Path     string      `json:"path"`
	Kind     Kind        `json:"kind"`
	Summary  string      `json:"summary"`
	Children []*TreeJSON `json:"children,omitempty"`
}

func treeJSON(n *Node, depth int, unlimited bool) *TreeJSON {
	t := &TreeJSON{Name: n.Name, Path: n.Path(), Kind: n.Kind, Summary: n.Summary}
	if unlimited || depth > 0 {
		for _, c := range sortedChildren(n) {
			t.Children = append(t.Children, treeJSON(c, depth-1, unlimited))
		}
	}
	return t
}

func writeJSON(w io.Writer, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("json: %w", err)
	}
	_, err = w.Write(append(raw, '\n'))
	return err
}

func builtinCd(_ context.Context, sh *Shell, n *Node, words []string, _ bool) error {
	a, err := Bind(builtinSpecs["cd"], words)
	if err != nil {
		return err
	}
	p := a.Get("path")
	if p == "-" || p == "<" {
		sh.prev, sh.cwd = sh.cwd, sh.prev
		return nil
	}
	if p == "" {
		p = "/"
	}
	saved := sh.cwd
	sh.cwd = n.Path()
	t, err := sh.resolve(p)
	sh.cwd = saved
	if err != nil {
		return err
	}
	if t.Path() != sh.cwd {
		sh.prev = sh.cwd
	}
	sh.cwd = t.Path()
	return nil
}

func builtinPwd(_ context.Context, sh *Shell, n *Node, words []string, _ bool) error {
	if _, err := Bind(builtinSpecs["pwd"], words); err != nil {
		return err
	}
	_, err := fmt.Fprintln(sh.o.Out, n.Path())
	return err
}

func builtinExit(_ context.Context, sh *Shell, _ *Node, words []string, _ bool) error {
	if _, err := Bind(builtinSpecs["exit"], words); err != nil {
		return err
	}
	sh.done = true
	return nil
}

func builtinGoto(ctx context.Context, sh *Shell, n *Node, words []string, _ bool) error {
	a, err := Bind(builtinSpecs["goto"], words)
	if err != nil {
		return err
	}
	p, ok := sh.prefs.Bookmarks[a.Get("shortcut")]
	if !ok {
		// upstream ignores an unknown shortcut silently; say so instead
		return userErrorf("No such bookmark %s", a.Get("shortcut"))
	}
	return builtinCd(ctx, sh, n, []string{p}, false)
}

func builtinBookmarks(ctx context.Context, sh *Shell, n *Node, words []string, _ bool) error {
	a, err := Bind(builtinSpecs["bookmarks"], words)
	if err != nil {
		return err
	}
	name := a.Get("bookmark")
	switch action := a.Get("action"); {
	case action == "add" && name != "":
		if _, ok := sh.prefs.Bookmarks[name]; ok {
			return userErrorf("Bookmark %s already exists.", name)
		}
		sh.prefs.Bookmarks[name] = n.Path()
		fmt.Fprintf(sh.o.Out, "Bookmarked %s as %s.\n", n.Path(), name)
		return sh.savePrefs()
	case action == "del" && name != "":
		if _, ok := sh.prefs.Bookmarks[name]; !ok {
			return userErrorf("No such bookmark %s.", name)
		}
		delete(sh.prefs.Bookmarks, name)
		fmt.Fprintf(sh.o.Out, "Deleted bookmark %s.\n", name)
		return sh.savePrefs()
	case action == "go" && name != "":
		p, ok := sh.prefs.Bookmarks[name]
		if !ok {
			return userErrorf("No such bookmark %s.", name)
		}
		return builtinCd(ctx, sh, n, []string{p}, false)
	case action == "show":
		var b strings.Builder
		b.WriteString("BOOKMARKS\n=========\n\n")
		if len(sh.prefs.Bookmarks) == 0 {
			b.WriteString("No bookmarks yet.\n")
		}
		for _, k := range sortedKeys(sh.prefs.Bookmarks) {
			fmt.Fprintf(&b, "%s\n%s\n%s\n\n", k, strings.Repeat("-", len(k)), sh.prefs.Bookmarks[k])
		}
		_, err := io.WriteString(sh.o.Out, b.String())
		return err
	}
	return userErrorf("Syntax error, see 'help bookmarks'.")
}

// globalParams are the preferences of the "global" group.
var globalParams = []string{"prompt_length", "tree_max_depth"}

func (sh *Shell) prefInt(name string) *int {
	switch name {
	case "prompt_length":
		return &sh.prefs.PromptLength
	case "tree_max_depth":
		return &sh.prefs.TreeMaxDepth
	}
	return nil
}

func builtinGet(_ context.Context, sh *Shell, _ *Node, words []string, _ bool) error {
	if len(words) == 0 {
		_, err := io.WriteString(sh.o.Out, "AVAILABLE CONFIGURATION GROUPS\n==============================\nglobal\n")
		return err
	}
	if words[0] != "global" {
		return userErrorf("Unknown configuration group: %s", words[0])
	}
	params := words[1:]
	if len(params) == 0 {
		params = globalParams
	}
	for _, p := range params {
		v := sh.prefInt(p)
		if v == nil {
			return userErrorf("No parameter named %s in group global.", p)
		}
		fmt.Fprintf(sh.o.Out, "%s=%d\n", p, *v)
	}
	return nil
}

func builtinSet(_ context.Context, sh *Shell, _ *Node, words []string, _ bool) error {
	if len(words) == 0 {
		_, err := io.WriteString(sh.o.Out, "AVAILABLE CONFIGURATION GROUPS\n==============================\nglobal\n")
		return err
	}
	if words[0] != "global" {
		return userErrorf("Unknown configuration group: %s", words[0])
	}
	if len(words) == 1 {
		var b strings.Builder
		b.WriteString("GLOBAL CONFIG GROUP\n===================\n")
		for _, p := range globalParams {
			fmt.Fprintf(&b, "%s=number\n%s\nThe %s global parameter.\n\n", p, strings.Repeat("-", len(p)+7), p)
		}
		_, err := io.WriteString(sh.o.Out, b.String())
		return err
	}
	for _, w := range words[1:] {
		name, value, ok := strings.Cut(w, "=")
		if !ok {
			return userErrorf("Syntax error, see 'help set'.")
		}
		v := sh.prefInt(name)
		if v == nil {
			return userErrorf("Unknown parameter %s in group 'global'.", name)
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return userErrorf("Not setting %s! Syntax error, '%s' is not a NUMBER.", name, value)
		}
		*v = n
		fmt.Fprintf(sh.o.Out, "Parameter %s is now '%d'.\n", name, n)
	}
	return sh.savePrefs()
}

// commandNames lists the commands available on n: its ceph-iscsi commands and the
// built-ins, sorted as configshell lists them.
func commandNames(n *Node) []string {
	var names []string
	for k := range builtins {
		names = append(names, k)
	}
	for _, c := range CommandsOf(n.Kind) {
		if !slices.Contains(names, c.Name) {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	return names
}

// spec returns the parameters of command name on n.
func spec(n *Node, name string) *Command {
	if c := Lookup(n.Kind, name); c != nil {
		return c
	}
	return builtinSpecs[name]
}

// syntax is configshell's one-line syntax of a command: required parameters, then
// [optional] ones.
func syntax(c *Command) string {
	var b strings.Builder
	b.WriteString(c.Name + " ")
	for _, p := range c.Params {
		if p.Required {
			b.WriteString(p.Name + " ")
		} else {
			b.WriteString("[" + p.Name + "] ")
		}
	}
	if c.Variadic {
		b.WriteString("[...] ")
	}
	return b.String()
}

func builtinHelp(_ context.Context, sh *Shell, n *Node, words []string, _ bool) error {
	a, err := Bind(builtinSpecs["help"], words)
	if err != nil {
		return err
	}
	var b strings.Builder
	topic := a.Get("topic")
	if topic == "" {
		b.WriteString("AVAILABLE COMMANDS\n==================\nThe following commands are available in the\ncurrent path:\n\n")
		for _, name := range commandNames(n) {
			fmt.Fprintf(&b, "  - %s\n", syntax(spec(n, name)))
		}
		b.WriteString("\n")
		_, err := io.WriteString(sh.o.Out, b.String())
		return err
	}
	c := spec(n, topic)
	if c == nil {
		return userErrorf("Cannot find help topic %s.", topic)
	}
	fmt.Fprintf(&b, "SYNTAX\n======\n%s\n\n", syntax(c))
	var defaults []string
	for _, p := range c.Params {
		if !p.Required && p.Default != "" {
			defaults = append(defaults, p.Name+"="+p.Default)
		}
	}
	if len(defaults) > 0 {
		fmt.Fprintf(&b, "DEFAULT VALUES\n==============\n%s \n\n", strings.Join(defaults, " "))
	}
	desc := c.Help
	if desc == "" {
		desc = c.Summary
	}
	if desc == "" {
		desc = "No description available."
	}
	fmt.Fprintf(&b, "DESCRIPTION\n===========\n%s\n", strings.TrimRight(desc, "\n"))
	_, err = io.WriteString(sh.o.Out, b.String())
	return err
}

// IsUserError reports whether err is a message for the operator (a usage or validation
// error) rather than a failure of the API or the cluster.
func IsUserError(err error) bool {
	var ue *UserError
	return errors.As(err, &ue)
}
