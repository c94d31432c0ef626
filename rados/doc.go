// Package rados owns this process's connection to the Ceph cluster and the shared
// gateway.conf object in it: loading, seeding and upgrading the document, committing
// mutations without losing concurrent updates, announcing and watching changes, and
// the mon and mgr commands the gateway needs (config-key, OSD blocklist, the mgr's
// service map), and the service-map registration tcmu-runner does (for tests).
//
// It must not touch LIO, RBD images or HTTP, and it does not interpret the document
// beyond what package config provides: mutations are pure functions handed in by the
// caller.
package rados
