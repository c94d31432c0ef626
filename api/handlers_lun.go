package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// pyNone is how upstream's messages print a form field that was not sent
// (request.form.get gives None).
const pyNone = "None"

// parseLunID is Python's int() on a form value, as upstream converts lun_id:
// surrounding blanks, a sign and single underscores between digits are
// accepted. A value too large for an int is out of range, not "not a number".
func parseLunID(raw string) (int, error) {
	s := strings.TrimSpace(raw)
	digits := strings.TrimLeft(s, "+-")
	if len(s)-len(digits) > 1 || digits == "" || digits[0] == '_' || digits[len(digits)-1] == '_' || strings.Contains(digits, "__") {
		return 0, httpErr(http.StatusBadRequest, "Lun id must be a number")
	}
	clean := strings.ReplaceAll(s, "_", "")
	n, err := strconv.Atoi(clean)
	if errors.Is(err, strconv.ErrRange) {
		return 0, httpErr(http.StatusBadRequest, "Lun id %s is out of range (0-%d)", clean, config.MaxTargetLunID)
	}
	if err != nil {
		return 0, httpErr(http.StatusBadRequest, "Lun id must be a number")
	}
	return n, nil
}

// lunIDField reads the optional lun_id: nil when absent (upstream's clients
// drop None-valued fields), an error when present but not an integer.
func lunIDField(f form) (*int, error) {
	raw, ok := f.lookup("lun_id")
	if !ok {
		return nil, nil
	}
	n, err := parseLunID(raw)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// targetLun is upstream's target_disk: export a disk through a target (PUT,
// local gateway first, which commits) or stop exporting it (DELETE, peers
// first, the local gateway last commits).
func (s *server) targetLun() echo.HandlerFunc {
	return func(c echo.Context) error {
		tIQN, err := s.iqnParam(c, "target_iqn")
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		// the target's portals, the peers of the change
		peersOf := func(doc *config.Doc) (*config.Target, []string, error) {
			t, err := targetOf(doc, tIQN)
			if err != nil {
				return nil, nil, err
			}
			if len(t.Portals) < s.Settings.MinimumGateways {
				return nil, nil, httpErr(http.StatusBadRequest, "at least %d gateways must exist before disk mapping operations are permitted", s.Settings.MinimumGateways)
			}
			remote, err := s.remotePortals(t)
			return t, remote, err
		}
		f, err := params(c)
		if err != nil {
			return err
		}
		disk := f.get("disk", pyNone)
		if c.Request().Method == http.MethodPut {
			image := s.startImageCheck(ctx, disk)
			return s.prechecked(ctx, func(doc *config.Doc) (func() error, error) {
				t, remote, err := peersOf(doc)
				if err != nil {
					return nil, err
				}
				return s.addTargetLun(c, doc, tIQN, disk, f, remote, len(t.Portals), image)
			})
		}
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		_, remote, err := peersOf(doc)
		if err != nil {
			return err
		}
		return s.removeTargetLun(c, doc, tIQN, disk, remote)
	}
}

// addTargetLun checks the request on doc and returns the action that
// commits it; image is the image check startImageCheck started for disk,
// and the target has portals portal gateways, remote the others.
func (s *server) addTargetLun(c echo.Context, doc *config.Doc, tIQN, disk string, f form, remote []string, portals int, image func() error) (func() error, error) {
	if err := doc.CheckTargetLunAdd(tIQN, disk, nil); err != nil {
		return nil, err
	}
	if err := image(); err != nil {
		return nil, err
	}
	lunID, err := lunIDField(f)
	if err != nil {
		return nil, err
	}
	if err := doc.CheckTargetLunAdd(tIQN, disk, lunID); err != nil {
		return nil, err
	}
	// owner and lun_id are settled by the commit, on the fresh document, so
	// concurrent adds spread ownership and never share an id; the peers,
	// called after it, get what was committed.
	vars := map[string]string{"disk": disk, "allocating_host": s.Gateway}
	return func() error {
		return s.answer(c, plan{
			after: remote, label: s.Gateway,
			method: http.MethodPut, endpoint: "_targetlun", element: pathSegments(tIQN), vars: vars,
			localFail: "Failed to add the LUN",
			mutation:  s.samePeers(tIQN, remote, portals, s.mapTargetLun(tIQN, disk, lunID, vars)),
		}, "Add target LUN mapping failed - ", "Target LUN mapping updated successfully")
	}, nil
}

// mapTargetLun exports disk through the target, with the owner and LUN id
// the document gives, which vars receives for the peers.
func (s *server) mapTargetLun(tIQN, disk string, lunID *int, vars map[string]string) rados.Mutation {
	return func(d *config.Doc) error {
		if err := d.CheckTargetLunAdd(tIQN, disk, lunID); err != nil {
			return err
		}
		owner, err := d.LunOwner(tIQN)
		if err != nil {
			return err
		}
		_, id, err := d.MapTargetLun(tIQN, disk, lunID, owner, s.now())
		if err != nil {
			return err
		}
		vars["owner"] = owner
		vars["lun_id"] = strconv.Itoa(id)
		return nil
	}
}

// startImageCheck runs requireImage for disk in the background when its
// pool and image are valid names (anything else is checked when waited
// for, after the document's checks): the RBD look-up then overlaps the
// document load. The returned function waits for its answer; a look-up for
// a request the document's checks refuse is never waited for, and only
// reads.
func (s *server) startImageCheck(ctx context.Context, disk string) func() error {
	pool, image, ok := strings.Cut(disk, "/")
	if !ok || config.ValidateSafeName(pool) != nil || config.ValidateSafeName(image) != nil {
		return func() error { return s.requireImage(ctx, disk) }
	}
	done := make(chan error, 1)
	go func() { done <- s.requireImage(ctx, disk) }()
	// waited for again when the request is checked a second time
	return sync.OnceValue(func() error { return <-done })
}

// requireImage refuses a disk whose image does not exist. Where the size
// can be read in the same image open (imageSizer), the LocalLIO gets it:
// the LUN's storage object needs it right after.
func (s *server) requireImage(ctx context.Context, disk string) error {
	defer stagesOf(ctx).since("image", time.Now())
	pool, image, _ := strings.Cut(disk, "/")
	exists := false
	if sz, ok := s.Images.(imageSizer); ok {
		n, err := sz.Size(ctx, pool, image)
		switch {
		case err == nil:
			exists = true
			s.imageSized(pool, image, n)
		case !errors.Is(err, rbd.ErrImageNotFound) && !errors.Is(err, rbd.ErrPoolNotFound):
			return fmt.Errorf("look up image %s: %w", disk, err)
		}
	} else {
		var err error
		exists, err = s.Images.Exists(ctx, pool, image)
		if err != nil && !errors.Is(err, rbd.ErrPoolNotFound) {
			return fmt.Errorf("look up image %s: %w", disk, err)
		}
	}
	if !exists {
		return httpErr(http.StatusBadRequest, "Image %s not found", disk)
	}
	return nil
}

func (s *server) removeTargetLun(c echo.Context, doc *config.Doc, tIQN, disk string, remote []string) error {
	if err := doc.CheckTargetLunRemove(tIQN, disk); err != nil {
		return err
	}
	// Upstream refuses a disk still mapped to a client inside every
	// gateway's internal call, so the refusal comes back through call_api's
	// wording from the first gateway asked; nothing was changed anywhere.
	if _, err := doc.Fork().UnmapTargetLun(tIQN, disk, s.now()); err != nil {
		first := s.Gateway
		if len(remote) > 0 {
			first = remote[0]
		}
		_, msg := s.classify(err)
		return httpErr(http.StatusBadRequest, "Delete target LUN mapping failed - failed on %s. Failed to remove the LUN - %s", first, msg)
	}
	return s.answer(c, plan{
		before: remote, label: s.Gateway,
		method: http.MethodDelete, endpoint: "_targetlun", element: pathSegments(tIQN),
		vars:      map[string]string{"disk": disk, "purge_host": s.Gateway},
		localFail: "Failed to remove the LUN",
		mutation:  s.unmapTargetLun(tIQN, disk),
	}, "Delete target LUN mapping failed - ", "Target LUN mapping updated successfully")
}

func (s *server) unmapTargetLun(tIQN, disk string) rados.Mutation {
	return func(d *config.Doc) error {
		changed, err := d.UnmapTargetLun(tIQN, disk, s.now())
		if err != nil {
			return err
		}
		if !changed {
			return errNoChange
		}
		return nil
	}
}

// lunFailure words an internal _targetlun refusal as upstream: a client
// mistake is a 400 with prefix - msg, anything else stays a 500.
func lunFailure(err error, prefix string) error {
	var he *httpError
	var rej *config.Rejection
	switch {
	case errors.As(err, &he):
		return err
	case errors.As(err, &rej):
		return httpErr(http.StatusBadRequest, "%s - %s", prefix, rej.Msg)
	}
	return internalFailure(err, prefix)
}

// internalTargetLun is upstream's _target_disk. The allocating host (PUT) or
// purge host (DELETE) commits; every other gateway converges its LIO to the
// document with the change applied in memory.
func (s *server) internalTargetLun() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN := param(c, "target_iqn")
		f, err := params(c)
		if err != nil {
			return err
		}
		disk, err := required(f, "disk")
		if err != nil {
			return err
		}
		doc, t, err := s.targetDoc(ctx, tIQN)
		if err != nil {
			return err
		}
		if doc.Disks[disk] == nil {
			return httpErr(http.StatusBadRequest, "Disk %s is not defined in the configuration", disk)
		}
		if c.Request().Method == http.MethodDelete {
			purge, err := required(f, "purge_host")
			if err != nil {
				return err
			}
			if err := s.applyHere(ctx, purge == s.Gateway, s.unmapTargetLun(tIQN, disk)); err != nil {
				return lunFailure(err, "Failed to remove the LUN")
			}
			return message(c, http.StatusOK, "LUN mapped")
		}
		if t.Portals[s.Gateway] == nil {
			// Upstream's GWTarget finds no local IP in ip_list: a request
			// sent to the wrong gateway, so a 400 rather than its 500.
			return httpErr(http.StatusBadRequest, "LUN map failed")
		}
		owner, err := required(f, "owner")
		if err != nil {
			return err
		}
		lunID, err := lunIDField(f)
		if err != nil {
			return err
		}
		committing := f.get("allocating_host", "") == s.Gateway
		err = s.applyHere(ctx, committing, func(d *config.Doc) error {
			changed, _, err := d.MapTargetLun(tIQN, disk, lunID, owner, s.now())
			if err != nil {
				return err
			}
			if !changed {
				return errNoChange
			}
			return nil
		})
		if err != nil {
			return lunFailure(err, "Failed to add the LUN")
		}
		return message(c, http.StatusOK, "LUN mapped")
	}
}

