package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"ceph-iscsi/chap"
	"ceph-iscsi/config"
)

// This file holds what the ceph-iscsi commands (cmd_*.go) share: upstream's message
// shapes, its `info` layout, IQN normalisation, and the completion of live values.

// say prints one line of command output, as upstream's logger.info does on the console.
func say(e *Env, format string, args ...any) {
	fmt.Fprintf(e.Out, format+"\n", args...)
}

func ok(e *Env) error {
	say(e, "ok")
	return nil
}

// refuse is a client-side refusal (the command made no API call), in upstream's words.
func refuse(format string, args ...any) error { return userErrorf(format, args...) }

// failed is an API call's failure shown the way upstream shows it: its prefix, then the
// API's own message. The cause stays reachable (errors.As *APIError).
type failed struct {
	prefix string
	err    error
	whole  bool // prefix is the whole message
}

func (f *failed) Error() string {
	if f.whole {
		return f.prefix
	}
	return f.prefix + apiMessage(f.err)
}
func (f *failed) Unwrap() error { return f.err }

func fail(prefix string, err error) error { return &failed{prefix: prefix, err: err} }

// withMsg is an API failure shown as upstream's own sentence around it.
func withMsg(err error, format string, args ...any) error {
	return &failed{prefix: fmt.Sprintf(format, args...), err: err, whole: true}
}

// apiMessage is upstream's response_message: the API's "message", or the status line, or
// for a connection failure its "Unable to connect to api endpoint @ <url>".
func apiMessage(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Message != "" {
			return ae.Message
		}
		return fmt.Sprintf("%d %s", ae.Status, http.StatusText(ae.Status))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "Unable to connect to api endpoint @ " + ue.URL
	}
	return err.Error()
}

// local returns the URL of route on this host's API.
func local(e *Env, route ...string) string { return e.API.URL("localhost", route...) }

// put, del and get call the API with a form (nil: no body).
func put(ctx context.Context, e *Env, u string, form url.Values) error {
	return e.API.Do(ctx, http.MethodPut, u, form, nil)
}

func del(ctx context.Context, e *Env, u string, form url.Values) error {
	return e.API.Do(ctx, http.MethodDelete, u, form, nil)
}

// snap returns the command's snapshot; a command cannot check anything without it.
func snap(ctx context.Context, e *Env) (*Snapshot, error) {
	s, err := e.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Config == nil {
		return nil, userErrorf("Unable to refresh local config")
	}
	return s, nil
}

// target returns the node's target from the snapshot, or an error naming it.
func target(s *Snapshot, iqn string) (*config.Target, error) {
	t := s.Config.Targets[iqn]
	if t == nil {
		return nil, fmt.Errorf("target %s is not defined in the configuration", iqn)
	}
	return t, nil
}

// snapTarget is the command's snapshot and the target iqn in it.
func snapTarget(ctx context.Context, e *Env, iqn string) (*Snapshot, *config.Target, error) {
	s, err := snap(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	t, err := target(s, iqn)
	return s, t, err
}

// normalizeIQN is rtslib's normalize_wwn(['iqn'], name) as gwcli applies it: trimmed and
// lower-cased, and an iqn. name (eui. and naa. are not accepted here, as upstream).
func normalizeIQN(name string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "iqn.") || strings.ContainsAny(n, " _") || !iqnShape.MatchString(n) || config.ValidateIQN(n) != nil {
		return "", refuse("IQN name '%s' is not valid for iSCSI", name)
	}
	return n, nil
}

// iqnShape is rtslib's iqn regex.
var iqnShape = regexp.MustCompile(`^iqn\.\d{4}-[01]\d\..*\..*`)

// evalBool is configshell's ui_eval_param(value, 'bool', default).
func evalBool(a Args, name string, def bool) (bool, error) {
	if !a.Given[name] {
		return def, nil
	}
	switch strings.ToLower(a.Get(name)) {
	case "true", "yes", "y", "on", "1":
		return true, nil
	case "false", "no", "n", "off", "0":
		return false, nil
	}
	return false, refuse("Syntax error, '%s' is not bool.", a.Get(name))
}

// opt returns the form value of an optional argument: absent when not given, as Python's
// requests drops a None.
func opt(form url.Values, a Args, name string) {
	if a.Given[name] {
		form.Set(name, a.Get(name))
	}
}

