package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/prometheus/client_golang/prometheus"

	"ceph-iscsi/lio"
	"ceph-iscsi/stats"
)

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// statsReport is a small but complete reading: one target, one LUN, one
// logged-in client with I/O.
func statsReport() stats.Report {
	st := lio.Statistics{
		StorageObjects: []lio.StorageObjectStats{{Name: "rbd.disk1", Plugin: lio.PluginUser, Size: 1 << 30}},
		Targets: []lio.TargetStats{{IQN: "iqn.2003-01.com.example:t", Sessions: 1, TPGs: []lio.TPGStats{{
			Tag: 1, Enabled: true, Portals: []string{"192.0.2.1:3260"},
			LUNs: []lio.LUNStats{{Index: 0, StorageObject: "rbd.disk1", ALUAGroup: "ao", Port: lio.IOCounters{Commands: 9, WriteMiB: 1}}},
			ACLs: []lio.ACLStats{{Initiator: "iqn.1994-05.com.example:c", HasSession: true,
				Session:    lio.Session{State: "LOGGED_IN"},
				MappedLUNs: []lio.MappedLUNStats{{Index: 0, TPGLUN: 0, StorageObject: "rbd.disk1", IO: lio.IOCounters{Commands: 9, WriteMiB: 1}}}}},
		}}}},
	}
	return stats.NewReport(st, nil, "gw1", "v1")
}

type statsServer struct {
	addr   string
	plain  *http.Client
	tlsCli *http.Client
}

func startStatsServer(t *testing.T, secure bool) statsServer {
	t.Helper()
	s := testSettings()
	s.APISecure = secure
	reg := prometheus.NewRegistry()
	iops := prometheus.NewCounterVec(prometheus.CounterOpts{Name: stats.MetricLUNIOPS, Help: "IOPS per LUN per client"}, []string{"lun_name"})
	iops.WithLabelValues("rbd.disk1").Add(9)
	reg.MustRegister(iops)
	h := NewStatsServer(StatsDeps{Settings: s, Gatherer: reg, Report: func() any { return statsReport() }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = SniffTLS(ln, &tls.Config{Certificates: []tls.Certificate{testCert(t)}, MinVersion: tls.VersionTLS12})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return statsServer{
		addr:  ln.Addr().String(),
		plain: &http.Client{Timeout: 30 * time.Second},
		tlsCli: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, //nolint:gosec // self-signed test certificate
	}
}

func (s statsServer) get(t *testing.T, useTLS bool, path string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	scheme, cli := "http", s.plain
	if useTLS {
		scheme, cli = "https", s.tlsCli
	}
	req, _ := http.NewRequest(http.MethodGet, scheme+"://"+s.addr+path, nil)
	for k, v := range hdr {
		if k == "auth" {
			u, p, _ := strings.Cut(v, ":")
			req.SetBasicAuth(u, p)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := cli.Do(req)
	if err != nil {
		t.Fatalf("GET %s %s: %v", scheme, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestStatsServerRoutes(t *testing.T) {
	s := startStatsServer(t, true)
	for _, useTLS := range []bool{false, true} {
		code, _, body := s.get(t, useTLS, "/", nil)
		if code != 200 || !strings.Contains(body, "<title>Ceph/iSCSI Prometheus Exporter</title>") || !strings.Contains(body, "href='/metrics'") {
			t.Fatalf("GET / (tls %v): %d %s", useTLS, code, body)
		}
		code, h, body := s.get(t, useTLS, MetricsPath, nil)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") ||
			!strings.Contains(body, "# TYPE ceph_iscsi_lun_iops counter\n") ||
			!strings.Contains(body, `ceph_iscsi_lun_iops{lun_name="rbd.disk1"} 9`) {
			t.Fatalf("GET /metrics (tls %v): %d %q\n%s", useTLS, code, h.Get("Content-Type"), body)
		}
	}
	// Prometheus' own Accept header: OpenMetrics, with upstream's counter
	// name kept (typed unknown, since it lacks _total)
	code, h, body := s.get(t, false, MetricsPath, map[string]string{"Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"})
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/openmetrics-text") ||
		!strings.Contains(body, "# TYPE ceph_iscsi_lun_iops unknown\n") || !strings.Contains(body, `ceph_iscsi_lun_iops{lun_name="rbd.disk1"} 9`) ||
		!strings.HasSuffix(body, "# EOF\n") {
		t.Fatalf("OpenMetrics: %d %q\n%s", code, h.Get("Content-Type"), body)
	}
}

func TestStatsServerAuth(t *testing.T) {
	s := startStatsServer(t, true)
	good := map[string]string{"auth": apiUser + ":" + apiPass}
	// api_secure: credentials never over plain HTTP
	if code, _, body := s.get(t, false, StatsPath, good); code != 403 || !strings.Contains(body, "needs HTTPS") {
		t.Fatalf("plain: %d %s", code, body)
	}
	if code, _, body := s.get(t, true, StatsPath, nil); code != 401 || !strings.Contains(body, "Missing credentials") {
		t.Fatalf("no credentials: %d %s", code, body)
	}
	if code, _, body := s.get(t, true, StatsPath, map[string]string{"auth": apiUser + ":wrong"}); code != 401 || !strings.Contains(body, "mismatch") {
		t.Fatalf("wrong password: %d %s", code, body)
	}
	code, _, body := s.get(t, true, StatsPath, good)
	want, _ := json.Marshal(statsReport())
	var g, w any
	_ = json.Unmarshal([]byte(body), &g)
	_ = json.Unmarshal(want, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if code != 200 || string(gb) != string(wb) {
		t.Fatalf("stats: %d\n got %s\nwant %s", code, gb, wb)
	}

	// without api_secure, plain HTTP is fine
	p := startStatsServer(t, false)
	if code, _, body := p.get(t, false, StatsPath, good); code != 200 || !strings.Contains(body, `"client_iqn":"iqn.1994-05.com.example:c"`) {
		t.Fatalf("plain, api_secure false: %d %s", code, body)
	}
}

// TestStatsOpenAPI: the document is valid OpenAPI 3.0, lists exactly the
// routes served, and the /api/stats body matches its schema.
func TestStatsOpenAPI(t *testing.T) {
	s := startStatsServer(t, false)
	code, _, body := s.get(t, false, OpenAPIPath, nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	doc, err := openapi3.NewLoader().LoadFromData([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for p, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			paths = append(paths, m+" "+p)
			if code, _, _ := s.get(t, false, p, map[string]string{"auth": apiUser + ":" + apiPass}); code != 200 {
				t.Errorf("%s %s: %d", m, p, code)
			}
		}
	}
	if len(paths) != 4 {
		t.Fatalf("operations %v", paths)
	}
	schema := doc.Components.Schemas["Stats"].Value
	for _, r := range []stats.Report{statsReport(), stats.NewReport(lio.Statistics{}, errors.New("boom"), "gw", "v")} {
		b, _ := json.Marshal(r)
		var v any
		_ = json.Unmarshal(b, &v)
		if err := schema.VisitJSON(v); err != nil {
			t.Errorf("report %s does not match the schema: %v", b, err)
		}
	}
}
