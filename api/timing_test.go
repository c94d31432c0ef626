package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// serverTimingStages parses a Server-Timing value into its names, checking
// that every entry is "name;dur=<non-negative milliseconds>".
func serverTimingStages(t *testing.T, h string) []string {
	t.Helper()
	if h == "" {
		t.Fatal("no Server-Timing header")
	}
	var names []string
	for _, e := range strings.Split(h, ", ") {
		name, dur, ok := strings.Cut(e, ";dur=")
		if !ok || name == "" {
			t.Fatalf("Server-Timing entry %q in %q: want name;dur=ms", e, h)
		}
		if ms, err := strconv.ParseFloat(dur, 64); err != nil || ms < 0 {
			t.Fatalf("Server-Timing entry %q: duration %q", e, dur)
		}
		names = append(names, name)
	}
	return names
}

// TestServerTimingNamesStages: a coordinated change answers where its time
// went, stage by stage, in a Server-Timing header: the commit's steps on
// the real config object, the local apply, and the total; GET /api/config
// names its version check, and its encode only for a version it has not
// encoded before. A refusal still carries the header.
func TestServerTimingNamesStages(t *testing.T) {
	store := openClusterStore(t, seedDoc(gw1))
	env := newEnv(t, store, gw1, nil)

	rec := env.do(t, http.MethodPut, "/api/client/"+tIQN+"/"+cIQN, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("PUT client: %d %s", rec.Code, rec.Body)
	}
	t.Logf("PUT client: Server-Timing: %s", rec.Header().Get("Server-Timing"))
	got := serverTimingStages(t, rec.Header().Get("Server-Timing"))
	for _, want := range []string{"version", "read", "change", "lio-check", "encode", "write", "local-apply", "total"} {
		if !slices.Contains(got, want) {
			t.Errorf("PUT client: Server-Timing stages %q lack %q", got, want)
		}
	}
	// the store's own commit (the seed) left the object: its write asserts
	// that version and needs no lock (rados' commitUnlocked)
	if slices.Contains(got, "lock") {
		t.Errorf("PUT client after this gateway's own commit: stages %q take the lock", got)
	}
	if got[len(got)-1] != "total" {
		t.Errorf("PUT client: stages %q do not end with total", got)
	}
	// no peers: no peer stages
	for _, s := range got {
		if strings.HasPrefix(s, "peers-") {
			t.Errorf("PUT client on a single gateway: stage %q", s)
		}
	}

	first := serverTimingStages(t, env.do(t, http.MethodGet, "/api/config", nil).Header().Get("Server-Timing"))
	if !slices.Equal(first, []string{"version", "encode", "total"}) {
		t.Errorf("first GET /api/config of a version: stages %q", first)
	}
	again := serverTimingStages(t, env.do(t, http.MethodGet, "/api/config", nil).Header().Get("Server-Timing"))
	if !slices.Equal(again, []string{"version", "total"}) {
		t.Errorf("GET /api/config of an encoded version: stages %q", again)
	}

	// the same client again: refused before any commit step
	rec = env.do(t, http.MethodPut, "/api/client/"+tIQN+"/"+cIQN, nil)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("PUT client again: %d %s", rec.Code, rec.Body)
	}
	refused := serverTimingStages(t, rec.Header().Get("Server-Timing"))
	if slices.Contains(refused, "write") || refused[len(refused)-1] != "total" {
		t.Errorf("refused PUT client: stages %q", refused)
	}
}
