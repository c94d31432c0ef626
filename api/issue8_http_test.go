package api

// Regression tests of issue 8's HTTP items: client mistakes in the request
// framing are 4xx, validation gaps are closed, upstream's control message,
// the failed-login back-off, and the bad-input table's per-route half.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
	"ceph-iscsi/settings"
)

const (
	msgBadEncoding  = "malformed form body: invalid URL encoding (application/x-www-form-urlencoded expected)"
	msgMultipart    = "malformed multipart form body"
	msgIncomplete   = "incomplete request body: the connection ended before Content-Length bytes (or the last chunk) arrived"
	msgAuthMismatch = "username/password mismatch with the configuration file"
)

var msgTooLarge = fmt.Sprintf("request body too large (at most %d bytes)", maxFormBytes)

// rawBody replaces a request's body and its type.
func rawBody(contentType, body string) reqOpt {
	return func(r *http.Request) {
		r.Body = io.NopCloser(strings.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", contentType)
	}
}

// examplePath fills a route rule with names richDoc defines.
func examplePath(rule string) string {
	return strings.NewReplacer(
		"<target_iqn>", tIQN, "<gateway_name>", gw1, "<pool>", "rbd", "<image>", "disk1",
		"<name>", "s1", "<client_iqn>", cIQN2, "<group_name>", "grp", "<query_type>", "ip_addresses",
	).Replace(rule)
}

// routeHostileCases sends every one of the 57 operations the same hostile
// requests: wrong or missing credentials, a stranger's address, and bodies
// that cannot be read as a form. Each must be refused before anything is
// looked up, with a message naming the rule.
func routeHostileCases() []badCase {
	const form = "application/x-www-form-urlencoded"
	const mp = "multipart/form-data; boundary=xyz"
	big := "a=" + strings.Repeat("b", maxFormBytes)
	bigPart := "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + strings.Repeat("b", maxFormBytes) + "\r\n--xyz--\r\n"
	var out []badCase
	for _, rt := range routeTable() {
		path := examplePath(rt.rule)
		for _, m := range rt.methods {
			add := func(what string, opt reqOpt, status int, msg string) {
				out = append(out, badCase{m + " " + rt.rule + " " + what, m, path, nil, []reqOpt{opt}, status, msg})
			}
			if rt.auth != authNone {
				add("no credentials", noAuth(), 401, "Missing credentials")
				add("wrong password", creds(apiUser, "wrong-password"), 401, msgAuthMismatch)
				add("wrong user", creds("nobody", apiPass), 401, msgAuthMismatch)
				add("empty credentials", creds("", ""), 401, msgAuthMismatch)
			}
			if rt.auth == authRestricted {
				add("untrusted source", from("203.0.113.9:4242"), 403, "API access not available to 203.0.113.9")
				add("untrusted v6 source", from("[2001:db8::9]:4242"), 403, "API access not available to 2001:db8::9")
			}
			add("bad percent-encoding", rawBody(form, "username=%zz"), 400, msgBadEncoding)
			add("truncated percent-encoding", rawBody(form, "a=b&c=%4"), 400, msgBadEncoding)
			add("body too large", rawBody(form, big), 413, msgTooLarge)
			add("multipart too large", rawBody(mp, bigPart), 413, msgTooLarge)
			add("multipart without boundary", rawBody("multipart/form-data", "x"), 400, msgMultipart+": no boundary in Content-Type")
			add("multipart bad content-type", rawBody("multipart/form-data; boundary", "x"), 400, "malformed Content-Type header: mime: invalid media parameter")
			add("unparsable content-type", rawBody("form, urlencoded", "username=a"), 400, "malformed Content-Type header: mime: expected slash after first token")
			add("JSON body", rawBody("application/json", `{"username": ""}`), 415, "unsupported Content-Type application/json: send the form as application/x-www-form-urlencoded or multipart/form-data")
			add("body without type", rawBody("", "username=&password="), 415, "unsupported Content-Type none: send the form as application/x-www-form-urlencoded or multipart/form-data")
			add("multipart not multipart", rawBody(mp, "username=admin&password=x"), 400, msgMultipart+": it ends before its closing boundary")
			add("multipart unterminated", rawBody(mp, "--xyz\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nadmin"), 400, msgMultipart+": it ends before its closing boundary")
			add("multipart unnamed part", rawBody(mp, "--xyz\r\nContent-Type: text/plain\r\n\r\nx\r\n--xyz--\r\n"), 400, msgMultipart+": a part has no form-data name")
			add("multipart not UTF-8", rawBody(mp, "--xyz\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n\xff\xfe\r\n--xyz--\r\n"), 400, msgMultipart+": field \"username\" is not UTF-8")
		}
	}
	return out
}

// TestBadInputTableCoversEveryRoute: the table has at least 400 requests
// and reaches every one of the 57 operations.
func TestBadInputTableCoversEveryRoute(t *testing.T) {
	all := append(badCases(), diskBadCases()...)
	if len(all) < 400 {
		t.Fatalf("%d bad requests, want at least 400", len(all))
	}
	e := echo.New()
	newServer(Deps{Settings: testSettings()}).routes(e)
	covered := map[string]bool{}
	for _, bc := range all {
		req := httptest.NewRequest(bc.method, bc.path, nil)
		c := e.NewContext(req, httptest.NewRecorder())
		e.Router().Find(bc.method, req.URL.EscapedPath(), c)
		covered[bc.method+" "+c.Path()] = true
	}
	n := 0
	for _, rt := range routeTable() {
		for _, m := range rt.methods {
			n++
			if !covered[m+" "+echoPath(rt.rule)] {
				t.Errorf("no bad request for %s %s", m, rt.rule)
			}
		}
	}
	if n != 57 {
		t.Fatalf("%d operations", n)
	}
	t.Logf("%d bad requests over %d operations", len(all), n)
}

// --- item 6: framing mistakes over a real socket ---

// listen serves env on 127.0.0.1 and returns its address.
func listen(t *testing.T, env *testEnv) string {
	t.Helper()
	srv := httptest.NewServer(env.e)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// rawExchange writes req on a new connection, half-closes it when asked,
// and reads the answer.
func rawExchange(t *testing.T, addr, req string, halfClose bool) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A safety net against a hung server, not an ordering device.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func authHeader() string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(apiUser+":"+apiPass)) + "\r\n"
}

