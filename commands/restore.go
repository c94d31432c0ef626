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

	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"
	"github.com/urfave/cli/v2"

	"ceph-iscsi/config"
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

// errBlockNotWired is what block disks get until package rbd maps images.
var errBlockNotWired = errors.New("block backstore needs package rbd mapping (not wired yet)")

type restoreOptions struct {
	configPath  string
	root        string
	gatewayName string
	dryRun      bool
	json        bool
	teardown    bool
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "restore LIO from the RADOS config object, once",
		Description: "Removes this host's OSD blocklist entries, reads the gateway configuration, " +
			"and converges the local LIO state (configfs) on it, printing the plan. " +
			"--teardown removes every LIO object the configuration names instead, as the API " +
			"daemon does on SIGTERM.",
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan; change nothing in LIO or the OSD blocklist (an empty or old config object is still seeded or upgraded, as at every gateway start)"},
			&cli.BoolFlag{Name: "json", Usage: "print the plan and result as JSON"},
			&cli.StringFlag{
				Name:    "configfs-root",
				Usage:   "configfs mount point; any other existing directory is an emulated configfs",
				EnvVars: []string{envConfigfsRoot},
				Value:   lio.DefaultRoot,
			},
			gatewayNameFlag(),
			&cli.BoolFlag{Name: "teardown", Usage: "remove this gateway's LIO objects instead of restoring them"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return cli.Exit(fmt.Sprintf("restore: unexpected argument %q", c.Args().First()), exitUsage)
			}
			opts := restoreOptions{
				configPath:  c.String("config"),
				root:        c.String("configfs-root"),
				gatewayName: c.String("gateway-name"),
				dryRun:      c.Bool("dry-run"),
				json:        c.Bool("json"),
				teardown:    c.Bool("teardown"),
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runRestore(ctx, opts, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// gatewayNameFlag lets several gateway processes share one host; the api command
// will want it too.
func gatewayNameFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "gateway-name",
		Usage:   "this gateway's name in the configuration (default: the FQDN, as upstream's socket.getfqdn())",
		EnvVars: []string{host.EnvGatewayName},
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
func loadSettings(path string) (*settings.Settings, *rados.Conn, error) {
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
		return nil, nil, fatalf("restore: settings: %w", err)
	}
	if conn != nil && used != connOptions(s) {
		conn.Close()
		conn = nil
	}
	if conn == nil {
		if conn, err = rados.Connect(connOptions(s)); err != nil {
			return nil, nil, fatalf("restore: %w", err)
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
}

type appliedReport struct {
	Done    int        `json:"done"`
	Failed  int        `json:"failed"`
	Skipped int        `json:"skipped"`
	Ops     lio.Result `json:"ops"`
}

func runRestore(ctx context.Context, o restoreOptions, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))

	s, conn, err := loadSettings(o.configPath)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, w := range s.Warnings {
		log.Warn(w)
	}

	id, err := host.Resolve(o.gatewayName)
	if err != nil {
		return fatalf("restore: gateway identity: %w", err)
	}
	log = log.With("gateway", id.Name)

	rep := restoreReport{Gateway: id.Name, DryRun: o.dryRun, Teardown: o.teardown, Root: o.root}

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

	store, err := rados.OpenStore(ctx, conn, rados.StoreOptions{
		Pool:   s.Pool,
		Object: s.GatewayConf,
		Upgrade: config.UpgradeOptions{
			Gateway:               config.Identity{FQDN: id.Name, ShortName: id.ShortName},
			EncryptionKeysPresent: fileExists(s.PrivKeyPath()) && fileExists(s.PubKeyPath()),
		},
		Logger: log,
	})
	if err != nil {
		return fatalf("restore: config object %s/%s: %w", s.Pool, s.GatewayConf, err)
	}
	defer store.Close()
	doc, err := store.Load(ctx)
	if err != nil {
		return fatalf("restore: %w", err)
	}
	rep.Config, rep.Epoch = store.Name(), doc.Epoch
	rep.Member = doc.Gateways[id.Name] != nil
	if !rep.Member {
		log.Warn("this gateway is not in the configuration: as upstream, none of its objects are managed here; set --gateway-name if the name is wrong",
			"known", slices.Sorted(maps.Keys(doc.Gateways)))
	}

	images := &goCephImages{conf: cephConf(s), client: s.ClusterClientName}
	defer images.Close()
	desired, buildErr := desiredState(ctx, doc, id, s, images, o, log)
	if buildErr != nil && o.teardown {
		// Teardown needs only names, which survive these errors.
		log.Warn("configuration problems (teardown goes on)", "err", buildErr)
		buildErr = nil
	}

	f, err := lio.NewFS(o.root)
	if err != nil {
		return fatalf("restore: %w", err)
	}
	rep.Emulated = f.Emulated()
	observed, err := lio.Observe(f)
	if err != nil {
		return fatalf("restore: reading LIO: %w", err)
	}
	plan := lio.NewPlan(observed, desired)
	rep.Plan, rep.InSync = plan, plan.Empty()

	if buildErr != nil {
		rep.Errors = append(rep.Errors, buildErr.Error())
		if err := printReport(stdout, rep, o.json); err != nil {
			return err
		}
		what := "nothing applied"
		if o.dryRun {
			what = "the plan above is incomplete"
		}
		return failf("restore: the configuration cannot be fully built for gateway %s (%s):\n%w", id.Name, what, buildErr)
	}
	if o.dryRun || plan.Empty() {
		return printReport(stdout, rep, o.json)
	}

	if !f.Emulated() && plan.EnablesUserBackstores() {
		if err := lio.CheckTCMURunner("/proc"); err != nil {
			return failf("restore: nothing applied: %w", err)
		}
	}
	res, applyErr := lio.Apply(ctx, f, plan)
	rep.Applied = &appliedReport{Done: len(res.Done), Failed: len(res.Failed), Skipped: len(res.Skipped), Ops: res}
	log.Info("applied LIO plan", "done", len(res.Done), "failed", len(res.Failed), "skipped", len(res.Skipped))
	if applyErr != nil {
		rep.Errors = append(rep.Errors, applyErr.Error())
	}
	if err := printReport(stdout, rep, o.json); err != nil {
		return err
	}
	if applyErr != nil {
		return failf("restore: %d of %d LIO operations failed and %d were skipped; running restore again completes them (it re-reads LIO and plans only what is missing):\n%w",
			len(res.Failed), len(plan.Ops), len(res.Skipped), applyErr)
	}
	return nil
}

// desiredState is the LIO state this gateway should have: the configuration's, or
// nothing but the same ownership for --teardown.
func desiredState(ctx context.Context, doc *config.Doc, id host.Identity, s *settings.Settings, images imageSizer, o restoreOptions, log *slog.Logger) (lio.State, error) {
	opts := lio.FromConfigOptions{
		// non-nil even when empty: no address at all must fail every target, not
		// fall back to trusting portal_ip_addresses
		LocalAddrs: append([]netip.Addr{}, id.Addrs...),
		Logger:     log,
		DevicePath: func(pool, image string) (string, error) {
			if o.dryRun || o.teardown {
				// where krbd's udev rule links a mapped image; only shown
				return "/dev/rbd/" + pool + "/" + image, nil
			}
			return "", errBlockNotWired
		},
	}
	if !o.teardown {
		opts.Size = func(pool, image string) (int64, error) {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			return images.Size(pool, image)
		}
	}
	spec, specErr := lio.SpecFromConfig(doc, id.Name, s, opts)
	st, buildErr := lio.Build(spec)
	if o.teardown {
		st = st.ForTeardown()
	}
	return st, errors.Join(specErr, buildErr)
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
	case rep.InSync:
		b.WriteString("in sync: nothing to do\n")
	default:
		fmt.Fprintf(&b, "plan: %d operations\n", len(rep.Plan.Ops))
		for _, op := range rep.Plan.Ops {
			b.WriteString("  " + op.String() + "\n")
		}
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

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// imageSizer is what restore needs from RBD. Package rbd will provide it; until then
// goCephImages asks librbd directly.
type imageSizer interface {
	Size(pool, image string) (int64, error)
}

// goCephImages opens its own RADOS connection on first use, because package rados
// does not hand out its go-ceph connection, and a gateway without disks should not pay
// for one.
type goCephImages struct {
	conf, client string
	conn         *gorados.Conn
	ioctx        map[string]*gorados.IOContext
}

// Size reports an image's size. A missing pool or image wraps lio.ErrImageNotFound,
// so the disk is skipped as upstream does.
func (g *goCephImages) Size(pool, image string) (int64, error) {
	if g.conn == nil {
		if err := g.connect(); err != nil {
			return 0, err
		}
	}
	io, ok := g.ioctx[pool]
	if !ok {
		var err error
		io, err = g.conn.OpenIOContext(pool)
		if errors.Is(err, gorados.ErrNotFound) {
			return 0, fmt.Errorf("pool %s: %w: %w", pool, lio.ErrImageNotFound, err)
		}
		if err != nil {
			return 0, fmt.Errorf("pool %s: %w", pool, err)
		}
		g.ioctx[pool] = io
	}
	img, err := gorbd.OpenImageReadOnly(io, image, gorbd.NoSnapshot)
	if errors.Is(err, gorbd.ErrNotFound) {
		return 0, fmt.Errorf("image %s/%s: %w: %w", pool, image, lio.ErrImageNotFound, err)
	}
	if err != nil {
		return 0, fmt.Errorf("open image %s/%s: %w", pool, image, err)
	}
	defer img.Close()
	n, err := img.GetSize()
	if err != nil {
		return 0, fmt.Errorf("size of image %s/%s: %w", pool, image, err)
	}
	return int64(n), nil
}

func (g *goCephImages) connect() error {
	user, ok := strings.CutPrefix(g.client, "client.")
	if !ok {
		return fmt.Errorf("rbd: cluster_client_name %q: expected client.<id>", g.client)
	}
	c, err := gorados.NewConnWithUser(user)
	if err != nil {
		return fmt.Errorf("rbd: new connection: %w", err)
	}
	if err := c.ReadConfigFile(g.conf); err != nil {
		c.Shutdown()
		return fmt.Errorf("rbd: read %s: %w", g.conf, err)
	}
	// Same bound as package rados: a dead cluster must not hang the restore.
	secs := fmt.Sprint(int((30 * time.Second).Seconds()))
	for _, opt := range []string{"rados_mon_op_timeout", "rados_osd_op_timeout", "client_mount_timeout"} {
		if err := c.SetConfigOption(opt, secs); err != nil {
			c.Shutdown()
			return fmt.Errorf("rbd: set %s: %w", opt, err)
		}
	}
	if err := c.Connect(); err != nil {
		c.Shutdown()
		return fmt.Errorf("rbd: connect as %s: %w", g.client, err)
	}
	g.conn, g.ioctx = c, map[string]*gorados.IOContext{}
	return nil
}

// Close releases the connection, if one was made.
func (g *goCephImages) Close() {
	for _, io := range g.ioctx {
		io.Destroy()
	}
	if g.conn != nil {
		g.conn.Shutdown()
	}
}
