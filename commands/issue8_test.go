package commands

import (
	"context"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ceph-iscsi/api"
	"ceph-iscsi/config"
	"ceph-iscsi/lio"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"

	gorados "github.com/ceph/go-ceph/rados"
)

// TestIssue8Item8RestoreLocalAddr: with two gateways on one host, restore
// takes the api's --local-addr, so it builds the portal of its own gateway
// only. Without it, this host's interface addresses (127.0.0.1 is on lo)
// would make the other gateway's portal local too.
func TestIssue8Item8RestoreLocalAddr(t *testing.T) {
	fx := newFixture(t)
	const gw2 = "gw2.test"
	fx.commit(func(doc *config.Doc) error {
		tg := doc.MutTarget(testIQN)
		tg.IPList = []string{"127.0.0.1", "127.0.0.2"}
		doc.MutPortal(testIQN, testGateway).GatewayIPList = tg.IPList
		tg.Portals[gw2] = &config.Portal{PortalIPAddresses: []string{"127.0.0.2"}, GatewayIPList: tg.IPList, InactivePortalIPs: []string{}, TPGs: 2}
		doc.PutGateway(gw2, &config.Gateway{Created: doc.Created, Updated: doc.Updated})
		return nil
	})
	tpg := func(n string) string { return "target/iscsi/" + testIQN + "/tpgt_" + n }

	// Without the flag the interface addresses decide: gw2 would take
	// gw1's portal (127.0.0.1), which is what the issue saw.
	rep := decodeReport(t, fx.runWith(fx.settings, "--gateway-name", gw2, "--dry-run", "--json"))
	if !hasOp(rep.Plan, lio.OpEnable, tpg("1")) {
		t.Fatalf("without --local-addr the plan does not show the issue's behaviour:\n%s", rep.Plan)
	}

	r := fx.runWith(fx.settings, "--gateway-name", gw2, "--local-addr", "127.0.0.2", "--json")
	expectCode(t, r, 0)
	rep = decodeReport(t, r)
	if hasOp(rep.Plan, lio.OpEnable, tpg("1")) {
		t.Errorf("restore with --local-addr plans gw1's portal:\n%s", rep.Plan)
	}
	if !hasOp(rep.Plan, lio.OpEnable, tpg("2")) || !hasOp(rep.Plan, lio.OpMkdir, tpg("2")+"/np/127.0.0.2:3260") {
		t.Errorf("restore with --local-addr does not plan its own portal:\n%s", rep.Plan)
	}
	st := fx.observe()
	if len(st.Targets) != 1 || len(st.Targets[0].TPGs) != 2 {
		t.Fatalf("targets after restore: %+v", st.Targets)
	}
	for _, g := range st.Targets[0].TPGs {
		if want := g.Tag == 2; g.Enabled != want {
			t.Errorf("tpgt_%d enabled=%v, want %v", g.Tag, g.Enabled, want)
		}
	}

	r = fx.runWith(fx.settings, "--gateway-name", gw2, "--local-addr", "not-an-ip")
	expectCode(t, r, exitUsage)
	mustContain(t, "stderr", r.stderr, `restore: --local-addr "not-an-ip": not an IP address`)
}

func hasOp(p lio.Plan, kind lio.OpKind, path string) bool {
	for _, o := range p.Ops {
		if o.Kind == kind && o.Path == path {
			return true
		}
	}
	return false
}

type gatewayInfo struct {
	NumSessions int                 `json:"num_sessions"`
	Reconcile   api.ReconcileStatus `json:"reconcile"`
}

