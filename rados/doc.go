// Package rados owns this process's connection to the Ceph cluster and the shared
// gateway.conf object in it: loading, seeding and upgrading the document, committing
// mutations without losing concurrent updates, announcing and watching changes, and
// the mon commands the gateway needs (config-key, OSD blocklist).
//
// It must not touch LIO, RBD images or HTTP, and it does not interpret the document
// beyond what package config provides: mutations are pure functions handed in by the
// caller.
package rados
