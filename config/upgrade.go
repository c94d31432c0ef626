package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Identity names the gateway running an upgrade. Before schema v10 gateways
// were keyed by short hostname; since v10 by FQDN.
type Identity struct {
	FQDN      string // socket.getfqdn() semantics; the v10+ gateway name
	ShortName string // the hostname up to its first dot; the pre-v10 name
}

// NewIdentity derives ShortName from hostname the way upstream does
// (socket.gethostname().split('.')[0]).
func NewIdentity(hostname, fqdn string) Identity {
	short, _, _ := strings.Cut(hostname, ".")
	return Identity{FQDN: fqdn, ShortName: short}
}

// UpgradeOptions are the inputs of UpgradeRaw besides the document.
type UpgradeOptions struct {
	Gateway Identity
	// Now stamps the items the upgrade rewrites, as upstream's
	// add_item/update_item do.
	Now time.Time
	// EncryptionKeysPresent tells whether this gateway has both RSA key
	// files. The 7->8 step marks a legacy client password as encrypted
	// only if it is longer than 16 characters and the keys are present.
	EncryptionKeysPresent bool
}

// Load is the read path of the store: parse raw bytes, upgrade them for this
// gateway if needed, and decode the result. upgraded reports whether the
// document changed and so must be written back.
func Load(raw []byte, opts UpgradeOptions) (doc *Doc, upgraded bool, err error) {
	if d, ok := decodeFast(raw); ok && !d.NeedsUpgrade(opts.Gateway) {
		return d, false, nil
	}
	m, err := ParseAny(raw)
	if err != nil {
		return nil, false, err
	}
	upgraded, err = UpgradeRaw(m, opts)
	if err != nil {
		return nil, false, err
	}
	doc, err = FromAny(m)
	if err != nil {
		return nil, false, err
	}
	return doc, upgraded, nil
}

// NeedsUpgrade reports whether UpgradeRaw would change the document for gw:
// an old version, or a v9->v10 rolling rename this gateway has not done yet.
// A document whose version cannot be read needs an upgrade, so that
// UpgradeRaw gets to report the error.
func NeedsUpgrade(m map[string]any, gw Identity) bool {
	v, err := rawVersion(m)
	if err != nil {
		return true
	}
	return v < CurrentVersion || needsHostnameUpdate(m, v, gw.FQDN)
}

// NeedsUpgrade is the typed form of NeedsUpgrade: a parsed document is at
// least v11, so only the rolling rename can be pending.
func (d *Doc) NeedsUpgrade(gw Identity) bool {
	return d.Version < CurrentVersion ||
		d.GatewaysUpgraded != nil && !slices.Contains(d.GatewaysUpgraded, gw.FQDN)
}

// rawVersion reads "version" as a float because upstream once wrote 9.5 as
// an intermediate version during the v9->v10 rolling upgrade.
func rawVersion(m map[string]any) (float64, error) {
	v, ok := m["version"]
	if !ok {
		return 0, &FieldError{Path: "version", Msg: "missing"}
	}
	switch x := v.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return f, nil
		}
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, &FieldError{Path: "version", Msg: "expected number, got " + kindOf(v)}
}

// needsHostnameUpdate is upstream's needs_hostname_update.
func needsHostnameUpdate(m map[string]any, version float64, fqdn string) bool {
	if version == 9 {
		return true
	}
	gu, ok := m["gateways_upgraded"]
	if !ok || gu == nil {
		return false
	}
	l, ok := gu.([]any)
	if !ok {
		return true // malformed; UpgradeRaw reports it
	}
	return !slices.Contains(l, any(fqdn))
}

