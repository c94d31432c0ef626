package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// CurrentVersion is the schema version this package reads and writes.
const CurrentVersion = 11

// Doc is a whole gateway.conf document at schema version 11.
//
// Optional keys are pointers or nil-able slices: nil means the key is absent,
// which upstream code tests for (for example `'ip_list' in target`). Required
// keys missing from a parsed document are filled with their zero value.
// Extra maps hold keys this package does not know; they are written back,
// but a key that collides with a known one is ignored in favour of the field.
type Doc struct {
	Version       int
	Epoch         int64
	Created       string
	Updated       string
	Disks         map[string]*Disk    // keyed by disk id "pool/image"
	Gateways      map[string]*Gateway // keyed by gateway name (FQDN)
	Targets       map[string]*Target  // keyed by target IQN
	DiscoveryAuth Auth
	// GatewaysUpgraded exists only during a v9->v10 rolling upgrade; nil
	// means absent, non-nil (even empty) means present.
	GatewaysUpgraded []string
	Extra            map[string]any

	// own marks the disks, gateways and targets (and their portals,
	// clients and groups) this document may change in place; see Fork.
	own *owner
	// cow: d is a fork, so the objects it does not own are shared and
	// never written in place (Frozen).
	cow bool
	// line is a fork's identity and change log (nil when d is not a fork).
	line *lineage
	// disksOwn, gatewaysOwn and targetsOwn are the marks under which d
	// last copied its three maps (ownMap): a map is d's to write in place
	// only while its mark is d's.
	disksOwn, gatewaysOwn, targetsOwn *owner
}

// Disk is disks["pool/image"].
type Disk struct {
	Pool                string
	Image               string
	PoolID              int64
	WWN                 string
	Backstore           string
	BackstoreObjectName string
	// AllocatingHost is absent in documents upgraded from old versions.
	AllocatingHost *string
	// Owner is present only while the disk is mapped to a target.
	Owner    *string
	Controls map[string]any
	Created  string
	Updated  string
	Extra    map[string]any
	own      *owner
}

// Gateway is gateways["fqdn"].
type Gateway struct {
	ActiveLuns int
	Created    string
	Updated    string
	Extra      map[string]any
	own        *owner
}

// Target is targets["iqn"].
type Target struct {
	Disks      map[string]LunRef
	Clients    map[string]*Client
	Portals    map[string]*Portal
	Groups     map[string]*Group
	Controls   map[string]any
	ACLEnabled bool
	Auth       Auth
	// IPList is absent (nil) until the first gateway is added; its order
	// defines TPG numbering on every gateway.
	IPList  []string
	Created string
	// Updated is absent on a target that was created and never updated.
	Updated *string
	Extra   map[string]any
	own     *owner
	// borrowed are the maps this target shares with the one it was
	// copied from (cow.go).
	borrowed uint8
}

// Portal is targets[iqn].portals["fqdn"].
type Portal struct {
	PortalIPAddresses []string
	GatewayIPList     []string
	InactivePortalIPs []string
	TPGs              int
	Extra             map[string]any
	own               *owner
}

// Client is targets[iqn].clients["initiator iqn"].
type Client struct {
	Auth      Auth
	Luns      map[string]LunRef
	GroupName string
	Extra     map[string]any
	own       *owner
}

// Group is targets[iqn].groups["name"].
type Group struct {
	Members []string
	Disks   map[string]LunRef
	Extra   map[string]any
	own     *owner
}

// Auth is the 6-key CHAP block used for discovery, targets and clients.
type Auth struct {
	Username                        string
	Password                        string
	PasswordEncryptionEnabled       bool
	MutualUsername                  string
	MutualPassword                  string
	MutualPasswordEncryptionEnabled bool
	Extra                           map[string]any
}

// LunRef is the {"lun_id": n} value of target, client and group disk maps.
type LunRef struct {
	LunID int
	Extra map[string]any
}

// FieldError reports a problem at one place in the document. Path looks like
// `targets["iqn.2003-01.x:y"].disks`.
type FieldError struct {
	Path string
	Msg  string
	// Err is the cause when there is one to test for (a *NameError).
	Err error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }
func (e *FieldError) Unwrap() error { return e.Err }

// Parse decodes a version 11 (or newer) document. Older documents must go
// through Load, which upgrades them first.
func Parse(raw []byte) (*Doc, error) {
	if d, ok := decodeFast(raw); ok {
		return d, nil
	}
	return parseGeneric(raw)
}

// parseGeneric is Parse through the generic tree: every document, every error.
func parseGeneric(raw []byte) (*Doc, error) {
	m, err := ParseAny(raw)
	if err != nil {
		return nil, err
	}
	return FromAny(m)
}

