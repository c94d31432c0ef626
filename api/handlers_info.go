package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/settings"
)

func (s *server) load(ctx context.Context) (*config.Doc, error) {
	doc, err := s.Store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return doc, nil
}

// cacher is a Store that keeps the document it last read or committed and
// hands it out without a round trip (*rados.Store's Cached).
type cacher interface {
	Cached() *config.Doc
}

// verifyCached fails when the store's remembered document was changed in
// place (a check or a mutation that bypassed config's copy-on-write
// accessors); *rados.Store checks only in test binaries.
func verifyCached(st Store) error {
	if v, ok := st.(interface{ VerifyCached() error }); ok {
		return v.VerifyCached()
	}
	return nil
}

// errStaleCheck aborts the commit of a request checked on a cached
// document when the fresh document differs in something the checks
// derived (the peers to call): the request is checked again on a fresh
// snapshot.
var errStaleCheck = errors.New("the request was checked on an outdated document")

// prechecked runs a coordinated change: check refuses the request or
// returns the action that commits it, whose mutation re-runs the checks on
// the fresh, lock-verified document (and returns errStaleCheck where what
// check derived from the document no longer holds). check first runs on
// the document this gateway last read or committed, which costs no round
// trip; a refusal there, or errStaleCheck from the action, is not
// answered but confirmed on a fresh snapshot (a stat, and a read when the
// object moved), so an outdated copy never produces a wrong 4xx and the
// answer is upstream's. Only for actions that change nothing anywhere
// before their commit: the peers they call come after it.
func (s *server) prechecked(ctx context.Context, check func(doc *config.Doc) (func() error, error)) error {
	if cs, ok := s.Store.(cacher); ok {
		if doc := cs.Cached(); doc != nil {
			act, err := check(doc.Fork())
			if verr := verifyCached(s.Store); verr != nil {
				return verr
			}
			if err == nil {
				if err := act(); !errors.Is(err, errStaleCheck) {
					return err
				}
			}
		}
	}
	for range 3 {
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		act, err := check(doc)
		if err != nil {
			return err
		}
		if err := act(); !errors.Is(err, errStaleCheck) {
			return err
		}
	}
	return fmt.Errorf("the target's gateways kept changing during the request: %w", errStaleCheck)
}

// samePeers wraps m, the commit of a request checked on another copy of
// the document: on the fresh one the target must still be there with the
// portal gateways the check found (remote, and n portals in all),
// otherwise the wrong peers would be called after it, or the refusal would
// not be the check's.
func (s *server) samePeers(tIQN string, remote []string, n int, m rados.Mutation) rados.Mutation {
	return func(d *config.Doc) error {
		t := d.Targets[tIQN]
		if t == nil || len(t.Portals) != n || t.Portals[s.Gateway] == nil {
			return errStaleCheck
		}
		if now, err := s.remotePortals(t); err != nil || !slices.Equal(now, remote) {
			return errStaleCheck
		}
		return m(d)
	}
}

// iqnParam normalises an IQN path parameter as upstream's normalize_wwn call
// does, then applies the iSCSI name rules (config.ValidateIQN); upstream
// answered a bad name with a 500, a client mistake is a 400. A GET or DELETE
// may still address an object whose invalid name is already in the
// document (committed by an older version or by hand): every object must
// stay readable and deletable.
func (s *server) iqnParam(c echo.Context, name string) (string, error) {
	raw := param(c, name)
	iqn, err := config.NormalizeIQN(raw)
	if err == nil {
		return iqn, nil
	}
	if m := c.Request().Method; m == http.MethodDelete || m == http.MethodGet {
		if doc, lerr := s.load(c.Request().Context()); lerr == nil {
			if stored, ok := storedIQN(doc, name, raw); ok {
				return stored, nil
			}
		}
	}
	return "", invalidIQN(name, raw, err)
}

// invalidIQN is the refusal of an IQN: upstream's text for rtslib's test,
// and for the iSCSI name rules upstream lacks, the field and the rule.
func invalidIQN(field, raw string, err error) error {
	var ne *config.NameError
	if errors.As(err, &ne) {
		return httpErr(http.StatusBadRequest, "Invalid iqn %s - %s: %s", config.QuoteName(raw), field, ne.Rule)
	}
	return httpErr(http.StatusBadRequest, "Invalid iqn %s - %v", raw, err)
}