func messageOf(t *testing.T, body string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	rec.Body.WriteString(body)
	return msgOf(t, rec)
}

func TestIssue8ShortBodyIs400(t *testing.T) {
	store := openClusterStore(t, richDoc())
	env := newEnv(t, store, gw1, nil)
	addr := listen(t, env)
	before := store.bytes()
	body := "mode=reconfigure&controls=%7B%7D"
	req := "PUT /api/target/" + tIQN + " HTTP/1.1\r\nHost: gw\r\n" + authHeader() +
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\n" + body
	status, resp := rawExchange(t, addr, req, true)
	if status != 400 || messageOf(t, resp) != msgIncomplete {
		t.Fatalf("%d %s", status, resp)
	}
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
}

func TestIssue8BadChunkLengthIs400(t *testing.T) {
	store := openClusterStore(t, richDoc())
	env := newEnv(t, store, gw1, nil)
	addr := listen(t, env)
	before := store.bytes()
	for name, chunks := range map[string]string{
		"not hex":      "zz\r\nabc\r\n0\r\n\r\n",
		"too long":     "fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"no chunk end": "3\r\nabcdef\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			req := "PUT /api/clientauth/" + tIQN + "/" + cIQN2 + " HTTP/1.1\r\nHost: gw\r\n" + authHeader() +
				"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks
			status, resp := rawExchange(t, addr, req, false)
			if msg := messageOf(t, resp); status != 400 || !strings.HasPrefix(msg, "malformed request body: ") || !strings.Contains(msg, "chunk") {
				t.Fatalf("%d %s", status, resp)
			}
		})
	}
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
}

