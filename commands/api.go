package commands

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/urfave/cli/v2"

	"ceph-iscsi/api"
	"ceph-iscsi/config"
	"ceph-iscsi/devstatus"
	"ceph-iscsi/gateway"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

// The TLS files upstream hard-codes (spec 4.3), and the config-key entries
// cephadm stores them under when they are absent.
const (
	defaultTLSCert  = "/etc/ceph/iscsi-gateway.crt"
	defaultTLSKey   = "/etc/ceph/iscsi-gateway.key"
	configKeyTLSFmt = "iscsi/%s/iscsi-gateway.%s"
)

// exitTeardownFailed is upstream's exit status when a target could not be
// removed at shutdown (spec 6.6).
const exitTeardownFailed = 8

// shutdownGrace bounds how long in-flight requests may finish on SIGTERM.
const shutdownGrace = 30 * time.Second

type apiOptions struct {
	configPath string
	root       string
	identity   identityOptions
	listen     string
	peers      map[string]string
	tlsCert    string
	tlsKey     string
}

func configfsRootFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "configfs-root",
		Usage:   "configfs mount point; any other existing directory is an emulated configfs",
		EnvVars: []string{envConfigfsRoot},
		Value:   lio.DefaultRoot,
	}
}

func apiCommand() *cli.Command {
	return &cli.Command{
		Name:  "api",
		Usage: "run the rbd-target-api daemon (restores LIO and serves the REST API)",
		Description: "Removes this host's OSD blocklist entries, opens the gateway configuration, " +
			"restores LIO from it and serves the REST API on api_host:api_port (HTTPS when api_secure). " +
			"Every new configuration epoch (a commit by any gateway) is reconciled into LIO; SIGHUP " +
			"re-reads the configuration and reconciles; SIGTERM stops serving, removes this gateway's " +
			"LIO objects and exits. With NOTIFY_SOCKET set it reports READY=1 to systemd once LIO is restored and the API " +
			"serves, RELOADING=1 then READY=1 around a SIGHUP's reconcile, and STOPPING=1 on SIGTERM. " +
			"Fatal start-up errors exit 16.",
		Flags: append([]cli.Flag{
			configFlag(),
			configfsRootFlag(),
			&cli.StringFlag{Name: "listen", Usage: "listen address host:port, instead of api_host:api_port"},
			&cli.StringSliceFlag{
				Name: "peer",
				Usage: "NAME=URL: reach gateway NAME at URL (scheme://host:port) instead of " +
					"<api scheme>://NAME:api_port; repeat for each gateway (several gateways on one host)",
			},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate when api_secure; if it or the key is missing, both come from the mon config-key store", Value: defaultTLSCert},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS private key when api_secure", Value: defaultTLSKey},
		}, identityFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return cli.Exit(fmt.Sprintf("api: unexpected argument %q", c.Args().First()), exitUsage)
			}
			ido, err := identityFromFlags(c, "api")
			if err != nil {
				return err
			}
			o := apiOptions{
				configPath: c.String("config"),
				root:       c.String("configfs-root"),
				identity:   ido,
				listen:     c.String("listen"),
				tlsCert:    c.String("tls-cert"),
				tlsKey:     c.String("tls-key"),
				peers:      map[string]string{},
			}
			for _, p := range c.StringSlice("peer") {
				name, url, ok := strings.Cut(p, "=")
				if !ok || name == "" || !strings.Contains(url, "://") {
					return cli.Exit(fmt.Sprintf("api: --peer %q: want NAME=scheme://host:port", p), exitUsage)
				}
				o.peers[name] = strings.TrimSuffix(url, "/")
			}
			return runAPI(c.Context, o, c.App.ErrWriter)
		},
	}
}

// daemon is the running rbd-target-api.
type daemon struct {
	log   *slog.Logger
	store *rados.Store
	rec   *gateway.Reconciler
}

