// Package commands defines the ceph-iscsi command line: the argv[0] aliases, the
// subcommands, their flags, and the exit codes. It wires the library packages together
// and owns nothing else: no configfs, RADOS or HTTP logic lives here.
package commands
