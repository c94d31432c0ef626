package lio

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Backstore choices for Spec.Backstore.
const (
	BackstoreUserRBD = "user:rbd" // TCMU + tcmu-runner's rbd handler (upstream's only choice)
	BackstoreBlock   = "block"    // iblock over a device mapped by the caller
	BackstoreFileIO  = "fileio"   // a file per disk; development only
)

// Spec is everything Build needs: the parts of the gateway.conf document
// (section 3.2 of the spec) and of iscsi-gateway.cfg that shape this
// gateway's LIO state, with secrets already decrypted and RBD facts
// (sizes, mapped devices) already resolved by the caller.
type Spec struct {
	Gateway   string // this gateway's name (FQDN), a key of Targets[*].Portals
	Backstore string // BackstoreUserRBD (default), BackstoreBlock or BackstoreFileIO
	Settings  Settings
	Disks     map[string]DiskSpec   // by disk id "<pool>/<image>"
	Targets   map[string]TargetSpec // by target IQN
	// DiscoveryAuth is applied only when ManageDiscoveryAuth is set; a
	// gateway absent from the config must not reset fabric-wide auth.
	DiscoveryAuth       AuthSpec
	ManageDiscoveryAuth bool
	// Names are the grammars names are checked against before they become
	// configfs paths (see NameRules).
	Names NameRules
	// Frozen promises that the maps of this Spec (Disks, Targets, each
	// target's Disks, Portals and Clients, each client's LUNs, each disk's
	// Controls) are not modified while they are the Spec of the Builder's
	// build in progress or of its last one: one may come again in the next
	// Spec, as the same content. A Builder then tells a map of the last
	// build that comes again unchanged at once, instead of comparing it
	// entry by entry (Builder.Build). A Builder compares with its last
	// build's maps only, never older ones, so a caller may reuse a map two
	// builds old for the next Spec (gateway's spec memo does, to change
	// one entry of thousands without a copy).
	Frozen bool
	// Gen names this Spec's content for Changes (0: unnamed): two Specs
	// given one Gen must be equal.
	Gen uint64
	// Changes, when set, says what this Spec may differ in from the Spec
	// of generation Changes.Since (see SpecChanges): a Builder whose last
	// build was of that generation looks at those entries only.
	Changes *SpecChanges
}

// Settings are the iscsi-gateway.cfg values Build uses, as global
// defaults: [config] alua_failover_type, cluster_client_name and the ceph
// conf path; [target] TPG/ACL tuning (2.3) and TCMU defaults (2.4).
type Settings struct {
	ALUAFailover      string // "implicit" (default) or "explicit"
	ClusterClientName string // default "client.admin"
	CephConf          string // default "/etc/ceph/ceph.conf"

	DataoutTimeout           int
	NopinResponseTimeout     int
	NopinTimeout             int
	CmdSNDepth               int
	ImmediateData            bool
	InitialR2T               bool
	MaxOutstandingR2T        int
	FirstBurstLength         int
	MaxBurstLength           int
	MaxRecvDataSegmentLength int
	MaxXmitDataSegmentLength int

	MaxDataAreaMB int
	QFullTimeout  int
	OSDOpTimeout  int
	HWMaxSectors  int
}

// DefaultSettings returns upstream's defaults.
func DefaultSettings() Settings {
	return Settings{
		ALUAFailover: "implicit", ClusterClientName: "client.admin", CephConf: "/etc/ceph/ceph.conf",
		DataoutTimeout: 20, NopinResponseTimeout: 5, NopinTimeout: 5, CmdSNDepth: 128,
		ImmediateData: true, InitialR2T: true, MaxOutstandingR2T: 1,
		FirstBurstLength: 262144, MaxBurstLength: 524288,
		MaxRecvDataSegmentLength: 262144, MaxXmitDataSegmentLength: 262144,
		MaxDataAreaMB: 8, QFullTimeout: 5, OSDOpTimeout: 30, HWMaxSectors: 1024,
	}
}

// DiskSpec is disks["<pool>/<image>"] plus what the caller learnt from RBD.
type DiskSpec struct {
	Pool, Image         string
	WWN                 string // "" = not yet known: the unit serial is then left to the kernel
	BackstoreObjectName string // "" = "<pool>.<image>"
	Owner               string // gateway name that gets ALUA Active/Optimised
	// Controls are the per-disk overrides of the TCMU settings, as decoded
	// from JSON (numbers may be float64, int or strings).
	Controls   map[string]any
	Size       int64  // bytes; 0 = leave dev_size alone
	DevicePath string // BackstoreBlock: the mapped device; BackstoreFileIO: the file
}

// TargetSpec is targets["<iqn>"].
type TargetSpec struct {
	ACLEnabled bool
	Auth       AuthSpec
	Controls   map[string]any // target overrides of the [target] settings
	IPList     []string       // ip_list: TPG order on every gateway
	Portals    map[string][]string
	Disks      map[string]int // disk id -> TPG LUN id
	Clients    map[string]ClientSpec
}

// ClientSpec is targets[iqn].clients["<initiator>"]. Host groups need no
// separate input: upstream copies a group's disks into its members' LUNs.
type ClientSpec struct {
	Auth AuthSpec
	LUNs map[string]int // disk id -> mapped LUN id (0-255)
}

// AuthSpec is an auth block with decrypted passwords.
type AuthSpec struct {
	Username       string
	Password       Secret
	MutualUsername string
	MutualPassword Secret
}

func (a AuthSpec) chap() bool { return a.Username != "" && a.Password != "" }

func (a AuthSpec) auth() *Auth {
	return &Auth{UserID: a.Username, Password: a.Password, MutualUserID: a.MutualUsername, MutualPassword: a.MutualPassword}
}

// Build computes the desired State of spec.Gateway. Targets that do not
// list this gateway as a portal are not built but stay managed, so any
// local leftovers are removed. Problems with one disk or client are
// reported together; the returned State then omits only what was wrong.
func Build(spec Spec) (State, error) { return build(spec, nil) }

// Builder is Build with a memo of what it built: a disk's storage object
// is made again only when its DiskSpec, the settings or the backstore
// changed, and the ALUA groups and ACL attributes that are alike are made
// once and shared. Building the spec of a one-LUN change then costs a
// lookup per object instead of making each again (maps, formatted
// strings). The States it returns share those pieces, so nobody may
// modify them (the planner only reads): a list that did not change since
// the last build (storage objects, a TPG's LUNs or ACLs, the managed
// names) is that build's very list, which NewPlanSince skips at once.
// A build compares the spec with the last one disk by disk and client by
// client, but names, checks and makes only what changed. A Builder must
// be used with one NameRules; it may be used from several goroutines.
type Builder struct {
	// VerifyHints makes every build that used a Spec.Changes hint build
	// the Spec from scratch as well and panic when the two differ, for
	// tests: a hint that leaves a change out is caught there rather than
	// making a wrong State.
	VerifyHints bool

	mu sync.Mutex
	m  *buildMemo
	// hinted counts the builds that used a hint (for tests).
	hinted int
}

// hintCounts are what the hinted builds patched (for tests): ACL lists,
// and of those the ones past a disk gone from the target or moved.
type hintCounts struct{ aclLists, pastGone int }