// TestIssue8HalfCloseMidBodyIs400: the client stops sending (shutdown of
// its write side) before the body is complete.
func TestIssue8HalfCloseMidBodyIs400(t *testing.T) {
	store := openClusterStore(t, richDoc())
	env := newEnv(t, store, gw1, nil)
	addr := listen(t, env)
	before := store.bytes()
	req := "PUT /api/clientauth/" + tIQN + "/" + cIQN2 + " HTTP/1.1\r\nHost: gw\r\n" + authHeader() +
		"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nusername\r\n"
	status, resp := rawExchange(t, addr, req, true)
	if status != 400 || messageOf(t, resp) != msgIncomplete {
		t.Fatalf("%d %s", status, resp)
	}
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
}

// TestIssue8HalfCloseAfterRequestIsNot5xx: a complete request whose client
// then half-closes. Whether the server finishes first or sees the close
// first is up to the scheduler; either way the answer is no 5xx, and a 200
// means the target is committed.
func TestIssue8HalfCloseAfterRequestIsNot5xx(t *testing.T) {
	store := openClusterStore(t, seedDoc(gw1))
	env := newEnv(t, store, gw1, nil)
	addr := listen(t, env)
	for i := range 5 {
		iqn := fmt.Sprintf("iqn.2003-01.com.example:half-close-%d", i)
		req := "PUT /api/target/" + iqn + " HTTP/1.1\r\nHost: gw\r\n" + authHeader() +
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
		status, resp := rawExchange(t, addr, req, true)
		msg := messageOf(t, resp)
		switch {
		case status == 200:
			if loadDoc(t, store).Targets[iqn] == nil {
				t.Fatalf("%s: 200 but not committed", iqn)
			}
		case status == 400 && msg == msgClientGone:
			t.Logf("%s: the server saw the close first", iqn)
		default:
			t.Fatalf("%s: %d %s", iqn, status, resp)
		}
	}
}

// TestIssue8HalfCloseWhileWorkingIs400: the server sees the client's
// half-close while the handler still works (the store waits for exactly
// that), so the work ends with the request's context: 400, not 500, and
// nothing written.
func TestIssue8HalfCloseWhileWorkingIs400(t *testing.T) {
	mem := newMemStore(richDoc())
	store := &waitStore{rawStore: mem, entered: make(chan struct{}, 1)}
	env := newEnv(t, store, gw1, nil)
	addr := listen(t, env)
	before := mem.bytes()
	req := "PUT /api/target/iqn.2003-01.com.example:half-closed HTTP/1.1\r\nHost: gw\r\n" + authHeader() +
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
	status, resp := rawExchange(t, addr, req, true)
	if status != 400 || messageOf(t, resp) != msgClientGone {
		t.Fatalf("%d %s", status, resp)
	}
	select {
	case <-store.entered:
	default:
		t.Fatal("the handler never reached the store")
	}
	if !bytes.Equal(before, mem.bytes()) {
		t.Fatal("object changed")
	}
}

// TestIssue8HalfCloseDuringReconcileIsNot5xx: the client half-closes while
// the coordinator converges LIO. If that cancels the reconcile (it must
// not, once committed: issue 8 item 6's other half), the answer the
// fan-out composes is still a 4xx; if it does not, the change completes.
// Never a 5xx.
func TestIssue8HalfCloseDuringReconcileIsNot5xx(t *testing.T) {
	var logBuf bytes.Buffer
	store := openClusterStore(t, richDoc())
	lio := &cancelLIO{reqCtx: make(chan context.Context, 1)}
	env := newEnv(t, store, gw1, func(d *Deps) {
		lio.fakeLIO = d.LIO.(*fakeLIO)
		d.LIO = lio
		d.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	})
	env.e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			select {
			case lio.reqCtx <- c.Request().Context():
			default:
			}
			return next(c)
		}
	})
	addr := listen(t, env)
	body := "members=" + url.QueryEscape(cIQN2)
	req := "PUT /api/hostgroup/" + tIQN + "/g2 HTTP/1.1\r\nHost: gw\r\n" + authHeader() +
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	status, resp := rawExchange(t, addr, req, true)
	switch {
	case lio.cancelled.Load() && status == 400:
		if !strings.Contains(logBuf.String(), "request failed after the client closed its connection") {
			t.Fatalf("the replaced 5xx was not logged: %s", logBuf.String())
		}
	case !lio.cancelled.Load() && status == 200:
	default:
		t.Fatalf("reconcile cancelled %v: %d %s", lio.cancelled.Load(), status, resp)
	}
}

