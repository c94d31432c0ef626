package commands

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/shell"
)

// envGwcliBench runs TestGwcliLsBench (bench/gwcli-ls.sh sets it); figures are logged,
// never asserted.
const envGwcliBench = "GWCLI_BENCH"

// countingTransport counts the requests of a client, by route.
type countingTransport struct {
	next  http.RoundTripper
	mu    sync.Mutex
	n     atomic.Int64
	route map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	route := r.URL.Path
	if parts := strings.SplitN(strings.TrimPrefix(route, "/api/"), "/", 2); len(parts) > 0 {
		route = parts[0]
	}
	c.mu.Lock()
	c.route[route]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

// TestGwcliLsBench measures a cold `gwcli ls` (a new process each time) on a group of 3
// gateways with 256 disks and 64 clients of 4 LUNs each, and counts the API requests of one
// snapshot load.
func TestGwcliLsBench(t *testing.T) {
	if os.Getenv(envGwcliBench) != "1" {
		t.Skip("benchmark: run bench/gwcli-ls.sh (GWCLI_BENCH=1)")
	}
	const (
		disks   = 256
		clients = 64
		perCli  = 4
		tgt     = "iqn.2003-01.com.example.bench:t1"
	)
	cl := newCluster(t, "")
	gw1 := cl.daemon(1)
	gw2 := cl.renamed(cl.daemon(2), "127.0.0.2")
	gw3 := cl.renamed(cl.daemon(3), "127.0.0.3")
	tag := fmt.Sprintf("%08x", mrand.Uint32())
	conn := cl.conn.Raw()
	names := make([]string, disks)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%s-%03d", tag, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := rbd.Create(conn, "rbd", names[i], 1<<30, 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range names {
			_ = rbd.Remove(context.Background(), conn, "rbd", n, rbd.RemoveOptions{})
		}
	})
	t.Logf("created %d images in %s", disks, time.Since(start).Round(time.Millisecond))

	now := time.Now()
	if _, err := cl.store.Commit(t.Context(), func(d *config.Doc) error {
		tg := config.NewTarget(now)
		tg.Portals = map[string]*config.Portal{}
		tg.IPList = []string{gw1.ip, gw2.ip, gw3.ip}
		for _, g := range []*apiDaemon{gw1, gw2, gw3} {
			d.PutGateway(g.name, &config.Gateway{})
			tg.Portals[g.name] = &config.Portal{PortalIPAddresses: []string{g.ip}, GatewayIPList: tg.IPList, TPGs: 3,
				InactivePortalIPs: slices.DeleteFunc(slices.Clone(tg.IPList), func(ip string) bool { return ip == g.ip })}
		}
		owners := []string{gw1.name, gw2.name, gw3.name}
		for i, n := range names {
			id := "rbd/" + n
			owner := owners[i%3]
			d.PutDisk(id, &config.Disk{Pool: "rbd", Image: n, Backstore: "user:rbd", BackstoreObjectName: "rbd." + n,
				Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}})
			tg.Disks[id] = config.LunRef{LunID: i}
		}
		for c := range clients {
			cli := config.NewClient()
			for j := range perCli {
				id := "rbd/" + names[c*perCli+j]
				cli.Luns[id] = config.LunRef{LunID: c*perCli + j}
			}
			tg.Clients[fmt.Sprintf("iqn.1994-05.com.example:bench-%02d", c)] = cli
		}
		d.PutTarget(tgt, tg)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*apiDaemon{gw1, gw2, gw3} {
		cl.start(d)
	}
	cl.converge("seeded", gw1.name, gw2.name, gw3.name)
	g := &cliGroup{cl: cl, gw1: gw1, gw2: gw2, gw3: gw3, tgt: tgt}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CEPH_CONF", cl.conf)

	// Requests of one snapshot load, by route.
	ct := &countingTransport{next: http.DefaultTransport, route: map[string]int{}}
	api := shell.NewClient(false, cl.port, apiUser, apiPassword, time.Minute)
	api.HTTP.Transport = ct
	api.Peers = map[string]string{"localhost": fmt.Sprintf("http://127.0.0.1:%d", cl.port), gw1.name: fmt.Sprintf("http://127.0.0.1:%d", cl.port)}
	rconn, err := rados.Connect(rados.ConnOptions{ConfFile: cl.conf})
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close()
	var loads []time.Duration
	for range 5 {
		ct.n.Store(0)
		ct.route = map[string]int{}
		t0 := time.Now()
		s, err := shell.Load(t.Context(), shell.LoadOptions{API: api, Conn: rconn, LocalName: gw1.name})
		loads = append(loads, time.Since(t0))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Images) != disks {
			t.Fatalf("%d images read, want %d", len(s.Images), disks)
		}
	}
	t.Logf("snapshot load (warm process): %s; API requests per load: %d %v", median(loads), ct.n.Load(), ct.route)

	// Where the time goes: the API part alone, and the RBD part alone.
	loads = loads[:0]
	for range 5 {
		t0 := time.Now()
		if _, err := shell.Load(t.Context(), shell.LoadOptions{API: api, LocalName: gw1.name}); err != nil {
			t.Fatal(err)
		}
		loads = append(loads, time.Since(t0))
	}
	t.Logf("API part of a load (config, pings, disk states, sessions): %s", median(loads))
	loads = loads[:0]
	for range 5 {
		t0 := time.Now()
		facts, errs, err := rbd.BulkFacts(rconn.Raw(), "rbd", names, 16)
		if err != nil || len(errs) != 0 || len(facts) != disks {
			t.Fatalf("BulkFacts: %v %v, %d facts", err, errs, len(facts))
		}
		loads = append(loads, time.Since(t0))
	}
	t.Logf("RBD part (BulkFacts, 256 header reads, 16 in flight): %s", median(loads))
	loads = loads[:0]
	for range 3 {
		t0 := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if _, err := rbd.ReadFacts(rconn.Raw(), "rbd", n); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		loads = append(loads, time.Since(t0))
	}
	t.Logf("for comparison, 256 image opens (ReadFacts, 8 at once): %s", median(loads))

	// Cold ls: a new process each time, as an operator runs it.
	var colds []time.Duration
	var out bytes.Buffer
	for range 7 {
		cmd := exec.Command(os.Args[0], g.args("ls")[1:]...)
		cmd.Env = append(os.Environ(), envExecMain+"=1")
		out.Reset()
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("gwcli ls: %v\n%s", err, errb.String())
		}
		colds = append(colds, time.Since(t0))
	}
	lines := strings.Count(out.String(), "\n")
	t.Logf("cold `gwcli ls` (new process, %d lines): median %s, min %s, max %s (runs: %v)",
		lines, median(colds), slices.Min(colds), slices.Max(colds), colds)
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average: %s", strings.TrimSpace(string(la)))
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(100 * time.Microsecond)
}