type buildMemo struct {
	settings  Settings
	backstore string
	sos       map[string]*soPiece // by disk id
	// gen counts builds; disks are the disks of the last one (gen), with
	// their storage-object names, and names the sorted names of those
	// whose name passed, badName the errors of the others: a build
	// compares its disks with these and names only what changed.
	gen     int
	disks   map[string]*diskEntry
	names   []string
	namesG  grown[string] // names' array
	badName map[string]error
	// changedDisks are the ids of the disks new, changed or gone since the
	// build before.
	changedDisks map[string]bool
	// before are the entries of those disks in the build before.
	before map[string]*diskEntry
	// frozenDisks is the Disks map of the last build when its Spec was
	// Frozen: the same map again has the same disks.
	frozenDisks map[string]DiskSpec
	groups      map[groupKey]ALUAGroup
	// okObjects and okIQNs are the storage-object names and the IQNs that
	// passed the Builder's NameRules: a name is checked once, not on every
	// build.
	okObjects, okIQNs map[string]bool
	// acls are the ACLs built without error, by target, TPG and
	// initiator, with what each was built from: a change of one client
	// makes one ACL again, not the thousand of its target. aclAttrs
	// shares the attribute map of ACLs with equal timeouts, so that the
	// planner compares them at once.
	acls     map[aclKey]*aclPiece
	aclsUsed int
	// aclLists are the ACL lists of the last build by TPG, which the next
	// one returns again when its ACLs are the same ones.
	aclLists, nextACLLists map[tpgKey]*aclList
	// chap are the clients of each target in the last build, of a Frozen
	// spec, and whether one has CHAP.
	chap, nextChap map[string]clientsCHAP
	aclAttrs       map[[3]int]map[string]string
	// merged is the storage objects of several pieces merged by the last
	// build that merged, mergedFrom the first and last object of each
	// piece's list.
	merged     []StorageObject
	mergedFrom []*StorageObject
	// luns are, by target, what its LUNs came to (targetLUNs).
	luns     map[string]*lunsPiece
	lunsUsed int
	// lunsPatched is whether the last build patched a target's LUNs.
	lunsPatched bool
	// managed is the Managed of the last build, whose lists the next one
	// shares when they are equal: a caller that keeps what it derived
	// from a state's names tells them from its last ones at once.
	managed Managed
	// specGen and gateway are the Gen and Gateway of the last build's
	// Spec; hint is the Changes of the build in progress when they make
	// it usable (since specGen), else nil.
	specGen uint64
	gateway string
	hint    *SpecChanges
	// chapSets are the clients of each target of the last build that
	// counted them for a Spec with a Gen: a hinted build updates them with
	// its changed clients (clientCHAP).
	chapSets, nextChapSets map[string]*chapSet
	counts                 hintCounts
}

// diskEntry is a disk of the last build: its spec (a copy) and storage
// object name.
type diskEntry struct {
	d    DiskSpec
	name string
}

// aclList is the ACL list of a TPG and the order of its clients; clean
// whether they built without an error (and no disk of the target
// failed), from the ACL attributes attrs and cmdsn; clients the Clients
// map of the target, of a Frozen spec; mapped, when counted (a Spec with
// a Gen, clean), how many of the ACLs map each TPG LUN.
type aclList struct {
	inis    []string
	acls    []ACL
	clean   bool
	attrs   map[string]string
	cmdsn   int
	clients map[string]ClientSpec
	mapped  map[int]int
}

// countMapped sets l.mapped from l.acls.
func (l *aclList) countMapped() {
	l.mapped = map[int]int{}
	for _, a := range l.acls {
		for _, ml := range a.MappedLUNs {
			l.mapped[ml.TPGLUN]++
		}
	}
}

// unmapped reports whether no ACL of l but those of the clients changed
// maps one of the TPG LUNs gone.
func (l *aclList) unmapped(gone []int, changed []string) bool {
	if l.mapped == nil || !l.clean {
		return false
	}
	for _, idx := range gone {
		n := l.mapped[idx]
		for _, ini := range changed {
			// clean: the ACLs are those of the initiators, one for one
			if i, found := slices.BinarySearch(l.inis, ini); found {
				for _, ml := range l.acls[i].MappedLUNs {
					if ml.TPGLUN == idx {
						n--
					}
				}
			}
		}
		if n > 0 {
			return false
		}
	}
	return true
}

// onlyNew reports whether the disks moved of a patch (nil: unknown) are
// all new to the target.
func onlyNew(moved map[string]bool) bool {
	if moved == nil {
		return false
	}
	for _, had := range moved {
		if had {
			return false
		}
	}
	return true
}

// clientCHAP reports whether a client of target iqn has CHAP credentials:
// what the last build found when clients is its map of a Frozen spec.
func (m *buildMemo) clientCHAP(iqn string, clients map[string]ClientSpec, frozen bool, gen uint64) bool {
	if tc, ok := m.hintFor(iqn); ok {
		if cs := m.chapSets[iqn]; cs != nil {
			// the last build's, but for the clients the hint names
			for _, ini := range uniq(tc.Clients) {
				if had, ok := cs.chap[ini]; ok {
					delete(cs.chap, ini)
					if had {
						cs.n--
					}
				}
				if c, ok := clients[ini]; ok {
					cs.chap[ini] = c.Auth.chap()
					if cs.chap[ini] {
						cs.n++
					}
				}
			}
			if len(cs.chap) == len(clients) {
				m.nextChapSets[iqn] = cs
				return cs.n > 0
			}
			// a client added or removed that the hint does not name
		}
	}
	if m != nil && frozen {
		if c, ok := m.chap[iqn]; ok && sameMap(c.clients, clients) {
			m.nextChap[iqn] = c
			if cs := m.chapSets[iqn]; cs != nil {
				m.nextChapSets[iqn] = cs // of the same clients
			}
			return c.chap
		}
	}
	chap := false
	if m != nil && gen != 0 {
		// one by one, for the hinted builds to come
		cs := &chapSet{chap: make(map[string]bool, len(clients))}
		for ini, c := range clients {
			cs.chap[ini] = c.Auth.chap()
			if cs.chap[ini] {
				cs.n++
			}
		}
		m.nextChapSets[iqn] = cs
		chap = cs.n > 0
	} else {
		for _, c := range clients {
			chap = chap || c.Auth.chap()
		}
	}
	if m != nil && frozen {
		m.nextChap[iqn] = clientsCHAP{clients: clients, chap: chap}
	}
	return chap
}

// chapSet is, of each client of a target, whether it has CHAP, and how
// many have.
type chapSet struct {
	chap map[string]bool
	n    int
}

// clientsCHAP is the clients map of a target and whether one has CHAP.
type clientsCHAP struct {
	clients map[string]ClientSpec
	chap    bool
}

type aclKey struct {
	iqn string
	tag int
	ini string
}

// aclPiece is an ACL and everything buildACL read to make it.
type aclPiece struct {
	auth  AuthSpec
	luns  map[string]int // a copy of the client's LUNs
	cmdsn int
	attrs map[string]string
	// deps is, for each disk of luns, its TPG LUN (lunByDisk) when it had
	// one and whether the disk failed.
	deps []aclDep
	acl  ACL
	// gen is the build that made or took it last; anyFailed whether a
	// disk of deps failed.
	gen       int
	anyFailed bool
	// frozenLUNs is the client's LUN map itself, of a Frozen spec.
	frozenLUNs map[string]int
}

type aclDep struct {
	id            string
	tpgLUN        int
	found, failed bool
}

// acl returns the memoized ACL of k if it was built from the same inputs.
// moved are the disks whose TPG LUN (lunByDisk) may differ from the build
// before's, nil if any may: the others need not be looked up again for an
// ACL that build took. (The values say whether the target had the disk.)
//
// frozen says the spec is Frozen: the LUN map of the client the last time
// is then the same LUNs when it comes again.
func (m *buildMemo) acl(k aclKey, c ClientSpec, cmdsn int, attrs map[string]string, lunByDisk map[string]int, failed map[string]bool, moved map[string]bool, frozen bool) (ACL, bool) {
	if m == nil {
		return ACL{}, false
	}
	p := m.acls[k]
	if p == nil || p.auth != c.Auth || p.cmdsn != cmdsn || !sameAttrs(p.attrs, attrs) {
		return ACL{}, false
	}
	if !frozen || p.frozenLUNs == nil || !sameMap(p.frozenLUNs, c.LUNs) {
		if !maps.Equal(p.luns, c.LUNs) {
			return ACL{}, false
		}
		p.frozenLUNs = nil
		if frozen {
			p.frozenLUNs = c.LUNs
		}
	}
	stable := moved != nil && p.gen == m.gen-1 && len(failed) == 0 && !p.anyFailed
	for _, d := range p.deps {
		if _, ok := moved[d.id]; stable && !ok {
			continue
		}
		n, found := lunByDisk[d.id]
		if found != d.found || n != d.tpgLUN || failed[d.id] != d.failed {
			return ACL{}, false
		}
	}
	p.gen = m.gen
	m.aclsUsed++
	return p.acl, true
}

