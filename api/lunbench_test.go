package api

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/gateway"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
)

// recLIO is the daemon's LocalLIO: the gateway's Reconciler.
type recLIO struct{ *gateway.Reconciler }

func (recLIO) ClientInfo(context.Context, string, string) (ClientSession, error) {
	return ClientSession{}, nil
}

// scaleDoc is seedDoc(gw1) with n disks on target tIQN and n/4 clients of 4
// LUNs each, plus spare disks not on the target yet.
func scaleDoc(n, spare int) *config.Doc {
	d := seedDoc(gw1)
	t := d.Targets[tIQN]
	owner := gw1
	for i := range n + spare {
		id := fmt.Sprintf("rbd/img%04d", i)
		d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%04d", i), PoolID: 1, WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", BackstoreObjectName: fmt.Sprintf("rbd.img%04d", i), Owner: &owner, AllocatingHost: &owner,
			Controls: map[string]any{}, Created: config.Timestamp(t0), Updated: config.Timestamp(t0)}
		if i < n {
			t.Disks[id] = config.LunRef{LunID: i + 1}
		}
	}
	for c := range n / 4 {
		cl := config.NewClient()
		for j := range 4 {
			cl.Luns[fmt.Sprintf("rbd/img%04d", 4*c+j)] = config.LunRef{LunID: j}
		}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%04d", c)] = cl
	}
	return d
}

// BenchmarkPutLun is PUT /api/targetlun and PUT /api/clientlun in process
// on a target of n LUNs: a real config object, the daemon's Reconciler on
// an emulated configfs. The config object's own part is reported apart,
// from each answer's Server-Timing: "store-p50-ms" is its validation and
// encoding plus the write, "rest-p50-ms" the request without them (the
// figure issue 10 wants flat). "commit" is a commit of a one-stamp change,
// with nothing planned. "deltargetlun" is DELETE /api/targetlun of a LUN
// no client maps.
// Run: go test -tags pacific -run '^$' -bench PutLun -benchtime 20x ./api/
// BENCH_PUTLUN_PROFILE=DIR writes each loop's CPU profile there.
func BenchmarkPutLun(b *testing.B) {
	for _, n := range []int{16, 256, 1024, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			const spare = 200
			doc := scaleDoc(n, spare)
			store := openClusterStore(b, doc)
			fs, err := lio.NewEmulatedFS(ramDir(b))
			if err != nil {
				b.Fatal(err)
			}
			rec := gateway.New(gateway.Options{FS: fs, Settings: testSettings(),
				Identity: host.Identity{Name: gw1, Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}},
				Size:     func(string, string) (int64, error) { return 1 << 30, nil }})
			cur, err := store.Load(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if err := rec.Reconcile(b.Context(), cur); err != nil {
				b.Fatal(err)
			}
			// what the build wrote is read back once into the model, as
			// the daemon's first change after a restore does
			if _, err := rec.Run(b.Context(), cur, gateway.Mode{DryRun: true}); err != nil {
				b.Fatal(err)
			}
			imgs := newFakeImages()
			for id := range doc.Disks {
				imgs.add(id, 1<<30, 0)
			}
			env := newEnv(b, store, gw1, func(d *Deps) { d.LIO = recLIO{rec}; d.Images = imgs })
			next := n
			b.Run("targetlun", func(b *testing.B) {
				var p p50
				defer p.report(b)
				defer profileLoop(b, n, "targetlun")()
				for b.Loop() {
					stop := p.time()
					if next >= n+spare {
						b.Fatal("out of spare disks")
					}
					rec := env.do(b, http.MethodPut, "/api/targetlun/"+tIQN, v("disk", fmt.Sprintf("rbd/img%04d", next)))
					if rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
					next++
					stop()
					p.stages(b, rec.Header().Get("Server-Timing"))
				}
			})
			c := 0
			b.Run("clientlun", func(b *testing.B) {
				var p p50
				defer p.report(b)
				defer profileLoop(b, n, "clientlun")()
				for b.Loop() {
					stop := p.time()
					// the client's neighbour's first disk, added then removed
					cl := fmt.Sprintf("iqn.1994-05.com.example:c%04d", (c/2)%(n/4))
					disk := fmt.Sprintf("rbd/img%04d", 4*((c/2+1)%(n/4)))
					method := http.MethodPut
					if c%2 == 1 {
						method = http.MethodDelete
					}
					c++
					rec := env.do(b, method, "/api/clientlun/"+tIQN+"/"+cl, v("disk", disk))
					if rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
					stop()
					p.stages(b, rec.Header().Get("Server-Timing"))
				}
			})
			// DELETE of a LUN no client maps: the disks the targetlun loop
			// added, last first; when none is left one is re-added before
			// the iteration's clock starts.
			b.Run("deltargetlun", func(b *testing.B) {
				var p p50
				defer p.report(b)
				defer profileLoop(b, n, "deltargetlun")()
				for b.Loop() {
					if next == n {
						rec := env.do(b, http.MethodPut, "/api/targetlun/"+tIQN, v("disk", fmt.Sprintf("rbd/img%04d", next)))
						if rec.Code != http.StatusOK {
							b.Fatalf("re-add: %d %s", rec.Code, rec.Body)
						}
						next++
					}
					stop := p.time()
					rec := env.do(b, http.MethodDelete, "/api/targetlun/"+tIQN, v("disk", fmt.Sprintf("rbd/img%04d", next-1)))
					if rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
					next--
					stop()
					p.stages(b, rec.Header().Get("Server-Timing"))
				}
			})
			b.Run("commit", func(b *testing.B) {
				var p p50
				defer p.report(b)
				for b.Loop() {
					stop := p.time()
					if _, err := store.Commit(b.Context(), func(d *config.Doc) error {
						d.MutDisk("rbd/img0000").Updated = config.Timestamp(time.Now())
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					stop()
				}
			})
		})
	}
}

