package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"ceph-iscsi/config"
)

const (
	gw3     = "gw3.example.test"
	gwDown  = "down.example.test"
	gwGhost = "ghost.example.test"
)

// gwNode is one gateway of a multi-gateway unit test: its API behind a real
// HTTP server, its own fake LIO and the internal calls it received.
type gwNode struct {
	name, ip string
	env      *testEnv
	srv      *httptest.Server
	mu       sync.Mutex
	calls    []string // "METHOD path form", internal _gateway calls only
}

func (n *gwNode) record(r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/_gateway/") {
		return
	}
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	form, _ := url.ParseQuery(string(b))
	n.mu.Lock()
	n.calls = append(n.calls, r.Method+" "+r.URL.Path+" "+form.Encode())
	n.mu.Unlock()
}

func (n *gwNode) recorded() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

// osRelease writes an os-release file for /api/sysinfo/checkversions.
func osRelease(t testing.TB, id, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "os-release")
	if err := os.WriteFile(p, []byte("ID="+id+"\nVERSION_ID=\""+version+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// gwCluster starts one API per name (IP ips[i], its only local address) on
// a shared store; every gateway reaches the others by name through peerURL,
// and extra maps more names (fake or failing peers) to URLs.
type gwCluster struct {
	nodes map[string]*gwNode
	extra map[string]string
}

func newGWCluster(t *testing.T, store rawStore, names, ips []string, mod func(name string, d *Deps)) *gwCluster {
	t.Helper()
	cl := &gwCluster{nodes: map[string]*gwNode{}, extra: map[string]string{}}
	resolve := map[string]string{gw1: "198.51.100.1", gw2: "198.51.100.2", gw3: "198.51.100.3", gwDown: "198.51.100.99"}
	for i, name := range names {
		resolve[name] = ips[i]
	}
	osr := osRelease(t, "debian", "12")
	for i, name := range names {
		n := &gwNode{name: name, ip: ips[i]}
		n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.record(r)
			n.env.e.ServeHTTP(w, r)
		}))
		t.Cleanup(n.srv.Close)
		cl.nodes[name] = n
	}
	for _, name := range names {
		n := cl.nodes[name]
		n.env = newEnv(t, store, name, func(d *Deps) {
			d.PeerURL = cl.peerURL
			d.LocalAddrs = func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr(n.ip)}, nil }
			d.OSRelease = osr
			d.LookupHost = func(_ context.Context, host string) ([]netip.Addr, error) {
				if host == "localhost" {
					return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
				}
				if ip, ok := resolve[host]; ok {
					return []netip.Addr{netip.MustParseAddr(ip)}, nil
				}
				return nil, errors.New("no such host")
			}
			if mod != nil {
				mod(name, d)
			}
		})
	}
	return cl
}

func (cl *gwCluster) peerURL(gw string) string {
	if n := cl.nodes[gw]; n != nil {
		return n.srv.URL
	}
	if u, ok := cl.extra[gw]; ok {
		return u
	}
	return "http://127.0.0.1:1" // nothing listens
}

// emptyTargetDoc has target tIQN with no portals yet and disk rbd/disk1
// defined but not exported.
func emptyTargetDoc() *config.Doc {
	d := seedDoc()
	delete(d.Targets[tIQN].Disks, "rbd/disk1")
	d.Disks["rbd/disk1"].Owner = nil
	return d
}

