package api

import (
	"fmt"
	"net/http"
	"testing"

	"ceph-iscsi/config"
)

// BenchmarkGetConfig is GET /api/config in process on a real RADOS object
// holding 64 disks and 64 clients: auth, the object read, the encoding.
// Run: go test -tags pacific -run '^$' -bench GetConfig ./api/
func BenchmarkGetConfig(b *testing.B) {
	store := openClusterStore(b, benchDoc())
	env := newEnv(b, store, gw1, nil)
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := store.Load(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("request", func(b *testing.B) {
		for b.Loop() {
			if rec := env.do(b, http.MethodGet, "/api/config", nil); rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
	})
}

func benchDoc() *config.Doc {
	d := seedDoc(gw1)
	t := d.Targets[tIQN]
	for i := range 64 {
		id := fmt.Sprintf("rbd/img%03d", i)
		owner := gw1
		d.Disks[id] = &config.Disk{Pool: "rbd", Image: fmt.Sprintf("img%03d", i), WWN: fmt.Sprintf("wwn-%d", i),
			Backstore: "user:rbd", BackstoreObjectName: fmt.Sprintf("rbd.img%03d", i), Owner: &owner, AllocatingHost: &owner, Controls: map[string]any{}}
		t.Disks[id] = config.LunRef{LunID: i + 1}
		c := config.NewClient()
		c.Luns[id] = config.LunRef{LunID: 0}
		t.Clients[fmt.Sprintf("iqn.1994-05.com.example:c%03d", i)] = c
	}
	return d
}
