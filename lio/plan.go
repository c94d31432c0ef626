package lio

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// OpKind is one configfs action.
type OpKind string

// Operation kinds. Paths are relative to the FS root.
const (
	OpMkdir   OpKind = "mkdir"
	OpWrite   OpKind = "write"   // Value into the attribute file Path
	OpEnable  OpKind = "enable"  // "1" into Path/enable
	OpDisable OpKind = "disable" // "0" into Path/enable; a missing object is fine
	OpSymlink OpKind = "symlink" // Path -> Value (an object path)
	OpUnlink  OpKind = "unlink"
	OpRmdir   OpKind = "rmdir"
)

// Op is one step of a Plan.
type Op struct {
	Kind  OpKind
	Path  string
	Value string
	// Secret marks a value that must never be shown.
	Secret bool
}

func (o Op) shownValue() string {
	if o.Secret {
		return redacted
	}
	return o.Value
}

// String renders the op on one line, with secrets redacted.
func (o Op) String() string {
	switch o.Kind {
	case OpWrite:
		return fmt.Sprintf("%s %s %s", o.Kind, o.Path, strconv.Quote(o.shownValue()))
	case OpSymlink:
		return fmt.Sprintf("%s %s -> %s", o.Kind, o.Path, o.Value)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Path)
}

// MarshalJSON renders {"op","path","value"} with secrets redacted. Note
// that json.Marshal escapes the marker as \u003credacted\u003e; an Encoder
// with SetEscapeHTML(false) prints it literally.
func (o Op) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Kind  OpKind `json:"op"`
		Path  string `json:"path"`
		Value string `json:"value,omitempty"`
	}{o.Kind, o.Path, o.shownValue()})
}

// Plan is an ordered list of operations that takes an observed State to a
// desired one.
type Plan struct {
	Ops []Op
}

// Empty reports whether there is nothing to do.
func (p Plan) Empty() bool { return len(p.Ops) == 0 }

