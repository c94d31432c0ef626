package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// configfsMagic is CONFIGFS_MAGIC from linux/magic.h.
const configfsMagic = 0x62656570

// ErrNoConfigfs means the default root is not a mounted configfs. Emulating
// there would scatter files over /sys, so it is refused.
var ErrNoConfigfs = errors.New("configfs is not mounted")

var errEmptyWrite = errors.New("empty value: configfs ignores zero-length writes")

// FS is the seam between the reconciler and the kernel: a configfs mount
// point, or a plain directory that emulates one.
//
// In emulation mode mkdir also creates the attribute files and default
// groups the kernel would create (with kernel defaults where Observe reads
// them), writes to missing files fail as they would in configfs, a few
// kernel side effects are imitated (vpd_unit_serial and alua_tg_pt_gp
// read-back formats, the TCMU control string, authentication flipping
// param/AuthMethod), and rmdir refuses directories that still hold
// user-created children or are the target of a LUN link. It is a test
// double for plan/apply logic, not a model of LIO's validation.
type FS struct {
	root     string
	emulated bool
	// model, when set, answers Observe's reads from memory (see Model).
	model *Model
}

// NewFS opens root. A mounted configfs (statfs magic) is used as the real
// kernel; any other existing directory is emulated, except DefaultRoot,
// which must be a real configfs.
func NewFS(root string) (FS, error) {
	st, err := os.Stat(root)
	if err != nil {
		if filepath.Clean(root) == DefaultRoot {
			return FS{}, fmt.Errorf("lio: %s: %w: %w", root, ErrNoConfigfs, err)
		}
		return FS{}, fmt.Errorf("lio: open root: %w", err)
	}
	if !st.IsDir() {
		return FS{}, fmt.Errorf("lio: root %s is not a directory", root)
	}
	if isConfigfs(root) {
		return FS{root: root}, nil
	}
	if filepath.Clean(root) == DefaultRoot {
		return FS{}, fmt.Errorf("lio: %s: %w", root, ErrNoConfigfs)
	}
	return NewEmulatedFS(root)
}

// NewEmulatedFS turns a plain directory into an emulated configfs root and
// seeds what exists once target_core_mod is loaded.
func NewEmulatedFS(root string) (FS, error) {
	if isConfigfs(root) {
		return FS{}, fmt.Errorf("lio: refusing to emulate on a real configfs at %s", root)
	}
	f := FS{root: root, emulated: true}
	for _, d := range []string{targetDir, coreDir, coreDir + "/alua", coreDir + "/alua/lu_gps", coreDir + "/alua/lu_gps/default_lu_gp"} {
		if err := os.MkdirAll(f.abs(d), 0o755); err != nil {
			return FS{}, fmt.Errorf("lio: seed emulated root: %w", err)
		}
	}
	if err := seedFile(f.abs(coreDir+"/alua/lu_gps/default_lu_gp/lu_gp_id"), "0"); err != nil {
		return FS{}, fmt.Errorf("lio: seed emulated root: %w", err)
	}
	if err := f.removeStaging(); err != nil {
		return FS{}, fmt.Errorf("lio: emulated root: %w", err)
	}
	if err := f.ensureLinkIndex(); err != nil {
		return FS{}, fmt.Errorf("lio: emulated root: %w", err)
	}
	return f, nil
}

// Root is the mount point this FS works under.
func (f FS) Root() string { return f.root }

// Emulated reports whether f is a plain-directory emulation.
func (f FS) Emulated() bool { return f.emulated }

func (f FS) abs(rel string) string { return filepath.Join(f.root, filepath.FromSlash(rel)) }

func (f FS) exists(rel string) bool {
	if err := f.check("stat", rel); err != nil {
		return false
	}
	if f.model != nil {
		return f.model.exists(f, rel)
	}
	_, err := os.Lstat(f.abs(rel))
	return err == nil
}

func (f FS) mkdir(rel string) error {
	if err := f.check("mkdir", rel); err != nil {
		return err
	}
	if f.model != nil {
		defer f.model.changed(rel, false)
	}
	if f.emulated {
		return f.Live().emulatedMkdir(rel)
	}
	return os.Mkdir(f.abs(rel), 0o755)
}

// write stores value with a single write(2) and no trailing newline:
// configfs auth files keep the bytes verbatim, so a newline would become
// part of a CHAP secret.
func (f FS) write(rel, value string) error {
	if err := f.check("write", rel); err != nil {
		return err
	}
	if value == "" {
		// configfs never calls store() for a zero-length write, so it would
		// silently change nothing; the planner writes "NULL" to clear.
		return &fs.PathError{Op: "write", Path: f.abs(rel), Err: errEmptyWrite}
	}
	if f.model != nil {
		defer f.model.changed(rel, true)
	}
	if f.emulated {
		return f.Live().emulatedWrite(rel, value)
	}
	fh, err := os.OpenFile(f.abs(rel), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := fh.Write([]byte(value))
	cerr := fh.Close()
	if werr != nil {
		// The value may be a secret: report only the path.
		return &fs.PathError{Op: "write", Path: f.abs(rel), Err: unwrapErrno(werr)}
	}
	return cerr
}

func unwrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return errors.New("write failed")
}

