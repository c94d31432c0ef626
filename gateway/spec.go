package gateway

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"ceph-iscsi/chap"
	"ceph-iscsi/config"
	"ceph-iscsi/lio"
	"ceph-iscsi/settings"
)

// ErrImageNotFound is what FromConfigOptions.Size (or DevicePath) wraps when a
// disk's RBD image does not exist. Such a disk is skipped, as upstream does
// since 3.6, instead of failing the whole gateway.
var ErrImageNotFound = errors.New("rbd image not found")

// FromConfigOptions supplies what SpecFromConfig cannot learn from the
// document and the settings: facts about RBD images, this host's addresses,
// and names of objects that just left the configuration. Only disks exported
// by a target of this gateway are looked up.
type FromConfigOptions struct {
	// Size returns an image's size in bytes, for user:rbd (dev_size) and
	// fileio disks. nil leaves dev_size unmanaged, which only tests want: the
	// kernel does not enable a TCMU device without it.
	Size func(pool, image string) (int64, error)
	// DevicePath returns where the image is mapped, for block disks (the
	// file, for fileio). nil makes such disks an error.
	DevicePath func(pool, image string) (string, error)
	// LocalAddrs are this host's addresses. When set, a target's local TPGs
	// are its ip_list entries among them, as upstream's define_target
	// computes, and a target that lists this gateway but none of these
	// addresses is an error. When nil, portal_ip_addresses is trusted.
	LocalAddrs []netip.Addr
	// Decrypt turns a stored encrypted CHAP password into plain text. nil
	// uses the RSA private key at the settings' PrivKeyPath, read only if
	// some password is encrypted.
	Decrypt func(ciphertext string) (string, error)
	// ManagedTargets and ManagedStorageObjects name objects that are no
	// longer in the document (a DELETE just removed them) but whose local
	// leftovers this gateway must remove.
	ManagedTargets        []string
	ManagedStorageObjects []string
	// Logger reports skipped disks; nil means slog.Default().
	Logger *slog.Logger
}

