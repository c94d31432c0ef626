package devstatus

import (
	"fmt"
	"testing"

	"ceph-iscsi/rados"
)

// One poll of 256 images on 4 gateways (1024 tcmu-runner daemons).
func BenchmarkApply(b *testing.B) {
	daemons := map[string]rados.ServiceDaemon{}
	for i := range 256 {
		for g := range 4 {
			daemons[fmt.Sprintf("gw%d:rbd/disk%03d", g, i)] = report(g == 0, t1, i%3, 0, 0)
		}
	}
	tr := New(Options{})
	b.ReportAllocs()
	for b.Loop() {
		tr.Apply(daemons)
	}
}
