package commands

import "github.com/urfave/cli/v2"

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:   "restore",
		Usage:  "restore LIO from the RADOS config object, once",
		Flags:  []cli.Flag{configFlag()},
		Action: notImplemented("restore"),
	}
}