// UpgradeRaw runs upstream's upgrade chain (<=2 -> 11) on the generic form of
// a document, in place. Each step is guarded by the version reached so far,
// and items the chain rewrites get created/updated stamps as upstream's
// add_item/update_item give them. It does not bump epoch or the top-level
// updated stamp: that is the commit's job (Doc.Touch).
//
// On error m is left unchanged. Where upstream would crash on a missing key
// (for example a v3 document without clients), the key is treated as empty.
func UpgradeRaw(m map[string]any, opts UpgradeOptions) (changed bool, err error) {
	v, err := rawVersion(m)
	if err != nil {
		return false, fmt.Errorf("config: upgrade: %w", err)
	}
	if !NeedsUpgrade(m, opts.Gateway) {
		return false, nil
	}
	if v == 9.5 {
		// Written by releases before upstream's #144 fix while a rolling
		// v9->v10 upgrade was in progress; it means the same as 9.
		v = 9
	}
	if v != float64(int64(v)) {
		return false, fmt.Errorf("config: upgrade: version: unsupported value %v", v)
	}
	u := &upgrader{
		w:    deepCopy(m).(map[string]any),
		now:  Timestamp(opts.Now),
		opts: opts,
	}
	u.w["version"] = int(v)
	if err := u.run(int(v)); err != nil {
		return false, fmt.Errorf("config: upgrade: %w", err)
	}
	clear(m)
	maps.Copy(m, u.w)
	return true, nil
}

type upgrader struct {
	w    map[string]any // working copy of the document
	now  string
	opts UpgradeOptions
}

func (u *upgrader) run(version int) error {
	updateHostname := needsHostnameUpdate(u.w, float64(version), u.opts.Gateway.FQDN)
	steps := []struct {
		applies func(int) bool
		step    func() error
	}{
		{func(v int) bool { return v <= 2 }, u.v2to3},
		{func(v int) bool { return v == 3 }, u.v3to4},
		{func(v int) bool { return v == 4 }, u.v4to5},
		{func(v int) bool { return v == 5 }, u.v5to6},
		{func(v int) bool { return v == 6 }, u.v6to7},
		{func(v int) bool { return v == 7 }, u.v7to8},
		{func(v int) bool { return v == 8 }, u.v8to9},
		{func(v int) bool { return v == 9 || updateHostname }, u.v9to10},
		{func(v int) bool { return v == 10 }, u.v10to11},
	}
	for _, s := range steps {
		if !s.applies(version) {
			continue
		}
		if err := s.step(); err != nil {
			return err
		}
		if v, ok := asInt(u.w["version"]); ok {
			version = int(v)
		}
	}
	return nil
}

// stamp is what upstream's update_item does to a named dict item.
func (u *upgrader) stamp(item map[string]any) { item["updated"] = u.now }

// object returns parent[key] as an object. A missing (or null) key yields a
// fresh empty object stored in parent when create is set, or nil otherwise.
func object(parent map[string]any, key, path string, create bool) (map[string]any, error) {
	v, ok := parent[key]
	if !ok || v == nil {
		if !create {
			return nil, nil
		}
		m := map[string]any{}
		parent[key] = m
		return m, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &FieldError{Path: path, Msg: "expected object, got " + kindOf(v)}
	}
	return m, nil
}

// eachObject calls fn for every member of parent[key] (an object of
// objects), in sorted order for determinism.
func eachObject(parent map[string]any, key, path string, fn func(name string, item map[string]any, path string) error) error {
	m, err := object(parent, key, path, false)
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(m) {
		p := childPath(path, name)
		item, ok := m[name].(map[string]any)
		if !ok {
			return &FieldError{Path: p, Msg: "expected object, got " + kindOf(m[name])}
		}
		if err := fn(name, item, p); err != nil {
			return err
		}
	}
	return nil
}

func (u *upgrader) eachTarget(fn func(iqn string, t map[string]any, path string) error) error {
	return eachObject(u.w, "targets", "targets", fn)
}

func (u *upgrader) eachDisk(fn func(id string, d map[string]any, path string) error) error {
	return eachObject(u.w, "disks", "disks", fn)
}

// truthy is Python truthiness for the JSON values the upgrade inspects.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return err != nil || f != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func stringAt(m map[string]any, key, path string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &FieldError{Path: keyPath(path, key), Msg: "expected string, got " + kindOf(v)}
	}
	return s, nil
}

