package config

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The typed decoder reads a well-formed current document straight into its
// structs, without the generic tree ParseAny builds and FromAny then walks
// (a map per LUN reference, copied once more per object): a peer decodes
// every commit another gateway makes, so for a target of thousands of LUNs
// this was most of what a peer spent per change. It takes only the plain
// case: printable-ASCII JSON, every known key of the type decodeDoc wants,
// a version needing no upgrade. On anything else it gives up, and the caller
// goes the generic way, which reports errors and runs upgrades as before.
// decodeFast and Parse agree on every input they both accept
// (FuzzParse checks).

// giveUp stops the typed decoder; it never leaves this file.
type giveUp struct{}

// decodeFast decodes raw, or reports false when the generic path must.
func decodeFast(raw []byte) (d *Doc, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, is := r.(giveUp); !is {
				panic(r)
			}
			d, ok = nil, false
		}
	}()
	p := &scanner{s: raw}
	d = p.doc()
	p.ws()
	if p.i != len(p.s) {
		return nil, false
	}
	return d, true
}

type scanner struct {
	s []byte
	i int
	// base and rec are LoadFrom's (decode_from.go): nil for Load.
	base, rec *Decoding
}

func (p *scanner) fail() { panic(giveUp{}) }

func (p *scanner) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek is the next byte after white space (0 at the end).
func (p *scanner) peek() byte {
	p.ws()
	if p.i >= len(p.s) {
		return 0
	}
	return p.s[p.i]
}

func (p *scanner) expect(c byte) {
	if p.peek() != c {
		p.fail()
	}
	p.i++
}

// members calls fn for each member of an object, with the scanner at its
// value.
func (p *scanner) members(fn func(key string)) {
	p.expect('{')
	if p.peek() == '}' {
		p.i++
		return
	}
	for {
		k := p.str()
		p.expect(':')
		fn(k)
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return
		default:
			p.fail()
		}
	}
}

// str reads a string of printable ASCII without escapes; anything else is
// the generic decoder's (escapes, and what encoding/json does with bad ones).
func (p *scanner) str() string {
	if p.peek() != '"' {
		p.fail()
	}
	start := p.i + 1
	for j := start; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			p.i = j + 1
			return string(p.s[start:j])
		case c < 0x20 || c >= 0x7f || c == '\\':
			p.fail()
		}
	}
	p.fail()
	return ""
}

func (p *scanner) optStr() *string {
	s := p.str()
	return &s
}

func (p *scanner) literal(word string) {
	if !bytes.HasPrefix(p.s[p.i:], []byte(word)) {
		p.fail()
	}
	p.i += len(word)
}

func (p *scanner) boolean() bool {
	switch p.peek() {
	case 't':
		p.literal("true")
		return true
	case 'f':
		p.literal("false")
		return false
	}
	p.fail()
	return false
}

// integer reads a number that asInt accepts.
func (p *scanner) integer() int64 {
	p.ws()
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !isDigit(c) && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		p.i++
	}
	text := string(p.s[start:p.i])
	if !validNumber(text) {
		p.fail()
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		p.fail()
	}
	return n
}

func (p *scanner) strList() []string {
	p.expect('[')
	out := []string{}
	if p.peek() == ']' {
		p.i++
		return out
	}
	for {
		out = append(out, p.str())
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return out
		default:
			p.fail()
		}
	}
}

// skip passes over one value, checking little: its bytes go to the generic
// decoder, which checks them. Bytes outside ASCII give up, so that invalid
// UTF-8 is refused as ParseAny refuses it.
func (p *scanner) skip() []byte {
	p.ws()
	start := p.i
	depth := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c >= 0x80:
			p.fail()
		case c == '"':
			for p.i++; p.i < len(p.s) && p.s[p.i] != '"'; p.i++ {
				if p.s[p.i] >= 0x80 {
					p.fail()
				}
				if p.s[p.i] == '\\' {
					p.i++
				}
			}
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']' || c == ',':
			if depth == 0 {
				return p.s[start:p.i] // the end of a scalar
			}
			if c != ',' {
				depth--
			}
		}
		p.i++
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			return p.s[start:p.i]
		}
	}
	p.fail()
	return nil
}

// generic reads a value this package does not interpret, as ParseAny would.
func (p *scanner) generic() any {
	raw := p.skip()
	if bytes.Equal(raw, []byte("{}")) {
		return map[string]any{}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		p.fail()
	}
	return v
}

// genericObject reads an object-valued generic key (controls).
func (p *scanner) genericObject() map[string]any {
	m, ok := p.generic().(map[string]any)
	if !ok {
		p.fail()
	}
	return m
}

// extra collects a member no field takes.
func extraMember(extra *map[string]any, k string, v any) {
	if *extra == nil {
		*extra = map[string]any{}
	}
	(*extra)[k] = v
}

// childMap reads an object of typed children; a repeated key replaces the
// earlier one, as in ParseAny's map.
func childMap[T any](p *scanner, dec func(*scanner) T) map[string]T {
	out := map[string]T{}
	p.members(func(k string) { out[k] = dec(p) })
	return out
}

