package config

import (
	"bytes"
	"errors"
	"testing"
)

func TestMutations(t *testing.T) {
	const tgt = "iqn.2003-01.com.example:t"
	const cli = "iqn.1994-05.com.example:c"
	doc := NewDoc(t1)

	if _, err := doc.AddTarget(tgt, t1); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.AddTarget(tgt, t1); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate AddTarget: %v", err)
	}
	if _, err := doc.AddTarget("", t1); err == nil {
		t.Error("AddTarget accepted an empty IQN")
	}
	if doc.Targets[tgt].Updated != nil {
		t.Error("a new target has an updated stamp")
	}

	c, err := doc.AddClient(tgt, cli, t2)
	if err != nil {
		t.Fatal(err)
	}
	if c != doc.Targets[tgt].Clients[cli] || *doc.Targets[tgt].Updated != Timestamp(t2) {
		t.Error("AddClient did not store the client or stamp the target")
	}
	if _, err := doc.AddClient(tgt, cli, t2); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate AddClient: %v", err)
	}
	if _, err := doc.AddClient("iqn.x:missing", cli, t2); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddClient on a missing target: %v", err)
	}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}

	g := NewGroup()
	g.Members = []string{cli}
	doc.Targets[tgt].Groups["g"] = g
	c.GroupName = "g"
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := doc.RemoveClient(tgt, cli, t2); !errors.Is(err, ErrConflict) {
		t.Errorf("RemoveClient of a grouped client: %v", err)
	}
	delete(doc.Targets[tgt].Groups, "g")
	c.GroupName = ""
	if err := doc.RemoveClient(tgt, cli, t2); err != nil {
		t.Fatal(err)
	}
	if err := doc.RemoveClient(tgt, cli, t2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveClient: %v", err)
	}

	doc.Touch(t2)
	doc.Touch(t2)
	if doc.Epoch != 2 || doc.Updated != Timestamp(t2) {
		t.Errorf("Touch: epoch %d updated %q", doc.Epoch, doc.Updated)
	}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestClone(t *testing.T) {
	doc, err := Parse([]byte(fullDoc))
	if err != nil {
		t.Fatal(err)
	}
	before := doc.Marshal()
	c := doc.Clone()
	if !bytes.Equal(c.Marshal(), before) {
		t.Fatal("clone differs")
	}
	tg := c.Targets["iqn.2003-01.com.example:t"]
	*c.Disks["rbd/a"].Owner = "changed"
	c.Disks["rbd/a"].Controls["qfull_timeout"] = 1
	c.Disks["rbd/a"].Extra["x_disk"].(map[string]any)["deep"] = "changed"
	tg.IPList[0] = "changed"
	*tg.Updated = "changed"
	tg.Portals["gw1.example"].PortalIPAddresses[0] = "changed"
	tg.Clients["iqn.1994-05.com.example:c"].Auth.Extra["x_auth"] = "changed"
	tg.Groups["g"].Members[0] = "changed"
	tg.Disks["rbd/a"].Extra["x_lun"] = "changed"
	c.DiscoveryAuth.Extra["x_auth"] = "changed"
	c.Gateways["gw1.example"].ActiveLuns = 9
	if !bytes.Equal(doc.Marshal(), before) {
		t.Error("mutating the clone changed the original")
	}
	if (*Doc)(nil).Clone() != nil {
		t.Error("nil clone")
	}
}
