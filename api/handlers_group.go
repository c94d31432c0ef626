package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

func (s *server) applyGroup(tIQN, name string, members, disks []string) rados.Mutation {
	return func(d *config.Doc) error {
		changed, err := d.ApplyGroup(tIQN, name, members, disks, s.now())
		if err != nil {
			var ge *config.GroupError
			if errors.As(err, &ge) {
				s.Logger.Info("host group request refused", "target", tIQN, "group", name, "reason", ge.Detail)
			}
			return err
		}
		if !changed {
			return errNoChange
		}
		return nil
	}
}

func (s *server) hostGroup() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, err := s.iqnParam(c, "target_iqn")
		if err != nil {
			return err
		}
		name := param(c, "group_name")
		f, doc, t, remote, err := s.targetPeers(c, tIQN)
		if err != nil {
			return err
		}
		action := strings.ToLower(f.get("action", "add"))
		if action != "add" && action != "remove" {
			return httpErr(http.StatusMethodNotAllowed, "Invalid hostgroup action specified")
		}
		g := t.Groups[name]
		switch c.Request().Method {
		case http.MethodGet:
			return writeDocEntry(c, doc, "Group name does not exist", "targets", tIQN, "groups", name)
		case http.MethodDelete:
			if g == nil {
				return httpErr(http.StatusNotFound, "Group name '%s' not found", name)
			}
			// Upstream purges the config only; LIO mappings stay.
			_, err := s.commit(ctx, func(d *config.Doc) error { return d.RemoveGroup(tIQN, name, s.now()) })
			if err != nil {
				_, msg := s.classify(err)
				return httpErr(http.StatusBadRequest, "Delete of group '%s' failed : %s", name, msg)
			}
			return message(c, http.StatusOK, fmt.Sprintf("Group definition '%s' deleted", name))
		}

		if g == nil {
			if err := config.ValidateSafeName(name); err != nil {
				return invalidName("group", "group_name", name, err)
			}
		}
		var curMembers, curDisks []string
		if g != nil {
			curMembers = g.Members
			curDisks = sortedNames(g.Disks)
		}
		members, disks := splitCSV(f.get("members", "")), splitCSV(f.get("disks", ""))
		if err := checkGroupChange(g, name, action, members, disks); err != nil {
			return err
		}
		if action == "add" {
			members = union(curMembers, members)
			disks = union(curDisks, disks)
		} else {
			members = minus(curMembers, members)
			disks = minus(curDisks, disks)
		}
		vars := map[string]string{"members": strings.Join(members, ","), "disks": strings.Join(disks, ",")}
		text, status, err := s.coordinate(ctx, plan{
			after: remote, label: "localhost",
			method: http.MethodPut, endpoint: "_hostgroup", element: pathSegments(tIQN, name), vars: vars,
			localFail: "Group request failed",
			mutation:  s.applyGroup(tIQN, name, members, disks),
		})
		var ge *config.GroupError
		if errors.As(err, &ge) {
			// Upstream validates inside the local internal call, so the
			// refusal comes back through call_api's wording.
			return message(c, http.StatusBadRequest, fmt.Sprintf("hostgroup create/update failed on %s. %s", s.Gateway, ge.Msg))
		}
		if err != nil {
			return err
		}
		return message(c, status, "hostgroup create/update "+text)
	}
}

func (s *server) internalHostGroup() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		tIQN, name := param(c, "target_iqn"), param(c, "group_name")
		f, doc, _, err := s.loadTarget(c, tIQN)
		if err != nil {
			return err
		}
		switch c.Request().Method {
		case http.MethodGet:
			return writeDocEntry(c, doc, "Group name does not exist", "targets", tIQN, "groups", name)
		case http.MethodPut:
			members, disks := splitCSV(f.get("members", "")), splitCSV(f.get("disks", ""))
			// Whichever gateway first finds the config differs commits, as
			// upstream; the others only converge their LIO.
			if err := s.applyHere(ctx, true, s.applyGroup(tIQN, name, members, disks)); err != nil {
				var ge *config.GroupError
				if errors.As(err, &ge) {
					return httpErr(http.StatusBadRequest, "%s", ge.Msg)
				}
				return internalFailure(err, "Group request failed")
			}
			return message(c, http.StatusOK, "Group created/updated")
		}
		_, err = s.commit(ctx, func(d *config.Doc) error { return d.RemoveGroup(tIQN, name, s.now()) })
		if err != nil {
			var rej *config.Rejection
			if errors.As(err, &rej) {
				return httpErr(http.StatusBadRequest, "%s", rej.Msg)
			}
			return err
		}
		return message(c, http.StatusOK, fmt.Sprintf("Group '%s' removed", name))
	}
}

// checkGroupChange refuses what upstream silently folded away: a member or
// disk listed twice (upstream refused duplicates only on its internal
// route, its coordinator de-duplicated them first), and a removal of what
// the group does not hold, or from a group that does not exist, which
// upstream answered 200 without changing anything. The texts are
// upstream's group validation messages.
func checkGroupChange(g *config.Group, name, action string, members, disks []string) error {
	if dup := firstDuplicate(members); dup != "" {
		return httpErr(http.StatusBadRequest, "Member must contain unique clients - no duplication")
	}
	if dup := firstDuplicate(disks); dup != "" {
		return httpErr(http.StatusBadRequest, "Disks must be unique - no duplication ('%s' is listed twice)", dup)
	}
	if action != "remove" {
		return nil
	}
	if g == nil {
		return httpErr(http.StatusNotFound, "Group name '%s' not found", name)
	}
	for _, m := range members {
		if !slices.Contains(g.Members, m) {
			return httpErr(http.StatusBadRequest, "client '%s' is not a member of %s", m, name)
		}
	}
	for _, d := range disks {
		if _, ok := g.Disks[d]; !ok {
			return httpErr(http.StatusBadRequest, "disk '%s' is not in the group", d)
		}
	}
	return nil
}

func firstDuplicate(list []string) string {
	seen := make(map[string]bool, len(list))
	for _, v := range list {
		if seen[v] {
			return v
		}
		seen[v] = true
	}
	return ""
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

func minus(a, b []string) []string {
	out := []string{}
	for _, v := range a {
		if !slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	return out
}
