package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"ceph-iscsi/host"
	"ceph-iscsi/shell"
)

// gwcliVersion is upstream's gwcli version string, which `gwcli -v` prints as upstream does.
const gwcliVersion = "2.7"

// exitCLI is upstream gwcli's sys.exit(-1).
const exitCLI = 255

// getuid is the user check of the CLI; tests running the CLI in-process replace it.
var getuid = os.Getuid

// apiTimeout bounds each API request of the CLI (upstream's requests have none; a hung
// gateway should not hang the shell).
const apiTimeout = 60 * time.Second

func cliCommand() *cli.Command {
	return &cli.Command{
		Name:      "cli",
		Usage:     "gwcli: the interactive shell and one-shot command runner",
		ArgsUsage: "[path] [command] [parameters...]",
		Description: "With words after the flags, runs them as one command and exits (0, or 255 with the error " +
			"on stderr). With -f FILE, or with standard input not a terminal, runs the commands of the file or " +
			"input one per line, stopping at the first error. Otherwise starts the interactive shell.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "config-object", Aliases: []string{"c"}, Usage: "pool/object of the configuration (accepted for compatibility; the API decides)"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "debug logging on stderr"},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: 16, Usage: "RBD image reads in flight per pool"},
			&cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version and exit"},
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "run the commands of FILE (- for standard input), one per line"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output for ls, info and export"},
			&cli.StringSliceFlag{
				Name: "peer",
				Usage: "NAME=URL: reach gateway NAME (or localhost, the local API) at URL (scheme://host:port) " +
					"instead of <api scheme>://NAME:api_port; repeat for each (several gateways on one host)",
			},
			&cli.StringFlag{
				Name:    "gateway-name",
				Usage:   "this host's gateway name (default: the FQDN, as upstream's socket.getfqdn())",
				EnvVars: []string{host.EnvGatewayName},
			},
		},
		Action: runCLI,
	}
}

func runCLI(c *cli.Context) error {
	out, errOut := c.App.Writer, c.App.ErrWriter
	if c.Bool("version") {
		fmt.Fprintf(out, "gwcli - %s\nceph-iscsi %s\n", gwcliVersion, version)
		return nil
	}
	if getuid() != 0 {
		fmt.Fprintln(out, "CLI only supports root level access")
		return cli.Exit("", exitCLI)
	}
	peers := map[string]string{}
	for _, p := range c.StringSlice("peer") {
		name, url, ok := strings.Cut(p, "=")
		if !ok || name == "" || !strings.Contains(url, "://") {
			return cli.Exit(fmt.Sprintf("cli: --peer %q: want NAME=scheme://host:port", p), exitUsage)
		}
		peers[name] = strings.TrimSuffix(url, "/")
	}
	level := slog.LevelWarn
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))

	s, conn, err := loadSettings("cli", c.String("config"))
	if err != nil {
		return err
	}
	defer conn.Close()
	local := c.String("gateway-name")
	if local == "" {
		if local, err = host.FQDN(); err != nil {
			return fatalf("cli: %w", err)
		}
	}
	api := shell.NewClient(s.APISecure, s.APIPort, s.APIUser, s.APIPassword.Reveal(), apiTimeout)
	api.Peers = peers
	home, _ := os.UserHomeDir()
	prefsDir := ""
	if home != "" {
		prefsDir = filepath.Join(home, ".gwcli")
	}
	stdoutFd := -1
	if f, ok := out.(*os.File); ok {
		stdoutFd = int(f.Fd())
	}
	words := c.Args().Slice()
	file := c.String("file")
	stdin := c.App.Reader
	stdinTerm := false
	if f, ok := stdin.(*os.File); ok {
		stdinTerm = term.IsTerminal(int(f.Fd()))
	}
	interactive := len(words) == 0 && file == "" && stdinTerm
	sh := shell.New(shell.Options{
		API: api,
		Load: func(ctx context.Context) (*shell.Snapshot, error) {
			return shell.Load(ctx, shell.LoadOptions{
				API: api, Conn: conn, ClusterName: s.ClusterName, Conf: cephConf(s), ClientName: s.ClusterClientName,
				LocalName: local, Images: c.Int("threads"), Log: log,
			})
		},
		Out: out,
		Width: func() int {
			if stdoutFd < 0 || !term.IsTerminal(stdoutFd) {
				return 0
			}
			w, _, err := term.GetSize(stdoutFd)
			if err != nil {
				return 0
			}
			return w
		},
		PrefsDir:    prefsDir,
		LocalName:   local,
		Interactive: interactive,
		JSON:        c.Bool("json"),
		Settings:    s,
	})

	ctx := c.Context
	if _, err := sh.Tree(ctx); err != nil {
		fmt.Fprintf(errOut, "Unable to contact the local API endpoint (%s): %s\n", localEndpoint(api), shell.FormatError(apiCause(err)))
		return cli.Exit("", exitCLI)
	}

	switch {
	case len(words) > 0:
		if err := sh.Exec(ctx, joinWords(words)); err != nil {
			fmt.Fprintln(errOut, shell.FormatError(err))
			return cli.Exit("", exitCLI)
		}
		return nil
	case file != "" || !stdinTerm:
		in := stdin
		name := "standard input"
		if file != "" && file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return failf("cli: %w", err)
			}
			defer f.Close()
			in, name = f, file
		}
		return runBatch(ctx, sh, in, name, errOut)
	}
	if err := sh.Interactive(ctx, errOut); err != nil {
		return failf("cli: %w", err)
	}
	return nil
}

// runBatch runs one command per line (blank lines and # comments skipped), stopping at the
// first error.
func runBatch(ctx context.Context, sh *shell.Shell, in io.Reader, name string, errOut io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := sh.Exec(ctx, line); err != nil {
			fmt.Fprintf(errOut, "%s:%d: %s: %s\n", name, n, line, shell.FormatError(err))
			return cli.Exit("", exitCLI)
		}
		if sh.Done() {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return failf("cli: reading %s: %w", name, err)
	}
	return nil
}

// joinWords rebuilds the command line of a one-shot command, quoting the words the shell
// would otherwise split ("lun 0").
func joinWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t'\"\\") {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		q[i] = w
	}
	return strings.Join(q, " ")
}

func localEndpoint(api *shell.Client) string {
	return strings.TrimSuffix(api.URL("localhost"), "/")
}

// apiCause drops the request line from a failed GET /api/config, keeping the API's
// message or the network error.
func apiCause(err error) error {
	var ae *shell.APIError
	if errors.As(err, &ae) {
		return ae
	}
	return err
}
