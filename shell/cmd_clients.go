package shell

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The commands of a target's hosts, of a client, and of a client's LUN (upstream's
// client.py Clients, Client and MappedLun).

func init() {
	register(&Command{Kind: KindClients, Name: "create",
		Params:  []Param{{Name: "client_iqn", Required: true}},
		Summary: "Define a client (initiator) of the target.",
		Help: `Clients may be created using the 'create' sub-command. The initial
definition will be added to each gateway without any authentication
set. Once a client is created the admin is automatically placed in the
context of the new client definition for auth and disk configuration
operations.

e.g.
> create <client_iqn>`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			iqn, err := normalizeIQN(a.Get("client_iqn"))
			if err != nil {
				return err
			}
			if err := put(ctx, e, local(e, "client", n.Target, iqn), nil); err != nil {
				return fail("Failed: ", err)
			}
			e.Refresh()
			if err := ok(e); err != nil {
				return err
			}
			e.Cd(n.Path() + "/" + iqn)
			return nil
		}})
	register(&Command{Kind: KindClients, Name: "delete",
		Params:  []Param{{Name: "client_iqn", Required: true, Complete: completeClients}},
		Summary: "Delete a client from the configuration.",
		Help: `You may delete a client from the configuration, but you must ensure
the client has logged out of the iscsi gateways. Attempting to delete a
client that has an open session will fail the request

e.g.
delete <client_iqn>`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			iqn, err := normalizeIQN(a.Get("client_iqn"))
			if err != nil {
				return err
			}
			if err := del(ctx, e, local(e, "client", n.Target, iqn), nil); err != nil {
				return fail("", err)
			}
			e.Refresh()
			return ok(e)
		}})
	register(&Command{Kind: KindClients, Name: "auth",
		Params:  []Param{{Name: "action", Complete: fixed("nochap", "enable_acl", "disable_acl")}},
		Summary: "Disable/enable ACL authentication or clear CHAP settings for all clients on the target.",
		Help: `Disable/enable ACL authentication or clear CHAP settings for all clients on the target.

- disable_acl ... Disable initiator name based ACL authentication.

- enable_acl .... Enable initiator name based ACL authentication.

- nochap ........ Remove chap authentication for all clients across all gateways.
                  Initiator name based authentication will then be used.

e.g.
auth disable_acl`,
		Run: runClientsAuth})

	register(&Command{Kind: KindClient, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.", Run: runClientInfo})
	register(&Command{Kind: KindClient, Name: "auth", Params: chapParams,
		Summary: "Set or clear the client's CHAP credentials.",
		Help: `Client authentication can be set to use CHAP/CHAP_MUTUAL by supplying
username, password, mutual_username, mutual_password

e.g.
auth username=<user> password=<pass> mutual_username=<m_user> mutual_password=<m_pass>

` + chapHelp + `

WARNING1: Using unsupported special characters may result in truncation,
          resulting in failed logins.

WARNING2: If there are multiple clients, CHAP must be enabled for all
clients or  disabled for all clients. gwcli does not support mixing CHAP
clients with IQN ACL clients.`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			form, err := chapForm(a, "To set authentication, specify username=<user> password=<password> "+
				"[mutual_username]=<user> [mutual_password]=<password> or nochap")
			if err != nil {
				return err
			}
			return setClientAuth(ctx, e, n.Target, n.Client, form)
		}})
	register(&Command{Kind: KindClient, Name: "disk",
		Params: []Param{{Name: "action", Default: "add", Complete: fixed("add", "remove")},
			{Name: "disk", Complete: completeDisks}, {Name: "size"}},
		Summary: "Add or remove a disk of the client.",
		Help: `Disks can be added or removed from the client one at a time using
the 'disk' sub-command. Note that if the disk does not currently exist
in the configuration, the cli will attempt to create it for you.

e.g.
disk add <pool_name/image_name> <size>
disk remove <pool_name/image_name>

Adding a disk will result in the disk occupying the client's next
available lun id. Once allocated removing a LUN will not change the
LUN id associations for the client.

Note that if the client is a member of a host group, disk management
*must* be performed at the group level. Attempting to add/remove disks
at the client level will fail.`,
		Run: runClientDisk})

	register(&Command{Kind: KindMappedLun, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.",
		Run: func(ctx context.Context, e *Env, n *Node, _ Args) error {
			s, err := snap(ctx, e)
			if err != nil {
				return err
			}
			owner := ""
			if d := s.Config.Disks[n.Disk()]; d != nil && d.Owner != nil {
				owner = *d.Owner
			}
			size, sizeH := uint64(0), ""
			if img, found := s.Images[n.Disk()]; found {
				size, sizeH = img.Size, humanSize(img.Size)
			}
			return showInfo(e, []infoField{{"rbd_name", n.Disk()}, {"owner", owner}, {"size", size},
				{"size_h", sizeH}, {"lun_id", n.LunID}})
		}})
}

func setClientAuth(ctx context.Context, e *Env, tgt, client string, form url.Values) error {
	if err := put(ctx, e, local(e, "clientauth", tgt, client), form); err != nil {
		return fail("Failed to update the client's auth: ", err)
	}
	e.Refresh()
	return ok(e)
}