// controlsJSON is json.dumps({attribute: value}), the controls form field of reconfigure.
func controlsJSON(attribute, value string) string {
	return "{" + config.PyString(attribute) + ": " + config.PyString(value) + "}"
}

// pyTitle is Python's str.title(): a letter after a non-letter is upper-cased, every
// other letter lower-cased.
func pyTitle(s string) string {
	var b strings.Builder
	prev := false
	for _, r := range s {
		if unicode.IsLetter(r) {
			if prev {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToUpper(r))
			}
			prev = true
		} else {
			b.WriteRune(r)
			prev = false
		}
	}
	return b.String()
}

// infoField is one of a node's display_attributes. Value is a string (printed as is), a
// []string (one item a line), or an infoDict.
type infoField struct {
	Name  string
	Value any
}

// infoDict is a dict attribute: sorted keys, "- key .. value" lines; a value that is itself
// a dict (an infoInner) is printed as key=value pairs after a padded key.
type infoDict map[string]any

// infoInner is an inner dict of infoDict, in its own key order (Python's insertion order).
type infoInner [][2]string

// pad is Python's "{:<{}}".format(s, n): n counts characters.
func pad(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}

// infoText is upstream's UINode.get_info: each attribute as a title-cased label padded to
// the longest attribute name, " .. ", and the value.
func infoText(fields []infoField) string {
	width := 0
	for _, f := range fields {
		width = max(width, utf8.RuneCountInString(f.Name))
	}
	var b strings.Builder
	for _, f := range fields {
		label := pyTitle(strings.ReplaceAll(f.Name, "_", " "))
		var value string
		switch v := f.Value.(type) {
		case infoDict:
			if len(v) == 0 {
				value = "UNDEFINED\n"
				break
			}
			b.WriteString(label + "\n")
			keyWidth := 0
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
				keyWidth = max(keyWidth, utf8.RuneCountInString(k))
			}
			sort.Strings(keys)
			for _, k := range keys {
				if inner, isDict := v[k].(infoInner); isDict {
					parts := make([]string, len(inner))
					for i, kv := range inner {
						parts[i] = kv[0] + "=" + kv[1]
					}
					fmt.Fprintf(&b, "- %s .. %s\n", pad(k, keyWidth), strings.Join(parts, ", "))
				} else {
					fmt.Fprintf(&b, "- %s .. %v\n", k, v[k])
				}
			}
			continue
		case []string:
			var lines []string
			for i, item := range v {
				if i == 0 {
					lines = append(lines, item)
				} else {
					lines = append(lines, strings.Repeat(" ", width+4)+item)
				}
			}
			value = strings.Join(lines, "\n")
		default:
			value = fmt.Sprint(v)
		}
		fmt.Fprintf(&b, "%s .. %s\n", pad(label, width), value)
	}
	return b.String()
}

// printInfo writes text the way console_message prints it (print adds a newline).
func printInfo(w io.Writer, text string) {
	fmt.Fprintln(w, text)
}

const infoNotAvailable = "'info' not available for this item"

// pyBool is str() of a Python bool.
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// authDict is the auth attribute of target and client info: the stored CHAP block with the
// passwords decrypted, as upstream's CHAP class shows them.
func authDict(e *Env, a config.Auth) infoDict {
	return infoDict{
		"username": a.Username, "password": decrypt(e, a.Password, a.PasswordEncryptionEnabled),
		"password_encryption_enabled":        pyBool(a.PasswordEncryptionEnabled),
		"mutual_username":                    a.MutualUsername,
		"mutual_password":                    decrypt(e, a.MutualPassword, a.MutualPasswordEncryptionEnabled),
		"mutual_password_encryption_enabled": pyBool(a.MutualPasswordEncryptionEnabled),
	}
}

func decrypt(e *Env, stored string, encrypted bool) string {
	if !encrypted || stored == "" || e.Settings == nil {
		return stored
	}
	key, err := chap.ReadPrivateKey(e.Settings.PrivKeyPath())
	if err != nil {
		return stored
	}
	plain, err := chap.Decrypt(key, stored)
	if err != nil {
		return stored
	}
	return plain
}

