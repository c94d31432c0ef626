package api

import (
	"context"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// cachingStore is a memStore that also keeps a document as *rados.Store
// does (Cached): its own last commit, or whatever a test sets, which may be
// older than the stored one (a peer's commit not read yet). It counts the
// Loads, each a round trip on the real store.
type cachingStore struct {
	*memStore
	loads atomic.Int64

	mu     sync.Mutex
	cached *config.Doc
}

func newCachingStore(doc *config.Doc) *cachingStore {
	return &cachingStore{memStore: newMemStore(doc), cached: doc.Clone()}
}

func (c *cachingStore) Load(ctx context.Context) (*config.Doc, error) {
	c.loads.Add(1)
	return c.memStore.Load(ctx)
}

func (c *cachingStore) Commit(ctx context.Context, m rados.Mutation) (*config.Doc, error) {
	doc, err := c.memStore.Commit(ctx, m)
	if err == nil {
		c.setCached(doc)
	}
	return doc, err
}

func (c *cachingStore) Cached() *config.Doc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cached
}

func (c *cachingStore) setCached(doc *config.Doc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cached = doc.Clone()
}

// TestMutationsCheckTheCachedDocument: the PUTs of upstream's build
// sequence check the request on the document the gateway last read or
// committed, with no load (a stat of the object on the real store) before
// their commit.
func TestMutationsCheckTheCachedDocument(t *testing.T) {
	store := newCachingStore(seedDoc(gw1))
	env := newEnv(t, store, gw1, nil)
	expect(t, env.do(t, "GET", "/api/targets", nil), 200, "") // builds the allowlist, which loads
	for _, r := range []struct {
		path string
		form url.Values
		msg  string
	}{
		{"/api/client/" + tIQN + "/" + cIQN, nil, "client create/update successful"},
		{"/api/clientauth/" + tIQN + "/" + cIQN, url.Values{"username": {"myiscsiusername"}, "password": {"myiscsipassword"}}, "client auth successful"},
		{"/api/clientlun/" + tIQN + "/" + cIQN, url.Values{"disk": {"rbd/disk1"}}, "client masking update successful"},
	} {
		before := store.loads.Load()
		expect(t, env.do(t, "PUT", r.path, r.form), 200, r.msg)
		if n := store.loads.Load() - before; n != 0 {
			t.Errorf("PUT %s loaded the document %d times, want 0", r.path, n)
		}
	}
	doc := loadDoc(t, store)
	cl := doc.Targets[tIQN].Clients[cIQN]
	if cl == nil {
		t.Fatal("the client was not created")
	}
	if _, mapped := cl.Luns["rbd/disk1"]; cl.Auth.Username != "myiscsiusername" || !mapped {
		t.Errorf("the client was not built: %+v", cl)
	}
}

// TestStaleCachedDocumentNeverRefuses: a request that the cached document
// would refuse, but the current one allows (a peer's commit not read yet),
// succeeds; one the current document refuses gets upstream's answer.
func TestStaleCachedDocumentNeverRefuses(t *testing.T) {
	store := newCachingStore(seedDoc(gw1))
	env := newEnv(t, store, gw1, nil)
	stale := loadDoc(t, store)
	delete(stale.Targets[tIQN].Clients, cIQN)
	// another gateway adds the client: this one's cache lacks it
	if _, err := store.memStore.Commit(t.Context(), func(d *config.Doc) error {
		_, err := d.AddClient(tIQN, cIQN, t0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	store.setCached(stale)
	expect(t, env.do(t, "PUT", "/api/clientlun/"+tIQN+"/"+cIQN, url.Values{"disk": {"rbd/disk1"}}), 200, "client masking update successful")
	if _, mapped := loadDoc(t, store).Targets[tIQN].Clients[cIQN].Luns["rbd/disk1"]; !mapped {
		t.Error("the LUN was not mapped")
	}

	// and the other way: the cache still has a client another gateway
	// deleted; the refusal is the current document's
	store.setCached(loadDoc(t, store))
	if _, err := store.memStore.Commit(t.Context(), func(d *config.Doc) error {
		return d.RemoveClient(tIQN, cIQN, t0)
	}); err != nil {
		t.Fatal(err)
	}
	expect(t, env.do(t, "PUT", "/api/clientauth/"+tIQN+"/"+cIQN, url.Values{"username": {"myiscsiusername"}, "password": {"myiscsipassword"}}),
		404, "Client '"+cIQN+"' does not exist")

	// a target the cache lacks
	stale = loadDoc(t, store)
	if err := stale.RemoveTarget(tIQN); err != nil {
		t.Fatal(err)
	}
	store.setCached(stale)
	expect(t, env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN2, nil), 200, "client create/update successful")
}

// TestStaleCachedPeersAreCalled: a request checked on a cached document
// that lacks a portal gateway another gateway has added is checked again
// on the current one, so that gateway is called after the commit.
func TestStaleCachedPeersAreCalled(t *testing.T) {
	store := newCachingStore(seedDoc(gw1, gw2))
	lios := map[string]*fakeLIO{}
	cl := newGWCluster(t, store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, func(name string, d *Deps) {
		lios[name] = &fakeLIO{states: map[string]string{}}
		d.LIO = lios[name]
	})
	stale := seedDoc(gw1)
	store.setCached(stale)
	expect(t, cl.nodes[gw1].env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN, nil), 200, "client create/update successful")
	lios[gw2].mu.Lock()
	last := lios[gw2].last
	lios[gw2].mu.Unlock()
	if last == nil || last.Targets[tIQN].Clients[cIQN] == nil {
		t.Errorf("%s, a portal the cached document lacked, did not apply the new client", gw2)
	}
}
