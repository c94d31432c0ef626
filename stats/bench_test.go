package stats

import (
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"ceph-iscsi/lio"
)

// BenchmarkScrape is one /metrics collection of a large gateway on the
// emulated configfs: 256 LUNs, 64 clients with 4 LUNs each, every counter
// non-zero. Figures go in the report, never into an assertion.
// Run: go test -run '^$' -bench Scrape -benchmem ./stats/
func BenchmarkScrape(b *testing.B) {
	for _, size := range []struct {
		name               string
		luns, clients, per int
	}{
		{"64x16", 64, 16, 4},
		{"256x64", 256, 64, 4},
	} {
		b.Run(size.name, func(b *testing.B) {
			f := gateway(b, size.luns, size.clients, size.per)
			for c := range size.clients {
				login(b, f, c)
				for l := range size.per {
					io(b, f, c, l, 1000, 10, 20)
				}
			}
			for l := range size.luns {
				portIO(b, f, 1, l, 4000, 40, 80)
			}
			c := NewCollector(f, testGW, "bench", nil)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			b.Run("read", func(b *testing.B) {
				b.ReportAllocs()
				cpu := cpuTime()
				for b.Loop() {
					if _, err := lio.ReadStatistics(f); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
			b.Run("gather", func(b *testing.B) {
				b.ReportAllocs()
				cpu := cpuTime()
				for b.Loop() {
					if _, err := reg.Gather(); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
		})
	}
}

// cpuTime is the process's user+system CPU time: on a shared, loaded
// machine wall time says more about the neighbours than about the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(cpuTime()-since)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