// FromAny decodes the generic representation (see ParseAny) of a version 11
// document. The map is not retained.
func FromAny(m map[string]any) (*Doc, error) {
	d, err := decodeDoc(m)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return d, nil
}

// Marshal returns the document bytes exactly as the Python gateways write
// them. It panics if a Controls or Extra value cannot be encoded (a
// programming error that Validate reports).
func (d *Doc) Marshal() []byte {
	b, err := marshalDoc(d)
	if err != nil {
		panic(err)
	}
	return b
}

// sortedKeys gives deterministic iteration for validation and upgrades.
func sortedKeys[T any](m map[string]T) []string {
	return slices.Sorted(maps.Keys(m))
}

func childPath(path, name string) string { return path + "[" + strconv.Quote(name) + "]" }

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields decodes one JSON object: each accessor consumes a known key, and
// whatever is left over becomes Extra. Only the first error is kept.
type fields struct {
	path string
	rest map[string]any
	err  error
}

func newFields(v any, path string) (*fields, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &FieldError{Path: path, Msg: "expected object, got " + kindOf(v)}
	}
	return &fields{path: path, rest: maps.Clone(m)}, nil
}

func (f *fields) take(key string) (any, bool) {
	v, ok := f.rest[key]
	delete(f.rest, key)
	return v, ok
}

func (f *fields) fail(key, want string, got any) {
	if f.err == nil {
		f.err = &FieldError{Path: keyPath(f.path, key), Msg: "expected " + want + ", got " + kindOf(got)}
	}
}

func (f *fields) setErr(err error) {
	if f.err == nil {
		f.err = err
	}
}

func (f *fields) str(key string) string {
	p := f.optStr(key)
	if p == nil {
		return ""
	}
	return *p
}

func (f *fields) optStr(key string) *string {
	v, ok := f.take(key)
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		f.fail(key, "string", v)
		return nil
	}
	return &s
}

func (f *fields) boolean(key string) bool {
	v, ok := f.take(key)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		f.fail(key, "boolean", v)
	}
	return b
}

func (f *fields) integer(key string) int64 {
	v, ok := f.take(key)
	if !ok {
		return 0
	}
	n, ok := asInt(v)
	if !ok {
		f.fail(key, "integer", v)
	}
	return n
}

// asInt accepts the integer forms that can appear in a generic tree: text
// from the parser, or ints put there by the upgrade code.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil
	case int:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func (f *fields) strList(key string) []string {
	v, ok := f.take(key)
	if !ok {
		return nil
	}
	switch l := v.(type) {
	case []string:
		return append([]string{}, l...)
	case []any:
		out := make([]string, 0, len(l))
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				f.setErr(&FieldError{Path: fmt.Sprintf("%s[%d]", keyPath(f.path, key), i), Msg: "expected string, got " + kindOf(e)})
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	f.fail(key, "array", v)
	return nil
}

// object returns the members of an object-valued key (nil if absent) and the
// path of that key.
func (f *fields) object(key string) (map[string]any, string) {
	p := keyPath(f.path, key)
	v, ok := f.take(key)
	if !ok {
		return nil, p
	}
	m, ok := v.(map[string]any)
	if !ok {
		f.fail(key, "object", v)
		return nil, p
	}
	return m, p
}

// generic keeps an object whose values this package does not interpret
// (controls): any JSON is accepted.
func (f *fields) generic(key string) map[string]any {
	m, _ := f.object(key)
	if m == nil {
		return nil
	}
	return deepCopy(m).(map[string]any)
}

func (f *fields) extra() map[string]any {
	if len(f.rest) == 0 {
		return nil
	}
	return deepCopy(f.rest).(map[string]any)
}

// deepCopy copies the containers of a generic tree so the decoded document
// shares nothing with its input; scalars are immutable and shared.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	case []string:
		return append([]string{}, x...)
	}
	return v
}

// children decodes every member of an object-valued key with dec.
func children[T any](f *fields, key string, dec func(any, string) (T, error)) map[string]T {
	m, p := f.object(key)
	out := make(map[string]T, len(m))
	// Sorted so that the error reported for a bad document is stable.
	for _, name := range slices.Sorted(maps.Keys(m)) {
		t, err := dec(m[name], childPath(p, name))
		if err != nil {
			f.setErr(err)
			return out
		}
		out[name] = t
	}
	return out
}

