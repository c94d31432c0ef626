package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// splitCSV is upstream's handling of list fields: "" is the empty list.
func splitCSV(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

func authEqual(a, b config.Auth) bool {
	return a.Username == b.Username && a.Password == b.Password &&
		a.PasswordEncryptionEnabled == b.PasswordEncryptionEnabled &&
		a.MutualUsername == b.MutualUsername && a.MutualPassword == b.MutualPassword &&
		a.MutualPasswordEncryptionEnabled == b.MutualPasswordEncryptionEnabled
}

// checkClientCreate is upstream's valid_client(mode='create') on a document.
func (s *server) checkClientCreate(d *config.Doc, t *config.Target, clientIQN string) error {
	if t.Clients[clientIQN] != nil {
		return httpErr(http.StatusBadRequest, "A client with the name '%s' is already defined", clientIQN)
	}
	if t.Auth.Username != "" && t.Auth.Password != "" {
		return httpErr(http.StatusBadRequest, "Cannot create client because target CHAP authentication is enabled")
	}
	n := 0
	for _, g := range d.Gateways {
		if g != nil {
			n++
		}
	}
	if n < s.Settings.MinimumGateways {
		return httpErr(http.StatusBadRequest, "Clients can not be defined until a HA configuration has been defined (>%d gateways)", s.Settings.MinimumGateways)
	}
	return nil
}

// updateClient is the config half of upstream's update_client (spec 5.4):
// seed the client if missing, make its LUN map hold exactly images (ids as
// config.SetClientLuns picks them), store its CHAP block, and switch the
// target to ACL mode, which any client ACL forces. create re-checks the
// coordinator's create rules on the fresh document.
func (s *server) updateClient(targetIQN, clientIQN string, images []string, cr credentials, create bool) rados.Mutation {
	return func(d *config.Doc) error {
		t, err := targetOf(d, targetIQN)
		if err != nil {
			return err
		}
		if create {
			if err := s.checkClientCreate(d, t, clientIQN); err != nil {
				return err
			}
		}
		changed := false
		c := t.Clients[clientIQN]
		if c == nil {
			if c, err = d.AddClient(targetIQN, clientIQN, s.now()); err != nil {
				return err
			}
			changed = true
		}
		lunsChanged, err := d.SetClientLuns(targetIQN, clientIQN, images, s.now())
		if err != nil {
			var rej *config.Rejection
			if errors.As(err, &rej) {
				return httpErr(http.StatusBadRequest, "Client update failed - %s", rej.Msg)
			}
			return err
		}
		changed = changed || lunsChanged
		a, err := s.chap.authBlock(cr, c.Auth)
		if err != nil {
			return err
		}
		if !authEqual(a, c.Auth) {
			if err := d.SetClientAuth(targetIQN, clientIQN, a, s.now()); err != nil {
				return err
			}
			changed = true
		}
		if !t.ACLEnabled {
			if err := d.SetACLEnabled(targetIQN, true, s.now()); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return errNoChange
		}
		return nil
	}
}

func (s *server) client() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, cIQN, err := s.clientIQNs(c)
		if err != nil {
			return err
		}
		if _, err := params(c); err != nil {
			return err
		}
		element := pathSegments(tIQN, cIQN)
		if c.Request().Method == http.MethodPut {
			return s.prechecked(ctx, func(doc *config.Doc) (func() error, error) {
				t, remote, err := s.peersIn(doc, tIQN)
				if err != nil {
					return nil, err
				}
				if err := s.checkClientCreate(doc, t, cIQN); err != nil {
					return nil, err
				}
				return func() error {
					return s.answer(c, plan{
						after: remote, label: "localhost",
						method: http.MethodPut, endpoint: "_client", element: element,
						vars:      map[string]string{"committing_host": s.Gateway},
						localFail: "Client update failed",
						mutation:  s.samePeers(tIQN, remote, len(t.Portals), s.updateClient(tIQN, cIQN, nil, credentials{}, true)),
					}, "client create/update ", "")
				}, nil
			})
		}

		_, t, err := s.targetDoc(ctx, tIQN)
		if err != nil {
			return err
		}
		remote, err := s.remotePortals(t)
		if err != nil {
			return err
		}
		vars := map[string]string{"committing_host": s.Gateway}
		cl := t.Clients[cIQN]
		if cl == nil {
			return httpErr(http.StatusBadRequest, "%s is not defined yet - nothing to delete", cIQN)
		}
		if cl.GroupName != "" {
			return httpErr(http.StatusBadRequest, "Unable to delete '%s' - it belongs to group %s", cIQN, cl.GroupName)
		}
		state, err := s.LIO.ClientState(ctx, tIQN, cIQN)
		if err != nil {
			return err
		}
		if state == "LOGGED_IN" {
			return httpErr(http.StatusBadRequest, "Client '%s' is logged in to %s- unable to delete until it's logged out", cIQN, tIQN)
		}
		return s.answer(c, plan{
			before: remote, label: "localhost",
			method: http.MethodDelete, endpoint: "_client", element: element, vars: vars,
			localFail: "Failed to remove client",
			mutation:  removeClient(tIQN, cIQN, s.now),
		}, "client delete ", "")
	}
}