func runAPI(ctx context.Context, o apiOptions, stderr io.Writer) error {
	// Signals are caught from the start: a SIGTERM during start-up must not
	// leave half-restored LIO behind without the teardown.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	stopProfile := startCPUProfile(stderr)
	defer stopProfile()

	s, conn, err := loadSettings("api", o.configPath)
	if err != nil {
		return err
	}
	defer conn.Close()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: s.LogLevel()}))
	for _, w := range s.Warnings {
		log.Warn(w)
	}

	id, err := o.identity.resolve("api")
	if err != nil {
		return err
	}
	log = log.With("gateway", id.Name)

	// Fenced tcmu-runner/librbd clients of this host must be let back in
	// before LIO serves the images again (spec 6.1 step 5).
	unblocked, err := conn.UnblockHost(id.Addrs)
	if err != nil {
		return fatalf("api: OSD blocklist cleanup: %w", err)
	}
	for _, a := range unblocked {
		log.Info("removed OSD blocklist entry of this host", "addr", a)
	}

	store, err := openConfigStore(ctx, conn, s, id, log)
	if err != nil {
		return fatalf("api: config object %s/%s: %w", s.Pool, s.GatewayConf, err)
	}
	defer store.Close()

	var tlsConf *tls.Config
	if s.APISecure {
		if tlsConf, err = loadTLS(o.tlsCert, o.tlsKey, s, conn, log); err != nil {
			return fatalf("api: TLS: %w", err)
		}
	}
	addr := s.APIAddr()
	if o.listen != "" {
		addr = o.listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fatalf("api: listen: %w", err)
	}
	defer ln.Close()

	f, err := lio.NewFS(o.root)
	if err != nil {
		return fatalf("api: %w", err)
	}
	rec := gateway.New(gateway.Options{
		FS: f, Settings: s, Identity: id, Conn: conn, CephConf: cephConf(s), Logger: log,
	})
	d := &daemon{log: log, store: store, rec: rec}
	drv := gateway.NewDriver(rec, store, gateway.DriverOptions{
		DriftCheck: time.Duration(s.DriftCheckInterval) * time.Second, Logger: log,
	})

	// define() (spec 6.1 step 6): what fails is served without, reported
	// (GET /api/gatewayinfo) and retried by drv.Run.
	doc, err := drv.Restore(ctx)
	if err != nil {
		return fatalf("api: %w", err)
	}
	log.Info("LIO restored", "epoch", doc.Epoch, "configfs", f.Root(), "emulated", f.Emulated(), "complete", !drv.Pending())

	// spec 9: tcmu-runner's per-image health from the mgr's service map
	tracker := devstatus.New(devstatus.Options{
		StableStateResetCount: s.DeviceStatus.StableStateResetCount,
		LockLostThreshold:     s.DeviceStatus.LockLostCntThreshhold,
	})
	deps := api.Deps{
		Settings: s,
		Store:    store,
		Gateway:  id.Name,
		LIO:      localLIO{rec},
		Images: api.NewRBDImages(conn, rbd.RemoveOptions{
			Timeout:  time.Duration(s.TimeOut) * time.Second,
			Interval: time.Duration(s.LoopDelay) * time.Second,
		}),
		HTTPClient: peerClient(s),
		PeerURL:    peerURL(s, o.peers),
		Logger:     log,
	}
	deps.DeviceStatus = tracker
	if o.identity.localAddrs != nil {
		addrs := o.identity.localAddrs
		deps.LocalAddrs = func() ([]netip.Addr, error) { return addrs, nil }
	}
	if f.Emulated() {
		// Nothing listens on 3260 for an emulated LIO: its portals stand
		// for the listener, so /api/_ping answers as a real gateway would.
		deps.ISCSIListening = func() bool { return emulatedListening(f) }
	}
	srv := &http.Server{
		Handler:           api.NewServer(deps),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		drv.Run(runCtx)
	}()

	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		tracker.Run(runCtx, conn, time.Duration(s.DeviceStatus.StatusCheckInterval)*time.Second, log)
	}()

	serveErr := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	log.Info("serving the REST API", "addr", ln.Addr().String(), "scheme", s.APIScheme())
	notify(log, sddaemon.SdNotifyReady)

	var runErr error
	// reloading is the reload in progress; a SIGHUP during one queues
	// another (again), which starts when it ends.
	var reloading <-chan struct{}
	again := false
	startReload := func() {
		notify(log, sddaemon.SdNotifyReloading)
		// READY=1 follows RELOADING=1 only once the reload's reconcile is over.
		reloading = drv.Reload()
	}
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: re-applying the configuration")
				if reloading != nil {
					again = true
				} else {
					startReload()
				}
				continue
			}
			log.Info("stopping", "signal", sig.String())
			break loop
		case <-ctx.Done():
			log.Info("stopping", "reason", ctx.Err())
			break loop
		case <-reloading:
			reloading = nil
			if again {
				again = false
				startReload()
				continue
			}
			notify(log, sddaemon.SdNotifyReady)
		case err := <-serveErr:
			runErr = fatalf("api: serve: %w", err)
			break loop
		}
	}

	notify(log, sddaemon.SdNotifyStopping)
	stopProfile() // the profile covers serving, not the teardown
	shutdownHTTP(log, srv)
	cancel()
	<-watchDone
	<-statusDone // before conn.Close: a poll may be in librados
	// no deadline: systemd's TimeoutStopSec bounds a teardown of many LUNs
	if err := d.teardown(context.Background()); err != nil {
		if runErr != nil {
			return runErr
		}
		return cli.Exit(fmt.Errorf("api: teardown: %w", err), exitTeardownFailed)
	}
	return runErr
}

