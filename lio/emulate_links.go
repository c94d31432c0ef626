package lio

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// linkIndexDir is the emulation's index of the links into each object,
// under the root: <linkIndexDir>/<hash of the object's path>/<hash of the
// link's path>, a file holding the link's path. configfs refuses to remove
// a storage object a LUN links to; finding those links by walking every
// TPG and ACL made each removal cost the size of the whole tree (1.3 s at
// 4096 LUNs). The index lives in the root, not in memory, so that every
// FS over the root (a restarted daemon, a test's second FS, another
// process) sees the links the others made.
//
// An entry is written before its link is made and deleted after its link
// is, so the index holds every link: a process killed in between leaves an
// entry without a link, which a check finds stale and deletes.
const linkIndexDir = ".lunlinks"

func linkHash(rel string) string {
	h := sha256.Sum256([]byte(rel))
	return hex.EncodeToString(h[:16])
}

// linkIndexPath is the entry of the link at link into the object at target.
func (f FS) linkIndexPath(target, link string) string {
	return filepath.Join(f.root, linkIndexDir, linkHash(target), linkHash(link))
}

// indexLink records the link at link into target, before it is made.
func (f FS) indexLink(target, link string) error {
	p := f.linkIndexPath(target, link)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("lio: index link %s: %w", link, err)
	}
	if err := os.WriteFile(p, []byte(link), 0o644); err != nil {
		return fmt.Errorf("lio: index link %s: %w", link, err)
	}
	return nil
}

// unindexLink forgets the link at link, after it is gone; target is what
// it pointed to.
func (f FS) unindexLink(target, link string) error {
	if err := os.Remove(f.linkIndexPath(target, link)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("lio: unindex link %s: %w", link, err)
	}
	return nil
}

// linksTo returns the links into the object at target, deleting the stale
// entries it meets (their link gone, or pointing elsewhere since).
func (f FS) linksTo(target string) ([]string, error) {
	dir := filepath.Join(f.root, linkIndexDir, linkHash(target))
	des, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lio: links to %s: %w", target, err)
	}
	var out []string
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("lio: links to %s: %w", target, err)
		}
		link := string(b)
		if t, err := f.readlink(link); err == nil && t == target {
			out = append(out, link)
			continue
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("lio: links to %s: %w", target, err)
		}
	}
	return out, nil
}

// dropLinkIndex forgets every entry into target, once it is removed.
func (f FS) dropLinkIndex(target string) error {
	if err := os.RemoveAll(filepath.Join(f.root, linkIndexDir, linkHash(target))); err != nil {
		return fmt.Errorf("lio: unindex links to %s: %w", target, err)
	}
	return nil
}

// ensureLinkIndex builds the index of a root made before there was one
// (or whose index was deleted) from the links the fabric holds, once: it
// is built aside and renamed into place, so a process killed while
// building it leaves none, and a root whose index exists is not walked.
func (f FS) ensureLinkIndex() error {
	if _, err := os.Stat(filepath.Join(f.root, linkIndexDir)); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(f.root, stagingPattern())
	if err != nil {
		return fmt.Errorf("lio: build link index: %w", err)
	}
	built := FS{root: tmp, emulated: true}
	err = filepath.WalkDir(f.abs(fabricDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		r, err := filepath.Rel(f.root, p)
		if err != nil {
			return err
		}
		link := filepath.ToSlash(r)
		t, err := f.readlink(link)
		if err != nil {
			return err
		}
		// the entry's path under tmp is its path under the root once renamed
		return built.indexLink(t, link)
	})
	if err == nil {
		err = os.Rename(filepath.Join(tmp, linkIndexDir), filepath.Join(f.root, linkIndexDir))
		if errors.Is(err, fs.ErrNotExist) {
			// no links: an empty index
			err = os.Mkdir(filepath.Join(f.root, linkIndexDir), 0o755)
		}
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			err = nil // another FS over the root built it first
		}
	}
	if rerr := os.RemoveAll(tmp); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("lio: build link index: %w", err)
	}
	return nil
}
