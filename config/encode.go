package config

import (
	"bytes"
	"strconv"
)

// The typed encoder writes a document straight from its structs, in the
// bytes MarshalAny(d.toMap()) gives, without building the generic tree
// first: for a target of thousands of LUNs that tree (a map per LUN
// reference) was most of the cost of every commit. An object with Extra
// keys goes through toMap and MarshalAny, which merge them with the known
// keys in sorted order; encodeMatchesGeneric tests the two agree.

// marshalDoc encodes d as Marshal does, reporting a Controls or Extra value
// that cannot be encoded.
func marshalDoc(d *Doc) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(max(16<<10, int(sizeHint.Load())+1<<10))
	if err := d.encode(&b, 0); err != nil {
		return nil, err
	}
	sizeHint.Store(int64(b.Len()))
	return b.Bytes(), nil
}

// object writes the members of one JSON object in the order its caller
// gives them, which must be sorted.
type objectWriter struct {
	b     *bytes.Buffer
	depth int
	n     int
}

func openObject(b *bytes.Buffer, depth int) objectWriter { return objectWriter{b: b, depth: depth} }

// key starts the member named k.
func (o *objectWriter) key(k string) {
	if o.n == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	o.n++
	newline(o.b, o.depth+1)
	writeString(o.b, k)
	o.b.WriteString(": ")
}

func (o *objectWriter) close() {
	if o.n == 0 {
		o.b.WriteString("{}")
		return
	}
	newline(o.b, o.depth)
	o.b.WriteByte('}')
}

func (o *objectWriter) str(k, v string) {
	o.key(k)
	writeString(o.b, v)
}

func (o *objectWriter) optStr(k string, v *string) {
	if v != nil {
		o.str(k, *v)
	}
}

func (o *objectWriter) int(k string, v int64) {
	o.key(k)
	o.b.WriteString(strconv.FormatInt(v, 10))
}

func (o *objectWriter) bool(k string, v bool) {
	o.key(k)
	if v {
		o.b.WriteString("true")
	} else {
		o.b.WriteString("false")
	}
}

// list writes a string list; nil is written as [] (optional lists check
// for nil before calling).
func (o *objectWriter) list(k string, l []string) {
	o.key(k)
	if len(l) == 0 {
		o.b.WriteString("[]")
		return
	}
	o.b.WriteByte('[')
	for i, s := range l {
		if i > 0 {
			o.b.WriteByte(',')
		}
		newline(o.b, o.depth+2)
		writeString(o.b, s)
	}
	newline(o.b, o.depth+1)
	o.b.WriteByte(']')
}

// generic writes a Controls map (nil as {}).
func (o *objectWriter) generic(k string, m map[string]any) error {
	o.key(k)
	return encodeValue(o.b, nonNilMap(m), o.depth+1)
}

// children writes a map of typed children in key order, each with enc.
func encodeChildren[T any](o *objectWriter, k string, m map[string]T, enc func(T, *bytes.Buffer, int) error) error {
	o.key(k)
	c := openObject(o.b, o.depth+1)
	for _, name := range sortedKeys(m) {
		c.key(name)
		if err := enc(m[name], o.b, o.depth+2); err != nil {
			return err
		}
	}
	c.close()
	return nil
}

// ptr adapts a pointer child's encoder: a nil child is written as null, as
// toMap does, for Validate to report.
func ptr[T any](enc func(*T, *bytes.Buffer, int) error) func(*T, *bytes.Buffer, int) error {
	return func(p *T, b *bytes.Buffer, depth int) error {
		if p == nil {
			b.WriteString("null")
			return nil
		}
		return enc(p, b, depth)
	}
}