// cancelLIO converges only once the server has seen the client leave (the
// request's own context is done), then reports whether that cancelled the
// context it was given.
type cancelLIO struct {
	*fakeLIO
	reqCtx    chan context.Context
	cancelled atomic.Bool
}

func (l *cancelLIO) Reconcile(ctx context.Context, doc *config.Doc) error {
	rc := <-l.reqCtx
	<-rc.Done()
	if err := ctx.Err(); err != nil {
		l.cancelled.Store(true)
		return fmt.Errorf("reconcile: %w", err)
	}
	return l.fakeLIO.Reconcile(ctx, doc)
}

// waitStore's Load and Commit return only once the caller's context is
// done.
type waitStore struct {
	rawStore
	entered chan struct{}
}

func (w *waitStore) wait(ctx context.Context) error {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (w *waitStore) Load(ctx context.Context) (*config.Doc, error) {
	return nil, fmt.Errorf("load config: %w", w.wait(ctx))
}

func (w *waitStore) Commit(ctx context.Context, _ rados.Mutation) (*config.Doc, error) {
	return nil, fmt.Errorf("commit config: %w", w.wait(ctx))
}

// TestIssue8ClientGoneIs400: the request's context ends (the server saw the
// client close) while the handler works: a 400, and no 500 logged as a
// server failure.
func TestIssue8ClientGoneIs400(t *testing.T) {
	var logBuf bytes.Buffer
	store := &ctxStore{rawStore: newMemStore(richDoc())}
	env := newEnv(t, store, gw1, func(d *Deps) { d.Logger = slog.New(slog.NewTextHandler(&logBuf, nil)) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "PUT", "/api/target/iqn.2003-01.com.example:gone", nil)
	req.SetBasicAuth(apiUser, apiPass)
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	expect(t, rec, 400, msgClientGone)
	if strings.Contains(logBuf.String(), "request failed") {
		t.Fatalf("logged as a server failure: %s", logBuf.String())
	}
}

// ctxStore honours the caller's context, as the RADOS store does.
type ctxStore struct{ rawStore }

func (c *ctxStore) Load(ctx context.Context) (*config.Doc, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return c.rawStore.Load(ctx)
}

func (c *ctxStore) Commit(ctx context.Context, mutate rados.Mutation) (*config.Doc, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("commit config: %w", err)
	}
	return c.rawStore.Commit(ctx, mutate)
}

// --- item 6: an image name LIO cannot carry; item 7: size 0 ---

func TestIssue8LongImageNameIs400(t *testing.T) {
	imgs, _ := clusterImages(t)
	conn := imgs.Conn
	store := openClusterStore(t, seedDoc(gw1))
	env := newDiskEnv(t, store, gw1, nil, func(d *Deps) { d.Images = imgs })
	before := store.bytes()
	long := strings.Repeat("a", 5000)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+long, v("mode", "create", "size", "8M")), 400, "Invalid image name (pool/image is 5004 characters, at most 192)")
	expect(t, env.do(t, "PUT", "/api/_disk/rbd/"+long, v("mode", "create", "pool", "rbd", "size", "8388608", "owner", gw1, "backstore", "user:rbd")), 400, "Invalid image name (pool/image is 5004 characters, at most 192)")
	// count=2 appends "1" and "2": the longest name is what counts
	at := fmt.Sprintf("i%08x", rand.Uint32())
	at += strings.Repeat("x", maxDiskIDLen-len("rbd/")-len(at))
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+at, v("mode", "create", "size", "8M", "count", "2")), 400, "Invalid image name (pool/image is 193 characters, at most 192)")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
	// The longest allowed name works end to end on Ceph.
	t.Cleanup(func() { _ = rbd.Remove(context.Background(), conn, "rbd", at, rbd.RemoveOptions{}) })
	expect(t, env.do(t, "PUT", "/api/disk/rbd/"+at, v("mode", "create", "size", "8M")), 200, "disk create/update successful")
	if ok, err := rbd.Exists(conn, "rbd", at); !ok || err != nil {
		t.Fatalf("image of a %d-character disk id: %v %v", maxDiskIDLen, ok, err)
	}
	if d := loadDoc(t, store).Disks["rbd/"+at]; d == nil || d.BackstoreObjectName != "rbd."+at {
		t.Fatalf("disk entry %+v", d)
	}
}

