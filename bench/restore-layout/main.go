// Command restore-layout is the host side of bench/restore-vm.sh: `seed` writes
// the benchmark layout (disks, clients, their LUNs) into a Ceph cluster, and
// `analyze` reads the restore --json reports the guest produced and sets the
// configfs operations they list against the minimum the layout needs.
//
//	restore-layout seed -conf ceph.conf [layout flags]
//	restore-layout analyze [layout flags] cold.json warm.json [teardown.json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// layout is what the benchmark restores: one target with one local TPG,
// Disks user:rbd disks (LUN i = disk i), Clients CHAP clients mapped
// LunsPerClient disks each (client k: disks k*L .. k*L+L-1, wrapping),
// discovery CHAP on.
type layout struct {
	Disks, Clients, LunsPerClient int
	Gateway, Portal, Object       string
	Size                          int64
}

const (
	targetIQN = "iqn.2003-01.com.example.iscsi-gw:bench"
	pool      = "rbd"
)

func (l *layout) flags(fs *flag.FlagSet) {
	fs.IntVar(&l.Disks, "disks", 256, "disks (user:rbd), all LUNs of the target")
	fs.IntVar(&l.Clients, "clients", 64, "CHAP clients")
	fs.IntVar(&l.LunsPerClient, "luns-per-client", 4, "disks mapped to each client")
	fs.StringVar(&l.Gateway, "gateway", "gw1.bench", "gateway name")
	fs.StringVar(&l.Portal, "portal", "192.0.2.10", "the gateway's portal IP")
	fs.StringVar(&l.Object, "object", "bench-restore.conf", "config object in pool rbd")
	fs.Int64Var(&l.Size, "size", 64<<20, "image size in bytes")
}

func image(i int) string { return fmt.Sprintf("bench-%04d", i) }

func (l layout) doc() *config.Doc {
	now := time.Now()
	ts := config.Timestamp(now)
	d := config.NewDoc(now)
	d.Gateways[l.Gateway] = &config.Gateway{ActiveLuns: l.Disks, Created: ts, Updated: ts}
	t := config.NewTarget(now)
	t.IPList = []string{l.Portal}
	t.Portals[l.Gateway] = &config.Portal{PortalIPAddresses: []string{l.Portal}, GatewayIPList: []string{l.Portal},
		InactivePortalIPs: []string{}, TPGs: 1}
	for i := 0; i < l.Disks; i++ {
		id := pool + "/" + image(i)
		gw := l.Gateway
		d.Disks[id] = &config.Disk{Pool: pool, Image: image(i), WWN: fmt.Sprintf("b3e1c0de-0000-4000-8000-%012x", i),
			Backstore: "user:rbd", BackstoreObjectName: pool + "." + image(i), AllocatingHost: &gw, Owner: &gw,
			Controls: map[string]any{}, Created: ts, Updated: ts}
		t.Disks[id] = config.LunRef{LunID: i}
	}
	for k := 0; k < l.Clients; k++ {
		c := config.NewClient()
		c.Auth = config.Auth{Username: fmt.Sprintf("user%03d", k), Password: fmt.Sprintf("benchpass%03d", k)}
		for j := 0; j < l.LunsPerClient && l.Disks > 0; j++ {
			c.Luns[pool+"/"+image((k*l.LunsPerClient+j)%l.Disks)] = config.LunRef{LunID: j}
		}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:bench-%03d", k)] = c
	}
	t.Updated = &ts
	d.Targets[targetIQN] = t
	d.DiscoveryAuth = config.Auth{Username: "benchdisc", Password: "benchdiscpass"}
	return d
}

// mappedLUNs is the number of (client, LUN) pairs, wrapping duplicates
// counted once.
func (l layout) mappedLUNs() int {
	n := 0
	for k := 0; k < l.Clients; k++ {
		n += min(l.LunsPerClient, l.Disks)
	}
	return n
}

// minimum is the fewest configfs operations that can build the layout from an
// empty LIO with the same function: every object created once, every link
// made once, and only the writes without which it would not work as
// configured. Tuning attributes (TPG parameters, ACL/TCMU timeouts, ALUA
// details) are left out: they are what separates a real restore from this
// floor.
//
//	fabric  mkdir target/iscsi                                   1
//	HBA     mkdir core/user_0 (one for all objects)              1
//	disk    mkdir SO, one control write (cfgstring, size, data
//	        area), enable, wwn/vpd_unit_serial                   4 per disk
//	        mkdir alua/<group>, its tg_pt_gp_id                  2 per disk
//	target  mkdir IQN, mkdir tpgt_1, mkdir np/IP:3260,
//	        attrib/authentication, enable                        5
//	LUN     mkdir lun_N, symlink, alua_tg_pt_gp                  3 per LUN
//	ACL     mkdir, auth/userid, auth/password                    3 per client
//	mapped  mkdir lun_N, symlink                                 2 per mapped LUN
//	discovery auth userid, password, enforce                     3

