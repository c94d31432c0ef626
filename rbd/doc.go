// Package rbd owns RBD images and their block-device mappings: creating, growing,
// removing and inspecting images and their snapshots through librbd, and mapping
// images to local block devices (krbd, with rbd-nbd as the fallback) for the `block`
// backstore.
//
// It must not touch LIO/configfs, the gateway.conf object or HTTP. Validation helpers
// (ParseSize, the name checks) return upstream's exact messages, because the API layer
// sends them to clients (the Dashboard and gwcli) verbatim.
//
// # Connections
//
// Image operations take the raw go-ceph *rados.Conn: librbd needs an I/O context of
// that connection, and one connection per process is shared by every goroutine.
//
// # Mappings and credentials
//
// krbd is driven through sysfs (/sys/bus/rbd/add_single_major), not `rbd device map`,
// which waits for udev forever on hosts without it. The kernel needs the monitor
// addresses and the cephx key itself; CredentialsFromConn reads mon_host from the
// connection and the key from the keyring files the connection was configured with,
// asking the monitors (`auth get-key`) only when no keyring holds it. Reading the
// keyring first keeps working for a gateway user whose caps do not allow
// `auth get-key`. The key only ever leaves the process through the sysfs write; every
// command line, error and log line is passed through the sanitiser first, and rbd-nbd
// is given the keyring path rather than the key whenever a keyring is known, so the
// key does not show up in the process table.
//
// Map, Unmap and Mapped are idempotent and level-triggered: Map returns the existing
// device when the image is already mapped (so a restore after a daemon restart does
// not map it twice), and Unmap of an image that is not mapped succeeds.
//
// # Multi-gateway failover with krbd
//
// tcmu-runner (user:rbd) makes the RBD exclusive lock follow the ALUA active path:
// the gateway that takes over blocklists the previous owner, so writes still queued
// on the old path can never land after newer writes through the new one. krbd has no
// such handler. Without the `exclusive` map option it hands the lock over to any
// client that asks, so two gateways exporting one image would ping-pong the lock and
// a stale gateway could silently overwrite newer data; with `exclusive` the second
// gateway cannot map at all, so there is no failover either way.
//
// The package therefore takes the safe position: the `block` backstore is a
// single-gateway export. CheckFailoverSafe refuses it for more than one gateway, for
// the config/API layer to call before it commits a change, and the Mapper maps with
// `exclusive` (rbd-nbd: --exclusive), so a second mapping of a live export fails in
// the kernel instead of stealing the lock, even if a misconfiguration got past the
// check. A crashed gateway does not wedge the image: its lock is broken by the next
// mapping once its watch has expired.
package rbd
