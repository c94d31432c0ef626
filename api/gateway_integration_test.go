package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/gateway"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
)

// sameObject opens another rados.Store, on its own RADOS connection, on the
// config object of cs: what a second gateway daemon has.
func sameObject(t *testing.T, cs *clusterStore, gw string) *clusterStore {
	t.Helper()
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: cs.cluster.Conf, ClientName: "client.admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := rados.OpenStore(ctx, conn, rados.StoreOptions{
		Object:  cs.object,
		Upgrade: config.UpgradeOptions{Gateway: config.NewIdentity(gw, gw)},
		Now:     func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &clusterStore{Store: s, cluster: cs.cluster, object: cs.object, tb: t}
}

// listenOn starts an HTTP server for h on ip (any 127/8 address works on
// Linux without configuration).
func listenOn(t *testing.T, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

type clusterGW struct {
	name, ip string
	store    *clusterStore
	env      *testEnv
	srv      *httptest.Server
}

// tpgsOf builds gateway gw's LIO state from doc with the real reconciler's
// model and returns target tIQN's TPGs.
func tpgsOf(t *testing.T, doc *config.Doc, gw, ip string) []lio.TPG {
	t.Helper()
	spec, err := gateway.SpecFromConfig(doc, gw, testSettings(), gateway.FromConfigOptions{LocalAddrs: []netip.Addr{netip.MustParseAddr(ip)}})
	if err != nil {
		t.Fatalf("%s: spec: %v", gw, err)
	}
	st, err := lio.Build(spec)
	if err != nil {
		t.Fatalf("%s: build: %v", gw, err)
	}
	for _, tg := range st.Targets {
		if tg.IQN == tIQN {
			return tg.TPGs
		}
	}
	t.Fatalf("%s: target %s not built", gw, tIQN)
	return nil
}

// checkConverged checks every gateway's last reconciled document against the
// stored one, and the TPGs the real model derives from it: one per ip_list
// entry in order, only the local one enabled and holding the client ACL,
// the others remote portals.
func checkConverged(t *testing.T, gws []*clusterGW, stored *config.Doc) {
	t.Helper()
	want := portalsJSON(t, stored)
	ipList := stored.Targets[tIQN].IPList
	for _, g := range gws {
		if stored.Targets[tIQN].Portals[g.name] == nil {
			continue
		}
		last := g.env.lio.last
		if last == nil {
			t.Fatalf("%s never reconciled", g.name)
		}
		if got := portalsJSON(t, last); got != want {
			t.Fatalf("%s converged to\n%s\nwant\n%s", g.name, got, want)
		}
		tpgs := tpgsOf(t, last, g.name, g.ip)
		if len(tpgs) != len(ipList) {
			t.Fatalf("%s: %d TPGs for ip_list %v", g.name, len(tpgs), ipList)
		}
		for i, tpg := range tpgs {
			local := ipList[i] == g.ip
			if tpg.Tag != i+1 || tpg.Enabled != local || !slices.Equal(tpg.Portals, []string{lio.PortalName(ipList[i])}) {
				t.Fatalf("%s: TPG %d = tag %d enabled %v portals %v", g.name, i, tpg.Tag, tpg.Enabled, tpg.Portals)
			}
			if hasACL := len(tpg.ACLs) == 1 && tpg.ACLs[0].Initiator == cIQN; hasACL != local {
				t.Fatalf("%s: TPG %d ACLs %v", g.name, tpg.Tag, tpg.ACLs)
			}
		}
	}
}

// TestClusterGatewayAddThree runs three gateway APIs, each with its own RADOS
// connection to one real config object and its own LIO, on 127.0.0.1-3, and
// builds and shrinks a three-gateway target through them.
func TestClusterGatewayAddThree(t *testing.T) {
	first := openClusterStore(t, emptyTargetDoc())
	names := []string{"igw-a.test", "igw-b.test", "igw-c.test"}
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	resolve := map[string]string{"localhost": "127.0.0.1"}
	for i, n := range names {
		resolve[n] = ips[i]
	}
	osr := osRelease(t, "debian", "12")
	urls := map[string]string{}
	var gws []*clusterGW
	for i, name := range names {
		g := &clusterGW{name: name, ip: ips[i], store: first}
		if i > 0 {
			g.store = sameObject(t, first, name)
		}
		g.srv = listenOn(t, g.ip, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.env.e.ServeHTTP(w, r) }))
		urls[name] = g.srv.URL
		gws = append(gws, g)
	}
	for _, g := range gws {
		g.env = newEnv(t, g.store, g.name, func(d *Deps) {
			d.PeerURL = func(gw string) string {
				if u, ok := urls[gw]; ok {
					return u
				}
				return "http://127.0.0.1:1"
			}
			d.LocalAddrs = func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr(g.ip)}, nil }
			d.OSRelease = osr
			d.LookupHost = func(_ context.Context, host string) ([]netip.Addr, error) {
				if ip, ok := resolve[host]; ok {
					return []netip.Addr{netip.MustParseAddr(ip)}, nil
				}
				return nil, errors.New("no such host")
			}
		})
	}
	a, b, c := gws[0], gws[1], gws[2]

	// Upstream's ip_addresses listing leaves out 127.0.0.1, so the checks
	// refuse it; skipchecks lets it through, and nothing is written before.
	before := first.bytes()
	expect(t, a.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+a.name, v("ip_address", "127.0.0.1")), 400,
		"IP address of 127.0.0.1 is not available on igw-a.test. Valid IPs are :")
	if !bytes.Equal(before, first.bytes()) {
		t.Fatal("a refused gateway add changed the object")
	}
	expect(t, a.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+a.name, v("ip_address", "127.0.0.1", "skipchecks", "true")), 200, "Gateway creation successful")
	expect(t, a.env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN, nil), 200, "client create/update successful")
	// gwcli: the coordinator is an existing gateway, checks on.
	expect(t, a.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+b.name, v("ip_address", "127.0.0.2", "nosync", "False")), 200, "Gateway creation successful")
	// Dashboard: the request goes to the new gateway itself.
	expect(t, c.env.do(t, "PUT", "/api/gateway/"+tIQN+"/"+c.name, v("ip_address", "127.0.0.3")), 200, "Gateway creation successful")

	raw := first.bytes()
	stored, _, err := config.Load(raw, config.UpgradeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var inactive [3]string
	for i := range ips {
		var others []string
		for j, ip := range ips {
			if j != i {
				others = append(others, `"`+ip+`"`)
			}
		}
		inactive[i] = fmt.Sprintf("[%s,%s]", others[0], others[1])
	}
	want := "{"
	for i, n := range names {
		if i > 0 {
			want += ","
		}
		want += fmt.Sprintf(`"%s":{"gateway_ip_list":["127.0.0.1","127.0.0.2","127.0.0.3"],"inactive_portal_ips":%s,"portal_ip_addresses":["%s"],"tpgs":3}`, n, inactive[i], ips[i])
	}
	want += "}"
	if got := portalsJSON(t, stored); got != want {
		t.Fatalf("stored portals\n got %s\nwant %s", got, want)
	}
	// The object's own bytes: Python's layout of the new entries.
	for _, frag := range []string{
		"\"ip_list\": [\n                \"127.0.0.1\",\n                \"127.0.0.2\",\n                \"127.0.0.3\"\n            ],",
		"\"igw-b.test\": {\n            \"active_luns\": 0,\n            \"created\": \"2024/01/02 03:04:05\",\n            \"updated\": \"2024/01/02 03:04:05\"\n        },",
	} {
		if !bytes.Contains(raw, []byte(frag)) {
			t.Fatalf("object lacks %q:\n%s", frag, raw)
		}
	}
	checkConverged(t, gws, stored)

	// Remove the middle gateway from the third: b leaves first, then a and c
	// renumber their TPGs.
	expect(t, c.env.do(t, "DELETE", "/api/gateway/"+tIQN+"/"+b.name, nil), 200, "Gateway deletion successful")
	stored, _, err = config.Load(first.bytes(), config.UpgradeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stored.Gateways[b.name] != nil || !slices.Equal(stored.Targets[tIQN].IPList, []string{"127.0.0.1", "127.0.0.3"}) {
		t.Fatalf("after delete: gateways %v ip_list %v", stored.Gateways, stored.Targets[tIQN].IPList)
	}
	checkConverged(t, gws, stored)
	if last := b.env.lio.last; last.Targets[tIQN].Portals[b.name] != nil {
		t.Fatal("the deleted gateway did not converge to a config without its portal")
	}

	var m map[string]any
	rec := a.env.do(t, "GET", "/api/gateways/"+tIQN, nil)
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &m) != nil || len(m) != 2 {
		t.Fatalf("GET gateways: %d %s", rec.Code, rec.Body)
	}
}