func stringList(v any, path string) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, &FieldError{Path: path, Msg: "expected array, got " + kindOf(v)}
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, &FieldError{Path: fmt.Sprintf("%s[%d]", path, i), Msg: "expected string, got " + kindOf(e)}
		}
		out[i] = s
	}
	return out, nil
}

func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func (u *upgrader) v2to3() error {
	u.w["groups"] = map[string]any{}
	u.w["version"] = 3
	return nil
}

// v3to4 moves the single-target layout (gateways.iqn, top-level clients,
// groups and controls) under targets[iqn], with upstream's fixes for a
// missing controls key (#61) and for a document without a target (#162).
func (u *upgrader) v3to4() error {
	oldGws, err := object(u.w, "gateways", "gateways", false)
	if err != nil {
		return err
	}
	if oldGws == nil {
		return &FieldError{Path: "gateways", Msg: "missing"}
	}
	iqn, err := stringAt(oldGws, "iqn", "gateways")
	if err != nil {
		return err
	}
	targets := map[string]any{}
	u.w["targets"] = targets
	u.w["discovery_auth"] = map[string]any{"chap": "", "chap_mutual": ""}
	gateways := map[string]any{}

	if iqn != "" {
		portals := map[string]any{}
		for _, host := range sortedKeys(oldGws) {
			portal, ok := oldGws[host].(map[string]any)
			if !ok {
				continue // created, ip_list, iqn
			}
			gw := map[string]any{"active_luns": portal["active_luns"]}
			if gw["active_luns"] == nil {
				gw["active_luns"] = 0
			}
			for _, k := range []string{"created", "updated"} {
				if truthy(portal[k]) {
					gw[k] = portal[k]
				}
			}
			for _, k := range []string{"iqn", "active_luns", "created", "updated"} {
				delete(portal, k)
			}
			gateways[host] = gw
			portals[host] = portal
		}
		clients, err := object(u.w, "clients", "clients", true)
		if err != nil {
			return err
		}
		err = eachObject(u.w, "clients", "clients", func(_ string, c map[string]any, p string) error {
			delete(c, "created")
			delete(c, "updated")
			auth, err := object(c, "auth", keyPath(p, "auth"), true)
			if err != nil {
				return err
			}
			auth["chap_mutual"] = ""
			return nil
		})
		if err != nil {
			return err
		}
		groups, err := object(u.w, "groups", "groups", true)
		if err != nil {
			return err
		}
		err = eachObject(u.w, "groups", "groups", func(_ string, g map[string]any, _ string) error {
			delete(g, "created")
			delete(g, "updated")
			return nil
		})
		if err != nil {
			return err
		}
		disks, err := object(u.w, "disks", "disks", true)
		if err != nil {
			return err
		}
		controls, err := object(u.w, "controls", "controls", true)
		if err != nil {
			return err
		}
		target := map[string]any{
			"disks":    anyList(sortedKeys(disks)),
			"clients":  clients,
			"portals":  portals,
			"groups":   groups,
			"controls": controls,
			"created":  u.now,
		}
		if ipList, ok := oldGws["ip_list"]; ok {
			target["ip_list"] = ipList
		}
		u.stamp(target)
		targets[iqn] = target
	}

	u.w["gateways"] = gateways
	delete(u.w, "controls")
	delete(u.w, "clients")
	delete(u.w, "groups")
	u.w["version"] = 4
	return nil
}

func (u *upgrader) v4to5() error {
	err := u.eachDisk(func(_ string, d map[string]any, _ string) error {
		d["backstore"] = "user:rbd"
		u.stamp(d)
		return nil
	})
	u.w["version"] = 5
	return err
}

func (u *upgrader) v5to6() error {
	err := u.eachTarget(func(_ string, t map[string]any, _ string) error {
		t["acl_enabled"] = true
		u.stamp(t)
		return nil
	})
	u.w["version"] = 6
	return err
}

