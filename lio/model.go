package lio

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"strconv"
)

// DefaultRoot is where configfs is mounted on a gateway. The LIO tree is
// DefaultRoot/target.
const DefaultRoot = "/sys/kernel/config"

// Plugin is an LIO backstore type, the prefix of an HBA directory
// (core/<plugin>_<index>).
type Plugin string

// Backstore plugins this package can create.
const (
	PluginUser   Plugin = "user"   // TCMU; user:rbd served by tcmu-runner
	PluginBlock  Plugin = "iblock" // a block device, e.g. a krbd-mapped /dev/rbdN
	PluginFileIO Plugin = "fileio" // a plain file, for development only
)

// Secret is a CHAP password. Every way of printing it (fmt verbs, JSON,
// slog) shows "<redacted>" so that plans, logs and errors can be shared;
// only Reveal returns the value, and only Apply should call it.
type Secret string

const redacted = "<redacted>"

// Reveal returns the plain value.
func (s Secret) Reveal() string { return string(s) }

// String redacts non-empty secrets; an empty one stays visibly empty because
// "no password" is useful and harmless to show.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format makes every fmt verb (including %d and %x, which skip String) redact.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprint(f, strconv.Quote(s.String()))
		return
	}
	fmt.Fprint(f, s.String())
}

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue redacts for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Auth is a CHAP credential set as stored in configfs auth files. Observe
// fills it with the raw file contents, where the kernel may show "NULL" for
// an unset value.
type Auth struct {
	UserID         string `json:"userid"`
	Password       Secret `json:"password"`
	MutualUserID   string `json:"userid_mutual"`
	MutualPassword Secret `json:"password_mutual"`
}

// DiscoveryAuth is the fabric-wide SendTargets authentication
// (iscsi/discovery_auth).
type DiscoveryAuth struct {
	Auth
	Enforce bool `json:"enforce"`
}

// State is one view of the LIO tree: what Observe read, or what Build wants.
// Slices are sorted by their keys.
type State struct {
	// Fabric reports whether target/iscsi exists (observed only). The
	// planner creates it whenever the desired State needs it.
	Fabric bool `json:"fabric,omitempty"`
	// HBAs lists the core/<plugin>_<n> directory names (observed only), so
	// the planner can pick a free index the way rtslib does.
	HBAs           []string        `json:"hbas,omitempty"`
	StorageObjects []StorageObject `json:"storage_objects,omitempty"`
	Targets        []Target        `json:"targets,omitempty"`
	// DiscoveryAuth nil means "not managed": leave the kernel values alone.
	DiscoveryAuth *DiscoveryAuth `json:"discovery_auth,omitempty"`
	// Managed names what this gateway owns beyond what is desired, so that
	// stale objects can be removed and foreign ones kept (desired only).
	Managed Managed `json:"managed,omitempty"`
}

// Managed lists the storage-object names and target IQNs this gateway
// owns: Build puts every disk and target of the config here. Ownership is
// by name only, so an object the config no longer names is foreign and
// stays; a caller deleting a target or disk from the config (the API's
// DELETE handlers) adds its name here for the reconcile that removes it.
type Managed struct {
	StorageObjects []string `json:"storage_objects,omitempty"`
	Targets        []string `json:"targets,omitempty"`
}

// ForTeardown returns the desired State of a gateway shutdown: nothing,
// but with the same ownership, so every managed object is removed.
func (s State) ForTeardown() State {
	m := Managed{
		StorageObjects: append([]string(nil), s.Managed.StorageObjects...),
		Targets:        append([]string(nil), s.Managed.Targets...),
	}
	for _, so := range s.StorageObjects {
		m.StorageObjects = append(m.StorageObjects, so.Name)
	}
	for _, t := range s.Targets {
		m.Targets = append(m.Targets, t.IQN)
	}
	return State{Managed: m}
}

// StorageObject is a backstore device, core/<plugin>_<n>/<name>.
type StorageObject struct {
	Plugin Plugin `json:"plugin"`
	Name   string `json:"name"`
	// Path is where Observe found the object, relative to the FS root
	// ("target/core/user_0/rbd.disk2"). Desired objects leave it empty: the
	// planner chooses the HBA index.
	Path string `json:"path,omitempty"`
	// Enabled is observed only; desired objects are always enabled.
	Enabled bool   `json:"enabled,omitempty"`
	WWN     string `json:"wwn,omitempty"` // unit serial; "" = let the kernel decide
	// Config is the creation-time device: the TCMU cfgstring for user, the
	// udev_path for iblock and fileio.
	Config string `json:"config"`
	// MaxDataAreaMB and HWMaxSectors form the TCMU control string; 0 leaves
	// the kernel default.
	MaxDataAreaMB int `json:"max_data_area_mb,omitempty"`
	HWMaxSectors  int `json:"hw_max_sectors,omitempty"`
	// Size is dev_size in bytes (user: resizable live; fileio: creation
	// only). 0 = not managed.
	Size int64 `json:"size,omitempty"`
	// Attrs are attrib/* values. For desired objects only the listed keys
	// are managed.
	Attrs map[string]string `json:"attrs,omitempty"`
	ALUA  []ALUAGroup       `json:"alua,omitempty"`
}