// builtACL is the ACL of client c at k: the memo's (acl) when it still
// holds (memo true), else built and remembered (putACL).
func (m *buildMemo) builtACL(k aclKey, c ClientSpec, tgt Settings, attrs map[string]string, lunByDisk map[string]int, failed, moved map[string]bool, frozen bool) (_ ACL, memo bool, _ error) {
	if acl, ok := m.acl(k, c, tgt.CmdSNDepth, attrs, lunByDisk, failed, moved, frozen); ok {
		return acl, true, nil
	}
	acl, err := buildACL(k.iqn, k.ini, c, tgt, attrs, lunByDisk, failed)
	if err == nil {
		m.putACL(k, c, tgt.CmdSNDepth, attrs, lunByDisk, failed, acl, frozen)
	}
	return acl, false, err
}

func (m *buildMemo) putACL(k aclKey, c ClientSpec, cmdsn int, attrs map[string]string, lunByDisk map[string]int, failed map[string]bool, acl ACL, frozen bool) {
	if m == nil {
		return
	}
	p := &aclPiece{auth: c.Auth, luns: maps.Clone(c.LUNs), cmdsn: cmdsn, attrs: attrs, acl: acl, gen: m.gen}
	if frozen {
		p.frozenLUNs = c.LUNs
	}
	if p.luns == nil {
		p.luns = map[string]int{}
	}
	for id := range c.LUNs {
		n, found := lunByDisk[id]
		p.deps = append(p.deps, aclDep{id: id, tpgLUN: n, found: found, failed: failed[id]})
		p.anyFailed = p.anyFailed || failed[id]
	}
	m.acls[k] = p
	m.aclsUsed++
}

// aclList is the ACL list TPG k had in the last build; empty if none.
func (m *buildMemo) aclList(k tpgKey) *aclList {
	if m != nil {
		if l := m.aclLists[k]; l != nil {
			return l
		}
	}
	return &aclList{}
}

// clientOrder is the initiators of clients, sorted: those of last when
// they are the same ones, which spares sorting a thousand names again.
func clientOrder(clients map[string]ClientSpec, last *aclList) []string {
	if len(last.inis) != len(clients) || len(clients) == 0 {
		return sortedKeys(clients)
	}
	for _, ini := range last.inis {
		if _, ok := clients[ini]; !ok {
			return sortedKeys(clients)
		}
	}
	return last.inis
}

// sameACL reports whether a and b are one memoized ACL: the same
// initiator and settings, and the same lists and maps.
func sameACL(a, b ACL) bool {
	return a.Initiator == b.Initiator && a.CmdSNDepth == b.CmdSNDepth && a.Auth == b.Auth &&
		sameAttrs(a.Attrs, b.Attrs) && identical(a.MappedLUNs, b.MappedLUNs)
}

// attrsOf returns the shared ACL attribute map of these timeouts.
func (m *buildMemo) attrsOf(dataout, nopinResponse, nopin int) map[string]string {
	k := [3]int{dataout, nopinResponse, nopin}
	if m != nil {
		if a, ok := m.aclAttrs[k]; ok {
			return a
		}
	}
	a := map[string]string{
		"dataout_timeout":        strconv.Itoa(dataout),
		"nopin_response_timeout": strconv.Itoa(nopinResponse),
		"nopin_timeout":          strconv.Itoa(nopin),
	}
	if m != nil {
		m.aclAttrs[k] = a
	}
	return a
}

// checkName is check(), answered from m for a name of kind that passed
// before (kind is m.okObjects or m.okIQNs).
func (m *buildMemo) checkName(kind func(*buildMemo) map[string]bool, name string, check func() error) error {
	if m != nil && kind(m)[name] {
		return nil
	}
	err := check()
	if err == nil && m != nil {
		kind(m)[name] = true
	}
	return err
}

// maxOKIQNs bounds the IQNs a Builder remembers as valid.
const maxOKIQNs = 1 << 16

func okObjects(m *buildMemo) map[string]bool { return m.okObjects }
func okIQNs(m *buildMemo) map[string]bool    { return m.okIQNs }

// soPiece is the storage object a DiskSpec gave, without its ALUA groups.
type soPiece struct {
	d  DiskSpec
	so StorageObject
}

// groupKey is everything an ALUA group is made of (see aluaGroup).
type groupKey struct {
	explicit, owner bool
	osdOpTimeout    int
	tag             int
}

// Build is Build(spec), reusing what earlier calls built alike.
func (b *Builder) Build(spec Spec) (State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil || b.m.settings != spec.Settings || b.m.backstore != spec.Backstore || len(b.m.sos) > 2*len(spec.Disks)+64 ||
		len(b.m.okObjects) > 2*len(spec.Disks)+1024 {
		// a memo of other settings, or of many disks (or names) gone since
		b.m = &buildMemo{settings: spec.Settings, backstore: spec.Backstore, sos: map[string]*soPiece{}, groups: map[groupKey]ALUAGroup{},
			okObjects: map[string]bool{}, okIQNs: map[string]bool{}, acls: map[aclKey]*aclPiece{}, aclAttrs: map[[3]int]map[string]string{}, luns: map[string]*lunsPiece{},
			disks: map[string]*diskEntry{}, badName: map[string]error{}, aclLists: map[tpgKey]*aclList{}}
	}
	if len(b.m.okIQNs) > maxOKIQNs {
		// the initiators of many clients gone since
		b.m.okIQNs = map[string]bool{}
	}
	b.m.aclsUsed, b.m.lunsUsed, b.m.lunsPatched = 0, 0, false
	b.m.nextACLLists, b.m.nextChap = map[tpgKey]*aclList{}, map[string]clientsCHAP{}
	b.m.nextChapSets = map[string]*chapSet{}
	b.m.hint = nil
	if c := spec.Changes; c != nil && spec.Gen != 0 && c.Since != 0 && c.Since == b.m.specGen && spec.Gateway == b.m.gateway {
		b.m.hint = c
	}
	st, err := build(spec, b.m)
	b.m.aclLists, b.m.nextACLLists = b.m.nextACLLists, nil
	b.m.chap, b.m.nextChap = b.m.nextChap, nil
	b.m.chapSets, b.m.nextChapSets = b.m.nextChapSets, nil
	b.m.specGen, b.m.gateway = spec.Gen, spec.Gateway
	hinted := b.m.hint != nil
	b.m.hint = nil
	if hinted {
		b.hinted++
	}
	if identical(st.Managed.StorageObjects, b.m.managed.StorageObjects) || slices.Equal(st.Managed.StorageObjects, b.m.managed.StorageObjects) {
		st.Managed.StorageObjects = b.m.managed.StorageObjects
	}
	if slices.Equal(st.Managed.Targets, b.m.managed.Targets) {
		st.Managed.Targets = b.m.managed.Targets
	}
	b.m.managed = st.Managed
	if len(b.m.acls) > 2*b.m.aclsUsed+64 {
		// the ACLs of many clients (or targets) gone since
		b.m.acls = map[aclKey]*aclPiece{}
	}
	if len(b.m.luns) > 2*b.m.lunsUsed+16 {
		b.m.luns = map[string]*lunsPiece{}
	}
	if hinted && b.VerifyHints {
		verifyHinted(spec, st, err)
	}
	return st, err
}

// Hinted reports how many builds used a Spec.Changes hint: a caller's
// test that its hints are taken at all.
func (b *Builder) Hinted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hinted
}

func diskSpecEqual(a, b DiskSpec) bool {
	return a.Pool == b.Pool && a.Image == b.Image && a.WWN == b.WWN && a.BackstoreObjectName == b.BackstoreObjectName &&
		a.Owner == b.Owner && a.Size == b.Size && a.DevicePath == b.DevicePath &&
		len(a.Controls) == len(b.Controls) && (len(a.Controls) == 0 || reflect.DeepEqual(a.Controls, b.Controls))
}

