package shell

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/settings"
)

// refusingTransport fails every request and counts them: a client-side refusal must not
// reach the API at all.
type refusingTransport struct{ calls atomic.Int32 }

func (r *refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.calls.Add(1)
	return nil, errors.New("no API in this test: " + req.Method + " " + req.URL.String())
}

// validationDoc is a group with one target (two portals), a disk mapped to it, an unmapped
// disk, a client in a group and one outside.
func validationDoc() *config.Doc {
	owner := "gw1"
	d := &config.Doc{Version: 11,
		Disks: map[string]*config.Disk{
			"rbd/mapped": {Pool: "rbd", Image: "mapped", Backstore: "user:rbd", Owner: &owner},
			"rbd/free":   {Pool: "rbd", Image: "free", Backstore: "user:rbd"},
		},
		Targets: map[string]*config.Target{
			tgtIQN: {
				Disks: map[string]config.LunRef{"rbd/mapped": {LunID: 0}},
				Portals: map[string]*config.Portal{
					"gw1": {PortalIPAddresses: []string{"10.0.0.1"}},
					"gw2": {PortalIPAddresses: []string{"10.0.0.2"}},
				},
				Clients: map[string]*config.Client{
					cliIQN:                          {Luns: map[string]config.LunRef{"rbd/mapped": {LunID: 0}}, GroupName: "grp"},
					"iqn.1994-05.com.example:other": {Luns: map[string]config.LunRef{}},
				},
				Groups: map[string]*config.Group{
					"grp": {Members: []string{cliIQN}, Disks: map[string]config.LunRef{"rbd/mapped": {LunID: 0}}},
				},
			},
			"iqn.2003-01.com.example:empty": {Portals: map[string]*config.Portal{}, Clients: map[string]*config.Client{}},
		},
	}
	return d
}

const (
	tgtIQN = "iqn.2003-01.com.example:t1"
	cliIQN = "iqn.1994-05.com.example:c1"
)

// validationTree is the nodes the refusals run on.
func validationTree() map[Kind]*Node {
	root := &Node{Name: "/", Kind: KindRoot}
	targets := root.add(&Node{Name: "iscsi-targets", Kind: KindTargets})
	tgt := targets.add(&Node{Name: tgtIQN, Kind: KindTarget, Target: tgtIQN})
	empty := targets.add(&Node{Name: "iqn.2003-01.com.example:empty", Kind: KindTarget, Target: "iqn.2003-01.com.example:empty"})
	hg := tgt.add(&Node{Name: "host-groups", Kind: KindHostGroups, Target: tgtIQN})
	hosts := tgt.add(&Node{Name: "hosts", Kind: KindClients, Target: tgtIQN})
	disks := root.add(&Node{Name: "disks", Kind: KindDisks})
	return map[Kind]*Node{
		KindRoot: root, KindTargets: targets, KindTarget: tgt, KindDisks: disks,
		KindGateways:   empty.add(&Node{Name: "gateways", Kind: KindGateways, Target: empty.Target}),
		KindHostGroups: hg,
		KindHostGroup:  hg.add(&Node{Name: "grp", Kind: KindHostGroup, Target: tgtIQN, Group: "grp"}),
		KindClients:    hosts,
		KindClient:     hosts.add(&Node{Name: "iqn.1994-05.com.example:other", Kind: KindClient, Target: tgtIQN, Client: "iqn.1994-05.com.example:other"}),
		KindDisk: disks.add(&Node{Name: "rbd", Kind: KindDiskPool, Pool: "rbd"}).
			add(&Node{Name: "mapped", Kind: KindDisk, Pool: "rbd", Image: "mapped"}),
	}
}

