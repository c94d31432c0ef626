package lio

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Statistics is one reading of the local LIO counters and of the objects
// they belong to: what an exporter scrape needs, read in one pass.
type Statistics struct {
	// StorageObjects are every storage object of every HBA, sorted by
	// name (then HBA).
	StorageObjects []StorageObjectStats `json:"storage_objects"`
	// Targets are the iSCSI targets, sorted by IQN.
	Targets []TargetStats `json:"targets"`
}

// StorageObjectStats is a storage object and its size.
type StorageObjectStats struct {
	Name   string `json:"name"`
	Plugin Plugin `json:"plugin"`
	// Size in bytes: attrib/dev_size for user backstores, the Size: field
	// of info for fileio; 0 where configfs does not say (iblock, ramdisk).
	Size int64 `json:"size"`
}

// TargetStats is an iSCSI target.
type TargetStats struct {
	IQN string `json:"iqn"`
	// Sessions is fabric_statistics/iscsi_instance/sessions.
	Sessions int        `json:"sessions"`
	TPGs     []TPGStats `json:"tpgs"`
}

// TPGStats is a target portal group, its LUNs and its node ACLs.
type TPGStats struct {
	Tag     int  `json:"tag"`
	Enabled bool `json:"enabled"`
	// Portals are the np directory names ("192.0.2.10:3260"), sorted.
	Portals []string   `json:"portals"`
	LUNs    []LUNStats `json:"luns"`
	ACLs    []ACLStats `json:"acls"`
}

// LUNStats is a TPG LUN with the counters of its target port
// (statistics/scsi_tgt_port: every initiator's commands through this TPG).
type LUNStats struct {
	Index         int    `json:"index"`
	StorageObject string `json:"storage_object"`
	// ALUAGroup is the target port group the LUN is bound to ("ao",
	// "ano1", "default_tg_pt_gp", ...).
	ALUAGroup string     `json:"alua_group"`
	Port      IOCounters `json:"port"`
}

// IOCounters are the kernel's cumulative SCSI counters of one port or one
// initiator's LUN. The kernel counts bytes in whole MiB.
type IOCounters struct {
	Commands uint64 `json:"commands"`
	ReadMiB  uint64 `json:"read_mib"`
	WriteMiB uint64 `json:"write_mib"`
}

// Add sums c and o.
func (c IOCounters) Add(o IOCounters) IOCounters {
	return IOCounters{c.Commands + o.Commands, c.ReadMiB + o.ReadMiB, c.WriteMiB + o.WriteMiB}
}

// ACLStats is a node ACL (a client), its session and its mapped LUNs.
type ACLStats struct {
	Initiator string `json:"initiator"`
	// Session is parsed from the ACL's info file; HasSession is false when
	// the initiator has none.
	Session    Session          `json:"session"`
	HasSession bool             `json:"has_session"`
	MappedLUNs []MappedLUNStats `json:"mapped_luns"`
}

// LoggedIn reports whether the initiator has a session in state LOGGED_IN.
func (a ACLStats) LoggedIn() bool { return a.HasSession && a.Session.State == "LOGGED_IN" }

// MappedLUNStats is a LUN as one initiator sees it, with the counters of
// that initiator's commands (statistics/scsi_auth_intr).
type MappedLUNStats struct {
	// Index is the LUN id the initiator sees.
	Index int `json:"index"`
	// TPGLUN is the TPG LUN it links to (-1 without a link).
	TPGLUN int `json:"tpg_lun"`
	// StorageObject is the storage object of that TPG LUN ("" if none).
	StorageObject string     `json:"storage_object"`
	IO            IOCounters `json:"io"`
}

// ReadStatistics reads the storage objects, targets, TPGs, LUNs, ACLs,
// sessions and SCSI counters under f in one sequential pass: one readdir
// per directory and one read per file, no goroutines and no processes, so
// a scrape of a large gateway stays cheap. Objects that vanish while they
// are read (a concurrent reconcile) are left out without error; any other
// failure is returned, joined, with everything that could be read.
func ReadStatistics(f FS) (Statistics, error) {
	r := statsReader{f: f, buf: make([]byte, 4096)}
	var st Statistics
	if _, err := os.Stat(f.abs(targetDir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, nil
		}
		return st, fmt.Errorf("lio: statistics: %w", err)
	}
	st.StorageObjects = r.storageObjects()
	st.Targets = r.targets()
	if err := errors.Join(r.errs...); err != nil {
		return st, fmt.Errorf("lio: statistics of %s: %w", f.root, err)
	}
	return st, nil
}

// statsReader reads with one reused buffer. Names come from readdir of
// the kernel's own directories, so they need none of FS.check's escaping
// checks; paths are absolute to spare the joins.
type statsReader struct {
	f    FS
	buf  []byte
	errs []error
}

// fail records err unless it says the object vanished.
func (r *statsReader) fail(err error) {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.errs = append(r.errs, err)
	}
}

// list returns the subdirectories and the first symlink of dir; nil when
// it cannot be read.
func (r *statsReader) list(dir string) (dirs []string, link string) {
	des, err := os.ReadDir(dir)
	if err != nil {
		r.fail(err)
		return nil, ""
	}
	for _, de := range des {
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			if link == "" {
				link = de.Name()
			}
		case de.IsDir():
			dirs = append(dirs, de.Name())
		}
	}
	return dirs, link
}

// read returns the file's content without the trailing newline; the slice
// is valid until the next read. A missing file reads as empty.
func (r *statsReader) read(p string) []byte {
	b, err := readInto(p, r.buf[:cap(r.buf)])
	r.buf = b
	if err != nil {
		r.fail(&fs.PathError{Op: "read", Path: p, Err: err})
		return nil
	}
	return bytes.TrimRight(b, "\n\x00")
}