// ramDir is a temporary directory on a RAM file system (/dev/shm) when the
// machine has one, else the test's: configfs lives in memory, and the
// emulated one on a disk's file system adds that disk's journal to every
// mkdir and write, which varies from run to run more than what the
// benchmark measures.
func ramDir(b *testing.B) string {
	dir, err := os.MkdirTemp("/dev/shm", "putlun-")
	if err != nil {
		b.Logf("no RAM file system (%v): the emulated configfs is on the test's temporary directory", err)
		return b.TempDir()
	}
	b.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			b.Error(err)
		}
	})
	return dir
}

// profileLoop writes the CPU profile of one measured loop, without the
// target's set-up, to $BENCH_PUTLUN_PROFILE/<luns>-<name>.pprof when that
// directory is set; call what it returns at the loop's end.
func profileLoop(b *testing.B, luns int, name string) func() {
	dir := os.Getenv("BENCH_PUTLUN_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d-%s.pprof", luns, name)))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// p50 collects the duration of each iteration and reports their median,
// and the process's CPU time per iteration (which a loaded machine's
// wall-clock figures hide); with stages, also the medians of the config
// object's share of each request and of the rest.
type p50 struct {
	d           []time.Duration
	cpu         time.Duration
	store, rest []time.Duration
	// byStage is each Server-Timing stage's durations, one per answer
	// that had it.
	byStage map[string][]time.Duration
}

// storeStages are the Server-Timing stages of the config object's own
// encode and write.
var storeStages = []string{"encode", "write"}

// stages records one answer's split: the store stages against the rest of
// its total.
func (p *p50) stages(b *testing.B, header string) {
	st, err := parseServerTiming(header)
	if err != nil {
		b.Fatal(err)
	}
	var store time.Duration
	for _, name := range storeStages {
		store += st[name]
	}
	p.store = append(p.store, store)
	p.rest = append(p.rest, st["total"]-store)
	if p.byStage == nil {
		p.byStage = map[string][]time.Duration{}
	}
	for name, d := range st {
		p.byStage[name] = append(p.byStage[name], d)
	}
}

// parseServerTiming reads the header stageTimes.header writes: name;dur=ms
// entries, comma separated.
func parseServerTiming(h string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, e := range strings.Split(h, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(e), ";dur=")
		if !ok {
			return nil, fmt.Errorf("Server-Timing entry %q: no dur", e)
		}
		ms, err := strconv.ParseFloat(dur, 64)
		if err != nil {
			return nil, fmt.Errorf("Server-Timing entry %q: %w", e, err)
		}
		out[name] += time.Duration(ms * float64(time.Millisecond))
	}
	if _, ok := out["total"]; !ok {
		return nil, fmt.Errorf("Server-Timing %q has no total", h)
	}
	return out, nil
}

// time starts one iteration's clock; call what it returns at its end.
func (p *p50) time() func() {
	t, c := time.Now(), processCPU()
	return func() {
		p.d = append(p.d, time.Since(t))
		p.cpu += processCPU() - c
	}
}

func (p *p50) report(b *testing.B) {
	if len(p.d) == 0 {
		return
	}
	b.ReportMetric(float64(p.cpu.Microseconds())/1000/float64(len(p.d)), "cpu-ms/op")
	report := func(d []time.Duration, unit string) {
		if len(d) == 0 {
			return
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, unit)
	}
	report(p.d, "p50-ms")
	report(p.store, "store-p50-ms")
	report(p.rest, "rest-p50-ms")
	// each stage's median over the answers that had it, (k/n) when not
	// all did: where the rest goes
	var line strings.Builder
	for _, name := range slices.Sorted(maps.Keys(p.byStage)) {
		d := p.byStage[name]
		slices.Sort(d)
		fmt.Fprintf(&line, " %s=%.2f", name, float64(d[len(d)/2].Microseconds())/1000)
		if len(d) != len(p.d) {
			fmt.Fprintf(&line, "(%d/%d)", len(d), len(p.d))
		}
	}
	if line.Len() > 0 {
		b.Logf("stage p50 ms:%s", line.String())
	}
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
