// Package api owns the REST API of rbd-target-api: its routes (the 36 URL
// rules and 57 method+path operations of upstream, public and internal "_"
// ones), their form-encoded parameters and JSON responses, authentication
// (HTTP Basic plus the source-IP allowlist), and the coordination of a change
// across gateways: validate, commit the config document once through the
// store, apply the change to the local LIO through the LocalLIO seam, then
// ask the peer gateways to apply it through their internal routes. A change
// the local LIO could not take is refused before the commit (LocalLIO's
// optional Check); once committed, a change is reported as committed even
// when a gateway could not apply it yet, and a disconnecting client does not
// cancel the work that follows the commit.
//
// It is the only package that knows HTTP. It must not touch configfs (that is
// the LocalLIO implementation's job) and changes the config document only
// through pure mutations handed to Store.Commit, which never loses a
// concurrent update.
package api
