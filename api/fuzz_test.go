package api

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/gateway"
	"ceph-iscsi/lio"
)

// emuLIO is the real lio package (SpecFromConfig, Build, Observe, NewPlan,
// Apply) on an emulated configfs root; only the RBD facts are invented.
// Like the daemon's reconciler it remembers every target and storage object
// it built, so a DELETE removes the leftovers.
type emuLIO struct {
	fs              lio.FS
	gateway         string
	mu              sync.Mutex
	targets, stores map[string]bool
}

func newEmuLIO(t testing.TB, root, gateway string) *emuLIO {
	t.Helper()
	f, err := lio.NewEmulatedFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return &emuLIO{fs: f, gateway: gateway, targets: map[string]bool{}, stores: map[string]bool{}}
}

func (e *emuLIO) Reconcile(ctx context.Context, doc *config.Doc) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	opts := gateway.FromConfigOptions{
		Size:                  func(string, string) (int64, error) { return 1 << 30, nil },
		ManagedTargets:        sortedNames(e.targets),
		ManagedStorageObjects: sortedNames(e.stores),
	}
	spec, err := gateway.SpecFromConfig(doc, e.gateway, testSettings(), opts)
	if err != nil {
		return err
	}
	st, err := lio.Build(spec)
	if err != nil {
		return err
	}
	for _, n := range st.ForTeardown().Managed.Targets {
		e.targets[n] = true
	}
	for _, n := range st.ForTeardown().Managed.StorageObjects {
		e.stores[n] = true
	}
	obs, err := lio.Observe(e.fs)
	if err != nil {
		return err
	}
	_, err = lio.Apply(ctx, e.fs, lio.NewPlan(obs, st))
	return err
}

func (e *emuLIO) Sessions(context.Context, string) (int, error)               { return 0, nil }
func (e *emuLIO) ClientState(context.Context, string, string) (string, error) { return "", nil }
func (e *emuLIO) ClientInfo(context.Context, string, string) (ClientSession, error) {
	return ClientSession{}, nil
}

