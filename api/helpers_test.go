package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/settings"
)

const (
	gw1     = "gw1.example.test"
	gw2     = "gw2.example.test"
	tIQN    = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
	cIQN    = "iqn.1994-05.com.redhat:rh7-client"
	cIQN2   = "iqn.1994-05.com.redhat:rh7-client2"
	apiUser = "admin"
	apiPass = "s3cret-pass"
	// trustedIP is httptest.NewRequest's default source address.
	trustedIP = "192.0.2.1"
)

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// memStore is the Store of unit tests: the document kept as the bytes a
// real commit would write, so a test can check that a refused request left
// them untouched.
type memStore struct {
	mu      sync.Mutex
	raw     []byte
	commits int
}

func newMemStore(doc *config.Doc) *memStore {
	return &memStore{raw: doc.Marshal()}
}

func (m *memStore) Load(context.Context) (*config.Doc, error) {
	m.mu.Lock()
	raw := m.raw
	m.mu.Unlock()
	doc, _, err := config.Load(raw, config.UpgradeOptions{})
	return doc, err
}

func (m *memStore) Commit(_ context.Context, mutate rados.Mutation) (*config.Doc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	doc, _, err := config.Load(m.raw, config.UpgradeOptions{})
	if err != nil {
		return nil, err
	}
	known := doc.InvalidNames() // as the rados store: tolerate what is already there
	if err := mutate(doc); err != nil {
		return nil, err
	}
	doc.Touch(t0)
	b, err := doc.ValidateAndMarshalSince(known)
	if err != nil {
		return nil, err
	}
	m.raw = b
	m.commits++
	return doc, nil
}

func (m *memStore) bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.raw)
}

// rawStore lets a test compare the stored bytes of either store.
type rawStore interface {
	Store
	bytes() []byte
}

// fakeLIO records what the API asked local LIO to become.
type fakeLIO struct {
	mu         sync.Mutex
	reconciles int
	last       *config.Doc
	fail       error
	states     map[string]string
	sessions   int
	infos      map[string]ClientSession
}

func (f *fakeLIO) Reconcile(_ context.Context, doc *config.Doc) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.reconciles++
	f.last = doc.Clone()
	return nil
}

func (f *fakeLIO) Sessions(context.Context, string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions, nil
}

func (f *fakeLIO) ClientState(_ context.Context, _, c string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[c], nil
}

func (f *fakeLIO) ClientInfo(_ context.Context, _, c string) (ClientSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.infos[c], nil
}

func testSettings() *settings.Settings {
	s := settings.Defaults()
	s.APIUser = apiUser
	s.APIPassword = settings.Secret(apiPass)
	s.TrustedIPList = []string{trustedIP}
	s.MinimumGateways = 1
	s.PubKey = "no-such-key.pub" // CHAP passwords stay in clear text
	s.PrivKey = "no-such-key"
	return s
}

type testEnv struct {
	e       *echo.Echo
	store   rawStore
	lio     *fakeLIO
	lookups *atomic.Int64
}

func newEnv(t testing.TB, store rawStore, gateway string, mod func(*Deps)) *testEnv {
	t.Helper()
	env := &testEnv{store: store, lio: &fakeLIO{states: map[string]string{}}, lookups: &atomic.Int64{}}
	d := Deps{
		Settings: testSettings(),
		Store:    store,
		Gateway:  gateway,
		LIO:      env.lio,
		Now:      func() time.Time { return t0 },
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			env.lookups.Add(1)
			switch host {
			case "localhost":
				return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}, nil
			case gw1:
				return []netip.Addr{netip.MustParseAddr("198.51.100.1")}, nil
			case gw2:
				return []netip.Addr{netip.MustParseAddr("198.51.100.2")}, nil
			}
			return nil, errors.New("no such host")
		},
		LocalAddrs:     func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil },
		ISCSIListening: func() bool { return true },
		PeerURL:        func(gw string) string { return "http://" + gw + ".invalid" },
	}
	if mod != nil {
		mod(&d)
	}
	env.e = NewServer(d)
	return env
}

// seedDoc is a document with gateways gws, each a portal of target tIQN,
// and disk rbd/disk1 exported by it.
func seedDoc(gws ...string) *config.Doc {
	d := config.NewDoc(t0)
	t := config.NewTarget(t0)
	var ips []string
	for i := range gws {
		ips = append(ips, fmt.Sprintf("198.51.100.%d", i+1))
	}
	for i, gw := range gws {
		d.Gateways[gw] = &config.Gateway{Created: config.Timestamp(t0), Updated: config.Timestamp(t0)}
		var inactive []string
		for j, ip := range ips {
			if j != i {
				inactive = append(inactive, ip)
			}
		}
		t.Portals[gw] = &config.Portal{
			PortalIPAddresses: []string{ips[i]}, GatewayIPList: ips,
			InactivePortalIPs: inactive, TPGs: len(ips),
		}
	}
	if len(gws) > 0 {
		t.IPList = ips
	}
	owner := gw1
	d.Disks["rbd/disk1"] = &config.Disk{
		Pool: "rbd", Image: "disk1", PoolID: 1, Backstore: "user:rbd", BackstoreObjectName: "rbd.disk1",
		AllocatingHost: &owner, Owner: &owner, Controls: map[string]any{},
		Created: config.Timestamp(t0), Updated: config.Timestamp(t0),
	}
	t.Disks["rbd/disk1"] = config.LunRef{LunID: 0}
	d.Targets[tIQN] = t
	return d
}

type reqOpt func(*http.Request)

func from(addr string) reqOpt { return func(r *http.Request) { r.RemoteAddr = addr } }
func noAuth() reqOpt          { return func(r *http.Request) { r.Header.Del("Authorization") } }
func creds(u, p string) reqOpt {
	return func(r *http.Request) { r.SetBasicAuth(u, p) }
}

// do sends one request with a form body, authenticated by default.
func (env *testEnv) do(t testing.TB, method, path string, form url.Values, opts ...reqOpt) *httptest.ResponseRecorder {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(apiUser, apiPass)
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

func msgOf(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response %q is not a JSON object: %v", rec.Body.String(), err)
	}
	s, _ := m["message"].(string)
	return s
}

func expect(t testing.TB, rec *httptest.ResponseRecorder, status int, msg string) {
	t.Helper()
	if rec.Code != status || (msg != "" && msgOf(t, rec) != msg) {
		t.Fatalf("got %d %s, want %d {\"message\": %q}", rec.Code, strings.TrimSpace(rec.Body.String()), status, msg)
	}
}

func loadDoc(t testing.TB, s Store) *config.Doc {
	t.Helper()
	d, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
