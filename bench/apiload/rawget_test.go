package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRawGetter: the request carries the path and basic auth; a kept-alive
// connection is reused, a response that closes it (as an HTTP/1.0 server
// does) makes the next request dial again, and a connection the server
// dropped while idle is retried on a fresh one: every request is
// answered, in full.
func TestRawGetter(t *testing.T) {
	var conns atomic.Int64
	body := strings.Repeat("x", 30000) // over net/http's 2 KB buffer: chunked
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "admin" || p != "secret" || r.URL.Path != "/api/config" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Server-Timing", "version;dur=1.5, total;dur=2")
		if r.Header.Get("X-Close") != "" {
			w.Header().Set("Connection", "close")
		}
		_, _ = w.Write([]byte(body))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	g, err := newRawGetter(srv.URL, "admin", "secret", "/api/config")
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	get := func(what string) {
		t.Helper()
		st, timing, n, err := g.get()
		if err != nil || st != http.StatusOK || n != int64(len(body)) || timing != "version;dur=1.5, total;dur=2" {
			t.Fatalf("%s: %d %q %d bytes %v", what, st, timing, n, err)
		}
	}
	get("first")
	get("second")
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for two requests, want 1 (kept alive)", n)
	}
	srv.CloseClientConnections() // dropped while idle
	get("after the server dropped the connection")
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	g.req = []byte(strings.Replace(string(g.req), "\r\n\r\n", "\r\nX-Close: 1\r\n\r\n", 1))
	get("closing")
	get("after a closing answer")
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (the closing answer's, then a new one)", n)
	}

	bad, err := newRawGetter(srv.URL, "admin", "wrong", "/api/config")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.close()
	if st, _, _, err := bad.get(); err != nil || st != http.StatusUnauthorized {
		t.Errorf("wrong password: %d %v", st, err)
	}
	if _, err := newRawGetter("https://127.0.0.1:5000", "a", "b", "/api/config"); err == nil {
		t.Error("https accepted")
	}
}
