package api

import (
	"bufio"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ceph-iscsi/settings"
)

// Paths of rbd-target-gw's HTTP server.
const (
	MetricsPath = "/metrics"
	StatsPath   = "/api/stats"
)

// statsRootPage is upstream's / page, verbatim.
const statsRootPage = `<!DOCTYPE html>
    <html>
        <head><title>Ceph/iSCSI Prometheus Exporter</title></head>
        <body>
            <h1>Ceph/iSCSI Prometheus Exporter</h1>
            <p><a href='/metrics'>Metrics</a></p>
        </body>
    </html>`

// StatsDeps are what rbd-target-gw's HTTP server needs.
type StatsDeps struct {
	// Settings give the credentials of /api/stats (api_user,
	// api_password, api_failed_login_limit) and whether it needs TLS
	// (api_secure).
	Settings *settings.Settings
	// Gatherer is scraped on /metrics (the stats collector's registry).
	Gatherer prometheus.Gatherer
	// Report reads the statistics once and returns the /api/stats body.
	Report func() any
	Now    func() time.Time
	Logger *slog.Logger
}

// NewStatsServer is rbd-target-gw's HTTP server: upstream's / and /metrics
// (no authentication, plain HTTP or TLS, whatever the scraper speaks),
// GET /api/stats with the API's basic authentication, which when
// api_secure is set must come over TLS, and the OpenAPI description of
// these at /api/openapi.json.
func NewStatsServer(d StatsDeps) *echo.Echo {
	s := newServer(Deps{Settings: d.Settings, Now: d.Now, Logger: d.Logger})
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	metrics := promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{
		// OpenMetrics when the scraper asks; upstream's counters, whose
		// names lack _total, are then typed unknown, keeping their names.
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
		// a collector error must not hide the metrics that were read
		ErrorHandling: promhttp.ContinueOnError,
	})
	e.GET("/", func(c echo.Context) error { return c.HTML(http.StatusOK, statsRootPage) })
	e.GET(MetricsPath, echo.WrapHandler(metrics))
	e.GET(StatsPath, func(c echo.Context) error {
		if s.Settings.APISecure && c.Request().TLS == nil {
			return httpErr(http.StatusForbidden, "%s needs HTTPS: api_secure is true", StatsPath)
		}
		if err := s.checkCredentials(c); err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, d.Report())
	})
	e.GET(OpenAPIPath, statsOpenAPI())
	return e
}

// SniffTLS serves TLS and plain HTTP on one listener: a connection whose
// first byte is a TLS handshake record is returned as a *tls.Conn (which
// http.Server recognises), any other as it is. Upstream's exporter is plain
// HTTP and Prometheus scrape configurations say so; /api/stats, which
// carries credentials, can still be reached over TLS on the same port.
func SniffTLS(ln net.Listener, conf *tls.Config) net.Listener {
	return &sniffListener{Listener: ln, conf: conf, conns: make(chan net.Conn), done: make(chan struct{})}
}

// sniffTimeout bounds how long a connection may stay silent before its
// first byte decides what it speaks.
const sniffTimeout = 30 * time.Second

type sniffListener struct {
	net.Listener
	conf  *tls.Config
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

// recordTypeHandshake is the first byte of a TLS ClientHello record.
const recordTypeHandshake = 0x16

func (l *sniffListener) Accept() (net.Conn, error) {
	l.once.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// acceptLoop accepts and classifies each connection in its own goroutine,
// so that a client that says nothing cannot hold up the others.
func (l *sniffListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.err = err
			close(l.done)
			return
		}
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
			br := bufio.NewReader(c)
			first, err := br.Peek(1)
			_ = c.SetReadDeadline(time.Time{})
			if err != nil {
				c.Close()
				return
			}
			var out net.Conn = &peekedConn{Conn: c, r: br}
			if first[0] == recordTypeHandshake {
				out = tls.Server(out, l.conf)
			}
			select {
			case l.conns <- out:
			case <-l.done:
				c.Close()
			}
		}()
	}
}

// peekedConn gives back the bytes read to classify the connection.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// statsOpenAPI serves the OpenAPI document of rbd-target-gw's routes.
func statsOpenAPI() echo.HandlerFunc {
	body, err := encodeJSON(statsOpenAPIDoc())
	return func(c echo.Context) error {
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
	}
}