// gatewayInfo adds up this gateway's sessions over the targets it is a
// portal of.
func (s *server) gatewayInfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		if doc.Gateways[s.Gateway] == nil {
			return httpErr(http.StatusNotFound, "Gateway %s does not exist in configuration", s.Gateway)
		}
		total := 0
		for _, iqn := range sortedNames(doc.Targets) {
			t := doc.Targets[iqn]
			if t == nil || t.Portals[s.Gateway] == nil {
				continue
			}
			n, err := s.LIO.Sessions(ctx, iqn)
			if err != nil {
				return fmt.Errorf("sessions of %s: %w", iqn, err)
			}
			total += n
		}
		out := map[string]any{"num_sessions": total}
		if st, ok := s.LIO.(lioStatuser); ok {
			// an addition to upstream's reply: what this gateway's LIO
			// could not take (see ReconcileStatus)
			rs := st.ReconcileStatus()
			if rs.Errors == nil {
				rs.Errors = []ReconcileError{}
			}
			out["reconcile"] = rs
		}
		return writeJSON(c, http.StatusOK, out)
	}
}

// clientLun is upstream's clientlun: both verbs turn into a new image list
// (the client's disks plus or minus disk) sent with _clientlun PUT to every
// portal, this gateway first and committing.
func (s *server) clientLun() echo.HandlerFunc {
	return func(c echo.Context) error {
		tIQN, cIQN, err := s.clientIQNs(c)
		if err != nil {
			return err
		}
		f, err := params(c)
		if err != nil {
			return err
		}
		disk := f.get("disk", pyNone)
		return s.prechecked(c.Request().Context(), func(doc *config.Doc) (func() error, error) {
			t, remote, err := s.peersIn(doc, tIQN)
			if err != nil {
				return nil, err
			}
			vars := map[string]string{"committing_host": s.Gateway}
			m := s.clientLunMutation(tIQN, cIQN, disk, c.Request().Method == http.MethodPut, vars)
			// The same checks run again inside the commit, on the fresh
			// document; running them first refuses before any peer is asked.
			if err := m(doc); err != nil && !errors.Is(err, errNoChange) {
				return nil, err
			}
			return func() error {
				return s.answer(c, plan{
					after: remote, label: "localhost",
					method: http.MethodPut, endpoint: "_clientlun", element: pathSegments(tIQN, cIQN), vars: vars,
					localFail: "Client update failed",
					mutation:  s.samePeers(tIQN, remote, len(t.Portals), m),
				}, "client masking update ", "")
			}, nil
		})
	}
}

