package gateway

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"ceph-iscsi/config"
)

const benchIQN = "iqn.2003-01.com.example.bench:t1"

// scaleDigestDoc is the api package's BenchmarkPutLun document: n disks
// (and spare ones) on one target, n/4 clients of four LUNs each, two
// portals.
func scaleDigestDoc(n, spare int) *config.Doc {
	now := time.Unix(1700000000, 0)
	d := config.NewDoc(now)
	d.Gateways[gw1] = &config.Gateway{}
	d.Gateways[gw2] = &config.Gateway{}
	t, err := d.AddTarget(benchIQN, now)
	if err != nil {
		panic(err)
	}
	t.IPList = []string{"198.51.100.1", "198.51.100.2"}
	t.Portals = map[string]*config.Portal{
		gw1: {PortalIPAddresses: []string{"198.51.100.1"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2},
		gw2: {PortalIPAddresses: []string{"198.51.100.2"}, GatewayIPList: t.IPList, InactivePortalIPs: []string{}, TPGs: 2},
	}
	owner := gw1
	for i := range n + spare {
		id := fmt.Sprintf("rbd/img%04d", i)
		d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%04d", i), PoolID: 1, WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", BackstoreObjectName: fmt.Sprintf("rbd.img%04d", i), Owner: &owner, AllocatingHost: &owner,
			Controls: map[string]any{}}
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

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkContentDigest is the digest of a document one request changed
// (forked from the last one, as the store does): "clientlun" adds or
// removes a LUN of one client, "targetlun" adds a LUN to the target and
// sets its disk's owner through MutTarget (the whole target changed),
// "maplun" maps or unmaps a LUN as the API does (MapTargetLun,
// UnmapTargetLun: the target's LUN and the disk changed). The fork and the change are not timed; cpu-ms/op
// counts them, and the GC, all the same (the fork's share is reported
// apart by the "fork" case). digest-cpu-us/op is the CPU time of the
// digest's thread alone, the firmer figure on a loaded machine.
func BenchmarkContentDigest(b *testing.B) {
	for _, n := range []int{16, 4096} {
		for _, kind := range []string{"fork", "clientlun", "targetlun", "maplun"} {
			b.Run(fmt.Sprintf("%d/%s", n, kind), func(b *testing.B) {
				const spare = 200
				r := New(Options{})
				doc := scaleDigestDoc(n, spare).Fork()
				r.contentDigest(doc)
				step := 0
				// the digest's own CPU is its thread's: the GC's workers
				// (the forks' garbage) and the machine's other load stay
				// out of it
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var own time.Duration
				cpu := processCPU()
				for b.Loop() {
					b.StopTimer()
					doc = doc.Fork()
					switch kind {
					case "clientlun":
						c := step / 2 % (n / 4)
						ini := fmt.Sprintf("iqn.1994-05.com.example:c%04d", c)
						disk := fmt.Sprintf("rbd/img%04d", 4*((c+1)%(n/4)))
						cl := doc.MutClient(benchIQN, ini)
						if step%2 == 0 {
							cl.Luns[disk] = config.LunRef{LunID: 4}
						} else {
							delete(cl.Luns, disk)
						}
					case "targetlun":
						disk := fmt.Sprintf("rbd/img%04d", n+step%spare)
						t := doc.MutTarget(benchIQN)
						if _, ok := t.Disks[disk]; ok {
							delete(t.Disks, disk)
						} else {
							t.Disks[disk] = config.LunRef{LunID: n + 1 + step%spare}
						}
						o := gw2
						if step%4 < 2 {
							o = gw1
						}
						doc.MutDisk(disk).Owner = &o
					case "maplun":
						disk := fmt.Sprintf("rbd/img%04d", n+step%spare)
						var err error
						if _, ok := doc.Targets[benchIQN].Disks[disk]; ok {
							_, err = doc.UnmapTargetLun(benchIQN, disk, time.Unix(1700000000, 0))
						} else {
							id := n + 1 + step%spare
							_, _, err = doc.MapTargetLun(benchIQN, disk, &id, gw1, time.Unix(1700000000, 0))
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					step++
					b.StartTimer()
					t := threadCPU()
					if kind != "fork" {
						r.contentDigest(doc)
					}
					own += threadCPU() - t
				}
				b.ReportMetric(float64((processCPU()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
				b.ReportMetric(float64(own.Microseconds())/float64(b.N), "digest-cpu-us/op")
			})
		}
	}
}
