package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"ceph-iscsi/bench/internal/rest"
)

// replayOpts is the -replay mode: upstream's own call sequence (what gwcli
// sends), timed call by call.
type replayOpts struct {
	target, gateway, gatewayIP string
	pool, prefix, size         string
	disks, lunsPerClient       int
	reportAt                   []int
	getConc                    int
	getDur                     time.Duration
	procs                      []proc
	out                        string // raw records, for -summary
}

// record is one timed call, or one GET /api/config load run.
type record struct {
	call  string // target, gateway, disk, targetlun, client, clientauth, clientlun
	disks int    // disks on the target once the call is done (its segment)
	secs  float64
}

// replay builds, through the API, the target of upstream's own benchmark
// sequence: the target, this gateway, then per disk PUT /api/disk
// (mode=create) and PUT /api/targetlun, and after every lunsPerClient disks a
// client with CHAP (PUT /api/client, PUT /api/clientauth) mapping those
// disks (PUT /api/clientlun each). At each count in reportAt it prints the
// calls since the previous report and runs GET /api/config with getConc
// clients for getDur. Every record also goes to o.out, one line each:
//
//	call CALL DISKS SECONDS
//	get DISKS REQ_PER_S P50_S P99_S ERRORS BYTES
func replay(ctx context.Context, c *client, o replayOpts) {
	f, err := os.Create(o.out)
	if err != nil {
		rest.Fatalf("%v", err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()

	var recs []record
	var stages []stageRecord
	tt := &timingTransport{next: c.HTTP.Transport}
	if tt.next == nil {
		tt.next = http.DefaultTransport
	}
	c.HTTP.Transport = tt
	timed := func(call string, disks int, method, path string, form url.Values) {
		t0 := time.Now()
		c.Must(ctx, method, path, form)
		r := record{call: call, disks: disks, secs: time.Since(t0).Seconds()}
		recs = append(recs, r)
		fmt.Fprintf(w, "call %s %d %.6f\n", r.call, r.disks, r.secs)
		for _, st := range parseServerTiming(tt.take()) {
			st.call, st.disks = call, disks
			stages = append(stages, st)
			fmt.Fprintf(w, "stage %s %d %s %.3f\n", call, disks, st.name, st.ms)
		}
		_ = w.Flush()
	}
	disk := func(i int) string { return fmt.Sprintf("%s/%s%04d", o.pool, o.prefix, i) }
	clientIQN := func(k int) string { return fmt.Sprintf("iqn.1994-05.com.example:%s-client%03d", o.prefix, k) }

	timed("target", 0, http.MethodPut, "/api/target/"+o.target, url.Values{})
	timed("gateway", 0, http.MethodPut, "/api/gateway/"+o.target+"/"+o.gateway,
		url.Values{"ip_address": {o.gatewayIP}, "skipchecks": {"true"}})
	from := 1
	for i := 1; i <= o.disks; i++ {
		// the form gwcli's "disks/ create" sends
		timed("disk", i, http.MethodPut, "/api/disk/"+disk(i), url.Values{
			"pool": {o.pool}, "owner": {o.gateway}, "count": {"1"}, "mode": {"create"},
			"create_image": {"true"}, "backstore": {"user:rbd"}, "size": {strings.ToUpper(o.size)},
		})
		timed("targetlun", i, http.MethodPut, "/api/targetlun/"+o.target, url.Values{"disk": {disk(i)}})
		if o.lunsPerClient > 0 && i%o.lunsPerClient == 0 {
			k := i / o.lunsPerClient
			path := o.target + "/" + clientIQN(k)
			timed("client", i, http.MethodPut, "/api/client/"+path, url.Values{})
			timed("clientauth", i, http.MethodPut, "/api/clientauth/"+path, url.Values{
				"username": {fmt.Sprintf("benchuser%04d", k)}, "password": {fmt.Sprintf("benchPass%05d", k)},
				"mutual_username": {""}, "mutual_password": {""},
			})
			for j := i - o.lunsPerClient + 1; j <= i; j++ {
				timed("clientlun", i, http.MethodPut, "/api/clientlun/"+path, url.Values{"disk": {disk(j)}})
			}
		}
		if slices.Contains(o.reportAt, i) || i == o.disks {
			printSegment(os.Stdout, recs, from, i)
			printStages(os.Stdout, stages, from, i)
			g := getLoad(ctx, c, o.getConc, o.getDur, o.procs)
			fmt.Printf("  GET /api/config at %d disks (%d bytes), %d concurrent for %s: %.2f req/s  p50 %s  p99 %s  errors %d\n",
				i, g.size, o.getConc, o.getDur, g.rate, ms(g.p50), ms(g.p99), g.errs)
			if d := g.detail(); d != "" {
				fmt.Printf("  GET /api/config at %d disks: %s\n", i, d)
			}
			fmt.Fprintf(w, "get %d %.4f %.6f %.6f %d %d\n", i, g.rate, g.p50.Seconds(), g.p99.Seconds(), g.errs, g.size)
			_ = w.Flush()
			from = i + 1
		}
	}
}

// callOrder is the order the summaries list the calls in.
var callOrder = []string{"target", "gateway", "disk", "targetlun", "disk+targetlun", "client", "clientauth", "clientlun"}

type agg struct {
	n              int
	mean, p50, max float64
}

// aggregate summarises the calls of the segment from..to (disks on the
// target after the call); "disk+targetlun" is the two calls of one disk
// added together, the figure an operator waits for per LUN.
func aggregate(recs []record, from, to int) map[string]agg {
	by := map[string][]float64{}
	pair := map[int]float64{}
	for _, r := range recs {
		inSeg := r.disks >= from && r.disks <= to
		if r.call == "target" || r.call == "gateway" {
			inSeg = from <= 1 // the set-up calls belong to the first segment
		}
		if !inSeg {
			continue
		}
		by[r.call] = append(by[r.call], r.secs)
		if r.call == "disk" || r.call == "targetlun" {
			pair[r.disks] += r.secs
		}
	}
	for _, s := range pair {
		by["disk+targetlun"] = append(by["disk+targetlun"], s)
	}
	out := map[string]agg{}
	for call, v := range by {
		slices.Sort(v)
		var sum float64
		for _, x := range v {
			sum += x
		}
		out[call] = agg{n: len(v), mean: sum / float64(len(v)), p50: v[(len(v)-1)/2], max: v[len(v)-1]}
	}
	return out
}

func printSegment(w io.Writer, recs []record, from, to int) {
	fmt.Fprintf(w, "calls of disks %d..%d, seconds:\n  %-15s %4s %8s %8s %8s\n", from, to, "call", "n", "mean", "p50", "max")
	a := aggregate(recs, from, to)
	for _, call := range callOrder {
		if s, ok := a[call]; ok {
			fmt.Fprintf(w, "  %-15s %4d %8.3f %8.3f %8.3f\n", call, s.n, s.mean, s.p50, s.max)
		}
	}
}

type getResult struct {
	rate     float64
	p50, p99 time.Duration
	errs     int64
	size     int
	// stages are the p50 of each Server-Timing stage the daemon answered
	// (ours does), cpu the CPU per request of each watched process; the
	// console shows them, the records file does not keep them
	stages []stageP50
	cpu    []procCPU
	// threads is the CPU per request of threadsOf's threads by name,
	// most first
	threads   []procCPU
	threadsOf string
}

type stageP50 struct {
	name string
	p50  time.Duration
	n    int
}

type procCPU struct {
	name  string
	msReq float64
}

// detail is the daemon's view of a GET run (the p50 of each Server-Timing
// stage, and how many answers had it) and the CPU per request of each
// watched process; "" when there is neither.
func (g getResult) detail() string {
	var parts []string
	if len(g.stages) > 0 {
		s := "server p50"
		for _, st := range g.stages {
			s += fmt.Sprintf(" %s=%.2f", st.name, float64(st.p50.Microseconds())/1000)
		}
		parts = append(parts, s+fmt.Sprintf(" ms (%d answers)", g.stages[len(g.stages)-1].n))
	}
	if len(g.cpu) > 0 {
		s := "CPU per GET"
		for _, c := range g.cpu {
			s += fmt.Sprintf(" %s=%.2f", c.name, c.msReq)
		}
		parts = append(parts, s+" ms")
	}
	if len(g.threads) > 0 {
		s := g.threadsOf + "'s threads"
		for _, c := range g.threads {
			s += fmt.Sprintf(" %s=%.2f", strings.ReplaceAll(c.name, " ", "_"), c.msReq)
		}
		parts = append(parts, s+" ms")
	}
	return strings.Join(parts, "; ")
}

// readRecords parses a -replay output file.
func readRecords(path string) ([]record, map[int]getResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var recs []record
	gets := map[int]getResult{}
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		bad := fmt.Errorf("%s:%d: malformed line %q", path, n+1, line)
		switch {
		case len(f) == 4 && f[0] == "call":
			d, err1 := strconv.Atoi(f[2])
			s, err2 := strconv.ParseFloat(f[3], 64)
			if err1 != nil || err2 != nil {
				return nil, nil, bad
			}
			recs = append(recs, record{call: f[1], disks: d, secs: s})
		case len(f) == 7 && f[0] == "get":
			d, err1 := strconv.Atoi(f[1])
			rate, err2 := strconv.ParseFloat(f[2], 64)
			p50, err3 := strconv.ParseFloat(f[3], 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return nil, nil, bad
			}
			gets[d] = getResult{rate: rate, p50: time.Duration(p50 * float64(time.Second))}
		case len(f) == 0, len(f) == 5 && f[0] == "stage":
		default:
			return nil, nil, bad
		}
	}
	return recs, gets, nil
}

// summary prints, for each segment between the report points, the mean, p50
// and max of every call of each -replay file side by side, GET /api/config's
// req/s, and the speed-up of the second file over the first: the first's
// seconds over the second's, and the second's req/s over the first's. A missing file (a run that did not happen)
// leaves its columns empty.
func summary(names, paths []string, reportAt []int) {
	recs := make([][]record, len(paths))
	gets := make([]map[int]getResult, len(paths))
	for i, p := range paths {
		r, g, err := readRecords(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "apiload: %v\n", err)
			continue
		}
		recs[i], gets[i] = r, g
	}
	from := 1
	for _, to := range reportAt {
		fmt.Printf("disks %d..%d, seconds per call: mean / p50 / max\n", from, to)
		fmt.Printf("  %-15s", "call")
		for _, n := range names {
			fmt.Printf(" %26s", n)
		}
		if len(names) == 2 {
			fmt.Printf(" %14s", "speed-up")
		}
		fmt.Println()
		aggs := make([]map[string]agg, len(paths))
		for i := range paths {
			aggs[i] = aggregate(recs[i], from, to)
		}
		for _, call := range callOrder {
			line, any := fmt.Sprintf("  %-15s", call), false
			for i := range paths {
				if s, ok := aggs[i][call]; ok {
					line += fmt.Sprintf(" %4d× %6.3f %6.3f %6.3f", s.n, s.mean, s.p50, s.max)
					any = true
				} else {
					line += fmt.Sprintf(" %26s", "-")
				}
			}
			if len(paths) == 2 {
				a, okA := aggs[0][call]
				b, okB := aggs[1][call]
				if okA && okB && b.mean > 0 {
					line += fmt.Sprintf(" %13.1fx", a.mean/b.mean)
				}
			}
			if any {
				fmt.Println(line)
			}
		}
		line := fmt.Sprintf("  %-15s", "GET config/s")
		for i := range paths {
			if g, ok := gets[i][to]; ok {
				line += fmt.Sprintf(" %11.2f req/s p50 %6.3f", g.rate, g.p50.Seconds())
			} else {
				line += fmt.Sprintf(" %26s", "-")
			}
		}
		if len(paths) == 2 {
			a, okA := gets[0][to]
			b, okB := gets[1][to]
			if okA && okB && a.rate > 0 {
				line += fmt.Sprintf(" %13.1fx", b.rate/a.rate) // req/s: ours over upstream's
			}
		}
		fmt.Println(line)
		from = to + 1
	}
}