func removeClient(tIQN, cIQN string, now func() time.Time) rados.Mutation {
	return func(d *config.Doc) error {
		t, err := targetOf(d, tIQN)
		if err != nil {
			return err
		}
		if t.Clients[cIQN] == nil {
			return errNoChange
		}
		err = d.RemoveClient(tIQN, cIQN, now())
		if errors.Is(err, config.ErrConflict) {
			return httpErr(http.StatusBadRequest, "Unable to delete '%s' - it belongs to group %s", cIQN, t.Clients[cIQN].GroupName)
		}
		return err
	}
}

func (s *server) internalClient() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, cIQN := param(c, "target_iqn"), param(c, "client_iqn")
		f, err := params(c)
		if err != nil {
			return err
		}
		switch c.Request().Method {
		case http.MethodGet:
			doc, _, err := s.targetView(ctx, tIQN)
			if err != nil {
				return err
			}
			return writeDocEntry(c, doc, "Client does not exist", "targets", tIQN, "clients", cIQN)
		case http.MethodPut:
			if _, err := config.NormalizeIQN(cIQN); err != nil {
				return httpErr(http.StatusBadRequest, "'%s' is not a valid name for iSCSI", cIQN)
			}
			committing, err := required(f, "committing_host")
			if err != nil {
				return err
			}
			return s.internalUpdateClient(c, tIQN, cIQN, f.get("image_list", ""), committing, credentialsFrom(f))
		}
		committing, err := required(f, "committing_host")
		if err != nil {
			return err
		}
		_, t, err := s.targetView(ctx, tIQN)
		if err != nil {
			return err
		}
		if t.Clients[cIQN] == nil {
			return message(c, http.StatusNotFound, "Client does not exist!")
		}
		if err := s.applyHere(ctx, committing == s.Gateway, removeClient(tIQN, cIQN, s.now)); err != nil {
			s.Logger.Error("removing client", "target", tIQN, "client", cIQN, "err", err)
			return internalFailure(err, "Failed to remove client")
		}
		return message(c, http.StatusOK, "Client deleted ok")
	}
}

func (s *server) internalUpdateClient(c echo.Context, tIQN, cIQN, imageList, committing string, cr credentials) error {
	images := splitCSV(imageList)
	if _, err := config.NormalizeIQN(cIQN); err != nil || hasDup(images) {
		return httpErr(http.StatusBadRequest, "Invalid client request")
	}
	err := s.applyHere(c.Request().Context(), committing == s.Gateway, s.updateClient(tIQN, cIQN, images, cr, false))
	if err != nil {
		return internalFailure(err, "Client update failed")
	}
	return message(c, http.StatusOK, "Client configured successfully")
}

func hasDup(s []string) bool {
	seen := map[string]bool{}
	for _, v := range s {
		if seen[v] {
			return true
		}
		seen[v] = true
	}
	return false
}

func (s *server) clientAuth() echo.HandlerFunc {
	return func(c echo.Context) error {
		tIQN, cIQN, err := s.clientIQNs(c)
		if err != nil {
			return err
		}
		f, err := params(c)
		if err != nil {
			return err
		}
		return s.prechecked(c.Request().Context(), func(doc *config.Doc) (func() error, error) {
			t, remote, err := s.peersIn(doc, tIQN)
			if err != nil {
				return nil, err
			}
			if t.Clients[cIQN] == nil {
				return nil, httpErr(http.StatusNotFound, "Client '%s' does not exist", cIQN)
			}
			cr := credentialsFrom(f)
			if msg := cr.valid(); msg != "" {
				return nil, httpErr(http.StatusBadRequest, "%s", msg)
			}
			vars := cr.vars()
			vars["committing_host"] = s.Gateway
			return func() error {
				return s.answer(c, plan{
					after: remote, label: "localhost",
					method: http.MethodPut, endpoint: "_clientauth", element: pathSegments(tIQN, cIQN), vars: vars,
					localFail: "Client update failed",
					mutation: s.samePeers(tIQN, remote, len(t.Portals), func(d *config.Doc) error {
						cl, err := targetClient(d, tIQN, cIQN)
						if err != nil {
							return err
						}
						// The LUNs are whatever they are now: a concurrent
						// clientlun change must not be undone by an auth
						// change, and the peers get the same list.
						images := sortedNames(cl.Luns)
						vars["image_list"] = strings.Join(images, ",")
						return s.updateClient(tIQN, cIQN, images, cr, false)(d)
					}),
				}, "client auth ", "")
			}, nil
		})
	}
}

func (s *server) internalClientAuth() echo.HandlerFunc {
	return func(c echo.Context) error {
		f, err := params(c)
		if err != nil {
			return err
		}
		imageList, err := required(f, "image_list")
		if err != nil {
			return err
		}
		committing, err := required(f, "committing_host")
		if err != nil {
			return err
		}
		return s.internalUpdateClient(c, param(c, "target_iqn"), param(c, "client_iqn"), imageList, committing, credentialsFrom(f))
	}
}

// docPath returns the generic (JSON) form of a part of the document (see
// config.Doc.Entry).
func docPath(doc *config.Doc, keys ...string) (any, bool) { return doc.Entry(keys...) }
