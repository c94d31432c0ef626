// Command apibuild builds a large target through the REST API of several
// gateways at once and reports what it cost: disks created 10 per call, each
// mapped to the target, then clients of -per-client LUNs each, every request
// sent to the next gateway in turn by -c concurrent workers. On the way, when
// the target reaches each of -steps LUNs, it times PUT /api/targetlun and PUT
// /api/clientlun on the first gateway (each sample undone by its DELETE). It
// prints the build's total time, mutations/s, and the CPU seconds each daemon
// spent per mutation (utime+stime of -pid from /proc/<pid>/stat).
//
// Every -progress it also prints the mutations so far and their CPU cost,
// for a build stopped before its end.
//
// bench/build3.sh runs it against three daemons on emulated configfs roots
// and then checks that every gateway's LIO equals the configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
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

// cpu is a process's utime+stime in seconds, from /proc/<pid>/stat.
func cpu(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		rest.Fatalf("%v", err)
	}
	// the command name may hold spaces: fields count from after its ')'
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

func p50(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func main() {
	gws := flag.String("gw", "gw1=http://127.0.0.1:5000", "gateways, name=URL, comma separated")
	pids := flag.String("pid", "", "daemon pids, name=pid, comma separated (CPU per mutation)")
	user := flag.String("user", "admin", "API user")
	pass := flag.String("pass", "admin", "API password")
	target := flag.String("target", "iqn.2003-01.com.example.bench:target", "target IQN (it and its gateways must exist)")
	pool := flag.String("pool", "rbd", "pool of the images")
	luns := flag.Int("luns", 4096, "LUNs to build on the target")
	perClient := flag.Int("per-client", 4, "LUNs of each client")
	conc := flag.Int("c", 6, "concurrent requests")
	stepsFlag := flag.String("steps", "16,256,1024,4096", "LUN counts at which PUT targetlun and clientlun are timed")
	samples := flag.Int("samples", 10, "timed PUTs per step and call")
	progress := flag.Duration("progress", 2*time.Minute, "interval of the progress lines (0: none)")
	flag.Parse()

	var clients []*client
	for _, kv := range strings.Split(*gws, ",") {
		_, u, ok := strings.Cut(kv, "=")
		if !ok {
			rest.Fatalf("-gw %q: want name=URL", kv)
		}
		clients = append(clients, &client{Base: strings.TrimRight(u, "/"), User: *user, Pass: *pass,
			HTTP: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}})
	}
	pidOf := map[string]int{}
	if *pids != "" {
		for _, kv := range strings.Split(*pids, ",") {
			name, p, _ := strings.Cut(kv, "=")
			n, err := strconv.Atoi(p)
			if err != nil {
				rest.Fatalf("-pid %q: want name=pid", kv)
			}
			pidOf[name] = n
		}
	}
	var steps []int
	for _, s := range strings.Split(*stepsFlag, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 && n <= *luns {
			steps = append(steps, n)
		}
	}
	slices.Sort(steps)
	ctx := context.Background()
	first := clients[0]
	tpath := url.PathEscape(*target)

	// 10 disks per PUT /api/disk (count=10 names them <image>1..<image>10)
	disk := func(i int) string { return fmt.Sprintf("%s/b%04d_%d", *pool, i/10, i%10+1) }
	clientIQN := func(i int) string { return fmt.Sprintf("iqn.1994-05.com.example.bench:c%04d", i) }

	var next atomic.Int64 // round robin over the gateways
	pick := func() *client { return clients[int(next.Add(1))%len(clients)] }
	var mutations atomic.Int64
	// run calls f(i) for i in [from, to) on conc workers
	run := func(from, to int, f func(i int)) {
		var n atomic.Int64
		n.Store(int64(from))
		var wg sync.WaitGroup
		for range *conc {
			wg.Go(func() {
				for {
					i := int(n.Add(1)) - 1
					if i >= to {
						return
					}
					f(i)
				}
			})
		}
		wg.Wait()
	}
	put := func(c *client, path string, form url.Values) {
		c.Must(ctx, http.MethodPut, path, form)
		mutations.Add(1)
	}

	cpu0 := map[string]float64{}
	for n, p := range pidOf {
		cpu0[n] = cpu(p)
	}
	start := time.Now()
	// Progress lines, so that a build stopped before its end (4096 LUNs
	// on a loaded host) still tells how far it got and at what cost. Their
	// CPU figures include the probes' requests, which are not counted as
	// mutations, and their time the probes'.
	if *progress > 0 {
		go func() {
			for range time.Tick(*progress) {
				m := mutations.Load()
				line := fmt.Sprintf("progress: %d mutations in %s, %.2f/s", m, time.Since(start).Round(time.Second), float64(m)/time.Since(start).Seconds())
				for _, n := range slices.Sorted(maps.Keys(pidOf)) {
					if m > 0 {
						line += fmt.Sprintf("; %s %.1f ms CPU per mutation", n, 1000*(cpu(pidOf[n])-cpu0[n])/float64(m))
					}
				}
				fmt.Println(line)
			}
		}()
	}
	var probeTime time.Duration
	have := 0
	grow := func(to int) {
		if to <= have {
			return
		}
		// disks, in groups of 10
		run((have+9)/10, (to+9)/10, func(g int) {
			put(pick(), "/api/disk/"+*pool+"/"+fmt.Sprintf("b%04d_", g), url.Values{
				"mode": {"create"}, "size": {"1M"}, "count": {"10"}, "pool": {*pool},
				"create_image": {"true"}, "backstore": {"user:rbd"},
			})
		})
		run(have, to, func(i int) { put(pick(), "/api/targetlun/"+tpath, url.Values{"disk": {disk(i)}}) })
		// clients, each with the next perClient disks
		run(have / *perClient, to / *perClient, func(c int) {
			cl := pick()
			put(cl, "/api/client/"+tpath+"/"+clientIQN(c), url.Values{})
			for j := range *perClient {
				put(cl, "/api/clientlun/"+tpath+"/"+clientIQN(c), url.Values{"disk": {disk(c**perClient + j)}})
			}
		})
		have = to
	}
	for _, n := range steps {
		grow(n)
		t0 := time.Now()
		// the probe: a disk and a client of its own, outside the build's names
		probe := fmt.Sprintf("%s/probe%d", *pool, n)
		first.Must(ctx, http.MethodPut, "/api/disk/"+probe, url.Values{
			"mode": {"create"}, "size": {"1M"}, "count": {"1"}, "pool": {*pool}, "create_image": {"true"}, "backstore": {"user:rbd"}})
		var tp, td, cp, cd []time.Duration
		timed := func(into *[]time.Duration, method, path string, form url.Values) {
			t := time.Now()
			first.Must(ctx, method, path, form)
			*into = append(*into, time.Since(t))
		}
		for range *samples {
			timed(&tp, http.MethodPut, "/api/targetlun/"+tpath, url.Values{"disk": {probe}})
			timed(&td, http.MethodDelete, "/api/targetlun/"+tpath, url.Values{"disk": {probe}})
		}
		first.Must(ctx, http.MethodPut, "/api/targetlun/"+tpath, url.Values{"disk": {probe}})
		pc := fmt.Sprintf("iqn.1994-05.com.example.bench:probe%d", n)
		first.Must(ctx, http.MethodPut, "/api/client/"+tpath+"/"+pc, url.Values{})
		for range *samples {
			timed(&cp, http.MethodPut, "/api/clientlun/"+tpath+"/"+pc, url.Values{"disk": {probe}})
			timed(&cd, http.MethodDelete, "/api/clientlun/"+tpath+"/"+pc, url.Values{"disk": {probe}})
		}
		first.Must(ctx, http.MethodDelete, "/api/client/"+tpath+"/"+pc, url.Values{})
		first.Must(ctx, http.MethodDelete, "/api/targetlun/"+tpath, url.Values{"disk": {probe}})
		fmt.Printf("at %4d LUNs: PUT targetlun p50 %s (DELETE %s), PUT clientlun p50 %s (DELETE %s), %d samples each\n",
			n, ms(p50(tp)), ms(p50(td)), ms(p50(cp)), ms(p50(cd)), *samples)
		probeTime += time.Since(t0)
	}
	grow(*luns)
	total := time.Since(start) - probeTime
	m := mutations.Load()
	fmt.Printf("built %d LUNs, %d clients x %d LUNs on %d gateways with %d concurrent requests: %d mutations in %s (probes excluded), %.2f mutations/s\n",
		*luns, *luns / *perClient, *perClient, len(clients), *conc, m, total.Round(time.Millisecond), float64(m)/total.Seconds())
	for _, n := range slices.Sorted(maps.Keys(pidOf)) {
		// the probes' requests all went to the first gateway (and its peers):
		// the figure includes them, a few percent of the mutations
		used := cpu(pidOf[n]) - cpu0[n]
		fmt.Printf("  %s: %.1f CPU s, %.1f ms CPU per mutation\n", n, used, 1000*used/float64(m))
	}
}
