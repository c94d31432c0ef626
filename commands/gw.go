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
	"os"
	"os/signal"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/urfave/cli/v2"

	"ceph-iscsi/api"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/settings"
	"ceph-iscsi/stats"
)

type gwOptions struct {
	configPath  string
	root        string
	gatewayName string
	listen      string
	tlsCert     string
	tlsKey      string
}

func gwCommand() *cli.Command {
	return &cli.Command{
		Name:  "gw",
		Usage: "run the rbd-target-gw statistics daemon (Prometheus metrics)",
		Description: "Serves upstream's Prometheus exporter (/ and /metrics) on prometheus_host:prometheus_port " +
			"when prometheus_exporter is true, reading this host's LIO statistics on every scrape, plus " +
			"GET /api/stats (JSON, with api_user/api_password; over TLS only when api_secure) and its OpenAPI " +
			"document at /api/openapi.json. The port speaks plain HTTP and, when api_secure, TLS too. With " +
			"prometheus_exporter false it exits 0 at once. With NOTIFY_SOCKET set it reports READY=1 to systemd " +
			"once serving; SIGTERM stops it (exit 0). Fatal start-up errors exit 16.",
		Flags: []cli.Flag{
			configFlag(),
			configfsRootFlag(),
			&cli.StringFlag{
				Name:    "gateway-name",
				Usage:   "the gw_name label: this gateway's name (default: the FQDN, as upstream's socket.getfqdn())",
				EnvVars: []string{host.EnvGatewayName},
			},
			&cli.StringFlag{Name: "listen", Usage: "listen address host:port, instead of prometheus_host:prometheus_port"},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate when api_secure; if it or the key is missing, both come from the mon config-key store", Value: defaultTLSCert},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS private key when api_secure", Value: defaultTLSKey},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return cli.Exit(fmt.Sprintf("gw: unexpected argument %q", c.Args().First()), exitUsage)
			}
			return runGW(c.Context, gwOptions{
				configPath:  c.String("config"),
				root:        c.String("configfs-root"),
				gatewayName: c.String("gateway-name"),
				listen:      c.String("listen"),
				tlsCert:     c.String("tls-cert"),
				tlsKey:      c.String("tls-key"),
			}, c.App.ErrWriter)
		},
	}
}

func runGW(ctx context.Context, o gwOptions, stderr io.Writer) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Unlike rbd-target-api, the exporter needs no cluster: RADOS is
	// reached only for config:// settings or a TLS pair in the config-key
	// store.
	var conn *rados.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	s, err := settings.Load(o.configPath, func(partial *settings.Settings) (settings.KeyResolver, error) {
		c, err := rados.Connect(connOptions(partial))
		if err != nil {
			return nil, err
		}
		conn = c
		return c.ConfigKeyGet, nil
	})
	if err != nil {
		return fatalf("gw: settings: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: s.LogLevel()}))
	for _, w := range s.Warnings {
		log.Warn(w)
	}
	if !s.PrometheusExporter {
		log.Info("Integrated Prometheus exporter is disabled")
		// READY first: under Type=notify an exit without it is a failed start
		notify(log, sddaemon.SdNotifyReady)
		return nil
	}
	id, err := host.Resolve(o.gatewayName)
	if err != nil {
		return fatalf("gw: gateway identity: %w", err)
	}
	f, err := lio.NewFS(o.root)
	if err != nil {
		return fatalf("gw: %w", err)
	}
	log = log.With("gateway", id.Name)

	var tlsConf *tls.Config
	if s.APISecure {
		if conn == nil && !(fileExists(o.tlsCert) && fileExists(o.tlsKey)) {
			if conn, err = rados.Connect(connOptions(s)); err != nil {
				return fatalf("gw: TLS: %s or %s is missing and the config-key store is out of reach: %w", o.tlsCert, o.tlsKey, err)
			}
		}
		if tlsConf, err = loadTLS(o.tlsCert, o.tlsKey, s, conn, log); err != nil {
			return fatalf("gw: TLS: %w", err)
		}
	}
	if conn != nil {
		conn.Close()
		conn = nil
	}

	addr := s.PrometheusAddr()
	if o.listen != "" {
		addr = o.listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fatalf("gw: listen: %w", err)
	}
	if tlsConf != nil {
		ln = api.SniffTLS(ln, tlsConf)
	}
	defer ln.Close()

	collector := stats.NewCollector(f, id.Name, version, log)
	srv := &http.Server{
		Handler: api.NewStatsServer(api.StatsDeps{
			Settings: s,
			Gatherer: stats.NewRegistry(collector),
			Report:   func() any { return collector.Report() },
			Logger:   log,
		}),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("serving the Prometheus exporter", "addr", ln.Addr().String(), "tls", tlsConf != nil,
		"configfs", f.Root(), "emulated", f.Emulated())
	notify(log, sddaemon.SdNotifyReady)

	var runErr error
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: nothing to reload, statistics are read on every scrape")
				continue
			}
			log.Info("stopping", "signal", sig.String())
			break loop
		case <-ctx.Done():
			log.Info("stopping", "reason", ctx.Err())
			break loop
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				runErr = fatalf("gw: serve: %w", err)
			}
			break loop
		}
	}
	notify(log, sddaemon.SdNotifyStopping)
	shutdownHTTP(log, srv)
	return runErr
}