// clientLunMutation derives the image list from the document it is given,
// so concurrent changes to one client's LUNs are never lost, runs upstream's
// valid_client(mode='disk') on it, and applies it with updateClient. vars
// receives what the peers must be sent: the list and the client's current
// CHAP credentials in clear text, as upstream re-sends them.
func (s *server) clientLunMutation(tIQN, cIQN, disk string, add bool, vars map[string]string) rados.Mutation {
	return func(d *config.Doc) error {
		cl, err := targetClient(d, tIQN, cIQN)
		if err != nil {
			return err
		}
		list, ok := config.ClientLunsAfter(cl, disk, add)
		if !ok {
			return httpErr(http.StatusBadRequest, "disk not mapped to client")
		}
		imageList := strings.Join(list, ",")
		if err := validClientDisks(d, cl, cIQN, imageList); err != nil {
			return err
		}
		images := splitCSV(imageList)
		if hasDup(images) {
			// Re-adding a mapped disk passes valid_client and is refused by
			// the first gateway's update_client.
			return httpErr(http.StatusBadRequest, "client masking update failed on %s. Invalid client request", s.Gateway)
		}
		a, err := s.chap.decryptAuth(cl.Auth)
		if err != nil {
			return fmt.Errorf("client %s CHAP: %w", cIQN, err)
		}
		cr := credentials{Username: a.Username, Password: a.Password, MutualUsername: a.MutualUsername, MutualPassword: a.MutualPassword}
		for k, v := range cr.vars() {
			vars[k] = v
		}
		vars["image_list"] = imageList
		err = s.updateClient(tIQN, cIQN, images, cr, false)(d)
		var he *httpError
		if errors.As(err, &he) {
			return httpErr(he.Status, "client masking update failed on %s. %s", s.Gateway, he.Msg)
		}
		return err
	}
}

