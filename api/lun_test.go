package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"ceph-iscsi/config"
)

const gw2OnlyIQN = "iqn.2003-01.com.example:gw2-only"

// lunImages is the RBD of the LUN unit tests: every image exists except
// rbd/gone, whose disk is still defined in the config.
type lunImages struct{ noImages }

func (lunImages) Exists(_ context.Context, pool, image string) (bool, error) {
	return pool+"/"+image != "rbd/gone", nil
}

// newLunEnv is newEnv with lunImages.
func newLunEnv(t testing.TB, store rawStore, gateway string) *testEnv {
	return newEnv(t, store, gateway, func(d *Deps) { d.Images = lunImages{} })
}

// addDisk defines pool/image in the document's disks, exported by nobody.
func addDisk(d *config.Doc, id string) {
	pool, image, _ := strings.Cut(id, "/")
	owner := gw1
	d.PutDisk(id, &config.Disk{
		Pool: pool, Image: image, PoolID: 1, Backstore: "user:rbd", BackstoreObjectName: pool + "." + image,
		AllocatingHost: &owner, Controls: map[string]any{},
		Created: config.Timestamp(t0), Updated: config.Timestamp(t0),
	})
}

// exportDisk makes target iqn export disk id at lun, owned by gw.
func exportDisk(d *config.Doc, iqn, id string, lun int, gw string) {
	if d.Disks[id] == nil {
		addDisk(d, id)
	}
	o := gw
	d.Disks[id].Owner = &o
	d.Targets[iqn].Disks[id] = config.LunRef{LunID: lun}
	d.Gateways[gw].ActiveLuns++
}

// lunDoc adds to richDoc what the LUN refusals need: rbd/disk2 defined but
// exported by nobody, rbd/disk3 exported at id 3 and mapped by cIQN3,
// rbd/disk4 exported by the CHAP target, and a target only gw2 serves.
func lunDoc() *config.Doc {
	d := richDoc()
	d.Gateways[gw1].ActiveLuns = 1
	addDisk(d, "rbd/disk2")
	addDisk(d, "rbd/gone")
	exportDisk(d, tIQN, "rbd/disk3", 3, gw1)
	exportDisk(d, chapIQN, "rbd/disk4", 0, gw1)
	d.Targets[tIQN].Clients[cIQN3].Luns["rbd/disk3"] = config.LunRef{LunID: 1}
	d.Gateways[gw2] = &config.Gateway{Created: config.Timestamp(t0), Updated: config.Timestamp(t0)}
	g2 := config.NewTarget(t0)
	g2.IPList = []string{"198.51.100.2"}
	g2.Portals[gw2] = &config.Portal{PortalIPAddresses: []string{"198.51.100.2"}, GatewayIPList: []string{"198.51.100.2"}, InactivePortalIPs: []string{}, TPGs: 1}
	d.Targets[gw2OnlyIQN] = g2
	return d
}

