package shell

import (
	"flag"
	"os"
	"strings"
	"testing"

	"ceph-iscsi/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// groupSnapshot is a representative gateway group: two targets, three gateways (one DOWN,
// one PARTIAL), disks in two pools (one image missing), a host group, clients with no CHAP,
// CHAP and mutual CHAP, one logged in, CHAP discovery auth, an erasure-coded pool.
func groupSnapshot() *Snapshot {
	const (
		t1, t2      = "iqn.2003-01.com.example.iscsi-gw:t1", "iqn.2003-01.com.example.iscsi-gw:t2"
		gw1, gw2    = "gw1.example.test", "gw2.example.test"
		gw3         = "gw3.example.test"
		c1, c2, c3  = "iqn.1994-05.com.example:c1", "iqn.1994-05.com.example:c2", "iqn.1994-05.com.example:c3"
		c4          = "iqn.1994-05.com.example:c4"
		rbdA, rbdB  = "rbd/disk_1", "rbd/disk_2"
		rbd10, ssdA = "rbd/disk_10", "ssd/fast1"
		gone        = "ssd/gone"
	)
	disk := func(id, owner string) *config.Disk {
		p, i, _ := strings.Cut(id, "/")
		d := &config.Disk{Pool: p, Image: i}
		if owner != "" {
			d.Owner = ptr(owner)
		}
		return d
	}
	doc := &config.Doc{
		Disks: map[string]*config.Disk{
			rbdA: disk(rbdA, gw1), rbdB: disk(rbdB, gw2), rbd10: disk(rbd10, gw1), ssdA: disk(ssdA, gw2), gone: disk(gone, ""),
		},
		Gateways:      map[string]*config.Gateway{gw1: {}, gw2: {}, gw3: {}},
		DiscoveryAuth: config.Auth{Username: "discovery1", Password: "discoverypass1"},
		Targets: map[string]*config.Target{
			t1: {
				Disks: map[string]config.LunRef{rbdA: {LunID: 0}, rbdB: {LunID: 1}, rbd10: {LunID: 2}},
				Portals: map[string]*config.Portal{
					gw1: {PortalIPAddresses: []string{"192.0.2.1"}},
					gw2: {PortalIPAddresses: []string{"192.0.2.2", "198.51.100.2"}},
					gw3: {PortalIPAddresses: []string{"192.0.2.3"}},
				},
				Clients: map[string]*config.Client{
					c1: {Auth: config.Auth{Username: "c1user01", Password: "c1password01"},
						Luns: map[string]config.LunRef{rbdA: {LunID: 0}, rbd10: {LunID: 2}}},
					c2: {Auth: config.Auth{Username: "c2user01", Password: "c2password01", MutualUsername: "c2mutual", MutualPassword: "c2mutualpass"},
						Luns: map[string]config.LunRef{rbdB: {LunID: 1}}, GroupName: "grp1"},
					c3: {Luns: map[string]config.LunRef{}},
				},
				Groups:     map[string]*config.Group{"grp1": {Members: []string{c2}, Disks: map[string]config.LunRef{rbdB: {LunID: 1}}}},
				ACLEnabled: true,
			},
			t2: {
				Auth:    config.Auth{Username: "t2target", Password: "t2targetpass"},
				Disks:   map[string]config.LunRef{ssdA: {LunID: 0}},
				Portals: map[string]*config.Portal{gw2: {PortalIPAddresses: []string{"192.0.2.2"}}},
				Clients: map[string]*config.Client{
					c4: {Luns: map[string]config.LunRef{ssdA: {LunID: 0}}},
				},
				Groups: map[string]*config.Group{},
			},
		},
	}
	return &Snapshot{
		Config:  doc,
		Cluster: ClusterFacts{Name: "ceph", Health: "HEALTH_WARN", OSDs: 3, MONs: 3},
		Pools: map[string]PoolFacts{
			"rbd": {Name: "rbd", Replicated: true, Size: 3, MaxAvail: 100 * gib, Used: 3 * gib},
			"ssd": {Name: "ssd", Size: 6, K: 4, M: 2, MaxAvail: 512 * gib, Used: 0},
		},
		Images: map[string]ImageFacts{
			rbdA: {Size: 10 * gib}, rbdB: {Size: 500 << 20}, rbd10: {Size: 2048 * gib}, ssdA: {Size: 1536 << 20},
		},
		Gateways:   map[string]GatewayState{gw1: GatewayUp, gw2: GatewayPartial},
		DiskStatus: map[string]string{rbdA: "Online", rbdB: "Online", rbd10: "Unknown"},
		LoggedIn:   map[string]bool{t1 + "/" + c1: true},
	}
}

// TestGoldenLs compares the rendering of the representative group with the golden file
// line by line. The golden file was written with -update and checked by hand against
// upstream's summaries (gwcli/*.py summary methods) and the reference output's layout.
func TestGoldenLs(t *testing.T) {
	got := Render(Build(groupSnapshot()), "/", 0, 132)
	const file = "testdata/group-ls.golden"
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	compareLines(t, strings.SplitAfter(got, "\n"), strings.SplitAfter(string(raw), "\n"))
}
