package rados

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
)

// BenchmarkCommit measures one commit (lock, read, mutate, CAS write, unlock) on a
// document holding n clients. Run: go test -tags pacific -run '^$' -bench Commit ./rados/
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{0, 1600} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			conn := connect(b)
			s := openStore(b, conn, uniqueObject(b), nil)
			ctx := context.Background()
			if _, err := s.Commit(ctx, func(d *config.Doc) error {
				if _, err := d.AddTarget(testTarget, time.Now()); err != nil {
					return err
				}
				for i := 0; i < n; i++ {
					if _, err := d.AddClient(testTarget, fmt.Sprintf("iqn.1994-05.com.example:seed%d", i), time.Now()); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				iqn := fmt.Sprintf("iqn.1994-05.com.example:bench%d", i)
				if _, err := s.Commit(ctx, func(d *config.Doc) error {
					_, err := d.AddClient(testTarget, iqn, time.Now())
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// BenchmarkCodec isolates the CPU part of a commit on a 1600-client document.
func BenchmarkCodec(b *testing.B) {
	d := config.NewDoc(time.Now())
	if _, err := d.AddTarget(testTarget, time.Now()); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1600; i++ {
		if _, err := d.AddClient(testTarget, fmt.Sprintf("iqn.1994-05.com.example:c%d", i), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	raw := d.Marshal()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		doc, _, err := config.Load(raw, testIdentity())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := doc.ValidateAndMarshal(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad is what every API request pays to read the document (1600
// clients): the RADOS read plus, while the object version is unchanged, a
// copy of the last parse instead of a new one.
func BenchmarkLoad(b *testing.B) {
	conn := connect(b)
	s := openStore(b, conn, uniqueObject(b), nil)
	ctx := context.Background()
	if _, err := s.Commit(ctx, func(d *config.Doc) error {
		if _, err := d.AddTarget(testTarget, time.Now()); err != nil {
			return err
		}
		for i := 0; i < 1600; i++ {
			if _, err := d.AddClient(testTarget, fmt.Sprintf("iqn.1994-05.com.example:seed%d", i), time.Now()); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Load(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitLuns is the config object's own share of a LUN change: one
// commit (stat, copy of the remembered document, mutation, validation,
// encoding, version-asserted write) on a target holding n LUNs and n/4
// clients of 4 LUNs each, the shape of the issue 10 figures.
// Run: go test -tags pacific -run '^$' -bench CommitLuns ./rados/
func BenchmarkCommitLuns(b *testing.B) {
	for _, n := range []int{16, 256, 1024, 4096} {
		b.Run(fmt.Sprintf("luns=%d", n), func(b *testing.B) {
			// without the test binaries' shared-write check, which encodes
			// the whole document twice per commit: the production cost
			s := openStore(b, connect(b), uniqueObject(b), func(o *StoreOptions) { o.SkipSharedCheck = true })
			ctx := context.Background()
			if _, err := s.Commit(ctx, func(d *config.Doc) error { return lunDoc(d, n) }); err != nil {
				b.Fatal(err)
			}
			enc := time.Duration(0)
			osd := osdCPU(b)
			b.ResetTimer()
			cpu0, osd0 := processCPU(), osd()
			for i := 0; i < b.N; i++ {
				// a client gains and loses a LUN, as PUT/DELETE clientlun;
				// clients in turn, so that where the change falls in the
				// object varies as it does in a build
				client := fmt.Sprintf("iqn.1994-05.com.example:c%05d", (i/2*37)%(n/4))
				disk := fmt.Sprintf("rbd/img%05d", (i/2*37+1)%(n/4)*4)
				doc, err := s.Commit(ctx, func(d *config.Doc) error {
					cl := d.MutClient(testTarget, client)
					if _, ok := cl.Luns[disk]; ok {
						delete(cl.Luns, disk)
					} else {
						cl.Luns[disk] = config.LunRef{LunID: 4}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					t0 := time.Now()
					_ = doc.Marshal()
					enc = time.Since(t0)
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64((osd()-osd0).Microseconds())/1000/float64(b.N), "osd-cpu-ms/op")
			b.ReportMetric(float64(enc.Microseconds())/1000, "encode-ms")
		})
	}
}

// lunDoc fills d with one target holding n LUNs and n/4 clients of 4 LUNs.
func lunDoc(d *config.Doc, n int) error {
	t, err := d.AddTarget(testTarget, time.Now())
	if err != nil {
		return err
	}
	owner := "gw1"
	for i := range n {
		id := fmt.Sprintf("rbd/img%05d", i)
		d.PutDisk(id, &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%05d", i), WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", BackstoreObjectName: fmt.Sprintf("rbd.img%05d", i), Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}})
		t.Disks[id] = config.LunRef{LunID: i}
	}
	for c := range n / 4 {
		cl := config.NewClient()
		for j := range 4 {
			cl.Luns[fmt.Sprintf("rbd/img%05d", c*4+j)] = config.LunRef{LunID: j}
		}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%05d", c)] = cl
	}
	return nil
}

// osdCPU returns a reader of the CPU time the test cluster's OSD has used
// (zero when its pid file cannot be read): what a write costs the cluster,
// which the client's own CPU time does not show.
func osdCPU(tb testing.TB) func() time.Duration {
	c := devcluster.Require(tb)
	raw, err := os.ReadFile(filepath.Join(c.Dir, "run", "osd.0.pid"))
	if err != nil {
		tb.Logf("no OSD CPU figure: %v", err)
		return func() time.Duration { return 0 }
	}
	stat := filepath.Join("/proc", strings.TrimSpace(string(raw)), "stat")
	return func() time.Duration {
		b, err := os.ReadFile(stat)
		if err != nil {
			return 0
		}
		// utime and stime are fields 14 and 15, counted after the
		// parenthesized command name
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return 0
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(u+s) * time.Second / 100 // USER_HZ
	}
}

// processCPU is the user and system time of this process so far (librados'
// threads included): on a shared machine a firmer figure than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