func portalsJSON(t *testing.T, doc *config.Doc) string {
	t.Helper()
	v, ok := docPath(doc, "targets", tIQN, "portals")
	if !ok {
		t.Fatal("no portals")
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const threePortals = `{` +
	`"gw1.example.test":{"gateway_ip_list":["198.51.100.1","198.51.100.2","198.51.100.3"],"inactive_portal_ips":["198.51.100.2","198.51.100.3"],"portal_ip_addresses":["198.51.100.1"],"tpgs":3},` +
	`"gw2.example.test":{"gateway_ip_list":["198.51.100.1","198.51.100.2","198.51.100.3"],"inactive_portal_ips":["198.51.100.1","198.51.100.3"],"portal_ip_addresses":["198.51.100.2"],"tpgs":3},` +
	`"gw3.example.test":{"gateway_ip_list":["198.51.100.1","198.51.100.2","198.51.100.3"],"inactive_portal_ips":["198.51.100.1","198.51.100.2"],"portal_ip_addresses":["198.51.100.3"],"tpgs":3}}`

// addThree builds the three-gateway target the way gwcli and the Dashboard
// do: gw1 first from gw1 itself, a client, gw2 through gw1 (gwcli), and gw3
// through gw3 itself (the Dashboard sends create_gateway to the new gateway).
func addThree(t *testing.T, cl *gwCluster) {
	t.Helper()
	n1, n3 := cl.nodes[gw1], cl.nodes[gw3]
	expect(t, n1.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw1, v("ip_address", "198.51.100.1", "nosync", "False")), 200, "Gateway creation successful")
	expect(t, n1.env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN, nil), 200, "client create/update successful")
	expect(t, n1.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw2, v("ip_address", "198.51.100.2", "nosync", "False")), 200, "Gateway creation successful")
	expect(t, n3.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw3, v("ip_address", "198.51.100.3", "skipchecks", "true")), 200, "Gateway creation successful")
}

