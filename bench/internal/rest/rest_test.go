package rest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestDo: a form goes as the urlencoded body with basic auth; no form sends
// no body and no Content-Type (upstream's GET routes read none).
func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "admin" || p != "secret" {
			http.Error(w, "auth", http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write([]byte(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + r.PostForm.Get("size")))
	}))
	defer srv.Close()
	c := &Client{Base: srv.URL, User: "admin", Pass: "secret", HTTP: srv.Client()}
	st, b, err := c.Do(context.Background(), http.MethodPut, "/api/disk/rbd/a", url.Values{"size": {"1G"}})
	if err != nil || st != 200 || string(b) != "PUT /api/disk/rbd/a application/x-www-form-urlencoded 1G" {
		t.Errorf("PUT: %d %q %v", st, b, err)
	}
	st, b, err = c.Do(context.Background(), http.MethodGet, "/api/config", nil)
	if err != nil || st != 200 || string(b) != "GET /api/config  " {
		t.Errorf("GET: %d %q %v", st, b, err)
	}
	c.Pass = "wrong"
	if st, _, _ := c.Do(context.Background(), http.MethodGet, "/api/config", nil); st != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", st)
	}
}