func lunBadCases() []badCase {
	tl := "/api/targetlun/" + tIQN
	itl := "/api/_targetlun/" + tIQN
	cl := func(client string) string { return "/api/clientlun/" + tIQN + "/" + client }
	icl := func(client string) string { return "/api/_clientlun/" + tIQN + "/" + client }
	ghostT := "iqn.2003-01.com.example:nope"
	ghostC := "iqn.1994-05.com.redhat:ghost"
	outOfRange := fmt.Sprintf(" is out of range (0-%d)", config.MaxTargetLunID)
	return []badCase{
		{"targetlun bad iqn", "PUT", "/api/targetlun/foo", v("disk", "rbd/disk2"), nil, 400, "Invalid iqn foo - WWN not valid as: iqn"},
		{"targetlun unknown target", "PUT", "/api/targetlun/" + ghostT, v("disk", "rbd/disk2"), nil, 404, "Target " + ghostT + " does not exist"},
		{"targetlun no gateways", "PUT", "/api/targetlun/" + otherIQN, v("disk", "rbd/disk2"), nil, 400, "at least 1 gateways must exist before disk mapping operations are permitted"},
		{"targetlun delete no gateways", "DELETE", "/api/targetlun/" + otherIQN, v("disk", "rbd/disk2"), nil, 400, "at least 1 gateways must exist before disk mapping operations are permitted"},
		{"targetlun not a portal", "PUT", "/api/targetlun/" + gw2OnlyIQN, v("disk", "rbd/disk2"), nil, 400, gw1 + " cannot be used to perform this operation because it is not defined within the gateways configuration"},
		{"targetlun no disk", "PUT", tl, nil, nil, 400, "Disk None is not defined in the configuration"},
		{"targetlun unknown disk", "PUT", tl, v("disk", "rbd/ghost"), nil, 400, "Disk rbd/ghost is not defined in the configuration"},
		{"targetlun disk id without pool", "PUT", tl, v("disk", "disk2"), nil, 400, "Disk disk2 is not defined in the configuration"},
		{"targetlun already mapped here", "PUT", tl, v("disk", "rbd/disk1"), nil, 400, "Disk rbd/disk1 cannot be used because it is already mapped on target " + tIQN},
		{"targetlun mapped on another target", "PUT", tl, v("disk", "rbd/disk4"), nil, 400, "Disk rbd/disk4 cannot be used because it is already mapped on target " + chapIQN},
		{"targetlun image gone", "PUT", tl, v("disk", "rbd/gone", "lun_id", "x"), nil, 400, "Image rbd/gone not found"},
		{"targetlun lun id text", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "abc"), nil, 400, "Lun id must be a number"},
		{"targetlun lun id empty", "PUT", tl, v("disk", "rbd/disk2", "lun_id", ""), nil, 400, "Lun id must be a number"},
		{"targetlun lun id decimal", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "1.5"), nil, 400, "Lun id must be a number"},
		{"targetlun lun id double underscore", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "1__0"), nil, 400, "Lun id must be a number"},
		{"targetlun lun id two signs", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "+-1"), nil, 400, "Lun id must be a number"},
		{"targetlun lun id in query", "PUT", tl + "?lun_id=x", v("disk", "rbd/disk2"), nil, 400, "Lun id must be a number"},
		{"targetlun lun id in use", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "3"), nil, 400, "Lun id 3 already in use"},
		{"targetlun lun id in use with blanks", "PUT", tl, v("disk", "rbd/disk2", "lun_id", " 0 "), nil, 400, "Lun id 0 already in use"},
		{"targetlun lun id negative", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "-1"), nil, 400, "Lun id -1" + outOfRange},
		{"targetlun lun id too big", "PUT", tl, v("disk", "rbd/disk2", "lun_id", fmt.Sprint(config.MaxTargetLunID+1)), nil, 400, fmt.Sprint("Lun id ", config.MaxTargetLunID+1) + outOfRange},
		{"targetlun lun id huge", "PUT", tl, v("disk", "rbd/disk2", "lun_id", "99999999999999999999"), nil, 400, "Lun id 99999999999999999999" + outOfRange},
		{"targetlun unknown disk beats bad lun id", "PUT", tl, v("disk", "rbd/ghost", "lun_id", "x"), nil, 400, "Disk rbd/ghost is not defined in the configuration"},
		{"targetlun delete no disk", "DELETE", tl, nil, nil, 400, "Disk None is not defined in the configuration"},
		{"targetlun delete unknown disk", "DELETE", tl, v("disk", "rbd/ghost"), nil, 400, "Disk rbd/ghost is not defined in the configuration"},
		{"targetlun delete not exported", "DELETE", tl, v("disk", "rbd/disk2"), nil, 400, "Disk rbd/disk2 is not defined in target " + tIQN},
		{"targetlun delete other target's disk", "DELETE", tl, v("disk", "rbd/disk4"), nil, 400, "Disk rbd/disk4 is not defined in target " + tIQN},
		{"targetlun delete grouped", "DELETE", tl, v("disk", "rbd/disk1"), nil, 400, "Disk rbd/disk1 belongs to group grp"},
		{"targetlun delete mapped to client", "DELETE", tl, v("disk", "rbd/disk3"), nil, 400, "Delete target LUN mapping failed - failed on " + gw1 + ". Failed to remove the LUN - Unable to delete rbd/disk3 - allocated to " + cIQN3},

		{"internal targetlun no disk", "PUT", itl, v("owner", gw1), nil, 400, "missing form field: disk"},
		{"internal targetlun unknown target", "PUT", "/api/_targetlun/" + ghostT, v("disk", "rbd/disk2", "owner", gw1), nil, 404, "Target " + ghostT + " does not exist"},
		{"internal targetlun unknown disk", "PUT", itl, v("disk", "rbd/ghost", "owner", gw1), nil, 400, "Disk rbd/ghost is not defined in the configuration"},
		{"internal targetlun not a portal", "PUT", "/api/_targetlun/" + gw2OnlyIQN, v("disk", "rbd/disk2", "owner", gw2), nil, 400, "LUN map failed"},
		{"internal targetlun no owner", "PUT", itl, v("disk", "rbd/disk2"), nil, 400, "missing form field: owner"},
		{"internal targetlun unknown owner", "PUT", itl, v("disk", "rbd/disk2", "owner", "gw9.example.test", "allocating_host", gw1), nil, 400, "Failed to add the LUN - Gateway gw9.example.test does not exist in configuration"},
		{"internal targetlun bad lun id", "PUT", itl, v("disk", "rbd/disk2", "owner", gw1, "lun_id", "one"), nil, 400, "Lun id must be a number"},
		{"internal targetlun lun id in use", "PUT", itl, v("disk", "rbd/disk2", "owner", gw1, "allocating_host", gw1, "lun_id", "3"), nil, 400, "Failed to add the LUN - Lun id 3 already in use"},
		{"internal targetlun lun id in use, not committing", "PUT", itl, v("disk", "rbd/disk2", "owner", gw1, "allocating_host", gw2, "lun_id", "0"), nil, 400, "Failed to add the LUN - Lun id 0 already in use"},
		{"internal targetlun delete no purge host", "DELETE", itl, v("disk", "rbd/disk3"), nil, 400, "missing form field: purge_host"},
		{"internal targetlun delete mapped", "DELETE", itl, v("disk", "rbd/disk3", "purge_host", gw1), nil, 400, "Failed to remove the LUN - Unable to delete rbd/disk3 - allocated to " + cIQN3},
		{"internal targetlun delete mapped, not purging", "DELETE", itl, v("disk", "rbd/disk3", "purge_host", gw2), nil, 400, "Failed to remove the LUN - Unable to delete rbd/disk3 - allocated to " + cIQN3},
		{"internal targetlun delete grouped", "DELETE", itl, v("disk", "rbd/disk1", "purge_host", gw1), nil, 400, "Failed to remove the LUN - Disk rbd/disk1 belongs to group grp"},

		{"clientlun bad target iqn", "PUT", "/api/clientlun/t/" + cIQN2, v("disk", "rbd/disk3"), nil, 400, "Invalid iqn t - WWN not valid as: iqn"},
		{"clientlun bad client iqn", "PUT", cl("bad_client"), v("disk", "rbd/disk3"), nil, 400, "Invalid iqn bad_client - WWN not valid as: iqn"},
		{"clientlun unknown target", "PUT", "/api/clientlun/" + ghostT + "/" + cIQN2, v("disk", "rbd/disk3"), nil, 404, "Target " + ghostT + " does not exist"},
		{"clientlun not a portal", "PUT", "/api/clientlun/" + otherIQN + "/" + cIQN2, v("disk", "rbd/disk3"), nil, 400, gw1 + " cannot be used to perform this operation because it is not defined within the gateways configuration"},
		{"clientlun unknown client", "PUT", cl(ghostC), v("disk", "rbd/disk3"), nil, 404, "Client '" + ghostC + "' does not exist"},
		{"clientlun grouped client", "PUT", cl(cIQN), v("disk", "rbd/disk3"), nil, 400, "Unable to manage disks for '" + cIQN + "' - it belongs to group grp"},
		{"clientlun grouped client delete", "DELETE", cl(cIQN), v("disk", "rbd/disk1"), nil, 400, "Unable to manage disks for '" + cIQN + "' - it belongs to group grp"},
		{"clientlun delete unmapped", "DELETE", cl(cIQN2), v("disk", "rbd/disk3"), nil, 400, "disk not mapped to client"},
		{"clientlun delete no disk", "DELETE", cl(cIQN3), nil, nil, 400, "disk not mapped to client"},
		{"clientlun unknown disk", "PUT", cl(cIQN2), v("disk", "rbd/ghost"), nil, 400, "Invalid image list - it defines new disks that do not current exist"},
		{"clientlun no disk", "PUT", cl(cIQN2), nil, nil, 400, "Invalid image list - it defines new disks that do not current exist"},
		{"clientlun already mapped", "PUT", cl(cIQN3), v("disk", "rbd/disk1"), nil, 400, "client masking update failed on " + gw1 + ". Invalid client request"},
		{"clientlun disk of no target", "PUT", cl(cIQN2), v("disk", "rbd/disk2"), nil, 400, "client masking update failed on " + gw1 + ". Client update failed - Non-existent images ['rbd.disk2'] requested for " + cIQN2},
		{"clientlun disk of another target", "PUT", cl(cIQN2), v("disk", "rbd/disk4"), nil, 400, "client masking update failed on " + gw1 + ". Client update failed - Non-existent images ['rbd.disk4'] requested for " + cIQN2},

		{"internal clientlun get unknown client", "GET", icl(ghostC), nil, nil, 404, "Client does not exist"},
		{"internal clientlun get unknown target", "GET", "/api/_clientlun/" + ghostT + "/" + cIQN2, nil, nil, 404, "Target " + ghostT + " does not exist"},
		{"internal clientlun no image list", "PUT", icl(cIQN2), v("committing_host", gw1), nil, 400, "missing form field: image_list"},
		{"internal clientlun no committer", "PUT", icl(cIQN2), v("image_list", "rbd/disk3"), nil, 400, "missing form field: committing_host"},
		{"internal clientlun duplicate images", "PUT", icl(cIQN2), v("image_list", "rbd/disk3,rbd/disk3", "committing_host", gw1), nil, 400, "Invalid client request"},
		{"internal clientlun not exported", "PUT", icl(cIQN2), v("image_list", "rbd/disk3,rbd/disk2", "committing_host", gw1), nil, 400, "Client update failed - Non-existent images ['rbd.disk2'] requested for " + cIQN2},
		{"internal clientauth image not exported", "PUT", "/api/_clientauth/" + tIQN + "/" + cIQN2, v("image_list", "rbd/ghost", "committing_host", gw1, "username", "", "password", "", "mutual_username", "", "mutual_password", ""), nil, 400, "Client update failed - Non-existent images ['rbd/ghost'] requested for " + cIQN2},

		{"clientinfo unknown target", "GET", "/api/clientinfo/" + ghostT + "/" + cIQN2, nil, nil, 404, "Target " + ghostT + " does not exist"},
		{"clientinfo unknown client", "GET", "/api/clientinfo/" + tIQN + "/" + ghostC, nil, nil, 404, "Client " + ghostC + " does not exist"},
		{"internal clientinfo unknown target", "GET", "/api/_clientinfo/" + ghostT + "/" + cIQN2, nil, nil, 404, "Target " + ghostT + " does not exist"},
		{"internal clientinfo unknown client", "GET", "/api/_clientinfo/" + tIQN + "/" + ghostC, nil, nil, 404, "Client " + ghostC + " does not exist"},
	}
}

