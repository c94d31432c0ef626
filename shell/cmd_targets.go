package shell

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"ceph-iscsi/config"
	"ceph-iscsi/settings"
)

// The commands of /iscsi-targets, a target, and its disks (upstream's gateway.py
// ISCSITargets and Target, storage.py TargetDisks and TargetDisk).

const chapHelp = `username / mutual_username ... the username is 8-64 character string. Each character
                               may either be an alphanumeric or use one of the following
                               special characters .,:,-,@.
                               Consider using the hosts 'shortname' or the initiators IQN
                               value as the username

password / mutual_password ... the password must be between 12-16 chars in length
                               containing alphanumeric characters, plus the following
                               special characters @,_,-,/`

// chapParams are the four arguments of the auth commands.
var chapParams = []Param{{Name: "username", Complete: fixed("nochap")}, {Name: "password"},
	{Name: "mutual_username"}, {Name: "mutual_password"}}

func init() {
	register(&Command{Kind: KindTargets, Name: "create",
		Params:  []Param{{Name: "target_iqn", Required: true}},
		Summary: "Create an iSCSI target.",
		Help: `Create an iSCSI target. This target is defined across all gateway nodes,
providing the client with a single 'image' for iscsi discovery.`,
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			iqn, err := normalizeIQN(a.Get("target_iqn"))
			if err != nil {
				return err
			}
			if err := put(ctx, e, local(e, "target", iqn), nil); err != nil {
				return fail("Failed to create the target on the local node ", err)
			}
			e.Refresh()
			return ok(e)
		}})
	register(&Command{Kind: KindTargets, Name: "delete",
		Params:  []Param{{Name: "target_iqn", Required: true, Complete: completeTargets}},
		Summary: "Delete an iSCSI target.", Help: "Delete an iSCSI target.",
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			iqn, err := normalizeIQN(a.Get("target_iqn"))
			if err != nil {
				return err
			}
			if err := del(ctx, e, local(e, "target", iqn), nil); err != nil {
				return fail("Failed - ", err)
			}
			e.Refresh()
			return ok(e)
		}})
	register(&Command{Kind: KindTargets, Name: "clearconfig",
		Params:  []Param{{Name: "confirm", Complete: fixed("true")}},
		Summary: "Return the configuration to an unused state.",
		Help: `The 'clearconfig' command allows you to return the configuration to an
unused state: LIO on each gateway will be cleared, and gateway
definitions in the configuration object will be removed.

> clearconfig confirm=true

In order to run the clearconfig command, all clients and disks *must*
have already have been removed.`,
		Run: runClearConfig})
	register(&Command{Kind: KindTargets, Name: "discovery_auth", Params: chapParams,
		Summary: "Set or clear the discovery CHAP credentials.",
		Help: `Discovery authentication can be set to use CHAP/CHAP_MUTUAL by supplying
username, password, mutual_username, mutual_password

Specifying 'nochap' will remove discovery authentication.

e.g.
auth username=<user> password=<pass> mutual_username=<m_user> mutual_password=<m_pass>`,
		Run: func(ctx context.Context, e *Env, _ *Node, a Args) error {
			form, err := chapForm(a, "To set or reset discovery authentication, specify either "+
				"username=<user> password=<password> [mutual_username]=<user> "+
				"[mutual_password]=<password> or nochap")
			if err != nil {
				return err
			}
			if err := put(ctx, e, local(e, "discoveryauth"), form); err != nil {
				return fail("Error: ", err)
			}
			e.Refresh()
			return ok(e)
		}})

	register(&Command{Kind: KindTarget, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.",
		Run: func(ctx context.Context, e *Env, n *Node, _ Args) error {
			_, t, err := snapTarget(ctx, e, n.Target)
			if err != nil {
				return err
			}
			return showInfo(e, []infoField{{"target_iqn", n.Target}, {"auth", authDict(e, t.Auth)},
				{"control_values", controlDict(e, t.Controls, false)}})
		}})
	register(&Command{Kind: KindTarget, Name: "reconfigure",
		Params: []Param{{Name: "attribute", Required: true, Complete: fixed(settings.TargetControlNames()...)},
			{Name: "value", Required: true}},
		Variadic: true,
		Summary:  "Tune the target's iSCSI attributes.",
		Help: `The reconfigure command allows you to tune various gateway attributes.
An empty value for an attribute resets the lun attribute to its
default.
attribute : attribute to reconfigure. supported attributes:
  - cmdsn_depth : integer 1 - 512
  - dataout_timeout : integer 2 - 60
  - nopin_response_timeout : integer 3 - 60
  - nopin_timeout : integer 3 - 60
  - immediate_data : [Yes|No]
  - initial_r2t : [Yes|No]
  - first_burst_length : integer 512 - 16777215
  - max_burst_length : integer 512 - 16777215
  - max_outstanding_r2t : integer 1 - 65535
  - max_recv_data_segment_length : integer 512 - 16777215
  - max_xmit_data_segment_length : integer 512 - 16777215
value     : value of the attribute to reconfigure
e.g.
set cmdsn_depth
  - reconfigure attribute=cmdsn_depth value=128
reset cmdsn_depth
  - reconfigure attribute=cmdsn_depth value=`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			names := settings.TargetControlNames()
			if !slices.Contains(names, a.Get("attribute")) {
				slices.Sort(names)
				return refuse("supported attributes: %s", strings.Join(names, ","))
			}
			form := url.Values{"mode": {"reconfigure"}, "controls": {controlsJSON(a.Get("attribute"), a.Get("value"))}}
			if err := put(ctx, e, local(e, "target", n.Target), form); err != nil {
				return fail("Failed to reconfigure : ", err)
			}
			e.Refresh()
			return ok(e)
		}})
	register(&Command{Kind: KindTarget, Name: "auth", Params: chapParams,
		Summary: "Set or clear the target's CHAP credentials.",
		Help: `Target authentication can be set to use CHAP/CHAP_MUTUAL by supplying
username, password, mutual_username, mutual_password

e.g.
auth username=<user> password=<pass> mutual_username=<m_user> mutual_password=<m_pass>

` + chapHelp,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			form, err := chapForm(a, "To set authentication, specify username=<user> password=<password> "+
				"[mutual_username]=<user> [mutual_password]=<password> or nochap")
			if err != nil {
				return err
			}
			if err := put(ctx, e, local(e, "targetauth", n.Target), form); err != nil {
				return fail("Failed to update target auth: ", err)
			}
			e.Refresh()
			return ok(e)
		}})

	register(&Command{Kind: KindTargetDisks, Name: "add",
		Params:  []Param{{Name: "disk", Required: true, Complete: completeUnmappedDisks}, {Name: "lun_id"}},
		Summary: "Map a disk to the target.",
		Help:    "Map a disk (pool/image) to the target, at lun_id or the next free LUN id.",
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			var lunID *string
			if a.Given["lun_id"] {
				v := a.Get("lun_id")
				lunID = &v
			}
			if err := mapDisk(ctx, e, n.Target, a.Get("disk"), lunID); err != nil {
				return err
			}
			return ok(e)
		}})
	register(&Command{Kind: KindTargetDisks, Name: "delete",
		Params:  []Param{{Name: "disk", Required: true, Complete: completeTargetDisks}},
		Summary: "Unmap a disk from the target.",
		Help:    "Unmap a disk (pool/image) from the target.",
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			if err := del(ctx, e, local(e, "targetlun", n.Target), url.Values{"disk": {a.Get("disk")}}); err != nil {
				return fail("Failed - ", err)
			}
			e.Refresh()
			return ok(e)
		}})
	register(&Command{Kind: KindTargetDisk, Name: "info", Summary: "Show the attributes of the current object.",
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
			return showInfo(e, []infoField{{"name", n.Disk()}, {"owner", owner}})
		}})
}

