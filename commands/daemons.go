package commands

import "github.com/urfave/cli/v2"

func gwCommand() *cli.Command {
	return &cli.Command{
		Name:   "gw",
		Usage:  "run the rbd-target-gw statistics daemon (Prometheus metrics)",
		Flags:  []cli.Flag{configFlag(), configfsRootFlag()},
		Action: notImplemented("gw"),
	}
}
