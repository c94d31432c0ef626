package shell

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// TestPingStates maps each _ping answer to upstream's state word, against real HTTP
// servers, one per gateway, each answering with its own status.
func TestPingStates(t *testing.T) {
	c := NewClient(false, 0, "u", "p", 5*time.Second)
	c.Peers = map[string]string{}
	want := map[int]GatewayState{200: GatewayUp, 503: GatewayPartial, 401: GatewayUnauthorized, 403: GatewayForbidden,
		500: GatewayUnknown, 404: GatewayUnknown}
	for code := range want {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/_ping" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(code)
		}))
		t.Cleanup(srv.Close)
		c.Peers["gw"+strconv.Itoa(code)] = srv.URL
	}
	for code, st := range want {
		if got := ping(context.Background(), c, "gw"+strconv.Itoa(code), time.Second); got != st {
			t.Errorf("_ping %d: %s, want %s", code, got, st)
		}
	}
	// a refused connection
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.URL
	ln.Close()
	c.Peers["gone"] = addr
	if got := ping(context.Background(), c, "gone", time.Second); got != GatewayUnknown {
		t.Errorf("refused: %s", got)
	}
}