func TestGatewayAddThree(t *testing.T) {
	store := newMemStore(emptyTargetDoc())
	cl := newGWCluster(t, store, []string{gw1, gw2, gw3}, []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}, nil)
	addThree(t, cl)

	doc := loadDoc(t, store)
	if got := portalsJSON(t, doc); got != threePortals {
		t.Fatalf("portals\n got %s\nwant %s", got, threePortals)
	}
	if !slices.Equal(doc.Targets[tIQN].IPList, []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}) {
		t.Fatalf("ip_list %v", doc.Targets[tIQN].IPList)
	}
	for _, gw := range []string{gw1, gw2, gw3} {
		g := doc.Gateways[gw]
		if g == nil || g.ActiveLuns != 0 || g.Created != config.Timestamp(t0) {
			t.Fatalf("gateways[%s] = %+v", gw, g)
		}
		// Every gateway converged to the final document: all three
		// portals (so the remote TPGs) and the client.
		last := cl.nodes[gw].env.lio.last
		if last == nil || portalsJSON(t, last) != threePortals || last.Targets[tIQN].Clients[cIQN] == nil {
			t.Fatalf("%s did not converge", gw)
		}
	}

	// Who was called, in which order and with what: gw2 was called by gw1
	// before gw1 applied locally; gw3 was local to its coordinator, which
	// then called gw1 and gw2 (sorted portal order).
	want := map[string][]string{
		gw1: {"PUT /api/_gateway/" + tIQN + "/" + gw3 + " gateway_ip_list=198.51.100.1%2C198.51.100.2%2C198.51.100.3&nosync=false"},
		gw2: {
			"PUT /api/_gateway/" + tIQN + "/" + gw2 + " gateway_ip_list=198.51.100.1%2C198.51.100.2&nosync=False",
			"PUT /api/_gateway/" + tIQN + "/" + gw3 + " gateway_ip_list=198.51.100.1%2C198.51.100.2%2C198.51.100.3&nosync=false",
		},
		gw3: nil,
	}
	for gw, w := range want {
		if got := cl.nodes[gw].recorded(); !slices.Equal(got, w) {
			t.Errorf("%s received\n%q\nwant\n%q", gw, got, w)
		}
	}

	// The read routes.
	rec := cl.nodes[gw2].env.do(t, "GET", "/api/gateways/"+strings.ToUpper(tIQN), nil)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != threePortals {
		t.Fatalf("GET gateways: %d %s", rec.Code, rec.Body)
	}
	rec = cl.nodes[gw2].env.do(t, "GET", "/api/_gateway/"+tIQN+"/"+gw3, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"portal_ip_addresses":["198.51.100.3"]`) {
		t.Fatalf("GET _gateway: %d %s", rec.Code, rec.Body)
	}
}

// TestGatewayNosync: with nosync a joining gateway builds only the target
// and its TPGs; an empty target forces nosync.
func TestGatewayNosync(t *testing.T) {
	doc := emptyTargetDoc()
	store := newMemStore(doc)
	cl := newGWCluster(t, store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, nil)
	n1, n2 := cl.nodes[gw1], cl.nodes[gw2]
	expect(t, n1.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw1, v("ip_address", "198.51.100.1")), 200, "Gateway creation successful")
	expect(t, n1.env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN, nil), 200, "client create/update successful")
	expect(t, n1.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw2, v("ip_address", "198.51.100.2", "nosync", "true")), 200, "Gateway creation successful")
	if last := n2.env.lio.last; last == nil || len(last.Targets[tIQN].Portals) != 2 || len(last.Targets[tIQN].Clients) != 0 {
		t.Fatalf("nosync gateway got clients or no portals: %+v", last.Targets[tIQN])
	}
	if n1.env.lio.last.Targets[tIQN].Clients[cIQN] == nil {
		t.Fatal("an existing gateway lost its clients because of nosync")
	}
	if loadDoc(t, store).Targets[tIQN].Clients[cIQN] == nil {
		t.Fatal("nosync must not touch the config's clients")
	}

	// A target with no disks and no clients always gets nosync=true.
	store2 := newMemStore(emptyTargetDoc())
	cl2 := newGWCluster(t, store2, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, nil)
	expect(t, cl2.nodes[gw1].env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw1, v("ip_address", "198.51.100.1")), 200, "Gateway creation successful")
	expect(t, cl2.nodes[gw1].env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw2, v("ip_address", "198.51.100.2", "nosync", "false")), 200, "Gateway creation successful")
	if got := cl2.nodes[gw2].recorded(); len(got) != 1 || !strings.HasSuffix(got[0], "&nosync=true") {
		t.Fatalf("calls %q", got)
	}
}

// TestGatewayInternalPutAsPythonCoordinator: a Python coordinator commits
// nothing itself; the Go gateway it calls registers its own portal, once.
func TestGatewayInternalPutAsPythonCoordinator(t *testing.T) {
	store := newMemStore(seedDoc(gw1))
	env := newEnv(t, store, gw2, func(d *Deps) {
		d.LocalAddrs = func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.51.100.2")}, nil
		}
	})
	form := v("gateway_ip_list", "198.51.100.1,[198.51.100.2]", "nosync", "False")
	expect(t, env.do(t, "PUT", "/api/_gateway/"+tIQN+"/"+gw2, form), 200, "Gateway defined/mapped")
	doc := loadDoc(t, store)
	p := doc.Targets[tIQN].Portals[gw2]
	if p == nil || !slices.Equal(p.PortalIPAddresses, []string{"198.51.100.2"}) || p.TPGs != 2 ||
		!slices.Equal(doc.Targets[tIQN].Portals[gw1].InactivePortalIPs, []string{"198.51.100.2"}) {
		t.Fatalf("portal %+v", p)
	}
	commits := store.commits
	expect(t, env.do(t, "PUT", "/api/_gateway/"+tIQN+"/"+gw2, form), 200, "Gateway defined/mapped")
	if store.commits != commits || env.lio.reconciles != 2 {
		t.Fatalf("repeat committed again (%d -> %d) or did not reconcile (%d)", commits, store.commits, env.lio.reconciles)
	}
}

func TestGatewayDelete(t *testing.T) {
	store := newMemStore(emptyTargetDoc())
	cl := newGWCluster(t, store, []string{gw1, gw2, gw3}, []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}, nil)
	addThree(t, cl)
	n1 := cl.nodes[gw1]
	// Export the disk with gw2 as its owner, so its deletion moves it.
	if _, err := store.Commit(t.Context(), func(d *config.Doc) error {
		owner := gw2
		d.MutDisk("rbd/disk1").Owner = &owner
		d.MutGateway(gw2).ActiveLuns = 1
		d.MutGateway(gw1).ActiveLuns = 0
		d.MutTarget(tIQN).Disks["rbd/disk1"] = config.LunRef{LunID: 0}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	expect(t, n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw2, nil), 200, "Gateway deletion successful")
	doc := loadDoc(t, store)
	want := `{` +
		`"gw1.example.test":{"gateway_ip_list":["198.51.100.1","198.51.100.3"],"inactive_portal_ips":["198.51.100.3"],"portal_ip_addresses":["198.51.100.1"],"tpgs":2},` +
		`"gw3.example.test":{"gateway_ip_list":["198.51.100.1","198.51.100.3"],"inactive_portal_ips":["198.51.100.1"],"portal_ip_addresses":["198.51.100.3"],"tpgs":2}}`
	if got := portalsJSON(t, doc); got != want {
		t.Fatalf("portals\n got %s\nwant %s", got, want)
	}
	if doc.Gateways[gw2] != nil || *doc.Disks["rbd/disk1"].Owner != gw1 || doc.Gateways[gw1].ActiveLuns != 1 {
		t.Fatalf("gateways %v owner %v", doc.Gateways, *doc.Disks["rbd/disk1"].Owner)
	}
	for _, gw := range []string{gw1, gw2, gw3} {
		if last := cl.nodes[gw].env.lio.last; portalsJSON(t, last) != want {
			t.Fatalf("%s did not converge: %s", gw, portalsJSON(t, last))
		}
	}
	// The deleted gateway first, then the coordinator, then the rest.
	if got := cl.nodes[gw2].recorded(); got[len(got)-1] != "DELETE /api/_gateway/"+tIQN+"/"+gw2+" gateway_removed=true" {
		t.Fatalf("gw2 calls %q", got)
	}
	if got := cl.nodes[gw3].recorded(); got[len(got)-1] != "DELETE /api/_gateway/"+tIQN+"/"+gw2+" gateway_removed=true" {
		t.Fatalf("gw3 calls %q", got)
	}

	// gw3 goes down: without force nothing changes and gwcli gets the
	// "unavailable:<gw>" it looks for; with force gw1 edits the config alone.
	cl.nodes[gw3].srv.Close()
	before := store.bytes()
	rec := n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw3, nil)
	expect(t, rec, 503, "Gateway deletion failed, gateway(s) unavailable:"+gw3+"(UNKNOWN state)")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("config changed although a gateway was unavailable")
	}
	expect(t, n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw3, v("force", "true")), 200, "Gateway deletion successful")
	doc = loadDoc(t, store)
	if len(doc.Targets[tIQN].Portals) != 1 || doc.Gateways[gw3] != nil || !slices.Equal(doc.Targets[tIQN].IPList, []string{"198.51.100.1"}) {
		t.Fatalf("after forced delete: portals %v gateways %v", doc.Targets[tIQN].Portals, doc.Gateways)
	}

	// The last gateway of a target with objects needs confirm.
	expect(t, n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw1, nil), 400, msgLastGateway)
	expect(t, n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw1, v("force", "true")), 200, "Gateway deletion successful")
	doc = loadDoc(t, store)
	tg := doc.Targets[tIQN]
	if len(tg.Portals) != 0 || len(tg.Disks) != 0 || len(tg.Clients) != 0 || len(doc.Gateways) != 0 || doc.Disks["rbd/disk1"].Owner != nil {
		t.Fatalf("after the last gateway: %+v gateways %v", tg, doc.Gateways)
	}
	if n1.env.lio.last.Targets[tIQN] == nil || len(n1.env.lio.last.Targets[tIQN].Portals) != 0 {
		t.Fatal("gw1 did not converge to the emptied target")
	}
}

func TestGatewayDeleteMinimumGateways(t *testing.T) {
	store := newMemStore(seedDoc(gw1, gw2))
	cl := newGWCluster(t, store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, func(_ string, d *Deps) {
		d.Settings.MinimumGateways = 2
	})
	n1 := cl.nodes[gw1]
	before := store.bytes()
	expect(t, n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw2, nil), 400,
		"Removing "+gw2+" would leave 1 gateway(s) for the disks and clients of "+tIQN+", fewer than minimum_gateways (2). Use confirm=true")
	if !bytes.Equal(before, store.bytes()) || len(cl.nodes[gw2].recorded()) != 0 {
		t.Fatal("a refused delete changed something")
	}
	// force on a gateway other than this one: gw2 is not contacted.
	expect(t, n1.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw2, v("force", "true")), 200, "Gateway deletion successful")
	if len(cl.nodes[gw2].recorded()) != 0 || loadDoc(t, store).Targets[tIQN].Portals[gw2] != nil {
		t.Fatal("forced delete contacted the deleted gateway or left its portal")
	}
}

// fakePeer answers /api/sysinfo/* with fixed replies.
func fakePeer(t *testing.T, replies map[string]struct {
	status int
	body   string
}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := strings.TrimPrefix(r.URL.Path, "/api/sysinfo/")
		rep, ok := replies[q]
		if !ok {
			rep.status, rep.body = 200, `{"message":"pong"}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type reply = struct {
	status int
	body   string
}

func gatewayBadCases() []badCase {
	add := func(gw string) string { return "/api/gateway/" + tIQN + "/" + gw }
	unknownT := "iqn.2003-01.com.example:nope"
	return []badCase{
		{"gw put bad iqn", "PUT", "/api/gateway/bogus/" + gw2, v("ip_address", "198.51.100.2"), nil, 400, "Invalid iqn bogus - WWN not valid as: iqn"},
		{"gw delete bad iqn", "DELETE", "/api/gateway/iqn.2003-01.com.ex_ample:t/" + gw2, nil, nil, 400, "Invalid iqn iqn.2003-01.com.ex_ample:t - WWN not valid as: iqn"},
		{"gateways bad iqn", "GET", "/api/gateways/x", nil, nil, 400, "Invalid iqn x - WWN not valid as: iqn"},
		{"gw put unknown target", "PUT", "/api/gateway/" + unknownT + "/" + gw2, v("ip_address", "198.51.100.2"), nil, 404, "Target " + unknownT + " does not exist"},
		{"gw delete unknown target", "DELETE", "/api/gateway/" + unknownT + "/" + gw1, nil, nil, 404, "Target " + unknownT + " does not exist"},
		{"gateways unknown target", "GET", "/api/gateways/" + unknownT, nil, nil, 404, "Target " + unknownT + " does not exist"},
		{"gw put already a portal", "PUT", add(gw1), v("ip_address", "198.51.100.7"), nil, 400, msgGatewayExists},
		{"gw put first gateway not local", "PUT", "/api/gateway/" + otherIQN + "/" + gw2, v("ip_address", "198.51.100.2"), nil, 400, msgFirstGatewayLocal},
		{"gw put no ip_address", "PUT", add(gw2), v("nosync", "true"), nil, 400, "missing form field: ip_address"},
		{"gw put empty ip", "PUT", add(gw2), v("ip_address", ""), nil, 400, msgIPNotUsable},
		{"gw put name as ip", "PUT", add(gw2), v("ip_address", "gw2.example.test"), nil, 400, msgIPNotUsable},
		{"gw put scoped ip", "PUT", add(gw2), v("ip_address", "fe80::1%eth0"), nil, 400, msgIPNotUsable},
		{"gw put trailing comma", "PUT", add(gw2), v("ip_address", "198.51.100.2,"), nil, 400, msgIPNotUsable},
		{"gw put ip twice", "PUT", add(gw2), v("ip_address", "198.51.100.2,198.51.100.2"), nil, 400, config.GatewayIPInUse},
		{"gw put ip in use", "PUT", add(gw2), v("ip_address", "198.51.100.1"), nil, 400, config.GatewayIPInUse},
		{"gw put ip in use, checks skipped", "PUT", add(gw2), v("ip_address", "198.51.100.1", "skipchecks", "true"), nil, 400, config.GatewayIPInUse},
		{"gw put ip in use, v4-mapped", "PUT", add(gw2), v("ip_address", "::ffff:198.51.100.1"), nil, 400, config.GatewayIPInUse},
		{"gw put unresolvable", "PUT", add(gwGhost), v("ip_address", "198.51.100.2"), nil, 400, "Gateway '" + gwGhost + "' is not resolvable to an IP address"},
		{"gw put api down", "PUT", add(gwDown), v("ip_address", "198.51.100.99"), nil, 400, "ip_addresses query to " + gwDown + " failed - check rbd-target-api log. Is the API server running and in the right mode (http/https)?"},
		{"gw put ip not on gateway", "PUT", add(gw2), v("ip_address", "198.51.100.7"), nil, 400, "IP address of 198.51.100.7 is not available on " + gw2 + ". Valid IPs are :198.51.100.2"},
		{"gw put malformed ip_addresses", "PUT", add("malformed.example.test"), v("ip_address", "198.51.100.20"), nil, 400, msgMalformed},
		{"gw put checkconf fails", "PUT", add("noconf.example.test"), v("ip_address", "198.51.100.21"), nil, 400, "checkconf API call to noconf.example.test failed with code 401"},
		{"gw put config differs", "PUT", add("otherconf.example.test"), v("ip_address", "198.51.100.22"), nil, 400, "/etc/ceph/iscsi-gateway.cfg on otherconf.example.test does not match the local version. Correct and retry request"},
		{"gw put old os", "PUT", add("oldos.example.test"), v("ip_address", "198.51.100.23"), nil, 400, "oldos.example.test failed package validation checks - OS version is unsupported"},
		{"gw put malformed checkversions", "PUT", add("badver.example.test"), v("ip_address", "198.51.100.24"), nil, 400, msgMalformed},
		{"gw put first, ip not local", "PUT", "/api/gateway/" + otherIQN + "/" + gw1, v("ip_address", "198.51.100.9", "skipchecks", "true"), nil, 400, "Could not create target on gateway: " + config.GatewayNoLocalIP},
		{"gw put first, checks see no such ip", "PUT", "/api/gateway/" + otherIQN + "/" + gw1, v("ip_address", "198.51.100.9"), nil, 400, "IP address of 198.51.100.9 is not available on " + gw1 + ". Valid IPs are :198.51.100.1"},
		{"gw delete unknown gateway", "DELETE", add(gwGhost), nil, nil, 404, msgGatewayUnknown},
		{"gw delete not a portal", "DELETE", "/api/gateway/" + otherIQN + "/" + gw1, nil, nil, 404, "Gateway " + gw1 + " is not a portal of target " + otherIQN},
		{"gw delete last with objects", "DELETE", add(gw1), v("force", "false"), nil, 400, msgLastGateway},
		{"internal get unknown gateway", "GET", "/api/_gateway/" + tIQN + "/" + gw2, nil, nil, 404, msgInternalGWUnknown},
		{"internal get unknown target", "GET", "/api/_gateway/" + unknownT + "/" + gw1, nil, nil, 404, "Target " + unknownT + " does not exist"},
		{"internal put no list", "PUT", "/api/_gateway/" + tIQN + "/" + gw1, v("nosync", "true"), nil, 400, "missing form field: gateway_ip_list"},
		{"internal put bad list", "PUT", "/api/_gateway/" + tIQN + "/" + gw1, v("gateway_ip_list", "198.51.100.1,x"), nil, 400, `Could not create target on gateway: invalid gateway_ip_list "198.51.100.1,x"`},
		{"internal put duplicate list", "PUT", "/api/_gateway/" + otherIQN + "/" + gw1, v("gateway_ip_list", "198.51.100.1,198.51.100.1"), nil, 400, `Could not create target on gateway: invalid gateway_ip_list "198.51.100.1,198.51.100.1"`},
		{"internal put no local ip", "PUT", "/api/_gateway/" + otherIQN + "/" + gw1, v("gateway_ip_list", "198.51.100.9"), nil, 400, "Could not create target on gateway: " + config.GatewayNoLocalIP},
		{"internal delete unknown target", "DELETE", "/api/_gateway/" + unknownT + "/" + gw1, nil, nil, 404, "Target " + unknownT + " does not exist"},
		{"gw put wrong method", "GET", add(gw2), nil, nil, 405, "Method Not Allowed"},
	}
}

// TestGatewayBadRequestsChangeNothing sends every refused gateway request
// to gw1 and checks the exact message, a 4xx, and that neither the stored
// bytes nor LIO changed.
func TestGatewayBadRequestsChangeNothing(t *testing.T) {
	runGatewayBadCases(t, newMemStore(richDoc()))
}

func runGatewayBadCases(t *testing.T, store rawStore) {
	// gw2 is a real gateway API (for the sysinfo checks); the other names
	// are fakes answering sysinfo, known to the resolver.
	resolveExtra := map[string]string{
		"malformed.example.test": "198.51.100.20", "noconf.example.test": "198.51.100.21", "otherconf.example.test": "198.51.100.22",
		"oldos.example.test": "198.51.100.23", "badver.example.test": "198.51.100.24",
	}
	cl := newGWCluster(t, store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, func(_ string, d *Deps) {
		inner := d.LookupHost
		d.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if ip, ok := resolveExtra[host]; ok {
				return []netip.Addr{netip.MustParseAddr(ip)}, nil
			}
			return inner(ctx, host)
		}
	})
	env := cl.nodes[gw1].env
	hash := testSettings().Hash()
	ok := func(data string) reply { return reply{200, `{"data":` + data + `}`} }
	cl.extra["malformed.example.test"] = fakePeer(t, map[string]reply{"ip_addresses": {200, "not json"}})
	cl.extra["noconf.example.test"] = fakePeer(t, map[string]reply{"ip_addresses": ok(`["198.51.100.21"]`), "checkconf": {401, `{"message":"Missing credentials"}`}})
	cl.extra["otherconf.example.test"] = fakePeer(t, map[string]reply{"ip_addresses": ok(`["198.51.100.22"]`), "checkconf": ok(`"0123"`)})
	cl.extra["oldos.example.test"] = fakePeer(t, map[string]reply{"ip_addresses": ok(`["198.51.100.23"]`), "checkconf": ok(`"` + hash + `"`), "checkversions": {500, `{"data":["OS version is unsupported"]}`}})
	cl.extra["badver.example.test"] = fakePeer(t, map[string]reply{"ip_addresses": ok(`["198.51.100.24"]`), "checkconf": ok(`"` + hash + `"`), "checkversions": {500, `<html>`}})
	before := store.bytes()
	cases := gatewayBadCases()
	if len(cases) < 20 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			rec := env.do(t, bc.method, bc.path, bc.form, bc.opts...)
			expect(t, rec, bc.status, bc.msg)
			if rec.Code < 400 || rec.Code >= 500 {
				t.Errorf("status %d is not a client error", rec.Code)
			}
			if after := store.bytes(); !bytes.Equal(before, after) {
				t.Fatalf("config changed by a refused request:\n%s", after)
			}
		})
	}
	for _, n := range cl.nodes {
		if n.env.lio.reconciles != 0 {
			t.Errorf("%s reconciled LIO %d times for refused requests", n.name, n.env.lio.reconciles)
		}
	}
}

