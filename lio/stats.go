package lio

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
// (statistics/scsi_tgt_port: every initiator's commands through this TPG),
// which are read only when the TPG is enabled: a disabled TPG passes no
// I/O.
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
	r := statsReader{buf: make([]byte, 4096), dents: make([]byte, 8192)}
	var st Statistics
	if _, err := os.Stat(f.abs(targetDir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, nil
		}
		return st, fmt.Errorf("lio: statistics: %w", err)
	}
	root, ok := r.open(dirHandle{fd: -1}, f.abs(targetDir))
	if ok {
		st.StorageObjects = r.storageObjects(root)
		st.Targets = r.targets(root)
		r.close(root)
	}
	if err := errors.Join(r.errs...); err != nil {
		return st, fmt.Errorf("lio: statistics of %s: %w", f.root, err)
	}
	return st, nil
}

// statsReader walks the tree with one reused buffer, through directory
// handles: on Linux each object's files are opened relative to its
// directory (openat), which spares the kernel the walk of a long path per
// file, and directories are listed with getdents (see stats_linux.go).
// Names come from the kernel's own directory listings, so they need none
// of FS.check's escaping checks.
type statsReader struct {
	buf   []byte
	dents []byte
	errs  []error
}

// fail records err unless it says the object vanished.
func (r *statsReader) fail(err error) {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.errs = append(r.errs, err)
	}
}

// text is the file's content without the trailing newline; the slice is
// valid until the next read. A missing file reads as empty.
func (r *statsReader) text(d dirHandle, name string) []byte {
	return bytes.TrimRight(r.read(d, name), "\n\x00")
}

func (r *statsReader) uint(d dirHandle, name string) uint64 {
	b := bytes.TrimSpace(r.read(d, name))
	if len(b) == 0 {
		return 0
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		r.fail(fmt.Errorf("%s/%s: not a counter: %q", d.path, name, b))
	}
	return n
}

// counters reads a statistics group: cmds, read_mbytes and write_mbytes.
func (r *statsReader) counters(parent dirHandle, group, cmds string) IOCounters {
	d, ok := r.open(parent, group)
	if !ok {
		return IOCounters{}
	}
	defer r.close(d)
	return IOCounters{
		Commands: r.uint(d, cmds),
		ReadMiB:  r.uint(d, "read_mbytes"),
		WriteMiB: r.uint(d, "write_mbytes"),
	}
}

func (r *statsReader) storageObjects(root dirHandle) []StorageObjectStats {
	core, ok := r.open(root, "core")
	if !ok {
		return nil
	}
	defer r.close(core)
	hbas, _ := r.list(core)
	var out []StorageObjectStats
	for _, h := range hbas {
		m := hbaRe.FindStringSubmatch(h)
		if m == nil || h == "alua" {
			continue
		}
		plugin := Plugin(m[1])
		hba, ok := r.open(core, h)
		if !ok {
			continue
		}
		sos, _ := r.list(hba)
		for _, name := range sos {
			so := StorageObjectStats{Name: name, Plugin: plugin}
			switch plugin {
			case PluginUser:
				so.Size = int64(r.uint(hba, name+"/attrib/dev_size"))
			case PluginFileIO:
				so.Size = fileioSize(r.read(hba, name+"/info"))
			}
			out = append(out, so)
		}
		r.close(hba)
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

func (r *statsReader) targets(root dirHandle) []TargetStats {
	fabric, ok := r.open(root, "iscsi")
	if !ok {
		return nil
	}
	defer r.close(fabric)
	iqns, _ := r.list(fabric)
	var out []TargetStats
	for _, iqn := range iqns {
		if iqn == "discovery_auth" {
			continue
		}
		td, ok := r.open(fabric, iqn)
		if !ok {
			continue
		}
		t := TargetStats{IQN: iqn, Sessions: int(r.uint(td, "fabric_statistics/iscsi_instance/sessions"))}
		dirs, _ := r.list(td)
		for _, d := range dirs {
			if m := tpgRe.FindStringSubmatch(d); m != nil {
				if tp, ok := r.open(td, d); ok {
					t.TPGs = append(t.TPGs, r.tpg(tp, atoi(m[1])))
					r.close(tp)
				}
			}
		}
		r.close(td)
		sort.Slice(t.TPGs, func(i, j int) bool { return t.TPGs[i].Tag < t.TPGs[j].Tag })
		out = append(out, t)
	}
	return out
}

func (r *statsReader) tpg(tp dirHandle, tag int) TPGStats {
	tpg := TPGStats{Tag: tag, Enabled: string(r.text(tp, "enable")) == "1"}
	if np, ok := r.open(tp, "np"); ok {
		tpg.Portals, _ = r.list(np)
		r.close(np)
	}
	soByLUN := map[int]string{}
	if ld, ok := r.open(tp, "lun"); ok {
		luns, _ := r.list(ld)
		for _, l := range luns {
			m := lunRe.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			lp, ok := r.open(ld, l)
			if !ok {
				continue
			}
			lun := LUNStats{Index: atoi(m[1])}
			if _, link := r.list(lp); link != "" {
				lun.StorageObject = r.linkTarget(lp, link)
			}
			alias, _, _ := bytes.Cut(r.text(lp, "alua_tg_pt_gp"), []byte("\n"))
			lun.ALUAGroup = strings.TrimPrefix(string(alias), aluaAliasPrefix)
			if tpg.Enabled {
				// A disabled TPG passes no I/O: its counters are not
				// read (half the LUNs of a two-gateway target).
				lun.Port = r.counters(lp, "statistics/scsi_tgt_port", "in_cmds")
			}
			r.close(lp)
			soByLUN[lun.Index] = lun.StorageObject
			tpg.LUNs = append(tpg.LUNs, lun)
		}
		r.close(ld)
	}
	sort.Slice(tpg.LUNs, func(i, j int) bool { return tpg.LUNs[i].Index < tpg.LUNs[j].Index })
	if ad, ok := r.open(tp, "acls"); ok {
		acls, _ := r.list(ad)
		for _, ini := range acls {
			if a, ok := r.open(ad, ini); ok {
				tpg.ACLs = append(tpg.ACLs, r.acl(a, ini, soByLUN))
				r.close(a)
			}
		}
		r.close(ad)
	}
	return tpg
}

func (r *statsReader) acl(a dirHandle, initiator string, soByLUN map[int]string) ACLStats {
	acl := ACLStats{Initiator: initiator}
	if info := r.text(a, "info"); len(info) > 0 {
		acl.Session, acl.HasSession = ParseACLInfo(string(info))
	}
	dirs, _ := r.list(a)
	for _, d := range dirs {
		m := lunRe.FindStringSubmatch(d)
		if m == nil {
			continue
		}
		mp, ok := r.open(a, d)
		if !ok {
			continue
		}
		ml := MappedLUNStats{Index: atoi(m[1]), TPGLUN: -1}
		if _, link := r.list(mp); link != "" {
			if lm := lunRe.FindStringSubmatch(r.linkTarget(mp, link)); lm != nil {
				ml.TPGLUN = atoi(lm[1])
				ml.StorageObject = soByLUN[ml.TPGLUN]
			}
		}
		ml.IO = r.counters(mp, "statistics/scsi_auth_intr", "num_cmds")
		r.close(mp)
		acl.MappedLUNs = append(acl.MappedLUNs, ml)
	}
	sort.Slice(acl.MappedLUNs, func(i, j int) bool { return acl.MappedLUNs[i].Index < acl.MappedLUNs[j].Index })
	return acl
}