// build is Build with memo m (nil: none).
func build(spec Spec, m *buildMemo) (State, error) {
	var errs []error
	st := State{}
	// An object whose name could not be one configfs directory is neither
	// built nor managed: the error names it and the rest converges.
	// (in map order, with one sort of the names, not of the ids as well:
	// the rare bad names are sorted by id after)
	if m != nil {
		// the names of the last build, with those of the disks that
		// changed since
		m.diskNames(spec)
		st.Managed.StorageObjects = m.names
		for _, id := range sortedKeys(m.badName) {
			errs = append(errs, m.badName[id])
		}
	} else {
		var badIDs []string
		badName := map[string]error{}
		if len(spec.Disks) > 0 {
			st.Managed.StorageObjects = make([]string, 0, len(spec.Disks))
		}
		for id, d := range spec.Disks {
			name := d.objectName(id)
			if err := checkObjectName(spec.Names, id, name); err != nil {
				badIDs = append(badIDs, id)
				badName[id] = err
				continue
			}
			st.Managed.StorageObjects = append(st.Managed.StorageObjects, name)
		}
		if len(st.Managed.StorageObjects) == 0 {
			st.Managed.StorageObjects = nil
		}
		slices.Sort(st.Managed.StorageObjects)
		slices.Sort(badIDs)
		for _, id := range badIDs {
			errs = append(errs, badName[id])
		}
	}
	for _, iqn := range sortedKeys(spec.Targets) {
		if err := m.checkName(okIQNs, iqn, func() error { return checkTargetName(spec.Names, "target", iqn) }); err != nil {
			errs = append(errs, err)
			continue
		}
		st.Managed.Targets = append(st.Managed.Targets, iqn)
	}
	if spec.ManageDiscoveryAuth {
		st.DiscoveryAuth = &DiscoveryAuth{Enforce: spec.DiscoveryAuth.Username != ""}
		if st.DiscoveryAuth.Enforce {
			st.DiscoveryAuth.Auth = *spec.DiscoveryAuth.auth()
		}
	}

	sos := &soSet{m: map[string]*StorageObject{}}
	for _, iqn := range st.Managed.Targets {
		ts := spec.Targets[iqn]
		local, ok := ts.Portals[spec.Gateway]
		if !ok {
			continue
		}
		t, err := buildTarget(spec, iqn, ts, local, sos, m)
		if err != nil {
			errs = append(errs, err)
		}
		st.Targets = append(st.Targets, t)
	}
	// A disk that failed in one TPG is left out of every one: its storage
	// object is held as a whole (Plan.Without).
	objs, _ := SplitObjectErrors(errors.Join(errs...))
	failedSO := map[string]bool{}
	for _, e := range objs {
		if e.Disk != "" && e.Target == "" {
			if d, ok := spec.Disks[e.Disk]; ok {
				failedSO[d.objectName(e.Disk)] = true
			}
		}
	}
	if len(failedSO) > 0 {
		dropLUNs(st.Targets, failedSO)
		sos.spillAll()
	}
	st.StorageObjects = sos.list(st.Managed.StorageObjects, failedSO, m)
	return st, errors.Join(errs...)
}

// diskNames compares spec's disks with the last build's and makes
// m.names and m.badName those of spec, naming and checking only the disks
// that changed. It sets m.changedDisks.
func (m *buildMemo) diskNames(spec Spec) {
	m.gen++
	m.changedDisks, m.before = map[string]bool{}, map[string]*diskEntry{}
	frozen := m.frozenDisks
	m.frozenDisks = nil
	if spec.Frozen {
		m.frozenDisks = spec.Disks
		if frozen != nil && sameMap(frozen, spec.Disks) {
			return // the disks of the last build
		}
	}
	var changed, gone []string
	if m.hint != nil {
		// the others are the last build's
		n := len(m.disks)
		for _, id := range uniq(m.hint.Disks) {
			d, in := spec.Disks[id]
			e := m.disks[id]
			switch {
			case in && e != nil && diskSpecEqual(e.d, d):
			case in:
				changed = append(changed, id)
				if e == nil {
					n++
				}
			case e != nil:
				gone = append(gone, id)
				n--
			}
		}
		if n == len(spec.Disks) {
			m.spliceNames(spec, changed, gone)
			return
		}
		// a disk added or removed that the hint does not name: every one
		// is compared
		changed, gone = nil, nil
	}
	both := 0
	for id, d := range spec.Disks {
		e := m.disks[id]
		if e != nil {
			both++
			if diskSpecEqual(e.d, d) {
				continue
			}
		}
		changed = append(changed, id)
	}
	if both < len(m.disks) {
		for id := range m.disks {
			if _, ok := spec.Disks[id]; !ok {
				gone = append(gone, id)
			}
		}
	}
	m.spliceNames(spec, changed, gone)
}

// spliceNames makes m.names and m.badName those of spec from the last
// build's, given the disks changed (or new) and gone since.
func (m *buildMemo) spliceNames(spec Spec, changed, gone []string) {
	if len(changed) == 0 && len(gone) == 0 {
		return
	}
	// the names of the disks gone or changed leave the list (once each:
	// two disks may share a name), those of the changed enter it
	drop := map[string]int{}
	for _, id := range slices.Concat(gone, changed) {
		m.changedDisks[id] = true
		if e := m.disks[id]; e != nil {
			m.before[id] = e
			if m.badName[id] == nil {
				drop[e.name]++
			}
			delete(m.badName, id)
			delete(m.disks, id)
		}
	}
	var add []string
	for _, id := range changed {
		d := spec.Disks[id]
		name := m.objectName(id, d)
		m.disks[id] = &diskEntry{d: specCopy(d), name: name}
		if err := m.checkName(okObjects, name, func() error { return checkObjectName(spec.Names, id, name) }); err != nil {
			m.badName[id] = err
			continue
		}
		add = append(add, name)
	}
	slices.Sort(add)
	// the positions of the names dropped: a name of c disks is c long
	var at []int
	for n, c := range drop {
		i, found := slices.BinarySearch(m.names, n)
		for ; found && c > 0 && i < len(m.names) && m.names[i] == n; c-- {
			at = append(at, i)
			i++
		}
	}
	slices.Sort(at)
	m.names = m.namesG.splice(m.names, at, add, strings.Compare, eq[string])
}

// nameBefore is the storage-object name disk id had in the build before;
// "" if it had none.
func (m *buildMemo) nameBefore(id string) string {
	e := m.before[id]
	if e == nil {
		e = m.disks[id]
	}
	if e == nil {
		return ""
	}
	return e.name
}

// soSet is the storage objects of a build: made (or taken) one by one in
// m, or taken whole with a target's LUNs from the memo (pieces, read
// only; m holds none of theirs).
type soSet struct {
	m      map[string]*StorageObject
	pieces []*lunsPiece
}

// has reports whether s holds the storage object name.
func (s *soSet) has(name string) bool {
	if s.m[name] != nil {
		return true
	}
	for _, p := range s.pieces {
		if _, ok := p.names[name]; ok {
			return true
		}
	}
	return false
}

// get returns the storage object name, nil if s has none. One of a piece
// is taken out with the rest of the piece: the caller adds its groups.
func (s *soSet) get(name string) *StorageObject {
	if so := s.m[name]; so != nil {
		return so
	}
	for i, p := range s.pieces {
		if _, ok := p.names[name]; ok {
			s.pieces = slices.Delete(s.pieces, i, i+1)
			s.spill(p)
			return s.m[name]
		}
	}
	return nil
}

// spill puts copies of the storage objects of p in s.m.
func (s *soSet) spill(p *lunsPiece) {
	objs := slices.Clone(p.sos)
	for i := range objs {
		// another target's groups are appended to a copy
		objs[i].ALUA = slices.Clip(objs[i].ALUA)
		s.m[objs[i].Name] = &objs[i]
	}
}

func (s *soSet) spillAll() {
	for _, p := range s.pieces {
		s.spill(p)
	}
	s.pieces = nil
}

// count is the number of storage objects in s.
func (s *soSet) count() int {
	n := len(s.m)
	for _, p := range s.pieces {
		n += len(p.sos)
	}
	return n
}

// overlaps reports whether s holds one of the storage objects of p.
func (s *soSet) overlaps(p *lunsPiece) bool {
	if len(s.m) > 0 {
		if len(s.m) < len(p.names) {
			for n := range s.m {
				if _, ok := p.names[n]; ok {
					return true
				}
			}
		} else {
			for n := range p.names {
				if s.m[n] != nil {
					return true
				}
			}
		}
	}
	for _, q := range s.pieces {
		a, b := q.names, p.names
		if len(a) > len(b) {
			a, b = b, a
		}
		for n := range a {
			if _, ok := b[n]; ok {
				return true
			}
		}
	}
	return false
}

