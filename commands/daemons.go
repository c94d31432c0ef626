package commands

import "github.com/urfave/cli/v2"

func apiCommand() *cli.Command {
	return &cli.Command{
		Name:   "api",
		Usage:  "run the rbd-target-api daemon (restores LIO and serves the REST API)",
		Flags:  []cli.Flag{configFlag()},
		Action: notImplemented("api"),
	}
}

func gwCommand() *cli.Command {
	return &cli.Command{
		Name:   "gw",
		Usage:  "run the rbd-target-gw statistics daemon (Prometheus metrics)",
		Flags:  []cli.Flag{configFlag()},
		Action: notImplemented("gw"),
	}
}

func cliCommand() *cli.Command {
	return &cli.Command{
		Name:   "cli",
		Usage:  "gwcli: the interactive shell and one-shot command runner",
		Flags:  []cli.Flag{configFlag()},
		Action: notImplemented("cli"),
	}
}
