// Command ceph-iscsi is the whole gateway manager in one executable. It runs as the
// subcommand named on its command line, or, when started through one of the upstream
// names (rbd-target-api, rbd-target-gw, gwcli), as the subcommand that name stands for.
package main

import (
	"os"

	"ceph-iscsi/commands"
)

func main() {
	os.Exit(commands.Run(os.Args, os.Stdout, os.Stderr))
}
