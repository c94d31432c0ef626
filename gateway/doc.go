// Package gateway owns this gateway's local reconcile: it turns the shared
// configuration document, this gateway's identity and the settings into the
// desired LIO state (SpecFromConfig, the only translation from the
// document to lio.Spec), resolves the RBD facts that needs (image sizes
// through the daemon's one RADOS connection, block-device mappings for the
// `block` backstore), and converges configfs through package lio, one
// reconcile at a time. The Reconciler keeps what LIO holds in a lio.Model
// and re-reads the whole tree only at start-up, after a failed operation,
// on Resync (SIGHUP) and on the drift check. The Driver runs it over the
// configuration's change events: restore, watch, back-off, reload, drift. Both `ceph-iscsi restore` and the API daemon use it, so the two cannot
// drift apart; it implements the API's LocalLIO seam. An object of the
// document whose desired state cannot be built (a name that cannot be a
// configfs path, an unreadable image, ...) is held as LIO has it while the
// rest converges, and is reported (Status, Report.ObjectErrs).
//
// It must not write the configuration object, serve or call HTTP, or touch
// configfs other than through package lio. It never logs or returns a CHAP
// secret.
package gateway
