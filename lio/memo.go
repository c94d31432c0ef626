package lio

import (
	"strings"
	"sync"
)

// Model is what this process knows the configfs tree holds: every
// directory listing, value and link that Observe read through an FS made
// by WithModel, kept up to date by what Apply does through that FS. A
// reconciler that is the only writer of the objects it manages plans
// against it instead of re-reading the whole tree on every change: after
// the first Observe, an Observe through the FS reads from the kernel only
// what the last applies touched, so a change costs in proportion to its
// size, not the tree's.
//
// An operation forgets what it may have changed: the path itself, its
// subtree, its directory's listing and the values around it that the
// kernel derives from it (an object's attributes after a write to its
// enable or control file, a TPG's parameters after its authentication
// attribute). What someone else changes is not seen until Forget: callers
// forget everything at start-up, after a failed operation and on a
// periodic drift check. Statistics and sessions are always read live.
//
// A Model may be used from several goroutines, but an Observe must not run
// while an Apply through the same Model does.
type Model struct {
	mu   sync.Mutex
	root *mnode
	// misses counts reads that went to the kernel, hits those answered
	// from memory.
	misses, hits int64
}

type mnode struct {
	kids map[string]*mnode
	// exists: 0 unknown, 1 present, -1 absent
	exists             int8
	listed             bool
	dirs, files, links []string
	hasVal             bool
	val                string
	hasLink            bool
	link               string
	// obj is the storage object or ACL Observe parsed at this path,
	// dropped with any change at or under its directory: an Observe then
	// costs a lookup for each object nothing touched. It lives in the
	// tree, so that a change forgets the objects of its own subtree
	// instead of searching every object.
	obj any
}

// NewModel returns an empty Model: the first Observe reads everything.
func NewModel() *Model { return &Model{root: &mnode{}} }

// Forget drops everything: the next Observe re-reads the whole tree.
func (m *Model) Forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.root = &mnode{}
}

// object returns the parsed object at p, if nothing changed it since.
func (m *Model) object(p string) (any, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.node(p, false); n != nil && n.obj != nil {
		return n.obj, true
	}
	return nil, false
}

func (m *Model) putObject(p string, v any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.node(p, true).obj = v
}

// dropObjects forgets the parsed objects at rel or above it, and with
// under those below it.
func (m *Model) dropObjects(rel string, under bool) {
	n := m.root
	for rest := rel; ; {
		c, tail, more := strings.Cut(rest, "/")
		rest = tail
		if n = n.kids[c]; n == nil {
			return
		}
		n.obj = nil
		if !more {
			break
		}
	}
	if under {
		dropBelow(n)
	}
}

func dropBelow(n *mnode) {
	for _, k := range n.kids {
		k.obj = nil
		dropBelow(k)
	}
}

// Reads reports how many reads the Model answered from memory and how many
// went to configfs since it was made.
func (m *Model) Reads() (memory, kernel int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits, m.misses
}

// WithModel returns f reading through m: Observe reads what m does not
// know from configfs and remembers it, and every change made through the
// returned FS updates m. Sessions and statistics use Live.
func (f FS) WithModel(m *Model) FS {
	f.model = m
	return f
}

// Live returns f without a Model: every read goes to configfs.
func (f FS) Live() FS {
	f.model = nil
	return f
}

// node returns the node at rel, creating the path when create is set.
func (m *Model) node(rel string, create bool) *mnode {
	n := m.root
	// walk the components without splitting: every read of an Observe
	// comes here
	for rest := rel; ; {
		c, tail, more := strings.Cut(rest, "/")
		rest = tail
		k := n.kids[c]
		if k == nil {
			if !create {
				return nil
			}
			if n.kids == nil {
				n.kids = map[string]*mnode{}
			}
			k = &mnode{}
			n.kids[c] = k
		}
		n = k
		if !more {
			return n
		}
	}
}

func (m *Model) count(hit bool) {
	if hit {
		m.hits++
	} else {
		m.misses++
	}
}

func (m *Model) exists(f FS, rel string) bool {
	m.mu.Lock()
	if n := m.node(rel, false); n != nil && n.exists != 0 {
		m.count(true)
		m.mu.Unlock()
		return n.exists > 0
	}
	m.count(false)
	m.mu.Unlock()
	ok := f.Live().exists(rel)
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.node(rel, true)
	n.exists = -1
	if ok {
		n.exists = 1
	}
	return ok
}

func (m *Model) entries(f FS, rel string) (dirs, files, links []string, err error) {
	m.mu.Lock()
	if n := m.node(rel, false); n != nil && n.listed {
		m.count(true)
		m.mu.Unlock()
		return n.dirs, n.files, n.links, nil
	}
	m.count(false)
	m.mu.Unlock()
	dirs, files, links, err = f.Live().entries(rel)
	if err != nil {
		return nil, nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.node(rel, true)
	n.listed, n.exists = true, 1
	n.dirs, n.files, n.links = dirs, files, links
	return dirs, files, links, nil
}

func (m *Model) read(f FS, rel string) (string, error) {
	m.mu.Lock()
	if n := m.node(rel, false); n != nil && n.hasVal {
		m.count(true)
		m.mu.Unlock()
		return n.val, nil
	}
	m.count(false)
	m.mu.Unlock()
	v, err := f.Live().read(rel)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.node(rel, true)
	n.hasVal, n.val, n.exists = true, v, 1
	return v, nil
}

func (m *Model) readlink(f FS, rel string) (string, error) {
	m.mu.Lock()
	if n := m.node(rel, false); n != nil && n.hasLink {
		m.count(true)
		m.mu.Unlock()
		return n.link, nil
	}
	m.count(false)
	m.mu.Unlock()
	t, err := f.Live().readlink(rel)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.node(rel, true)
	n.hasLink, n.link, n.exists = true, t, 1
	return t, nil
}

// groupDirs are the attribute groups inside an object directory: a write
// there may change the object's other groups (authentication flips
// param/AuthMethod), so the object is the unit forgotten.
var groupDirs = map[string]bool{"attrib": true, "param": true, "auth": true, "wwn": true, "alua": true}

// changed forgets what an operation on rel may have changed. write says
// it wrote a value; otherwise it created or removed rel.
func (m *Model) changed(rel string, write bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	parent, name := path2dir(rel), rel[strings.LastIndex(rel, "/")+1:]
	if !write {
		m.dropObjects(rel, true)
		if p := m.node(parent, false); p != nil {
			delete(p.kids, name)
			// only files hold values: a directory listed with none (the
			// thousands of HBAs of target/core) has no value to forget
			if !p.listed || len(p.files) > 0 {
				forgetValues(p, 1)
			}
			p.listed = false
		}
		return
	}
	base := parent
	if groupDirs[base[strings.LastIndex(base, "/")+1:]] {
		base = path2dir(base)
	}
	m.dropObjects(rel, false)
	m.dropObjects(base, true)
	if b := m.node(base, false); b != nil {
		forgetValues(b, 2)
	}
	if n := m.node(rel, false); n != nil {
		n.hasVal = false
	}
}

// forgetValues forgets the values (not listings) of n's descendants down
// to depth levels.
func forgetValues(n *mnode, depth int) {
	if depth == 0 {
		return
	}
	for _, k := range n.kids {
		k.hasVal = false
		forgetValues(k, depth-1)
	}
}
