//go:build !linux

package lio

import (
	"io/fs"
	"os"
	"path/filepath"
)

// dirHandle is a directory of the tree, by path: off Linux there is only
// the emulation, where speed matters less.
type dirHandle struct {
	fd   int
	path string
}

func join(d dirHandle, name string) string {
	if d.fd < 0 {
		return name
	}
	return d.path + "/" + name
}

func (r *statsReader) open(d dirHandle, name string) (dirHandle, bool) {
	p := join(d, name)
	st, err := os.Stat(p)
	if err == nil && !st.IsDir() {
		err = &fs.PathError{Op: "open", Path: p, Err: fs.ErrInvalid}
	}
	if err != nil {
		r.fail(err)
		return dirHandle{}, false
	}
	return dirHandle{fd: 0, path: p}, true
}

func (r *statsReader) close(dirHandle) {}

func (r *statsReader) read(d dirHandle, name string) []byte {
	b, err := os.ReadFile(join(d, name))
	if err != nil {
		r.fail(err)
		return nil
	}
	r.buf = append(r.buf[:0], b...)
	return r.buf
}

func (r *statsReader) list(d dirHandle) (dirs []string, link string) {
	des, err := os.ReadDir(d.path)
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

func (r *statsReader) linkTarget(d dirHandle, name string) string {
	t, err := os.Readlink(join(d, name))
	if err != nil {
		r.fail(err)
		return ""
	}
	return filepath.Base(t)
}
