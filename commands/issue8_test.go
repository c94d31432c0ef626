package commands

import (
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/lio"
)

// TestIssue8Item8RestoreLocalAddr: with two gateways on one host, restore
// takes the api's --local-addr, so it builds the portal of its own gateway
// only. Without it, this host's interface addresses (127.0.0.1 is on lo)
// would make the other gateway's portal local too.
func TestIssue8Item8RestoreLocalAddr(t *testing.T) {
	fx := newFixture(t)
	const gw2 = "gw2.test"
	fx.commit(func(doc *config.Doc) error {
		tg := doc.Targets[testIQN]
		tg.IPList = []string{"127.0.0.1", "127.0.0.2"}
		tg.Portals[testGateway].GatewayIPList = tg.IPList
		tg.Portals[gw2] = &config.Portal{PortalIPAddresses: []string{"127.0.0.2"}, GatewayIPList: tg.IPList, InactivePortalIPs: []string{}, TPGs: 2}
		doc.Gateways[gw2] = &config.Gateway{Created: doc.Created, Updated: doc.Updated}
		return nil
	})
	tpg := func(n string) string { return "target/iscsi/" + testIQN + "/tpgt_" + n }

	// Without the flag the interface addresses decide: gw2 would take
	// gw1's portal (127.0.0.1), which is what the issue saw.
	rep := decodeReport(t, fx.runWith(fx.settings, "--gateway-name", gw2, "--dry-run", "--json"))
	if !hasOp(rep.Plan, lio.OpEnable, tpg("1")) {
		t.Fatalf("without --local-addr the plan does not show the issue's behaviour:\n%s", rep.Plan)
	}

	r := fx.runWith(fx.settings, "--gateway-name", gw2, "--local-addr", "127.0.0.2", "--json")
	expectCode(t, r, 0)
	rep = decodeReport(t, r)
	if hasOp(rep.Plan, lio.OpEnable, tpg("1")) {
		t.Errorf("restore with --local-addr plans gw1's portal:\n%s", rep.Plan)
	}
	if !hasOp(rep.Plan, lio.OpEnable, tpg("2")) || !hasOp(rep.Plan, lio.OpMkdir, tpg("2")+"/np/127.0.0.2:3260") {
		t.Errorf("restore with --local-addr does not plan its own portal:\n%s", rep.Plan)
	}
	st := fx.observe()
	if len(st.Targets) != 1 || len(st.Targets[0].TPGs) != 2 {
		t.Fatalf("targets after restore: %+v", st.Targets)
	}
	for _, g := range st.Targets[0].TPGs {
		if want := g.Tag == 2; g.Enabled != want {
			t.Errorf("tpgt_%d enabled=%v, want %v", g.Tag, g.Enabled, want)
		}
	}

	r = fx.runWith(fx.settings, "--gateway-name", gw2, "--local-addr", "not-an-ip")
	expectCode(t, r, exitUsage)
	mustContain(t, "stderr", r.stderr, `restore: --local-addr "not-an-ip": not an IP address`)
}

func hasOp(p lio.Plan, kind lio.OpKind, path string) bool {
	for _, o := range p.Ops {
		if o.Kind == kind && o.Path == path {
			return true
		}
	}
	return false
}
