package shell_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/rbd"
	"ceph-iscsi/shell"
)

// TestCommandsAgainstAPI runs every ceph-iscsi command of gwcli (the 46 node/command pairs
// besides goto) against two real API daemons on the real cluster, in the order an operator
// builds a group and tears it down, and checks each command's output and the config object
// it leaves.
func TestCommandsAgainstAPI(t *testing.T) {
	g := startGateways(t, 2)
	s := g.session()
	conn := g.conn.Raw()
	tag := fmt.Sprintf("%06x", mrand.Uint32()&0xffffff)
	img := func(name string) string { return "sh" + tag + name }
	t.Cleanup(func() {
		for _, n := range []string{"a", "m1", "m2", "att", "auto"} {
			_ = rbd.Remove(context.Background(), conn, "rbd", img(n), rbd.RemoveOptions{})
		}
	})
	const (
		tgt   = "iqn.2003-01.com.example.shell:t1"
		tgt2  = "iqn.2003-01.com.example.shell:t2"
		cli1  = "iqn.1994-05.com.example:shell-c1"
		cli2  = "iqn.1994-05.com.example:shell-c2"
		user  = "shelluser1"
		pass  = "Shell-Pass-1234"
		muser = "shellmutual1"
		mpass = "Shell-Mutual-12"
	)
	diskA, diskM1, diskM2, diskAtt, diskAuto := "rbd/"+img("a"), "rbd/"+img("m1"), "rbd/"+img("m2"), "rbd/"+img("att"), "rbd/"+img("auto")

	root, targets, disks := "/", "/iscsi-targets", "/disks"
	tnode := targets + "/" + tgt
	gws, tdisks, hgs, hosts := tnode+"/gateways", tnode+"/disks", tnode+"/host-groups", tnode+"/hosts"
	client1 := hosts + "/" + cli1
	diskNode := "/disks/rbd/" + img("a")

	// root
	s.must(root, "info", fmt.Sprintf("HTTP mode          : http\nRest API port      : %d\n"+
		"Local endpoint     : http://localhost:%d/api\nLocal Ceph Cluster : ceph\n"+
		"2ndary API IP's    : 127.0.0.1,127.0.0.2\n", g.port, g.port))

	// target and gateways
	s.must(targets, "create", "ok\n", strings.ToUpper(tgt[:3])+tgt[3:]) // gwcli lower-cases the IQN
	if d := g.doc(); d.Targets[tgt] == nil {
		t.Fatalf("target %s not in the config: %v", tgt, d.Targets)
	}
	s.must(gws, "create", "OS version/package checks have been bypassed\nAdding gateway, sync'ing 0 disk(s) and 0 client(s)\nok\n",
		"127.0.0.1", "127.0.0.1", "skipchecks=true")
	s.must(gws, "create", "Adding gateway, sync'ing 0 disk(s) and 0 client(s)\nok\n", "gateway_name=127.0.0.2", "ip_addresses=127.0.0.2")
	if d := g.doc(); len(d.Targets[tgt].Portals) != 2 || d.Targets[tgt].Portals["127.0.0.2"] == nil {
		t.Fatalf("portals after two gateway creates: %v", d.Targets[tgt].Portals)
	}
	s.must(gws, "info", "127.0.0.1\n127.0.0.2\n")
	s.must(gws, "refresh", "")
	gw1 := gws + "/127.0.0.1"
	s.must(gw1, "refresh", "")
	out, err := s.run(gw1, "info")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Name                .. 127.0.0.1\n"+
		"Gateway Ip List     .. 127.0.0.1\n                       127.0.0.2\n"+
		"Portal Ip Addresses .. 127.0.0.1\n"+
		"Inactive Portal Ips .. 127.0.0.2\n"+
		"Tpgs                .. 2\n"+
		"Service State\n- api .. ") || !strings.HasSuffix(out, "\n\n") {
		t.Fatalf("gateway info:\n%s", out)
	}

	// disks
	s.must(disks, "create", "ok\n", diskA, "64m")
	s.must(disks, "create", "ok\n", "pool=rbd", "image="+img("m"), "size=32M", "count=2")
	if err := rbd.Create(conn, "rbd", img("att"), 32<<20, 0); err != nil {
		t.Fatal(err)
	}
	s.must(disks, "attach", "ok\n", diskAtt)
	d := g.doc()
	for _, id := range []string{diskA, diskM1, diskM2, diskAtt} {
		if d.Disks[id] == nil {
			t.Fatalf("disk %s not in the config after create/attach: %v", id, slices.Collect(maps.Keys(d.Disks)))
		}
	}
	if sz, err := rbd.Size(conn, "rbd", img("m2")); err != nil || sz != 32<<20 {
		t.Fatalf("image %s: %d %v", img("m2"), sz, err)
	}
	s.must(disks, "resize", "ok\n", diskA, "128M")
	s.must(diskNode, "resize", "ok\n", "192m")
	if sz, err := rbd.Size(conn, "rbd", img("a")); err != nil || sz != 192<<20 {
		t.Fatalf("image %s after resizes: %d %v", img("a"), sz, err)
	}
	s.must(diskNode, "snapshot", "ok\n", "create", "s1")
	if snaps, err := rbd.ListSnapshots(conn, "rbd", img("a")); err != nil || len(snaps) != 1 || snaps[0].Name != "s1" {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	out, err = s.run(diskNode, "info")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Image                 .. " + img("a") + "\n", "Ceph Cluster          .. ceph\n", "Pool                  .. rbd\n",
		"Wwn                   .. " + d.Disks[diskA].WWN + "\n", "Size H                .. 192M\n",
		"Feature List          .. RBD_FEATURE_LAYERING\n", "Snapshots             .. s1 (192M)\n",
		"Owner                 .. \n", "Backstore             .. user:rbd\n",
		"Backstore Object Name .. " + d.Disks[diskA].BackstoreObjectName + "\n",
		"Control Values\n- hw_max_sectors .. 1024\n- max_data_area_mb .. 8\n- osd_op_timeout .. 30\n- qfull_timeout .. 5\n\n",
	} {
		if !strings.Contains(out, line) {
			t.Fatalf("disk info lacks %q:\n%s", line, out)
		}
	}
	out2, err := s.run(disks, "info", diskA)
	if err != nil || !strings.HasPrefix(out2, "Image                 .. "+img("a")+"\n") {
		t.Fatalf("/disks info: %v\n%s", err, out2)
	}

	// target disks, then the disk controls (a disk needs an owner for those)
	s.must(tdisks, "add", "ok\n", diskA)
	d = g.doc()
	if _, mapped := d.Targets[tgt].Disks[diskA]; !mapped || d.Disks[diskA].Owner == nil {
		t.Fatalf("target disks %v, owner %v", d.Targets[tgt].Disks, d.Disks[diskA].Owner)
	}
	owner := *d.Disks[diskA].Owner
	// a rollback needs the disk in a target
	s.must(diskNode, "snapshot", "Please be patient, rollback might take time\nok\n", "rollback", "s1")
	s.must(diskNode, "snapshot", "ok\n", "delete", "s1")
	if snaps, err := rbd.ListSnapshots(conn, "rbd", img("a")); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after delete: %v %v", snaps, err)
	}
	tdisk := tdisks + "/" + diskA
	s.must(tdisk, "info", "Name  .. "+diskA+"\nOwner .. "+owner+"\n\n")
	s.must(disks, "reconfigure", "ok\n", diskA, "qfull_timeout", "20")
	s.must(diskNode, "reconfigure", "ok\n", "attribute=max_data_area_mb", "value=16")
	if c := g.doc().Disks[diskA].Controls; fmt.Sprint(c["qfull_timeout"]) != "20" || fmt.Sprint(c["max_data_area_mb"]) != "16" {
		t.Fatalf("disk controls: %v", c)
	}
	out, _ = s.run(diskNode, "info")
	if !strings.Contains(out, "- max_data_area_mb .. 16 (override)\n") || !strings.Contains(out, "- qfull_timeout .. 20 (override)\n") {
		t.Fatalf("disk info after reconfigure:\n%s", out)
	}

	// target controls and CHAP
	s.must(tnode, "reconfigure", "ok\n", "cmdsn_depth", "64")
	if c := g.doc().Targets[tgt].Controls; fmt.Sprint(c["cmdsn_depth"]) != "64" {
		t.Fatalf("target controls: %v", c)
	}
	s.must(hosts, "auth", "ok\n", "disable_acl") // target CHAP needs the ACLs off
	if g.doc().Targets[tgt].ACLEnabled {
		t.Fatal("acl still enabled")
	}
	s.must(tnode, "auth", "ok\n", "username="+user, "password="+pass)
	if a := g.doc().Targets[tgt].Auth; a.Username != user {
		t.Fatalf("target auth: %+v", a)
	}
	out, err = s.run(tnode, "info")
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := "Target Iqn     .. " + tgt + "\nAuth\n- mutual_password .. \n- mutual_password_encryption_enabled .. False\n" +
		"- mutual_username .. \n- password .. " + pass + "\n- password_encryption_enabled .. " + pyBool(g.doc().Targets[tgt].Auth.PasswordEncryptionEnabled) +
		"\n- username .. " + user + "\nControl Values\n- cmdsn_depth .. 64 (override)\n- dataout_timeout .. 20\n" +
		"- first_burst_length .. 262144\n- immediate_data .. yes\n- initial_r2t .. yes\n- max_burst_length .. 524288\n" +
		"- max_outstanding_r2t .. 1\n- max_recv_data_segment_length .. 262144\n- max_xmit_data_segment_length .. 262144\n" +
		"- nopin_response_timeout .. 5\n- nopin_timeout .. 5\n\n"
	if out != wantInfo {
		t.Fatalf("target info:\n%s\nwant\n%s", out, wantInfo)
	}
	out, err = s.run(tnode, "info", "--json")
	var info struct {
		TargetIQN     string            `json:"target_iqn"`
		Auth          map[string]string `json:"auth"`
		ControlValues map[string]string `json:"control_values"`
	}
	if err != nil || json.Unmarshal([]byte(out), &info) != nil || info.TargetIQN != tgt || info.Auth["username"] != user ||
		info.ControlValues["cmdsn_depth"] != "64 (override)" {
		t.Fatalf("target info --json: %v\n%s", err, out)
	}
	s.must(tnode, "auth", "ok\n", "nochap")
	if a := g.doc().Targets[tgt].Auth; a.Username != "" || a.Password != "" {
		t.Fatalf("target auth after nochap: %+v", a)
	}
	s.must(hosts, "auth", "ok\n", "enable_acl")
	if !g.doc().Targets[tgt].ACLEnabled {
		t.Fatal("acl not enabled")
	}
	s.must(targets, "discovery_auth", "ok\n", "username="+user, "password="+pass, "mutual_username="+muser, "mutual_password="+mpass)
	if a := g.doc().DiscoveryAuth; a.Username != user || a.MutualUsername != muser {
		t.Fatalf("discovery auth: %+v", a)
	}
	s.must(targets, "discovery_auth", "ok\n", "nochap")
	if a := g.doc().DiscoveryAuth; a.Username != "" || a.MutualUsername != "" {
		t.Fatalf("discovery auth after nochap: %+v", a)
	}

	// clients
	s.must(hosts, "create", "ok\n", cli1)
	if s.sh.Cwd() != client1 {
		t.Fatalf("after create the shell is in %q", s.sh.Cwd())
	}
	s.must(client1, "auth", "ok\n", "username="+user, "password="+pass, "mutual_username="+muser, "mutual_password="+mpass)
	if a := g.doc().Targets[tgt].Clients[cli1].Auth; a.Username != user || a.MutualUsername != muser {
		t.Fatalf("client auth: %+v", a)
	}
	s.must(client1, "disk", "ok\n", "add", diskM1)              // auto-maps to the target
	s.must(client1, "disk", "ok\nok\n", "add", diskAuto, "48M") // auto-creates, then maps
	d = g.doc()
	c1 := d.Targets[tgt].Clients[cli1]
	if _, ok := c1.Luns[diskM1]; !ok || len(c1.Luns) != 2 {
		t.Fatalf("client LUNs: %v", c1.Luns)
	}
	for _, id := range []string{diskM1, diskAuto} {
		if _, ok := d.Targets[tgt].Disks[id]; !ok {
			t.Fatalf("%s not auto-mapped to the target: %v", id, d.Targets[tgt].Disks)
		}
	}
	if sz, err := rbd.Size(conn, "rbd", img("auto")); err != nil || sz != 48<<20 {
		t.Fatalf("auto-created image: %d %v", sz, err)
	}
	out, err = s.run(client1, "info")
	if err != nil {
		t.Fatal(err)
	}
	wantInfo = "Client Iqn .. " + cli1 + "\nIp Address .. \nAlias      .. \nLogged In  .. \nAuth\n" +
		"- mutual_password .. " + mpass + "\n- mutual_password_encryption_enabled .. " + pyBool(c1.Auth.MutualPasswordEncryptionEnabled) +
		"\n- mutual_username .. " + muser + "\n- password .. " + pass + "\n- password_encryption_enabled .. " + pyBool(c1.Auth.PasswordEncryptionEnabled) +
		"\n- username .. " + user + "\nGroup Name .. \nLuns\n" + lunLines(c1.Luns) + "\n"
	if out != wantInfo {
		t.Fatalf("client info:\n%s\nwant\n%s", out, wantInfo)
	}
	lun := c1.Luns[diskAuto].LunID
	lunNode := fmt.Sprintf("%s/lun %d", client1, lun)
	s.must(lunNode, "info", fmt.Sprintf("Rbd Name .. %s\nOwner    .. %s\nSize     .. %d\nSize H   .. 48M\nLun Id   .. %d\n\n",
		diskAuto, *d.Disks[diskAuto].Owner, 48<<20, lun))
	s.must(client1, "disk", "ok\n", "remove", diskAuto)
	if _, still := g.doc().Targets[tgt].Clients[cli1].Luns[diskAuto]; still {
		t.Fatal("disk remove left the LUN")
	}

	// host groups
	s.must(hosts, "create", "ok\n", cli2)
	s.must(hgs, "create", "ok\n", "grp1")
	if s.sh.Cwd() != hgs+"/grp1" {
		t.Fatalf("after create the shell is in %q", s.sh.Cwd())
	}
	grp := hgs + "/grp1"
	s.must(grp, "host", "ok\n", "add", cli2)
	s.must(grp, "disk", "ok\n", "add", diskM2) // auto-maps to the target
	d = g.doc()
	if gr := d.Targets[tgt].Groups["grp1"]; gr == nil || !slices.Equal(gr.Members, []string{cli2}) || len(gr.Disks) != 1 {
		t.Fatalf("group: %+v", gr)
	}
	if c := d.Targets[tgt].Clients[cli2]; c.GroupName != "grp1" || len(c.Luns) != 1 {
		t.Fatalf("client in the group: %+v", c)
	}
	member := grp + "/" + cli2
	s.must(member, "info", "'info' not available for this item\n")
	s.must(grp, "disk", "ok\n", "remove", diskM2)
	s.must(grp, "host", "ok\n", "remove", cli2)
	s.must(hgs, "delete", "ok\n", "grp1")
	if d := g.doc(); d.Targets[tgt].Groups["grp1"] != nil || d.Targets[tgt].Clients[cli2].GroupName != "" {
		t.Fatalf("group after delete: %+v", d.Targets[tgt].Groups)
	}

	// target-wide client auth
	s.must(hosts, "auth", "ok\nok\n", "nochap") // one "ok" per client
	if a := g.doc().Targets[tgt].Clients[cli1].Auth; a.Username != "" || a.MutualUsername != "" {
		t.Fatalf("client auth after nochap: %+v", a)
	}

	// export: upstream's json.dumps(config, indent=4, sort_keys=True), byte for byte
	out, err = s.run(root, "export")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := getConfig(g)
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.ParseAny(raw)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := config.MarshalAny(m)
	if out != string(want)+"\n" || !strings.HasPrefix(out, "{\n    \"created\": ") {
		t.Fatalf("export:\n%s", out)
	}

	// the cluster nodes
	s.must("/cluster", "refresh", "ok\n")
	clusterNode := "/cluster/ceph"
	s.must(clusterNode, "refresh", "ok\n")
	out, err = s.run(clusterNode, "info")
	if err != nil || !strings.HasPrefix(out, "Cluster name: ceph\n") || !strings.Contains(out, "\nConfig : ") {
		t.Fatalf("cluster info: %v\n%s", err, out)
	}
	out, err = s.run("/cluster/ceph/pools/rbd", "info")
	if err != nil || !strings.HasPrefix(out, "Name           .. rbd\nCommit         .. ") || !strings.Contains(out, "\nType           .. replicated\n") {
		t.Fatalf("pool info: %v\n%s", err, out)
	}
	s.must("/cluster/ceph/topology", "info", "'info' not available for this item\n")

	// teardown: clients, LUNs, disks, a gateway, then clearconfig
	s.must(hosts, "delete", "ok\n", cli2)
	s.must(hosts, "delete", "ok\n", cli1)
	for _, id := range []string{diskA, diskM1, diskM2, diskAuto} {
		s.must(tdisks, "delete", "ok\n", id)
	}
	if d := g.doc(); len(d.Targets[tgt].Clients) != 0 || len(d.Targets[tgt].Disks) != 0 {
		t.Fatalf("target after deletes: %+v", d.Targets[tgt])
	}
	s.must(gws, "delete", "Deleting gateway, 127.0.0.2\n", "127.0.0.2")
	if p := g.doc().Targets[tgt].Portals; len(p) != 1 {
		t.Fatalf("portals after gateway delete: %v", p)
	}
	s.must(disks, "detach", "ok\n", diskAtt)
	if ok, err := rbd.Exists(conn, "rbd", img("att")); err != nil || !ok {
		t.Fatalf("detach removed the image: %v %v", ok, err)
	}
	for _, id := range []string{diskA, diskM1, diskM2, diskAuto} {
		s.must(disks, "delete", "ok\n", id)
	}
	if ok, err := rbd.Exists(conn, "rbd", img("a")); err != nil || ok {
		t.Fatalf("delete kept the image: %v %v", ok, err)
	}
	if d := g.doc(); len(d.Disks) != 0 {
		t.Fatalf("disks left: %v", d.Disks)
	}
	s.must(targets, "create", "ok\n", tgt2)
	s.must(targets, "delete", "ok\n", tgt2)
	if g.doc().Targets[tgt2] != nil {
		t.Fatal("target delete left the target")
	}
	s.must(targets, "clearconfig", "ok\n", "confirm=true")
	if d := g.doc(); len(d.Targets) != 0 {
		t.Fatalf("targets after clearconfig: %v", slices.Collect(maps.Keys(d.Targets)))
	}
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// lunLines is the luns dict of client info: sorted disks padded to the longest.
func lunLines(luns map[string]config.LunRef) string {
	keys := slices.Sorted(maps.Keys(luns))
	w := 0
	for _, k := range keys {
		w = max(w, len(k))
	}
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "- %-*s .. lun_id=%d\n", w, k, luns[k].LunID)
	}
	return b.String()
}

func getConfig(g *gwGroup) ([]byte, error) {
	c := shell.NewClient(false, g.port, apiUser, apiPassword, 60*time.Second)
	var raw []byte
	err := c.Do(g.t.Context(), "GET", c.URL("127.0.0.1", "config"), nil, &raw)
	return raw, err
}
