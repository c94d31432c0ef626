package api

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"ceph-iscsi/config"
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

// invalidName is the 400 for a new name that breaks its rule: the name
// (quoted, so control characters show), the field and the rule.
func invalidName(what, field, name string, err error) error {
	rule := err.Error()
	var ne *config.NameError
	if errors.As(err, &ne) {
		rule = ne.Rule
	}
	return httpErr(http.StatusBadRequest, "Invalid %s name %s - %s: %s", what, config.QuoteName(name), field, rule)
}
