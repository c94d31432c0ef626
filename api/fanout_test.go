package api

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"ceph-iscsi/config"
)

// gatedLIO is a fake LIO whose apply waits for gate (closed by another
// gateway's apply), or closes gate itself once it has applied.
type gatedLIO struct {
	*fakeLIO
	gate  chan struct{}
	waits bool
	once  sync.Once
}

func (g *gatedLIO) Reconcile(ctx context.Context, doc *config.Doc) error {
	if g.waits {
		select {
		case <-g.gate:
		case <-time.After(time.Minute):
			// only a coordinator that calls the peer after its own apply
			// gets here
			return errors.New("the peer was not called while this gateway applied")
		}
		return g.fakeLIO.Reconcile(ctx, doc)
	}
	err := g.fakeLIO.Reconcile(ctx, doc)
	g.once.Do(func() { close(g.gate) })
	return err
}

// TestCommittedChangeAppliedHereAndOnPeersAtOnce: once the change is
// committed, the coordinator's own LIO apply and its calls to the peers run
// at once, and the answer waits for both: gw1's apply can only finish after
// gw2 has applied, which a coordinator calling gw2 after its own apply
// would never reach.
func TestCommittedChangeAppliedHereAndOnPeersAtOnce(t *testing.T) {
	store := newMemStore(seedDoc(gw1, gw2))
	gate := make(chan struct{})
	lios := map[string]*gatedLIO{}
	cl := newGWCluster(t, store, []string{gw1, gw2}, []string{"198.51.100.1", "198.51.100.2"}, func(name string, d *Deps) {
		lios[name] = &gatedLIO{fakeLIO: &fakeLIO{states: map[string]string{}}, gate: gate, waits: name == gw1}
		d.LIO = lios[name]
	})
	rec := cl.nodes[gw1].env.do(t, "PUT", "/api/client/"+tIQN+"/"+cIQN, nil)
	expect(t, rec, 200, "client create/update successful")
	stages := serverTimingStages(t, rec.Header().Get("Server-Timing"))
	for _, want := range []string{"peers-ready", "local-apply", "peers-after", "total"} {
		if !slices.Contains(stages, want) {
			t.Errorf("Server-Timing stages %q lack %q", stages, want)
		}
	}
	for _, gw := range []string{gw1, gw2} {
		lio := lios[gw].fakeLIO
		lio.mu.Lock()
		last := lio.last
		lio.mu.Unlock()
		if last == nil || last.Targets[tIQN].Clients[cIQN] == nil {
			t.Errorf("%s did not apply the new client", gw)
		}
	}
}