func (f FS) read(rel string) (string, error) {
	if err := f.check("read", rel); err != nil {
		return "", err
	}
	if f.model != nil {
		return f.model.read(f, rel)
	}
	b, err := os.ReadFile(f.abs(rel))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// symlink links rel to the object at target (both relative to the root).
// The emulation stores the relative form the kernel reports on readlink.
func (f FS) symlink(target, rel string) error {
	if err := errors.Join(f.check("symlink", target), f.check("symlink", rel)); err != nil {
		return err
	}
	if f.model != nil {
		defer f.model.changed(rel, false)
	}
	if !f.emulated {
		return os.Symlink(f.abs(target), f.abs(rel))
	}
	if !f.Live().exists(target) {
		return &fs.PathError{Op: "symlink", Path: f.abs(target), Err: syscall.ENOENT}
	}
	live := f.Live()
	if err := live.ensureLinkIndex(); err != nil {
		return err
	}
	if err := live.indexLink(target, rel); err != nil {
		return err
	}
	depth := strings.Count(path2dir(rel), "/") + 1
	return os.Symlink(strings.Repeat("../", depth)+target, f.abs(rel))
}

func path2dir(rel string) string {
	if i := strings.LastIndex(rel, "/"); i >= 0 {
		return rel[:i]
	}
	return ""
}

// readlink returns the target of the link at rel, relative to the root.
func (f FS) readlink(rel string) (string, error) {
	if err := f.check("readlink", rel); err != nil {
		return "", err
	}
	if f.model != nil {
		return f.model.readlink(f, rel)
	}
	t, err := os.Readlink(f.abs(rel))
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(t) {
		t = filepath.Join(filepath.Dir(f.abs(rel)), t)
	}
	r, err := filepath.Rel(f.root, filepath.Clean(t))
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(r), nil
}

func (f FS) unlink(rel string) error {
	if err := f.check("unlink", rel); err != nil {
		return err
	}
	if f.model != nil {
		defer f.model.changed(rel, false)
	}
	if !f.emulated {
		return os.Remove(f.abs(rel))
	}
	// the index entry goes after the link, so the index never misses one
	live := f.Live()
	target, terr := live.readlink(rel)
	if err := os.Remove(f.abs(rel)); err != nil {
		return err
	}
	if terr != nil {
		return nil // not a link: nothing was indexed
	}
	return live.unindexLink(target, rel)
}

func (f FS) rmdir(rel string) error {
	if err := f.check("rmdir", rel); err != nil {
		return err
	}
	if f.model != nil {
		defer f.model.changed(rel, false)
	}
	if !f.emulated {
		return syscall.Rmdir(f.abs(rel))
	}
	if _, err := os.Lstat(f.abs(rel)); err != nil {
		return err
	}
	if err := f.Live().emulatedRmdirCheck(rel); err != nil {
		return err
	}
	if err := f.Live().emulatedRemove(rel); err != nil {
		return err
	}
	if classify(rel) == kindSO {
		// the check found no link into it: its entries were all stale
		return f.Live().dropLinkIndex(rel)
	}
	return nil
}

// entries lists a directory: subdirectory names, file names and symlink
// names, each sorted.
func (f FS) entries(rel string) (dirs, files, links []string, err error) {
	if err := f.check("readdir", rel); err != nil {
		return nil, nil, nil, err
	}
	if f.model != nil {
		return f.model.entries(f, rel)
	}
	des, err := os.ReadDir(f.abs(rel))
	if err != nil {
		return nil, nil, nil, err
	}
	for _, de := range des {
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			links = append(links, de.Name())
		case de.IsDir():
			dirs = append(dirs, de.Name())
		default:
			files = append(files, de.Name())
		}
	}
	sort.Strings(dirs)
	sort.Strings(files)
	sort.Strings(links)
	return dirs, files, links, nil
}

// kind classifies a path of the LIO tree. User-created objects (what mkdir
// makes) are everything but kindNone.
type kind int

const (
	kindNone kind = iota
	kindFabric
	kindHBA
	kindSO
	kindALUA
	kindTarget
	kindTPG
	kindPortal
	kindLUN
	kindACL
	kindMappedLUN
)

var (
	hbaRe = regexp.MustCompile(`^([a-z_]+?)_([0-9]+)$`)
	tpgRe = regexp.MustCompile(`^tpgt_([0-9]+)$`)
	lunRe = regexp.MustCompile(`^lun_([0-9]+)$`)
)

func classify(rel string) kind {
	p := strings.Split(rel, "/")
	if len(p) < 2 || p[0] != "target" {
		return kindNone
	}
	switch p[1] {
	case "core":
		if len(p) < 3 || p[2] == "alua" || !hbaRe.MatchString(p[2]) {
			return kindNone
		}
		switch {
		case len(p) == 3:
			return kindHBA
		case len(p) == 4:
			return kindSO
		case len(p) == 6 && p[4] == "alua" && p[5] != defaultTPG:
			return kindALUA
		}
	case "iscsi":
		switch {
		case len(p) == 2:
			return kindFabric
		case p[2] == "discovery_auth":
			return kindNone
		case len(p) == 3:
			return kindTarget
		case !tpgRe.MatchString(p[3]):
			return kindNone
		case len(p) == 4:
			return kindTPG
		case len(p) == 6 && p[4] == "np":
			return kindPortal
		case len(p) == 6 && p[4] == "lun" && lunRe.MatchString(p[5]):
			return kindLUN
		case len(p) == 6 && p[4] == "acls":
			return kindACL
		case len(p) == 7 && p[4] == "acls" && lunRe.MatchString(p[6]):
			return kindMappedLUN
		}
	}
	return kindNone
}

// parseHBA splits an HBA directory name, <plugin>_<index>, as hbaRe
// matches it, without a regular expression: a plan reads every HBA's index.
func parseHBA(h string) (plugin string, index int, ok bool) {
	i := strings.LastIndexByte(h, '_')
	if i <= 0 || i == len(h)-1 {
		return "", 0, false
	}
	for _, c := range h[:i] {
		if (c < 'a' || c > 'z') && c != '_' {
			return "", 0, false
		}
	}
	for _, c := range h[i+1:] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
	}
	return h[:i], atoi(h[i+1:]), true
}