// cpuProfileEnv names a file for a CPU profile of the daemon from start-up
// until it stops serving; a debugging aid for the benches, kept out of the
// REST API so that no client can start one.
const cpuProfileEnv = "CEPH_ISCSI_CPUPROFILE"

// startCPUProfile starts the profile cpuProfileEnv asks for, if any, and
// returns what stops it (safe to call more than once). A profile that cannot
// start is reported and the daemon runs without.
func startCPUProfile(stderr io.Writer) (stop func()) {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "api: %s: %v\n", cpuProfileEnv, err)
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(stderr, "api: %s: %v\n", cpuProfileEnv, err)
			}
		})
	}
}

// localLIO adapts the reconciler to the API's LocalLIO seam; the session
// type is the API's, so package gateway need not import it.
type localLIO struct{ *gateway.Reconciler }

func (l localLIO) ClientInfo(ctx context.Context, targetIQN, clientIQN string) (api.ClientSession, error) {
	s, ok, err := l.ClientSession(ctx, targetIQN, clientIQN)
	if err != nil || !ok {
		return api.ClientSession{}, err
	}
	return api.ClientSession{Alias: s.Alias, State: strings.ToUpper(s.State), Addresses: s.Addresses}, nil
}

// ReconcileStatus reports what the last reconcile left undone, for GET
// /api/gatewayinfo.
func (l localLIO) ReconcileStatus() api.ReconcileStatus {
	st := l.Status()
	out := api.ReconcileStatus{Epoch: st.Epoch, Converged: st.Converged, Runs: st.Runs}
	for _, p := range st.Problems {
		out.Errors = append(out.Errors, api.ReconcileError{Object: p.Object, Error: p.Error})
	}
	return out
}

var _ api.LocalLIO = localLIO{}

// teardown removes this gateway's LIO objects (spec 6.6), with the freshest
// configuration.
func (d *daemon) teardown(ctx context.Context) error {
	doc, err := d.store.Load(ctx)
	if err != nil {
		// The reconciler remembers what earlier documents gave this
		// gateway; with an empty one it removes exactly that.
		d.log.Warn("cannot read the configuration; tearing down what this daemon restored", "err", err)
		doc = config.NewDoc(time.Now())
	}
	rep, err := d.rec.Teardown(ctx, doc)
	if err != nil {
		return err
	}
	n := 0
	if rep.Applied != nil {
		n = len(rep.Applied.Done)
	}
	d.log.Info("LIO torn down", "epoch", doc.Epoch, "operations", n)
	return nil
}