func runClientsAuth(ctx context.Context, e *Env, n *Node, a Args) error {
	action := a.Get("action")
	if action == "" {
		return refuse("Missing auth argument. Use 'auth nochap|disable_acl|enable_acl'")
	}
	if action != "nochap" && action != "enable_acl" && action != "disable_acl" {
		return refuse("Invalid auth argument. Use 'auth nochap|disable_acl|enable_acl'")
	}
	if action == "nochap" {
		_, t, err := snapTarget(ctx, e, n.Target)
		if err != nil {
			return err
		}
		// each client in turn, as upstream: a failure does not stop the others
		var errs []error
		for _, c := range sortedKeys(t.Clients) {
			form := url.Values{"username": {""}, "password": {""}, "mutual_username": {""}, "mutual_password": {""}}
			if err := setClientAuth(ctx, e, n.Target, c, form); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	if err := put(ctx, e, local(e, "targetauth", n.Target), url.Values{"action": {action}}); err != nil {
		return fail("Failed to "+action+": ", err)
	}
	e.Refresh()
	return ok(e)
}

// clientInfo is the body of GET /api/_clientinfo: the client's session on this gateway.
type clientInfo struct {
	Alias     string   `json:"alias"`
	IPAddress []string `json:"ip_address"`
	State     string   `json:"state"`
}

func runClientInfo(ctx context.Context, e *Env, n *Node, _ Args) error {
	_, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	c := t.Clients[n.Client]
	if c == nil {
		return fmt.Errorf("client %s is not defined on %s", n.Client, n.Target)
	}
	// Upstream reads the session from this host's LIO, and only when it is a portal of the
	// target; this host's API reads it for us.
	var ci clientInfo
	if _, portal := t.Portals[e.LocalName]; portal {
		if err := e.API.Do(ctx, "GET", local(e, "_clientinfo", n.Target, n.Client), nil, &ci); err != nil {
			return fail("Unable to read the client's session: ", err)
		}
	}
	luns := infoDict{}
	for id, l := range c.Luns {
		luns[id] = infoInner{{"lun_id", itoa(l.LunID)}}
	}
	return showInfo(e, []infoField{
		{"client_iqn", n.Client}, {"ip_address", strings.Join(ci.IPAddress, ",")}, {"alias", ci.Alias},
		{"logged_in", ci.State}, {"auth", authDict(e, c.Auth)}, {"group_name", c.GroupName}, {"luns", luns},
	})
}

func runClientDisk(ctx context.Context, e *Env, n *Node, a Args) error {
	action, disk := a.Get("action"), a.Get("disk")
	if disk == "" {
		return refuse("You must supply a disk name to add/remove for this client")
	}
	if action != "add" && action != "remove" {
		return refuse("you can only add and remove disks - %s is invalid ", action)
	}
	s, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	c := t.Clients[n.Client]
	if c == nil {
		return fmt.Errorf("client %s is not defined on %s", n.Client, n.Target)
	}
	_, mappedToClient := c.Luns[disk]
	if action == "add" {
		if mappedToClient {
			return refuse("Disk %s already mapped", disk)
		}
		if s.Config.Disks[disk] == nil {
			// auto-create, as `/disks create pool/image <size>` would
			parts := strings.Split(disk, "/")
			if len(parts) != 2 {
				return refuse("Invalid format. Use pool_name/disk_name")
			}
			err := createDisk(ctx, e, s, diskRequest{pool: parts[0], image: parts[1], size: a.Get("size"), count: "1", create: true})
			if err != nil {
				code := 8
				var u *UserError
				if errors.As(err, &u) {
					code = 0 // upstream's create_disk returns None for a refused pool
				}
				return withMsg(err, "%s\ndisk auto-define failed(%s), try using the /disks create command", err.Error(), rcText(code))
			}
		}
	} else if !mappedToClient {
		return refuse("disk '%s' is not mapped to this client ", disk)
	}
	if _, mapped := t.Disks[disk]; !mapped {
		if err := mapDisk(ctx, e, n.Target, disk, nil); err != nil {
			return withMsg(err, "%s\ndisk auto-map failed(1), try using the /iscsi-targets/<iqn>/disks add command", err.Error())
		}
	}
	u := local(e, "clientlun", n.Target, n.Client)
	form := url.Values{"disk": {disk}}
	if action == "add" {
		err = put(ctx, e, u, form)
	} else {
		err = del(ctx, e, u, form)
	}
	if err != nil {
		return withMsg(err, "disk %s for '%s' against %s failed\n%s", action, disk, n.Client, apiMessage(err))
	}
	e.Refresh()
	if action == "add" {
		var luns struct {
			Message map[string]struct {
				LunID int `json:"lun_id"`
			} `json:"message"`
		}
		if err := e.API.Do(ctx, "GET", local(e, "_clientlun", n.Target, n.Client), form, &luns); err != nil {
			return withMsg(err, "Query for disk '%s' meta data failed", disk)
		}
		if _, found := luns.Message[disk]; !found {
			return userErrorf("Query for disk '%s' meta data failed", disk)
		}
		var others []string
		for iqn, other := range t.Clients {
			if _, has := other.Luns[disk]; has && iqn != n.Client {
				others = append(others, iqn)
			}
		}
		if len(others) > 0 {
			slices.Sort(others)
			say(e, "Warning: '%s' mapped to %d other client(s)", disk, len(others))
		}
	}
	return ok(e)
}

// rcText is create_disk's return code as upstream prints it (None when it returned early).
func rcText(code int) string {
	if code == 0 {
		return "None"
	}
	return itoa(code)
}
