// Command apiload measures a running rbd-target-api (ours or upstream's, it only
// speaks the public REST API): requests/s and latency percentiles of GET
// /api/config under concurrent load, and the latency of PUT /api/targetlun and
// PUT /api/clientlun on a target that already holds a given number of LUNs.
//
// It builds what it measures through the API itself: a target, the disks
// (PUT /api/disk, mode=create) and their target LUNs. The gateway the API runs
// on must already be a portal of the target (bench/api.sh adds it).
//
//	go run -tags pacific ./bench/apiload -url http://127.0.0.1:5000 -user admin -pass admin \
//	    -target iqn.2003-01.com.example:bench -lun-steps 255,1023
//
// With -replay it instead builds a target from nothing with upstream's own
// call sequence (replay.go; bench/api-vm.sh runs it against ours and against
// upstream's rbd-target-api on the real kernel) and records every call's
// wall time; -summary prints two such records side by side.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ceph-iscsi/bench/internal/rest"
)

type client = rest.Client

type stats struct{ d []time.Duration }

func (s *stats) pct(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	slices.Sort(s.d)
	i := int(p * float64(len(s.d)-1))
	return s.d[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func main() {
	base := flag.String("url", "http://127.0.0.1:5000", "API base URL")
	user := flag.String("user", "admin", "API user")
	pass := flag.String("pass", "admin", "API password")
	target := flag.String("target", "iqn.2003-01.com.example.bench:target", "target IQN to build and measure")
	pool := flag.String("pool", "rbd", "pool of the benchmark images")
	prefix := flag.String("prefix", "bench", "image name prefix")
	conc := flag.Int("c", 16, "concurrent clients for GET /api/config")
	dur := flag.Duration("d", 10*time.Second, "duration of the GET /api/config run")
	steps := flag.String("lun-steps", "255,1023", "measure PUT /api/targetlun when the target already holds these many LUNs")
	samples := flag.Int("samples", 20, "PUT /api/targetlun samples per step (each is undone by a DELETE)")
	setupConc := flag.Int("setup-c", 4, "concurrent requests while building the LUNs")
	skipSetup := flag.Bool("skip-setup", false, "only run GET /api/config")
	var ro replayOpts
	doReplay := flag.Bool("replay", false, "replay upstream's call sequence (see replay) instead of the LUN steps")
	flag.StringVar(&ro.gateway, "gateway", "", "-replay: this gateway's name (PUT /api/gateway, the disks' owner)")
	flag.StringVar(&ro.gatewayIP, "gateway-ip", "192.0.2.10", "-replay: this gateway's portal address")
	flag.IntVar(&ro.disks, "disks", 64, "-replay: disks to add")
	flag.IntVar(&ro.lunsPerClient, "luns-per-client", 4, "-replay: a client per this many disks, mapping them")
	flag.StringVar(&ro.size, "size", "1G", "-replay: image size")
	reportAt := flag.String("report-at", "16,64", "-replay, -summary: print the calls since the previous report and run GET /api/config at these disk counts")
	flag.StringVar(&ro.out, "out", "replay.txt", "-replay: raw records file")
	cpuPids := flag.String("cpu-pids", "", "NAME=PID,...: report the CPU each of these processes (and apiload itself) spends per GET /api/config")
	summ := flag.String("summary", "", "print NAME=FILE,NAME=FILE (-replay outputs, upstream's first) side by side, segment by segment, and exit")
	flag.Parse()
	var at []int
	for _, s := range strings.Split(*reportAt, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			rest.Fatalf("-report-at: %q is not a disk count", s)
		}
		at = append(at, n)
	}
	slices.Sort(at)
	procs, err := parseProcs(*cpuPids)
	if err != nil {
		rest.Fatalf("%v", err)
	}
	if *summ != "" {
		var names, paths []string
		for _, nf := range strings.Split(*summ, ",") {
			n, f, ok := strings.Cut(nf, "=")
			if !ok {
				rest.Fatalf("-summary: %q is not NAME=FILE", nf)
			}
			names, paths = append(names, n), append(paths, f)
		}
		summary(names, paths, at)
		return
	}

	c := &client{Base: strings.TrimRight(*base, "/"), User: *user, Pass: *pass, HTTP: &http.Client{
		Timeout:   10 * time.Minute, // upstream's PUTs take seconds each under TCG
		Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2},
	}}
	ctx := context.Background()
	if *doReplay {
		if ro.gateway == "" {
			rest.Fatalf("-replay needs -gateway")
		}
		ro.target, ro.pool, ro.prefix, ro.reportAt = *target, *pool, *prefix, at
		ro.getConc, ro.getDur, ro.procs = *conc, *dur, procs
		replay(ctx, c, ro)
		return
	}

	if !*skipSetup {
		var want []int
		for _, s := range strings.Split(*steps, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 0 {
				rest.Fatalf("-lun-steps: %q is not a count", s)
			}
			want = append(want, n)
		}
		slices.Sort(want)
		lunSteps(ctx, c, *target, *pool, *prefix, want, *samples, *setupConc)
	}
	getConfig(ctx, c, *conc, *dur, procs)
}

