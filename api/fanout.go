package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// peers talks to the other gateways' internal routes, as upstream's call_api
// and target_ready do.
type peers struct{ s *server }

// call sends one form-encoded request to a gateway. A connection failure
// becomes upstream's synthetic 500, so callers format it like any refusal.
func (p *peers) call(ctx context.Context, method, gw, path string, vars map[string]string) (int, []byte, error) {
	if err := config.ValidateGatewayName(gw); err != nil {
		// A name left by an older version or a hand edit: as a URL host it
		// could send the call, with our credentials, anywhere.
		body, _ := json.Marshal(map[string]string{"message": "gateway name " + err.Error() + "; not contacted (remove it with force=true)"})
		return http.StatusBadRequest, body, nil
	}
	u := p.s.PeerURL(gw) + path
	form := url.Values{}
	for k, v := range vars {
		form.Set(k, v)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, fmt.Errorf("build request to %s: %w", gw, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(p.s.Settings.APIUser, p.s.Settings.APIPassword.Reveal())
	resp, err := p.s.HTTPClient.Do(req)
	if err != nil {
		// requests.ConnectionError in upstream's APIRequest: refused, and
		// also a peer that dies with the request in flight
		var op *net.OpError
		if errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			body, _ := json.Marshal(map[string]string{"message": "Unable to connect to api endpoint @ " + u})
			return http.StatusInternalServerError, body, nil
		}
		return 0, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read response: %w", method, u, err)
	}
	return resp.StatusCode, body, nil
}

// ready is upstream's target_ready pre-flight: every gateway must answer
// _ping with 200, otherwise the summary names each one that did not.
// The gateways are asked at once, and named in the order given.
func (p *peers) ready(ctx context.Context, gws []string) (bool, string) {
	verdict := make([]string, len(gws))
	var wg sync.WaitGroup
	for i, gw := range gws {
		wg.Go(func() {
			status, _, err := p.call(ctx, http.MethodGet, gw, "/api/_ping", nil)
			switch {
			case err != nil:
				verdict[i] = gw + "(iscsi Unknown, API down)"
			case status == http.StatusOK:
			case status == http.StatusServiceUnavailable:
				verdict[i] = gw + "(iscsi down, API up)"
			default:
				verdict[i] = gw + "(UNKNOWN state)"
			}
		})
	}
	wg.Wait()
	var bad []string
	for _, v := range verdict {
		if v != "" {
			bad = append(bad, v)
		}
	}
	return len(bad) == 0, strings.Join(bad, ",")
}

// remoteMessage is the "message" of a peer's JSON reply, as call_api reads it.
func remoteMessage(body []byte) string {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err == nil {
		if s, ok := m["message"].(string); ok {
			return s
		}
		if v, ok := m["message"]; ok {
			b, _ := json.Marshal(v)
			return string(b)
		}
	}
	return "unknown failure"
}

// plan is one coordinated change, upstream's call_api with the local gateway
// handled in process. Simplified from upstream: the config is committed once,
// by this gateway, instead of by whichever gateway's internal call happens to
// commit; the lossless commit makes that safe, and the internal routes of
// peers (Go or Python) then only converge their own LIO.
type plan struct {
	// before and after are the peers called before and after the local
	// step: creates go local first, deletes local last, as upstream orders.
	before, after []string
	// label names the local step in "applied to" lists ("localhost" or this
	// gateway's name, as upstream's recipient lists say).
	label            string
	method, endpoint string
	// element is the rest of the peer's path, already escaped: build it
	// with pathSegments, never by joining raw names.
	element string
	vars    map[string]string
	// mutation is the change, committed with s.commit: validated once on
	// the fresh document inside the commit, together with what this
	// gateway's LIO can take (see checked).
	mutation rados.Mutation
	// commit, for the changes that are more than one mutation (disks:
	// RBD work around the commit), replaces mutation: it writes the change
	// and returns the document to apply locally. Either way, when nothing
	// runs before it, its error is returned to the client as is (a
	// validation that lost a race), since nothing was changed yet.
	commit func(ctx context.Context) (*config.Doc, error)
	// localFail prefixes a local apply failure, as the internal route would.
	localFail string
}

// coordinate runs p and returns call_api's text and status.
//
// Until the commit, a refusal answers as upstream does (nothing is
// changed). Once the change is committed it is the truth the gateways
// converge to, whatever happens next: the local apply and the calls to the
// peers after it run on a context the client cannot cancel, every peer is
// still called when one fails, and a gateway that could not apply the
// change (down since the pre-flight, or its LIO refused an operation) does
// not turn the answer into an error. The answer is then 200, as for a
// complete success, so that upstream clients (which test for 200) neither
// report a failure nor repeat a request that would now meet "already
// defined"; its text says the change is committed and which gateways have
// not applied it yet (they converge from the configuration: a daemon that
// is back restores from it, a running one retries).
func (s *server) coordinate(ctx context.Context, p plan) (string, int, error) {
	// where a change's time goes: the Server-Timing header, and the debug log
	st := stagesOf(ctx)
	t := time.Now()
	all := append(append([]string{}, p.before...), p.after...)
	ok, summary := s.peers.ready(ctx, all)
	if len(all) > 0 {
		t = st.since("peers-ready", t)
	}
	if !ok {
		return "failed, gateway(s) unavailable:" + summary, http.StatusServiceUnavailable, nil
	}
	order := append(append(append([]string{}, p.before...), p.label), p.after...)
	var applied []string
	fail := func(gw string, status int, msg string) (string, int, error) {
		var text string
		if len(applied) > 0 {
			var aborted []string
			for _, g := range order {
				if !contains(applied, g) {
					aborted = append(aborted, g)
				}
			}
			text = fmt.Sprintf("failed on %s, applied to %s, aborted %s. ", gw, strings.Join(applied, ","), strings.Join(aborted, ","))
		} else {
			text = fmt.Sprintf("failed on %s. ", gw)
		}
		return text + msg, status, nil
	}
	path := "/api/" + p.endpoint + "/" + p.element
	// remote calls gw and returns "" when it applied the change, else why not.
	remote := func(ctx context.Context, gw string) (status int, why string, err error) {
		status, body, err := s.peers.call(ctx, p.method, gw, path, p.vars)
		if err != nil {
			return 0, "", err
		}
		if status != http.StatusOK {
			return status, remoteMessage(body), nil
		}
		return status, "", nil
	}
	for _, gw := range p.before {
		status, why, err := remote(ctx, gw)
		if err != nil {
			return "", 0, err
		}
		if why != "" {
			return fail(gw, status, why)
		}
		applied = append(applied, gw)
	}
	if len(p.before) > 0 {
		t = st.since("peers-before", t)
	}
	reconcile := s.reconcile
	commit := p.commit
	if commit == nil {
		commit = func(ctx context.Context) (doc *config.Doc, err error) {
			doc, reconcile, err = s.commitThen(ctx, p.mutation)
			return doc, err
		}
	}
	doc, err := commit(ctx)
	if err != nil {
		if len(applied) == 0 {
			return "", 0, err
		}
		status, msg := s.classify(err)
		return fail(s.Gateway, status, msg)
	}
	t = time.Now()

	// Committed: nothing below may undo or hide that. The local apply and
	// the calls to the peers after it run at once (each gateway converges
	// its own LIO from the committed document); the answer waits for all
	// of them and names them in upstream's order.
	ctx = context.WithoutCancel(ctx)
	var localErr error
	var wg sync.WaitGroup
	if doc != nil {
		wg.Go(func() {
			localErr = reconcile(ctx, doc)
			st.since("local-apply", t)
		})
	}
	why := make([]string, len(p.after))
	var peersWG sync.WaitGroup
	for i, gw := range p.after {
		peersWG.Go(func() {
			_, w, err := remote(ctx, gw)
			if err != nil {
				w = err.Error()
			}
			why[i] = w
		})
	}
	if len(p.after) > 0 {
		wg.Go(func() {
			peersWG.Wait()
			st.since("peers-after", t)
		})
	}
	wg.Wait()
	var pending []string
	if localErr != nil {
		s.Logger.Error("committed change not applied to local LIO (the daemon retries)", "endpoint", p.endpoint, "err", localErr)
		pending = append(pending, fmt.Sprintf("%s (%s - %v)", p.label, p.localFail, localErr))
	} else {
		applied = append(applied, p.label)
	}
	for i, gw := range p.after {
		if why[i] != "" {
			s.Logger.Warn("committed change not applied on a peer yet; it converges from the configuration", "gateway", gw, "endpoint", p.endpoint, "reason", why[i])
			pending = append(pending, fmt.Sprintf("%s (%s)", gw, why[i]))
		} else {
			applied = append(applied, gw)
		}
	}
	if len(pending) == 0 {
		return "successful", http.StatusOK, nil
	}
	text := "committed"
	if doc != nil {
		text += fmt.Sprintf(" (config epoch %d)", doc.Epoch)
	}
	if len(applied) > 0 {
		text += " and applied to " + strings.Join(applied, ",")
	}
	return text + "; not applied yet on " + strings.Join(pending, ", ") +
		". Those gateways converge from the committed configuration (a stopped one when it starts again): do not repeat the request", http.StatusOK, nil
}

// answer is the end of every coordinated public handler: it runs p and
// replies with call_api's text after prefix, or with done, when done is
// set and the change went through.
func (s *server) answer(c echo.Context, p plan, prefix, done string) error {
	text, status, err := s.coordinate(c.Request().Context(), p)
	if err != nil {
		return err
	}
	if done != "" && status == http.StatusOK {
		return message(c, status, done)
	}
	return message(c, status, prefix+text)
}

// targetPeers is the start of the coordinated handlers of one target: the
// form, the document, the target, and its other portal gateways.
func (s *server) targetPeers(c echo.Context, iqn string) (form, *config.Doc, *config.Target, []string, error) {
	f, doc, t, err := s.loadTarget(c, iqn)
	if err != nil {
		return form{}, nil, nil, nil, err
	}
	remote, err := s.remotePortals(t)
	if err != nil {
		return form{}, nil, nil, nil, err
	}
	return f, doc, t, remote, nil
}

// peersIn finds the target iqn in doc and its portal gateways other than
// this one (remotePortals): the peers a change of it is sent to.
func (s *server) peersIn(doc *config.Doc, iqn string) (*config.Target, []string, error) {
	t, err := targetOf(doc, iqn)
	if err != nil {
		return nil, nil, err
	}
	remote, err := s.remotePortals(t)
	if err != nil {
		return nil, nil, err
	}
	return t, remote, nil
}

// remotePortals is upstream's get_remote_gateways: the target's portal
// gateways other than this one, in the document's (sorted) key order. The
// local gateway must be one of them.
func (s *server) remotePortals(t *config.Target) ([]string, error) {
	if t.Portals[s.Gateway] == nil {
		return nil, httpErr(http.StatusBadRequest, "%s cannot be used to perform this operation because it is not defined within the gateways configuration", s.Gateway)
	}
	var out []string
	for gw, p := range t.Portals {
		if p != nil && gw != s.Gateway {
			out = append(out, gw)
		}
	}
	sort.Strings(out)
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