func TestIssue8ZeroSizeRefused(t *testing.T) {
	imgs, _ := clusterImages(t)
	conn := imgs.Conn
	store := openClusterStore(t, seedDoc(gw1))
	env := newDiskEnv(t, store, gw1, nil, func(d *Deps) { d.Images = imgs })
	before := store.bytes()
	img := fmt.Sprintf("zero-%08x", rand.Uint32())
	t.Cleanup(func() { _ = rbd.Remove(context.Background(), conn, "rbd", img, rbd.RemoveOptions{}) })
	for _, size := range []string{"0M", "0G", "0t", "000M"} {
		expect(t, env.do(t, "PUT", "/api/disk/rbd/"+img, v("mode", "create", "size", size)), 400, "Size is invalid (a disk needs a size greater than 0)")
	}
	expect(t, env.do(t, "PUT", "/api/_disk/rbd/"+img, v("mode", "create", "pool", "rbd", "size", "0", "owner", gw1, "backstore", "user:rbd")), 400, "Size is invalid (a disk needs a size greater than 0)")
	if ok, err := rbd.Exists(conn, "rbd", img); ok || err != nil {
		t.Fatalf("image created: %v %v", ok, err)
	}
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
}

// --- item 7: host groups, unknown gateways, clientauth bodies ---

func TestIssue8HostGroupDuplicateMembers(t *testing.T) {
	store := openClusterStore(t, richDoc())
	env := newEnv(t, store, gw1, nil)
	before := store.bytes()
	const dup = "Member must contain unique clients - no duplication"
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/g2", v("members", cIQN2+","+cIQN2)), 400, dup)
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/grp", v("members", cIQN2+","+cIQN2)), 400, dup)
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/grp", v("action", "remove", "members", cIQN+","+cIQN)), 400, dup)
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/g2", v("members", cIQN2, "disks", "rbd/disk1,rbd/disk1")), 400, "Disks must be unique - no duplication ('rbd/disk1' is listed twice)")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/g2", v("members", cIQN2)), 200, "hostgroup create/update successful")
	if g := loadDoc(t, store).Targets[tIQN].Groups["g2"]; g == nil || len(g.Members) != 1 || g.Members[0] != cIQN2 {
		t.Fatalf("group %+v", g)
	}
	// adding a member again is not a duplicate in the request: unchanged
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/g2", v("members", cIQN2)), 200, "hostgroup create/update successful")
}

func TestIssue8HostGroupRemoveNonMember(t *testing.T) {
	store := openClusterStore(t, richDoc())
	env := newEnv(t, store, gw1, nil)
	before := store.bytes()
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/grp", v("action", "remove", "members", cIQN2)), 400, "client '"+cIQN2+"' is not a member of grp")
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/grp", v("action", "remove", "members", cIQN+","+cIQN3)), 400, "client '"+cIQN3+"' is not a member of grp")
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/grp", v("action", "remove", "disks", "rbd/ghost")), 400, "disk 'rbd/ghost' is not in the group")
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/nope", v("action", "remove", "members", cIQN)), 404, "Group name 'nope' not found")
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/nope", v("action", "REMOVE")), 404, "Group name 'nope' not found")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
	expect(t, env.do(t, "PUT", "/api/hostgroup/"+tIQN+"/grp", v("action", "remove", "disks", "rbd/disk1")), 200, "hostgroup create/update successful")
	if g := loadDoc(t, store).Targets[tIQN].Groups["grp"]; g == nil || len(g.Disks) != 0 || len(g.Members) != 1 {
		t.Fatalf("group %+v", g)
	}
}

