package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// What the kernel (6.1) creates on mkdir, with the defaults it shows, for
// the files Observe reads or the upstream reference records. Values come
// from the reference trees in /work/shared/reference.

const vpdPrefix = "T10 VPD Unit Serial Number: "
const aluaAliasPrefix = "TG Port Alias: "

func aluaGroupDefaults() map[string]string {
	return map[string]string{
		"alua_access_state":                "0",
		"alua_access_status":               "None",
		"alua_access_type":                 "Implicit and Explicit",
		"alua_support_active_nonoptimized": "1",
		"alua_support_active_optimized":    "1",
		"alua_support_lba_dependent":       "0",
		"alua_support_offline":             "1",
		"alua_support_standby":             "1",
		"alua_support_transitioning":       "1",
		"alua_support_unavailable":         "1",
		"alua_write_metadata":              "0",
		"implicit_trans_secs":              "0",
		"nonop_delay_msecs":                "100",
		"preferred":                        "0",
		"tg_pt_gp_id":                      "0",
		"trans_delay_msecs":                "0",
	}
}

func soDefaults() map[string]string {
	return map[string]string{
		"enable":                     "0",
		"control":                    "",
		"alias":                      "",
		"udev_path":                  "",
		"lba_map":                    "",
		"wwn/vpd_unit_serial":        vpdPrefix,
		"wwn/vendor_id":              "LIO-ORG",
		"wwn/company_id":             "0x001405",
		"wwn/product_id":             "",
		"wwn/revision":               "",
		"attrib/alua_support":        "1",
		"attrib/pgr_support":         "1",
		"attrib/emulate_pr":          "1",
		"attrib/hw_block_size":       "512",
		"attrib/emulate_write_cache": "0",
		"attrib/enforce_pr_isids":    "1",
		"attrib/force_pr_aptpl":      "0",
		"attrib/hw_pi_prot_type":     "0",
		"attrib/hw_queue_depth":      "128",
	}
}

func soPluginDefaults() map[Plugin]map[string]string {
	return map[Plugin]map[string]string{
		PluginUser: {
			"attrib/cmd_time_out":       "30",
			"attrib/qfull_time_out":     "-1",
			"attrib/dev_config":         "",
			"attrib/dev_size":           "0",
			"attrib/max_data_area_mb":   "1024",
			"attrib/hw_max_sectors":     "128",
			"attrib/nl_reply_supported": "1",
			"attrib/tmr_notification":   "0",
			"action/block_dev":          "unblocked",
		},
		PluginBlock: {
			"attrib/block_size":     "512",
			"attrib/hw_max_sectors": "1024",
			"attrib/queue_depth":    "128",
		},
		PluginFileIO: {
			"attrib/block_size":     "512",
			"attrib/hw_max_sectors": "16384",
			"attrib/queue_depth":    "128",
		},
	}
}

func tpgDefaults() map[string]string {
	return map[string]string{
		"enable":                         "0",
		"dynamic_sessions":               "",
		"attrib/authentication":          "1",
		"attrib/cache_dynamic_acls":      "0",
		"attrib/default_cmdsn_depth":     "64",
		"attrib/default_erl":             "0",
		"attrib/demo_mode_discovery":     "1",
		"attrib/demo_mode_write_protect": "1",
		"attrib/fabric_prot_type":        "0",
		"attrib/generate_node_acls":      "0",
		"attrib/login_keys_workaround":   "1",
		"attrib/login_timeout":           "15",
		"attrib/netif_timeout":           "2",
		"attrib/prod_mode_write_protect": "0",
		"attrib/t10_pi":                  "0",
		"attrib/tpg_enabled_sendtargets": "1",
		"auth/userid":                    "",
		"auth/password":                  "",
		"auth/userid_mutual":             "",
		"auth/password_mutual":           "",
		"auth/authenticate_target":       "0",
		"param/AuthMethod":               "CHAP,None",
		"param/DataDigest":               "CRC32C,None",
		"param/DataPDUInOrder":           "Yes",
		"param/DataSequenceInOrder":      "Yes",
		"param/DefaultTime2Retain":       "20",
		"param/DefaultTime2Wait":         "2",
		"param/ErrorRecoveryLevel":       "0",
		"param/FirstBurstLength":         "65536",
		"param/HeaderDigest":             "CRC32C,None",
		"param/IFMarkInt":                "Reject",
		"param/IFMarker":                 "No",
		"param/ImmediateData":            "Yes",
		"param/InitialR2T":               "Yes",
		"param/MaxBurstLength":           "262144",
		"param/MaxConnections":           "1",
		"param/MaxOutstandingR2T":        "1",
		"param/MaxRecvDataSegmentLength": "8192",
		"param/MaxXmitDataSegmentLength": "262144",
		"param/OFMarkInt":                "Reject",
		"param/OFMarker":                 "No",
		"param/TargetAlias":              "LIO Target",
	}
}

