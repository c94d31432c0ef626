package stats

import (
	"net"
	"sort"
	"strings"

	"ceph-iscsi/lio"
)

// mib is what the kernel's *_mbytes counters count in.
const mib = 1 << 20

// Report is the JSON body of GET /api/stats: this gateway's LUNs and
// clients with their cumulative counters.
type Report struct {
	Gateway string `json:"gateway"`
	Version string `json:"version"`
	// Complete is false when part of LIO could not be read (Error says
	// why); what could be read is still reported.
	Complete bool     `json:"complete"`
	Error    string   `json:"error,omitempty"`
	Targets  []Target `json:"targets"`
	LUNs     []LUN    `json:"luns"`
	Clients  []Client `json:"clients"`
}

// Target is an iSCSI target of this gateway.
type Target struct {
	IQN string `json:"target_iqn"`
	// Sessions counts the target's iSCSI sessions on this gateway.
	Sessions int `json:"sessions"`
	TPGs     int `json:"tpgs"`
}

// Counters are cumulative SCSI counters. Bytes have the kernel's MiB
// resolution.
type Counters struct {
	Commands   uint64 `json:"commands"`
	ReadBytes  uint64 `json:"read_bytes"`
	WriteBytes uint64 `json:"write_bytes"`
}

func counters(c lio.IOCounters) Counters {
	return Counters{Commands: c.Commands, ReadBytes: c.ReadMiB * mib, WriteBytes: c.WriteMiB * mib}
}

func (c Counters) add(o Counters) Counters {
	return Counters{c.Commands + o.Commands, c.ReadBytes + o.ReadBytes, c.WriteBytes + o.WriteBytes}
}

// LUN is a storage object: its size, owner and the commands every
// initiator sent to it through this gateway's target ports.
type LUN struct {
	Name string `json:"lun_name"`
	Size int64  `json:"size"`
	// Owner is the portal IP of the TPG in which the LUN is in the
	// active/optimized ALUA group: the gateway that serves its I/O. ""
	// when no TPG of this gateway has it there.
	Owner string `json:"owner"`
	// Mapped is true when at least one client has the LUN.
	Mapped bool `json:"mapped"`
	// LoggedInSessions counts the logged-in sessions of the clients the
	// LUN is mapped to.
	LoggedInSessions int `json:"logged_in_sessions"`
	Counters
}

// Client is an initiator with a node ACL on this gateway.
type Client struct {
	IQN string `json:"client_iqn"`
	// LoggedInSessions counts its ACLs (one per target and TPG) with a
	// session in state LOGGED_IN.
	LoggedInSessions int         `json:"logged_in_sessions"`
	LUNs             []ClientLUN `json:"luns"`
	// Counters are the sums over LUNs.
	Counters
}

// ClientLUN is a LUN as one client sees it, with that client's commands.
type ClientLUN struct {
	Name  string `json:"lun_name"`
	LUNID int    `json:"lun_id"`
	Counters
}

// model is what the collector and the report share: one reading folded
// into the keys upstream's metrics use.
type model struct {
	firstIQN  string
	tpgs      int
	targets   []Target
	luns      []LUN
	lunIndex  map[string]int // storage object -> luns index
	clients   []Client
	portTotal map[[2]string]Counters // (target, storage object)
}

// clientKey is how upstream labels a client's LUN (gw_name aside).
type clientKey struct{ client, lun string }

func newModel(st lio.Statistics) *model {
	m := &model{lunIndex: make(map[string]int, len(st.StorageObjects)), portTotal: map[[2]string]Counters{}}
	for _, so := range st.StorageObjects {
		if _, dup := m.lunIndex[so.Name]; dup {
			continue // the same name on two HBAs: upstream's dict keeps one
		}
		m.lunIndex[so.Name] = len(m.luns)
		m.luns = append(m.luns, LUN{Name: so.Name, Size: so.Size})
	}
	if len(st.Targets) > 0 {
		m.firstIQN = st.Targets[0].IQN
	}
	clientIdx := map[string]int{}
	clientLUN := map[clientKey]int{} // -> index in the client's LUNs
	for _, t := range st.Targets {
		m.tpgs += len(t.TPGs)
		m.targets = append(m.targets, Target{IQN: t.IQN, Sessions: t.Sessions, TPGs: len(t.TPGs)})
		for _, tpg := range t.TPGs {
			ip := portalIP(tpg.Portals)
			for _, l := range tpg.LUNs {
				if l.StorageObject == "" {
					continue
				}
				k := [2]string{t.IQN, l.StorageObject}
				m.portTotal[k] = m.portTotal[k].add(counters(l.Port))
				if i, ok := m.lunIndex[l.StorageObject]; ok {
					m.luns[i].Counters = m.luns[i].Counters.add(counters(l.Port))
					if l.ALUAGroup == "ao" && m.luns[i].Owner == "" {
						m.luns[i].Owner = ip
					}
				}
			}
			for _, acl := range tpg.ACLs {
				ci, ok := clientIdx[acl.Initiator]
				if !ok {
					ci = len(m.clients)
					clientIdx[acl.Initiator] = ci
					m.clients = append(m.clients, Client{IQN: acl.Initiator})
				}
				c := &m.clients[ci]
				if acl.LoggedIn() {
					c.LoggedInSessions++
				}
				for _, ml := range acl.MappedLUNs {
					if ml.StorageObject == "" {
						continue
					}
					if i, ok := m.lunIndex[ml.StorageObject]; ok {
						m.luns[i].Mapped = true
						if acl.LoggedIn() {
							m.luns[i].LoggedInSessions++
						}
					}
					k := clientKey{acl.Initiator, ml.StorageObject}
					li, ok := clientLUN[k]
					if !ok {
						li = len(c.LUNs)
						clientLUN[k] = li
						c.LUNs = append(c.LUNs, ClientLUN{Name: ml.StorageObject, LUNID: ml.Index})
					}
					io := counters(ml.IO)
					c.LUNs[li].Counters = c.LUNs[li].Counters.add(io)
					c.Counters = c.Counters.add(io)
				}
			}
		}
	}
	sort.Slice(m.clients, func(i, j int) bool { return m.clients[i].IQN < m.clients[j].IQN })
	for i := range m.clients {
		l := m.clients[i].LUNs
		sort.Slice(l, func(a, b int) bool { return l[a].Name < l[b].Name })
	}
	return m
}

// portalIP is upstream's owner label: the IP of the TPG's first network
// portal, without port or brackets.
func portalIP(portals []string) string {
	if len(portals) == 0 {
		return ""
	}
	host, _, err := net.SplitHostPort(portals[0])
	if err != nil {
		return strings.Trim(portals[0], "[]")
	}
	return host
}

// NewReport turns one reading into the /api/stats body; readErr is the
// reader's error, if any.
func NewReport(st lio.Statistics, readErr error, gateway, version string) Report {
	m := newModel(st)
	r := Report{Gateway: gateway, Version: version, Complete: readErr == nil,
		Targets: m.targets, LUNs: m.luns, Clients: m.clients}
	if readErr != nil {
		r.Error = readErr.Error()
	}
	if r.Targets == nil {
		r.Targets = []Target{}
	}
	if r.LUNs == nil {
		r.LUNs = []LUN{}
	}
	if r.Clients == nil {
		r.Clients = []Client{}
	}
	for i := range r.Clients {
		if r.Clients[i].LUNs == nil {
			r.Clients[i].LUNs = []ClientLUN{}
		}
	}
	return r
}