// runLunBadCases sends every refused LUN request and checks the exact
// message, a client-error status, and that the stored bytes did not change.
func runLunBadCases(t *testing.T, env *testEnv) {
	before := env.store.bytes()
	cases := lunBadCases()
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			rec := env.do(t, bc.method, bc.path, bc.form, bc.opts...)
			expect(t, rec, bc.status, bc.msg)
			if rec.Code < 400 || rec.Code >= 500 {
				t.Errorf("status %d is not a client error", rec.Code)
			}
			if after := env.store.bytes(); !bytes.Equal(before, after) {
				t.Fatalf("config changed by a refused request:\n%s", after)
			}
		})
	}
	if env.lio.reconciles != 0 {
		t.Errorf("refused requests reconciled LIO %d times", env.lio.reconciles)
	}
}

func TestLunBadRequestsChangeNothing(t *testing.T) {
	runLunBadCases(t, newLunEnv(t, newMemStore(lunDoc()), gw1))
}

func TestParseLunID(t *testing.T) {
	for in, want := range map[string]int{"0": 0, " 7\t": 7, "+12": 12, "-3": -3, "1_000": 1000, "007": 7} {
		got, err := parseLunID(in)
		if err != nil || got != want {
			t.Errorf("parseLunID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", "x", "1.0", "_1", "1_", "1__0", "--1", "0x10", "1e3"} {
		if _, err := parseLunID(in); err == nil {
			t.Errorf("parseLunID(%q) accepted", in)
		}
	}
}

// TestTargetLunLifecycle exports disks, maps them to clients, unmaps and
// removes them on one gateway, checking the document after each step.
func TestTargetLunLifecycle(t *testing.T) {
	store := newMemStore(lunDoc())
	targetLunLifecycle(t, newLunEnv(t, store, gw1))
}

func targetLunLifecycle(t *testing.T, env *testEnv) {
	tl := "/api/targetlun/" + tIQN
	ok := "Target LUN mapping updated successfully"
	expect(t, env.do(t, "PUT", tl, v("disk", "rbd/disk2")), 200, ok)
	d := loadDoc(t, env.store)
	tg := d.Targets[tIQN]
	// ids 0 (disk1) and 3 (disk3) are taken: the lowest free is 1
	if ref, found := tg.Disks["rbd/disk2"]; !found || ref.LunID != 1 {
		t.Fatalf("disk2 %+v %v", ref, found)
	}
	if o := d.Disks["rbd/disk2"].Owner; o == nil || *o != gw1 || d.Gateways[gw1].ActiveLuns != 4 {
		t.Fatalf("owner %v active %d", o, d.Gateways[gw1].ActiveLuns)
	}
	if env.lio.last == nil || env.lio.last.Targets[tIQN].Disks["rbd/disk2"].LunID != 1 {
		t.Fatal("LIO not converged to the new LUN")
	}
	addDiskCommit(t, env.store, "rbd/disk5")
	expect(t, env.do(t, "PUT", tl, v("disk", "rbd/disk5", "lun_id", "1_0")), 200, ok)
	if id := loadDoc(t, env.store).Targets[tIQN].Disks["rbd/disk5"].LunID; id != 10 {
		t.Fatalf("explicit id: %d", id)
	}

	cl := "/api/clientlun/" + tIQN + "/" + cIQN2
	expect(t, env.do(t, "PUT", cl, v("disk", "rbd/disk5")), 200, "client masking update successful")
	expect(t, env.do(t, "PUT", cl, v("disk", "rbd/disk2")), 200, "client masking update successful")
	// disk5's target id 10 is free among clients; disk2's id 1 is cIQN3's
	rec := env.do(t, "GET", "/api/_clientlun/"+tIQN+"/"+cIQN2, nil)
	if want := `{"message":{"rbd/disk2":{"lun_id":0},"rbd/disk5":{"lun_id":10}}}` + "\n"; rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("_clientlun GET: %d %s, want %s", rec.Code, rec.Body, want)
	}
	expect(t, env.do(t, "DELETE", tl, v("disk", "rbd/disk5")), 400,
		"Delete target LUN mapping failed - failed on "+gw1+". Failed to remove the LUN - Unable to delete rbd/disk5 - allocated to "+cIQN2)
	expect(t, env.do(t, "DELETE", cl, v("disk", "rbd/disk5")), 200, "client masking update successful")
	expect(t, env.do(t, "DELETE", tl, v("disk", "rbd/disk5")), 200, ok)
	d = loadDoc(t, env.store)
	if _, found := d.Targets[tIQN].Disks["rbd/disk5"]; found || d.Disks["rbd/disk5"].Owner != nil || d.Gateways[gw1].ActiveLuns != 4 {
		t.Fatalf("after delete: %v owner %v active %d", d.Targets[tIQN].Disks, d.Disks["rbd/disk5"].Owner, d.Gateways[gw1].ActiveLuns)
	}
	if got := lunMap(d.Targets[tIQN].Clients[cIQN2]); !maps.Equal(got, map[string]int{"rbd/disk2": 0}) {
		t.Fatalf("client luns %v", got)
	}
	// The last disk of a client goes too (upstream's empty image list).
	expect(t, env.do(t, "DELETE", cl, v("disk", "rbd/disk2")), 200, "client masking update successful")
	if n := len(loadDoc(t, env.store).Targets[tIQN].Clients[cIQN2].Luns); n != 0 {
		t.Fatalf("%d luns left", n)
	}
	if _, found := env.lio.last.Targets[tIQN].Disks["rbd/disk5"]; found {
		t.Fatal("LIO not converged to the removal")
	}
	if err := loadDoc(t, env.store).Validate(); err != nil {
		t.Fatal(err)
	}
}

func addDiskCommit(t *testing.T, s Store, id string) {
	t.Helper()
	if _, err := s.Commit(t.Context(), func(d *config.Doc) error { addDisk(d, id); return nil }); err != nil {
		t.Fatal(err)
	}
}

func lunMap(c *config.Client) map[string]int {
	out := map[string]int{}
	for k, ref := range c.Luns {
		out[k] = ref.LunID
	}
	return out
}

// TestClientImageListThroughInternalRoutes: _client and _clientauth PUT
// change the LUNs now, as upstream's update_client does.
func TestClientImageListThroughInternalRoutes(t *testing.T) {
	store := newMemStore(lunDoc())
	env := newEnv(t, store, gw1, nil)
	expect(t, env.do(t, "PUT", "/api/_client/"+tIQN+"/"+cIQN2, v("committing_host", gw1, "image_list", "rbd/disk3,rbd/disk1")), 200, "Client configured successfully")
	c := loadDoc(t, store).Targets[tIQN].Clients[cIQN2]
	// disk3's id 3 is unused by clients; disk1's id 0 is cIQN's and cIQN3's
	if got := lunMap(c); !maps.Equal(got, map[string]int{"rbd/disk3": 3, "rbd/disk1": 0}) {
		t.Fatalf("luns %v", got)
	}
	// a gateway that does not commit converges without writing
	before := store.bytes()
	expect(t, env.do(t, "PUT", "/api/_clientauth/"+tIQN+"/"+cIQN2, v("committing_host", gw2, "image_list", "rbd/disk3",
		"username", "", "password", "", "mutual_username", "", "mutual_password", "")), 200, "Client configured successfully")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("a non-committing gateway wrote the config")
	}
	if got := lunMap(env.lio.last.Targets[tIQN].Clients[cIQN2]); !maps.Equal(got, map[string]int{"rbd/disk3": 3}) {
		t.Fatalf("previewed luns %v", got)
	}
	expect(t, env.do(t, "PUT", "/api/_clientauth/"+tIQN+"/"+cIQN2, v("committing_host", gw1, "image_list", "",
		"username", "", "password", "", "mutual_username", "", "mutual_password", "")), 200, "Client configured successfully")
	if n := len(loadDoc(t, store).Targets[tIQN].Clients[cIQN2].Luns); n != 0 {
		t.Fatalf("%d luns left", n)
	}
	// A group member's LUNs stay the group's.
	expect(t, env.do(t, "PUT", "/api/_client/"+tIQN+"/"+cIQN, v("committing_host", gw1, "image_list", "rbd/disk3")), 200, "Client configured successfully")
	if got := lunMap(loadDoc(t, store).Targets[tIQN].Clients[cIQN]); !maps.Equal(got, map[string]int{"rbd/disk1": 0}) {
		t.Fatalf("group member luns %v", got)
	}
}