func aclDefaults() map[string]string {
	return map[string]string{
		"cmdsn_depth":                      "64",
		"tag":                              "",
		"attrib/authentication":            "-1",
		"attrib/dataout_timeout":           "3",
		"attrib/dataout_timeout_retries":   "5",
		"attrib/default_erl":               "0",
		"attrib/nopin_response_timeout":    "30",
		"attrib/nopin_timeout":             "15",
		"attrib/random_datain_pdu_offsets": "0",
		"attrib/random_datain_seq_offsets": "0",
		"attrib/random_r2t_offsets":        "0",
		"auth/userid":                      "",
		"auth/password":                    "",
		"auth/userid_mutual":               "",
		"auth/password_mutual":             "",
		"auth/authenticate_target":         "0",
	}
}

func fabricDefaults() map[string]string {
	return map[string]string{
		"discovery_auth/userid":                 "",
		"discovery_auth/password":               "",
		"discovery_auth/userid_mutual":          "",
		"discovery_auth/password_mutual":        "",
		"discovery_auth/enforce_discovery_auth": "0",
		"discovery_auth/authenticate_target":    "0",
	}
}

func targetDefaults() map[string]string {
	return map[string]string{"param/cmd_completion_affinity": "-1"}
}
func portalDefaults() map[string]string { return map[string]string{"iser": "0", "cxgbit": "0"} }
func mappedDefaults() map[string]string { return map[string]string{"write_protect": "0"} }
func lunDefaults() map[string]string {
	return map[string]string{
		"alua_tg_pt_gp":       aluaAliasPrefix + defaultTPG,
		"alua_tg_pt_offline":  "0",
		"alua_tg_pt_status":   "0",
		"alua_tg_pt_write_md": "0",
	}
}

// stagingPrefix names the directories an emulated mkdir fills before it
// moves them into place; a crash can leave one behind in the root. The
// name carries the pid of the process that made it: opening the root (a
// dry run, the statistics daemon, a test's read) while a daemon seeds an
// object must not delete the half-seeded directory under it, which left an
// ACL without its attribute files that no retry could repair.
const stagingPrefix = ".mkdir-"

// stagingPattern is the os.MkdirTemp pattern of this process's staging
// directories: stagingPrefix, the pid, a dash, a random suffix.
func stagingPattern() string { return stagingPrefix + strconv.Itoa(os.Getpid()) + "-" }

// stagingOwnerGone reports whether the process that made the staging
// directory name is gone, so that what it left can be deleted. A name
// without a pid is an older process's and is gone too.
func stagingOwnerGone(name string) bool {
	pid, _, ok := strings.Cut(strings.TrimPrefix(name, stagingPrefix), "-")
	n, err := strconv.Atoi(pid)
	if !ok || err != nil || n <= 0 {
		return true
	}
	if n == os.Getpid() {
		return false
	}
	// Signal 0 checks existence; EPERM means it exists under another user.
	return errors.Is(syscall.Kill(n, 0), syscall.ESRCH)
}