func (l layout) minimum() (int, []string) {
	rows := []struct {
		what string
		n    int
	}{
		{"fabric mkdir", 1},
		// One HBA can hold every object; rtslib (so upstream) and package lio
		// make one per object, which the tree comparison with upstream needs.
		{"HBA mkdir (lio, like rtslib, makes one per object: +disks-1)", 1},
		{"disks: 6 each (mkdir, control, enable, wwn, ALUA group mkdir + id)", 6 * l.Disks},
		{"target: mkdir, TPG mkdir, portal mkdir, authentication, enable", 5},
		{"LUNs: 3 each (mkdir, link, ALUA group)", 3 * l.Disks},
		{"ACLs: 3 each (mkdir, userid, password)", 3 * l.Clients},
		{"mapped LUNs: 2 each (mkdir, link)", 2 * l.mappedLUNs()},
		{"discovery auth: userid, password, enforce", 3},
	}
	total := 0
	var lines []string
	for _, r := range rows {
		total += r.n
		lines = append(lines, fmt.Sprintf("  %6d  %s", r.n, r.what))
	}
	return total, lines
}

func seed(l layout, conf string) error {
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: conf, ClientName: "client.admin", OpTimeout: 60 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	start := time.Now()
	for i := 0; i < l.Disks; i++ {
		err := rbd.Create(conn.Raw(), pool, image(i), l.Size, 0)
		if err != nil && !errors.Is(err, rbd.ErrImageExists) {
			return fmt.Errorf("create %s: %w", image(i), err)
		}
	}
	created := time.Since(start)
	ctx := context.Background()
	store, err := rados.OpenStore(ctx, conn, rados.StoreOptions{Pool: pool, Object: l.Object})
	if err != nil {
		return err
	}
	defer store.Close()
	want := l.doc()
	doc, err := store.Commit(ctx, func(d *config.Doc) error {
		epoch := d.Epoch
		*d = *want.Clone()
		d.Epoch = epoch
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit %s: %w", l.Object, err)
	}
	fmt.Printf("seeded %d images in %.1fs and %s/%s epoch %d (%d bytes): %d disks, %d clients, %d mapped LUNs\n",
		l.Disks, created.Seconds(), pool, l.Object, doc.Epoch, len(doc.Marshal()), l.Disks, l.Clients, l.mappedLUNs())
	return nil
}

type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

type report struct {
	InSync  bool `json:"in_sync"`
	Plan    []op `json:"plan"`
	Applied *struct {
		Done    int `json:"done"`
		Failed  int `json:"failed"`
		Skipped int `json:"skipped"`
		Ops     struct {
			Timings []lio.OpTiming `json:"timings"`
		} `json:"ops"`
	} `json:"applied"`
	Errors []string         `json:"errors"`
	Took   map[string]int64 `json:"took_ms"`
}

func readReport(p string) (report, error) {
	var r report
	b, err := os.ReadFile(p)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

// kind groups ops: mkdir/symlink/rmdir/unlink by kind, writes by the
// attribute written, so the table shows where the writes beyond the
// minimum go.
func kind(o op) string {
	switch o.Op {
	case "write":
		base := path.Base(o.Path)
		dir := path.Base(path.Dir(o.Path))
		switch dir {
		case "attrib", "param", "auth", "wwn", "discovery_auth":
			return "write " + dir + "/" + base
		}
		if strings.Contains(o.Path, "/alua/") {
			return "write alua/" + base
		}
		if base == "control" {
			k, _, _ := strings.Cut(o.Value, "=")
			return "write control " + k
		}
		return "write " + base
	case "enable":
		if strings.HasPrefix(o.Path, "target/core/") {
			return "enable storage object"
		}
		return "enable TPG"
	case "mkdir", "rmdir", "unlink", "symlink", "disable":
		return o.Op + " " + object(o.Path)
	}
	return o.Op
}

// object names what kind of LIO object a path is (or is in), so that the
// removal of a storage object is told from that of an ACL.
func object(p string) string {
	parts := strings.Split(p, "/")
	switch {
	case len(parts) >= 2 && parts[1] == "core":
		switch {
		case len(parts) == 3:
			return "HBA"
		case len(parts) >= 6 && parts[4] == "alua":
			return "ALUA group"
		case len(parts) == 4:
			return "storage object"
		}
	case len(parts) >= 2 && parts[1] == "iscsi":
		switch {
		case len(parts) == 3:
			return "target"
		case len(parts) == 4:
			return "TPG"
		case len(parts) >= 6 && parts[4] == "lun":
			return "LUN"
		case len(parts) >= 6 && parts[4] == "np":
			return "portal"
		case len(parts) == 6 && parts[4] == "acls":
			return "ACL"
		case len(parts) >= 7 && parts[4] == "acls":
			return "mapped LUN"
		}
	}
	return "other"
}

func analyze(l layout, files []string) error {
	minOps, rows := l.minimum()
	fmt.Printf("layout: %d user:rbd disks (LUNs of one target, one local TPG), %d CHAP clients x %d LUNs = %d mapped LUNs, discovery CHAP\n",
		l.Disks, l.Clients, l.LunsPerClient, l.mappedLUNs())
	fmt.Printf("minimum configfs operations for this layout: %d\n", minOps)
	for _, r := range rows {
		fmt.Println(r)
	}
	for _, f := range files {
		r, err := readReport(f)
		if err != nil {
			return err
		}
		byKind := map[string]int{}
		byOp := map[string]int{}
		for _, o := range r.Plan {
			byKind[kind(o)]++
			byOp[o.Op]++
		}
		applied := "not applied"
		if a := r.Applied; a != nil {
			applied = fmt.Sprintf("applied: %d done, %d failed, %d skipped", a.Done, a.Failed, a.Skipped)
		}
		fmt.Printf("\n%s: %d configfs operations, in_sync %v, %s, %d errors\n", f, len(r.Plan), r.InSync, applied, len(r.Errors))
		if len(r.Took) > 0 {
			var st []string
			for _, k := range []string{"connect", "unblock", "config", "build", "observe", "plan", "apply", "unmap", "total"} {
				st = append(st, fmt.Sprintf("%s %.2f", k, float64(r.Took[k])/1e3))
			}
			fmt.Printf("  stages (s): %s\n", strings.Join(st, ", "))
		}
		if len(r.Plan) == 0 {
			continue
		}
		ops := make([]string, 0, len(byOp))
		for k, n := range byOp {
			ops = append(ops, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(ops)
		fmt.Printf("  by kind: %s\n", strings.Join(ops, ", "))
		if !strings.Contains(f, "teardown") {
			fmt.Printf("  ratio to the minimum: %.2f (%d operations beyond it)\n", float64(len(r.Plan))/float64(minOps), len(r.Plan)-minOps)
		}
		keys := make([]string, 0, len(byKind))
		for k := range byKind {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if byKind[keys[i]] != byKind[keys[j]] {
				return byKind[keys[i]] > byKind[keys[j]]
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			fmt.Printf("  %6d  %s\n", byKind[k], k)
		}
		if r.Applied != nil {
			printTimings(r.Plan, r.Applied.Ops.Timings)
		}
	}
	return nil
}

// printTimings shows where the apply's time went, by kind of op: the sum
// and the longest of the ops' own times, and the span from the first
// one's start to the last one's end (ops of a kind overlap when they run
// on several workers).
func printTimings(plan []op, ts []lio.OpTiming) {
	if len(ts) == 0 {
		return
	}
	type agg struct {
		n           int
		sum, max    int64
		first, last int64
	}
	by := map[string]*agg{}
	var end int64
	for _, t := range ts {
		if t.Index < 0 || t.Index >= len(plan) {
			continue
		}
		k := kind(plan[t.Index])
		a := by[k]
		if a == nil {
			a = &agg{first: t.StartUS}
			by[k] = a
		}
		a.n++
		a.sum += t.DurUS
		a.max = max(a.max, t.DurUS)
		a.first = min(a.first, t.StartUS)
		a.last = max(a.last, t.StartUS+t.DurUS)
		end = max(end, t.StartUS+t.DurUS)
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return by[keys[i]].sum > by[keys[j]].sum })
	fmt.Printf("  apply: %.2f s from the first op's start to the last op's end; by kind (s): sum of op times, longest op, span first start..last end\n", float64(end)/1e6)
	for _, k := range keys {
		a := by[k]
		fmt.Printf("  %6d  %-36s sum %8.2f  max %6.3f  span %7.2f..%7.2f\n", a.n, k, float64(a.sum)/1e6, float64(a.max)/1e6, float64(a.first)/1e6, float64(a.last)/1e6)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: restore-layout seed|analyze [flags] ...")
		os.Exit(2)
	}
	var l layout
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	l.flags(fs)
	var err error
	switch os.Args[1] {
	case "seed":
		conf := fs.String("conf", "", "ceph.conf of the cluster")
		_ = fs.Parse(os.Args[2:])
		err = seed(l, *conf)
	case "analyze":
		_ = fs.Parse(os.Args[2:])
		err = analyze(l, fs.Args())
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "restore-layout:", err)
		os.Exit(1)
	}
}