func TestClientLunKeepsCHAP(t *testing.T) {
	d := lunDoc()
	d.Targets[tIQN].Clients[cIQN2].Auth = config.Auth{Username: "myiscsiuser", Password: "myiscsipass12", MutualUsername: "mutualuser1", MutualPassword: "mutualpass1234"}
	store := newMemStore(d)
	env, _, calls := newLunPair(t, store)
	expect(t, env.do(t, "PUT", "/api/clientlun/"+tIQN+"/"+cIQN2, v("disk", "rbd/disk3")), 200, "client masking update successful")
	c := loadDoc(t, store).Targets[tIQN].Clients[cIQN2]
	if c.Auth.Username != "myiscsiuser" || c.Auth.Password != "myiscsipass12" || c.Auth.MutualPassword != "mutualpass1234" {
		t.Fatalf("auth changed: %+v", c.Auth)
	}
	// upstream re-sends the clear-text credentials with the list
	got := calls.find(t, "PUT", "/api/_clientlun/"+tIQN+"/"+cIQN2)
	if got.Get("image_list") != "rbd/disk3" || got.Get("password") != "myiscsipass12" || got.Get("mutual_username") != "mutualuser1" || got.Get("committing_host") != gw1 {
		t.Fatalf("peer vars %v", got)
	}
}