// list is the storage objects of s sorted by name, without those failed.
// The objects of one piece alone are its very list, which the state
// before shared too. managed are the names of the build (sorted), a
// superset of those in s.m.
//
// The objects of several pieces alone are merged once: m (nil: none)
// keeps the merge for a build of the same pieces' lists.
func (s *soSet) list(managed []string, failed map[string]bool, m *buildMemo) []StorageObject {
	var lists [][]StorageObject
	for _, p := range s.pieces {
		if len(p.sos) > 0 {
			lists = append(lists, p.sos)
		}
	}
	if len(s.m) > 0 {
		// walking the managed names (sorted) spares sorting those of m
		l := make([]StorageObject, 0, len(s.m))
		for i, name := range managed {
			so := s.m[name]
			if so == nil || failed[name] || (i > 0 && managed[i-1] == name) {
				continue
			}
			if !slices.IsSortedFunc(so.ALUA, aluaByID) {
				// a copy: the groups may be a Builder's, shared
				so.ALUA = slices.Clone(so.ALUA)
				slices.SortFunc(so.ALUA, aluaByID)
			}
			l = append(l, *so)
		}
		if len(l) > 0 {
			lists = append(lists, l)
		}
	}
	switch len(lists) {
	case 0:
		return nil
	case 1:
		return lists[0]
	}
	var key []*StorageObject
	if m != nil && len(s.m) == 0 {
		for _, l := range lists {
			key = append(key, &l[0], &l[len(l)-1])
		}
		if slices.Equal(key, m.mergedFrom) {
			return m.merged
		}
	}
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	// one allocation: growing a list of thousands of objects copied each
	// several times
	out := make([]StorageObject, 0, n)
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.SortFunc(out, func(a, b StorageObject) int { return strings.Compare(a.Name, b.Name) })
	if key != nil {
		m.merged, m.mergedFrom = out, key
	}
	return out
}

// dropLUNs removes the LUNs of the named storage objects, and the mapped
// LUNs that lead to them, from targets.
func dropLUNs(targets []Target, names map[string]bool) {
	for ti := range targets {
		for gi := range targets[ti].TPGs {
			tpg := &targets[ti].TPGs[gi]
			gone := map[int]bool{}
			// copies: the lists may be a Builder's, shared
			tpg.LUNs = slices.DeleteFunc(slices.Clone(tpg.LUNs), func(l LUN) bool {
				gone[l.Index] = gone[l.Index] || names[l.StorageObject]
				return names[l.StorageObject]
			})
			for ai := range tpg.ACLs {
				acl := &tpg.ACLs[ai]
				acl.MappedLUNs = slices.DeleteFunc(slices.Clone(acl.MappedLUNs), func(m MappedLUN) bool { return gone[m.TPGLUN] })
			}
		}
	}
}

// objectName is d.objectName(id), taken from the storage object memoized
// for the disk when its naming fields are the same: every build names
// every disk, and making thousands of names was most of what a build of
// a one-LUN change allocated.
func (m *buildMemo) objectName(id string, d DiskSpec) string {
	if m != nil {
		if p := m.sos[id]; p != nil && p.d.Pool == d.Pool && p.d.Image == d.Image && p.d.BackstoreObjectName == d.BackstoreObjectName {
			return p.so.Name
		}
	}
	return d.objectName(id)
}

func (d DiskSpec) objectName(id string) string {
	return ObjectName(id, d.Pool, d.Image, d.BackstoreObjectName)
}

// ObjectName is the storage object name of the disk id ("pool/image"):
// backstoreObjectName when set (upstream names long-standing disks that
// way), else "<pool>.<image>", the pool and image taken from the id when
// pool is empty.
func ObjectName(id, pool, image, backstoreObjectName string) string {
	if backstoreObjectName != "" {
		return backstoreObjectName
	}
	if pool == "" {
		pool, image, _ = strings.Cut(id, "/")
	}
	return pool + "." + image
}

func buildTarget(spec Spec, iqn string, ts TargetSpec, localIPs []string, sos *soSet, m *buildMemo) (Target, error) {
	var errs []error
	tgt := spec.Settings
	if err := applyTargetControls(&tgt, ts.Controls); err != nil {
		errs = append(errs, &ObjectError{Target: iqn, Err: fmt.Errorf("target %s: %w", iqn, err)})
	}
	isLocal := map[string]bool{}
	for _, ip := range localIPs {
		isLocal[trimBrackets(ip)] = true
	}
	clientCHAP := m.clientCHAP(iqn, ts.Clients, spec.Frozen, spec.Gen)
	gna, dmwp := "1", "0"
	if ts.ACLEnabled {
		gna, dmwp = "0", "1"
	}
	params := map[string]string{
		"ImmediateData":            yesNo(tgt.ImmediateData),
		"InitialR2T":               yesNo(tgt.InitialR2T),
		"MaxOutstandingR2T":        strconv.Itoa(tgt.MaxOutstandingR2T),
		"FirstBurstLength":         strconv.Itoa(tgt.FirstBurstLength),
		"MaxBurstLength":           strconv.Itoa(tgt.MaxBurstLength),
		"MaxRecvDataSegmentLength": strconv.Itoa(tgt.MaxRecvDataSegmentLength),
		"MaxXmitDataSegmentLength": strconv.Itoa(tgt.MaxXmitDataSegmentLength),
	}
	lunsOf, moved := targetLUNs(spec, iqn, ts, sos, m)
	failed := map[string]bool{} // disks whose LUN cannot be built
	// one map for every ACL of the target: they are read only
	aclAttrs := m.attrsOf(tgt.DataoutTimeout, tgt.NopinResponseTimeout, tgt.NopinTimeout)

	t := Target{IQN: iqn}
	for i, raw := range ts.IPList {
		ip := trimBrackets(raw)
		tag := i + 1
		if err := checkPortalIP(iqn, ip); err != nil {
			errs = append(errs, err)
			continue
		}
		local := isLocal[ip]
		tpg := TPG{
			Tag:     tag,
			Enabled: local,
			Portals: []string{PortalName(ip)},
			Attrs: map[string]string{
				"authentication":          "0",
				"generate_node_acls":      gna,
				"demo_mode_write_protect": dmwp,
				"tpg_enabled_sendtargets": "0",
			},
			Params: params,
			// Remote TPGs get no credentials, but leftovers from when the
			// portal was local are cleared.
			Auth: &Auth{},
		}
		if local {
			tpg.Attrs["tpg_enabled_sendtargets"] = "1"
			if ts.Auth.chap() || clientCHAP {
				tpg.Attrs["authentication"] = "1"
			}
			tpg.Auth = ts.Auth.auth()
		}
		tl := lunsOf[i]
		for _, e := range tl.errs {
			errs = append(errs, e)
			failed[e.Disk] = true
		}
		tpg.LUNs = tl.luns
		lunByDisk := tl.lunByDisk
		if local {
			// the ACLs of the last build where they are the same ones, in
			// runs copied at once (last.acls[rs:re], not yet in tpg.ACLs):
			// the list is that build's when all are
			last := m.aclList(tpgKey{iqn, tag})
			if spec.Frozen && last.clients != nil && sameMap(last.clients, ts.Clients) && last.clean && len(failed) == 0 &&
				sameMap(last.attrs, aclAttrs) && last.cmdsn == tgt.CmdSNDepth && onlyNew(moved) {
				// The clients of the last build, whose ACLs built without an
				// error: they name none but the disks the target had then,
				// whose TPG LUNs stay. Their ACLs are the same ones.
				tpg.ACLs = last.acls
				m.nextACLLists[tpgKey{iqn, tag}] = last
				m.aclsUsed += len(last.acls)
				t.TPGs = append(t.TPGs, tpg)
				continue
			}
			if tc, ok := m.hintFor(iqn); ok && m.aclLists[tpgKey{iqn, tag}] == last && last.clean && len(failed) == 0 &&
				sameMap(last.attrs, aclAttrs) && last.cmdsn == tgt.CmdSNDepth && moved != nil &&
				(onlyNew(moved) || last.unmapped(m.luns[iqn].gone, uniq(tc.Clients))) {
				// The last build's clean list, whose ACLs stay but for the
				// clients the hint names: as above, the others map none of
				// the disks new to the target, and none of those gone from
				// it or moved (unmapped).
				if l, cerrs := m.patchACLs(spec, iqn, tag, ts, tgt, last, uniq(tc.Clients), aclAttrs, lunByDisk, failed, moved); l != nil {
					m.counts.aclLists++
					if !onlyNew(moved) {
						m.counts.pastGone++
					}
					errs = append(errs, cerrs...)
					tpg.ACLs = l.acls
					m.nextACLLists[tpgKey{iqn, tag}] = l
					t.TPGs = append(t.TPGs, tpg)
					continue
				}
			}
			inis := clientOrder(ts.Clients, last)
			rs, re := 0, 0
			clean := len(failed) == 0
			for _, ini := range inis {
				if err := m.checkName(okIQNs, ini, func() error { return checkTargetName(spec.Names, "target "+iqn+" client", ini) }); err != nil {
					errs = append(errs, err)
					clean = false
					continue
				}
				acl, ok, err := m.builtACL(aclKey{iqn, tag, ini}, ts.Clients[ini], tgt, aclAttrs, lunByDisk, failed, moved, spec.Frozen)
				if err != nil {
					errs = append(errs, err)
					clean = false
				}
				if q := len(tpg.ACLs) + re - rs; ok && q < len(last.acls) && sameACL(acl, last.acls[q]) {
					if rs == re {
						rs, re = q, q
					}
					re++
					continue
				}
				if tpg.ACLs == nil {
					tpg.ACLs = make([]ACL, 0, len(inis))
				}
				tpg.ACLs = append(append(tpg.ACLs, last.acls[rs:re]...), acl)
				rs, re = 0, 0
			}
			switch {
			case tpg.ACLs == nil && re > 0:
				// clipped: an append to the shorter list copies it
				tpg.ACLs = slices.Clip(last.acls[:re])
			case tpg.ACLs != nil:
				tpg.ACLs = append(tpg.ACLs, last.acls[rs:re]...)
			}
			if m != nil {
				l := &aclList{inis: inis, acls: tpg.ACLs, clean: clean, attrs: aclAttrs, cmdsn: tgt.CmdSNDepth}
				if spec.Frozen {
					l.clients = ts.Clients
				}
				if spec.Gen != 0 && clean {
					// for the hinted builds to come
					l.countMapped()
				}
				m.nextACLLists[tpgKey{iqn, tag}] = l
			}
		}
		t.TPGs = append(t.TPGs, tpg)
	}
	return t, joinUnique(errs)
}

