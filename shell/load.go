package shell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// LoadOptions say where a snapshot comes from.
type LoadOptions struct {
	API *Client
	// Conn reads the cluster facts; nil leaves them empty (the tree still renders, with
	// every disk NOT FOUND).
	Conn *rados.Conn
	// ClusterName, Conf and ClientName are shown by /cluster's info.
	ClusterName, Conf, ClientName string
	// LocalName is this host's gateway name: sessions are read only for targets it is a
	// portal of, as upstream reads them from the local LIO.
	LocalName string
	// Requests bounds the API requests in flight (disk states, sessions); 0 means 16.
	Requests int
	// Images bounds the RBD image reads in flight per pool; 0 means 16.
	Images int
	// PingTimeout bounds each gateway's _ping; 0 means 5 s.
	PingTimeout time.Duration
	Log         *slog.Logger
}

// Load gathers a snapshot: GET /api/config from the local API (an error here is fatal to
// the command), then at once: every gateway's _ping, every disk's state, and for the
// targets this host is a portal of the local session count and, if there are sessions, the
// local session of every client (bounded by Requests), the cluster status, OSD map, df and
// version (one mon command each), and every image's size, features and snapshots (bounded
// by Images). Only the config is required: a gateway that does not answer is UNKNOWN, a
// failed cluster query leaves its facts empty.
func Load(ctx context.Context, o LoadOptions) (*Snapshot, error) {
	if o.Requests <= 0 {
		o.Requests = 16
	}
	if o.Images <= 0 {
		o.Images = 16
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 5 * time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Snapshot{
		Pools: map[string]PoolFacts{}, Images: map[string]ImageFacts{}, Gateways: map[string]GatewayState{},
		DiskStatus: map[string]string{}, LoggedIn: map[string]bool{},
	}
	s.Cluster = ClusterFacts{Name: o.ClusterName, Conf: o.Conf, Client: o.ClientName}
	if err := o.API.Do(ctx, http.MethodGet, o.API.URL("localhost", "config"), nil, &s.Raw); err != nil {
		return nil, fmt.Errorf("GET /api/config: %w", err)
	}
	doc, err := config.Parse(s.Raw)
	if err != nil {
		return nil, fmt.Errorf("GET /api/config: %w", err)
	}
	s.Config = doc

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		reqs = make(chan struct{}, o.Requests)
	)
	// bounded runs fn in a goroutine holding one of the request slots.
	bounded := func(sem chan struct{}, fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			fn()
		}()
	}

	for _, gw := range gatewayNames(doc) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := ping(ctx, o.API, gw, o.PingTimeout)
			mu.Lock()
			s.Gateways[gw] = st
			mu.Unlock()
		}()
	}
	bulk := bulkDiskStatus(ctx, o.API, len(doc.Disks))
	for id, d := range doc.Disks {
		if st, ok := bulk[id]; ok {
			s.DiskStatus[id] = st
			continue
		}
		pool, image := splitDisk(id, d)
		bounded(reqs, func() {
			var ans struct {
				Status struct {
					State string `json:"state"`
				} `json:"status"`
			}
			if err := o.API.Do(ctx, http.MethodGet, o.API.URL("localhost", "disk", pool, image), nil, &ans); err != nil {
				log.Debug("disk state", "disk", id, "err", err)
				return
			}
			mu.Lock()
			s.DiskStatus[id] = ans.Status.State
			mu.Unlock()
		})
	}
	clientInfo := func(tiqn, ciqn string) {
		var ans struct {
			State string `json:"state"`
		}
		if err := o.API.Do(ctx, http.MethodGet, o.API.URL("localhost", "_clientinfo", tiqn, ciqn), nil, &ans); err != nil {
			log.Debug("client session", "target", tiqn, "client", ciqn, "err", err)
			return
		}
		if ans.State != "" {
			mu.Lock()
			s.LoggedIn[tiqn+"/"+ciqn] = true
			mu.Unlock()
		}
	}
	for tiqn, t := range doc.Targets {
		if _, local := t.Portals[o.LocalName]; !local || len(t.Clients) == 0 {
			continue
		}
		// The local session count first: with none, no client is logged in here and its
		// clients need no request each.
		bounded(reqs, func() {
			var ans struct {
				Sessions *int `json:"num_sessions"`
			}
			err := o.API.Do(ctx, http.MethodGet, o.API.URL("localhost", "_targetinfo", tiqn), nil, &ans)
			if err == nil && ans.Sessions != nil && *ans.Sessions == 0 {
				return
			}
			for ciqn := range t.Clients {
				bounded(reqs, func() { clientInfo(tiqn, ciqn) })
			}
		})
	}
	if o.Conn != nil {
		loadCluster(o, doc, s, &wg, &mu, log)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// bulkDiskStatus asks for every disk's state in one request (our API's status=yes on
// GET /api/disks). An upstream API ignores the field and answers without statuses; the
// disks missing from the answer are then asked for one by one, as upstream's gwcli does.
func bulkDiskStatus(ctx context.Context, api *Client, disks int) map[string]string {
	if disks == 0 {
		return nil
	}
	var ans struct {
		Disks map[string]struct {
			Status *struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"disks"`
	}
	form := url.Values{"config": {"yes"}, "status": {"yes"}}
	if err := api.Do(ctx, http.MethodGet, api.URL("localhost", "disks")+"?"+form.Encode(), nil, &ans); err != nil {
		return nil
	}
	out := make(map[string]string, len(ans.Disks))
	for id, d := range ans.Disks {
		if d.Status != nil {
			out[id] = d.Status.State
		}
	}
	return out
}

func loadCluster(o LoadOptions, doc *config.Doc, s *Snapshot, wg *sync.WaitGroup, mu *sync.Mutex, log *slog.Logger) {
	conn := o.Conn
	run := func(what string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				log.Warn("cluster facts", "query", what, "err", err)
			}
		}()
	}
	var (
		pools []rados.PoolInfo
		df    map[string]rados.PoolUsage
		pwg   sync.WaitGroup
	)
	pwg.Add(2)
	run("status", func() error {
		st, err := conn.Status()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		c := &s.Cluster
		c.Health, c.Checks, c.OSDs, c.OSDsUp, c.OSDsIn = st.Health, st.Checks, st.OSDs, st.OSDsUp, st.OSDsIn
		c.MONs, c.Quorum, c.RawSize, c.RawUsed = st.MONs, st.Quorum, st.RawSize, st.RawUsed
		return nil
	})
	run("version", func() error {
		v, err := conn.Version()
		if err != nil {
			return err
		}
		mu.Lock()
		s.Cluster.Version = v
		mu.Unlock()
		return nil
	})
	run("osd dump", func() error {
		defer pwg.Done()
		var err error
		pools, err = conn.Pools()
		return err
	})
	run("df", func() error {
		defer pwg.Done()
		var err error
		df, err = conn.DF()
		return err
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		pwg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pools {
			u := df[p.Name]
			s.Pools[p.Name] = PoolFacts{Name: p.Name, Replicated: p.Replicated, Size: p.Size, K: p.K, M: p.M,
				MaxAvail: u.MaxAvail, Used: u.BytesUsed, MaxBytes: p.MaxBytes}
		}
	}()
	byPool := map[string][]string{}
	for id, d := range doc.Disks {
		pool, image := splitDisk(id, d)
		byPool[pool] = append(byPool[pool], image)
	}
	for pool, images := range byPool {
		run("rbd images of "+pool, func() error {
			facts, errs, err := rbd.BulkFacts(conn.Raw(), pool, images, o.Images)
			if err != nil {
				if errors.Is(err, rbd.ErrPoolNotFound) {
					return nil
				}
				return err
			}
			for img, err := range errs {
				log.Warn("image facts", "disk", pool+"/"+img, "err", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for img, f := range facts {
				fi := ImageFacts{Size: uint64(f.Size), Features: f.FeatureNames}
				for _, sn := range f.Snapshots {
					fi.Snapshots = append(fi.Snapshots, sn.Name)
					fi.SnapSizes = append(fi.SnapSizes, uint64(sn.Size))
				}
				s.Images[pool+"/"+img] = fi
			}
			return nil
		})
	}
}

// gatewayNames lists every gateway the tree shows: the config's gateways and every
// target's portals.
func gatewayNames(doc *config.Doc) []string {
	seen := map[string]bool{}
	var out []string
	for name := range doc.Gateways {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, t := range doc.Targets {
		for name := range t.Portals {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// ping is upstream's Gateway._get_state: the status code of GET /api/_ping on the gateway.
func ping(ctx context.Context, c *Client, gw string, timeout time.Duration) GatewayState {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := c.Do(ctx, http.MethodGet, c.URL(gw, "_ping"), nil, nil)
	if err == nil {
		return GatewayUp
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return GatewayUnknown
	}
	switch ae.Status {
	case http.StatusServiceUnavailable:
		return GatewayPartial
	case http.StatusUnauthorized:
		return GatewayUnauthorized
	case http.StatusForbidden:
		return GatewayForbidden
	}
	if ae.Status == http.StatusOK {
		return GatewayUp
	}
	return GatewayUnknown
}
