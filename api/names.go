package api

import (
	"net/url"
	"strings"
)

// pathSegments joins names into URL path segments, each escaped: a name may
// hold '/', '%', '?', '#', spaces or control characters (an invalid name an
// older version committed, which must stay deletable), and must reach a
// peer as the one segment it is. The receiving route unescapes it (param).
func pathSegments(names ...string) string {
	esc := make([]string, len(names))
	for i, n := range names {
		esc[i] = url.PathEscape(n)
	}
	return strings.Join(esc, "/")
}