func (d *Doc) encode(b *bytes.Buffer, depth int) error {
	if len(d.Extra) > 0 {
		return encodeValue(b, d.toMap(), depth)
	}
	o := openObject(b, depth)
	o.str("created", d.Created)
	o.key("discovery_auth")
	if err := d.DiscoveryAuth.encode(b, depth+1); err != nil {
		return err
	}
	if err := encodeChildren(&o, "disks", d.Disks, ptr((*Disk).encode)); err != nil {
		return err
	}
	o.int("epoch", d.Epoch)
	if err := encodeChildren(&o, "gateways", d.Gateways, ptr((*Gateway).encode)); err != nil {
		return err
	}
	if d.GatewaysUpgraded != nil {
		o.list("gateways_upgraded", d.GatewaysUpgraded)
	}
	if err := encodeChildren(&o, "targets", d.Targets, ptr((*Target).encode)); err != nil {
		return err
	}
	o.str("updated", d.Updated)
	o.int("version", int64(d.Version))
	o.close()
	return nil
}

func (d *Disk) encode(b *bytes.Buffer, depth int) error {
	if len(d.Extra) > 0 {
		return encodeValue(b, d.toMap(), depth)
	}
	o := openObject(b, depth)
	o.optStr("allocating_host", d.AllocatingHost)
	o.str("backstore", d.Backstore)
	o.str("backstore_object_name", d.BackstoreObjectName)
	if err := o.generic("controls", d.Controls); err != nil {
		return err
	}
	o.str("created", d.Created)
	o.str("image", d.Image)
	o.optStr("owner", d.Owner)
	o.str("pool", d.Pool)
	o.int("pool_id", d.PoolID)
	o.str("updated", d.Updated)
	o.str("wwn", d.WWN)
	o.close()
	return nil
}

func (g *Gateway) encode(b *bytes.Buffer, depth int) error {
	if len(g.Extra) > 0 {
		return encodeValue(b, g.toMap(), depth)
	}
	o := openObject(b, depth)
	o.int("active_luns", int64(g.ActiveLuns))
	o.str("created", g.Created)
	o.str("updated", g.Updated)
	o.close()
	return nil
}

func (t *Target) encode(b *bytes.Buffer, depth int) error {
	if len(t.Extra) > 0 {
		return encodeValue(b, t.toMap(), depth)
	}
	o := openObject(b, depth)
	o.bool("acl_enabled", t.ACLEnabled)
	o.key("auth")
	if err := t.Auth.encode(b, depth+1); err != nil {
		return err
	}
	if err := encodeChildren(&o, "clients", t.Clients, ptr((*Client).encode)); err != nil {
		return err
	}
	if err := o.generic("controls", t.Controls); err != nil {
		return err
	}
	o.str("created", t.Created)
	if err := encodeChildren(&o, "disks", t.Disks, LunRef.encode); err != nil {
		return err
	}
	if err := encodeChildren(&o, "groups", t.Groups, ptr((*Group).encode)); err != nil {
		return err
	}
	if t.IPList != nil {
		o.list("ip_list", t.IPList)
	}
	if err := encodeChildren(&o, "portals", t.Portals, ptr((*Portal).encode)); err != nil {
		return err
	}
	o.optStr("updated", t.Updated)
	o.close()
	return nil
}

func (p *Portal) encode(b *bytes.Buffer, depth int) error {
	if len(p.Extra) > 0 {
		return encodeValue(b, p.toMap(), depth)
	}
	o := openObject(b, depth)
	o.list("gateway_ip_list", p.GatewayIPList)
	o.list("inactive_portal_ips", p.InactivePortalIPs)
	o.list("portal_ip_addresses", p.PortalIPAddresses)
	o.int("tpgs", int64(p.TPGs))
	o.close()
	return nil
}

func (c *Client) encode(b *bytes.Buffer, depth int) error {
	if len(c.Extra) > 0 {
		return encodeValue(b, c.toMap(), depth)
	}
	o := openObject(b, depth)
	o.key("auth")
	if err := c.Auth.encode(b, depth+1); err != nil {
		return err
	}
	o.str("group_name", c.GroupName)
	if err := encodeChildren(&o, "luns", c.Luns, LunRef.encode); err != nil {
		return err
	}
	o.close()
	return nil
}