// emulatedMkdir creates the object at rel with its default groups and
// attribute files in one step, as the kernel's mkdir does: the object is
// seeded in a staging directory of the root and renamed into place, so a
// process killed half-way leaves no object without its attribute files.
func (f FS) emulatedMkdir(rel string) error {
	dst := f.abs(rel)
	if _, err := os.Lstat(dst); err == nil {
		return &fs.PathError{Op: "mkdir", Path: dst, Err: syscall.EEXIST}
	}
	if _, err := os.Stat(filepath.Dir(dst)); err != nil {
		return &fs.PathError{Op: "mkdir", Path: dst, Err: syscall.ENOENT}
	}
	tmp, err := os.MkdirTemp(f.root, stagingPattern())
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := f.seed(rel, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	return nil
}

// emulatedRemove removes the object at rel in one step, as the kernel's
// rmdir does: it is moved out of the tree before its files are deleted.
func (f FS) emulatedRemove(rel string) error {
	tmp, err := os.MkdirTemp(f.root, stagingPattern())
	if err != nil {
		return err
	}
	if err := os.Rename(f.abs(rel), filepath.Join(tmp, "object")); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.RemoveAll(tmp)
}

// removeStaging deletes what emulatedMkdir calls of a killed process left;
// a live process's are its mkdirs in flight.
func (f FS) removeStaging() error {
	des, err := os.ReadDir(f.root)
	if err != nil {
		return err
	}
	for _, de := range des {
		if de.IsDir() && strings.HasPrefix(de.Name(), stagingPrefix) && stagingOwnerGone(de.Name()) {
			if err := os.RemoveAll(filepath.Join(f.root, de.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// seed creates the default groups and attribute files of a new object rel
// in the directory at.
func (f FS) seed(rel, at string) error {
	var dirs []string
	var files []map[string]string
	switch classify(rel) {
	case kindFabric:
		dirs, files = []string{"discovery_auth"}, []map[string]string{fabricDefaults()}
	case kindHBA:
		files = []map[string]string{{"hba_mode": "0"}}
	case kindSO:
		plugin := Plugin(hbaRe.FindStringSubmatch(strings.Split(rel, "/")[2])[1])
		dirs = []string{"action", "alua", "alua/" + defaultTPG, "attrib", "pr", "wwn"}
		def := map[string]string{}
		for k, v := range aluaGroupDefaults() {
			def["alua/"+defaultTPG+"/"+k] = v
		}
		files = []map[string]string{soDefaults(), soPluginDefaults()[plugin], def}
	case kindALUA:
		files = []map[string]string{aluaGroupDefaults()}
	case kindTarget:
		dirs, files = []string{"param"}, []map[string]string{targetDefaults()}
	case kindTPG:
		dirs = []string{"acls", "attrib", "auth", "lun", "np", "param"}
		files = []map[string]string{tpgDefaults()}
	case kindPortal:
		files = []map[string]string{portalDefaults()}
	case kindLUN:
		files = []map[string]string{lunDefaults()}
	case kindACL:
		dirs, files = []string{"attrib", "auth", "param"}, []map[string]string{aclDefaults()}
	case kindMappedLUN:
		files = []map[string]string{mappedDefaults()}
	default:
		return &fs.PathError{Op: "mkdir", Path: f.abs(rel), Err: syscall.EPERM}
	}
	files = append(files, statsDefaults(rel))
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(at, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
	}
	for _, m := range files {
		for k, v := range m {
			if err := seedFile(filepath.Join(at, filepath.FromSlash(k)), v); err != nil {
				return fmt.Errorf("lio: seed %s/%s: %w", rel, k, err)
			}
		}
	}
	return nil
}

func seedFile(p, value string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(value+"\n"), 0o644)
}

// emulatedWrite stores a value the way the kernel would show it.
func (f FS) emulatedWrite(rel, value string) error {
	st, err := os.Stat(f.abs(rel))
	if err != nil {
		return err // configfs cannot create attribute files either
	}
	if st.IsDir() {
		return &fs.PathError{Op: "write", Path: f.abs(rel), Err: syscall.EISDIR}
	}
	dir, base := path2dir(rel), rel[strings.LastIndex(rel, "/")+1:]
	stored := value
	switch {
	case base == "control":
		// The control file is write-only; TCMU reflects its keys in attrib/.
		if strings.HasPrefix(dir, coreDir+"/user_") {
			for _, kv := range strings.Split(value, ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return &fs.PathError{Op: "write", Path: f.abs(rel), Err: syscall.EINVAL}
				}
				if err := f.writeRaw(dir+"/attrib/"+k, v); err != nil {
					return &fs.PathError{Op: "write", Path: f.abs(rel), Err: syscall.EINVAL}
				}
			}
		}
		stored = ""
	case base == "vpd_unit_serial":
		stored = vpdPrefix + value
	case base == "alua_tg_pt_gp" && classify(dir) == kindLUN:
		stored = aluaAliasPrefix + value
	case base == "alua_access_type" && classify(dir) == kindALUA:
		names := map[string]string{"0": "None", "1": "Implicit", "2": "Explicit", "3": "Implicit and Explicit"}
		n, ok := names[value]
		if !ok {
			return &fs.PathError{Op: "write", Path: f.abs(rel), Err: syscall.EINVAL}
		}
		stored = n
	case rel == path2dir(dir)+"/attrib/authentication" && classify(path2dir(dir)) == kindTPG:
		method := "CHAP,None"
		if value == "1" {
			method = "CHAP"
		}
		if err := f.writeRaw(path2dir(dir)+"/param/AuthMethod", method); err != nil {
			return err
		}
	}
	return f.writeRaw(rel, stored)
}

func (f FS) writeRaw(rel, value string) error {
	fh, err := os.OpenFile(f.abs(rel), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := fh.Write([]byte(value + "\n"))
	if cerr := fh.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// emulatedRmdirCheck imitates configfs: a directory with user-created
// children (objects or links) cannot be removed, nor can a storage object
// that a LUN still links to (found in the link index, not by walking the
// fabric).
func (f FS) emulatedRmdirCheck(rel string) error {
	busy := func() error { return &fs.PathError{Op: "rmdir", Path: f.abs(rel), Err: syscall.ENOTEMPTY} }
	if classify(rel) == kindNone {
		return &fs.PathError{Op: "rmdir", Path: f.abs(rel), Err: syscall.EPERM}
	}
	err := filepath.WalkDir(f.abs(rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(f.root, p)
		r = filepath.ToSlash(r)
		if r == rel {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 || (d.IsDir() && classify(r) != kindNone) {
			return busy()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if classify(rel) != kindSO {
		return nil
	}
	if err := f.ensureLinkIndex(); err != nil {
		return err
	}
	links, err := f.linksTo(rel)
	if err != nil {
		return err
	}
	if len(links) > 0 {
		return &fs.PathError{Op: "rmdir", Path: f.abs(rel), Err: syscall.EBUSY}
	}
	return nil
}