// patchACLs is the ACL list of TPG tag of target iqn made from last, the
// clean list of the last build, with the ACLs of the clients changed
// (sorted, of the hint) made again, put in or taken out: what the loop of
// buildTarget makes of every client when the others are as they were.
// The list is last's own when nothing in it changed; nil when the clients
// are not as many as the hint makes them (it left one out).
func (m *buildMemo) patchACLs(spec Spec, iqn string, tag int, ts TargetSpec, tgt Settings, last *aclList, changed []string,
	attrs map[string]string, lunByDisk map[string]int, failed, moved map[string]bool) (*aclList, []error) {
	var errs []error
	clean, same := true, true
	type put struct {
		at      int // position in last.inis (and last.acls: clean)
		found   bool
		ini     string
		acl     ACL
		present bool // in ts.Clients
		hasACL  bool // its ACL goes in the list (its name passed)
	}
	// a client added or removed that the hint does not name shows in
	// their number: the caller then makes every ACL
	n := len(last.inis)
	for _, ini := range changed {
		_, found := slices.BinarySearch(last.inis, ini)
		_, present := ts.Clients[ini]
		switch {
		case found && !present:
			n--
		case !found && present:
			n++
		}
	}
	if n != len(ts.Clients) {
		return nil, nil
	}
	puts := make([]put, 0, len(changed))
	for _, ini := range changed {
		i, found := slices.BinarySearch(last.inis, ini)
		c, present := ts.Clients[ini]
		u := put{at: i, found: found, ini: ini, present: present}
		if present {
			if err := m.checkName(okIQNs, ini, func() error { return checkTargetName(spec.Names, "target "+iqn+" client", ini) }); err != nil {
				errs = append(errs, err)
				clean = false
			} else {
				acl, _, err := m.builtACL(aclKey{iqn, tag, ini}, c, tgt, attrs, lunByDisk, failed, moved, spec.Frozen)
				if err != nil {
					errs = append(errs, err)
					clean = false
				}
				u.acl, u.hasACL = acl, true
			}
		}
		// (a client named that neither had nor has: nothing to do)
		same = same && (!found && !present || found && u.hasACL && sameACL(u.acl, last.acls[i]))
		puts = append(puts, u)
	}
	m.aclsUsed += len(last.acls) - len(puts)
	l := &aclList{inis: last.inis, acls: last.acls, clean: clean, attrs: attrs, cmdsn: tgt.CmdSNDepth}
	if spec.Frozen {
		l.clients = ts.Clients
	}
	if same {
		l.mapped = last.mapped
		return l, errs
	}
	if clean && last.mapped != nil {
		// last's counts, which nobody uses after this build, with the
		// changed ACLs' swapped
		l.mapped = last.mapped
		for _, u := range puts {
			if u.found {
				for _, ml := range last.acls[u.at].MappedLUNs {
					if l.mapped[ml.TPGLUN]--; l.mapped[ml.TPGLUN] == 0 {
						delete(l.mapped, ml.TPGLUN)
					}
				}
			}
			for _, ml := range u.acl.MappedLUNs {
				l.mapped[ml.TPGLUN]++
			}
		}
	}
	// the clients stay the same ones when every one changed was there and
	// still is, the usual (a LUN mapped): the initiators are last's then
	sameInis := true
	for _, u := range puts {
		sameInis = sameInis && u.found == u.present
	}
	if !sameInis {
		l.inis = make([]string, 0, len(last.inis)+len(puts))
	}
	l.acls = make([]ACL, 0, len(last.acls)+len(puts))
	i := 0 // last.inis[i:] (and last.acls[i:]) are left to copy
	for _, u := range puts {
		if !sameInis {
			l.inis = append(l.inis, last.inis[i:u.at]...)
			if u.present {
				l.inis = append(l.inis, u.ini)
			}
		}
		l.acls = append(l.acls, last.acls[i:u.at]...)
		if u.hasACL {
			l.acls = append(l.acls, u.acl)
		}
		i = u.at
		if u.found {
			i++
		}
	}
	if !sameInis {
		l.inis = append(l.inis, last.inis[i:]...)
	}
	if l.acls = append(l.acls, last.acls[i:]...); len(l.acls) == 0 {
		l.acls = nil // as the loop makes it
	}
	return l, errs
}

// tpgLUNs is what the LUNs of one TPG of a target came to: shared with a
// Builder's memo, so read only.
type tpgLUNs struct {
	luns      []LUN
	grown     grown[LUN] // luns' array, for a memo's patch
	lunByDisk map[string]int
	// errs name the disks whose LUN could not be built.
	errs []*ObjectError
}

// lunsPiece is what the LUNs of a target came to and everything they were
// made of: the target's disks, their specs (those of the build that made
// or took it last, gen), its portals, and (from the memo, reset when they
// change) the settings and backstore.
type lunsPiece struct {
	ipList  []string
	portals map[string][]string
	// ids are the target's disks, sorted, with their LUN ids
	ids    []string
	lunIDs []int
	tpgs   []tpgLUNs // by ip_list entry
	// sos are the storage objects of its disks with this target's ALUA
	// groups, the only ones they had
	sos []StorageObject
	// the arrays of sos, ids and lunIDs, which a patch extends
	sosG    grown[StorageObject]
	idsG    grown[string]
	lunIDsG grown[int]
	// names and indexes are the disk of each storage object and LUN id,
	// when no two disks share either (patchable): patch checks a new
	// disk against them.
	names     map[string]string
	indexes   map[int]string
	patchable bool
	// gen is the build that last made or took p; frozenDisks the Disks
	// map of the target then, when its Spec was Frozen.
	gen         int
	frozenDisks map[string]int
	// gone are, of the patch that made p, the TPG LUNs of the disks it
	// took out that the target no longer has there: the ACLs mapping them
	// change (aclList.unmapped).
	gone []int
}