// shutdownHTTP stops a daemon's HTTP server, giving requests in flight
// shutdownGrace to finish.
func shutdownHTTP(log *slog.Logger, srv *http.Server) {
	ctx, stop := context.WithTimeout(context.Background(), shutdownGrace)
	defer stop()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("HTTP server shutdown", "err", err)
	}
}

// notify tells systemd about a state change; without NOTIFY_SOCKET it does
// nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
	}
}

// loadTLS reads the certificate and key from files or, when either file is
// missing, from the mon config-key store where cephadm puts them (spec 4.3).
// The key stays in memory: unlike upstream, it is never written to a temp
// file.
func loadTLS(certPath, keyPath string, s *settings.Settings, conn *rados.Conn, log *slog.Logger) (*tls.Config, error) {
	var pair tls.Certificate
	var err error
	if fileExists(certPath) && fileExists(keyPath) {
		if pair, err = tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return nil, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
		}
	} else {
		certKey := fmt.Sprintf(configKeyTLSFmt, s.ClusterClientName, "crt")
		keyKey := fmt.Sprintf(configKeyTLSFmt, s.ClusterClientName, "key")
		cert, cerr := conn.ConfigKeyGet(certKey)
		key, kerr := conn.ConfigKeyGet(keyKey)
		if cerr != nil || kerr != nil {
			return nil, fmt.Errorf("api_secure is set, %s or %s is missing, and the config-key store has no %s and %s: %w",
				certPath, keyPath, certKey, keyKey, errors.Join(cerr, kerr))
		}
		if pair, err = tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
			return nil, fmt.Errorf("config-key %s, %s: %w", certKey, keyKey, err)
		}
		log.Info("TLS certificate and key read from the config-key store", "cert", certKey)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		// upstream serves TLS 1.2 only; newer clients may use 1.3
		MinVersion: tls.VersionTLS12,
	}, nil
}

// peerClient reaches the other gateways. As upstream, certificates are not
// verified: gateways commonly use self-signed ones, and every gateway shares
// the API credentials anyway.
func peerClient(s *settings.Settings) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.APISecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // upstream's behaviour, see above
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// peerURL is upstream's scheme://<gateway name>:api_port, unless --peer names
// another address for the gateway.
func peerURL(s *settings.Settings, peers map[string]string) func(string) string {
	scheme, port := s.APIScheme(), fmt.Sprint(s.APIPort)
	return func(gw string) string {
		if u, ok := peers[gw]; ok {
			return u
		}
		return scheme + "://" + net.JoinHostPort(gw, port)
	}
}

// emulatedListening reports whether an emulated LIO has an enabled TPG with a
// portal: what would make the kernel listen on 3260. Every peer's _ping
// pre-flight asks, also while a reconcile is changing the tree, so it reads
// only the TPGs' enable files and portal directories: a full lio.Observe
// costs ~0.2 s with 600 ACLs, and fails (a false 503) when a directory
// vanishes under it.
func emulatedListening(f lio.FS) bool {
	iscsi := filepath.Join(f.Root(), "target", "iscsi")
	targets, _ := os.ReadDir(iscsi)
	for _, t := range targets {
		tpgs, _ := os.ReadDir(filepath.Join(iscsi, t.Name()))
		for _, tpg := range tpgs {
			if !strings.HasPrefix(tpg.Name(), "tpgt_") {
				continue
			}
			dir := filepath.Join(iscsi, t.Name(), tpg.Name())
			enable, err := os.ReadFile(filepath.Join(dir, "enable"))
			if err != nil || strings.TrimSpace(string(enable)) != "1" {
				continue
			}
			if portals, _ := os.ReadDir(filepath.Join(dir, "np")); len(portals) > 0 {
				return true
			}
		}
	}
	return false
}
