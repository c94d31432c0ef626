package commands

import "github.com/urfave/cli/v2"

func cliCommand() *cli.Command {
	return &cli.Command{
		Name:   "cli",
		Usage:  "gwcli: the interactive shell and one-shot command runner",
		Flags:  []cli.Flag{configFlag()},
		Action: notImplemented("cli"),
	}
}