func (p *scanner) doc() *Doc {
	d := &Doc{Disks: map[string]*Disk{}, Gateways: map[string]*Gateway{}, Targets: map[string]*Target{}}
	hasVersion := false
	p.members(func(k string) {
		switch k {
		case "version":
			d.Version, hasVersion = int(p.integer()), true
		case "epoch":
			d.Epoch = p.integer()
		case "created":
			d.Created = p.str()
		case "updated":
			d.Updated = p.str()
		case "disks":
			if p.rec != nil {
				d.Disks = p.disksFrom()
			} else {
				d.Disks = childMap(p, (*scanner).disk)
			}
		case "gateways":
			d.Gateways = childMap(p, (*scanner).gateway)
		case "targets":
			if p.rec != nil {
				d.Targets = p.targetsFrom()
			} else {
				d.Targets = childMap(p, (*scanner).target)
			}
		case "discovery_auth":
			d.DiscoveryAuth = p.auth()
		case "gateways_upgraded":
			d.GatewaysUpgraded = p.strList()
		default:
			extraMember(&d.Extra, k, p.generic())
		}
	})
	if !hasVersion || d.Version < CurrentVersion {
		p.fail()
	}
	return d
}

func (p *scanner) disk() *Disk {
	d := &Disk{}
	p.members(func(k string) {
		switch k {
		case "pool":
			d.Pool = p.str()
		case "image":
			d.Image = p.str()
		case "pool_id":
			d.PoolID = p.integer()
		case "wwn":
			d.WWN = p.str()
		case "backstore":
			d.Backstore = p.str()
		case "backstore_object_name":
			d.BackstoreObjectName = p.str()
		case "allocating_host":
			d.AllocatingHost = p.optStr()
		case "owner":
			d.Owner = p.optStr()
		case "controls":
			d.Controls = p.genericObject()
		case "created":
			d.Created = p.str()
		case "updated":
			d.Updated = p.str()
		default:
			extraMember(&d.Extra, k, p.generic())
		}
	})
	return d
}

func (p *scanner) gateway() *Gateway {
	g := &Gateway{}
	p.members(func(k string) {
		switch k {
		case "active_luns":
			g.ActiveLuns = int(p.integer())
		case "created":
			g.Created = p.str()
		case "updated":
			g.Updated = p.str()
		default:
			extraMember(&g.Extra, k, p.generic())
		}
	})
	return g
}

func (p *scanner) target() *Target {
	t := &Target{Disks: map[string]LunRef{}, Clients: map[string]*Client{}, Portals: map[string]*Portal{}, Groups: map[string]*Group{}}
	p.members(func(k string) {
		switch k {
		case "disks":
			t.Disks = childMap(p, (*scanner).lunRef)
		case "clients":
			t.Clients = childMap(p, (*scanner).client)
		case "portals":
			t.Portals = childMap(p, (*scanner).portal)
		case "groups":
			t.Groups = childMap(p, (*scanner).group)
		default:
			p.targetField(t, k)
		}
	})
	return t
}

// targetField reads the target member k that is not one of its four maps.
func (p *scanner) targetField(t *Target, k string) {
	switch k {
	case "controls":
		t.Controls = p.genericObject()
	case "acl_enabled":
		t.ACLEnabled = p.boolean()
	case "auth":
		t.Auth = p.auth()
	case "ip_list":
		t.IPList = p.strList()
	case "created":
		t.Created = p.str()
	case "updated":
		t.Updated = p.optStr()
	default:
		extraMember(&t.Extra, k, p.generic())
	}
}

func (p *scanner) portal() *Portal {
	pt := &Portal{}
	p.members(func(k string) {
		switch k {
		case "portal_ip_addresses":
			pt.PortalIPAddresses = p.strList()
		case "gateway_ip_list":
			pt.GatewayIPList = p.strList()
		case "inactive_portal_ips":
			pt.InactivePortalIPs = p.strList()
		case "tpgs":
			pt.TPGs = int(p.integer())
		default:
			extraMember(&pt.Extra, k, p.generic())
		}
	})
	return pt
}

func (p *scanner) client() *Client {
	c := &Client{Luns: map[string]LunRef{}}
	p.members(func(k string) {
		switch k {
		case "luns":
			c.Luns = childMap(p, (*scanner).lunRef)
		case "group_name":
			c.GroupName = p.str()
		case "auth":
			c.Auth = p.auth()
		default:
			extraMember(&c.Extra, k, p.generic())
		}
	})
	return c
}

func (p *scanner) group() *Group {
	g := &Group{Disks: map[string]LunRef{}}
	p.members(func(k string) {
		switch k {
		case "members":
			g.Members = p.strList()
		case "disks":
			g.Disks = childMap(p, (*scanner).lunRef)
		default:
			extraMember(&g.Extra, k, p.generic())
		}
	})
	return g
}

func (p *scanner) auth() Auth {
	var a Auth
	// a repeated "auth" replaces the earlier one whole, as in ParseAny's map
	p.members(func(k string) {
		switch k {
		case "username":
			a.Username = p.str()
		case "password":
			a.Password = p.str()
		case "password_encryption_enabled":
			a.PasswordEncryptionEnabled = p.boolean()
		case "mutual_username":
			a.MutualUsername = p.str()
		case "mutual_password":
			a.MutualPassword = p.str()
		case "mutual_password_encryption_enabled":
			a.MutualPasswordEncryptionEnabled = p.boolean()
		default:
			extraMember(&a.Extra, k, p.generic())
		}
	})
	return a
}

func (p *scanner) lunRef() LunRef {
	var l LunRef
	p.members(func(k string) {
		switch k {
		case "lun_id":
			l.LunID = int(p.integer())
		default:
			extraMember(&l.Extra, k, p.generic())
		}
	})
	return l
}
