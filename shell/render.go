package shell

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// MaxWidth is configshell's widest rendering: wider terminals are clamped to it, and output
// that is not a terminal uses it.
const MaxWidth = 132

// Render draws the subtree at path (absolute from the top of root's tree, or relative to
// root) as configshell's `ls`
// does with gwcli's preferences: `o- name ..... [summary]` lines padded with dots to width
// (clamped to MaxWidth; 0 means MaxWidth), children sorted by name with trailing numbers
// compared as numbers, depth levels below the node (0: all). Every line ends in a newline.
// An unknown path yields "".
func Render(root *Node, path string, depth int, width int) string {
	top := root
	for top.Parent != nil {
		top = top.Parent
	}
	n, err := Resolve(top, root, path)
	if err != nil {
		return ""
	}
	if width <= 0 || width > MaxWidth {
		width = MaxWidth
	}
	var b strings.Builder
	renderNode(&b, n, []bool{false}, depth, depth == 0, width)
	return b.String()
}

// renderNode writes n and then its children. margin holds, from the rendered root down to
// n, whether each node has a later sibling (true draws a pipe below it); n's own entry, the
// last, does not show on its line.
func renderNode(b *strings.Builder, n *Node, margin []bool, depth int, unlimited bool, width int) {
	desc := n.Summary
	if desc == "" {
		desc = "..."
	}
	var line strings.Builder
	for _, pipe := range margin[:len(margin)-1] {
		if pipe {
			line.WriteString("| ")
		} else {
			line.WriteString("  ")
		}
	}
	line.WriteString("o- ")
	pad := width - 1 - (utf8.RuneCountInString(desc) + 3) - utf8.RuneCountInString(line.String()) - utf8.RuneCountInString(n.Name)
	line.WriteString(n.Name)
	line.WriteString(" ")
	if pad > 0 {
		line.WriteString(strings.Repeat(".", pad))
	}
	line.WriteString(" [")
	line.WriteString(desc)
	line.WriteString("]\n")
	b.WriteString(line.String())

	if !unlimited && depth <= 0 {
		return
	}
	kids := sortedChildren(n)
	for i, c := range kids {
		renderNode(b, c, append(margin, i < len(kids)-1), depth-1, unlimited, width)
	}
}

// sortedChildren orders children as configshell does: by the name without its trailing
// digits, then by those digits as a number ("lun 2" before "lun 10"); ties keep their order.
func sortedChildren(n *Node) []*Node {
	kids := append([]*Node(nil), n.Children...)
	sort.SliceStable(kids, func(i, j int) bool { return nameLess(kids[i].Name, kids[j].Name) })
	return kids
}

func nameLess(a, b string) bool {
	pa, na := splitTrailingDigits(a)
	pb, nb := splitTrailingDigits(b)
	if pa != pb {
		return pa < pb
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return na < nb
}

// splitTrailingDigits returns the name before its trailing ASCII digits and those digits
// without leading zeros, so that comparing (length, text) compares the numbers.
func splitTrailingDigits(s string) (string, string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	digits := strings.TrimLeft(s[i:], "0")
	return s[:i], digits
}
