package shell

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"ceph-iscsi/config"
	"ceph-iscsi/rbd"
)

// humanSize is upstream's human_size (spec §10.4), quirks included: 0 prints as "0.00Y".
func humanSize(n uint64) string { return rbd.HumanSize(int64(n)) }

// Build turns a snapshot into the tree of spec §10.2 with upstream's names, kinds and
// summaries. It is pure: everything it shows comes from s.
func Build(s *Snapshot) *Node {
	root := &Node{Name: "/", Kind: KindRoot}
	doc := s.Config
	if doc == nil {
		doc = &config.Doc{}
	}
	sizes := diskSizes(s, doc)

	// /cluster
	clusters := root.add(&Node{Name: "cluster", Kind: KindClusters, Summary: "Clusters: 1"})
	cname := s.Cluster.Name
	if cname == "" {
		cname = "ceph"
	}
	cl := clusters.add(&Node{Name: cname, Kind: KindCluster, Summary: s.Cluster.Health})
	pools := cl.add(&Node{Name: "pools", Kind: KindPools, Summary: fmt.Sprintf("Pools: %d", len(s.Pools))})
	for _, name := range sortedKeys(s.Pools) {
		p := s.Pools[name]
		pools.add(&Node{Name: name, Kind: KindPool, Pool: name, Summary: poolSummary(p, commitOf(doc, sizes, name))})
	}
	cl.add(&Node{Name: "topology", Kind: KindTopology,
		Summary: fmt.Sprintf("OSDs: %d,MONs: %d", s.Cluster.OSDs, s.Cluster.MONs)})

	// /disks
	disks := root.add(&Node{Name: "disks", Kind: KindDisks})
	byPool := map[string][]*config.Disk{}
	for _, id := range sortedKeys(doc.Disks) {
		d := doc.Disks[id]
		pool, image := splitDisk(id, d)
		byPool[pool] = append(byPool[pool], &config.Disk{Pool: pool, Image: image})
	}
	var total uint64
	for _, pool := range sortedKeys(byPool) {
		var ptotal uint64
		pn := disks.add(&Node{Name: pool, Kind: KindDiskPool, Pool: pool})
		for _, d := range byPool[pool] {
			id := d.Pool + "/" + d.Image
			ptotal += sizes[id]
			pn.add(&Node{Name: d.Image, Kind: KindDisk, Pool: d.Pool, Image: d.Image, Summary: diskSummary(s, id)})
		}
		pn.Summary = fmt.Sprintf("%s (%s)", pool, humanSize(ptotal))
		total += ptotal
	}
	disks.Summary = fmt.Sprintf("%s, Disks: %d", humanSize(total), len(doc.Disks))

	// /iscsi-targets
	targets := root.add(&Node{Name: "iscsi-targets", Kind: KindTargets,
		Summary: fmt.Sprintf("DiscoveryAuth: %s, Targets: %d", discoveryAuthWord(doc.DiscoveryAuth), len(doc.Targets))})
	for _, iqn := range sortedKeys(doc.Targets) {
		buildTarget(targets, s, doc, sizes, iqn, doc.Targets[iqn])
	}
	return root
}

func buildTarget(parent *Node, s *Snapshot, doc *config.Doc, sizes map[string]uint64, iqn string, t *config.Target) {
	tn := parent.add(&Node{Name: iqn, Kind: KindTarget, Target: iqn,
		Summary: fmt.Sprintf("Auth: %s, Gateways: %d", authWord(t.Auth), len(t.Portals))})

	td := tn.add(&Node{Name: "disks", Kind: KindTargetDisks, Target: iqn, Summary: fmt.Sprintf("Disks: %d", len(t.Disks))})
	for _, id := range sortedKeys(t.Disks) {
		pool, image, _ := strings.Cut(id, "/")
		td.add(&Node{Name: id, Kind: KindTargetDisk, Target: iqn, Pool: pool, Image: image,
			Summary: fmt.Sprintf("Owner: %s, Lun: %d", ownerOf(doc, id), t.Disks[id].LunID)})
	}

	gws := tn.add(&Node{Name: "gateways", Kind: KindGateways, Target: iqn})
	up := 0
	for _, name := range sortedKeys(t.Portals) {
		st := gatewayState(s, name)
		if st == GatewayUp {
			up++
		}
		gws.add(&Node{Name: name, Kind: KindGateway, Target: iqn, Gateway: name,
			Summary: fmt.Sprintf("%s (%s)", strings.Join(t.Portals[name].PortalIPAddresses, ","), st)})
	}
	gws.Summary = fmt.Sprintf("Up: %d/%d, Portals: %d", up, len(t.Portals), len(t.Portals))

	hg := tn.add(&Node{Name: "host-groups", Kind: KindHostGroups, Target: iqn, Summary: fmt.Sprintf("Groups : %d", len(t.Groups))})
	for _, g := range sortedKeys(t.Groups) {
		grp := t.Groups[g]
		gn := hg.add(&Node{Name: g, Kind: KindHostGroup, Target: iqn, Group: g,
			Summary: fmt.Sprintf("Hosts: %d, Disks: %d", len(grp.Members), len(grp.Disks))})
		for _, m := range grp.Members {
			gn.add(&Node{Name: m, Kind: KindHostGroupMember, Target: iqn, Group: g, Client: m, Summary: "host"})
		}
		for _, id := range sortedKeys(grp.Disks) {
			pool, image, _ := strings.Cut(id, "/")
			gn.add(&Node{Name: id, Kind: KindHostGroupMember, Target: iqn, Group: g, Pool: pool, Image: image, Summary: "disk"})
		}
	}

	hosts := tn.add(&Node{Name: "hosts", Kind: KindClients, Target: iqn, Summary: clientsSummary(t)})
	for _, ciqn := range sortedKeys(t.Clients) {
		c := t.Clients[ciqn]
		var bytes uint64
		for id := range c.Luns {
			bytes += sizes[id]
		}
		var words []string
		if s.LoggedIn[iqn+"/"+ciqn] {
			words = append(words, "LOGGED-IN")
		}
		words = append(words, "Auth: "+authWord(c.Auth), fmt.Sprintf("Disks: %d(%s)", len(c.Luns), humanSize(bytes)))
		cn := hosts.add(&Node{Name: ciqn, Kind: KindClient, Target: iqn, Client: ciqn, Group: c.GroupName,
			Summary: strings.Join(words, ", ")})
		for _, id := range sortedKeys(c.Luns) {
			pool, image, _ := strings.Cut(id, "/")
			lun := c.Luns[id].LunID
			sizeH := ""
			if _, ok := s.Images[id]; ok {
				sizeH = humanSize(sizes[id])
			}
			cn.add(&Node{Name: "lun " + strconv.Itoa(lun), Kind: KindMappedLun, Target: iqn, Client: ciqn,
				Pool: pool, Image: image, LunID: lun,
				Summary: fmt.Sprintf("%s(%s), Owner: %s", id, sizeH, ownerOf(doc, id))})
		}
	}
}

