package shell

import "strings"

// Kind is the type of a tree node; the values are upstream's configshell class names
// (spec §10.2) so that help and errors read the same.
type Kind string

const (
	KindRoot            Kind = "ISCSIRoot"
	KindClusters        Kind = "CephGroup"
	KindCluster         Kind = "CephCluster"
	KindPools           Kind = "CephPools"
	KindPool            Kind = "RadosPool"
	KindTopology        Kind = "CephTopology"
	KindDisks           Kind = "Disks"
	KindDiskPool        Kind = "DiskPool"
	KindDisk            Kind = "Disk"
	KindTargets         Kind = "ISCSITargets"
	KindTarget          Kind = "Target"
	KindTargetDisks     Kind = "TargetDisks"
	KindTargetDisk      Kind = "TargetDisk"
	KindGateways        Kind = "GatewayGroup"
	KindGateway         Kind = "Gateway"
	KindHostGroups      Kind = "HostGroups"
	KindHostGroup       Kind = "HostGroup"
	KindHostGroupMember Kind = "HostGroupMember"
	KindClients         Kind = "Clients"
	KindClient          Kind = "Client"
	KindMappedLun       Kind = "MappedLun"
)

// Node is one item of the tree. The identity fields say which object the node stands for,
// so that a command needs nothing but its node and its arguments; the ones that do not apply
// to a kind stay empty.
type Node struct {
	Name     string
	Kind     Kind
	Summary  string // the bracketed text of `ls`, without the brackets
	Parent   *Node
	Children []*Node

	Target  string // target IQN (target and everything below it)
	Gateway string // gateway name (Gateway)
	Pool    string // pool (Pool, DiskPool, Disk, TargetDisk, MappedLun)
	Image   string // image (Disk, TargetDisk, MappedLun)
	Client  string // client IQN (Client, MappedLun, HostGroupMember of a host)
	Group   string // host group name (HostGroup, HostGroupMember)
	LunID   int    // MappedLun
}

// Path is the node's absolute path as `pwd` prints it.
func (n *Node) Path() string {
	if n.Parent == nil {
		return "/"
	}
	var parts []string
	for p := n; p.Parent != nil; p = p.Parent {
		parts = append(parts, p.Name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return "/" + strings.Join(parts, "/")
}

// Child returns the direct child with the given name, or nil.
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// add appends c as a child of n and returns c.
func (n *Node) add(c *Node) *Node {
	c.Parent = n
	n.Children = append(n.Children, c)
	return c
}

// Disk returns the "pool/image" id of a node that stands for a disk.
func (n *Node) Disk() string { return n.Pool + "/" + n.Image }