// ALUAGroup is a target port group, <storage object>/alua/<name>.
type ALUAGroup struct {
	Name string `json:"name"`
	ID   int    `json:"tg_pt_gp_id"`
	// AccessType: 1 implicit, 2 explicit, 3 both.
	AccessType int `json:"alua_access_type"`
	// AccessState is written only when the group is created: afterwards it
	// belongs to the initiator (STPG) and tcmu-runner, and the group name
	// already encodes the intended role.
	AccessState int               `json:"alua_access_state"`
	Attrs       map[string]string `json:"attrs,omitempty"`
}

// Target is an iSCSI target, iscsi/<iqn>.
type Target struct {
	IQN  string `json:"iqn"`
	TPGs []TPG  `json:"tpgs,omitempty"`
}

// TPG is a target portal group, <target>/tpgt_<tag>.
type TPG struct {
	Tag     int      `json:"tag"`
	Enabled bool     `json:"enabled"`
	Portals []string `json:"portals,omitempty"` // np directory names, "ip:3260" or "[ip6]:3260"
	// Attrs (attrib/*) and Params (param/*): for desired TPGs only the
	// listed keys are managed.
	Attrs  map[string]string `json:"attrs,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	// Auth nil means "not managed" (remote TPGs).
	Auth *Auth `json:"auth,omitempty"`
	LUNs []LUN `json:"luns,omitempty"`
	ACLs []ACL `json:"acls,omitempty"`
}

// LUN is a TPG LUN, <tpg>/lun/lun_<index>, linked to a storage object.
type LUN struct {
	Index         int    `json:"index"`
	StorageObject string `json:"storage_object"` // its name
	// Link is the storage object's path (observed only).
	Link string `json:"link,omitempty"`
	// LinkName is the symlink's own name (observed only).
	LinkName string `json:"link_name,omitempty"`
	// ALUAGroup is the name of the storage object's target port group; ""
	// leaves the kernel default (default_tg_pt_gp).
	ALUAGroup string `json:"alua_group,omitempty"`
}

// ACL is a NodeACL, <tpg>/acls/<initiator>.
type ACL struct {
	Initiator  string            `json:"initiator"`
	Attrs      map[string]string `json:"attrs,omitempty"`
	CmdSNDepth int               `json:"cmdsn_depth,omitempty"` // 0 = not managed
	Auth       *Auth             `json:"auth,omitempty"`
	MappedLUNs []MappedLUN       `json:"mapped_luns,omitempty"`
}

// MappedLUN is what one initiator sees: <acl>/lun_<index> linked to the
// TPG LUN lun_<tpg_lun>.
type MappedLUN struct {
	Index    int    `json:"index"`
	TPGLUN   int    `json:"tpg_lun"`
	LinkName string `json:"link_name,omitempty"` // observed only
}

// Path helpers: every object is identified by its path relative to the FS
// root, the same string in plans, errors and tests.

const (
	targetDir  = "target"
	coreDir    = "target/core"
	fabricDir  = "target/iscsi"
	discAuth   = "target/iscsi/discovery_auth"
	defaultTPG = "default_tg_pt_gp"
)

func hbaPath(p Plugin, index int) string { return fmt.Sprintf("%s/%s_%d", coreDir, p, index) }
func targetPath(iqn string) string       { return fabricDir + "/" + iqn }
func tpgPath(iqn string, tag int) string { return fmt.Sprintf("%s/tpgt_%d", targetPath(iqn), tag) }
func lunPath(tpg string, index int) string {
	return fmt.Sprintf("%s/lun/lun_%d", tpg, index)
}
func aclPath(tpg, initiator string) string    { return tpg + "/acls/" + initiator }
func mappedPath(acl string, index int) string { return fmt.Sprintf("%s/lun_%d", acl, index) }
func portalPath(tpg, np string) string        { return tpg + "/np/" + np }
func aluaPath(so, group string) string        { return so + "/alua/" + group }

// linkName gives LUN and mapped-LUN symlinks a stable name derived from
// what they point to. rtslib uses random hex; the kernel ignores the name,
// and a stable one keeps plans and test trees reproducible.
func linkName(target string) string {
	var h uint64 = 14695981039346656037 // FNV-1a
	for i := 0; i < len(target); i++ {
		h ^= uint64(target[i])
		h *= 1099511628211
	}
	return fmt.Sprintf("%016x", h)[:10]
}

// PortalName formats a network portal directory name: IPv6 addresses are
// bracketed, the port is always 3260.
func PortalName(ip string) string {
	ip = trimBrackets(ip)
	for i := 0; i < len(ip); i++ {
		if ip[i] == ':' {
			return "[" + ip + "]:3260"
		}
	}
	return ip + ":3260"
}

func trimBrackets(ip string) string {
	if len(ip) >= 2 && ip[0] == '[' && ip[len(ip)-1] == ']' {
		return ip[1 : len(ip)-1]
	}
	return ip
}

func soName(p string) string { return path.Base(p) }