func (g *Group) encode(b *bytes.Buffer, depth int) error {
	if len(g.Extra) > 0 {
		return encodeValue(b, g.toMap(), depth)
	}
	o := openObject(b, depth)
	if err := encodeChildren(&o, "disks", g.Disks, LunRef.encode); err != nil {
		return err
	}
	o.list("members", g.Members)
	o.close()
	return nil
}

func (a Auth) encode(b *bytes.Buffer, depth int) error {
	if len(a.Extra) > 0 {
		return encodeValue(b, a.toMap(), depth)
	}
	o := openObject(b, depth)
	o.str("mutual_password", a.MutualPassword)
	o.bool("mutual_password_encryption_enabled", a.MutualPasswordEncryptionEnabled)
	o.str("mutual_username", a.MutualUsername)
	o.str("password", a.Password)
	o.bool("password_encryption_enabled", a.PasswordEncryptionEnabled)
	o.str("username", a.Username)
	o.close()
	return nil
}

func (l LunRef) encode(b *bytes.Buffer, depth int) error {
	if len(l.Extra) > 0 {
		return encodeValue(b, l.toMap(), depth)
	}
	o := openObject(b, depth)
	o.int("lun_id", int64(l.LunID))
	o.close()
	return nil
}

// Entry returns the generic (JSON) form of the value at keys, with every
// key it holds, unknown ones included, as the whole document's Marshal and
// ParseAny would give it; false when it is absent or null. Only the object
// holding it is encoded and parsed (MarshalPart), so reading one disk or
// client costs that object, not the document.
func (d *Doc) Entry(keys ...string) (any, bool) {
	raw, rest, err := d.MarshalPart(keys...)
	if err != nil || raw == nil {
		return nil, false
	}
	m, err := ParseAny(raw)
	if err != nil {
		return nil, false
	}
	var cur any = m
	for _, k := range rest {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok || cur == nil {
			return nil, false
		}
	}
	return cur, true
}

// MarshalPart encodes the smallest object of d that holds the value at keys
// (a disk, gateway, target, or a target's client, portal or group), so that
// a read of one entry does not encode every LUN of the document. It returns
// that object's bytes, which are exactly its part of Marshal's, and the keys
// left to walk inside it; raw is nil when the path names an absent or null
// object. A path that names no such object encodes the whole document.
func (d *Doc) MarshalPart(keys ...string) (raw []byte, rest []string, err error) {
	var b bytes.Buffer
	enc := func(ok bool, e func(*bytes.Buffer, int) error, used int) ([]byte, []string, error) {
		if !ok {
			return nil, nil, nil
		}
		if err := e(&b, 0); err != nil {
			return nil, nil, err
		}
		return b.Bytes(), keys[used:], nil
	}
	switch {
	case len(keys) >= 2 && keys[0] == "disks":
		o := d.Disks[keys[1]]
		return enc(o != nil, func(b *bytes.Buffer, n int) error { return o.encode(b, n) }, 2)
	case len(keys) >= 2 && keys[0] == "gateways":
		o := d.Gateways[keys[1]]
		return enc(o != nil, func(b *bytes.Buffer, n int) error { return o.encode(b, n) }, 2)
	case len(keys) >= 2 && keys[0] == "targets":
		t := d.Targets[keys[1]]
		if t == nil {
			return nil, nil, nil
		}
		if len(keys) >= 4 {
			switch keys[2] {
			case "clients":
				o := t.Clients[keys[3]]
				return enc(o != nil, func(b *bytes.Buffer, n int) error { return o.encode(b, n) }, 4)
			case "portals":
				o := t.Portals[keys[3]]
				return enc(o != nil, func(b *bytes.Buffer, n int) error { return o.encode(b, n) }, 4)
			case "groups":
				o := t.Groups[keys[3]]
				return enc(o != nil, func(b *bytes.Buffer, n int) error { return o.encode(b, n) }, 4)
			}
		}
		return enc(true, t.encode, 2)
	}
	raw, err = marshalDoc(d)
	return raw, keys, err
}