func TestIssue8InternalGatewayDeleteUnknown(t *testing.T) {
	store := openClusterStore(t, richDoc())
	env := newEnv(t, store, gw1, nil)
	before := store.bytes()
	for _, gw := range []string{"nosuch.example.test", gw2, "GW1.EXAMPLE.TEST"} {
		expect(t, env.do(t, "DELETE", "/api/_gateway/"+tIQN+"/"+gw, nil), 404, "Gateway doesn't exist in the configuration")
	}
	// gw1 is a gateway, but not a portal of this target
	expect(t, env.do(t, "DELETE", "/api/_gateway/"+otherIQN+"/"+gw1, nil), 404, "Gateway doesn't exist in the configuration")
	if !bytes.Equal(before, store.bytes()) || env.lio.reconciles != 0 {
		t.Fatalf("object changed or LIO reconciled (%d)", env.lio.reconciles)
	}
	// A coordinator's call after the gateway removed itself converges.
	expect(t, env.do(t, "DELETE", "/api/_gateway/"+tIQN+"/"+gw2, v(formGatewayRemoved, "true")), 200, "Gateway deleted.")
	if !bytes.Equal(before, store.bytes()) || env.lio.reconciles != 1 {
		t.Fatalf("object changed or LIO not reconciled (%d)", env.lio.reconciles)
	}
}

func multipartBody(t *testing.T, fields map[string]string) (string, string) {
	t.Helper()
	var b strings.Builder
	const boundary = "b0undary"
	for k, val := range fields {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, k, val)
	}
	b.WriteString("--" + boundary + "--\r\n")
	return "multipart/form-data; boundary=" + boundary, b.String()
}

// TestIssue8ClientAuthMultipart: a multipart body is read as Flask reads
// it; one that cannot be parsed changes nothing instead of reading as
// empty credentials (which clears CHAP).
func TestIssue8ClientAuthMultipart(t *testing.T) {
	doc := richDoc()
	doc.Targets[tIQN].Clients[cIQN2].Auth = config.Auth{Username: "username1", Password: "password1234"}
	store := openClusterStore(t, doc)
	env := newEnv(t, store, gw1, nil)
	before := store.bytes()
	path := "/api/clientauth/" + tIQN + "/" + cIQN2
	for name, body := range map[string]string{
		"no closing boundary": "--xyz\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n",
		"not multipart":       "username=&password=",
		"empty":               "",
	} {
		rec := env.do(t, "PUT", path, nil, rawBody("multipart/form-data; boundary=xyz", body))
		expect(t, rec, 400, msgMultipart+": it ends before its closing boundary")
		if !bytes.Equal(before, store.bytes()) {
			t.Fatalf("%s: CHAP changed", name)
		}
	}
	expect(t, env.do(t, "PUT", path, nil, rawBody("multipart/form-data", "")), 400, msgMultipart+": no boundary in Content-Type")
	// not a form at all: refused too, where it used to read as no fields
	expect(t, env.do(t, "PUT", path, nil, rawBody("application/json", `{"username": "", "password": ""}`)), 415,
		"unsupported Content-Type application/json: send the form as application/x-www-form-urlencoded or multipart/form-data")
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("CHAP changed by a JSON body")
	}
	if got := loadDoc(t, store).Targets[tIQN].Clients[cIQN2].Auth; got.Username != "username1" || got.Password != "password1234" {
		t.Fatalf("auth %+v", got)
	}
	ct, body := multipartBody(t, map[string]string{"username": "username2", "password": "password5678", "mutual_username": "", "mutual_password": ""})
	expect(t, env.do(t, "PUT", path, nil, rawBody(ct, body)), 200, "client auth successful")
	if got := loadDoc(t, store).Targets[tIQN].Clients[cIQN2].Auth; got.Username != "username2" || got.Password != "password5678" {
		t.Fatalf("auth from a multipart body %+v", got)
	}
}

// --- item 9: upstream's text for an unknown control ---

