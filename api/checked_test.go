package api

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"ceph-iscsi/gateway"
	"ceph-iscsi/host"
	"ceph-iscsi/lio"
)

// TestClusterCheckedCommit runs changes through the daemon's Reconciler:
// a problem an object of the document already has blocks no other change,
// a change that adds one is refused with a 400 naming it and not
// committed, and the reconcile after a commit, which reuses the commit's
// check (VerifyReuse refuses a document changed since), converges LIO.
func TestClusterCheckedCommit(t *testing.T) {
	doc := scaleDoc(16, 4)
	store := openClusterStore(t, doc)
	fs, err := lio.NewEmulatedFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	broken := map[string]bool{"img0003": true}
	rec := gateway.New(gateway.Options{FS: fs, Settings: testSettings(), VerifyReuse: true,
		Identity: host.Identity{Name: gw1, Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}},
		Size: func(_, image string) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			if broken[image] {
				return 0, errors.New("reading the size failed")
			}
			return 1 << 30, nil
		}})
	cur, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Reconcile(t.Context(), cur); err != nil {
		t.Fatal(err)
	}
	if st := rec.Status(); len(st.Problems) != 1 || !strings.Contains(st.Problems[0].Object, "img0003") {
		t.Fatalf("want img0003 held, got %+v", st.Problems)
	}
	imgs := newFakeImages()
	for id := range doc.Disks {
		imgs.add(id, 1<<30, 0)
	}
	env := newEnv(t, store, gw1, func(d *Deps) { d.LIO = recLIO{rec}; d.Images = imgs })

	const client = "iqn.1994-05.com.example:c0001"
	if r := env.do(t, http.MethodPut, "/api/clientlun/"+tIQN+"/"+client, v("disk", "rbd/img0000")); r.Code != http.StatusOK || strings.Contains(r.Body.String(), "fail") {
		t.Fatalf("a problem of another disk blocked the change: %d %s", r.Code, r.Body)
	}
	if n := mappedLUNs(t, fs, client); n != 5 {
		t.Fatalf("LIO maps %d LUNs to %s, want 5", n, client)
	}

	mu.Lock()
	broken["img0016"] = true
	mu.Unlock()
	r := env.do(t, http.MethodPut, "/api/targetlun/"+tIQN, v("disk", "rbd/img0016"))
	if r.Code != http.StatusBadRequest || !strings.Contains(r.Body.String(), "change refused") || !strings.Contains(r.Body.String(), "img0016") ||
		strings.Contains(r.Body.String(), "img0003") {
		t.Fatalf("want the new problem refused alone, got %d %s", r.Code, r.Body)
	}
	after, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := after.Targets[tIQN].Disks["rbd/img0016"]; ok {
		t.Fatal("the refused change was committed")
	}
}

// mappedLUNs counts the mapped LUNs of initiator's ACL on tIQN in LIO.
func mappedLUNs(t *testing.T, fs lio.FS, initiator string) int {
	t.Helper()
	st, err := lio.Observe(fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range st.Targets {
		if tg.IQN != tIQN {
			continue
		}
		for _, tpg := range tg.TPGs {
			for _, acl := range tpg.ACLs {
				if acl.Initiator == initiator {
					return len(acl.MappedLUNs)
				}
			}
		}
	}
	return -1
}
