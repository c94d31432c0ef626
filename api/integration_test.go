package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
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
	// a benchmark measures commits without the test binaries' re-encode
	_, bench := t.(*testing.B)
	s, err := rados.OpenStore(ctx, conn, rados.StoreOptions{
		Object:          object,
		Upgrade:         config.UpgradeOptions{Gateway: config.NewIdentity("gw1", gw1)},
		Now:             func() time.Time { return t0 },
		SkipSharedCheck: bench,
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
			d.PutGateway(gw1, &config.Gateway{})
			tg := d.MutTarget(tIQN)
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

// TestClusterGetConfigFollowsEveryWriter: GET /api/config is answered from
// memory but always with the object's current content: the gateway's own
// commit, another daemon's commit, and a direct write of the object (a
// Python gateway's commit, a hand edit) each show on the next GET, exactly
// as a fresh read of the object encodes.
func TestClusterGetConfigFollowsEveryWriter(t *testing.T) {
	store := openClusterStore(t, seedDoc(gw1))
	env := newEnv(t, store, gw1, nil)
	ctx := t.Context()
	fresh := func() []byte {
		t.Helper()
		doc, _, err := config.Load(store.bytes(), config.UpgradeOptions{Gateway: config.NewIdentity("gw1", gw1), Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		b, err := configJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	get := func(what string) map[string]any {
		t.Helper()
		rec := env.do(t, http.MethodGet, "/api/config", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: GET /api/config: %d %s", what, rec.Code, rec.Body)
		}
		if want := fresh(); !bytes.Equal(rec.Body.Bytes(), want) {
			t.Fatalf("%s: GET /api/config is not the object's content:\n%s\nwant\n%s", what, rec.Body, want)
		}
		// its length is known: net/http must not chunk it
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
			t.Errorf("%s: Content-Length %q, body %d bytes", what, cl, rec.Body.Len())
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	clients := func(m map[string]any) map[string]any {
		return m["targets"].(map[string]any)[tIQN].(map[string]any)["clients"].(map[string]any)
	}
	get("before")

	cA := "iqn.1994-05.com.example:getconfig-a"
	if rec := env.do(t, http.MethodPut, "/api/client/"+tIQN+"/"+cA, nil); rec.Code != http.StatusOK {
		t.Fatalf("PUT client: %d %s", rec.Code, rec.Body)
	}
	if clients(get("own commit"))[cA] == nil {
		t.Fatalf("the committing gateway does not read its own write")
	}

	other, err := rados.OpenStore(ctx, store.conn, rados.StoreOptions{Object: store.object, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	cB := "iqn.1994-05.com.example:getconfig-b"
	if _, err := other.Commit(ctx, func(d *config.Doc) error { _, err := d.AddClient(tIQN, cB, t0); return err }); err != nil {
		t.Fatal(err)
	}
	if m := get("another daemon's commit"); clients(m)[cB] == nil || m["epoch"] != float64(3) {
		t.Fatalf("another daemon's commit is not seen: epoch %v", m["epoch"])
	}

	edited, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	delete(edited.MutTarget(tIQN).Clients, cA)
	edited.Epoch = 10
	ioctx, err := store.conn.Raw().OpenIOContext("rbd")
	if err != nil {
		t.Fatal(err)
	}
	defer ioctx.Destroy()
	if err := ioctx.WriteFull(store.object, edited.Marshal()); err != nil {
		t.Fatal(err)
	}
	if m := get("a direct write"); clients(m)[cA] != nil || m["epoch"] != float64(10) {
		t.Fatalf("a direct write of the object is not seen: epoch %v", m["epoch"])
	}
}
