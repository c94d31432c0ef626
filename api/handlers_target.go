package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
	"ceph-iscsi/settings"
)

// errNoChange aborts a commit whose mutation found nothing to do, so the
// epoch is not bumped and peers see no spurious change.
var errNoChange = errors.New("no change")

// commit writes m, unless the result cannot be applied to this gateway's
// LIO (see checked), and returns the resulting document.
func (s *server) commit(ctx context.Context, m rados.Mutation) (*config.Doc, error) {
	doc, _, err := s.commitThen(ctx, m)
	return doc, err
}

// commitThen is commit, and returns the reconcile of the document it
// returns: s.reconcile, or the one the commit's check handed back, which
// reuses the check's work on that document (see checked).
func (s *server) commitThen(ctx context.Context, m rados.Mutation) (*config.Doc, func(context.Context, *config.Doc) error, error) {
	var then func(context.Context, *config.Doc) error
	doc, err := s.Store.Commit(ctx, s.checked(ctx, stagesOf(ctx).timedChange(m), &then))
	if errors.Is(err, errNoChange) {
		doc, err := s.load(ctx)
		return doc, s.reconcile, err
	}
	if err != nil {
		return nil, nil, err
	}
	if then == nil {
		return doc, s.reconcile, nil
	}
	// as s.reconcile: a client that disconnects must not stop it
	return doc, func(ctx context.Context, d *config.Doc) error { return then(context.WithoutCancel(ctx), d) }, nil
}

// preview applies m to the current document in memory only: what a gateway
// that does not commit must converge to, since the coordinator may commit
// after, not before, asking it (Python coordinators do, for target controls
// and discovery auth).
func (s *server) preview(ctx context.Context, m rados.Mutation) (*config.Doc, error) {
	doc, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	if err := m(doc); err != nil && !errors.Is(err, errNoChange) {
		return nil, err
	}
	return doc, nil
}

// applyHere is the body of every internal route: commit (when this gateway is
// the committing host) or preview, then converge local LIO.
func (s *server) applyHere(ctx context.Context, committing bool, m rados.Mutation) error {
	var doc *config.Doc
	var err error
	reconcile := s.reconcile
	if committing {
		doc, reconcile, err = s.commitThen(ctx, m)
	} else {
		doc, err = s.preview(ctx, m)
	}
	if err != nil {
		return err
	}
	return reconcile(ctx, doc)
}

func parseControls(f form) (settings.Controls, error) {
	text, ok := f.lookup("controls")
	if !ok {
		return nil, nil
	}
	ctl, err := settings.ParseTargetControls(text)
	if err != nil {
		return nil, httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
	}
	return ctl, nil
}

func (s *server) target() echo.HandlerFunc {
	return func(c echo.Context) error {
		iqn, err := s.iqnParam(c, "target_iqn")
		if err != nil {
			return err
		}
		f, err := params(c)
		if err != nil {
			return err
		}
		if c.Request().Method == http.MethodDelete {
			return s.deleteTarget(c, iqn)
		}
		mode, hasMode := f.lookup("mode")
		if hasMode && mode != "reconfigure" {
			return httpErr(http.StatusBadRequest, "Unexpected mode provided for %s - %s", iqn, mode)
		}
		controls, err := parseControls(f)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		if !hasMode {
			// Upstream ignores controls on create; the Dashboard follows
			// up with a reconfigure.
			doc, err := s.commit(ctx, func(d *config.Doc) error {
				if d.Targets[iqn] != nil {
					return errNoChange
				}
				_, err := d.AddTarget(iqn, s.now())
				return err
			})
			if err != nil {
				return err
			}
			if err := s.reconcile(ctx, doc); err != nil {
				// committed: the answer says so (see coordinate)
				s.Logger.Error("committed target not applied to local LIO (the daemon retries)", "target", iqn, "err", err)
				return message(c, http.StatusOK, fmt.Sprintf("Target defined successfully (committed); not applied to LIO on %s yet: iscsi target 'init' process failed for %s - %v. "+
					"The gateway converges from the committed configuration: do not repeat the request", s.Gateway, iqn, err))
			}
			return message(c, http.StatusOK, "Target defined successfully")
		}
		doc, err := s.load(ctx)
		if err != nil {
			return err
		}
		t := doc.Targets[iqn]
		if t == nil {
			return httpErr(http.StatusBadRequest, "Target: %s is not defined.", iqn)
		}
		if len(controls) == 0 {
			return message(c, http.StatusOK, "Target reconfigured.")
		}
		remote, err := s.remotePortals(t)
		if err != nil {
			return err
		}
		vars := map[string]string{"mode": mode}
		if v, ok := f.lookup("controls"); ok {
			vars["controls"] = v
		}
		return s.answer(c, plan{
			after: remote, label: s.Gateway,
			method: http.MethodPut, endpoint: "_target", element: pathSegments(iqn), vars: vars,
			localFail: "Target reconfigure failed",
			mutation: func(d *config.Doc) error {
				t := d.Targets[iqn]
				if t == nil {
					return httpErr(http.StatusBadRequest, "Target: %s is not defined.", iqn)
				}
				merged, err := s.Settings.MergeTargetControls(t.Controls, controls)
				if err != nil {
					return httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
				}
				return d.SetTargetControls(iqn, merged, s.now())
			},
		}, "", "Target reconfigured.")
	}
}

