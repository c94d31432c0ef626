package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
)

// Observe reads the LIO tree under f into a State. A missing target
// directory (target_core_mod not loaded) reads as an empty State. Objects
// of every owner are returned; NewPlan decides what is managed.
func Observe(f FS) (State, error) { return observe(f, false) }

// ObserveLayout reads what a teardown plans from: the objects, their
// links, ALUA group names and TPG enables, but no attribute, parameter or
// authentication value, a few files per object instead of some 60. A
// State it returns is good for NewPlan against State.ForTeardown only.
func ObserveLayout(f FS) (State, error) { return observe(f, true) }

func observe(f FS, layout bool) (State, error) {
	var st State
	if !f.exists(targetDir) {
		return st, nil
	}
	var errs []error
	if err := observeCore(f, &st, layout); err != nil {
		errs = append(errs, err)
	}
	if f.exists(fabricDir) {
		st.Fabric = true
		if err := observeFabric(f, &st, layout); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("lio: observe %s: %w", f.root, err)
	}
	return st, nil
}

// observeWorkers bounds the storage objects read at once: each is some
// 60 configfs files, a few milliseconds apiece under an emulated CPU, and
// a full read of 64 disks took 20 s one by one.
const observeWorkers = 8

func observeCore(f FS, st *State, layout bool) error {
	hbas, _, _, err := f.entries(coreDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	type soRef struct {
		plugin Plugin
		path   string
	}
	var refs []soRef
	for _, h := range hbas {
		m := hbaRe.FindStringSubmatch(h)
		if m == nil || h == "alua" {
			continue
		}
		st.HBAs = append(st.HBAs, h)
		sos, _, _, err := f.entries(coreDir + "/" + h)
		if err != nil {
			return err
		}
		for _, name := range sos {
			refs = append(refs, soRef{Plugin(m[1]), coreDir + "/" + h + "/" + name})
		}
	}
	out := make([]StorageObject, len(refs))
	errs := make([]error, len(refs))
	next := make(chan int, len(refs))
	for i := range refs {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(observeWorkers, len(refs)) {
		wg.Go(func() {
			for i := range next {
				r := refs[i]
				out[i], errs[i] = cached(f, r.path, layout, func(p string) (StorageObject, error) { return observeSO(f, r.plugin, p, layout) })
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return err
		}
		st.StorageObjects = append(st.StorageObjects, out[i])
	}
	return nil
}

// cached returns the object at p as f's Model last parsed it, when it has
// not changed since, or parses it with observe. Callers must not modify
// what it returns: NewPlan and Plan.Without only read. A layout read uses
// a whole object the Model has but never leaves its own partial one there.
func cached[T any](f FS, p string, layout bool, observe func(string) (T, error)) (T, error) {
	if f.model == nil {
		return observe(p)
	}
	if v, ok := f.model.object(p); ok {
		return v.(T), nil
	}
	o, err := observe(p)
	if err == nil && !layout {
		f.model.putObject(p, o)
	}
	return o, err
}

func observeSO(f FS, plugin Plugin, p string, layout bool) (StorageObject, error) {
	so := StorageObject{Plugin: plugin, Name: soName(p), Path: p}
	if layout {
		groups, _, _, err := f.entries(p + "/alua")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return so, err
		}
		for _, g := range groups {
			if g != defaultTPG {
				so.ALUA = append(so.ALUA, ALUAGroup{Name: g})
			}
		}
		return so, nil
	}
	so.Enabled = readOr(f, p+"/enable") == "1"
	so.WWN = strings.TrimPrefix(readOr(f, p+"/wwn/vpd_unit_serial"), vpdPrefix)
	so.WWN = strings.TrimPrefix(so.WWN, strings.TrimSpace(vpdPrefix))
	so.Attrs = readAttrs(f, p+"/attrib", nil)
	switch plugin {
	case PluginUser:
		so.Config = so.Attrs["dev_config"]
		so.MaxDataAreaMB = atoi(so.Attrs["max_data_area_mb"])
		so.HWMaxSectors = atoi(so.Attrs["hw_max_sectors"])
		so.Size, _ = strconv.ParseInt(so.Attrs["dev_size"], 10, 64)
	default:
		so.Config = readOr(f, p+"/udev_path")
	}
	groups, _, _, err := f.entries(p + "/alua")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return so, err
	}
	skip := map[string]bool{"members": true, "alua_access_status": true, "tg_pt_gp_id": true,
		"alua_access_type": true, "alua_access_state": true}
	for _, g := range groups {
		if g == defaultTPG {
			continue
		}
		gp := aluaPath(p, g)
		so.ALUA = append(so.ALUA, ALUAGroup{
			Name:        g,
			ID:          atoi(readOr(f, gp+"/tg_pt_gp_id")),
			AccessType:  parseAccessType(readOr(f, gp+"/alua_access_type")),
			AccessState: atoi(readOr(f, gp+"/alua_access_state")),
			Attrs:       readAttrs(f, gp, skip),
		})
	}
	return so, nil
}

// parseAccessType maps the kernel's text back to the number it accepts.
func parseAccessType(s string) int {
	switch s {
	case "Implicit":
		return 1
	case "Explicit":
		return 2
	case "Implicit and Explicit":
		return 3
	}
	return atoi(s)
}

func observeFabric(f FS, st *State, layout bool) error {
	if !layout {
		da := &DiscoveryAuth{Auth: readAuth(f, discAuth)}
		da.Enforce = readOr(f, discAuth+"/enforce_discovery_auth") == "1"
		st.DiscoveryAuth = da
	}
	iqns, _, _, err := f.entries(fabricDir)
	if err != nil {
		return err
	}
	for _, iqn := range iqns {
		if iqn == "discovery_auth" {
			continue
		}
		t, err := observeTarget(f, iqn, layout)
		if err != nil {
			return err
		}
		st.Targets = append(st.Targets, t)
	}
	return nil
}

func observeTarget(f FS, iqn string, layout bool) (Target, error) {
	t := Target{IQN: iqn}
	tpgs, _, _, err := f.entries(targetPath(iqn))
	if err != nil {
		return t, err
	}
	for _, name := range tpgs {
		m := tpgRe.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		tpg, err := observeTPG(f, iqn, atoi(m[1]), layout)
		if err != nil {
			return t, err
		}
		t.TPGs = append(t.TPGs, tpg)
	}
	sortTPGs(t.TPGs)
	return t, nil
}

// observeTPGHeader reads what a TPG at p holds besides its LUNs and ACLs.
func observeTPGHeader(f FS, p string, tag int, layout bool) (TPG, error) {
	tpg := TPG{Tag: tag, Enabled: readOr(f, p+"/enable") == "1"}
	if !layout {
		auth := readAuth(f, p+"/auth")
		tpg.Attrs = readAttrs(f, p+"/attrib", nil)
		tpg.Params = readAttrs(f, p+"/param", nil)
		tpg.Auth = &auth
	}
	var err error
	tpg.Portals, _, _, err = f.entries(p + "/np")
	return tpg, err
}

func observeTPG(f FS, iqn string, tag int, layout bool) (TPG, error) {
	p := tpgPath(iqn, tag)
	tpg, err := observeTPGHeader(f, p, tag, layout)
	if err != nil {
		return tpg, err
	}
	luns, _, _, err := f.entries(p + "/lun")
	if err != nil {
		return tpg, err
	}
	for _, l := range luns {
		m := lunRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		lun, err := observeLUN(f, p+"/lun/"+l, atoi(m[1]), layout)
		if err != nil {
			return tpg, err
		}
		tpg.LUNs = append(tpg.LUNs, lun)
	}
	sortLUNs(tpg.LUNs)
	acls, _, _, err := f.entries(p + "/acls")
	if err != nil {
		return tpg, err
	}
	for _, ini := range acls {
		acl, err := cached(f, aclPath(p, ini), layout, func(p string) (ACL, error) { return observeACL(f, p, layout) })
		if err != nil {
			return tpg, err
		}
		tpg.ACLs = append(tpg.ACLs, acl)
	}
	return tpg, nil
}

// observeLUN reads the TPG LUN at lp, lun_<index>.
func observeLUN(f FS, lp string, index int, layout bool) (LUN, error) {
	lun := LUN{Index: index}
	_, _, links, err := f.entries(lp)
	if err != nil {
		return lun, err
	}
	if len(links) > 0 {
		lun.LinkName = links[0]
		if lun.Link, err = f.readlink(lp + "/" + links[0]); err != nil {
			return lun, err
		}
		lun.StorageObject = soName(lun.Link)
	}
	if !layout {
		alias, _, _ := strings.Cut(readOr(f, lp+"/alua_tg_pt_gp"), "\n")
		lun.ALUAGroup = strings.TrimPrefix(alias, aluaAliasPrefix)
	}
	return lun, nil
}

func observeACL(f FS, p string, layout bool) (ACL, error) {
	acl := ACL{Initiator: soName(p)}
	if !layout {
		auth := readAuth(f, p+"/auth")
		acl.Attrs = readAttrs(f, p+"/attrib", nil)
		acl.CmdSNDepth = atoi(readOr(f, p+"/cmdsn_depth"))
		acl.Auth = &auth
	}
	dirs, _, _, err := f.entries(p)
	if err != nil {
		return acl, err
	}
	for _, d := range dirs {
		m := lunRe.FindStringSubmatch(d)
		if m == nil {
			continue
		}
		ml := MappedLUN{Index: atoi(m[1]), TPGLUN: -1}
		_, _, links, err := f.entries(p + "/" + d)
		if err != nil {
			return acl, err
		}
		if len(links) > 0 {
			ml.LinkName = links[0]
			t, err := f.readlink(p + "/" + d + "/" + links[0])
			if err != nil {
				return acl, err
			}
			if lm := lunRe.FindStringSubmatch(soName(t)); lm != nil {
				ml.TPGLUN = atoi(lm[1])
			}
		}
		acl.MappedLUNs = append(acl.MappedLUNs, ml)
	}
	sortMapped(acl.MappedLUNs)
	return acl, nil
}

func readAuth(f FS, dir string) Auth {
	return Auth{
		UserID:         readOr(f, dir+"/userid"),
		Password:       Secret(readOr(f, dir+"/password")),
		MutualUserID:   readOr(f, dir+"/userid_mutual"),
		MutualPassword: Secret(readOr(f, dir+"/password_mutual")),
	}
}

// readAttrs reads every regular file of dir. Unreadable files are skipped:
// some kernel attributes are write-only or fail on read.
func readAttrs(f FS, dir string, skip map[string]bool) map[string]string {
	_, files, _, err := f.entries(dir)
	if err != nil {
		return nil
	}
	m := make(map[string]string, len(files))
	for _, n := range files {
		if skip[n] {
			continue
		}
		if v, err := f.read(dir + "/" + n); err == nil {
			m[n] = v
		}
	}
	return m
}

func readOr(f FS, rel string) string {
	v, _ := f.read(rel)
	return v
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}
