package api

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"ceph-iscsi/config"
)

// BenchmarkGetConfig is GET /api/config in process on a real RADOS object
// holding 64 disks and 64 clients: auth, the object read, the encoding.
// Run: go test -tags pacific -run '^$' -bench GetConfig ./api/
func BenchmarkGetConfig(b *testing.B) {
	store := openClusterStore(b, benchDoc())
	env := newEnv(b, store, gw1, nil)
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := store.Load(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("request", func(b *testing.B) {
		for b.Loop() {
			if rec := env.do(b, http.MethodGet, "/api/config", nil); rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
	})
	// 4 clients at once, as bench/api-vm.sh's load: they share version
	// checks. cpu-ms/op is the whole process's CPU (librados' threads
	// included) per request, which a TCG guest turns into latency.
	b.Run("parallel4", func(b *testing.B) {
		b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
		c0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if rec := env.do(b, http.MethodGet, "/api/config", nil); rec.Code != http.StatusOK {
					b.Errorf("%d %s", rec.Code, rec.Body)
					return
				}
			}
		})
		b.ReportMetric(float64((processCPU()-c0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
	// the same through a real HTTP server on loopback, as the daemon
	// serves it, with 4 keep-alive clients in this process: cpu-ms/op adds
	// net/http on both sides and the socket I/O to the above
	b.Run("http4", func(b *testing.B) {
		srv := httptest.NewServer(env.e)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		defer client.CloseIdleConnections()
		b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
		c0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/config", nil)
				if err != nil {
					b.Error(err)
					return
				}
				req.SetBasicAuth(apiUser, apiPass)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Errorf("%d %v", resp.StatusCode, err)
					return
				}
			}
		})
		b.ReportMetric(float64((processCPU()-c0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
}

func benchDoc() *config.Doc {
	d := seedDoc(gw1)
	t := d.Targets[tIQN]
	for i := range 64 {
		id := fmt.Sprintf("rbd/img%03d", i)
		owner := gw1
		d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%03d", i), WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", BackstoreObjectName: fmt.Sprintf("rbd.img%03d", i), Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
		t.Disks[id] = config.LunRef{LunID: i + 1}
		c := config.NewClient()
		c.Luns[id] = config.LunRef{LunID: 0}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%03d", i)] = c
	}
	return d
}