func TestIssue8UnknownControlText(t *testing.T) {
	const (
		target = "Unexpected or invalid controls - Supported controls: dataout_timeout,nopin_response_timeout,nopin_timeout,cmdsn_depth,immediate_data,initial_r2t,max_outstanding_r2t,first_burst_length,max_burst_length,max_recv_data_segment_length,max_xmit_data_segment_length"
		disk   = "Unexpected or invalid controls - Supported controls: max_data_area_mb,qfull_timeout,osd_op_timeout,hw_max_sectors"
	)
	store := openClusterStore(t, diskDoc())
	env := newDiskEnv(t, store, gw1, diskImages(), nil)
	before := store.bytes()
	expect(t, env.do(t, "PUT", "/api/target/"+tIQN, v("mode", "reconfigure", "controls", `{"X": 1}`)), 400, target)
	expect(t, env.do(t, "PUT", "/api/_target/"+tIQN, v("mode", "reconfigure", "controls", `{"X": 1}`)), 400, target)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/mapped", v("mode", "reconfigure", "controls", `{"X": 1}`)), 400, disk)
	expect(t, env.do(t, "PUT", "/api/disk/rbd/new", v("mode", "create", "size", "1G", "controls", `{"X": 1}`)), 400, disk)
	if !bytes.Equal(before, store.bytes()) {
		t.Fatal("object changed")
	}
}

// --- item 10: failed-login back-off ---

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestIssue8LoginBackoff(t *testing.T) {
	clock := &testClock{t: t0}
	var logBuf bytes.Buffer
	env := newEnv(t, newMemStore(richDoc()), gw1, func(d *Deps) {
		d.Now = clock.now
		d.Settings.APIFailedLoginLimit = 3
		d.Settings.TrustedIPList = []string{trustedIP, "192.0.2.2"}
		d.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	})
	attacker, other := from("192.0.2.1:5000"), from("192.0.2.2:5000")
	const wrong = "guess-Pa55word"
	for range 3 {
		expect(t, env.do(t, "GET", "/api/targets", nil, attacker, creds(apiUser, wrong)), 401, msgAuthMismatch)
		// below the threshold a right password is never held up
	}
	// the 4th attempt, even with the right password, waits 20 s (a minute / 3)
	for _, c := range []reqOpt{creds(apiUser, wrong), creds(apiUser, apiPass)} {
		rec := env.do(t, "GET", "/api/targets", nil, attacker, c)
		expect(t, rec, 429, "Too many failed logins from 192.0.2.1 (api_failed_login_limit is 3): retry in 20 seconds")
		if ra := rec.Header().Get("Retry-After"); ra != "20" {
			t.Fatalf("Retry-After %q", ra)
		}
	}
	// the basic-auth route too, and the sysinfo probe
	expect(t, env.do(t, "GET", "/api/sysinfo/ip_addresses", nil, attacker), 429, "")
	// another source is not affected
	expect(t, env.do(t, "GET", "/api/targets", nil, other), 200, "")
	// no credentials are not a guess: still 401, not counted
	expect(t, env.do(t, "GET", "/api/targets", nil, other, noAuth()), 401, "Missing credentials")
	clock.advance(19 * time.Second)
	rec := env.do(t, "GET", "/api/targets", nil, attacker)
	expect(t, rec, 429, "Too many failed logins from 192.0.2.1 (api_failed_login_limit is 3): retry in 1 seconds")
	clock.advance(time.Second)
	expect(t, env.do(t, "GET", "/api/targets", nil, attacker), 200, "")
	// one attempt came back; a failure uses it up again
	expect(t, env.do(t, "GET", "/api/targets", nil, attacker, creds(apiUser, wrong)), 401, msgAuthMismatch)
	expect(t, env.do(t, "GET", "/api/targets", nil, attacker), 429, "")
	// after a minute the whole allowance is back
	clock.advance(time.Minute)
	for range 3 {
		expect(t, env.do(t, "GET", "/api/targets", nil, attacker, creds(apiUser, wrong)), 401, msgAuthMismatch)
	}
	expect(t, env.do(t, "GET", "/api/targets", nil, attacker, creds(apiUser, wrong)), 429, "")

	logs := logBuf.String()
	if strings.Contains(logs, wrong) || strings.Contains(logs, apiPass) {
		t.Fatalf("credentials in the log:\n%s", logs)
	}
	if n := strings.Count(logs, "source backed off"); n != 3 {
		t.Fatalf("%d back-off log lines, want one per exhaustion (3):\n%s", n, logs)
	}
}