// storedIQN finds raw (or its lower-cased, trimmed form) among the
// document's target IQNs (field target_iqn) or client IQNs (client_iqn).
func storedIQN(doc *config.Doc, field, raw string) (string, bool) {
	for _, cand := range []string{raw, strings.ToLower(strings.TrimSpace(raw))} {
		if field == "target_iqn" {
			if doc.Targets[cand] != nil {
				return cand, true
			}
			continue
		}
		for _, t := range doc.Targets {
			if t != nil && t.Clients[cand] != nil {
				return cand, true
			}
		}
	}
	return "", false
}

// targetOf finds a target; upstream crashed with a KeyError (500) on most
// routes, here it is the 404 its targetinfo route gives.
func targetOf(doc *config.Doc, iqn string) (*config.Target, error) {
	t := doc.Targets[iqn]
	if t == nil {
		return nil, httpErr(http.StatusNotFound, "Target %s does not exist", iqn)
	}
	return t, nil
}

func sortedNames[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *server) sysinfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		switch param(c, "query_type") {
		case "ip_addresses":
			ips, err := s.ipAddresses()
			if err != nil {
				return err
			}
			return writeJSON(c, http.StatusOK, map[string]any{"data": ips})
		case "hostname":
			return writeJSON(c, http.StatusOK, map[string]any{"data": s.Gateway})
		case "checkconf":
			return writeJSON(c, http.StatusOK, map[string]any{"data": s.Settings.Hash()})
		case "checkversions":
			errs, err := osErrors(s.OSRelease)
			if err != nil {
				return err
			}
			if len(errs) > 0 {
				return writeJSON(c, http.StatusInternalServerError, map[string]any{"data": errs})
			}
			return writeJSON(c, http.StatusOK, map[string]any{"data": "checks passed"})
		}
		return message(c, http.StatusNotFound, "Unknown /sysinfo query")
	}
}

func (s *server) targets() echo.HandlerFunc {
	return func(c echo.Context) error {
		doc, err := s.load(c.Request().Context())
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, map[string]any{"targets": sortedNames(doc.Targets)})
	}
}

// getConfig returns the document as stored (the same bytes' content, so
// unknown keys and transient ones such as gateways_upgraded are included).
func (s *server) getConfig() echo.HandlerFunc {
	return func(c echo.Context) error {
		f, err := params(c)
		if err != nil {
			return err
		}
		decrypt := strings.EqualFold(f.get("decrypt_passwords", "false"), "true")
		if sn, ok := s.Store.(snapshotter); ok && !decrypt {
			return s.configBody.serve(c, sn)
		}
		doc, err := s.load(c.Request().Context())
		if err != nil {
			return err
		}
		if decrypt {
			if doc.DiscoveryAuth, err = s.chap.decryptAuth(doc.DiscoveryAuth); err != nil {
				return fmt.Errorf("discovery_auth: %w", err)
			}
			for iqn, t := range doc.Targets {
				if t == nil {
					continue
				}
				if t.Auth, err = s.chap.decryptAuth(t.Auth); err != nil {
					return fmt.Errorf("target %s: %w", iqn, err)
				}
				for name, cl := range t.Clients {
					if cl == nil {
						continue
					}
					if cl.Auth, err = s.chap.decryptAuth(cl.Auth); err != nil {
						return fmt.Errorf("client %s: %w", name, err)
					}
				}
			}
		}
		b, err := configJSON(doc)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
	}
}

// configJSON is the body of GET /api/config. Marshal is the
// Python-compatible encoding; re-encoding it gives the compact form with
// every key the document holds.
func configJSON(doc *config.Doc) ([]byte, error) {
	m, err := config.ParseAny(doc.Marshal())
	if err != nil {
		return nil, fmt.Errorf("re-read config: %w", err)
	}
	return encodeJSON(m)
}

