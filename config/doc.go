// Package config owns the shared gateway configuration document, the JSON
// object stored in RADOS as <pool>/gateway.conf: its schema (version 11) as Go
// types, its byte format (identical to what the Python gateways write, so
// mixed clusters can share one object), its validation rules, the upgrade
// chain from older schema versions, and small pure mutations of the document.
//
// Everything here is pure: the package must not touch RADOS, LIO/configfs or
// HTTP. Callers (the rados store) read the raw bytes, call Load (or ParseAny,
// UpgradeRaw and FromAny), apply a mutation to the *Doc, call Validate and
// Touch, and write Marshal's bytes back. A document shared between requests is
// copied with Fork, which shares its disks, gateways and targets until a Mut
// accessor copies the one being changed (cow.go states the contract).
//
// Unknown keys found at any level are kept in the Extra maps and written back,
// so a document written by a newer or different gateway loses nothing when we
// rewrite it.
package config