// TestIssue8LoginBackoffIPv6Prefix: IPv6 sources share one allowance per
// /64, so hopping addresses inside it buys nothing.
func TestIssue8LoginBackoffIPv6Prefix(t *testing.T) {
	env := newEnv(t, newMemStore(richDoc()), gw1, func(d *Deps) {
		d.Settings.APIFailedLoginLimit = 2
	})
	expect(t, env.do(t, "GET", "/api/sysinfo/ip_addresses", nil, from("[2001:db8:1:2::1]:1"), creds(apiUser, "x")), 401, msgAuthMismatch)
	expect(t, env.do(t, "GET", "/api/sysinfo/ip_addresses", nil, from("[2001:db8:1:2::2]:1"), creds(apiUser, "x")), 401, msgAuthMismatch)
	expect(t, env.do(t, "GET", "/api/sysinfo/ip_addresses", nil, from("[2001:db8:1:2:ffff::3]:1")), 429, "")
	expect(t, env.do(t, "GET", "/api/sysinfo/ip_addresses", nil, from("[2001:db8:1:3::1]:1")), 200, "")
}

func TestIssue8LoginBackoffOff(t *testing.T) {
	env := newEnv(t, newMemStore(richDoc()), gw1, func(d *Deps) { d.Settings.APIFailedLoginLimit = 0 })
	for range 60 {
		expect(t, env.do(t, "GET", "/api/targets", nil, creds(apiUser, "wrong")), 401, msgAuthMismatch)
	}
	expect(t, env.do(t, "GET", "/api/targets", nil), 200, "")
}

// TestIssue8LoginBackoffMemoryBounded: many failing sources keep at most
// maxLoginSources entries, sources whose allowance is back are forgotten
// first, and a source that cannot be tracked is not blocked.
func TestIssue8LoginBackoffMemoryBounded(t *testing.T) {
	clock := &testClock{t: t0}
	l := newLoginLimiter(2, clock.now)
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	for i := range maxLoginSources + 500 {
		l.failed(addr(i))
		l.failed(addr(i))
	}
	if n := len(l.sources); n != maxLoginSources {
		t.Fatalf("%d sources tracked", n)
	}
	if _, blocked := l.blocked(addr(0)); !blocked {
		t.Fatal("a tracked source was forgotten while still backed off")
	}
	if _, blocked := l.blocked(addr(maxLoginSources + 1)); blocked {
		t.Fatal("an untracked source is blocked")
	}
	clock.advance(time.Minute)
	l.failed("192.0.2.77")
	if n := len(l.sources); n != 1 {
		t.Fatalf("%d sources after all allowances came back, want 1", n)
	}
	if newLoginLimiter(0, clock.now) != nil {
		t.Fatal("limit 0 must turn the back-off off")
	}
}

func TestIssue8LoginLimitSetting(t *testing.T) {
	if got := settings.Defaults().APIFailedLoginLimit; got != 10 {
		t.Fatalf("default %d", got)
	}
	s, err := settings.Parse("test.cfg", []byte("[config]\napi_failed_login_limit = 0\n"))
	if err != nil || s.APIFailedLoginLimit != 0 {
		t.Fatalf("%v %v", s, err)
	}
	if _, err := settings.Parse("test.cfg", []byte("[config]\napi_failed_login_limit = -1\n")); err == nil {
		t.Fatal("-1 accepted")
	}
	// Python gateways do not know the setting: it must not change checkconf.
	a, b := settings.Defaults(), settings.Defaults()
	b.APIFailedLoginLimit = 99
	if a.Hash() != b.Hash() {
		t.Fatal("api_failed_login_limit changes the checkconf hash")
	}
}
