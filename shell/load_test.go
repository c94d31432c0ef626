package shell

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
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

// TestLoadDiskStatesInOneRequest: against our API every disk's state comes from one
// GET /api/disks?status=yes; against an API that ignores status=yes (upstream's), each disk
// is asked for on its own route, as upstream's gwcli does.
func TestLoadDiskStatesInOneRequest(t *testing.T) {
	raw, err := os.ReadFile("../config/testdata/upstream-gateway.conf.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Disks map[string]map[string]any `json:"disks"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Disks) == 0 {
		t.Fatalf("test document: %v", err)
	}
	for _, bulk := range []bool{true, false} {
		var mu sync.Mutex
		perDisk := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/api/config":
				_, _ = w.Write(raw)
			case r.URL.Path == "/api/disks":
				all := map[string]any{}
				for id, d := range doc.Disks {
					e := map[string]any{"pool": d["pool"]}
					if bulk && r.URL.Query().Get("status") == "yes" {
						e["status"] = map[string]string{"state": "Online"}
					}
					all[id] = e
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"disks": all})
			case strings.HasPrefix(r.URL.Path, "/api/disk/"):
				mu.Lock()
				perDisk++
				mu.Unlock()
				_, _ = w.Write([]byte(`{"status": {"state": "Degraded - excessive failovers"}}`))
			default:
				http.NotFound(w, r)
			}
		}))
		c := NewClient(false, 0, "u", "p", 5*time.Second)
		c.Peers = map[string]string{"localhost": srv.URL}
		s, err := Load(context.Background(), LoadOptions{API: c, PingTimeout: time.Second})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, wantPerDisk := "Online", 0
		if !bulk {
			want, wantPerDisk = "Degraded - excessive failovers", len(doc.Disks)
		}
		if perDisk != wantPerDisk {
			t.Errorf("bulk=%v: %d per-disk requests, want %d", bulk, perDisk, wantPerDisk)
		}
		for id := range doc.Disks {
			if s.DiskStatus[id] != want {
				t.Errorf("bulk=%v: %s is %q, want %q", bulk, id, s.DiskStatus[id], want)
			}
		}
	}
}
