package shell

import "strings"

// Resolve finds the node at path: absolute from root, or relative to cwd, with "." and ".."
// as configshell has them ("" is cwd). Some node names hold a slash (a target's disk
// "pool/image"): when a segment names no child, the following segments are tried joined to
// it, so `disks/rbd/disk1` reaches the node upstream's configshell could list but not enter.
// The error is configshell's "No such path <path>".
func Resolve(root, cwd *Node, path string) (*Node, error) {
	n := cwd
	if strings.HasPrefix(path, "/") {
		n = root
	}
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	for i := 0; i < len(segs); i++ {
		switch segs[i] {
		case ".":
			continue
		case "..":
			if n.Parent != nil {
				n = n.Parent
			}
			continue
		}
		next := n.Child(segs[i])
		j := i
		for k := i + 1; next == nil && k < len(segs); k++ {
			if c := n.Child(strings.Join(segs[i:k+1], "/")); c != nil {
				next, j = c, k
			}
		}
		if next == nil {
			return nil, userErrorf("No such path %s/%s", strings.TrimRight(n.Path(), "/"), segs[i])
		}
		n, i = next, j
	}
	return n, nil
}