// controlDict is the control_values attribute: every control's effective value, with
// " (override)" where it differs from the global setting.
func controlDict(e *Env, stored map[string]any, disk bool) infoDict {
	d := infoDict{}
	if e.Settings == nil {
		return d
	}
	values, err := e.Settings.TargetControlValues(stored)
	if disk {
		values, err = e.Settings.DiskControlValues(stored)
	}
	if err != nil {
		return d
	}
	for _, v := range values {
		d[v.Name] = v.String()
	}
	return d
}

// normalizeIP is upstream's normalize_ip_address: an IPv6 address in its compressed form,
// anything else unchanged.
func normalizeIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() && !a.Is4In6() {
		return a.String()
	}
	return s
}

// Completion of live values from the snapshot.

func completeWith(f func(s *Snapshot, n *Node) []string) func(context.Context, *Env, *Node) []string {
	return func(ctx context.Context, e *Env, n *Node) []string {
		s, err := e.Snapshot(ctx)
		if err != nil || s == nil || s.Config == nil {
			return nil
		}
		return f(s, n)
	}
}

func fixed(words ...string) func(context.Context, *Env, *Node) []string {
	return func(context.Context, *Env, *Node) []string { return words }
}

var (
	completePools = completeWith(func(s *Snapshot, _ *Node) []string {
		var out []string
		for _, name := range sortedKeys(s.Pools) {
			if s.Pools[name].Replicated {
				out = append(out, name)
			}
		}
		return out
	})
	completeDisks = completeWith(func(s *Snapshot, _ *Node) []string { return sortedKeys(s.Config.Disks) })
	// completeUnmappedDisks lists the disks not mapped to the node's target.
	completeUnmappedDisks = completeWith(func(s *Snapshot, n *Node) []string {
		var out []string
		t := s.Config.Targets[n.Target]
		for _, id := range sortedKeys(s.Config.Disks) {
			if t == nil {
				out = append(out, id)
			} else if _, mapped := t.Disks[id]; !mapped {
				out = append(out, id)
			}
		}
		return out
	})
	completeTargetDisks = completeWith(func(s *Snapshot, n *Node) []string {
		if t := s.Config.Targets[n.Target]; t != nil {
			return sortedKeys(t.Disks)
		}
		return nil
	})
	completeTargets = completeWith(func(s *Snapshot, _ *Node) []string { return sortedKeys(s.Config.Targets) })
	completeClients = completeWith(func(s *Snapshot, n *Node) []string {
		if t := s.Config.Targets[n.Target]; t != nil {
			return sortedKeys(t.Clients)
		}
		return nil
	})
	completePortals = completeWith(func(s *Snapshot, n *Node) []string {
		if t := s.Config.Targets[n.Target]; t != nil {
			return sortedKeys(t.Portals)
		}
		return nil
	})
	completeGatewayNames = completeWith(func(s *Snapshot, n *Node) []string {
		names := sortedKeys(s.Gateways)
		if t := s.Config.Targets[n.Target]; t != nil {
			names = slices.DeleteFunc(names, func(g string) bool { _, in := t.Portals[g]; return in })
		}
		return names
	})
	completeGroups = completeWith(func(s *Snapshot, n *Node) []string {
		if t := s.Config.Targets[n.Target]; t != nil {
			return sortedKeys(t.Groups)
		}
		return nil
	})
	completeSnapshots = completeWith(func(s *Snapshot, n *Node) []string {
		return slices.Clone(s.Images[n.Disk()].Snapshots)
	})
)

// itoa is strconv.Itoa, short.
func itoa(n int) string { return strconv.Itoa(n) }

// showInfo prints an item's info: upstream's text, or with --json an object of the same
// attributes under their attribute names.
func showInfo(e *Env, fields []infoField) error {
	if !e.JSON {
		printInfo(e.Out, infoText(fields))
		return nil
	}
	obj := map[string]any{}
	for _, f := range fields {
		switch v := f.Value.(type) {
		case infoDict:
			m := map[string]any{}
			for k, x := range v {
				if inner, isDict := x.(infoInner); isDict {
					im := map[string]string{}
					for _, kv := range inner {
						im[kv[0]] = kv[1]
					}
					m[k] = im
				} else {
					m[k] = x
				}
			}
			obj[f.Name] = m
		case []string:
			obj[f.Name] = append([]string{}, v...)
		default:
			obj[f.Name] = v
		}
	}
	return writeJSON(e.Out, obj)
}
