package lio

import (
	"bytes"
	"io/fs"
	"path/filepath"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirHandle is an open directory of the tree; path is for messages.
type dirHandle struct {
	fd   int
	path string
}

// at opens name (one or more components) relative to d; an absolute name
// ignores d.
func at(d dirHandle, name string, flags int) (int, error) {
	dirfd := d.fd
	if dirfd < 0 {
		dirfd = unix.AT_FDCWD
	}
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func join(d dirHandle, name string) string {
	if d.fd < 0 {
		return name
	}
	return d.path + "/" + name
}

func (r *statsReader) open(d dirHandle, name string) (dirHandle, bool) {
	fd, err := at(d, name, unix.O_DIRECTORY)
	if err != nil {
		r.fail(&fs.PathError{Op: "open", Path: join(d, name), Err: err})
		return dirHandle{}, false
	}
	return dirHandle{fd: fd, path: join(d, name)}, true
}

func (r *statsReader) close(d dirHandle) { _ = unix.Close(d.fd) }

// read returns the content of d/name, or nil (error recorded). One read
// gets a whole configfs attribute (the kernel shows it into one page), and
// all of a small file of the emulation; a full buffer is read further.
func (r *statsReader) read(d dirHandle, name string) []byte {
	fd, err := at(d, name, 0)
	if err != nil {
		r.fail(&fs.PathError{Op: "open", Path: join(d, name), Err: err})
		return nil
	}
	defer unix.Close(fd)
	n := 0
	for {
		m, err := unix.Read(fd, r.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.fail(&fs.PathError{Op: "read", Path: join(d, name), Err: err})
			return nil
		}
		n += m
		if m == 0 || n < len(r.buf) {
			return r.buf[:n]
		}
		r.buf = append(r.buf, make([]byte, len(r.buf))...)
	}
}

// maxDirent is the size of a linux_dirent64 with a 255-byte name.
const maxDirent = 19 + 256 + 5

// list returns the sorted subdirectory names and the first symlink of d.
func (r *statsReader) list(d dirHandle) (dirs []string, link string) {
	for {
		n, err := unix.Getdents(d.fd, r.dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.fail(&fs.PathError{Op: "readdir", Path: d.path, Err: err})
			return nil, ""
		}
		if n == 0 {
			break
		}
		// configfs, tmpfs and ext4 fill the buffer while entries remain:
		// room left for a longest record means the end, and spares the
		// call that would return 0.
		last := n <= len(r.dents)-maxDirent
		for b := r.dents[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			typ := b[18]
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if string(name) == "." || string(name) == ".." {
				continue
			}
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if unix.Fstatat(d.fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
					switch st.Mode & unix.S_IFMT {
					case unix.S_IFDIR:
						typ = unix.DT_DIR
					case unix.S_IFLNK:
						typ = unix.DT_LNK
					}
				}
			}
			switch typ {
			case unix.DT_DIR:
				dirs = append(dirs, string(name))
			case unix.DT_LNK:
				if link == "" {
					link = string(name)
				}
			}
		}
		if last {
			break
		}
	}
	sort.Strings(dirs)
	return dirs, link
}

// linkTarget is the last element of the target of symlink d/name.
func (r *statsReader) linkTarget(d dirHandle, name string) string {
	n, err := unix.Readlinkat(d.fd, name, r.buf)
	if err != nil {
		r.fail(&fs.PathError{Op: "readlink", Path: join(d, name), Err: err})
		return ""
	}
	return filepath.Base(string(r.buf[:n]))
}