func decodeDoc(m map[string]any) (*Doc, error) {
	f, err := newFields(m, "")
	if err != nil {
		return nil, err
	}
	vv, ok := m["version"]
	if !ok {
		return nil, &FieldError{Path: "version", Msg: "missing"}
	}
	if v, ok := asInt(vv); ok && v < CurrentVersion {
		return nil, &FieldError{Path: "version", Msg: fmt.Sprintf("document is version %d and needs an upgrade to %d (use Load)", v, CurrentVersion)}
	}
	d := &Doc{
		Version:  int(f.integer("version")),
		Epoch:    f.integer("epoch"),
		Created:  f.str("created"),
		Updated:  f.str("updated"),
		Disks:    children(f, "disks", decodeDisk),
		Gateways: children(f, "gateways", decodeGateway),
		Targets:  children(f, "targets", decodeTarget),
	}
	if a, p := f.object("discovery_auth"); a != nil {
		d.DiscoveryAuth, err = decodeAuth(a, p)
		f.setErr(err)
	}
	d.GatewaysUpgraded = f.strList("gateways_upgraded")
	d.Extra = f.extra()
	return d, f.err
}

func decodeDisk(v any, path string) (*Disk, error) {
	f, err := newFields(v, path)
	if err != nil {
		return nil, err
	}
	d := &Disk{
		Pool:                f.str("pool"),
		Image:               f.str("image"),
		PoolID:              f.integer("pool_id"),
		WWN:                 f.str("wwn"),
		Backstore:           f.str("backstore"),
		BackstoreObjectName: f.str("backstore_object_name"),
		AllocatingHost:      f.optStr("allocating_host"),
		Owner:               f.optStr("owner"),
		Controls:            f.generic("controls"),
		Created:             f.str("created"),
		Updated:             f.str("updated"),
	}
	d.Extra = f.extra()
	return d, f.err
}

func decodeGateway(v any, path string) (*Gateway, error) {
	f, err := newFields(v, path)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		ActiveLuns: int(f.integer("active_luns")),
		Created:    f.str("created"),
		Updated:    f.str("updated"),
	}
	g.Extra = f.extra()
	return g, f.err
}

func decodeTarget(v any, path string) (*Target, error) {
	f, err := newFields(v, path)
	if err != nil {
		return nil, err
	}
	t := &Target{
		Disks:      children(f, "disks", decodeLunRef),
		Clients:    children(f, "clients", decodeClient),
		Portals:    children(f, "portals", decodePortal),
		Groups:     children(f, "groups", decodeGroup),
		Controls:   f.generic("controls"),
		ACLEnabled: f.boolean("acl_enabled"),
		IPList:     f.strList("ip_list"),
		Created:    f.str("created"),
		Updated:    f.optStr("updated"),
	}
	if a, p := f.object("auth"); a != nil {
		t.Auth, err = decodeAuth(a, p)
		f.setErr(err)
	}
	t.Extra = f.extra()
	return t, f.err
}

func decodePortal(v any, path string) (*Portal, error) {
	f, err := newFields(v, path)
	if err != nil {
		return nil, err
	}
	p := &Portal{
		PortalIPAddresses: f.strList("portal_ip_addresses"),
		GatewayIPList:     f.strList("gateway_ip_list"),
		InactivePortalIPs: f.strList("inactive_portal_ips"),
		TPGs:              int(f.integer("tpgs")),
	}
	p.Extra = f.extra()
	return p, f.err
}

func decodeClient(v any, path string) (*Client, error) {
	f, err := newFields(v, path)
	if err != nil {
		return nil, err
	}
	c := &Client{
		Luns:      children(f, "luns", decodeLunRef),
		GroupName: f.str("group_name"),
	}
	if a, p := f.object("auth"); a != nil {
		c.Auth, err = decodeAuth(a, p)
		f.setErr(err)
	}
	c.Extra = f.extra()
	return c, f.err
}

func decodeGroup(v any, path string) (*Group, error) {
	f, err := newFields(v, path)
	if err != nil {
		return nil, err
	}
	g := &Group{
		Members: f.strList("members"),
		Disks:   children(f, "disks", decodeLunRef),
	}
	g.Extra = f.extra()
	return g, f.err
}

func decodeAuth(v any, path string) (Auth, error) {
	f, err := newFields(v, path)
	if err != nil {
		return Auth{}, err
	}
	a := Auth{
		Username:                        f.str("username"),
		Password:                        f.str("password"),
		PasswordEncryptionEnabled:       f.boolean("password_encryption_enabled"),
		MutualUsername:                  f.str("mutual_username"),
		MutualPassword:                  f.str("mutual_password"),
		MutualPasswordEncryptionEnabled: f.boolean("mutual_password_encryption_enabled"),
	}
	a.Extra = f.extra()
	return a, f.err
}

func decodeLunRef(v any, path string) (LunRef, error) {
	f, err := newFields(v, path)
	if err != nil {
		return LunRef{}, err
	}
	l := LunRef{LunID: int(f.integer("lun_id"))}
	l.Extra = f.extra()
	return l, f.err
}