// matches reports whether p, made or taken by the build before, is what
// the LUNs of ts come to in this one, with sos (the storage objects other
// targets of the build made) holding none of p's.
func (p *lunsPiece) matches(ts TargetSpec, sos *soSet, m *buildMemo) bool {
	if len(ts.Disks) != len(p.ids) || !slices.Equal(p.ipList, ts.IPList) || !maps.EqualFunc(p.portals, ts.Portals, slices.Equal) {
		return false
	}
	for i, id := range p.ids {
		if n, ok := ts.Disks[id]; !ok || n != p.lunIDs[i] || m.changedDisks[id] {
			return false
		}
	}
	return !sos.overlaps(p)
}

// targetLUNs builds the LUNs of each TPG of target iqn (by ip_list
// entry; none for an entry that is not a valid IP), adding their storage
// objects to sos. A target whose disks, specs and portals did not change
// since the last build without a failed LUN takes what that build made: a
// change of its clients costs no LUN. One whose disks changed in a few
// places only patches what that build made (lunsPiece.patch): a LUN added
// to a target of thousands makes one LUN, not thousands.
//
// moved are the disks whose TPG LUNs may differ from the last build's,
// nil when any may (the LUNs were built again), each true when the
// target had it before.
func targetLUNs(spec Spec, iqn string, ts TargetSpec, sos *soSet, m *buildMemo) (_ []tpgLUNs, moved map[string]bool) {
	if m != nil {
		if p, ok := m.luns[iqn]; ok {
			if q, moved, ok := p.patch(spec, iqn, ts, sos, m); ok {
				m.luns[iqn] = q
				m.lunsUsed++
				m.lunsPatched = m.lunsPatched || q != p
				q.gen, q.frozenDisks = m.gen, nil
				if spec.Frozen {
					q.frozenDisks = ts.Disks
				}
				sos.pieces = append(sos.pieces, q)
				return q.tpgs, moved
			}
		}
	}
	before := sos.count()
	ids := sortedKeys(ts.Disks)
	tpgs := make([]tpgLUNs, len(ts.IPList))
	clean := true
	for i, raw := range ts.IPList {
		ip := trimBrackets(raw)
		tag := i + 1
		if checkPortalIP(iqn, ip) != nil {
			clean = false // buildTarget reports it
			continue
		}
		tl := tpgLUNs{lunByDisk: make(map[string]int, len(ids))}
		if m != nil && len(ids) > 0 {
			// room for the disks the next builds add (grown)
			tl.luns = make([]LUN, 0, len(ids)+len(ids)/8+4)
		}
		for _, id := range ids {
			d, ok := spec.Disks[id]
			if !ok {
				tl.errs = append(tl.errs, &ObjectError{Target: iqn, Disk: id, Err: fmt.Errorf("target %s: disk %s is not in the config", iqn, id)})
				continue
			}
			so, err := storageObject(spec, id, d, sos, m)
			if err != nil {
				tl.errs = append(tl.errs, &ObjectError{Disk: id, Err: err})
				continue
			}
			g, err := aluaGroup(spec.Settings, d, so, ts, ip, tag, m)
			if err != nil {
				tl.errs = append(tl.errs, &ObjectError{Disk: id, Err: err})
				continue
			}
			tl.luns = append(tl.luns, LUN{Index: ts.Disks[id], StorageObject: so.Name, ALUAGroup: g})
			tl.lunByDisk[id] = ts.Disks[id]
		}
		sortLUNs(tl.luns)
		if len(tl.luns) == 0 {
			tl.luns = nil // as a Build makes it
		}
		// clipped: the spare room is the memo's (grown)
		tl.grown.all, tl.luns = tl.luns, slices.Clip(tl.luns)
		clean = clean && len(tl.errs) == 0
		tpgs[i] = tl
	}
	if !clean || m == nil {
		return tpgs, nil
	}
	p := &lunsPiece{ipList: slices.Clone(ts.IPList), portals: make(map[string][]string, len(ts.Portals)), ids: ids,
		lunIDs: make([]int, len(ids)), tpgs: tpgs, sos: make([]StorageObject, 0, len(ids)+len(ids)/8+4),
		names: make(map[string]string, len(ids)), indexes: make(map[int]string, len(ids)), patchable: true}
	for gw, ips := range ts.Portals {
		p.portals[gw] = slices.Clone(ips)
	}
	for i, id := range ids {
		d := spec.Disks[id]
		p.lunIDs[i] = ts.Disks[id]
		if _, dup := p.indexes[p.lunIDs[i]]; dup {
			p.patchable = false
		}
		p.indexes[p.lunIDs[i]] = id
		name := d.objectName(id)
		if _, dup := p.names[name]; dup {
			p.patchable = false
		} else {
			p.names[name] = id
			// sorted in place: its groups are this target's only, which
			// the state sorts anyway; a later target sharing the object
			// appends past them
			so := *sos.m[name]
			slices.SortFunc(so.ALUA, aluaByID)
			p.sos = append(p.sos, so)
		}
	}
	if sos.count()-before != len(p.sos) {
		return tpgs, nil // it shares storage objects with a target built before
	}
	slices.SortFunc(p.sos, func(a, b StorageObject) int { return strings.Compare(a.Name, b.Name) })
	p.sosG.all, p.sos = p.sos, slices.Clip(p.sos)
	p.idsG.all, p.lunIDsG.all = p.ids, p.lunIDs
	p.gen = m.gen
	if spec.Frozen {
		p.frozenDisks = ts.Disks
	}
	m.luns[iqn] = p
	m.lunsUsed++
	// the build lists p's objects as one that takes p does: its very
	// list, which the next one extends in place (grown) and NewPlanSince
	// then compares at once
	for name := range p.names {
		delete(sos.m, name)
	}
	sos.pieces = append(sos.pieces, p)
	return tpgs, nil
}

func aluaByID(a, b ALUAGroup) int { return a.ID - b.ID }

// joinUnique joins errors, dropping repeats: a bad disk is reported once,
// not once per TPG.
func joinUnique(errs []error) error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if e != nil && !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// buildACL builds an initiator's ACL; a failed disk is left out silently
// (its own error says why).
func buildACL(iqn, ini string, c ClientSpec, tgt Settings, attrs map[string]string, lunByDisk map[string]int, failed map[string]bool) (ACL, error) {
	var errs []error
	acl := ACL{
		Initiator:  ini,
		Attrs:      attrs,
		CmdSNDepth: tgt.CmdSNDepth,
		Auth:       c.Auth.auth(),
	}
	for _, id := range sortedKeys(c.LUNs) {
		tpgLUN, ok := lunByDisk[id]
		m := c.LUNs[id]
		switch {
		case failed[id]:
		case !ok:
			errs = append(errs, &ObjectError{Target: iqn, Client: ini, Err: fmt.Errorf("target %s client %s: disk %s is not a LUN of the target", iqn, ini, id)})
		case m < 0 || m > 255:
			errs = append(errs, &ObjectError{Target: iqn, Client: ini, Err: fmt.Errorf("target %s client %s: mapped LUN %d out of range 0-255", iqn, ini, m)})
		default:
			acl.MappedLUNs = append(acl.MappedLUNs, MappedLUN{Index: m, TPGLUN: tpgLUN})
		}
	}
	sortMapped(acl.MappedLUNs)
	return acl, errors.Join(errs...)
}

// storageObject returns the (shared) storage object of disk id, creating
// it on first use.
func storageObject(spec Spec, id string, d DiskSpec, sos *soSet, m *buildMemo) (*StorageObject, error) {
	name := d.objectName(id)
	if err := m.checkName(okObjects, name, func() error { return checkObjectName(spec.Names, id, name) }); err != nil {
		return nil, err
	}
	if so := sos.get(name); so != nil {
		return so, nil
	}
	if m != nil {
		if p := m.sos[id]; p != nil && diskSpecEqual(p.d, d) {
			so := p.so
			sos.m[name] = &so
			return &so, nil
		}
	}
	so, err := newStorageObject(spec, id, d, name)
	if err != nil {
		return nil, err
	}
	if m != nil {
		// a copy of what may change under the caller (the document's
		// controls map)
		k := d
		k.Controls = maps.Clone(d.Controls)
		m.sos[id] = &soPiece{d: k, so: *so}
	}
	sos.m[name] = so
	return so, nil
}