// reconcileStatus waits until d reports a reconcile of epoch or later and
// returns it.
func (cl *cluster) reconcileStatus(d *apiDaemon, epoch int64, want func(api.ReconcileStatus) bool) api.ReconcileStatus {
	cl.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		var gi gatewayInfo
		cl.fetch(d, "/api/gatewayinfo", &gi)
		if gi.Reconcile.Epoch >= epoch && want(gi.Reconcile) {
			return gi.Reconcile
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("%s: reconcile status %+v", d.name, gi.Reconcile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setupTarget creates, through the API of gws[0], a target with every gws
// as a portal, a 64 MiB disk exported by it, and a client mapped to the
// disk; it returns the disk id.
func (cl *cluster) setupTarget(gws []*apiDaemon, tgt, client string) string {
	cl.t.Helper()
	gw := gws[0]
	img := fmt.Sprintf("issue8-%08x", mrand.Uint32())
	cl.t.Cleanup(func() { _ = rbd.Remove(context.Background(), cl.conn.Raw(), "rbd", img, rbd.RemoveOptions{}) })
	cl.mustCall(gw, http.MethodPut, "/api/target/"+tgt, nil)
	for _, g := range gws {
		cl.mustCall(gw, http.MethodPut, "/api/gateway/"+tgt+"/"+g.name, url.Values{"ip_address": {g.ip}, "skipchecks": {"true"}})
	}
	cl.mustCall(gw, http.MethodPut, "/api/disk/rbd/"+img,
		url.Values{"mode": {"create"}, "size": {"64M"}, "pool": {"rbd"}, "count": {"1"}, "backstore": {"user:rbd"}})
	cl.mustCall(gw, http.MethodPut, "/api/targetlun/"+tgt, url.Values{"disk": {"rbd/" + img}})
	cl.mustCall(gw, http.MethodPut, "/api/client/"+tgt+"/"+client, nil)
	cl.mustCall(gw, http.MethodPut, "/api/clientlun/"+tgt+"/"+client, url.Values{"disk": {"rbd/" + img}})
	return "rbd/" + img
}

// TestIssue8Item3OneBadObject: objects the gateway cannot build (a client
// IQN of 300 characters, a target IQN with a NUL and a portal here) are
// committed behind the API's back. The gateway reports them, keeps serving
// and applying every other change, restarts without exiting or tearing
// down, refuses to commit a new such object, and converges once they are
// deleted through the API.
func TestIssue8Item3OneBadObject(t *testing.T) {
	cl := newCluster(t, "")
	gw1, gw2 := cl.daemon(1), cl.daemon(2)
	cl.start(gw1)
	cl.start(gw2)
	tgt := "iqn.2003-01.com.example.issue8:t3"
	good := "iqn.1994-05.com.example:issue8-good"
	disk := cl.setupTarget([]*apiDaemon{gw1, gw2}, tgt, good)
	cl.converge("setup", gw1.name, gw2.name)

	longClient := "iqn.1994-05.com.example:" + strings.Repeat("x", 300-len("iqn.1994-05.com.example:"))
	nulTarget := "iqn.2003-01.com.example.issue8:nul\x00t"
	if err := handEdit(t, cl.conn, cl.store, "rbd", cl.object, func(d *config.Doc) error {
		now := time.Now()
		c, err := d.AddClient(tgt, longClient, now)
		if err != nil {
			return err
		}
		c.Luns[disk] = config.LunRef{LunID: 1}
		bad, err := d.AddTarget(nulTarget, now)
		if err != nil {
			return err
		}
		bad.IPList = []string{gw1.ip}
		bad.Portals[gw1.name] = &config.Portal{PortalIPAddresses: []string{gw1.ip}, GatewayIPList: []string{gw1.ip}, InactivePortalIPs: []string{}, TPGs: 1}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	strip := func(d *config.Doc) {
		delete(d.Targets, nulTarget)
		if tg := d.Targets[tgt]; tg != nil {
			delete(tg.Clients, longClient)
		}
	}
	doc := cl.convergeValid("bad objects committed", strip, gw1.name, gw2.name)
	st := cl.reconcileStatus(gw1, doc.Epoch, func(s api.ReconcileStatus) bool { return len(s.Errors) == 2 })
	if st.Converged {
		t.Errorf("status says converged with held objects: %+v", st)
	}
	objects := []string{st.Errors[0].Object, st.Errors[1].Object}
	slices.Sort(objects)
	if want := []string{"client " + longClient + " of target " + tgt, "target " + nulTarget}; !slices.Equal(objects, want) {
		t.Errorf("reported objects %q, want %q", objects, want)
	}

	// Other changes are committed and applied.
	other := "iqn.1994-05.com.example:issue8-other"
	if status, msg := cl.call(gw1, http.MethodPut, "/api/client/"+tgt+"/"+other, nil); status != http.StatusOK || msg != "client create/update successful" {
		t.Fatalf("a valid change with bad objects in the config: %d %q", status, msg)
	}
	cl.convergeValid("valid change", strip, gw1.name, gw2.name)

	// A new object LIO cannot take is refused, and nothing is committed.
	before, err := cl.store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	worse := "iqn.1994-05.com.example:" + strings.Repeat("y", 300-len("iqn.1994-05.com.example:"))
	if status, msg := cl.call(gw1, http.MethodPut, "/api/client/"+tgt+"/"+worse, nil); status != http.StatusBadRequest {
		t.Errorf("new client that LIO cannot take: %d %q, want 400", status, msg)
	}
	if after, err := cl.store.Load(t.Context()); err != nil || after.Epoch != before.Epoch {
		t.Errorf("a refused change was committed: epoch %d -> %d (%v)", before.Epoch, after.Epoch, err)
	}

	// A restart neither exits nor tears down.
	gw1.signal(t, syscall.SIGTERM)
	if code := gw1.wait(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	cl.start(gw1)
	cl.convergeValid("restart", strip, gw1.name)
	if !strings.Contains(gw1.out.String(), "cannot reconcile an object of the configuration") {
		t.Errorf("the held objects are not logged:\n%s", gw1.out)
	}

	// Both are deletable through the API, and the gateway converges.
	cl.mustCall(gw1, http.MethodDelete, "/api/client/"+tgt+"/"+longClient, nil)
	cl.mustCall(gw1, http.MethodDelete, "/api/target/"+url.PathEscape(nulTarget), nil)
	doc = cl.converge("bad objects deleted", gw1.name, gw2.name)
	st = cl.reconcileStatus(gw1, doc.Epoch, func(s api.ReconcileStatus) bool { return s.Converged })
	if len(st.Errors) != 0 {
		t.Errorf("errors after the bad objects are gone: %+v", st)
	}
}

// dyingPeer stands between a coordinator and a peer gateway: it forwards
// every request, except that once armed, the first internal call it sees
// (a path under /api/_) kills the peer with SIGKILL and drops the
// connection, as a peer dying between the coordinator's pre-flight ping and
// its internal call does.
type dyingPeer struct {
	t     *testing.T
	peer  *apiDaemon
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	armed bool
	hits  int
	// coordinator, when set, is killed instead, once the peer has
	// answered the internal call and before the coordinator reads it.
	coordinator *apiDaemon
}

func (p *dyingPeer) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

func (p *dyingPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	kill := p.armed && strings.HasPrefix(r.URL.Path, "/api/_") && r.URL.Path != "/api/_ping"
	if kill {
		p.armed = false
		p.hits++
	}
	p.mu.Unlock()
	if !kill {
		p.proxy.ServeHTTP(w, r)
		return
	}
	if c := p.coordinator; c != nil {
		p.proxy.ServeHTTP(httptest.NewRecorder(), r)
		_ = c.cmd.Process.Kill()
		<-c.done
	} else {
		_ = p.peer.cmd.Process.Kill()
		<-p.peer.done
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func newDyingPeer(t *testing.T, cl *cluster, peer *apiDaemon) (*dyingPeer, string) {
	target, err := url.Parse(cl.url(peer, ""))
	if err != nil {
		t.Fatal(err)
	}
	p := &dyingPeer{t: t, peer: peer, proxy: httputil.NewSingleHostReverseProxy(target)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p, "http://" + ln.Addr().String()
}

// TestIssue8Item4PeerDiesAfterPreflight: a peer that dies between the
// pre-flight ping and its internal call. After the commit, the answer is a
// 200 that says the change is committed and where it is not applied yet;
// the peer converges when it is back. Before the commit (a delete calls the
// peers first), nothing is committed and the answer is upstream's failure.
func TestIssue8Item4PeerDiesAfterPreflight(t *testing.T) {
	cl := newCluster(t, "")
	gw2 := cl.daemon(2)
	dying, proxyURL := newDyingPeer(t, cl, gw2)
	gw1 := cl.daemon(1, "--peer", "gw2="+proxyURL)
	cl.start(gw1)
	cl.start(gw2)
	tgt := "iqn.2003-01.com.example.issue8:t4"
	cl.setupTarget([]*apiDaemon{gw1, gw2}, tgt, "iqn.1994-05.com.example:issue8-c0")
	cl.converge("setup", gw1.name, gw2.name)

	// Create: local first, then gw2, which dies.
	newClient := "iqn.1994-05.com.example:issue8-c1"
	dying.arm()
	status, msg := cl.call(gw1, http.MethodPut, "/api/client/"+tgt+"/"+newClient, nil)
	if dying.hits != 1 {
		t.Fatalf("the peer was not killed at its internal call (%d)", dying.hits)
	}
	if status != http.StatusOK || !strings.HasPrefix(msg, "client create/update committed (config epoch ") ||
		!strings.Contains(msg, "applied to localhost; not applied yet on gw2 (") ||
		!strings.Contains(msg, "do not repeat the request") {
		t.Fatalf("create with the peer dying after the pre-flight: %d %q", status, msg)
	}
	doc, err := cl.store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if doc.Targets[tgt].Clients[newClient] == nil {
		t.Fatal("the answer says committed, the config does not have the client")
	}
	cl.converge("create, gw2 down", gw1.name)
	cl.start(gw2)
	cl.converge("create, gw2 back", gw1.name, gw2.name)

	// Delete: gw2 first, which dies before anything is committed.
	dying.arm()
	status, msg = cl.call(gw1, http.MethodDelete, "/api/client/"+tgt+"/"+newClient, nil)
	if dying.hits != 2 {
		t.Fatalf("the peer was not killed at its internal call (%d)", dying.hits)
	}
	if status == http.StatusOK || !strings.HasPrefix(msg, "client delete failed on gw2. ") {
		t.Fatalf("delete with the peer dying before the commit: %d %q", status, msg)
	}
	if after, err := cl.store.Load(t.Context()); err != nil || after.Epoch != doc.Epoch || after.Targets[tgt].Clients[newClient] == nil {
		t.Fatalf("a delete that failed before the commit changed the config (%v)", err)
	}
	cl.start(gw2)
	cl.converge("delete refused, gw2 back", gw1.name, gw2.name)
	cl.mustCall(gw1, http.MethodDelete, "/api/client/"+tgt+"/"+newClient, nil)
	cl.converge("delete", gw1.name, gw2.name)
}

// dirEvents reports every entry created in, removed from or moved into or
// out of dir (inotify), until stop is called.
func dirEvents(t *testing.T, dir string) (events <-chan string, stop func()) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_DELETE|syscall.IN_MOVED_FROM|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	// non-blocking, so Close ends a pending Read
	f := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan string, 4096)
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			// struct inotify_event: wd, mask, cookie, len (4 bytes each), name
			for off := 0; off+16 <= n; {
				l := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := strings.TrimRight(string(buf[off+16:off+16+l]), "\x00")
				off += 16 + l
				ch <- name
			}
		}
	}()
	return ch, func() { f.Close() }
}

// TestIssue8Item5KillLoop kills the api daemon with SIGKILL while its
// start-up reconcile applies a plan, at a random point of the apply chosen
// by watching it progress (inotify on the ACL directory), at least 50 times
// over two gateways; every start in between must go on serving rather than
// exit or tear down, and at the end both gateways start and converge.
func TestIssue8Item5KillLoop(t *testing.T) {
	const (
		clients  = 24  // ACLs replaced by each new configuration
		minKills = 50  // kills during an apply
		maxIter  = 150 // bounds the loop if applies keep finishing first
	)
	cl := newCluster(t, "")
	gws := []*apiDaemon{cl.daemon(1), cl.daemon(2)}
	for _, d := range gws {
		cl.start(d)
	}
	tgt := "iqn.2003-01.com.example.issue8:t5"
	disk := cl.setupTarget(gws, tgt, "iqn.1994-05.com.example:issue8-k0")
	cl.converge("setup", gws[0].name, gws[1].name)
	for _, d := range gws {
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	aclDir := func(i int) string {
		return filepath.Join(gws[i].root, "target", "iscsi", tgt, fmt.Sprintf("tpgt_%d", i+1), "acls")
	}

	mid, late := 0, 0
	for iter := 0; mid < minKills; iter++ {
		if iter == maxIter {
			t.Fatalf("only %d of %d kills landed during an apply (%d after it)", mid, iter, late)
		}
		// A new set of clients: the victim must create every one and
		// remove every ACL it has.
		if _, err := cl.store.Commit(t.Context(), func(d *config.Doc) error {
			now := time.Now()
			for name := range d.Targets[tgt].Clients {
				if err := d.RemoveClient(tgt, name, now); err != nil {
					return err
				}
			}
			for j := range clients {
				c, err := d.AddClient(tgt, fmt.Sprintf("iqn.1994-05.com.example:issue8-k%d-%d", iter+1, j), now)
				if err != nil {
					return err
				}
				c.Luns[disk] = config.LunRef{LunID: 0}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		i := iter % 2
		victim := gws[i]
		old, err := os.ReadDir(aclDir(i))
		if err != nil {
			t.Fatal(err)
		}
		total := clients + len(old) // one event per ACL created or removed
		killAt := 1 + mrand.IntN(total-1)
		events, stop := dirEvents(t, aclDir(i))
		cl.launch(victim)
		for seen := 0; seen < killAt; {
			select {
			case <-events:
				seen++
			case <-victim.done:
				t.Fatalf("iteration %d: %s exited with %d during its start-up apply:\n%s", iter, victim.name, victim.code, victim.out)
			case <-time.After(2 * convergeTimeout):
				t.Fatalf("iteration %d: %s made no progress:\n%s", iter, victim.name, victim.out)
			}
		}
		_ = victim.cmd.Process.Kill()
		<-victim.done
		stop()
		out := victim.out.String()
		switch {
		case strings.Contains(out, "applied LIO plan"):
			late++
		case strings.Contains(out, "applying LIO plan"):
			mid++
		default:
			t.Fatalf("iteration %d: ACLs changed, but no apply was logged:\n%s", iter, out)
		}
	}
	t.Logf("%d kills during an apply, %d just after it", mid, late)

	for _, d := range gws {
		cl.start(d)
	}
	doc := cl.converge("after the kill loop", gws[0].name, gws[1].name)
	for _, d := range gws {
		st := cl.reconcileStatus(d, doc.Epoch, func(s api.ReconcileStatus) bool { return s.Converged })
		if len(st.Errors) != 0 {
			t.Errorf("%s: %+v", d.name, st)
		}
		if strings.Contains(d.out.String(), "level=ERROR") {
			t.Errorf("%s logged errors at the start after the kills:\n%s", d.name, d.out)
		}
	}
}

// TestIssue8Item3RestoreReportsObjects: restore applies everything but an
// object it cannot build, and --json names that object under object_errors.
func TestIssue8Item3RestoreReportsObjects(t *testing.T) {
	fx := newFixture(t)
	long := "iqn.1994-05.com.example:" + strings.Repeat("z", 300-len("iqn.1994-05.com.example:"))
	if err := handEdit(t, fx.conn, fx.store, "rbd", fx.object, func(doc *config.Doc) error {
		c, err := doc.AddClient(testIQN, long, time.Now())
		if err != nil {
			return err
		}
		c.Luns[fx.diskID] = config.LunRef{LunID: 0}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := fx.run("--json")
	expectCode(t, r, exitFailure)
	mustContain(t, "stderr", r.stderr, "1 object(s) of the configuration cannot be reconciled on gateway "+testGateway, "LIO keeps them as they are and the rest converged")
	rep := decodeReport(t, r)
	if len(rep.ObjectErrors) != 1 || rep.ObjectErrors[0].Object != "client "+long+" of target "+testIQN ||
		!strings.Contains(rep.ObjectErrors[0].Error, "is 300 bytes long; an iSCSI name is at most 223 bytes") {
		t.Fatalf("object_errors: %+v", rep.ObjectErrors)
	}
	if rep.Applied == nil || rep.Applied.Failed != 0 {
		t.Fatalf("applied: %+v", rep.Applied)
	}
	st := fx.observe()
	if len(st.Targets) != 1 || len(st.Targets[0].TPGs[0].ACLs) != 1 || st.Targets[0].TPGs[0].ACLs[0].Initiator != testClient {
		t.Fatalf("LIO without the held client: %+v", st.Targets)
	}
}

// TestIssue8Item4CoordinatorDiesBeforeCommit: a delete asks the peer first;
// the coordinator dies once the peer has applied it, before committing.
// The peer's LIO is then ahead of the configuration with no new epoch to
// say so: its drift check converges it back.
func TestIssue8Item4CoordinatorDiesBeforeCommit(t *testing.T) {
	cl := newCluster(t, "")
	gw2 := cl.daemon(2)
	dying, proxyURL := newDyingPeer(t, cl, gw2)
	gw1 := cl.daemon(1, "--peer", "gw2="+proxyURL)
	cl.start(gw1)
	cl.start(gw2)
	tgt := "iqn.2003-01.com.example.issue8:t4d"
	client := "iqn.1994-05.com.example:issue8-d0"
	cl.setupTarget([]*apiDaemon{gw1, gw2}, tgt, client)
	doc := cl.converge("setup", gw1.name, gw2.name)

	dying.coordinator = gw1
	dying.arm()
	req, err := http.NewRequest(http.MethodDelete, cl.url(gw1, "/api/client/"+tgt+"/"+client), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(apiUser, apiPassword)
	if resp, err := cl.client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the coordinator answered %d although it was killed", resp.StatusCode)
	}
	if after, err := cl.store.Load(t.Context()); err != nil || after.Epoch != doc.Epoch {
		t.Fatalf("committed although the coordinator died first (%v)", err)
	}
	if acls := aclOf(observe(t, gw2.root), tgt, client); len(acls) != 0 {
		t.Fatalf("the peer did not apply the delete it was asked for: %+v", acls)
	}
	deadline := time.Now().Add(2 * testDriftCheck)
	for len(aclOf(observe(t, gw2.root), tgt, client)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("gw2 did not converge back to the configuration:\n%s", gw2.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cl.start(gw1)
	cl.converge("both back", gw1.name, gw2.name)
}

// handEdit changes the config object as an older gateway or a hand edit
// would: no lock and none of this version's validation, only the epoch
// bumped (object and xattr) so that the daemons notice.
func handEdit(t *testing.T, conn *rados.Conn, store *rados.Store, pool, object string, m rados.Mutation) error {
	t.Helper()
	doc, err := store.Load(t.Context())
	if err != nil {
		return err
	}
	doc = doc.Clone()
	if err := m(doc); err != nil {
		return err
	}
	doc.Epoch++
	io, err := conn.Raw().OpenIOContext(pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	op := gorados.CreateWriteOp()
	defer op.Release()
	op.WriteFull(doc.Marshal())
	op.SetXattr(rados.EpochXattr, []byte(strconv.FormatInt(doc.Epoch, 10)))
	if err := op.Operate(io, object, gorados.OperationNoFlag); err != nil {
		return fmt.Errorf("hand edit of %s: %w", object, err)
	}
	return nil
}