// peerCalls records the internal requests a peer gateway received.
type peerCalls struct {
	mu    sync.Mutex
	calls []peerCall
}

type peerCall struct {
	method, path string
	form         url.Values
}

func (p *peerCalls) find(t *testing.T, method, path string) url.Values {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.calls {
		if c.method == method && c.path == path {
			return c.form
		}
	}
	t.Fatalf("peer got no %s %s; got %v", method, path, p.calls)
	return nil
}

func (p *peerCalls) paths() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.calls {
		if !strings.HasSuffix(c.path, "/_ping") {
			out = append(out, c.method+" "+c.path)
		}
	}
	return out
}

// newLunPair makes gw2 a portal of tIQN and returns gw1's server and gw2's,
// reached over HTTP, both on store.
func newLunPair(t *testing.T, store rawStore) (env, peer *testEnv, calls *peerCalls) {
	t.Helper()
	if _, err := store.Commit(t.Context(), func(d *config.Doc) error {
		tg := d.MutTarget(tIQN)
		tg.IPList = []string{"198.51.100.1", "198.51.100.2"}
		for i, gw := range []string{gw1, gw2} {
			if d.Gateways[gw] == nil {
				d.PutGateway(gw, &config.Gateway{Created: config.Timestamp(t0), Updated: config.Timestamp(t0)})
			}
			tg.Portals[gw] = &config.Portal{PortalIPAddresses: []string{tg.IPList[i]}, GatewayIPList: tg.IPList, InactivePortalIPs: []string{tg.IPList[1-i]}, TPGs: 2}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	calls = &peerCalls{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		calls.mu.Lock()
		calls.calls = append(calls.calls, peerCall{r.Method, r.URL.Path, form})
		calls.mu.Unlock()
		peer.e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	peerURL := func(gw string) string {
		if gw == gw2 {
			return srv.URL
		}
		return "http://127.0.0.1:1"
	}
	peer = newEnv(t, store, gw2, func(d *Deps) { d.PeerURL = peerURL; d.Images = lunImages{} })
	env = newEnv(t, store, gw1, func(d *Deps) { d.PeerURL = peerURL; d.Images = lunImages{} })
	return env, peer, calls
}

func TestTargetLunFanout(t *testing.T) {
	store := newMemStore(lunDoc())
	env, peer, calls := newLunPair(t, store)
	expect(t, env.do(t, "PUT", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2")), 200, "Target LUN mapping updated successfully")
	d := loadDoc(t, store)
	// gw1 owns 3 LUNs, gw2 none: the new one goes to gw2
	if o := d.Disks["rbd/disk2"].Owner; o == nil || *o != gw2 || d.Gateways[gw2].ActiveLuns != 1 {
		t.Fatalf("owner %v active %d", o, d.Gateways[gw2].ActiveLuns)
	}
	got := calls.find(t, "PUT", "/api/_targetlun/"+tIQN)
	want := url.Values{"disk": {"rbd/disk2"}, "owner": {gw2}, "lun_id": {"1"}, "allocating_host": {gw1}}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("peer vars %v, want %v", got, want)
	}
	if peer.lio.last == nil || peer.lio.last.Targets[tIQN].Disks["rbd/disk2"].LunID != 1 {
		t.Fatal("peer did not converge")
	}
	expect(t, env.do(t, "PUT", "/api/clientlun/"+tIQN+"/"+cIQN2, v("disk", "rbd/disk2")), 200, "client masking update successful")
	// target id 1 is cIQN3's mapped id: the lowest free
	if ref, found := peer.lio.last.Targets[tIQN].Clients[cIQN2].Luns["rbd/disk2"]; !found || ref.LunID != 0 {
		t.Fatalf("peer client luns %v", peer.lio.last.Targets[tIQN].Clients[cIQN2].Luns)
	}
	expect(t, env.do(t, "DELETE", "/api/clientlun/"+tIQN+"/"+cIQN2, v("disk", "rbd/disk2")), 200, "client masking update successful")
	reconciles := env.lio.reconciles
	expect(t, env.do(t, "DELETE", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2")), 200, "Target LUN mapping updated successfully")
	if got := calls.find(t, "DELETE", "/api/_targetlun/"+tIQN); got.Get("purge_host") != gw1 || got.Get("disk") != "rbd/disk2" {
		t.Fatalf("delete vars %v", got)
	}
	if _, found := peer.lio.last.Targets[tIQN].Disks["rbd/disk2"]; found || env.lio.reconciles != reconciles+1 {
		t.Fatal("LUN removal not converged on both gateways")
	}
	wantOrder := []string{
		"PUT /api/_targetlun/" + tIQN, "PUT /api/_clientlun/" + tIQN + "/" + cIQN2,
		"PUT /api/_clientlun/" + tIQN + "/" + cIQN2, "DELETE /api/_targetlun/" + tIQN,
	}
	if got := calls.paths(); !slices.Equal(got, wantOrder) {
		t.Fatalf("peer calls %v", got)
	}
	d = loadDoc(t, store)
	if d.Gateways[gw2].ActiveLuns != 0 || d.Disks["rbd/disk2"].Owner != nil {
		t.Fatalf("after delete: active %d owner %v", d.Gateways[gw2].ActiveLuns, d.Disks["rbd/disk2"].Owner)
	}

	// A peer that fails a removal is reported with call_api's wording, and
	// this gateway, which goes last, commits nothing.
	expect(t, env.do(t, "PUT", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2")), 200, "Target LUN mapping updated successfully")
	peer.lio.mu.Lock()
	peer.lio.fail = errors.New("configfs busy")
	peer.lio.mu.Unlock()
	before := store.bytes()
	expect(t, env.do(t, "DELETE", "/api/targetlun/"+tIQN, v("disk", "rbd/disk2")), 500,
		"Delete target LUN mapping failed - failed on "+gw2+". Failed to remove the LUN - configfs busy")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("config changed although the peer failed first")
	}
}

func TestGatewayInfo(t *testing.T) {
	d := lunDoc()
	store := newMemStore(d)
	env := newEnv(t, store, gw1, nil)
	env.lio.sessions = 3
	// gw1 is a portal of tIQN and chapIQN
	rec := env.do(t, "GET", "/api/gatewayinfo", nil)
	if rec.Code != 200 || rec.Body.String() != `{"num_sessions":6}`+"\n" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	other := newEnv(t, store, "gw3.example.test", nil)
	expect(t, other.do(t, "GET", "/api/gatewayinfo", nil), 404, "Gateway gw3.example.test does not exist in configuration")
	// gw2 is a registered gateway without sessions counted anywhere else
	g2 := newEnv(t, store, gw2, nil)
	g2.lio.sessions = 5
	rec = g2.do(t, "GET", "/api/gatewayinfo", nil)
	if rec.Body.String() != `{"num_sessions":5}`+"\n" {
		t.Fatalf("gw2: %s", rec.Body)
	}
}

func TestClientInfo(t *testing.T) {
	store := newMemStore(lunDoc())
	env, peer, _ := newLunPair(t, store)
	path := tIQN + "/" + cIQN3
	env.lio.infos = map[string]ClientSession{cIQN3: {Alias: "", State: "logged_in", Addresses: []string{"192.0.2.9", "192.0.2.7", "192.0.2.9"}}}
	peer.lio.infos = map[string]ClientSession{cIQN3: {Alias: "rh7", State: "LOGGED_IN", Addresses: []string{"192.0.2.7"}}}

	rec := env.do(t, "GET", "/api/_clientinfo/"+path, nil)
	if want := `{"alias":"","ip_address":["192.0.2.7","192.0.2.9"],"state":"LOGGED_IN"}` + "\n"; rec.Body.String() != want {
		t.Fatalf("_clientinfo: %s, want %s", rec.Body, want)
	}
	rec = env.do(t, "GET", "/api/clientinfo/"+path, nil)
	if want := `{"alias":"rh7","ip_address":["192.0.2.7","192.0.2.9"],"state":{"LOGGED_IN":["` + gw1 + `","` + gw2 + `"]}}` + "\n"; rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("clientinfo: %d %s, want %s", rec.Code, rec.Body, want)
	}
	// Addresses only while logged in; no session contributes nothing.
	peer.lio.infos = map[string]ClientSession{cIQN3: {Alias: "rh7", State: "FAILED", Addresses: []string{"192.0.2.8"}}}
	env.lio.infos = nil
	rec = env.do(t, "GET", "/api/clientinfo/"+path, nil)
	if want := `{"alias":"rh7","ip_address":[],"state":{"FAILED":["` + gw2 + `"]}}` + "\n"; rec.Body.String() != want {
		t.Fatalf("clientinfo: %s, want %s", rec.Body, want)
	}
	// A peer whose iSCSI is down fails the whole query, as upstream.
	peer.e = NewServer(Deps{Settings: testSettings(), Store: store, Gateway: gw2, LIO: peer.lio, ISCSIListening: func() bool { return false },
		LocalAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil }})
	expect(t, env.do(t, "GET", "/api/clientinfo/"+path, nil), 503, "failed, gateway(s) unavailable:"+gw2+"(iscsi down, API up)")
}

// TestConcurrentLunChanges: target LUN adds and client LUN adds on one
// target at once, none lost (200 of them against RADOS in
// TestClusterConcurrentLunChanges).
func TestConcurrentLunChanges(t *testing.T) {
	concurrentLuns(t, newMemStore(concurrentLunDoc(40)), 40)
}

const lunClients = 4

// concurrentLunDoc has gw1 and gw2 each owning half of n/2 exported disks,
// n/2 more disks defined but not exported, and lunClients clients.
func concurrentLunDoc(n int) *config.Doc {
	d := seedDoc(gw1)
	d.Gateways[gw1].ActiveLuns = 1
	d.Gateways[gw2] = &config.Gateway{Created: config.Timestamp(t0), Updated: config.Timestamp(t0)}
	for i := range n {
		id := fmt.Sprintf("rbd/c%03d", i)
		switch {
		case i >= n/2:
			addDisk(d, id)
		case i%2 == 0:
			exportDisk(d, tIQN, id, i+1, gw1)
		default:
			exportDisk(d, tIQN, id, i+1, gw2)
		}
	}
	for k := range lunClients {
		d.Targets[tIQN].Clients[fmt.Sprintf("iqn.1994-05.com.example:c%d", k)] = config.NewClient()
	}
	return d
}

// concurrentLuns sends n requests at once through gw1, with gw2 as a peer:
// the second half of the disks to the target, the first half to the
// clients (disk i to client i mod lunClients).
func concurrentLuns(t *testing.T, store rawStore, n int) {
	env, _, _ := newLunPair(t, store)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			var rec *httptest.ResponseRecorder
			id := fmt.Sprintf("rbd/c%03d", i)
			if i >= n/2 {
				rec = env.do(t, "PUT", "/api/targetlun/"+tIQN, v("disk", id))
			} else {
				rec = env.do(t, "PUT", fmt.Sprintf("/api/clientlun/%s/iqn.1994-05.com.example:c%d", tIQN, i%lunClients), v("disk", id))
			}
			if rec.Code != 200 {
				errs <- fmt.Sprintf("%s: %d %s", id, rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	d := loadDoc(t, store)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	tg := d.Targets[tIQN]
	if len(tg.Disks) != n+1 {
		t.Fatalf("%d target disks, want %d", len(tg.Disks), n+1)
	}
	owned := map[string]int{}
	for id := range tg.Disks {
		owned[*d.Disks[id].Owner]++
	}
	for gw, k := range owned {
		if d.Gateways[gw].ActiveLuns != k {
			t.Errorf("%s owns %d LUNs but counts %d", gw, k, d.Gateways[gw].ActiveLuns)
		}
	}
	if diff := owned[gw1] - owned[gw2]; diff < -1 || diff > 1 {
		t.Errorf("ownership unbalanced: %v", owned)
	}
	for k := range lunClients {
		c := tg.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%d", k)]
		if len(c.Luns) != n/2/lunClients {
			t.Errorf("client %d has %d LUNs, want %d", k, len(c.Luns), n/2/lunClients)
		}
		for id := range c.Luns {
			var i int
			if _, err := fmt.Sscanf(id, "rbd/c%03d", &i); err != nil || i%lunClients != k {
				t.Errorf("client %d got %s", k, id)
			}
		}
	}
	raw, _ := json.Marshal(owned)
	t.Logf("owners %s", raw)
}