// validClientDisks is upstream's valid_client(mode='disk'), including its
// set arithmetic on the comma-separated list.
func validClientDisks(d *config.Doc, cl *config.Client, cIQN, imageList string) error {
	if cl.GroupName != "" {
		return httpErr(http.StatusBadRequest, "Unable to manage disks for '%s' - it belongs to group %s", cIQN, cl.GroupName)
	}
	rqst := map[string]bool{}
	for _, img := range strings.Split(imageList, ",") {
		rqst[img] = true
	}
	if len(rqst) > len(cl.Luns) {
		for img := range cl.Luns {
			if !rqst[img] {
				return httpErr(http.StatusBadRequest, "Invalid image list - it must contain existing disks AND any additions")
			}
		}
		for img := range rqst {
			if _, mapped := cl.Luns[img]; !mapped && d.Disks[img] == nil {
				return httpErr(http.StatusBadRequest, "Invalid image list - it defines new disks that do not current exist")
			}
		}
		return nil
	}
	if imageList == "" {
		return nil
	}
	for img := range rqst {
		if _, mapped := cl.Luns[img]; !mapped {
			return httpErr(http.StatusBadRequest, "Invalid image list (%s)", pySet(rqst))
		}
	}
	return nil
}

// pySet renders a set of strings like Python's repr, sorted so the message
// is stable (Python's own order is hash order).
func pySet(m map[string]bool) string {
	q := make([]string, 0, len(m))
	for k := range m {
		q = append(q, "'"+strings.ReplaceAll(strings.ReplaceAll(k, `\`, `\\`), "'", `\'`)+"'")
	}
	sort.Strings(q)
	return "{" + strings.Join(q, ", ") + "}"
}

// internalClientLun is upstream's _clientlun: GET returns the client's LUN
// map inside "message"; PUT is update_client, as _clientauth.
func (s *server) internalClientLun() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, cIQN := param(c, "target_iqn"), param(c, "client_iqn")
		f, err := params(c)
		if err != nil {
			return err
		}
		if c.Request().Method == http.MethodGet {
			doc, t, err := s.targetDoc(ctx, tIQN)
			if err != nil {
				return err
			}
			luns, ok := docPath(doc, "targets", tIQN, "clients", cIQN, "luns")
			if t.Clients[cIQN] == nil || !ok {
				return message(c, http.StatusNotFound, "Client does not exist")
			}
			return writeJSON(c, http.StatusOK, map[string]any{"message": luns})
		}
		imageList, err := required(f, "image_list")
		if err != nil {
			return err
		}
		committing, err := required(f, "committing_host")
		if err != nil {
			return err
		}
		return s.internalUpdateClient(c, tIQN, cIQN, imageList, committing, credentialsFrom(f))
	}
}

// clientInfoReply is the body of _clientinfo.
type clientInfoReply struct {
	Alias     string   `json:"alias"`
	State     string   `json:"state"`
	IPAddress []string `json:"ip_address"`
}

func (s *server) localClientInfo(ctx context.Context, tIQN, cIQN string) (clientInfoReply, error) {
	cs, err := s.LIO.ClientInfo(ctx, tIQN, cIQN)
	if err != nil {
		return clientInfoReply{}, fmt.Errorf("session of %s on %s: %w", cIQN, tIQN, err)
	}
	r := clientInfoReply{Alias: cs.Alias, State: strings.ToUpper(cs.State), IPAddress: []string{}}
	if r.State == "LOGGED_IN" {
		r.IPAddress = uniqueSorted(cs.Addresses)
	}
	return r, nil
}

func uniqueSorted(in []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// targetClient finds the client cIQN of the target tIQN in d, with the
// 404s of upstream's client updates.
func targetClient(d *config.Doc, tIQN, cIQN string) (*config.Client, error) {
	t, err := targetOf(d, tIQN)
	if err != nil {
		return nil, err
	}
	cl := t.Clients[cIQN]
	if cl == nil {
		return nil, httpErr(http.StatusNotFound, "Client '%s' does not exist", cIQN)
	}
	return cl, nil
}

func clientOf(doc *config.Doc, tIQN, cIQN string) error {
	t := doc.Targets[tIQN]
	if t == nil {
		return httpErr(http.StatusNotFound, "Target %s does not exist", tIQN)
	}
	if t.Clients[cIQN] == nil {
		return httpErr(http.StatusNotFound, "Client %s does not exist", cIQN)
	}
	return nil
}

// clientInfo asks every portal gateway for the client's session and merges
// the answers: the last non-empty alias, the gateways per state, the
// distinct addresses. Like upstream it fails as a whole when one gateway
// cannot answer.
func (s *server) clientInfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, cIQN := param(c, "target_iqn"), param(c, "client_iqn")
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		if err := clientOf(doc, tIQN, cIQN); err != nil {
			return err
		}
		alias := ""
		states := map[string][]string{}
		var ips []string
		for _, gw := range sortedNames(doc.Targets[tIQN].Portals) {
			var r clientInfoReply
			if gw == s.Gateway {
				// Upstream reaches itself over HTTP, so its own _ping
				// pre-flight applies to it too.
				if doc.Gateways[s.Gateway] != nil && !s.ISCSIListening() {
					return message(c, http.StatusServiceUnavailable, "failed, gateway(s) unavailable:"+gw+"(iscsi down, API up)")
				}
				if r, err = s.localClientInfo(ctx, tIQN, cIQN); err != nil {
					return err
				}
			} else {
				if ok, summary := s.peers.ready(ctx, []string{gw}); !ok {
					return message(c, http.StatusServiceUnavailable, "failed, gateway(s) unavailable:"+summary)
				}
				status, body, err := s.peers.call(ctx, http.MethodGet, gw, "/api/_clientinfo/"+pathSegments(tIQN, cIQN), nil)
				if err != nil {
					return err
				}
				if status != http.StatusOK {
					return message(c, status, "failed on "+gw+". "+remoteMessage(body))
				}
				if err := json.Unmarshal(body, &r); err != nil {
					return fmt.Errorf("_clientinfo reply of %s: %w", gw, err)
				}
			}
			if r.Alias != "" {
				alias = r.Alias
			}
			if r.State != "" {
				states[r.State] = append(states[r.State], gw)
			}
			ips = append(ips, r.IPAddress...)
		}
		return writeJSON(c, http.StatusOK, map[string]any{"alias": alias, "state": states, "ip_address": uniqueSorted(ips)})
	}
}

func (s *server) internalClientInfo() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, cIQN := param(c, "target_iqn"), param(c, "client_iqn")
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		if err := clientOf(doc, tIQN, cIQN); err != nil {
			return err
		}
		r, err := s.localClientInfo(ctx, tIQN, cIQN)
		if err != nil {
			return err
		}
		return writeJSON(c, http.StatusOK, r)
	}
}