// snapshotter is a Store that says which version of the object a document
// is, for a check that costs no read (*rados.Store's Snapshot).
type snapshotter interface {
	Snapshot(ctx context.Context) (*config.Doc, uint64, error)
}

// bodyCache is GET /api/config served from memory: the encoded body of the
// last object version asked for. Each request still asks the store which
// version is current (a stat sent since the request began, shared by the
// requests that began before it went out), so the committing gateway
// answers with its own write and any gateway with another's on the next
// request.
type bodyCache struct {
	mu   sync.Mutex
	ver  uint64
	body []byte
}

func (bc *bodyCache) serve(c echo.Context, sn snapshotter) error {
	ctx := c.Request().Context()
	if st := stagesOf(ctx); st != nil {
		ctx = rados.WithRequestStart(ctx, st.start)
	}
	doc, ver, err := sn.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	bc.mu.Lock()
	body := bc.body
	if bc.ver != ver {
		body = nil
	}
	bc.mu.Unlock()
	if body == nil {
		t0 := time.Now()
		if body, err = configJSON(doc); err != nil {
			return err
		}
		stagesOf(c.Request().Context()).since("encode", t0)
		bc.mu.Lock()
		if ver >= bc.ver {
			bc.ver, bc.body = ver, body
		}
		bc.mu.Unlock()
	}
	// With its length known net/http sends the body as it is; without,
	// a body over its 2 KB buffer goes chunked, with a write more for
	// the last chunk once the handler returns.
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}

func (s *server) getSettings() echo.HandlerFunc {
	return func(c echo.Context) error {
		st := s.Settings
		tl := map[string]any{}
		for _, l := range settings.TargetControlLimits() {
			tl[l.Name] = l
		}
		dl := map[string]any{}
		for _, l := range settings.DiskControlLimits() {
			dl[l.Name] = l
		}
		const bs = "user:rbd"
		return writeJSON(c, http.StatusOK, map[string]any{
			"target_default_controls":  st.TargetDefaults(),
			"target_controls_limits":   tl,
			"disk_default_controls":    map[string]any{bs: st.DiskDefaults()},
			"disk_controls_limits":     map[string]any{bs: dl},
			"unsupported_rbd_features": map[string]any{bs: 0},
			"required_rbd_features":    map[string]any{bs: 4}, // RBD_FEATURE_EXCLUSIVE_LOCK
			"backstores":               []string{bs},
			"default_backstore":        bs,
			"config":                   map[string]any{"minimum_gateways": st.MinimumGateways},
			"api_version":              2,
		})
	}
}

// ping answers 503 only for a registered gateway whose iSCSI port is down:
// coordinators then refuse changes that would leave it behind.
func (s *server) ping() echo.HandlerFunc {
	return func(c echo.Context) error {
		doc, err := s.view(c.Request().Context())
		if err != nil {
			return err
		}
		status := http.StatusOK
		if doc.Gateways[s.Gateway] != nil && !s.ISCSIListening() {
			status = http.StatusServiceUnavailable
		}
		return message(c, status, "pong")
	}
}

func (s *server) clients() echo.HandlerFunc {
	return s.targetNames("clients", func(t *config.Target) []string { return sortedNames(t.Clients) })
}

func (s *server) hostGroups() echo.HandlerFunc {
	return s.targetNames("groups", func(t *config.Target) []string { return sortedNames(t.Groups) })
}

// targetNames answers {key: names(target)} for the target in the path.
func (s *server) targetNames(key string, names func(*config.Target) []string) echo.HandlerFunc {
	return func(c echo.Context) error {
		iqn, err := s.iqnParam(c, "target_iqn")
		if err != nil {
			return err
		}
		_, t, err := s.targetDoc(c.Request().Context(), iqn)
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, map[string]any{key: names(t)})
	}
}