// diskSizes is the size of every disk of the configuration that exists in RBD.
func diskSizes(s *Snapshot, doc *config.Doc) map[string]uint64 {
	out := make(map[string]uint64, len(doc.Disks))
	for id := range doc.Disks {
		if f, ok := s.Images[id]; ok {
			out[id] = f.Size
		}
	}
	return out
}

func splitDisk(id string, d *config.Disk) (string, string) {
	if d != nil && d.Pool != "" && d.Image != "" {
		return d.Pool, d.Image
	}
	pool, image, _ := strings.Cut(id, "/")
	return pool, image
}

// commitOf is upstream's pool commit: the logical size of the configured disks in the pool.
func commitOf(doc *config.Doc, sizes map[string]uint64, pool string) uint64 {
	var c uint64
	for id, d := range doc.Disks {
		if p, _ := splitDisk(id, d); p == pool {
			c += sizes[id]
		}
	}
	return c
}

func poolSummary(p PoolFacts, commit uint64) string {
	desc := fmt.Sprintf("x%d", p.Size)
	if !p.Replicated {
		desc = fmt.Sprintf("%d+%d", p.K, p.M)
	}
	pct := 0
	if p.MaxAvail != 0 {
		pct = int(float64(commit) / float64(p.MaxAvail) * 100)
	}
	return fmt.Sprintf("(%s), Commit: %s/%s (%d%%), Used: %s", desc, humanSize(commit), humanSize(p.MaxAvail), pct, humanSize(p.Used))
}

func diskSummary(s *Snapshot, id string) string {
	f, ok := s.Images[id]
	if !ok {
		return "NOT FOUND"
	}
	state := s.DiskStatus[id]
	if state == "" {
		state = "State unknown"
	}
	return fmt.Sprintf("%s (%s, %s)", id, state, humanSize(f.Size))
}

func ownerOf(doc *config.Doc, id string) string {
	if d := doc.Disks[id]; d != nil && d.Owner != nil {
		return *d.Owner
	}
	return ""
}

func gatewayState(s *Snapshot, name string) GatewayState {
	if st, ok := s.Gateways[name]; ok && st != "" {
		return st
	}
	return GatewayDown
}

// authWord is the target and client auth word: mutual_username decides CHAP_MUTUAL,
// username CHAP.
func authWord(a config.Auth) string {
	switch {
	case a.MutualUsername != "":
		return "CHAP_MUTUAL"
	case a.Username != "":
		return "CHAP"
	}
	return "None"
}

// discoveryAuthWord differs from authWord as upstream's does: it needs both halves of a pair.
func discoveryAuthWord(a config.Auth) string {
	switch {
	case a.MutualUsername != "" && a.MutualPassword != "":
		return "CHAP_MUTUAL"
	case a.Username != "" && a.Password != "":
		return "CHAP"
	}
	return "None"
}

func clientsSummary(t *config.Target) string {
	word := "ACL_DISABLED"
	if t.ACLEnabled {
		word = "ACL_ENABLED"
	}
	if t.Auth.Username == "" || t.Auth.Password == "" {
		withChap, without := false, false
		for _, c := range t.Clients {
			if c.Auth.Username == "" {
				without = true
			} else {
				withChap = true
			}
		}
		if withChap && without {
			word = "MISCONFIG"
		}
	}
	return fmt.Sprintf("Auth: %s, Hosts: %d", word, len(t.Clients))
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