// newStorageObject makes the storage object name of disk id, without its
// ALUA groups.
func newStorageObject(spec Spec, id string, d DiskSpec, name string) (*StorageObject, error) {
	s, err := diskSettings(spec.Settings, d)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", id, err)
	}
	pool, image, _ := strings.Cut(id, "/")
	if d.Pool != "" {
		pool, image = d.Pool, d.Image
	}
	so := &StorageObject{Name: name, WWN: d.WWN}
	switch spec.Backstore {
	case "", BackstoreUserRBD:
		so.Plugin = PluginUser
		so.Config = CfgString(pool, image, s)
		so.MaxDataAreaMB, so.HWMaxSectors, so.Size = s.MaxDataAreaMB, s.HWMaxSectors, d.Size
		so.Attrs = map[string]string{"cmd_time_out": "0", "qfull_time_out": strconv.Itoa(s.QFullTimeout)}
	case BackstoreBlock, BackstoreFileIO:
		if d.DevicePath == "" {
			return nil, fmt.Errorf("disk %s: no device path for backstore %s", id, spec.Backstore)
		}
		so.Plugin, so.Config = PluginBlock, d.DevicePath
		if spec.Backstore == BackstoreFileIO {
			so.Plugin, so.Size = PluginFileIO, d.Size
		}
	default:
		return nil, fmt.Errorf("disk %s: unknown backstore %q", id, spec.Backstore)
	}
	return so, nil
}

// CfgString is the TCMU dev_config of an RBD image (spec 7.1).
func CfgString(pool, image string, s Settings) string {
	cfg := fmt.Sprintf("rbd/%s/%s;osd_op_timeout=%d", pool, image, s.OSDOpTimeout)
	if s.CephConf != "" && s.CephConf != "/etc/ceph/ceph.conf" {
		cfg += ";conf=" + s.CephConf
	}
	if s.ClusterClientName != "" && s.ClusterClientName != "client.admin" {
		_, id, ok := strings.Cut(s.ClusterClientName, ".")
		if !ok {
			id = s.ClusterClientName
		}
		cfg += ";id=" + id
	}
	return cfg
}

// aluaGroup adds the target port group of TPG tag to so and returns its
// name: "ao" on the owner's portal, otherwise ano<tag> (implicit) or
// standby<tag> (explicit).
func aluaGroup(global Settings, d DiskSpec, so *StorageObject, ts TargetSpec, ip string, tag int, m *buildMemo) (string, error) {
	s, err := diskSettings(global, d)
	if err != nil {
		return "", err
	}
	explicit := s.ALUAFailover == "explicit"
	owner := false
	for _, oip := range ts.Portals[d.Owner] {
		owner = owner || trimBrackets(oip) == ip
	}
	k := groupKey{explicit: explicit, owner: owner, osdOpTimeout: s.OSDOpTimeout, tag: tag}
	g, ok := m.group(k)
	if !ok {
		g = newALUAGroup(k)
		if m != nil {
			m.groups[k] = g
		}
	}
	for _, have := range so.ALUA {
		switch {
		case have.ID == g.ID && have.Name == g.Name:
			return g.Name, nil
		case have.ID == g.ID || have.Name == g.Name:
			// Upstream fails the same way (spec 7.6), e.g. an owner with two
			// portal IPs, or a disk exported by two targets.
			return "", fmt.Errorf("disk %s: existing ALUA group tag for group %s in invalid state", so.Name, g.Name)
		}
	}
	so.ALUA = append(so.ALUA, g)
	return g.Name, nil
}

func (m *buildMemo) group(k groupKey) (ALUAGroup, bool) {
	if m == nil {
		return ALUAGroup{}, false
	}
	g, ok := m.groups[k]
	return g, ok
}

// newALUAGroup makes the target port group of TPG k.tag.
func newALUAGroup(k groupKey) ALUAGroup {
	explicit, owner, tag := k.explicit, k.owner, k.tag
	g := ALUAGroup{ID: tag, Attrs: map[string]string{
		"alua_support_active_optimized": "1",
		"alua_support_offline":          "0",
		"alua_support_unavailable":      "0",
		"alua_support_transitioning":    "1",
		"nonop_delay_msecs":             "0",
		"preferred":                     "0",
	}}
	switch {
	case explicit:
		g.Name, g.AccessType, g.AccessState = fmt.Sprintf("standby%d", tag), 3, 2
		g.Attrs["alua_support_standby"] = "1"
		if owner {
			g.Name, g.Attrs["preferred"] = "ao", "1"
		}
	default:
		g.Name, g.AccessType, g.AccessState = fmt.Sprintf("ano%d", tag), 1, 1
		g.Attrs["alua_support_active_nonoptimized"] = "1"
		g.Attrs["implicit_trans_secs"] = strconv.Itoa(k.osdOpTimeout + 15)
		if owner {
			g.Name, g.AccessState = "ao", 0
		}
	}
	return g
}

// diskSettings applies a disk's TCMU overrides to the global defaults.
func diskSettings(s Settings, d DiskSpec) (Settings, error) {
	err := applyTCMUControls(&s, d.Controls)
	return s, err
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func applyTargetControls(s *Settings, c map[string]any) error {
	if len(c) == 0 {
		return nil // most targets and disks override nothing: no maps to make
	}
	ints := map[string]*int{
		"dataout_timeout": &s.DataoutTimeout, "nopin_response_timeout": &s.NopinResponseTimeout,
		"nopin_timeout": &s.NopinTimeout, "cmdsn_depth": &s.CmdSNDepth,
		"max_outstanding_r2t": &s.MaxOutstandingR2T, "first_burst_length": &s.FirstBurstLength,
		"max_burst_length": &s.MaxBurstLength, "max_recv_data_segment_length": &s.MaxRecvDataSegmentLength,
		"max_xmit_data_segment_length": &s.MaxXmitDataSegmentLength,
	}
	bools := map[string]*bool{"immediate_data": &s.ImmediateData, "initial_r2t": &s.InitialR2T}
	return applyControls(c, ints, bools)
}

func applyTCMUControls(s *Settings, c map[string]any) error {
	if len(c) == 0 {
		return nil
	}
	ints := map[string]*int{
		"max_data_area_mb": &s.MaxDataAreaMB, "qfull_timeout": &s.QFullTimeout,
		"osd_op_timeout": &s.OSDOpTimeout, "hw_max_sectors": &s.HWMaxSectors,
	}
	return applyControls(c, ints, nil)
}

func applyControls(c map[string]any, ints map[string]*int, bools map[string]*bool) error {
	if len(c) == 0 {
		return nil
	}
	var errs []error
	for _, k := range sortedKeys(c) {
		v := c[k]
		if p, ok := ints[k]; ok {
			n, err := toInt(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("control %s: %w", k, err))
				continue
			}
			*p = n
		} else if p, ok := bools[k]; ok {
			b, err := toBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("control %s: %w", k, err))
				continue
			}
			*p = b
		} else {
			errs = append(errs, fmt.Errorf("unknown control %q", k))
		}
	}
	return errors.Join(errs...)
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x != float64(int(x)) {
			return 0, fmt.Errorf("%v is not an integer", x)
		}
		return int(x), nil
	case string:
		return strconv.Atoi(x)
	case fmt.Stringer: // json.Number
		return strconv.Atoi(x.String())
	}
	return 0, fmt.Errorf("unsupported value %v", v)
}

// toBool accepts JSON booleans and LIO/settings spellings (Yes/No,
// true/false, 1/0).
func toBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(x) {
		case "yes", "true", "1":
			return true, nil
		case "no", "false", "0":
			return false, nil
		}
	case float64:
		return x != 0, nil
	case int:
		return x != 0, nil
	case json.Number: // how package config decodes every number
		f, err := strconv.ParseFloat(x.String(), 64)
		if err != nil {
			return false, fmt.Errorf("unsupported boolean %v", v)
		}
		return f != 0, nil
	}
	return false, fmt.Errorf("unsupported boolean %v", v)
}