// SpecFromConfig turns the gateway.conf document into the lio.Spec of gateway,
// with the [config]/[target] settings as global defaults (s nil means the
// built-in defaults), CHAP passwords decrypted and RBD facts resolved
// through opts.
//
// As upstream's define() and shutdown, a gateway absent from doc.Gateways
// manages nothing but opts' extra names: a host that resolved the wrong name
// must not remove LIO objects that belong to the configuration.
//
// Every target and disk of the document is managed: targets that do not
// list this gateway and disks that none of its targets export are in the
// lio.Spec but not built, which lio.Build turns into "remove local leftovers".
// Extra managed names are encoded the same way: a target entry without
// portals, and a disk entry keyed by the storage-object name.
//
// Problems are reported together, each an *lio.ObjectError naming its disk,
// target or client (never a secret). The lio.Spec then leaves out what was
// wrong: a client whose password does not decrypt has no ACL, a disk whose
// image cannot be resolved is exported by no LUN, a target without a usable
// local address or auth has no local TPG. Applying such a lio.Spec as is would
// remove those objects locally: callers hold them (Plan.Without) instead.
func SpecFromConfig(doc *config.Doc, gateway string, s *settings.Settings, opts FromConfigOptions) (lio.Spec, error) {
	if s == nil {
		s = settings.Defaults()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if doc == nil {
		return lio.Spec{Gateway: gateway, Settings: settingsFrom(s), Disks: map[string]lio.DiskSpec{}, Targets: map[string]lio.TargetSpec{},
			Names: lio.NameRules{IQN: config.ValidateIQN, Object: config.ValidateSafeName}}, errors.New("lio: no configuration document")
	}
	spec := lio.Spec{
		Gateway:  gateway,
		Settings: settingsFrom(s),
		Disks:    make(map[string]lio.DiskSpec, len(doc.Disks)),
		Targets:  make(map[string]lio.TargetSpec, len(doc.Targets)),
		Names:    lio.NameRules{IQN: config.ValidateIQN, Object: config.ValidateSafeName},
	}
	a := adapter{doc: doc, gateway: gateway, opts: opts, log: log, dec: opts.Decrypt}
	if a.dec == nil {
		a.dec = (&rsaDecrypter{path: s.PrivKeyPath()}).decrypt
	}
	if doc.Gateways[gateway] != nil {
		a.build(&spec)
	}
	a.addExtras(&spec)
	return spec, errors.Join(a.errs...)
}

type adapter struct {
	doc     *config.Doc
	gateway string
	opts    FromConfigOptions
	log     *slog.Logger
	dec     func(string) (string, error)
	errs    []error
}

// fail records a problem confined to the object o names.
func (a *adapter) fail(o lio.ObjectError, format string, args ...any) {
	o.Err = fmt.Errorf(format, args...)
	a.errs = append(a.errs, &o)
}

func (a *adapter) build(spec *lio.Spec) {
	disc, err := a.auth(a.doc.DiscoveryAuth)
	if err != nil {
		a.fail(lio.ObjectError{DiscoveryAuth: true}, "lio: discovery_auth: %w", err)
	} else {
		spec.DiscoveryAuth, spec.ManageDiscoveryAuth = disc, true
	}

	// Local TPG addresses first: they decide which disks need RBD facts.
	localIPs := map[string][]string{}
	for _, iqn := range slices.Sorted(maps.Keys(a.doc.Targets)) {
		t := a.doc.Targets[iqn]
		if t == nil {
			continue
		}
		ips, ok := a.localIPs(iqn, t)
		if !ok {
			continue
		}
		localIPs[iqn] = ips
	}
	exported := map[string]bool{}
	for iqn := range localIPs {
		for id := range a.doc.Targets[iqn].Disks {
			exported[id] = true
		}
	}

	dropped := map[string]bool{}
	backstores := map[string][]string{} // backstore -> exported disk ids
	// in map order (sorting thousands of ids cost more than the rest of
	// the loop); what is reported is sorted by disk id after
	var failed []string
	failures := map[string]error{}
	for id, d := range a.doc.Disks {
		if d == nil {
			continue
		}
		ds := lio.DiskSpec{Pool: d.Pool, Image: d.Image, WWN: d.WWN, BackstoreObjectName: d.BackstoreObjectName, Controls: d.Controls}
		if d.Owner != nil {
			ds.Owner = *d.Owner
		}
		if exported[id] {
			bs, err := a.resolveDisk(id, d, &ds)
			switch {
			case errors.Is(err, ErrImageNotFound):
				a.log.Warn("skipping disk: its RBD image does not exist", "disk", id, "err", err)
				dropped[id] = true
			case err != nil:
				failed = append(failed, id)
				failures[id] = err
				dropped[id] = true
			default:
				backstores[bs] = append(backstores[bs], id)
			}
		}
		spec.Disks[id] = ds
	}
	slices.Sort(failed)
	for _, id := range failed {
		a.errs = append(a.errs, &lio.ObjectError{Disk: id, Err: failures[id]})
	}
	spec.Backstore = lio.BackstoreUserRBD
	switch len(backstores) {
	case 0:
	case 1:
		for bs := range backstores {
			spec.Backstore = bs
		}
	default:
		a.failMixed(backstores, dropped)
	}

	for _, iqn := range slices.Sorted(maps.Keys(a.doc.Targets)) {
		t := a.doc.Targets[iqn]
		if t == nil {
			continue
		}
		spec.Targets[iqn] = a.target(iqn, t, localIPs[iqn], dropped)
	}
}

// failMixed fails every disk of backstores (backstore -> disk ids), which
// holds more than one backstore, and drops it: Build takes one backstore
// per gateway, and mixing would silently create some disks with the wrong
// plugin.
func (a *adapter) failMixed(backstores map[string][]string, dropped map[string]bool) {
	var parts []string
	for _, bs := range slices.Sorted(maps.Keys(backstores)) {
		slices.Sort(backstores[bs])
		parts = append(parts, fmt.Sprintf("%s: %s", bs, strings.Join(backstores[bs], ", ")))
	}
	mixed := strings.Join(parts, "; ")
	for _, bs := range slices.Sorted(maps.Keys(backstores)) {
		for _, id := range backstores[bs] {
			a.fail(lio.ObjectError{Disk: id}, "lio: disk %s: the disks of this gateway use different backstores (%s); only one backstore per gateway is supported", id, mixed)
			dropped[id] = true
		}
	}
}

// resolveDisk checks a disk's backstore and fills in the RBD facts Build
// needs for it.
func (a *adapter) resolveDisk(id string, d *config.Disk, ds *lio.DiskSpec) (string, error) {
	bs := d.Backstore
	if bs == "" {
		bs = lio.BackstoreUserRBD // documents from before the field existed
	}
	needSize, needPath := false, false
	switch bs {
	case lio.BackstoreUserRBD:
		needSize = true
	case lio.BackstoreBlock:
		needPath = true
	case lio.BackstoreFileIO:
		needSize, needPath = true, true
	default:
		return "", fmt.Errorf("lio: disk %s: unknown backstore %q (want %s or %s)", id, bs, lio.BackstoreUserRBD, lio.BackstoreBlock)
	}
	if needSize && a.opts.Size != nil {
		n, err := a.opts.Size(d.Pool, d.Image)
		if err != nil {
			return "", fmt.Errorf("lio: disk %s: size: %w", id, err)
		}
		ds.Size = n
	}
	if needPath {
		if a.opts.DevicePath == nil {
			return "", fmt.Errorf("lio: disk %s: backstore %s needs a device path and none can be resolved", id, bs)
		}
		p, err := a.opts.DevicePath(d.Pool, d.Image)
		if err != nil {
			return "", fmt.Errorf("lio: disk %s: device path: %w", id, err)
		}
		ds.DevicePath = p
	}
	return bs, nil
}

func (a *adapter) target(iqn string, t *config.Target, local []string, dropped map[string]bool) lio.TargetSpec {
	ts := lio.TargetSpec{
		ACLEnabled: t.ACLEnabled,
		Controls:   t.Controls,
		IPList:     t.IPList,
		Portals:    make(map[string][]string, len(t.Portals)),
		Disks:      make(map[string]int, len(t.Disks)),
		Clients:    make(map[string]lio.ClientSpec, len(t.Clients)),
	}
	for gw, p := range t.Portals {
		if p != nil && gw != a.gateway {
			ts.Portals[gw] = p.PortalIPAddresses
		}
	}
	for id, l := range t.Disks {
		if !dropped[id] {
			ts.Disks[id] = l.LunID
		}
	}
	if local == nil {
		return ts // not built here: managed only
	}
	auth, err := a.auth(t.Auth)
	if err != nil {
		// Without its CHAP the target would be open to anyone: leave it unbuilt.
		a.fail(lio.ObjectError{Target: iqn}, "lio: target %s: auth: %w", iqn, err)
		return ts
	}
	ts.Auth = auth
	ts.Portals[a.gateway] = local
	for _, ini := range slices.Sorted(maps.Keys(t.Clients)) {
		c := t.Clients[ini]
		if c == nil {
			continue
		}
		auth, err := a.auth(c.Auth)
		if err != nil {
			a.fail(lio.ObjectError{Target: iqn, Client: ini}, "lio: target %s client %s: %w", iqn, ini, err)
			continue
		}
		cs := lio.ClientSpec{Auth: auth, LUNs: make(map[string]int, len(c.Luns))}
		for id, l := range c.Luns {
			if !dropped[id] {
				cs.LUNs[id] = l.LunID
			}
		}
		ts.Clients[ini] = cs
	}
	return ts
}

// auth decrypts an auth block. Errors name the field, never its value.
func (a *adapter) auth(c config.Auth) (lio.AuthSpec, error) {
	pw, err := a.password(c.Password, c.PasswordEncryptionEnabled)
	if err != nil {
		return lio.AuthSpec{}, fmt.Errorf("password: %w", err)
	}
	mpw, err := a.password(c.MutualPassword, c.MutualPasswordEncryptionEnabled)
	if err != nil {
		return lio.AuthSpec{}, fmt.Errorf("mutual_password: %w", err)
	}
	return lio.AuthSpec{Username: c.Username, Password: lio.Secret(pw), MutualUsername: c.MutualUsername, MutualPassword: lio.Secret(mpw)}, nil
}

func (a *adapter) password(stored string, encrypted bool) (string, error) {
	if !encrypted || stored == "" {
		return stored, nil
	}
	return a.dec(stored)
}

func (a *adapter) addExtras(spec *lio.Spec) {
	for _, iqn := range a.opts.ManagedTargets {
		if _, ok := spec.Targets[iqn]; !ok {
			spec.Targets[iqn] = lio.TargetSpec{}
		}
	}
	if len(a.opts.ManagedStorageObjects) == 0 {
		// a member's build (memoDesired) names no leftovers: the names of
		// thousands of disks need not be made to find none
		return
	}
	have := map[string]bool{}
	for id, d := range spec.Disks {
		have[lio.ObjectName(id, d.Pool, d.Image, d.BackstoreObjectName)] = true
	}
	for _, name := range a.opts.ManagedStorageObjects {
		if !have[name] {
			// Disk ids contain a slash and object names do not, so the
			// key cannot collide with a real disk.
			spec.Disks[name] = lio.DiskSpec{BackstoreObjectName: name}
			have[name] = true
		}
	}
}

func settingsFrom(s *settings.Settings) lio.Settings {
	return lio.Settings{
		ALUAFailover:      s.AluaFailoverType,
		ClusterClientName: s.ClusterClientName,
		CephConf:          s.CephConfPath(),

		DataoutTimeout:           s.Target.DataoutTimeout,
		NopinResponseTimeout:     s.Target.NopinResponseTimeout,
		NopinTimeout:             s.Target.NopinTimeout,
		CmdSNDepth:               s.Target.CmdsnDepth,
		ImmediateData:            s.Target.ImmediateData,
		InitialR2T:               s.Target.InitialR2T,
		MaxOutstandingR2T:        s.Target.MaxOutstandingR2T,
		FirstBurstLength:         s.Target.FirstBurstLength,
		MaxBurstLength:           s.Target.MaxBurstLength,
		MaxRecvDataSegmentLength: s.Target.MaxRecvDataSegmentLength,
		MaxXmitDataSegmentLength: s.Target.MaxXmitDataSegmentLength,

		MaxDataAreaMB: s.Disk.MaxDataAreaMB,
		QFullTimeout:  s.Disk.QfullTimeout,
		OSDOpTimeout:  s.Disk.OsdOpTimeout,
		HWMaxSectors:  s.Disk.HwMaxSectors,
	}
}

func isLocal(addrs []netip.Addr, ip string) bool {
	a, err := netip.ParseAddr(trimBrackets(ip))
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, x := range addrs {
		if x.Unmap().WithZone("") == a {
			return true
		}
	}
	return false
}

// rsaDecrypter reads the private key once, on first use, so gateways without
// encrypted passwords never need the key file.
type rsaDecrypter struct {
	path string
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

func (d *rsaDecrypter) decrypt(ciphertext string) (string, error) {
	d.once.Do(func() { d.key, d.err = chap.ReadPrivateKey(d.path) })
	if d.err != nil {
		return "", fmt.Errorf("stored encrypted, but the private key cannot be used: %w", d.err)
	}
	return chap.Decrypt(d.key, ciphertext)
}

// trimBrackets strips the brackets of an IPv6 address as ip_list may hold
// it ("[fd00::1]").
func trimBrackets(ip string) string {
	if len(ip) >= 2 && ip[0] == '[' && ip[len(ip)-1] == ']' {
		return ip[1 : len(ip)-1]
	}
	return ip
}