// timingTransport keeps the Server-Timing header of the last response: where
// the daemon says a call's time went (ours sends one; upstream does not).
type timingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	last string
}

func (t *timingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		t.mu.Lock()
		t.last = resp.Header.Get("Server-Timing")
		t.mu.Unlock()
	}
	return resp, err
}

// take returns the last header and forgets it.
func (t *timingTransport) take() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.last
	t.last = ""
	return h
}

// stageRecord is one stage of one timed call, from its Server-Timing.
type stageRecord struct {
	call  string
	disks int
	name  string
	ms    float64
}

// parseServerTiming reads "name;dur=ms, ..." (entries without a duration
// are skipped).
func parseServerTiming(h string) []stageRecord {
	var out []stageRecord
	for _, e := range strings.Split(h, ",") {
		parts := strings.Split(strings.TrimSpace(e), ";")
		for _, p := range parts[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "dur="); ok {
				if ms, err := strconv.ParseFloat(v, 64); err == nil && parts[0] != "" {
					out = append(out, stageRecord{name: parts[0], ms: ms})
				}
			}
		}
	}
	return out
}

// printStages prints, per call of the segment from..to, the mean of each
// Server-Timing stage over the calls that reported it (in milliseconds,
// "total" being the daemon's own view of the call); nothing when the daemon
// sent no header.
func printStages(w io.Writer, stages []stageRecord, from, to int) {
	type acc struct {
		sum float64
		n   int
	}
	by := map[string]map[string]*acc{}
	order := map[string][]string{}
	for _, st := range stages {
		inSeg := st.disks >= from && st.disks <= to
		if st.call == "target" || st.call == "gateway" {
			inSeg = from <= 1
		}
		if !inSeg {
			continue
		}
		if by[st.call] == nil {
			by[st.call] = map[string]*acc{}
		}
		a := by[st.call][st.name]
		if a == nil {
			a = &acc{}
			by[st.call][st.name] = a
			order[st.call] = append(order[st.call], st.name)
		}
		a.sum += st.ms
		a.n++
	}
	if len(by) == 0 {
		return
	}
	// A stage only some calls had (a stat when the cached document could
	// not be used) is averaged over every call of the segment, like the
	// call times, and says how many had it: a mean over the few alone
	// reads like a cost every call pays.
	fmt.Fprintf(w, "server stages of disks %d..%d (Server-Timing), mean ms over the segment's calls (k/n: only k of n calls had the stage):\n", from, to)
	for _, call := range callOrder {
		if by[call] == nil {
			continue
		}
		calls := 0
		for _, a := range by[call] {
			calls = max(calls, a.n)
		}
		line := fmt.Sprintf("  %-11s", call)
		for _, name := range order[call] {
			a := by[call][name]
			line += fmt.Sprintf(" %s=%.1f", name, a.sum/float64(calls))
			if a.n < calls {
				line += fmt.Sprintf("(%d/%d)", a.n, calls)
			}
		}
		fmt.Fprintln(w, line)
	}
}