// lunSteps grows the target's LUN count through the API and, at each step,
// times samples PUT /api/targetlun of one extra disk, each undone by a DELETE
// so that every sample starts from exactly n LUNs.
func lunSteps(ctx context.Context, c *client, target, pool, prefix string, steps []int, samples, conc int) {
	st, b, err := c.Do(ctx, http.MethodGet, "/api/config", nil)
	if err != nil || st != http.StatusOK {
		rest.Fatalf("GET /api/config: %d %v", st, err)
	}
	var doc struct {
		Disks   map[string]json.RawMessage `json:"disks"`
		Targets map[string]struct {
			Disks map[string]json.RawMessage `json:"disks"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		rest.Fatalf("GET /api/config: %v", err)
	}
	if _, ok := doc.Targets[target]; !ok {
		rest.Fatalf("target %s is not in the configuration (bench/api.sh creates it and adds the gateway)", target)
	}
	have := len(doc.Targets[target].Disks)
	disk := func(i int) string { return fmt.Sprintf("%s/%s%05d", pool, prefix, i) }
	ensureDisk := func(i int) {
		if _, ok := doc.Disks[disk(i)]; ok {
			return
		}
		c.Must(ctx, http.MethodPut, "/api/disk/"+disk(i), url.Values{
			"mode": {"create"}, "size": {"1M"}, "count": {"1"}, "pool": {pool},
			"create_image": {"true"}, "backstore": {"user:rbd"},
		})
	}
	grow := func(from, to int) {
		if to <= from {
			return
		}
		t0 := time.Now()
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= to {
						return
					}
					ensureDisk(i)
					c.Must(ctx, http.MethodPut, "/api/targetlun/"+target, url.Values{"disk": {disk(i)}})
				}
			})
		}
		wg.Wait()
		n := to - from
		fmt.Printf("setup: %d disks created and mapped (%d→%d LUNs) in %s, %.1f/s with %d concurrent\n",
			n, from, to, time.Since(t0).Round(time.Millisecond), float64(n)/time.Since(t0).Seconds(), conc)
	}
	for _, n := range steps {
		grow(have, n)
		if n > have {
			have = n
		}
		probe := 100000 + n // an image outside the 0..n range
		ensureDisk(probe)
		var put, del stats
		for range samples {
			t0 := time.Now()
			c.Must(ctx, http.MethodPut, "/api/targetlun/"+target, url.Values{"disk": {disk(probe)}})
			put.d = append(put.d, time.Since(t0))
			t0 = time.Now()
			c.Must(ctx, http.MethodDelete, "/api/targetlun/"+target, url.Values{"disk": {disk(probe)}})
			del.d = append(del.d, time.Since(t0))
		}
		fmt.Printf("PUT /api/targetlun with %4d LUNs on the target: p50 %s  p99 %s  (%d samples; DELETE p50 %s)\n",
			n, ms(put.pct(0.5)), ms(put.pct(0.99)), samples, ms(del.pct(0.5)))

		// PUT /api/clientlun: the probe disk, now a LUN of the target, in
		// and out of one client's LUNs
		c.Must(ctx, http.MethodPut, "/api/targetlun/"+target, url.Values{"disk": {disk(probe)}})
		client := "iqn.1994-05.com.example:" + prefix + "-probe"
		if st, _, err := c.Do(ctx, http.MethodGet, "/api/_client/"+target+"/"+client, nil); err != nil || st != http.StatusOK {
			c.Must(ctx, http.MethodPut, "/api/client/"+target+"/"+client, url.Values{})
		}
		var cput, cdel stats
		for range samples {
			t0 := time.Now()
			c.Must(ctx, http.MethodPut, "/api/clientlun/"+target+"/"+client, url.Values{"disk": {disk(probe)}})
			cput.d = append(cput.d, time.Since(t0))
			t0 = time.Now()
			c.Must(ctx, http.MethodDelete, "/api/clientlun/"+target+"/"+client, url.Values{"disk": {disk(probe)}})
			cdel.d = append(cdel.d, time.Since(t0))
		}
		c.Must(ctx, http.MethodDelete, "/api/targetlun/"+target, url.Values{"disk": {disk(probe)}})
		fmt.Printf("PUT /api/clientlun with %4d LUNs on the target: p50 %s  p99 %s  (%d samples; DELETE p50 %s)\n",
			n+1, ms(cput.pct(0.5)), ms(cput.pct(0.99)), samples, ms(cdel.pct(0.5)))
	}
}

func getConfig(ctx context.Context, c *client, conc int, dur time.Duration, procs []proc) {
	g := getLoad(ctx, c, conc, dur, procs)
	fmt.Printf("GET /api/config (%d bytes), %d concurrent for %s: %.0f req/s  p50 %s  p99 %s  errors %d\n",
		g.size, conc, dur, g.rate, ms(g.p50), ms(g.p99), g.errs)
	if d := g.detail(); d != "" {
		fmt.Println("  " + d)
	}
}

// getLoad runs GET /api/config from conc clients, each one request after the
// other on a connection of its own (rawGetter), for dur. Besides the
// client's view it keeps the daemon's own (the Server-Timing stages of
// each answer, when it sends them) and the CPU the processes in procs
// spent per request.
func getLoad(ctx context.Context, c *client, conc int, dur time.Duration, procs []proc) getResult {
	st, b, err := c.Do(ctx, http.MethodGet, "/api/config", nil)
	if err != nil || st != http.StatusOK {
		rest.Fatalf("GET /api/config: %d %v", st, err)
	}
	size := len(b)
	deadline := time.Now().Add(dur)
	var (
		mu     sync.Mutex
		all    stats
		stages = map[string]*stats{}
		order  []string
		errs   atomic.Int64
	)
	var wg sync.WaitGroup
	cpu0 := sampleCPU(procs)
	var threads0 map[string]int64
	if len(procs) > 1 {
		threads0 = threadTicks(procs[1].pid)
	}
	t0 := time.Now()
	for range conc {
		wg.Go(func() {
			var local []time.Duration
			var timings []string
			g, rawErr := newRawGetter(c.Base, c.User, c.Pass, "/api/config")
			if rawErr == nil {
				defer g.close()
			}
			for time.Now().Before(deadline) {
				s := time.Now()
				var (
					st     int
					timing string
					err    error
				)
				if rawErr == nil {
					st, timing, _, err = g.get()
				} else { // https: net/http's client
					var h http.Header
					if st, h, _, err = c.Send(ctx, http.MethodGet, "/api/config", nil); err == nil {
						timing = h.Get("Server-Timing")
					}
				}
				if err != nil || st != http.StatusOK {
					if errs.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "GET /api/config: %d %v\n", st, errors.Join(err))
					}
					continue
				}
				local = append(local, time.Since(s))
				if timing != "" {
					timings = append(timings, timing)
				}
			}
			mu.Lock()
			all.d = append(all.d, local...)
			for _, v := range timings {
				for _, r := range parseServerTiming(v) {
					if stages[r.name] == nil {
						stages[r.name] = &stats{}
						order = append(order, r.name)
					}
					stages[r.name].d = append(stages[r.name].d, time.Duration(r.ms*float64(time.Millisecond)))
				}
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(t0)
	cpu1 := sampleCPU(procs)
	g := getResult{rate: float64(len(all.d)) / el.Seconds(), p50: all.pct(0.5), p99: all.pct(0.99), errs: errs.Load(), size: size}
	for _, name := range order {
		g.stages = append(g.stages, stageP50{name, stages[name].pct(0.5), len(stages[name].d)})
	}
	for i, p := range procs {
		if cpu0[i] >= 0 && cpu1[i] >= 0 && len(all.d) > 0 {
			// USER_HZ is 100: a tick is 10 ms
			g.cpu = append(g.cpu, procCPU{p.name, float64(cpu1[i]-cpu0[i]) * 10 / float64(len(all.d))})
		}
	}
	if threads0 != nil && len(all.d) > 0 {
		// the first watched process (the daemon) by thread name
		for name, t1 := range threadTicks(procs[1].pid) {
			if d := t1 - threads0[name]; d > 0 {
				g.threads = append(g.threads, procCPU{name, float64(d) * 10 / float64(len(all.d))})
			}
		}
		slices.SortFunc(g.threads, func(a, b procCPU) int { return cmp.Compare(b.msReq, a.msReq) })
		g.threadsOf = procs[1].name
	}
	return g
}
