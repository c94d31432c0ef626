package shell

import (
	"fmt"
	"testing"

	"ceph-iscsi/config"
)

// bigSnapshot is the bench group: 256 disks, 64 clients of 4 LUNs, 3 gateways.
func bigSnapshot() *Snapshot {
	doc := &config.Doc{Disks: map[string]*config.Disk{}, Gateways: map[string]*config.Gateway{}, Targets: map[string]*config.Target{}}
	t := &config.Target{Disks: map[string]config.LunRef{}, Clients: map[string]*config.Client{}, Portals: map[string]*config.Portal{},
		Groups: map[string]*config.Group{}, ACLEnabled: true}
	s := &Snapshot{Config: doc, Images: map[string]ImageFacts{}, Gateways: map[string]GatewayState{}, DiskStatus: map[string]string{},
		Pools: map[string]PoolFacts{"rbd": {Name: "rbd", Replicated: true, Size: 3, MaxAvail: 1 << 40}}, LoggedIn: map[string]bool{},
		Cluster: ClusterFacts{Name: "ceph", Health: "HEALTH_OK", OSDs: 3, MONs: 3}}
	for g := range 3 {
		name := fmt.Sprintf("gw%d.example.test", g)
		doc.Gateways[name] = &config.Gateway{}
		t.Portals[name] = &config.Portal{PortalIPAddresses: []string{fmt.Sprintf("192.0.2.%d", g+1)}}
		s.Gateways[name] = GatewayUp
	}
	for i := range 256 {
		id := fmt.Sprintf("rbd/disk%d", i)
		owner := fmt.Sprintf("gw%d.example.test", i%3)
		doc.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("disk%d", i), Owner: &owner}
		t.Disks[id] = config.LunRef{LunID: i}
		s.Images[id] = ImageFacts{Size: 1 << 30}
		s.DiskStatus[id] = "Online"
	}
	for c := range 64 {
		cl := &config.Client{Luns: map[string]config.LunRef{}}
		for j := range 4 {
			cl.Luns[fmt.Sprintf("rbd/disk%d", c*4+j)] = config.LunRef{LunID: c*4 + j}
		}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%d", c)] = cl
	}
	doc.Targets["iqn.2003-01.com.example:t1"] = t
	return s
}

// BenchmarkBuildRender is the client side of `ls` on the bench group: the tree and its text.
func BenchmarkBuildRender(b *testing.B) {
	s := bigSnapshot()
	for b.Loop() {
		if out := Render(Build(s), "/", 0, MaxWidth); len(out) == 0 {
			b.Fatal("empty")
		}
	}
}
