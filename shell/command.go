package shell

import (
	"context"
	"io"

	"ceph-iscsi/settings"
)

// Param is one argument of a command, in upstream's positional order. An argument may also be
// given as name=value, as configshell allows.
type Param struct {
	Name     string
	Default  string // used when the argument is absent and Required is false
	Required bool
	// Complete lists live candidates for the value (pools, images, IQNs, gateway names,
	// snapshots) for tab completion; nil means no completion. It must not block for long.
	Complete func(ctx context.Context, e *Env, n *Node) []string
}

// Args holds a command's arguments after binding: every Param's value (given or default)
// by name, plus Given for telling an explicit default apart from an absent argument.
type Args struct {
	Values map[string]string
	Given  map[string]bool
}

// Get returns the bound value of the named argument.
func (a Args) Get(name string) string { return a.Values[name] }

// Command is a ceph-iscsi command on one kind of node (the 47 node/command pairs of spec
// §10.2); the configshell built-ins (cd, ls, pwd, help, exit, bookmarks, get, set) are not
// Commands but belong to the shell itself.
type Command struct {
	Kind   Kind
	Name   string
	Params []Param
	// Variadic, when set, collects any positional words after Params into the last Param,
	// separated by single spaces (reconfigure's value).
	Variadic bool
	Summary  string // one line for `help`
	Help     string // the long text of `help <command>`, upstream's wording where it has one
	Run      func(ctx context.Context, e *Env, n *Node, a Args) error
}

// Env is what a command runs with: the API client, the output, the snapshot of the current
// state and a way to move the shell.
type Env struct {
	API *Client
	Out io.Writer // command output; errors are returned, not printed
	// Snapshot returns the state as of the start of the command, loading it once; Refresh
	// drops it so that the next Snapshot call (for example the tree after the command) sees
	// the command's effect.
	Snapshot func(ctx context.Context) (*Snapshot, error)
	Refresh  func()
	// Cd moves the interactive shell to path after the command (create then cd into the new
	// node, as upstream does); it does nothing in one-shot mode.
	Cd func(path string)
	// LocalName is this host's gateway name (upstream's local FQDN), the default owner of new
	// disks and the first gateway a target must get.
	LocalName string
	// Settings is iscsi-gateway.cfg: the API port and mode root's info prints, the global
	// control values info compares overrides with, the key that decrypts CHAP passwords.
	Settings *settings.Settings
	// JSON asks for machine-readable output (`--json` on info and export).
	JSON bool
}

// registry holds every Command; commands register themselves from init functions of the
// files that define them (cmd_*.go), one file per node kind.
var registry []*Command

func register(c *Command) { registry = append(registry, c) }

// Lookup returns the command of that name on that kind of node, or nil.
func Lookup(k Kind, name string) *Command {
	for _, c := range registry {
		if c.Kind == k && c.Name == name {
			return c
		}
	}
	return nil
}

// CommandsOf returns the commands of a node kind in registration order.
func CommandsOf(k Kind) []*Command {
	var out []*Command
	for _, c := range registry {
		if c.Kind == k {
			out = append(out, c)
		}
	}
	return out
}