// TestGatewayDeleteSelf: the coordinator deletes itself, so it goes first
// (and writes the config), then the others converge.
func TestGatewayDeleteSelf(t *testing.T) {
	store := newMemStore(emptyTargetDoc())
	cl := newGWCluster(t, store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, nil)
	n1, n2 := cl.nodes[gw1], cl.nodes[gw2]
	expect(t, n1.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw1, v("ip_address", "198.51.100.1")), 200, "Gateway creation successful")
	expect(t, n1.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+gw2, v("ip_address", "198.51.100.2")), 200, "Gateway creation successful")
	calls := len(n2.recorded())
	expect(t, n2.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+gw2, nil), 200, "Gateway deletion successful")
	if got := n1.recorded(); len(got) != 1 || got[0] != "DELETE /api/_gateway/"+tIQN+"/"+gw2+" gateway_removed=true" {
		t.Fatalf("gw1 calls %q", got)
	}
	if len(n2.recorded()) != calls {
		t.Fatal("the coordinator called itself over HTTP")
	}
	doc := loadDoc(t, store)
	want := `{"gw1.example.test":{"gateway_ip_list":["198.51.100.1"],"inactive_portal_ips":[],"portal_ip_addresses":["198.51.100.1"],"tpgs":1}}`
	if got := portalsJSON(t, doc); got != want || doc.Gateways[gw2] != nil {
		t.Fatalf("portals %s gateways %v", got, doc.Gateways)
	}
	for _, n := range []*gwNode{n1, n2} {
		if got := portalsJSON(t, n.env.lio.last); got != want {
			t.Fatalf("%s converged to %s", n.name, got)
		}
	}
}
