// Package shell is gwcli: the tree of gateway objects operators know from upstream's gwcli
// (spec §10), its commands, its rendering, and the interactive and one-shot front ends.
//
// It is a client of the HTTP API over upstream's routes only, so it drives an upstream Python
// rbd-target-api as well as ours; it must not import package api. Cluster facts (pools, health,
// image sizes) come from packages rados and rbd, read once per command, in bulk. Rendering is a
// pure function of a Snapshot so that golden tests need no cluster.
package shell