// checkTargetEmpty stands in for upstream's check of the local LIO target:
// a target still exporting disks or holding clients is not torn down.
func checkTargetEmpty(t *config.Target) error {
	if len(t.Portals) > 0 && (len(t.Clients) > 0 || len(t.Disks) > 0) {
		return httpErr(http.StatusBadRequest, "Clients(%d) and disks(%d) must be removed before the gateways", len(t.Clients), len(t.Disks))
	}
	return nil
}

func (s *server) deleteTarget(c echo.Context, iqn string) error {
	ctx := c.Request().Context()
	_, t, err := s.targetDoc(ctx, iqn)
	if err != nil {
		return err
	}
	if err := checkTargetEmpty(t); err != nil {
		return err
	}
	var others []string
	for _, gw := range sortedNames(t.Portals) {
		if gw != s.Gateway {
			others = append(others, gw)
		}
	}
	// Each peer removes its own portal; this gateway goes last and removes
	// whatever is left, as upstream's last recipient does.
	return s.answer(c, plan{
		before: others, label: s.Gateway,
		method: http.MethodDelete, endpoint: "_target", element: pathSegments(iqn),
		localFail: "Failed to remove the target",
		mutation: func(d *config.Doc) error {
			t := d.Targets[iqn]
			if t == nil {
				return errNoChange
			}
			if err := checkTargetEmpty(t); err != nil {
				return err
			}
			return d.RemoveTargetGateway(iqn, s.Gateway, s.now())
		},
	}, "", "Target deleted.")
}

func (s *server) internalTarget() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		iqn := param(c, "target_iqn")
		f, err := params(c)
		if err != nil {
			return err
		}
		if c.Request().Method == http.MethodPut {
			mode := f.get("mode", "None")
			if mode != "reconfigure" {
				return httpErr(http.StatusBadRequest, "Unexpected mode provided for %s - %s", iqn, mode)
			}
			controls, err := parseControls(f)
			if err != nil {
				return err
			}
			err = s.applyHere(ctx, false, func(d *config.Doc) error {
				t, err := targetOf(d, iqn)
				if err != nil {
					return err
				}
				merged, err := s.Settings.MergeTargetControls(t.Controls, controls)
				if err != nil {
					return httpErr(http.StatusBadRequest, "Unexpected or invalid controls - %v", err)
				}
				return d.SetTargetControls(iqn, merged, s.now())
			})
			if err != nil {
				return internalFailure(err, "")
			}
			return message(c, http.StatusOK, "Target reconfigured successfully")
		}
		err = s.applyHere(ctx, true, func(d *config.Doc) error {
			t, err := targetOf(d, iqn)
			if err != nil {
				return err
			}
			if err := checkTargetEmpty(t); err != nil {
				return err
			}
			return d.RemoveTargetGateway(iqn, s.Gateway, s.now())
		})
		if err != nil {
			return internalFailure(err, "")
		}
		return message(c, http.StatusOK, "Gateway removed successfully")
	}
}

// internalFailure keeps client-caused refusals as they are and words a local
// apply failure as upstream's internal route does: a 500 with prefix - err.
func internalFailure(err error, prefix string) error {
	var he *httpError
	var rej *config.Rejection
	var ge *config.GroupError
	if errors.As(err, &he) || errors.As(err, &rej) || errors.As(err, &ge) || errors.As(err, new(*config.NameError)) {
		return err
	}
	if prefix == "" {
		return &httpError{Status: http.StatusInternalServerError, Msg: err.Error()}
	}
	return &httpError{Status: http.StatusInternalServerError, Msg: fmt.Sprintf("%s - %v", prefix, err)}
}

func (s *server) discoveryAuth() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		f, err := params(c)
		if err != nil {
			return err
		}
		cr := credentialsFrom(f)
		if msg := cr.valid(); msg != "" {
			return httpErr(http.StatusBadRequest, "%s", msg)
		}
		// Upstream commits discovery auth whatever the fan-out's outcome,
		// so the config is written before the peers are even pinged.
		doc, err := s.commit(ctx, func(d *config.Doc) error {
			a, err := s.chap.authBlock(cr, d.DiscoveryAuth)
			if err != nil {
				return err
			}
			d.DiscoveryAuth = a
			return nil
		})
		if err != nil {
			return err
		}
		var others []string
		for _, gw := range sortedNames(doc.Gateways) {
			if gw != s.Gateway {
				others = append(others, gw)
			}
		}
		return s.answer(c, plan{
			after: others, label: s.Gateway,
			method: http.MethodPut, endpoint: "_discoveryauth", element: "", vars: cr.vars(),
			localFail: "Discovery auth update failed",
			commit:    func(context.Context) (*config.Doc, error) { return doc, nil },
		}, "discovery auth ", "")
	}
}