func statsOpenAPIDoc() map[string]any {
	obj := func(required []string, props map[string]any) map[string]any {
		return map[string]any{"type": "object", "required": required, "properties": props, "additionalProperties": false}
	}
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	num := func(desc string) map[string]any {
		return map[string]any{"type": "integer", "minimum": 0, "description": desc}
	}
	counterProps := func(of string, extra map[string]any) map[string]any {
		m := map[string]any{
			"commands":    num("SCSI commands " + of + " (cumulative)"),
			"read_bytes":  num("bytes read " + of + " (cumulative, the kernel counts whole MiB)"),
			"write_bytes": num("bytes written " + of + " (cumulative, the kernel counts whole MiB)"),
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	counterNames := []string{"commands", "read_bytes", "write_bytes"}
	lun := obj(append([]string{"lun_name", "size", "owner", "mapped", "logged_in_sessions"}, counterNames...),
		counterProps("by every client through this gateway's target ports", map[string]any{
			"lun_name":           str("LIO storage object name (<pool>.<image> or backstore_object_name)"),
			"size":               num("size in bytes as LIO knows it (user:rbd dev_size, fileio file size; 0 for block)"),
			"owner":              str("portal IP of the TPG in which the LUN is ALUA active/optimized; empty when none on this gateway"),
			"mapped":             map[string]any{"type": "boolean", "description": "the LUN is mapped to at least one client"},
			"logged_in_sessions": num("logged-in sessions of the clients the LUN is mapped to"),
		}))
	clientLUN := obj(append([]string{"lun_name", "lun_id"}, counterNames...),
		counterProps("by this client", map[string]any{
			"lun_name": str("LIO storage object name"),
			"lun_id":   num("the LUN id the client sees"),
		}))
	client := obj(append([]string{"client_iqn", "logged_in_sessions", "luns"}, counterNames...),
		counterProps("by this client, all its LUNs", map[string]any{
			"client_iqn":         str("initiator IQN"),
			"logged_in_sessions": num("the client's sessions in state LOGGED_IN on this gateway (one per target and TPG at most)"),
			"luns":               map[string]any{"type": "array", "items": clientLUN},
		}))
	target := obj([]string{"target_iqn", "sessions", "tpgs"}, map[string]any{
		"target_iqn": str("target IQN"),
		"sessions":   num("iSCSI sessions of the target on this gateway"),
		"tpgs":       num("target portal groups of the target on this gateway"),
	})
	report := obj([]string{"gateway", "version", "complete", "targets", "luns", "clients"}, map[string]any{
		"gateway":  str("this gateway's name (its FQDN)"),
		"version":  str("ceph-iscsi version"),
		"complete": map[string]any{"type": "boolean", "description": "false when part of LIO could not be read; what could be read is reported"},
		"error":    str("why the reading is incomplete"),
		"targets":  map[string]any{"type": "array", "items": target},
		"luns":     map[string]any{"type": "array", "items": lun},
		"clients":  map[string]any{"type": "array", "items": client},
	})
	msg := func(desc string) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{
			"schema": map[string]any{"$ref": "#/components/schemas/Message"}}}}
	}
	text := func(desc, mime string) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{mime: map[string]any{"schema": map[string]any{"type": "string"}}}}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "ceph-iscsi gateway statistics (rbd-target-gw)",
			"version": "1",
			"description": "Served on prometheus_host:prometheus_port. / and /metrics are upstream's Prometheus exporter " +
				"(no authentication); /api/stats is the same reading as JSON, with the REST API's credentials. " +
				"The port speaks plain HTTP and TLS; with api_secure, /api/stats answers only over TLS.",
		},
		"paths": map[string]any{
			"/": map[string]any{"get": map[string]any{
				"operationId": "get_root", "summary": "The exporter's HTML page, linking to /metrics", "security": []any{},
				"responses": map[string]any{"200": text("upstream's page", "text/html")},
			}},
			MetricsPath: map[string]any{"get": map[string]any{
				"operationId": "get_metrics", "summary": "Prometheus metrics of this gateway's LIO (text format 0.0.4, or OpenMetrics when asked)",
				"security":  []any{},
				"responses": map[string]any{"200": text("the metrics; also when no target exists (upstream: 404)", "text/plain")},
			}},
			StatsPath: map[string]any{"get": map[string]any{
				"operationId": "get_stats", "summary": "Per-LUN and per-client statistics of this gateway",
				"security": []any{map[string]any{"basicAuth": []string{}}},
				"responses": map[string]any{
					"200": map[string]any{"description": "the statistics", "content": map[string]any{
						"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Stats"}}}},
					"401": msg("missing or wrong credentials"),
					"403": msg("plain HTTP while api_secure is true"),
					"429": msg("too many failed logins from this source; wait Retry-After seconds"),
				},
			}},
			OpenAPIPath: map[string]any{"get": map[string]any{
				"operationId": "get_openapi", "summary": "This document", "security": []any{},
				"responses": map[string]any{"200": map[string]any{"description": "OpenAPI 3.0 document",
					"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}},
			}},
		},
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"basicAuth": map[string]any{"type": "http", "scheme": "basic", "description": "api_user and api_password of iscsi-gateway.cfg"},
			},
			"schemas": map[string]any{
				"Stats": report,
				"Message": map[string]any{"type": "object", "required": []string{"message"},
					"properties": map[string]any{"message": map[string]any{"type": "string"}}},
			},
		},
	}
}