// peerRecorder stands in for every peer gateway: it answers 200 and keeps
// the escaped paths it was sent, which must each be one route's shape.
type peerRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (p *peerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.paths = append(p.paths, r.URL.EscapedPath())
	p.mu.Unlock()
	body := `{"message": "ok"}`
	if strings.HasPrefix(r.URL.Path, "/api/sysinfo/") {
		body = `{"data": []}`
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// fuzzEnv is one gateway (gw1) on an emulated configfs at parent/root.
type fuzzEnv struct {
	*testEnv
	parent, root string
	peers        *peerRecorder
	seed         *config.Doc
}

func newFuzzEnv(t *testing.T) *fuzzEnv {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := richDoc()
	emu := newEmuLIO(t, root, gw1)
	if err := emu.Reconcile(t.Context(), seed); err != nil {
		t.Fatalf("seed reconcile: %v", err)
	}
	peers := &peerRecorder{}
	images := newFakeImages()
	images.add("rbd/disk1", 1<<30, 0)
	env := newEnv(t, newMemStore(seed), gw1, func(d *Deps) {
		d.LIO = emu
		d.Images = images
		d.HTTPClient = &http.Client{Transport: peers}
	})
	return &fuzzEnv{testEnv: env, parent: parent, root: root, peers: peers, seed: seed}
}

// send issues one request with a raw (already escaped) request target and a
// raw form body; false when the target is not a parsable request URI,
// which net/http refuses before any handler runs.
func (fe *fuzzEnv) send(t *testing.T, method, target, body string) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	req := httptest.NewRequest(method, "/", strings.NewReader(body))
	req.URL = u
	req.RequestURI = target
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(apiUser, apiPass)
	rec := httptest.NewRecorder()
	fe.e.ServeHTTP(rec, req)
	return rec, true
}

// outsideRoot lists what exists in the parent directory besides the root.
func (fe *fuzzEnv) outsideRoot(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(fe.parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == fe.parent {
			return nil
		}
		if p == fe.root {
			return filepath.SkipDir
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (fe *fuzzEnv) doc(t *testing.T) *config.Doc {
	t.Helper()
	doc, _, err := config.Load(fe.store.bytes(), config.UpgradeOptions{})
	if err != nil {
		t.Fatalf("the stored document does not load: %v", err)
	}
	return doc
}

// check asserts the invariants after any request: the stored document
// validates, nothing exists outside the configfs root, and every path sent
// to a peer has the shape of a route (each name one escaped segment).
func (fe *fuzzEnv) check(t *testing.T) {
	t.Helper()
	if err := fe.doc(t).Validate(); err != nil {
		t.Fatalf("committed document is invalid: %v", err)
	}
	if out := fe.outsideRoot(t); len(out) > 0 {
		t.Fatalf("created outside the configfs root: %q", out)
	}
	fe.peers.mu.Lock()
	defer fe.peers.mu.Unlock()
	for _, p := range fe.peers.paths {
		if !peerPathOK(p) {
			t.Fatalf("peer path %q does not match a route", p)
		}
	}
	fe.peers.paths = nil
}

// peerPathOK reports whether an escaped path has exactly the segments of
// one route rule.
func peerPathOK(escaped string) bool {
	segs := strings.Split(escaped, "/")
	for _, rt := range routeTable() {
		rs := strings.Split(rt.rule, "/")
		if len(rs) != len(segs) {
			continue
		}
		ok := true
		for i, r := range rs {
			if !strings.HasPrefix(r, "<") && r != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// del sends a DELETE for names (each escaped as one segment) and requires a
// 200.
func (fe *fuzzEnv) del(t *testing.T, endpoint string, form url.Values, names ...string) {
	t.Helper()
	target := "/api/" + endpoint + "/" + pathSegments(names...)
	body := ""
	if form != nil {
		body = form.Encode()
	}
	rec, ok := fe.send(t, http.MethodDelete, target, body)
	if !ok {
		t.Fatalf("DELETE %s: not a request URI", target)
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("DELETE %s: %d %s", target, rec.Code, rec.Body)
	}
}

// cleanup deletes through the API everything the requests created, then
// checks the names are back to the seed's: whatever was committed can be
// deleted again.
func (fe *fuzzEnv) cleanup(t *testing.T) {
	t.Helper()
	doc := fe.doc(t)
	seedT := fe.seed.Targets[tIQN]
	for _, iqn := range sortedNames(doc.Targets) {
		tg := doc.Targets[iqn]
		st := fe.seed.Targets[iqn]
		if st == nil {
			st = config.NewTarget(t0)
		}
		for _, g := range sortedNames(tg.Groups) {
			if st.Groups[g] == nil {
				fe.del(t, "hostgroup", nil, iqn, g)
			}
		}
		for _, c := range sortedNames(tg.Clients) {
			if st.Clients[c] == nil {
				fe.del(t, "client", nil, iqn, c)
			}
		}
		for _, d := range sortedNames(tg.Disks) {
			if _, ok := st.Disks[d]; !ok {
				fe.del(t, "targetlun", url.Values{"disk": {d}}, iqn)
			}
		}
		var gws []string
		for _, gw := range sortedNames(tg.Portals) {
			if st.Portals[gw] == nil {
				gws = append(gws, gw)
			}
		}
		// The local gateway leaves last, with confirm as the last one.
		slices.SortStableFunc(gws, func(a, b string) int {
			switch {
			case a == gw1 && b != gw1:
				return 1
			case b == gw1 && a != gw1:
				return -1
			}
			return 0
		})
		for _, gw := range gws {
			fe.del(t, "gateway", url.Values{"confirm": {"true"}}, iqn, gw)
		}
		if fe.seed.Targets[iqn] == nil {
			fe.del(t, "target", nil, iqn)
		}
	}
	for _, id := range sortedNames(fe.doc(t).Disks) {
		if fe.seed.Disks[id] == nil {
			d := fe.doc(t).Disks[id]
			fe.del(t, "disk", url.Values{"preserve_image": {"true"}}, d.Pool, d.Image)
		}
	}
	after := fe.doc(t)
	if got, want := sortedNames(after.Targets), sortedNames(fe.seed.Targets); !slices.Equal(got, want) {
		t.Fatalf("targets after cleanup %q, want %q", got, want)
	}
	if got, want := sortedNames(after.Targets[tIQN].Clients), sortedNames(seedT.Clients); !slices.Equal(got, want) {
		t.Fatalf("clients after cleanup %q, want %q", got, want)
	}
	if got, want := sortedNames(after.Disks), sortedNames(fe.seed.Disks); !slices.Equal(got, want) {
		t.Fatalf("disks after cleanup %q, want %q", got, want)
	}
	fe.check(t)
}

var fuzzMethods = []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodPatch}

// fuzzTarget fills the placeholders of route rule with segs (the first
// segs, then the last one repeated), escaping each with url.PathEscape when
// escape is set, or inserting it raw (so "%2F", "..", "//" reach the
// router as sent).
func fuzzTarget(rule string, segs []string, escape bool) string {
	parts := strings.Split(rule, "/")
	n := 0
	for i, p := range parts {
		if strings.HasPrefix(p, "<") {
			s := segs[min(n, len(segs)-1)]
			n++
			if escape {
				s = url.PathEscape(s)
			}
			parts[i] = s
		}
	}
	return strings.Join(parts, "/")
}

// FuzzAPI drives the real handlers, on a real (emulated) configfs, with two
// requests of any method, route, path segments (any bytes, escaped or raw
// with their own percent-encodings) and form bodies. Invariants: no 5xx,
// nothing outside the configfs root, the document always validates, every
// path sent to a peer keeps each name one segment, and whatever was
// committed can be deleted again through the API.
func FuzzAPI(f *testing.F) {
	rules := routeTable()
	ruleIndex := func(rule string) uint8 {
		for i, r := range rules {
			if r.rule == rule {
				return uint8(i)
			}
		}
		panic(rule)
	}
	put, del, get := uint8(1), uint8(2), uint8(0)
	target, gateway, client := ruleIndex("/api/target/<target_iqn>"), ruleIndex("/api/gateway/<target_iqn>/<gateway_name>"), ruleIndex("/api/client/<target_iqn>/<client_iqn>")
	group, clientlun := ruleIndex("/api/hostgroup/<target_iqn>/<group_name>"), ruleIndex("/api/clientlun/<target_iqn>/<client_iqn>")
	itarget, iclient := ruleIndex("/api/_target/<target_iqn>"), ruleIndex("/api/_client/<target_iqn>/<client_iqn>")
	disk := ruleIndex("/api/disk/<pool>/<image>")
	trav := "iqn.2003-01.com.example:x%2F..%2F..%2F..%2F..%2Fpwned-tgt"
	travClient := "iqn.1994-05.com.example:x%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fpwned-client"
	long := "iqn.1994-05.com.example:" + strings.Repeat("a", 276)
	ip := "ip_address=198.51.100.9&skipchecks=true"
	seeds := []struct {
		m1, r1, m2, r2 uint8
		a, b           string
		escape         bool
		body           string
	}{
		// issue 8 item 1: traversal through a target IQN, then a gateway
		{put, target, put, gateway, trav, gw1, false, ip},
		{put, target, put, gateway, "iqn.2003-01.com.example:x/../../../../pwned-tgt", gw1, true, ip},
		// ... and through a client IQN
		{put, client, put, clientlun, tIQN, travClient, false, "disk=rbd/disk1"},
		{put, client, put, clientlun, tIQN, "iqn.1994-05.com.example:x/../../pwned-client", true, "disk=rbd/disk1"},
		// item 2: every kind of invalid IQN
		{put, target, get, target, "iqn.2003-01.com.example:a%09b", "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a%0Ab", "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a%00b", "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a%01b", "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a%7Fb", "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a\u200bb", "", true, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a\u202eb", "", true, ""},
		{put, target, get, target, "iqn.2003-01.com.example:a%FFb", "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:" + strings.Repeat("a", 200), "", false, ""},
		{put, target, get, target, "iqn.2003-01.com.example:" + strings.Repeat("a", 4976), "", false, ""},
		{put, client, del, client, tIQN, "iqn.1994-05.com.example:a%01b", false, ""},
		// item 3: 300-character client, control characters in group names
		{put, client, put, target, tIQN, long, false, ""},
		{put, group, del, group, tIQN, "g%01", false, "members=" + cIQN2},
		{put, group, del, group, tIQN, "g\x01 /%", true, "members=" + cIQN2},
		{put, itarget, put, iclient, "iqn.2003-01.com.example:%2E%2E", "..", false, "committing_host=" + gw1},
		// valid changes, so the fuzzer starts from commits it can extend
		{put, target, put, gateway, "iqn.2003-01.com.example:new", gw1, false, "ip_address=198.51.100.1"},
		{put, client, put, group, tIQN, "iqn.1994-05.com.example:new", false, "members=iqn.1994-05.com.example:new"},
		{put, disk, del, disk, "rbd", "img", false, "mode=create&size=1G&create_image=true"},
	}
	for _, s := range seeds {
		f.Add(s.m1, s.r1, s.m2, s.r2, s.a, s.b, s.escape, s.body)
	}
	f.Fuzz(func(t *testing.T, m1, r1, m2, r2 uint8, a, b string, escape bool, body string) {
		fe := newFuzzEnv(t)
		segs := []string{a, b}
		for _, req := range []struct{ m, r uint8 }{{m1, r1}, {m2, r2}} {
			method := fuzzMethods[int(req.m)%len(fuzzMethods)]
			tgt := fuzzTarget(rules[int(req.r)%len(rules)].rule, segs, escape)
			rec, ok := fe.send(t, method, tgt, body)
			if !ok {
				continue
			}
			if rec.Code >= 500 {
				t.Fatalf("%s %q: %d %s", method, tgt, rec.Code, rec.Body)
			}
			fe.check(t)
		}
		fe.cleanup(t)
	})
}
