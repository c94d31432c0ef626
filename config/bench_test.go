package config

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// scaleDoc is the shape of the issue 10 build: one target of n LUNs and n/4
// clients of 4 LUNs each, every disk owned and stamped.
func scaleDoc(tb testing.TB, n int) *Doc {
	tb.Helper()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	d := NewDoc(now)
	const iqn = "iqn.2003-01.com.example.bench:target"
	t, err := d.AddTarget(iqn, now)
	if err != nil {
		tb.Fatal(err)
	}
	owner := "gw1"
	for i := range n {
		id := fmt.Sprintf("rbd/img%05d", i)
		d.Disks[id] = &Disk{Pool: "rbd", Image: fmt.Sprintf("img%05d", i), PoolID: 1, WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", BackstoreObjectName: fmt.Sprintf("rbd.img%05d", i), Owner: &owner, AllocatingHost: &owner,
			Controls: map[string]any{}, Created: Timestamp(now), Updated: Timestamp(now)}
		t.Disks[id] = LunRef{LunID: i}
	}
	for c := range n / 4 {
		cl := NewClient()
		for j := range 4 {
			cl.Luns[fmt.Sprintf("rbd/img%05d", 4*c+j)] = LunRef{LunID: j}
		}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%05d", c)] = cl
	}
	return d
}