// dotToSlash is the lossy v6->v7 disk id conversion: "pool.image" becomes
// "pool/image", but so does every other dot.
func dotToSlash(id string) string { return strings.ReplaceAll(id, ".", "/") }

// renameKeys applies dotToSlash to the keys of parent[key]. When two old ids
// collide the later one in sorted order wins (upstream: insertion order).
func renameKeys(parent map[string]any, key, path string) error {
	m, err := object(parent, key, path, false)
	if err != nil || m == nil {
		return err
	}
	renamed := make(map[string]any, len(m))
	for _, id := range sortedKeys(m) {
		renamed[dotToSlash(id)] = m[id]
	}
	parent[key] = renamed
	return nil
}

func (u *upgrader) v6to7() error {
	err := u.eachDisk(func(id string, d map[string]any, _ string) error {
		d["backstore_object_name"] = id
		if _, ok := d["created"]; !ok {
			d["created"] = u.now
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := renameKeys(u.w, "disks", "disks"); err != nil {
		return err
	}
	err = u.eachTarget(func(_ string, t map[string]any, tp string) error {
		if raw, ok := t["disks"]; ok {
			ids, err := stringList(raw, keyPath(tp, "disks"))
			if err != nil {
				return err
			}
			for i, id := range ids {
				ids[i] = dotToSlash(id)
			}
			t["disks"] = anyList(ids)
		}
		err := eachObject(t, "clients", keyPath(tp, "clients"), func(_ string, c map[string]any, cp string) error {
			return renameKeys(c, "luns", keyPath(cp, "luns"))
		})
		if err != nil {
			return err
		}
		err = eachObject(t, "groups", keyPath(tp, "groups"), func(_ string, g map[string]any, gp string) error {
			return renameKeys(g, "disks", keyPath(gp, "disks"))
		})
		if err != nil {
			return err
		}
		u.stamp(t)
		return nil
	})
	u.w["version"] = 7
	return err
}

// splitChap converts auth[key] ("user/password", split at the first slash;
// anything without a slash means disabled) into the two named keys.
func splitChap(auth map[string]any, key, userKey, passKey, path string) (string, error) {
	chap, err := stringAt(auth, key, path)
	if err != nil {
		return "", err
	}
	user, pass, ok := strings.Cut(chap, "/")
	if !ok {
		user, pass = "", ""
	}
	auth[userKey] = user
	auth[passKey] = pass
	delete(auth, key)
	return pass, nil
}

func (u *upgrader) v7to8() error {
	da, err := object(u.w, "discovery_auth", "discovery_auth", true)
	if err != nil {
		return err
	}
	if _, err := splitChap(da, "chap", "username", "password", "discovery_auth"); err != nil {
		return err
	}
	da["password_encryption_enabled"] = false
	if _, err := splitChap(da, "chap_mutual", "mutual_username", "mutual_password", "discovery_auth"); err != nil {
		return err
	}
	da["mutual_password_encryption_enabled"] = false

	// Legacy encrypted passwords were longer than 16 characters, so that
	// is the only hint that one is ciphertext.
	encrypted := func(pass string) bool {
		return utf8.RuneCountInString(pass) > 16 && u.opts.EncryptionKeysPresent
	}
	err = u.eachTarget(func(_ string, t map[string]any, tp string) error {
		err := eachObject(t, "clients", keyPath(tp, "clients"), func(_ string, c map[string]any, cp string) error {
			ap := keyPath(cp, "auth")
			auth, err := object(c, "auth", ap, true)
			if err != nil {
				return err
			}
			pass, err := splitChap(auth, "chap", "username", "password", ap)
			if err != nil {
				return err
			}
			auth["password_encryption_enabled"] = encrypted(pass)
			mpass, err := splitChap(auth, "chap_mutual", "mutual_username", "mutual_password", ap)
			if err != nil {
				return err
			}
			auth["mutual_password_encryption_enabled"] = encrypted(mpass)
			return nil
		})
		if err != nil {
			return err
		}
		u.stamp(t)
		return nil
	})
	u.w["version"] = 8
	return err
}

func (u *upgrader) v8to9() error {
	err := u.eachTarget(func(_ string, t map[string]any, tp string) error {
		err := eachObject(t, "portals", keyPath(tp, "portals"), func(_ string, p map[string]any, _ string) error {
			if ip, ok := p["portal_ip_address"]; ok {
				p["portal_ip_addresses"] = []any{ip}
				delete(p, "portal_ip_address")
			}
			return nil
		})
		if err != nil {
			return err
		}
		u.stamp(t)
		return nil
	})
	u.w["version"] = 9
	return err
}

// v9to10 is the per-gateway rolling rename from short hostname to FQDN.
// Every gateway runs it once (recorded in gateways_upgraded); the first one
// also moves the version on so it can finish the chain and serve I/O while
// the others have not upgraded yet (#144).
func (u *upgrader) v9to10() error {
	id := u.opts.Gateway
	var upgraded []any
	switch l := u.w["gateways_upgraded"].(type) {
	case nil:
	case []any:
		upgraded = l
	default:
		return &FieldError{Path: "gateways_upgraded", Msg: "expected array, got " + kindOf(l)}
	}
	gateways, err := object(u.w, "gateways", "gateways", true)
	if err != nil {
		return err
	}
	if !slices.Contains(upgraded, any(id.FQDN)) {
		// The FQDN may equal the short name (#118): renaming onto
		// itself must not delete the entry.
		rename := func(m map[string]any) bool {
			v, ok := m[id.ShortName]
			if !ok || id.ShortName == id.FQDN {
				return false
			}
			delete(m, id.ShortName)
			m[id.FQDN] = v
			return true
		}
		rename(gateways)
		err := u.eachTarget(func(_ string, t map[string]any, tp string) error {
			portals, err := object(t, "portals", keyPath(tp, "portals"), false)
			if err != nil {
				return err
			}
			if portals != nil && rename(portals) {
				u.stamp(t)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = u.eachDisk(func(_ string, d map[string]any, _ string) error {
			for _, k := range []string{"allocating_host", "owner"} {
				if s, ok := d[k].(string); ok && s == id.ShortName {
					d[k] = id.FQDN
				}
			}
			u.stamp(d) // upstream rewrites every disk here
			return nil
		})
		if err != nil {
			return err
		}
		upgraded = append(upgraded, id.FQDN)
	}
	done := true
	for name := range gateways {
		if !slices.Contains(upgraded, any(name)) {
			done = false
			break
		}
	}
	if done {
		delete(u.w, "gateways_upgraded")
	} else {
		u.w["gateways_upgraded"] = upgraded
	}
	if v, _ := asInt(u.w["version"]); v == 9 {
		u.w["version"] = 10
	}
	return nil
}

// v10to11 adds target-level CHAP and turns the target disk list into
// {disk: {lun_id}} numbered in sorted disk-id order.
func (u *upgrader) v10to11() error {
	err := u.eachTarget(func(_ string, t map[string]any, tp string) error {
		t["auth"] = EmptyAuth().toMap()
		var ids []string
		switch d := t["disks"].(type) {
		case nil:
		case []any:
			l, err := stringList(d, keyPath(tp, "disks"))
			if err != nil {
				return err
			}
			ids = l
		case map[string]any:
			// sorted(dict) iterates the keys, so upstream
			// renumbers a dict too.
			ids = sortedKeys(d)
		default:
			return &FieldError{Path: keyPath(tp, "disks"), Msg: "expected array, got " + kindOf(d)}
		}
		slices.Sort(ids)
		disks := make(map[string]any, len(ids))
		for i, id := range ids {
			disks[id] = map[string]any{"lun_id": i}
		}
		t["disks"] = disks
		u.stamp(t)
		return nil
	})
	u.w["version"] = 11
	return err
}