// String renders one op per line.
func (p Plan) String() string {
	var b strings.Builder
	for _, o := range p.Ops {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// MarshalJSON renders the ops as a JSON array (never null).
func (p Plan) MarshalJSON() ([]byte, error) {
	if p.Ops == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(p.Ops)
}

// NewPlan computes the operations that turn observed into desired. It is
// pure and deterministic. The order is:
//
//  1. removal of objects that must be re-created because a creation-time
//     property changed (storage-object config, LUN or mapped-LUN link, ALUA
//     group id), child to parent;
//  2. creation and update, parent to child: fabric, discovery auth,
//     storage objects and their ALUA groups, targets, TPGs with their
//     settings and remote portals, LUNs, ACLs, mapped LUNs;
//  3. TPG enable and the local portals, so initiators cannot log in before
//     LUNs and ACLs exist;
//  4. removal of stale managed objects, child to parent: TPG disable,
//     mapped LUNs, ACLs, LUNs, portals, TPGs, targets, ALUA groups, storage
//     objects (targets before backstores).
//
// Within a kind, additions therefore precede deletions.
func NewPlan(observed, desired State) Plan {
	p := newPlanner(observed, desired)
	p.preDeletes()
	p.creates()
	p.activate()
	p.staleDeletes()
	return Plan{Ops: p.ops}
}

type planner struct {
	obs, des State
	ops      []Op

	managedSO  map[string]bool
	managedTgt map[string]bool

	obsSO      map[string]*StorageObject // by path
	obsTgt     map[string]*Target
	desSOPath  map[string]string // desired name -> resolved path
	keptSO     map[string]bool   // observed paths that survive
	newSO      map[string]bool   // resolved paths to create (including replacements)
	newHBA     map[string]bool
	gone       map[string]bool // object paths removed in phase 1
	rebound    map[string]bool // LUN paths moved to default_tg_pt_gp in phase 1
	replacedSO map[string]bool

	// indexes of the desired state, so that a plan over thousands of LUNs
	// and ACLs does not search a list for each one
	desSOByName map[string]*StorageObject
	desByPath   map[string]*StorageObject // resolved path -> desired object
	desTgt      map[string]*Target
	luns        map[*TPG]map[int]*LUN
	acls        map[*TPG]map[string]*ACL

	// hbaObjects are the observed storage objects an HBA is kept for
	// (obs.StorageObjects unless NewPlanSince plans a part of them).
	hbaObjects []StorageObject
}

func newPlanner(obs, des State) *planner {
	p := &planner{
		obs: obs, des: des,
		managedSO: map[string]bool{}, managedTgt: map[string]bool{},
		obsSO: map[string]*StorageObject{}, obsTgt: map[string]*Target{},
		desSOPath: map[string]string{}, keptSO: map[string]bool{}, newSO: map[string]bool{},
		newHBA: map[string]bool{}, gone: map[string]bool{}, rebound: map[string]bool{},
		replacedSO:  map[string]bool{},
		desSOByName: map[string]*StorageObject{}, desByPath: map[string]*StorageObject{},
		desTgt: map[string]*Target{}, luns: map[*TPG]map[int]*LUN{}, acls: map[*TPG]map[string]*ACL{},
	}
	for i := range des.StorageObjects {
		if so := &des.StorageObjects[i]; p.desSOByName[so.Name] == nil {
			p.desSOByName[so.Name] = so
		}
	}
	for i := range des.Targets {
		if t := &des.Targets[i]; p.desTgt[t.IQN] == nil {
			p.desTgt[t.IQN] = t
		}
	}
	for _, n := range des.Managed.StorageObjects {
		p.managedSO[n] = true
	}
	for _, so := range des.StorageObjects {
		p.managedSO[so.Name] = true
	}
	for _, n := range des.Managed.Targets {
		p.managedTgt[n] = true
	}
	for _, t := range des.Targets {
		p.managedTgt[t.IQN] = true
	}
	p.hbaObjects = obs.StorageObjects
	for i := range obs.StorageObjects {
		so := &obs.StorageObjects[i]
		p.obsSO[so.Path] = so
	}
	for i := range obs.Targets {
		p.obsTgt[obs.Targets[i].IQN] = &obs.Targets[i]
	}
	p.resolveStorageObjects()
	for name, path := range p.desSOPath {
		p.desByPath[path] = p.desSO(name)
	}
	return p
}

func (p *planner) add(k OpKind, path, value string) {
	p.ops = append(p.ops, Op{Kind: k, Path: path, Value: value})
}

func (p *planner) addSecret(path, value string) {
	p.ops = append(p.ops, Op{Kind: OpWrite, Path: path, Value: value, Secret: value != "NULL"})
}

// resolveStorageObjects matches each desired storage object with an
// observed one of the same name and plugin, and decides whether it is kept
// (updated in place) or re-created under the same HBA. New objects take
// the lowest HBA index not used by any plugin, as rtslib does.
func (p *planner) resolveStorageObjects() {
	// the HBA indexes in use, read on the first new object: a plan that
	// makes none (most of NewPlanSince's) leaves thousands of HBAs unread.
	// An index past what the HBAs and new objects can fill is never the
	// lowest free one.
	var used []bool
	free := func() int {
		if used == nil {
			used = make([]bool, len(p.obs.HBAs)+len(p.des.StorageObjects)+1)
			for _, h := range p.obs.HBAs {
				if _, n, ok := parseHBA(h); ok && n < len(used) {
					used[n] = true
				}
			}
		}
		i := 0
		for used[i] {
			i++
		}
		used[i] = true
		return i
	}
	foreignLinks := map[string]bool{} // SO paths linked from unmanaged targets
	for _, t := range p.obs.Targets {
		if p.managedTgt[t.IQN] {
			continue
		}
		for _, tpg := range t.TPGs {
			for _, l := range tpg.LUNs {
				foreignLinks[l.Link] = true
			}
		}
	}
	// the first observed object of each name and plugin, in (name, path)
	// order: what a desired object of that name reuses
	type soKey struct {
		name   string
		plugin Plugin
	}
	firstObs := map[soKey]*StorageObject{}
	for _, o := range sortedSOs(p.obs.StorageObjects) {
		k := soKey{o.Name, o.Plugin}
		if _, ok := firstObs[k]; !ok {
			firstObs[k] = p.obsSO[o.Path]
		}
	}
	for _, d := range sortedSOs(p.des.StorageObjects) {
		match := firstObs[soKey{d.Name, d.Plugin}]
		switch {
		case match != nil && (soCompatible(*match, d) || foreignLinks[match.Path]):
			p.desSOPath[d.Name] = match.Path
			p.keptSO[match.Path] = true
		case match != nil:
			p.desSOPath[d.Name] = match.Path
			p.replacedSO[match.Path] = true
			p.newSO[match.Path] = true
		default:
			hba := hbaPath(d.Plugin, free())
			p.newHBA[hba] = true
			path := hba + "/" + d.Name
			p.desSOPath[d.Name] = path
			p.newSO[path] = true
		}
	}
}

// soCompatible reports whether o can serve as d without re-creation: only
// attributes and dev_size can change on a live object.
func soCompatible(o, d StorageObject) bool {
	if !o.Enabled || o.Config != d.Config || (d.WWN != "" && o.WWN != d.WWN) {
		return false
	}
	if d.Plugin == PluginUser {
		if d.MaxDataAreaMB != 0 && o.MaxDataAreaMB != d.MaxDataAreaMB {
			return false
		}
		if d.HWMaxSectors != 0 && o.HWMaxSectors != d.HWMaxSectors {
			return false
		}
	}
	return true
}

// desired lookups

func (p *planner) desTarget(iqn string) *Target { return p.desTgt[iqn] }

// findLUN is the LUN of tpg with index, through an index of tpg made on
// first use.
func (p *planner) findLUN(tpg *TPG, index int) *LUN {
	if tpg == nil {
		return nil
	}
	m := p.luns[tpg]
	if m == nil {
		m = make(map[int]*LUN, len(tpg.LUNs))
		for i := range tpg.LUNs {
			if m[tpg.LUNs[i].Index] == nil {
				m[tpg.LUNs[i].Index] = &tpg.LUNs[i]
			}
		}
		p.luns[tpg] = m
	}
	return m[index]
}

// findACL is the ACL of tpg for ini, through an index of tpg made on
// first use.
func (p *planner) findACL(tpg *TPG, ini string) *ACL {
	if tpg == nil {
		return nil
	}
	m := p.acls[tpg]
	if m == nil {
		m = make(map[string]*ACL, len(tpg.ACLs))
		for i := range tpg.ACLs {
			if m[tpg.ACLs[i].Initiator] == nil {
				m[tpg.ACLs[i].Initiator] = &tpg.ACLs[i]
			}
		}
		p.acls[tpg] = m
	}
	return m[ini]
}

func findTPG(t *Target, tag int) *TPG {
	if t == nil {
		return nil
	}
	for i := range t.TPGs {
		if t.TPGs[i].Tag == tag {
			return &t.TPGs[i]
		}
	}
	return nil
}

func findACL(tpg *TPG, ini string) *ACL {
	if tpg == nil {
		return nil
	}
	for i := range tpg.ACLs {
		if tpg.ACLs[i].Initiator == ini {
			return &tpg.ACLs[i]
		}
	}
	return nil
}

func findMapped(acl *ACL, index int) *MappedLUN {
	if acl == nil {
		return nil
	}
	for i := range acl.MappedLUNs {
		if acl.MappedLUNs[i].Index == index {
			return &acl.MappedLUNs[i]
		}
	}
	return nil
}

func findGroup(so *StorageObject, name string) *ALUAGroup {
	if so == nil {
		return nil
	}
	for i := range so.ALUA {
		if so.ALUA[i].Name == name {
			return &so.ALUA[i]
		}
	}
	return nil
}

func (p *planner) desSO(name string) *StorageObject { return p.desSOByName[name] }

// desSOByPath returns the desired object resolved to path, if any.
func (p *planner) desSOByPath(path string) *StorageObject { return p.desByPath[path] }

// Phase 1: removals forced by re-creation.

func (p *planner) preDeletes() {
	var mapped, luns []string
	lunLinks := map[string]string{}
	mappedLinks := map[string]string{}
	for _, t := range sortedTargets(p.obs.Targets) {
		if !p.managedTgt[t.IQN] {
			continue
		}
		dt := p.desTarget(t.IQN)
		for _, tpg := range t.TPGs {
			tp := tpgPath(t.IQN, tpg.Tag)
			dtpg := findTPG(dt, tpg.Tag)
			doomedLUN := map[int]bool{}
			for _, l := range tpg.LUNs {
				dl := p.findLUN(dtpg, l.Index)
				if p.replacedSO[l.Link] || (dl != nil && p.desSOPath[dl.StorageObject] != l.Link) {
					doomedLUN[l.Index] = true
					lp := lunPath(tp, l.Index)
					luns = append(luns, lp)
					lunLinks[lp] = l.LinkName
				}
			}
			for _, acl := range tpg.ACLs {
				dacl := p.findACL(dtpg, acl.Initiator)
				for _, m := range acl.MappedLUNs {
					dm := findMapped(dacl, m.Index)
					if doomedLUN[m.TPGLUN] || (dm != nil && dm.TPGLUN != m.TPGLUN) {
						mp := mappedPath(aclPath(tp, acl.Initiator), m.Index)
						mapped = append(mapped, mp)
						mappedLinks[mp] = m.LinkName
					}
				}
			}
		}
	}
	for _, mp := range mapped {
		p.removeLinked(mp, mappedLinks[mp])
	}
	for _, lp := range luns {
		p.removeLinked(lp, lunLinks[lp])
	}

	// ALUA groups whose id or name collides with a desired group: the
	// kernel refuses two groups with one id on a device.
	for _, path := range sortedKeys(p.keptSO) {
		o, d := p.obsSO[path], p.desSOByPath(path)
		if d == nil {
			continue
		}
		for _, g := range o.ALUA {
			// Also re-create on a failover-mode change: the initial access
			// state, written only at creation, must follow the new mode.
			conflict := false
			for _, dg := range d.ALUA {
				if (dg.Name == g.Name) != (dg.ID == g.ID) || (dg.Name == g.Name && dg.AccessType != g.AccessType) {
					conflict = true
				}
			}
			if conflict {
				p.rebindLUNs(path, g.Name)
				gp := aluaPath(path, g.Name)
				p.add(OpRmdir, gp, "")
				p.gone[gp] = true
			}
		}
	}
	for _, path := range sortedKeys(p.replacedSO) {
		p.removeSO(p.obsSO[path], false)
	}
}

func (p *planner) removeLinked(dir, link string) {
	if link != "" {
		p.add(OpUnlink, dir+"/"+link, "")
	}
	p.add(OpRmdir, dir, "")
	p.gone[dir] = true
}

// rebindLUNs moves the surviving LUNs of group g to default_tg_pt_gp so
// that g can be removed.
func (p *planner) rebindLUNs(soPath, g string) {
	for _, t := range sortedTargets(p.obs.Targets) {
		for _, tpg := range t.TPGs {
			for _, l := range tpg.LUNs {
				lp := lunPath(tpgPath(t.IQN, tpg.Tag), l.Index)
				if l.Link == soPath && l.ALUAGroup == g && !p.gone[lp] {
					p.add(OpWrite, lp+"/alua_tg_pt_gp", defaultTPG)
					p.rebound[lp] = true
				}
			}
		}
	}
}

// removeSO removes a storage object: its ALUA groups first (configfs will
// not remove a directory with user-created children), then the object,
// then its HBA when nothing else lives there (rtslib keeps one HBA per
// object).
func (p *planner) removeSO(o *StorageObject, dropHBA bool) {
	for _, g := range o.ALUA {
		gp := aluaPath(o.Path, g.Name)
		if !p.gone[gp] {
			p.add(OpRmdir, gp, "")
			p.gone[gp] = true
		}
	}
	p.add(OpRmdir, o.Path, "")
	p.gone[o.Path] = true
	if !dropHBA {
		return
	}
	hba := path2dir(o.Path)
	for _, other := range p.hbaObjects {
		if path2dir(other.Path) == hba && !p.gone[other.Path] {
			return
		}
	}
	p.add(OpRmdir, hba, "")
}

// Phase 2: creation and update, parent to child.

func (p *planner) creates() {
	if (len(p.des.Targets) > 0 || p.des.DiscoveryAuth != nil) && !p.obs.Fabric {
		p.add(OpMkdir, fabricDir, "")
	}
	if d := p.des.DiscoveryAuth; d != nil {
		var o DiscoveryAuth
		if p.obs.DiscoveryAuth != nil {
			o = *p.obs.DiscoveryAuth
		}
		p.authOps(discAuth, &d.Auth, &o.Auth, true)
		if d.Enforce != o.Enforce || !p.obs.Fabric {
			p.add(OpWrite, discAuth+"/enforce_discovery_auth", boolStr(d.Enforce))
		}
	}
	for _, d := range sortedSOs(p.des.StorageObjects) {
		p.createSO(d)
	}
	for _, dt := range sortedTargets(p.des.Targets) {
		ot := p.obsTgt[dt.IQN]
		if ot == nil {
			p.add(OpMkdir, targetPath(dt.IQN), "")
		}
		for _, dtpg := range dt.TPGs {
			p.createTPG(dt.IQN, dtpg, findTPG(ot, dtpg.Tag))
		}
	}
	for _, dt := range sortedTargets(p.des.Targets) {
		ot := p.obsTgt[dt.IQN]
		for _, dtpg := range dt.TPGs {
			otpg := findTPG(ot, dtpg.Tag)
			tp := tpgPath(dt.IQN, dtpg.Tag)
			for _, dl := range dtpg.LUNs {
				p.createLUN(tp, dl, p.findLUN(otpg, dl.Index))
			}
		}
	}
	for _, dt := range sortedTargets(p.des.Targets) {
		ot := p.obsTgt[dt.IQN]
		for _, dtpg := range dt.TPGs {
			otpg := findTPG(ot, dtpg.Tag)
			tp := tpgPath(dt.IQN, dtpg.Tag)
			for _, da := range dtpg.ACLs {
				p.createACL(tp, da, p.findACL(otpg, da.Initiator))
			}
		}
	}
}

func (p *planner) createSO(d StorageObject) {
	path := p.desSOPath[d.Name]
	o := p.obsSO[path]
	if p.newSO[path] {
		o = nil
		if p.newHBA[path2dir(path)] {
			p.add(OpMkdir, path2dir(path), "")
		}
		p.add(OpMkdir, path, "")
		switch d.Plugin {
		case PluginUser:
			p.add(OpWrite, path+"/control", "dev_config="+d.Config)
			if d.Size > 0 {
				p.add(OpWrite, path+"/control", fmt.Sprintf("dev_size=%d", d.Size))
			}
			var ctl []string
			if d.MaxDataAreaMB > 0 {
				ctl = append(ctl, fmt.Sprintf("max_data_area_mb=%d", d.MaxDataAreaMB))
			}
			if d.HWMaxSectors > 0 {
				ctl = append(ctl, fmt.Sprintf("hw_max_sectors=%d", d.HWMaxSectors))
			}
			if len(ctl) > 0 {
				p.add(OpWrite, path+"/control", strings.Join(ctl, ","))
			}
		case PluginBlock:
			p.add(OpWrite, path+"/control", "udev_path="+d.Config)
			p.add(OpWrite, path+"/udev_path", d.Config)
		case PluginFileIO:
			p.add(OpWrite, path+"/control", fmt.Sprintf("fd_dev_name=%s,fd_dev_size=%d", d.Config, d.Size))
			p.add(OpWrite, path+"/udev_path", d.Config)
		}
		p.add(OpEnable, path, "")
		if d.WWN != "" {
			p.add(OpWrite, path+"/wwn/vpd_unit_serial", d.WWN)
		}
	} else if d.Plugin == PluginUser && d.Size > 0 && o.Size != d.Size {
		// Resize: tcmu-runner picks up a live dev_size change.
		p.add(OpWrite, path+"/attrib/dev_size", strconv.FormatInt(d.Size, 10))
	}
	var oattrs map[string]string
	if o != nil {
		oattrs = o.Attrs
	}
	p.attrOps(path+"/attrib", d.Attrs, oattrs)

	for _, g := range sortedGroups(d.ALUA) {
		gp := aluaPath(path, g.Name)
		var og *ALUAGroup
		if o != nil && !p.gone[gp] {
			og = findGroup(o, g.Name)
		}
		if og == nil {
			// Order matters to the kernel: the id makes the group usable,
			// and the access type and supported states gate the state.
			p.add(OpMkdir, gp, "")
			p.add(OpWrite, gp+"/tg_pt_gp_id", strconv.Itoa(g.ID))
			p.add(OpWrite, gp+"/alua_access_type", strconv.Itoa(g.AccessType))
			p.attrOps(gp, g.Attrs, nil)
			p.add(OpWrite, gp+"/alua_access_state", strconv.Itoa(g.AccessState))
			continue
		}
		p.attrOps(gp, g.Attrs, og.Attrs)
	}
}

func (p *planner) createTPG(iqn string, d TPG, o *TPG) {
	tp := tpgPath(iqn, d.Tag)
	var oattrs, oparams map[string]string
	var oauth *Auth
	if o == nil {
		p.add(OpMkdir, tp, "")
	} else {
		oattrs, oparams, oauth = o.Attrs, o.Params, o.Auth
	}
	p.attrOps(tp+"/attrib", d.Attrs, oattrs)
	p.attrOps(tp+"/param", d.Params, oparams)
	if d.Auth != nil {
		// Only the local TPG mirrors upstream's explicit "NULL" writes.
		p.authOps(tp+"/auth", d.Auth, oauth, d.Enabled)
	}
	if !d.Enabled {
		p.portalOps(tp, d, o)
	}
}

func (p *planner) portalOps(tp string, d TPG, o *TPG) {
	have := map[string]bool{}
	if o != nil {
		for _, np := range o.Portals {
			have[np] = true
		}
	}
	for _, np := range sortedStrings(d.Portals) {
		if !have[np] {
			p.add(OpMkdir, portalPath(tp, np), "")
		}
	}
}

func (p *planner) createLUN(tp string, d LUN, o *LUN) {
	lp := lunPath(tp, d.Index)
	if o != nil && p.gone[lp] {
		o = nil
	}
	cur := ""
	if o == nil {
		so := p.desSOPath[d.StorageObject]
		p.add(OpMkdir, lp, "")
		p.add(OpSymlink, lp+"/"+linkName(so), so)
	} else {
		cur = o.ALUAGroup
		if p.rebound[lp] {
			cur = defaultTPG
		}
	}
	if d.ALUAGroup != "" && d.ALUAGroup != cur {
		p.add(OpWrite, lp+"/alua_tg_pt_gp", d.ALUAGroup)
	}
}

func (p *planner) createACL(tp string, d ACL, o *ACL) {
	ap := aclPath(tp, d.Initiator)
	var oattrs map[string]string
	var oauth *Auth
	if o == nil {
		p.add(OpMkdir, ap, "")
	} else {
		oattrs, oauth = o.Attrs, o.Auth
	}
	p.attrOps(ap+"/attrib", d.Attrs, oattrs)
	if d.CmdSNDepth > 0 && (o == nil || o.CmdSNDepth != d.CmdSNDepth) {
		p.add(OpWrite, ap+"/cmdsn_depth", strconv.Itoa(d.CmdSNDepth))
	}
	if d.Auth != nil {
		p.authOps(ap+"/auth", d.Auth, oauth, false)
	}
	for _, m := range sortedMapped(d.MappedLUNs) {
		mp := mappedPath(ap, m.Index)
		if o != nil && !p.gone[mp] && findMapped(o, m.Index) != nil {
			continue
		}
		target := lunPath(tp, m.TPGLUN)
		p.add(OpMkdir, mp, "")
		p.add(OpSymlink, mp+"/"+linkName(target), target)
	}
}

// attrOps writes the desired keys whose observed value differs.
func (p *planner) attrOps(dir string, want, have map[string]string) {
	for _, k := range sortedKeys(want) {
		if v, ok := have[k]; !ok || v != want[k] {
			p.add(OpWrite, dir+"/"+k, want[k])
		}
	}
}

// authOps converges the four CHAP files. Configfs ignores an empty write,
// so an unset value is written as the kernel's "NULL" sentinel (as rtslib
// does). With nullEmpty (TPG and discovery auth) an unset value must read
// "NULL", which is what upstream leaves behind; ACL auth that was never set
// reads "" and is left alone.
func (p *planner) authOps(dir string, d, o *Auth, nullEmpty bool) {
	var have Auth
	if o != nil {
		have = *o
	}
	type f struct {
		file       string
		want, have string
		secret     bool
	}
	for _, x := range []f{
		{"userid", d.UserID, have.UserID, false},
		{"password", d.Password.Reveal(), have.Password.Reveal(), true},
		{"userid_mutual", d.MutualUserID, have.MutualUserID, false},
		{"password_mutual", d.MutualPassword.Reveal(), have.MutualPassword.Reveal(), true},
	} {
		want := x.want
		if want == "" {
			want = "NULL"
			if x.have == "NULL" || (!nullEmpty && x.have == "") {
				continue
			}
		} else if x.have == want {
			continue
		}
		if x.secret {
			p.addSecret(dir+"/"+x.file, want)
		} else {
			p.add(OpWrite, dir+"/"+x.file, want)
		}
	}
}

// Phase 3: open the doors.

func (p *planner) activate() {
	for _, dt := range sortedTargets(p.des.Targets) {
		ot := p.obsTgt[dt.IQN]
		for _, d := range dt.TPGs {
			o := findTPG(ot, d.Tag)
			was := o != nil && o.Enabled
			tp := tpgPath(dt.IQN, d.Tag)
			switch {
			case d.Enabled && !was:
				p.add(OpEnable, tp, "")
			case !d.Enabled && was:
				p.add(OpDisable, tp, "")
			}
			if d.Enabled {
				p.portalOps(tp, d, o)
			}
		}
	}
}

// Phase 4: stale managed objects, child to parent.

func (p *planner) staleDeletes() {
	type tpgRef struct {
		iqn string
		o   *TPG
		d   *TPG // nil when the whole TPG goes
	}
	var tpgs []tpgRef
	var targets []string
	for _, t := range sortedTargets(p.obs.Targets) {
		if !p.managedTgt[t.IQN] {
			continue
		}
		dt := p.desTarget(t.IQN)
		if dt == nil {
			targets = append(targets, targetPath(t.IQN))
		}
		for i := range t.TPGs {
			tpgs = append(tpgs, tpgRef{t.IQN, &t.TPGs[i], findTPG(dt, t.TPGs[i].Tag)})
		}
	}
	for _, r := range tpgs {
		if r.d == nil && r.o.Enabled {
			p.add(OpDisable, tpgPath(r.iqn, r.o.Tag), "")
		}
	}
	for _, r := range tpgs {
		tp := tpgPath(r.iqn, r.o.Tag)
		for _, acl := range r.o.ACLs {
			dacl := p.findACL(r.d, acl.Initiator)
			for _, m := range acl.MappedLUNs {
				mp := mappedPath(aclPath(tp, acl.Initiator), m.Index)
				if !p.gone[mp] && findMapped(dacl, m.Index) == nil {
					p.removeLinked(mp, m.LinkName)
				}
			}
		}
	}
	for _, r := range tpgs {
		tp := tpgPath(r.iqn, r.o.Tag)
		for _, acl := range r.o.ACLs {
			if p.findACL(r.d, acl.Initiator) == nil {
				p.add(OpRmdir, aclPath(tp, acl.Initiator), "")
			}
		}
	}
	for _, r := range tpgs {
		tp := tpgPath(r.iqn, r.o.Tag)
		for _, l := range r.o.LUNs {
			lp := lunPath(tp, l.Index)
			if !p.gone[lp] && p.findLUN(r.d, l.Index) == nil {
				p.removeLinked(lp, l.LinkName)
			}
		}
	}
	for _, r := range tpgs {
		tp := tpgPath(r.iqn, r.o.Tag)
		want := map[string]bool{}
		if r.d != nil {
			for _, np := range r.d.Portals {
				want[np] = true
			}
		}
		for _, np := range r.o.Portals {
			if !want[np] {
				p.add(OpRmdir, portalPath(tp, np), "")
			}
		}
	}
	for _, r := range tpgs {
		if r.d == nil {
			p.add(OpRmdir, tpgPath(r.iqn, r.o.Tag), "")
		}
	}
	for _, t := range targets {
		p.add(OpRmdir, t, "")
	}

	for _, path := range sortedKeys(p.keptSO) {
		o, d := p.obsSO[path], p.desSOByPath(path)
		for _, g := range o.ALUA {
			gp := aluaPath(path, g.Name)
			if !p.gone[gp] && findGroup(d, g.Name) == nil {
				p.add(OpRmdir, gp, "")
				p.gone[gp] = true
			}
		}
	}
	// A storage object still exported by a target this gateway does not
	// manage stays: removing it would break that target.
	linked := map[string]bool{}
	for _, t := range p.obs.Targets {
		if p.managedTgt[t.IQN] {
			continue
		}
		for _, tpg := range t.TPGs {
			for _, l := range tpg.LUNs {
				linked[l.Link] = true
			}
		}
	}
	for _, o := range sortedSOs(p.obs.StorageObjects) {
		if !p.managedSO[o.Name] || p.keptSO[o.Path] || p.replacedSO[o.Path] || linked[o.Path] {
			continue
		}
		p.removeSO(p.obsSO[o.Path], true)
	}
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Sorting helpers keep plans deterministic whatever order callers use.

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedStrings(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func sortedSOs(s []StorageObject) []StorageObject {
	c := append([]StorageObject(nil), s...)
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].Name != c[j].Name {
			return c[i].Name < c[j].Name
		}
		return c[i].Path < c[j].Path
	})
	return c
}

func sortedTargets(s []Target) []Target {
	c := append([]Target(nil), s...)
	sort.SliceStable(c, func(i, j int) bool { return c[i].IQN < c[j].IQN })
	for i := range c {
		c[i].TPGs = append([]TPG(nil), c[i].TPGs...)
		sortTPGs(c[i].TPGs)
		for j := range c[i].TPGs {
			t := &c[i].TPGs[j]
			t.LUNs = append([]LUN(nil), t.LUNs...)
			sortLUNs(t.LUNs)
			t.ACLs = append([]ACL(nil), t.ACLs...)
			sort.SliceStable(t.ACLs, func(a, b int) bool { return t.ACLs[a].Initiator < t.ACLs[b].Initiator })
		}
	}
	return c
}

func sortedGroups(s []ALUAGroup) []ALUAGroup {
	c := append([]ALUAGroup(nil), s...)
	sort.SliceStable(c, func(i, j int) bool { return c[i].ID < c[j].ID })
	return c
}

func sortedMapped(s []MappedLUN) []MappedLUN {
	c := append([]MappedLUN(nil), s...)
	sortMapped(c)
	return c
}

func sortTPGs(s []TPG) {
	slices.SortStableFunc(s, func(a, b TPG) int { return cmp.Compare(a.Tag, b.Tag) })
}
func sortLUNs(s []LUN) {
	slices.SortStableFunc(s, func(a, b LUN) int { return cmp.Compare(a.Index, b.Index) })
}
func sortMapped(s []MappedLUN) {
	slices.SortStableFunc(s, func(a, b MappedLUN) int { return cmp.Compare(a.Index, b.Index) })
}