func (s *server) internalDiscoveryAuth() echo.HandlerFunc {
	return func(c echo.Context) error {
		f, err := params(c)
		if err != nil {
			return err
		}
		cr := credentialsFrom(f)
		err = s.applyHere(c.Request().Context(), false, func(d *config.Doc) error {
			d.DiscoveryAuth = config.Auth{Username: cr.Username, Password: cr.Password, MutualUsername: cr.MutualUsername, MutualPassword: cr.MutualPassword}
			if cr.Username == "" {
				d.DiscoveryAuth = config.EmptyAuth()
			}
			return nil
		})
		if err != nil {
			return internalFailure(err, "")
		}
		return message(c, http.StatusOK, "OK")
	}
}

func (s *server) targetAuth() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		iqn := param(c, "target_iqn")
		f, err := params(c)
		if err != nil {
			return err
		}
		action, hasAction := f.lookup("action")
		if action != "" && action != "disable_acl" && action != "enable_acl" {
			return httpErr(http.StatusBadRequest, "Invalid auth %s", action)
		}
		_, t, err := s.targetDoc(ctx, iqn)
		if err != nil {
			return err
		}
		cr := credentialsFrom(f)
		if err := checkTargetAuth(t, action, cr); err != nil {
			return err
		}
		remote, err := s.remotePortals(t)
		if err != nil {
			return err
		}
		vars := cr.vars()
		vars["committing_host"] = s.Gateway
		if hasAction {
			vars["action"] = action
		}
		text, status, err := s.coordinate(ctx, plan{
			after: remote, label: s.Gateway,
			method: http.MethodPut, endpoint: "_targetauth", element: pathSegments(iqn), vars: vars,
			localFail: "Target auth update failed",
			mutation:  s.targetAuthMutation(iqn, action, cr, true),
		})
		if err != nil {
			return err
		}
		shown := action
		if shown == "" {
			shown = "None"
		}
		return message(c, status, fmt.Sprintf("target auth %s - %s", shown, text))
	}
}

func checkTargetAuth(t *config.Target, action string, cr credentials) error {
	if action == "disable_acl" && len(t.Clients) > 0 {
		return httpErr(http.StatusBadRequest, "Cannot disable ACL authentication because target has clients")
	}
	if action == "enable_acl" && t.Auth.Username != "" && t.Auth.Password != "" {
		return httpErr(http.StatusBadRequest, "Cannot enable ACL authentication because target CHAP authentication is enabled")
	}
	if cr.Username != "" && cr.Password != "" && t.ACLEnabled {
		return httpErr(http.StatusBadRequest, "Cannot enable target CHAP authentication because ACL authentication is enabled")
	}
	if msg := cr.valid(); msg != "" {
		return httpErr(http.StatusBadRequest, "%s", msg)
	}
	return nil
}

// targetAuthMutation sets the ACL mode (with an action) or the target CHAP
// block (without). recheck re-applies the coordinator's rules to the fresh
// document, so a concurrent change cannot slip a forbidden mix in.
func (s *server) targetAuthMutation(iqn, action string, cr credentials, recheck bool) rados.Mutation {
	return func(d *config.Doc) error {
		t, err := targetOf(d, iqn)
		if err != nil {
			return err
		}
		if recheck {
			if err := checkTargetAuth(t, action, cr); err != nil {
				return err
			}
		}
		if action != "" {
			return d.SetACLEnabled(iqn, action == "enable_acl", s.now())
		}
		a, err := s.chap.authBlock(cr, t.Auth)
		if err != nil {
			return err
		}
		return d.SetTargetAuth(iqn, a, s.now())
	}
}

func (s *server) internalTargetAuth() echo.HandlerFunc {
	return func(c echo.Context) error {
		iqn := param(c, "target_iqn")
		f, err := params(c)
		if err != nil {
			return err
		}
		committing, err := required(f, "committing_host")
		if err != nil {
			return err
		}
		for _, k := range []string{"username", "password", "mutual_username", "mutual_password"} {
			if _, err := required(f, k); err != nil {
				return err
			}
		}
		action := f.get("action", "")
		if action != "disable_acl" && action != "enable_acl" {
			action = ""
		}
		err = s.applyHere(c.Request().Context(), committing == s.Gateway, s.targetAuthMutation(iqn, action, credentialsFrom(f), false))
		if err != nil {
			return internalFailure(err, "")
		}
		return message(c, http.StatusOK, "OK")
	}
}
