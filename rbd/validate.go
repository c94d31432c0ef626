package rbd

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Upstream's messages for names refused on disk create and snapshot requests.
const (
	msgInvalidPoolName  = "Invalid pool name (use alphanumeric, '_', '.', or '-' characters)"
	msgInvalidImageName = "Invalid image name (use alphanumeric, '_', '.', or '-' characters)"
	msgInvalidSnapName  = "snapshot name is invalid"
)

// ValidatePoolName applies upstream's create rule ^[a-zA-Z0-9\-_\.]+$.
func ValidatePoolName(pool string) error {
	if !diskNameOK(pool) {
		return &upstreamError{msg: msgInvalidPoolName, sentinel: ErrInvalidName}
	}
	return nil
}

// ValidateImageName applies upstream's create rule ^[a-zA-Z0-9\-_\.]+$.
func ValidateImageName(image string) error {
	if !diskNameOK(image) {
		return &upstreamError{msg: msgInvalidImageName, sentinel: ErrInvalidName}
	}
	return nil
}

// ValidateSnapshotName applies upstream's rule ^[^/@]+$: '/' and '@' would make the
// name ambiguous in a pool/image@snap spec. Control characters and invalid UTF-8
// are refused too: librbd takes a C string, so a NUL would cut the name and act on
// another snapshot.
func ValidateSnapshotName(name string) error {
	if name == "" || strings.ContainsAny(name, "/@") || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, unicode.IsControl) {
		return &upstreamError{msg: msgInvalidSnapName, sentinel: ErrInvalidName}
	}
	return nil
}

func diskNameOK(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// Backstores this package knows about.
const (
	// BackstoreUserRBD is TCMU with tcmu-runner's rbd handler (upstream's only one).
	BackstoreUserRBD = "user:rbd"
	// BackstoreBlock is LIO iblock on a krbd (or rbd-nbd) device mapped by Mapper.
	BackstoreBlock = "block"
)

// CheckFailoverSafe reports whether an image on the given backstore may be exported
// by the given number of gateways at once. The config/API layer calls it before it
// adds a gateway to a target or maps a disk, with the number of gateways that would
// export the image afterwards. Only `block` is limited: krbd has no ALUA-aware lock
// handover (see the package documentation), so it is a single-gateway export.
func CheckFailoverSafe(backstore string, gateways int) error {
	if backstore == BackstoreBlock && gateways > 1 {
		return fmt.Errorf("%w: the %q backstore can be exported by one gateway only, "+
			"not %d: krbd does not hand the RBD exclusive lock over on ALUA failover "+
			"the way tcmu-runner does, so a second path could write stale data; "+
			"use the %q backstore for multi-gateway targets",
			ErrFailoverUnsafe, backstore, gateways, BackstoreUserRBD)
	}
	return nil
}