// withExtra starts an object from the unknown keys so known keys, set
// afterwards, win over colliding Extra entries.
func withExtra(extra map[string]any, n int) map[string]any {
	m := make(map[string]any, len(extra)+n)
	maps.Copy(m, extra)
	return m
}

func setOpt[T any](m map[string]any, key string, v *T) {
	if v == nil {
		delete(m, key)
		return
	}
	m[key] = *v
}

func setOptList(m map[string]any, key string, l []string) {
	if l == nil {
		delete(m, key)
		return
	}
	m[key] = l
}

func nonNilList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// mapOf converts a map of typed children; a nil pointer child is written as
// null so the mistake is visible (Validate reports it) rather than hidden.
func mapOf[T any](in map[string]T, conv func(T) any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		out[k] = conv(v)
	}
	return out
}

func ptrConv[T any](conv func(*T) map[string]any) func(*T) any {
	return func(p *T) any {
		if p == nil {
			return nil
		}
		return conv(p)
	}
}

func (d *Doc) toMap() map[string]any {
	m := withExtra(d.Extra, 9)
	m["version"] = d.Version
	m["epoch"] = d.Epoch
	m["created"] = d.Created
	m["updated"] = d.Updated
	m["disks"] = mapOf(d.Disks, ptrConv((*Disk).toMap))
	m["gateways"] = mapOf(d.Gateways, ptrConv((*Gateway).toMap))
	m["targets"] = mapOf(d.Targets, ptrConv((*Target).toMap))
	m["discovery_auth"] = d.DiscoveryAuth.toMap()
	setOptList(m, "gateways_upgraded", d.GatewaysUpgraded)
	return m
}

func (d *Disk) toMap() map[string]any {
	m := withExtra(d.Extra, 11)
	m["pool"] = d.Pool
	m["image"] = d.Image
	m["pool_id"] = d.PoolID
	m["wwn"] = d.WWN
	m["backstore"] = d.Backstore
	m["backstore_object_name"] = d.BackstoreObjectName
	setOpt(m, "allocating_host", d.AllocatingHost)
	setOpt(m, "owner", d.Owner)
	m["controls"] = nonNilMap(d.Controls)
	m["created"] = d.Created
	m["updated"] = d.Updated
	return m
}

func (g *Gateway) toMap() map[string]any {
	m := withExtra(g.Extra, 3)
	m["active_luns"] = g.ActiveLuns
	m["created"] = g.Created
	m["updated"] = g.Updated
	return m
}

func (t *Target) toMap() map[string]any {
	m := withExtra(t.Extra, 10)
	m["disks"] = mapOf(t.Disks, LunRef.toMap)
	m["clients"] = mapOf(t.Clients, ptrConv((*Client).toMap))
	m["portals"] = mapOf(t.Portals, ptrConv((*Portal).toMap))
	m["groups"] = mapOf(t.Groups, ptrConv((*Group).toMap))
	m["controls"] = nonNilMap(t.Controls)
	m["acl_enabled"] = t.ACLEnabled
	m["auth"] = t.Auth.toMap()
	setOptList(m, "ip_list", t.IPList)
	m["created"] = t.Created
	setOpt(m, "updated", t.Updated)
	return m
}

func (p *Portal) toMap() map[string]any {
	m := withExtra(p.Extra, 4)
	m["portal_ip_addresses"] = nonNilList(p.PortalIPAddresses)
	m["gateway_ip_list"] = nonNilList(p.GatewayIPList)
	m["inactive_portal_ips"] = nonNilList(p.InactivePortalIPs)
	m["tpgs"] = p.TPGs
	return m
}

func (c *Client) toMap() map[string]any {
	m := withExtra(c.Extra, 3)
	m["auth"] = c.Auth.toMap()
	m["luns"] = mapOf(c.Luns, LunRef.toMap)
	m["group_name"] = c.GroupName
	return m
}

func (g *Group) toMap() map[string]any {
	m := withExtra(g.Extra, 2)
	m["members"] = nonNilList(g.Members)
	m["disks"] = mapOf(g.Disks, LunRef.toMap)
	return m
}

func (a Auth) toMap() map[string]any {
	m := withExtra(a.Extra, 6)
	m["username"] = a.Username
	m["password"] = a.Password
	m["password_encryption_enabled"] = a.PasswordEncryptionEnabled
	m["mutual_username"] = a.MutualUsername
	m["mutual_password"] = a.MutualPassword
	m["mutual_password_encryption_enabled"] = a.MutualPasswordEncryptionEnabled
	return m
}

func (l LunRef) toMap() any {
	m := withExtra(l.Extra, 1)
	m["lun_id"] = l.LunID
	return m
}
