package rados

import (
	"context"
	"fmt"
	"testing"
	"time"

	"ceph-iscsi/config"
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
