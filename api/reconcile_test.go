package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"ceph-iscsi/config"
)

// blockingLIO holds Reconcile until released, and records whether its
// context was cancelled by then.
type blockingLIO struct {
	*fakeLIO
	entered, release chan struct{}
	ctxErr           chan error
}

func (b *blockingLIO) Reconcile(ctx context.Context, doc *config.Doc) error {
	b.entered <- struct{}{}
	<-b.release
	b.ctxErr <- ctx.Err()
	return b.fakeLIO.Reconcile(ctx, doc)
}

// TestIssue8Item4DisconnectAfterCommit: a client that goes away once its
// change is committed does not cancel the reconcile that applies it.
func TestIssue8Item4DisconnectAfterCommit(t *testing.T) {
	store := newMemStore(seedDoc(gw1))
	b := &blockingLIO{fakeLIO: &fakeLIO{states: map[string]string{}}, entered: make(chan struct{}, 1),
		release: make(chan struct{}), ctxErr: make(chan error, 1)}
	env := newEnv(t, store, gw1, func(d *Deps) { d.LIO = b })
	client := "iqn.1994-05.com.example:gone"
	req := httptest.NewRequest(http.MethodPut, "/api/client/"+tIQN+"/"+client, strings.NewReader(""))
	req.SetBasicAuth(apiUser, apiPass)
	ctx, disconnect := context.WithCancel(t.Context())
	req = req.WithContext(ctx)
	rec := httptest.NewRecorder()
	served := make(chan struct{})
	go func() {
		defer close(served)
		env.e.ServeHTTP(rec, req)
	}()
	<-b.entered // committed, reconciling
	disconnect()
	close(b.release)
	if err := <-b.ctxErr; err != nil {
		t.Errorf("the reconcile of a committed change saw its context end: %v", err)
	}
	<-served
	if loadDoc(t, store).Targets[tIQN].Clients[client] == nil {
		t.Error("the change is not committed")
	}
}