// cpuPerOp reports the process's CPU time per iteration, which a loaded
// machine's wall-clock ns/op hides; call it at the end of the loop's
// benchmark with the CPU time taken before the loop.
func cpuPerOp(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((processCPU()-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScale is what a commit and a peer's read of it cost in CPU on a
// target of n LUNs, part by part: the commit's Fork (Clone, the deep copy
// it replaced, for comparison), InvalidNames and
// ValidateAndMarshalSince, and a peer's Load of the bytes.
// Run: go test -run '^$' -bench Scale ./config/
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{256, 4096} {
		d := scaleDoc(b, n)
		raw := d.Marshal()
		b.Run(fmt.Sprintf("luns=%d/clone", n), func(b *testing.B) {
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				_ = d.Clone()
			}
		})
		b.Run(fmt.Sprintf("luns=%d/fork", n), func(b *testing.B) {
			b.ReportAllocs()
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				_ = d.Fork()
			}
		})
		// a clientlun request's document work before its encode: a fork of
		// the cached document and one client's LUNs changed
		b.Run(fmt.Sprintf("luns=%d/fork+setclientluns", n), func(b *testing.B) {
			const c = "iqn.1994-05.com.example:c00001"
			imgs := []string{"rbd/img00004", "rbd/img00005", "rbd/img00006", "rbd/img00008"}
			b.ReportAllocs()
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				if _, err := d.Fork().SetClientLuns("iqn.2003-01.com.example.bench:target", c, imgs, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		// a targetlun request's document work before its encode: a fork of
		// the cached document and a registered disk mapped to the target
		b.Run(fmt.Sprintf("luns=%d/fork+maptargetlun", n), func(b *testing.B) {
			const spare = "rbd/spare"
			base := d.Fork()
			base.PutDisk(spare, &Disk{Pool: "rbd", Image: "spare", Backstore: "user:rbd", Controls: map[string]any{}})
			base.PutGateway("gw1", &Gateway{})
			now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
			b.ReportAllocs()
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				if ok, _, err := base.Fork().MapTargetLun("iqn.2003-01.com.example.bench:target", spare, nil, "gw1", now); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
		b.Run(fmt.Sprintf("luns=%d/invalidnames", n), func(b *testing.B) {
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				_ = d.InvalidNames()
			}
		})
		b.Run(fmt.Sprintf("luns=%d/validate+marshal", n), func(b *testing.B) {
			known := d.InvalidNames()
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				if _, err := d.ValidateAndMarshalSince(known); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("luns=%d/marshal", n), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				_ = d.Marshal()
			}
		})
		b.Run(fmt.Sprintf("luns=%d/load", n), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			defer cpuPerOp(b, processCPU())
			for b.Loop() {
				if _, _, err := Load(raw, UpgradeOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCommitEncode is a commit's validate and encode (the store's
// change after its mutation) on the issue 10 target of n LUNs and n/4
// clients, for the two calls that grow it, side by side: full is the path
// before incremental encoding (InvalidNames of the committed document,
// then ValidateAndMarshalSince), incremental builds on the committed
// document's Encoding (ValidateAndMarshalFrom).
// targetlun maps a registered disk to the target (PUT /api/targetlun),
// clientlun gives a client a fifth LUN (PUT /api/clientlun).
// Run: go test -tags pacific -run '^$' -bench CommitEncode ./config/
func BenchmarkCommitEncode(b *testing.B) {
	const iqn = "iqn.2003-01.com.example.bench:target"
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	for _, n := range []int{256, 4096} {
		base := scaleDoc(b, n)
		base.Gateways["gw1"] = &Gateway{ActiveLuns: n}
		if _, err := base.AddDisk(NewDisk{Pool: "rbd", Image: "new", PoolID: 1, WWN: "wwn-new", Backstore: "user:rbd",
			AllocatingHost: "gw1"}, now); err != nil {
			b.Fatal(err)
		}
		_, enc, err := base.ValidateAndMarshalFrom(nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		changes := []struct {
			name   string
			mutate func(d *Doc) error
		}{
			{"targetlun", func(d *Doc) error {
				_, _, err := d.MapTargetLun(iqn, "rbd/new", nil, "gw1", now)
				return err
			}},
			{"clientlun", func(d *Doc) error {
				_, err := d.SetClientLuns(iqn, "iqn.1994-05.com.example:c00001",
					[]string{"rbd/img00004", "rbd/img00005", "rbd/img00006", "rbd/img00007", "rbd/img00010"}, now)
				return err
			}},
		}
		for _, c := range changes {
			next := base.Fork()
			if err := c.mutate(next); err != nil {
				b.Fatal(err)
			}
			next.Touch(now)
			want := next.Marshal()
			b.Run(fmt.Sprintf("luns=%d/%s/full", n, c.name), func(b *testing.B) {
				defer cpuPerOp(b, processCPU())
				for b.Loop() {
					if _, err := next.ValidateAndMarshalSince(base.InvalidNames()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("luns=%d/%s/incremental", n, c.name), func(b *testing.B) {
				got, _, err := next.ValidateAndMarshalFrom(enc, enc.InvalidNames())
				if err != nil || !bytes.Equal(got, want) {
					b.Fatalf("the incremental encoding differs from Marshal (%v)", err)
				}
				defer cpuPerOp(b, processCPU())
				for b.Loop() {
					if _, _, err := next.ValidateAndMarshalFrom(enc, enc.InvalidNames()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLoadFrom is what a peer pays to read another gateway's
// one-client commit on a target of 4096 LUNs: the whole parse (Load)
// against the parse of what changed (LoadFrom on the last read's
// Decoding).
// Run: go test -tags pacific -run '^$' -bench LoadFrom ./config/
func BenchmarkLoadFrom(b *testing.B) {
	d := scaleDoc(b, 4096)
	first := d.Marshal()
	if _, err := d.SetClientLuns("iqn.2003-01.com.example.bench:target", "iqn.1994-05.com.example:c00100",
		[]string{"rbd/img00400", "rbd/img00009"}, time.Time{}); err != nil {
		b.Fatal(err)
	}
	next := d.Marshal()
	_, _, base, err := LoadFrom(first, UpgradeOptions{}, nil)
	if err != nil || base == nil {
		b.Fatal(err)
	}
	b.Run("Load", func(b *testing.B) {
		start := processCPU()
		for b.Loop() {
			if _, _, err := Load(next, UpgradeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		cpuPerOp(b, start)
	})
	b.Run("LoadFrom", func(b *testing.B) {
		start := processCPU()
		for b.Loop() {
			if _, _, _, err := LoadFrom(next, UpgradeOptions{}, base); err != nil {
				b.Fatal(err)
			}
		}
		cpuPerOp(b, start)
	})
}
