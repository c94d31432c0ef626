package shell

import (
	"context"
	"net/url"
	"regexp"
)

// The commands of a target's host-groups, of a group, and of a group member (upstream's
// hostgroup.py HostGroups, HostGroup and HostGroupMember).

// groupName is upstream's group name rule: up to 32 of \w, '@', '-' (Python's Unicode \w).
var groupName = regexp.MustCompile(`^[\p{L}\p{N}_@-]{1,32}$`)

func init() {
	register(&Command{Kind: KindHostGroups, Name: "create",
		Params:  []Param{{Name: "group_name", Required: true}},
		Summary: "Create a host group definition.",
		Help: `Create a host group definition. Group names can be use up to 32
alphanumeric characters, including '_', '-' and '@'. Note that once a
group is created it can not be renamed.`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			_, t, err := snapTarget(ctx, e, n.Target)
			if err != nil {
				return err
			}
			name := a.Get("group_name")
			if t.Groups[name] != nil {
				return refuse("Group %s already defined", name)
			}
			if !groupName.MatchString(name) {
				return refuse("Invalid group name - max of 32 chars of alphanumeric and -,_,@ characters")
			}
			if err := put(ctx, e, local(e, "hostgroup", n.Target, name), nil); err != nil {
				return fail("Failed : ", err)
			}
			e.Refresh()
			if err := ok(e); err != nil {
				return err
			}
			e.Cd(n.Path() + "/" + name)
			return nil
		}})
	register(&Command{Kind: KindHostGroups, Name: "delete",
		Params:  []Param{{Name: "group_name", Required: true, Complete: completeGroups}},
		Summary: "Delete a host group definition.",
		Help: `Delete a host group definition. The delete process will remove the group
definition and remove the group name association within any client.

Note the deletion of a group will not remove the lun masking already
defined to clients. If this is desired, it will need to be performed
manually once the group is deleted.`,
		Run: func(ctx context.Context, e *Env, n *Node, a Args) error {
			_, t, err := snapTarget(ctx, e, n.Target)
			if err != nil {
				return err
			}
			name := a.Get("group_name")
			if t.Groups[name] == nil {
				return refuse("Group '%s' does not exist", name)
			}
			if err := del(ctx, e, local(e, "hostgroup", n.Target, name), nil); err != nil {
				return withMsg(err, "failed to delete group '%s'", name)
			}
			e.Refresh()
			return ok(e)
		}})

	register(&Command{Kind: KindHostGroup, Name: "host",
		Params: []Param{{Name: "action", Required: true, Complete: fixed("add", "remove")},
			{Name: "client_iqn", Required: true, Complete: completeClients}},
		Summary: "Add or remove a host of the group.",
		Help: `use the 'host' sub-command to add and remove hosts from a host group.
Adding a host will automatically map the host group's disks to that
specific host. Removing a host however, does not change the hosts
disk masking - it simply removes the host from group.

e.g.
host add|remove iqn.1994-05.com.redhat:rh7-client`,
		Run: runGroupHost})
	register(&Command{Kind: KindHostGroup, Name: "disk",
		Params: []Param{{Name: "action", Required: true, Complete: fixed("add", "remove")},
			{Name: "disk_name", Required: true, Complete: completeDisks}},
		Summary: "Add or remove a disk of the group.",
		Help: `use the 'disk' sub-command to add or remove a disk from a specific
host group. Removing disks should be done with care, as the remove
operation will be executed across all hosts defined to the host group.

e.g.
disk add|remove rbd/disk_1`,
		Run: runGroupDisk})
	register(&Command{Kind: KindHostGroupMember, Name: "info", Summary: "Show the attributes of the current object.",
		Help: "Show the attributes of the current object.", Run: runNoInfo})
}

func runGroupHost(ctx context.Context, e *Env, n *Node, a Args) error {
	action, iqn := a.Get("action"), a.Get("client_iqn")
	if action != "add" && action != "remove" {
		return refuse("Invalid request - must be host add|remove <client_iqn>")
	}
	_, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	c := t.Clients[iqn]
	if c == nil {
		// upstream's wording for a client that is not defined
		return refuse("'%s' is not managed by a group", iqn)
	}
	if action == "add" && c.GroupName != "" {
		return refuse("'%s' already belongs to '%s'", iqn, c.GroupName)
	}
	if action == "remove" && c.GroupName != n.Group {
		return refuse("'%s' does not belong to this group", iqn)
	}
	if err := put(ctx, e, local(e, "hostgroup", n.Target, n.Group), url.Values{"action": {action}, "members": {iqn}}); err != nil {
		return fail("Failed :", err)
	}
	e.Refresh()
	return ok(e)
}

func runGroupDisk(ctx context.Context, e *Env, n *Node, a Args) error {
	action, disk := a.Get("action"), a.Get("disk_name")
	if action != "add" && action != "remove" {
		return refuse("Invalid request - must be disk add|remove <disk_image>")
	}
	s, t, err := snapTarget(ctx, e, n.Target)
	if err != nil {
		return err
	}
	if s.Config.Disks[disk] == nil {
		return refuse("Disk '%s' is not defined within the configuration", disk)
	}
	var inGroup bool
	if g := t.Groups[n.Group]; g != nil {
		_, inGroup = g.Disks[disk]
	}
	if action == "add" && inGroup {
		return refuse("'%s' is already defined to this host-group", disk)
	}
	if action == "remove" && !inGroup {
		return refuse("'%s' is not a member of this group", disk)
	}
	if _, mapped := t.Disks[disk]; !mapped {
		if err := mapDisk(ctx, e, n.Target, disk, nil); err != nil {
			return withMsg(err, "%s\ndisk auto-map failed(1), try using the /iscsi-targets/<iqn>/disks add command", err.Error())
		}
	}
	if err := put(ctx, e, local(e, "hostgroup", n.Target, n.Group), url.Values{"action": {action}, "disks": {disk}}); err != nil {
		return fail("Failed: ", err)
	}
	e.Refresh()
	return ok(e)
}