func (r *statsReader) uint(p string) uint64 {
	b := bytes.TrimSpace(r.read(p))
	if len(b) == 0 {
		return 0
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		r.fail(fmt.Errorf("%s: not a counter: %q", p, b))
	}
	return n
}

func (r *statsReader) counters(dir, cmds string) IOCounters {
	return IOCounters{
		Commands: r.uint(dir + "/" + cmds),
		ReadMiB:  r.uint(dir + "/read_mbytes"),
		WriteMiB: r.uint(dir + "/write_mbytes"),
	}
}

// linkTarget is the last element of the symlink's target.
func (r *statsReader) linkTarget(p string) string {
	t, err := os.Readlink(p)
	if err != nil {
		r.fail(err)
		return ""
	}
	return filepath.Base(t)
}

func (r *statsReader) storageObjects() []StorageObjectStats {
	core := r.f.abs(coreDir)
	hbas, _ := r.list(core)
	var out []StorageObjectStats
	for _, h := range hbas {
		m := hbaRe.FindStringSubmatch(h)
		if m == nil || h == "alua" {
			continue
		}
		plugin := Plugin(m[1])
		sos, _ := r.list(core + "/" + h)
		for _, name := range sos {
			p := core + "/" + h + "/" + name
			so := StorageObjectStats{Name: name, Plugin: plugin}
			switch plugin {
			case PluginUser:
				so.Size = int64(r.uint(p + "/attrib/dev_size"))
			case PluginFileIO:
				so.Size = fileioSize(r.read(p + "/info"))
			}
			out = append(out, so)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// fileioSize parses "... Size: <bytes> ..." of a fileio info file.
func fileioSize(info []byte) int64 {
	_, rest, ok := bytes.Cut(info, []byte(" Size: "))
	if !ok {
		return 0
	}
	if f := bytes.Fields(rest); len(f) > 0 {
		n, _ := strconv.ParseInt(string(f[0]), 10, 64)
		return n
	}
	return 0
}

func (r *statsReader) targets() []TargetStats {
	fabric := r.f.abs(fabricDir)
	iqns, _ := r.list(fabric)
	var out []TargetStats
	for _, iqn := range iqns {
		if iqn == "discovery_auth" {
			continue
		}
		tp := fabric + "/" + iqn
		t := TargetStats{IQN: iqn, Sessions: int(r.uint(tp + "/fabric_statistics/iscsi_instance/sessions"))}
		dirs, _ := r.list(tp)
		for _, d := range dirs {
			if m := tpgRe.FindStringSubmatch(d); m != nil {
				t.TPGs = append(t.TPGs, r.tpg(tp+"/"+d, atoi(m[1])))
			}
		}
		sort.Slice(t.TPGs, func(i, j int) bool { return t.TPGs[i].Tag < t.TPGs[j].Tag })
		out = append(out, t)
	}
	return out
}

func (r *statsReader) tpg(p string, tag int) TPGStats {
	tpg := TPGStats{Tag: tag, Enabled: string(r.read(p+"/enable")) == "1"}
	tpg.Portals, _ = r.list(p + "/np")
	luns, _ := r.list(p + "/lun")
	soByLUN := map[int]string{}
	for _, l := range luns {
		m := lunRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		lp := p + "/lun/" + l
		lun := LUNStats{Index: atoi(m[1])}
		if _, link := r.list(lp); link != "" {
			lun.StorageObject = r.linkTarget(lp + "/" + link)
		}
		alias, _, _ := bytes.Cut(r.read(lp+"/alua_tg_pt_gp"), []byte("\n"))
		lun.ALUAGroup = strings.TrimPrefix(string(alias), aluaAliasPrefix)
		lun.Port = r.counters(lp+"/statistics/scsi_tgt_port", "in_cmds")
		soByLUN[lun.Index] = lun.StorageObject
		tpg.LUNs = append(tpg.LUNs, lun)
	}
	sort.Slice(tpg.LUNs, func(i, j int) bool { return tpg.LUNs[i].Index < tpg.LUNs[j].Index })
	acls, _ := r.list(p + "/acls")
	for _, ini := range acls {
		tpg.ACLs = append(tpg.ACLs, r.acl(p+"/acls/"+ini, ini, soByLUN))
	}
	return tpg
}

func (r *statsReader) acl(p, initiator string, soByLUN map[int]string) ACLStats {
	acl := ACLStats{Initiator: initiator}
	if info := r.read(p + "/info"); len(info) > 0 {
		acl.Session, acl.HasSession = ParseACLInfo(string(info))
	}
	dirs, _ := r.list(p)
	for _, d := range dirs {
		m := lunRe.FindStringSubmatch(d)
		if m == nil {
			continue
		}
		mp := p + "/" + d
		ml := MappedLUNStats{Index: atoi(m[1]), TPGLUN: -1}
		if _, link := r.list(mp); link != "" {
			if lm := lunRe.FindStringSubmatch(r.linkTarget(mp + "/" + link)); lm != nil {
				ml.TPGLUN = atoi(lm[1])
				ml.StorageObject = soByLUN[ml.TPGLUN]
			}
		}
		ml.IO = r.counters(mp+"/statistics/scsi_auth_intr", "num_cmds")
		acl.MappedLUNs = append(acl.MappedLUNs, ml)
	}
	sort.Slice(acl.MappedLUNs, func(i, j int) bool { return acl.MappedLUNs[i].Index < acl.MappedLUNs[j].Index })
	return acl
}
