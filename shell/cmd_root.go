package shell

import (
	"context"
	"fmt"
	"strings"

	"ceph-iscsi/config"
)

// The commands of /, /cluster and its children (upstream's gateway.py ISCSIRoot and ceph.py).

func init() {
	register(&Command{Kind: KindRoot, Name: "export",
		Params:  []Param{{Name: "mode", Default: "copy", Complete: fixed("copy")}},
		Summary: "Print the configuration in a format that can be used as a backup.",
		Help: `Print the configuration in a format that can be used as a backup.

The export command supports two modes:

copy - This prints the internal configuration. It can used for backup
       or for support requests.`,
		Run: runExport})
	register(&Command{Kind: KindRoot, Name: "info",
		Summary: "Show the API endpoint and cluster this shell works with.",
		Help:    "Show the HTTP mode, the API port, the local endpoint, the ceph cluster name and the trusted IPs.",
		Run:     runRootInfo})
	clusterRefresh := func(ctx context.Context, e *Env, _ *Node, _ Args) error {
		e.Refresh()
		return ok(e)
	}
	const refreshHelp = `refresh command updates the health and capacity state of the ceph
meta data shown within the interface`
	register(&Command{Kind: KindClusters, Name: "refresh", Summary: "Refresh the cluster's health and capacity.",
		Help: refreshHelp, Run: clusterRefresh})
	register(&Command{Kind: KindCluster, Name: "info", Summary: "Show the cluster's version, health and topology.",
		Help: "Show the attributes of the current object.", Run: runClusterInfo})
	register(&Command{Kind: KindCluster, Name: "refresh", Summary: "Refresh the cluster's health and capacity.",
		Help: refreshHelp, Run: clusterRefresh})
	register(&Command{Kind: KindPool, Name: "info", Summary: "Show the pool's commitment and type.",
		Help: "Show the attributes of the current object.", Run: runPoolInfo})
	register(&Command{Kind: KindTopology, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.", Run: runNoInfo})
}

func runNoInfo(_ context.Context, e *Env, _ *Node, _ Args) error {
	if e.JSON {
		return writeJSON(e.Out, map[string]any{})
	}
	printInfo(e.Out, infoNotAvailable)
	return nil
}

// runExport prints GET /api/config as upstream's json.dumps(config, sort_keys=True,
// indent=4, separators=(',', ': ')) does, byte for byte.
func runExport(ctx context.Context, e *Env, _ *Node, a Args) error {
	if a.Get("mode") != "copy" {
		return refuse("Invalid export mode requested - supported modes are: copy")
	}
	var raw []byte
	if err := e.API.Do(ctx, "GET", local(e, "config"), nil, &raw); err != nil {
		return fail("Unable to refresh local config. ", err)
	}
	m, err := config.ParseAny(raw)
	if err != nil {
		return withMsg(err, "Unable to refresh local config: %v", err)
	}
	out, err := config.MarshalAny(m)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	out = append(out, '\n')
	_, err = e.Out.Write(out)
	return err
}

func runRootInfo(_ context.Context, e *Env, _ *Node, _ Args) error {
	ips, cluster := "None", "ceph"
	if s := e.Settings; s != nil {
		if len(s.TrustedIPList) > 0 {
			ips = strings.Join(s.TrustedIPList, ",")
		}
		cluster = s.ClusterName
	}
	if e.JSON {
		return writeJSON(e.Out, map[string]any{"http_mode": e.API.Scheme, "api_port": e.API.Port,
			"local_endpoint": fmt.Sprintf("%s://localhost:%d/api", e.API.Scheme, e.API.Port),
			"cluster_name":   cluster, "trusted_ips": ips})
	}
	say(e, "HTTP mode          : %s", e.API.Scheme)
	say(e, "Rest API port      : %d", e.API.Port)
	say(e, "Local endpoint     : %s://localhost:%d/api", e.API.Scheme, e.API.Port)
	say(e, "Local Ceph Cluster : %s", cluster)
	say(e, "2ndary API IP's    : %s", ips)
	return nil
}

// runClusterInfo is CephCluster's info: its text ends with a newline and print adds one.
func runClusterInfo(ctx context.Context, e *Env, _ *Node, _ Args) error {
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	c := s.Cluster
	if e.JSON {
		return writeJSON(e.Out, map[string]any{"name": c.Name, "version": c.Version, "health": c.Health,
			"checks": c.Checks, "mons": c.MONs, "quorum": c.Quorum, "osds": c.OSDs, "osds_up": c.OSDsUp,
			"osds_in": c.OSDsIn, "pools": len(s.Pools), "raw_size": c.RawSize, "conf": c.Conf, "client": c.Client})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Cluster name: %s\n", c.Name)
	fmt.Fprintf(&b, "Ceph version: %s\n", c.Version)
	fmt.Fprintf(&b, "Health      : %s\n", c.Health)
	if c.Health != "HEALTH_OK" {
		fmt.Fprintf(&b, " - %s\n", strings.Join(c.Checks, ","))
	}
	fmt.Fprintf(&b, "\nMONs : %4d (quorum %d, out of quorum: %d)\n", c.MONs, len(c.Quorum), c.MONs-len(c.Quorum))
	fmt.Fprintf(&b, "OSDs : %4d (%d up, %d in)\n", c.OSDs, c.OSDsUp, c.OSDsIn)
	fmt.Fprintf(&b, "Pools: %4d\n", len(s.Pools))
	fmt.Fprintf(&b, "Raw capacity: %s\n", humanSize(c.RawSize))
	fmt.Fprintf(&b, "\nConfig : %s\n", c.Conf)
	fmt.Fprintf(&b, "Client Name: %s\n", c.Client)
	printInfo(e.Out, b.String())
	return nil
}

// poolCommit is the logical size of the pool's disks and its ratio to the space left,
// upstream's _calc_overcommit.
func poolCommit(s *Snapshot, pool string) (commit uint64, pct int) {
	for id := range s.Config.Disks {
		if p, _, _ := strings.Cut(id, "/"); p == pool {
			commit += s.Images[id].Size
		}
	}
	if max := s.Pools[pool].MaxAvail; max > 0 {
		pct = int(float64(commit) / float64(max) * 100)
	}
	return commit, pct
}

func runPoolInfo(ctx context.Context, e *Env, n *Node, _ Args) error {
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	p, found := s.Pools[n.Name]
	if !found {
		return fmt.Errorf("pool %s is not in the cluster", n.Name)
	}
	commit, pct := poolCommit(s, p.Name)
	kind, desc := "replicated", fmt.Sprintf("x%d", p.Size)
	if !p.Replicated {
		kind, desc = "erasure", fmt.Sprintf("%d+%d", p.K, p.M)
	}
	return showInfo(e, []infoField{
		{"name", p.Name}, {"commit", commit}, {"overcommit_PCT", pct}, {"max_bytes", p.MaxAvail},
		{"used_bytes", p.Used}, {"type", kind}, {"desc", desc},
	})
}
