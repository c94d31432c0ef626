package api

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/devcluster"
	"ceph-iscsi/rados"
)

func TestMain(m *testing.M) { devcluster.Main(m) }

// clusterStore is a real rados.Store whose raw object bytes a test can read.
type clusterStore struct {
	*rados.Store
	cluster *devcluster.Cluster
	conn    *rados.Conn
	object  string
	tb      testing.TB
}

// bytes reads the object raw through librados, beside the store (no
// parsing, no cache), so a refusal that wrote anything shows.
func (c *clusterStore) bytes() []byte {
	c.tb.Helper()
	ioctx, err := c.conn.Raw().OpenIOContext("rbd")
	if err != nil {
		c.tb.Fatalf("open pool rbd: %v", err)
	}
	defer ioctx.Destroy()
	st, err := ioctx.Stat(c.object)
	if err != nil {
		c.tb.Fatalf("stat %s: %v", c.object, err)
	}
	buf := make([]byte, st.Size)
	n, err := ioctx.Read(c.object, buf, 0)
	if err != nil {
		c.tb.Fatalf("read %s: %v", c.object, err)
	}
	return buf[:n]
}

// openClusterStore gives the test its own config object seeded with doc.
func openClusterStore(t testing.TB, doc *config.Doc) *clusterStore {
	t.Helper()
	c := devcluster.Require(t)
	conn, err := rados.Connect(rados.ConnOptions{ConfFile: c.Conf, ClientName: "client.admin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	object := fmt.Sprintf("gateway.conf.api.%s.%08x", strings.ReplaceAll(t.Name(), "/", "_"), rand.Uint32())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := rados.OpenStore(ctx, conn, rados.StoreOptions{
		Object:  object,
		Upgrade: config.UpgradeOptions{Gateway: config.NewIdentity("gw1", gw1)},
		Now:     func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	t.Cleanup(func() { _, _ = c.Rados("-p", "rbd", "rm", object) })
	if doc != nil {
		if _, err := s.Commit(ctx, func(d *config.Doc) error {
			*d = *doc.Clone()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return &clusterStore{Store: s, cluster: c, conn: conn, object: object, tb: t}
}

func TestClusterLifecycle(t *testing.T) {
	store := openClusterStore(t, nil)
	env := newEnv(t, store, gw1, nil)
	lifecycle(t, env, func(t *testing.T) {
		if _, err := store.Commit(t.Context(), func(d *config.Doc) error {
			d.Gateways[gw1] = &config.Gateway{}
			tg := d.Targets[tIQN]
			tg.IPList = []string{"198.51.100.1"}
			tg.Portals[gw1] = &config.Portal{PortalIPAddresses: []string{"198.51.100.1"}, GatewayIPList: []string{"198.51.100.1"}, InactivePortalIPs: []string{}, TPGs: 1}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	// CHAP passwords went into the real object, readable back in clear.
	raw := store.bytes()
	if !bytes.Contains(raw, []byte(`"username": "discovery1"`)) {
		t.Fatalf("discovery auth not in the object:\n%s", raw)
	}
}

func TestClusterBadRequestsChangeNothing(t *testing.T) {
	store := openClusterStore(t, richDoc())
	before := store.bytes()
	runBadCases(t, newEnv(t, store, gw1, manyWrongLogins))
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("the object's bytes changed")
	}
}

func TestClusterConcurrentClientCreates(t *testing.T) {
	store := openClusterStore(t, seedDoc(gw1))
	concurrentClients(t, newEnv(t, store, gw1, nil), 200)
}
