package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"ceph-iscsi/config"
	"ceph-iscsi/gateway"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/settings"
)

// Environment variables of restore's flags besides --config.
const (
	envConfigfsRoot = "CEPH_ISCSI_CONFIGFS_ROOT"
	// envCephConf overrides the settings' ceph.conf for the RADOS connection, so
	// tests and development clusters need no /etc/ceph. The tcmu cfgstring keeps
	// the settings' path: tcmu-runner does not see this process's environment.
	envCephConf = "CEPH_CONF"
)

type restoreOptions struct {
	configPath string
	root       string
	identity   identityOptions
	dryRun     bool
	json       bool
	teardown   bool
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "restore LIO from the RADOS config object, once",
		Description: "Removes this host's OSD blocklist entries, reads the gateway configuration, " +
			"and converges the local LIO state (configfs) on it, printing the plan. " +
			"--teardown removes every LIO object the configuration names instead, as the API " +
			"daemon does on SIGTERM.",
		Flags: append([]cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan; change nothing in LIO or the OSD blocklist (an empty or old config object is still seeded or upgraded, as at every gateway start)"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan and result as JSON"},
			configfsRootFlag(),
			&cli.BoolFlag{Name: "teardown", Usage: "remove this gateway's LIO objects instead of restoring them"},
		}, identityFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return cli.Exit(fmt.Sprintf("restore: unexpected argument %q", c.Args().First()), exitUsage)
			}
			ido, err := identityFromFlags(c, "restore")
			if err != nil {
				return err
			}
			opts := restoreOptions{
				configPath: c.String("config"),
				root:       c.String("configfs-root"),
				identity:   ido,
				dryRun:     c.Bool("dry-run"),
				json:       c.Bool("json"),
				teardown:   c.Bool("teardown"),
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runRestore(ctx, opts, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// fatalf and failf keep the cause (%w) inside the exit error, which unwraps.
func fatalf(format string, args ...any) error {
	return cli.Exit(fmt.Errorf(format, args...), exitFatal)
}

func failf(format string, args ...any) error {
	return cli.Exit(fmt.Errorf(format, args...), exitFailure)
}

// cephConf is the ceph.conf the RADOS connection reads.
func cephConf(s *settings.Settings) string {
	if p := os.Getenv(envCephConf); p != "" {
		return p
	}
	return s.CephConfPath()
}

func connOptions(s *settings.Settings) rados.ConnOptions {
	return rados.ConnOptions{ConfFile: cephConf(s), ClientName: s.ClusterClientName}
}

// loadSettings reads the settings file and returns a connection made with them. The
// connection opened to resolve config:// values is reused when the resolved values
// still point at the same cluster and user.
func loadSettings(cmd, path string) (*settings.Settings, *rados.Conn, error) {
	var conn *rados.Conn
	var used rados.ConnOptions
	s, err := settings.Load(path, func(partial *settings.Settings) (settings.KeyResolver, error) {
		used = connOptions(partial)
		c, err := rados.Connect(used)
		if err != nil {
			return nil, err
		}
		conn = c
		return c.ConfigKeyGet, nil
	})
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, nil, fatalf("%s: settings: %w", cmd, err)
	}
	if conn != nil && used != connOptions(s) {
		conn.Close()
		conn = nil
	}
	if conn == nil {
		if conn, err = rados.Connect(connOptions(s)); err != nil {
			return nil, nil, fatalf("%s: %w", cmd, err)
		}
	}
	return s, conn, nil
}

// restoreReport is the --json output, and what the human output is printed from.
type restoreReport struct {
	Gateway  string `json:"gateway"`
	Member   bool   `json:"member"`
	Config   string `json:"config"`
	Epoch    int64  `json:"epoch"`
	Root     string `json:"configfs_root"`
	Emulated bool   `json:"emulated"`
	DryRun   bool   `json:"dry_run"`
	Teardown bool   `json:"teardown"`
	// Unblocked lists the blocklist entries removed (or, on a dry run, that
	// would be).
	Unblocked []string `json:"unblocked,omitempty"`
	InSync    bool     `json:"in_sync"`
	Plan      lio.Plan `json:"plan"`
	// Applied is absent on a dry run and when nothing was attempted.
	Applied *appliedReport `json:"applied,omitempty"`
	// Errors are the problems that stopped or spoiled the run; they never
	// carry secrets.
	Errors []string `json:"errors,omitempty"`
	// ObjectErrors are the objects of the configuration whose desired state
	// could not be built: LIO keeps them as they are (Held lists the
	// operations left out of the plan) and the rest converges.
	ObjectErrors []gateway.Problem `json:"object_errors,omitempty"`
	Held         []lio.Op          `json:"held,omitempty"`
	// Took says where the run's time went, in milliseconds.
	Took restoreStages `json:"took_ms"`
}

// restoreStages are the stages of a restore, in milliseconds: reading the
// settings and connecting, the blocklist cleanup, reading the config
// object, then the reconciler's stages (the build reads image sizes).
type restoreStages struct {
	Connect int64 `json:"connect"`
	Unblock int64 `json:"unblock"`
	Config  int64 `json:"config"`
	Build   int64 `json:"build"`
	Observe int64 `json:"observe"`
	Plan    int64 `json:"plan"`
	Apply   int64 `json:"apply"`
	Unmap   int64 `json:"unmap"`
	Total   int64 `json:"total"`
}

type appliedReport struct {
	Done    int        `json:"done"`
	Failed  int        `json:"failed"`
	Skipped int        `json:"skipped"`
	Ops     lio.Result `json:"ops"`
}

func runRestore(ctx context.Context, o restoreOptions, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	start := time.Now()
	var took restoreStages
	lap := func(d *int64) {
		now := time.Now()
		*d = now.Sub(start).Milliseconds() - took.Total
		took.Total = now.Sub(start).Milliseconds()
	}

	s, conn, err := loadSettings("restore", o.configPath)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, w := range s.Warnings {
		log.Warn(w)
	}

	id, err := o.identity.resolve("restore")
	if err != nil {
		return err
	}
	log = log.With("gateway", id.Name)

	rep := restoreReport{Gateway: id.Name, DryRun: o.dryRun, Teardown: o.teardown, Root: o.root}
	lap(&took.Connect)

	// Fenced tcmu-runner/librbd clients of this host must be let back in before
	// LIO serves the images again (spec 6.1 step 5).
	if !o.teardown {
		if rep.Unblocked, err = unblock(conn, id.Addrs, o.dryRun); err != nil {
			return fatalf("restore: OSD blocklist cleanup: %w", err)
		}
		for _, a := range rep.Unblocked {
			if o.dryRun {
				log.Info("dry run: would remove OSD blocklist entry of this host", "addr", a)
			} else {
				log.Info("removed OSD blocklist entry of this host", "addr", a)
			}
		}
	}

	lap(&took.Unblock)
	store, err := openConfigStore(ctx, conn, s, id, log)
	if err != nil {
		return fatalf("restore: config object %s/%s: %w", s.Pool, s.GatewayConf, err)
	}
	defer store.Close()
	doc, err := store.Load(ctx)
	if err != nil {
		return fatalf("restore: %w", err)
	}
	rep.Config, rep.Epoch = store.Name(), doc.Epoch
	lap(&took.Config)
	rep.Member = doc.Gateways[id.Name] != nil
	if !rep.Member {
		log.Warn("this gateway is not in the configuration: as upstream, none of its objects are managed here; set --gateway-name if the name is wrong",
			"known", slices.Sorted(maps.Keys(doc.Gateways)))
	}

	f, err := lio.NewFS(o.root)
	if err != nil {
		return fatalf("restore: %w", err)
	}
	rep.Emulated = f.Emulated()
	rec := gateway.New(gateway.Options{
		FS: f, Settings: s, Identity: id, Conn: conn, CephConf: cephConf(s), Logger: log,
	})
	res, runErr := rec.Run(ctx, doc, gateway.Mode{Teardown: o.teardown, DryRun: o.dryRun})
	rep.Plan, rep.InSync, rep.Held = res.Plan, res.InSync, res.Held
	took.Build, took.Observe, took.Plan = res.Took.Build.Milliseconds(), res.Took.Observe.Milliseconds(), res.Took.Plan.Milliseconds()
	took.Apply, took.Unmap = res.Took.Apply.Milliseconds(), res.Took.Unmap.Milliseconds()
	took.Total = time.Since(start).Milliseconds()
	rep.Took = took
	for _, e := range res.ObjectErrs {
		rep.ObjectErrors = append(rep.ObjectErrors, gateway.Problem{Object: e.Object(), Error: e.Error()})
	}
	if res.Applied != nil {
		a := *res.Applied
		rep.Applied = &appliedReport{Done: len(a.Done), Failed: len(a.Failed), Skipped: len(a.Skipped), Ops: a}
		log.Info("applied LIO plan", "done", len(a.Done), "failed", len(a.Failed), "skipped", len(a.Skipped))
	}
	for _, img := range res.Unmapped {
		log.Info("unmapped block image", "image", img)
	}
	switch {
	case runErr == nil:
		return printReport(stdout, rep, o.json)
	case res.BuildErr != nil:
		rep.Errors = append(rep.Errors, res.BuildErr.Error())
		if err := printReport(stdout, rep, o.json); err != nil {
			return err
		}
		what := "nothing applied"
		if o.dryRun {
			what = "the plan above is incomplete"
		}
		return failf("restore: the configuration cannot be fully built for gateway %s (%s):\n%w", id.Name, what, res.BuildErr)
	case errors.Is(runErr, lio.ErrNoTCMURunner), errors.Is(runErr, lio.ErrTCMURunnerFiles):
		return failf("restore: nothing applied: %w", runErr)
	case res.ApplyErr != nil:
		rep.Errors = append(rep.Errors, res.ApplyErr.Error())
		if err := printReport(stdout, rep, o.json); err != nil {
			return err
		}
		a := res.Applied
		return failf("restore: %d of %d LIO operations failed and %d were skipped; running restore again completes them (it re-reads LIO and plans only what is missing):\n%w",
			len(a.Failed), len(res.Plan.Ops), len(a.Skipped), res.ApplyErr)
	case res.UnmapErr != nil:
		// LIO converged; only unmapping block images it let go of failed
		rep.Errors = append(rep.Errors, res.UnmapErr.Error())
		if err := printReport(stdout, rep, o.json); err != nil {
			return err
		}
		return failf("restore: %w", runErr)
	case len(res.ObjectErrs) > 0:
		if err := printReport(stdout, rep, o.json); err != nil {
			return err
		}
		what := "LIO keeps them as they are and the rest converged"
		if o.dryRun {
			what = "they are left out of the plan above"
		}
		return failf("restore: %d object(s) of the configuration cannot be reconciled on gateway %s (%s):\n%w",
			len(res.ObjectErrs), id.Name, what, runErr)
	default:
		return fatalf("restore: %w", runErr)
	}
}

// unblock removes (or on a dry run, lists) the blocklist entries of this host.
func unblock(conn *rados.Conn, addrs []netip.Addr, dryRun bool) ([]string, error) {
	if !dryRun {
		return conn.UnblockHost(addrs)
	}
	entries, err := conn.Blocklist()
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, e := range entries {
		if ip, err := e.IP(); err == nil && slices.Contains(addrs, ip) {
			mine = append(mine, e.Addr)
		}
	}
	return mine, nil
}

func printReport(w io.Writer, rep restoreReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		// Keep "<redacted>" readable instead of \u003credacted\u003e.
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return failf("restore: writing the report: %w", err)
		}
		return nil
	}
	var b strings.Builder
	kind := "configfs"
	if rep.Emulated {
		kind = "emulated configfs"
	}
	fmt.Fprintf(&b, "gateway %s: config %s epoch %d, %s %s\n", rep.Gateway, rep.Config, rep.Epoch, kind, rep.Root)
	for _, a := range rep.Unblocked {
		if rep.DryRun {
			fmt.Fprintf(&b, "would remove OSD blocklist entry %s\n", a)
		} else {
			fmt.Fprintf(&b, "removed OSD blocklist entry %s\n", a)
		}
	}
	built := rep.Applied != nil || len(rep.Errors) == 0
	switch {
	case !built && !rep.DryRun:
		// A partial plan would read as if it were about to run; the errors go
		// to stderr with the exit status.
		b.WriteString("not applied: the desired state could not be fully built\n")
	case rep.InSync && rep.Teardown:
		b.WriteString("nothing to tear down\n")
	case rep.InSync && len(rep.ObjectErrors) > 0:
		b.WriteString("in sync, but for the held objects below\n")
	case rep.InSync:
		b.WriteString("in sync: nothing to do\n")
	default:
		fmt.Fprintf(&b, "plan: %d operations\n", len(rep.Plan.Ops))
		for _, op := range rep.Plan.Ops {
			b.WriteString("  " + op.String() + "\n")
		}
	}
	for _, p := range rep.ObjectErrors {
		fmt.Fprintf(&b, "held: %s: %s\n", p.Object, p.Error)
	}
	switch a := rep.Applied; {
	case a != nil:
		fmt.Fprintf(&b, "applied: %d done, %d failed, %d skipped\n", a.Done, a.Failed, a.Skipped)
		for _, op := range a.Ops.Failed {
			b.WriteString("  failed:  " + op.String() + "\n")
		}
		for _, op := range a.Ops.Skipped {
			b.WriteString("  skipped: " + op.String() + "\n")
		}
	case rep.DryRun && !built:
		b.WriteString("dry run: nothing applied; the plan is incomplete because the desired state could not be fully built\n")
	case rep.DryRun && !rep.InSync:
		b.WriteString("dry run: nothing applied\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return failf("restore: writing the report: %w", err)
	}
	return nil
}

// openConfigStore opens the gateway.conf object of s as gateway id, seeding
// or upgrading it as upstream does at every start.
func openConfigStore(ctx context.Context, conn *rados.Conn, s *settings.Settings, id host.Identity, log *slog.Logger) (*rados.Store, error) {
	return rados.OpenStore(ctx, conn, rados.StoreOptions{
		Pool:   s.Pool,
		Object: s.GatewayConf,
		Upgrade: config.UpgradeOptions{
			Gateway:               config.Identity{FQDN: id.Name, ShortName: id.ShortName},
			EncryptionKeysPresent: fileExists(s.PrivKeyPath()) && fileExists(s.PubKeyPath()),
		},
		Logger: log,
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
