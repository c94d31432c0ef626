package commands

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// Exit codes. 16 is what upstream's daemons use for a fatal start-up error, and what
// systemd units and operators' scripts expect.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitFatal   = 16
)

// DefaultConfigPath is upstream's hard-coded settings file.
const DefaultConfigPath = "/etc/ceph/iscsi-gateway.cfg"

// aliases maps the upstream program names to the subcommand each stands for.
var aliases = map[string]string{
	"rbd-target-api": "api",
	"rbd-target-gw":  "gw",
	"gwcli":          "cli",
}

// version is stamped at build time with -ldflags "-X ceph-iscsi/commands.version=...".
var version = "dev"

// expandAlias reports the argument vector to run: when args[0] is one of the upstream
// program names, the subcommand it stands for is inserted so that a symlink and the
// subcommand run the same code.
func expandAlias(args []string) []string {
	if len(args) == 0 {
		return []string{"ceph-iscsi"}
	}
	if sub, ok := aliases[filepath.Base(args[0])]; ok {
		out := make([]string, 0, len(args)+1)
		out = append(out, "ceph-iscsi", sub)
		return append(out, args[1:]...)
	}
	return args
}

// Run runs the command line in args and returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(expandAlias(args))
	if err == nil {
		return exitOK
	}
	var coder cli.ExitCoder
	if errors.As(err, &coder) {
		if msg := coder.Error(); msg != "" {
			fmt.Fprintln(stderr, "ceph-iscsi:", msg)
		}
		return coder.ExitCode()
	}
	fmt.Fprintln(stderr, "ceph-iscsi:", err)
	return exitFailure
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "ceph-iscsi",
		Usage:   "Ceph iSCSI gateway manager (rbd-target-api, rbd-target-gw, gwcli)",
		Version: version,
		// The packaged shell completion scripts ask the program for candidates.
		EnableBashCompletion: true,
		Writer:               stdout,
		ErrWriter:            stderr,
		// Errors are printed once, by Run, with the exit code they carry.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			apiCommand(),
			gwCommand(),
			cliCommand(),
			restoreCommand(),
			versionCommand(),
			genDocsCommand(),
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "ceph-iscsi: unknown command %q (try --help)\n", name)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return cli.Exit(err.Error(), exitUsage)
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return cli.Exit(fmt.Sprintf("unknown command %q (try --help)", c.Args().First()), exitUsage)
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
	}
	return app
}

// configFlag is the settings-file flag every subcommand takes, so that tests and several
// daemons on one host can each use their own file.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "config",
		Usage:   "settings file (iscsi-gateway.cfg)",
		EnvVars: []string{"CEPH_ISCSI_CONFIG"},
		Value:   DefaultConfigPath,
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Flags: []cli.Flag{configFlag()},
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "ceph-iscsi %s\n", version)
			return nil
		},
	}
}