// targetInfo adds up the sessions of every portal gateway; a gateway whose
// API is up but iSCSI down has none to count.
func (s *server) targetInfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		iqn := param(c, "target_iqn")
		_, t, err := s.targetDoc(ctx, iqn)
		if err != nil {
			return err
		}
		total := 0
		for _, gw := range sortedNames(t.Portals) {
			if gw == s.Gateway {
				n, err := s.LIO.Sessions(ctx, iqn)
				if err != nil {
					return err
				}
				total += n
				continue
			}
			status, _, err := s.peers.call(ctx, http.MethodGet, gw, "/api/_ping", nil)
			if err == nil && status == http.StatusServiceUnavailable {
				continue
			}
			status, body, err := s.peers.call(ctx, http.MethodGet, gw, "/api/_targetinfo/"+pathSegments(iqn), nil)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return message(c, status, "failed on "+gw+". "+remoteMessage(body))
			}
			var r struct {
				NumSessions int `json:"num_sessions"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return fmt.Errorf("_targetinfo reply of %s: %w", gw, err)
			}
			total += r.NumSessions
		}
		return writeJSON(c, http.StatusOK, map[string]any{"num_sessions": total})
	}
}

func (s *server) internalTargetInfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		iqn := param(c, "target_iqn")
		if _, _, err := s.targetView(ctx, iqn); err != nil {
			return err
		}
		n, err := s.LIO.Sessions(ctx, iqn)
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, map[string]any{"num_sessions": n})
	}
}

var errMissingField = errors.New("missing form field")

// required is Flask's request.form[key]: absent is a client mistake (400;
// upstream's generic handler turned it into a 500).
func required(f form, key string) (string, error) {
	v, ok := f.lookup(key)
	if !ok {
		return "", &httpError{Status: http.StatusBadRequest, Msg: fmt.Sprintf("%v: %s", errMissingField, key)}
	}
	return v, nil
}

// loadTarget is the start of most target-scoped handlers, in upstream's
// order of refusals: the request's parameters, the current document, and
// the target named in the path.
func (s *server) loadTarget(c echo.Context, iqn string) (form, *config.Doc, *config.Target, error) {
	f, err := params(c)
	if err != nil {
		return form{}, nil, nil, err
	}
	doc, t, err := s.targetDoc(c.Request().Context(), iqn)
	if err != nil {
		return form{}, nil, nil, err
	}
	return f, doc, t, nil
}

// writeDocEntry answers the document's value at keys (see docPath), or 404
// with notFound.
func writeDocEntry(c echo.Context, doc *config.Doc, notFound string, keys ...string) error {
	entry, ok := docPath(doc, keys...)
	if !ok {
		return message(c, http.StatusNotFound, notFound)
	}
	return writeJSON(c, http.StatusOK, entry)
}

// view is the current document shared with every other reader, for a
// handler that only reads it: no copy, which for a target of thousands of
// LUNs costs more than the rest of a peer's ping or internal call. It must
// not be modified; a handler that changes the document uses load.
func (s *server) view(ctx context.Context) (*config.Doc, error) {
	sn, ok := s.Store.(snapshotter)
	if !ok {
		return s.load(ctx)
	}
	doc, _, err := sn.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return doc, nil
}

// targetView is targetDoc on the shared document (see view): read only.
func (s *server) targetView(ctx context.Context, iqn string) (*config.Doc, *config.Target, error) {
	doc, err := s.view(ctx)
	return withTarget(doc, err, iqn)
}

// targetDoc loads the current document and finds the target iqn in it.
func (s *server) targetDoc(ctx context.Context, iqn string) (*config.Doc, *config.Target, error) {
	doc, err := s.load(ctx)
	return withTarget(doc, err, iqn)
}

// withTarget is doc and its target iqn, unless err (doc's) or targetOf fails.
func withTarget(doc *config.Doc, err error, iqn string) (*config.Doc, *config.Target, error) {
	if err != nil {
		return nil, nil, err
	}
	t, err := targetOf(doc, iqn)
	if err != nil {
		return nil, nil, err
	}
	return doc, t, nil
}

// clientIQNs normalises the target and client IQNs of a client-scoped path,
// target first, as upstream refuses them.
func (s *server) clientIQNs(c echo.Context) (string, string, error) {
	tIQN, err := s.iqnParam(c, "target_iqn")
	if err != nil {
		return "", "", err
	}
	cIQN, err := s.iqnParam(c, "client_iqn")
	if err != nil {
		return "", "", err
	}
	return tIQN, cIQN, nil
}