func TestCommandRefusals(t *testing.T) {
	doc := validationDoc()
	snapshot := &Snapshot{Config: doc,
		Pools:  map[string]PoolFacts{"rbd": {Name: "rbd", Replicated: true, Size: 3}, "ec": {Name: "ec", K: 2, M: 1}},
		Images: map[string]ImageFacts{"rbd/mapped": {Size: 1 << 30, Snapshots: []string{"s1"}}},
	}
	cases := []struct {
		kind       Kind
		cmd        string
		words      []string
		want       string
		shellCheck bool // refused before any snapshot is read (a pure argument check)
	}{
		{KindRoot, "export", []string{"mode=backup"}, "Invalid export mode requested - supported modes are: copy", true},
		{KindDisks, "create", []string{"rbd/img", "10X"}, "Invalid size requested. Must be an integer, suffixed by M, G or T. See help for more info", true},
		{KindDisks, "create", []string{"rbd/img", "1.5G"}, "Invalid size requested. Must be an integer, suffixed by M, G or T. See help for more info", true},
		{KindDisks, "create", []string{"rbd/img", "1G", "two"}, "Invalid count provided (two ?)", true},
		{KindDisks, "create", []string{"pool=rbd", "image=img", "size=1G", "count=x"}, "invalid count format, must be an integer", true},
		{KindDisks, "create", []string{"pool=rbd", "size=1G"}, "Invalid create: pool and image parameters are needed", true},
		{KindDisks, "create", []string{"ec/img", "1G"}, "Invalid pool (ec). Must already exist and be replicated", false},
		{KindDisks, "create", []string{"nopool/img", "1G"}, "Invalid pool (nopool). Must already exist and be replicated", false},
		{KindDisks, "attach", []string{"image=img"}, "Invalid create: pool and image parameters are needed", true},
		{KindDisks, "attach", []string{"ec/img"}, "Invalid pool (ec). Must already exist and be replicated", false},
		{KindDisks, "resize", []string{"rbd/none", "2G"}, "the disk 'rbd/none' does not exist in this configuration", false},
		{KindDisks, "resize", []string{"rbd/mapped", "2g5"}, "Size is invalid", false},
		{KindDisks, "reconfigure", []string{"rbd/none", "qfull_timeout", "10"}, "the disk 'rbd/none' does not exist in this configuration", false},
		{KindDisks, "reconfigure", []string{"rbd/free", "qfull_timeout", "10"}, "Cannot reconfigure until disk assigned to target", false},
		{KindDisks, "delete", []string{"rbd/none"}, "Disk 'rbd/none' is not defined to the configuration", false},
		{KindDisks, "detach", []string{"rbd/none"}, "Disk 'rbd/none' is not defined to the configuration", false},
		{KindDisks, "info", []string{"rbd/none"}, "disk name provided does not exist", false},
		{KindDisk, "resize", []string{"10"}, "Size is invalid", true},
		{KindDisk, "snapshot", []string{"clone", "s2"}, "you can only create, delete, or rollback - clone is invalid ", true},
		{KindDisk, "snapshot", []string{"create", "s1"}, "Snapshot s1 already exists", false},
		{KindDisk, "snapshot", []string{"create", "a@b"}, "Snapshot a@b contains invalid characters", false},
		{KindDisk, "snapshot", []string{"delete", "s9"}, "Snapshot s9 does not exist", false},
		{KindDisk, "snapshot", []string{"rollback", "s9"}, "Snapshot s9 does not exist", false},
		{KindTargets, "create", []string{"iqn.2003-01.com.example:under_score"}, "IQN name 'iqn.2003-01.com.example:under_score' is not valid for iSCSI", true},
		{KindTargets, "create", []string{"eui.0123456789abcdef"}, "IQN name 'eui.0123456789abcdef' is not valid for iSCSI", true},
		{KindTargets, "create", []string{"iqn.203-01.com.x:y"}, "IQN name 'iqn.203-01.com.x:y' is not valid for iSCSI", true},
		{KindTargets, "delete", []string{"iqn.nodomain"}, "IQN name 'iqn.nodomain' is not valid for iSCSI", true},
		{KindTargets, "clearconfig", nil, "To clear the configuration you must specify confirm=true", true},
		{KindTargets, "clearconfig", []string{"confirm=false"}, "To clear the configuration you must specify confirm=true", true},
		{KindTargets, "clearconfig", []string{"confirm=maybe"}, "Syntax error, 'maybe' is not bool.", true},
		{KindTargets, "clearconfig", []string{"confirm=true"}, tgtIQN + " - Clients(2) must be removed first before clearing the gateway configuration", false},
		{KindTargets, "discovery_auth", []string{"password=Passw0rdPassw0rd"}, "To set or reset discovery authentication, specify either username=<user> password=<password> [mutual_username]=<user> [mutual_password]=<password> or nochap", true},
		{KindTarget, "reconfigure", []string{"max_data_area_mb", "8"}, "supported attributes: " + strings.Join(sortedNames(settings.TargetControlNames()), ","), true},
		{KindTarget, "auth", nil, "To set authentication, specify username=<user> password=<password> [mutual_username]=<user> [mutual_password]=<password> or nochap", true},
		{KindGateways, "create", []string{"gw9", "10.0.0.9"}, "The first gateway defined must be the local machine", false},
		{KindGateways, "create", []string{"gw1", "10.0.0.1", "skipchecks=yes"}, "skipchecks must be either true or false", false},
		{KindGateways, "delete", []string{"gw1"}, "Target is not mapped to any gateways.", false},
		{KindGateways, "refresh", nil, "No gateways to refresh", false},
		{KindHostGroups, "create", []string{"grp"}, "Group grp already defined", false},
		{KindHostGroups, "create", []string{"bad.name"}, "Invalid group name - max of 32 chars of alphanumeric and -,_,@ characters", false},
		{KindHostGroups, "create", []string{strings.Repeat("g", 33)}, "Invalid group name - max of 32 chars of alphanumeric and -,_,@ characters", false},
		{KindHostGroups, "delete", []string{"nogrp"}, "Group 'nogrp' does not exist", false},
		{KindHostGroup, "host", []string{"move", cliIQN}, "Invalid request - must be host add|remove <client_iqn>", true},
		{KindHostGroup, "host", []string{"add", "iqn.1994-05.com.example:nobody"}, "'iqn.1994-05.com.example:nobody' is not managed by a group", false},
		{KindHostGroup, "host", []string{"add", cliIQN}, "'" + cliIQN + "' already belongs to 'grp'", false},
		{KindHostGroup, "host", []string{"remove", "iqn.1994-05.com.example:other"}, "'iqn.1994-05.com.example:other' does not belong to this group", false},
		{KindHostGroup, "disk", []string{"move", "rbd/mapped"}, "Invalid request - must be disk add|remove <disk_image>", true},
		{KindHostGroup, "disk", []string{"add", "rbd/none"}, "Disk 'rbd/none' is not defined within the configuration", false},
		{KindHostGroup, "disk", []string{"add", "rbd/mapped"}, "'rbd/mapped' is already defined to this host-group", false},
		{KindHostGroup, "disk", []string{"remove", "rbd/free"}, "'rbd/free' is not a member of this group", false},
		{KindClients, "create", []string{"iqn.1994-05.com"}, "IQN name 'iqn.1994-05.com' is not valid for iSCSI", true},
		{KindClients, "delete", []string{"naa.0123456789abcdef"}, "IQN name 'naa.0123456789abcdef' is not valid for iSCSI", true},
		{KindClients, "auth", nil, "Missing auth argument. Use 'auth nochap|disable_acl|enable_acl'", true},
		{KindClients, "auth", []string{"acl"}, "Invalid auth argument. Use 'auth nochap|disable_acl|enable_acl'", true},
		{KindClient, "auth", []string{"password=Passw0rdPassw0rd"}, "To set authentication, specify username=<user> password=<password> [mutual_username]=<user> [mutual_password]=<password> or nochap", true},
		{KindClient, "disk", []string{"add"}, "You must supply a disk name to add/remove for this client", true},
		{KindClient, "disk", []string{"map", "rbd/free"}, "you can only add and remove disks - map is invalid ", true},
		{KindClient, "disk", []string{"remove", "rbd/free"}, "disk 'rbd/free' is not mapped to this client ", false},
		{KindClient, "disk", []string{"add", "rbd/a/b", "1G"}, "Invalid format. Use pool_name/disk_name", false},
		{KindClient, "disk", []string{"add", "ec/new", "1G"}, "Invalid pool (ec). Must already exist and be replicated\ndisk auto-define failed(None), try using the /disks create command", false},
	}
	tree := validationTree()
	for _, c := range cases {
		t.Run(string(c.kind)+"/"+c.cmd+"/"+strings.Join(c.words, "_"), func(t *testing.T) {
			cmd := Lookup(c.kind, c.cmd)
			if cmd == nil {
				t.Fatalf("no command %s on %s", c.cmd, c.kind)
			}
			rt := &refusingTransport{}
			loads := 0
			var out bytes.Buffer
			e := &Env{API: &Client{Scheme: "http", Port: 5000, HTTP: &http.Client{Transport: rt}}, Out: &out,
				Snapshot:  func(context.Context) (*Snapshot, error) { loads++; return snapshot, nil },
				Refresh:   func() { t.Error("a refused command refreshed the snapshot") },
				Cd:        func(p string) { t.Errorf("a refused command moved to %s", p) },
				LocalName: "gw1", Settings: settings.Defaults()}
			a, err := Bind(cmd, c.words)
			if err != nil {
				t.Fatalf("bind: %v", err)
			}
			err = cmd.Run(context.Background(), e, tree[c.kind], a)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
			if n := rt.calls.Load(); n != 0 {
				t.Errorf("%d API calls for a client-side refusal", n)
			}
			if c.shellCheck && loads != 0 {
				t.Errorf("an argument check read the snapshot")
			}
			wantOut := ""
			if c.kind == KindGateways && c.cmd == "delete" {
				wantOut = "Deleting gateway, gw1\n" // upstream says so before its checks
			}
			if out.String() != wantOut {
				t.Errorf("printed %q, want %q", out.String(), wantOut)
			}
		})
	}
}

func sortedNames(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return out
}