// chapForm is the form of the auth commands: the four credentials, all empty for nochap,
// and absent ones left out as Python's requests leaves out a None.
func chapForm(a Args, missing string) (url.Values, error) {
	if a.Get("username") == "" {
		return nil, refuse("%s", missing)
	}
	form := url.Values{}
	if a.Get("username") == "nochap" {
		for _, k := range []string{"username", "password", "mutual_username", "mutual_password"} {
			form.Set(k, "")
		}
		return form, nil
	}
	for _, k := range []string{"username", "password", "mutual_username", "mutual_password"} {
		opt(form, a, k)
	}
	return form, nil
}

// mapDisk is upstream's TargetDisks.add_disk without its message: PUT /api/targetlun, then
// the config read back for the owner the API chose.
func mapDisk(ctx context.Context, e *Env, iqn, disk string, lunID *string) error {
	form := url.Values{"disk": {disk}}
	if lunID != nil {
		form.Set("lun_id", *lunID)
	}
	if err := put(ctx, e, local(e, "targetlun", iqn), form); err != nil {
		return fail("Failed - ", err)
	}
	e.Refresh()
	// upstream reads the owner and LUN id back from /api/config: the config alone, not a
	// whole snapshot
	var raw []byte
	if err := e.API.Do(ctx, http.MethodGet, local(e, "config"), nil, &raw); err != nil {
		return fail("Unable to refresh local config: ", err)
	}
	doc, err := config.Parse(raw)
	if err != nil {
		return withMsg(err, "Unable to refresh local config: %v", err)
	}
	if t := doc.Targets[iqn]; t == nil || doc.Disks[disk] == nil {
		return fmt.Errorf("disk %s mapped to %s is not in the configuration read back", disk, iqn)
	}
	if _, mapped := doc.Targets[iqn].Disks[disk]; !mapped {
		return fmt.Errorf("disk %s is not mapped to %s in the configuration read back", disk, iqn)
	}
	return nil
}

func runClearConfig(ctx context.Context, e *Env, _ *Node, a Args) error {
	confirm, err := evalBool(a, "confirm", false)
	if err != nil {
		return err
	}
	if !confirm {
		return refuse("To clear the configuration you must specify confirm=true")
	}
	s, err := snap(ctx, e)
	if err != nil {
		return err
	}
	for _, iqn := range sortedKeys(s.Config.Targets) {
		if n := len(s.Config.Targets[iqn].Clients); n > 0 {
			return refuse("%s - Clients(%d) must be removed first before clearing the gateway configuration", iqn, n)
		}
	}
	if n := len(s.Config.Disks); n > 0 {
		return refuse("Disks(%d) must be removed first before clearing the gateway configuration", n)
	}
	for _, iqn := range sortedKeys(s.Config.Targets) {
		for _, gw := range sortedKeys(s.Config.Targets[iqn].Portals) {
			if err := del(ctx, e, e.API.URL(gw, "_target", iqn), nil); err != nil {
				return fail("Delete of "+gw+" failed : ", err)
			}
		}
		if err := ok(e); err != nil {
			return err
		}
	}
	e.Refresh()
	return nil
}
