package config

import "sync/atomic"

// Change logs.
//
// A gateway derives things from each document it sees (a digest, the
// names it checked, the LIO it wants), and at thousands of disks walking
// the document's maps to find what a request changed costs more than the
// change. A fork therefore records what its writes through this package's
// methods may have changed: the disks, gateways, target LUNs, clients,
// portals and groups by key, a target's own fields, or a whole target. A
// reader that remembers what it derived from a document at a Stamp asks
// the next document for its ChangesSince that stamp and revisits only
// those entries.
//
// The log is only as good as the contract (see Fork): a fork's Disks,
// Gateways and Targets maps, and a target's maps, are written only
// through the Doc's methods or through the objects the Mut accessors
// return (MutTarget's covers the whole target), and an object a Mut
// accessor returned is written before the document is read at a Stamp.
// Only forks have a lineage: a document that is not one (decoded, built by
// hand, a Clone) may be written directly, so it has the zero Stamp, and a
// fork of it has no base.

// ChangeKind says what a Change covers.
type ChangeKind uint8

const (
	// ChangedDisk: Disks[Key] was added, removed, replaced or handed out
	// for writing.
	ChangedDisk ChangeKind = iota + 1
	// ChangedGateway: Gateways[Key].
	ChangedGateway
	// ChangedTarget: anything of Targets[Target], with every map it holds,
	// and the target itself may be new or gone.
	ChangedTarget
	// ChangedTargetFields: the target's own fields (controls, auth, ACL
	// switch, IP list, stamps, extra) and whether its maps are nil; not
	// the entries of its maps, which have their own kinds.
	ChangedTargetFields
	// ChangedTargetLun: Targets[Target].Disks[Key].
	ChangedTargetLun
	// ChangedClient: Targets[Target].Clients[Key].
	ChangedClient
	// ChangedPortal: Targets[Target].Portals[Key].
	ChangedPortal
	// ChangedGroup: Targets[Target].Groups[Key].
	ChangedGroup
)

// Change is one entry of a change log: what a write may have changed. The
// document's own fields (version, epoch, stamps, discovery auth, extra)
// are never logged: a reader re-reads them each time.
type Change struct {
	Kind ChangeKind
	// Target is the target's IQN for the target kinds.
	Target string
	// Key is the entry's key for the kinds of a map entry.
	Key string
}

// Stamp names a document as it was after a number of logged changes. The
// zero Stamp names no document.
type Stamp struct {
	doc uint64
	n   int
}

// lineage is a document's identity and change log.
type lineage struct {
	id uint64
	// base is the stamp of the document this one was forked from, at the
	// fork; from, when that document had logged nothing since its own
	// fork, that document's base (the same content, one fork earlier).
	base, from Stamp
	log        []Change
}

var lineageIDs atomic.Uint64

func newLineage() *lineage { return &lineage{id: lineageIDs.Add(1)} }

// Stamp is d's stamp now: d with the changes logged so far; the zero
// Stamp when d is not a fork.
func (d *Doc) Stamp() Stamp {
	if d == nil || d.line == nil {
		return Stamp{}
	}
	return Stamp{doc: d.line.id, n: len(d.line.log)}
}

// ChangesSince returns what may have changed in d since s, and true, when
// s is a stamp of d itself or of the document d was forked from at the
// fork; otherwise false, and the caller reads d in full. A change may be
// listed more than once, and may have left its entry as it was.
func (d *Doc) ChangesSince(s Stamp) ([]Change, bool) {
	if d == nil || d.line == nil || s.doc == 0 {
		return nil, false
	}
	l := d.line
	switch {
	case s.doc == l.id && s.n <= len(l.log):
		return l.log[s.n:len(l.log):len(l.log)], true
	case s == l.base || s == l.from:
		return l.log[:len(l.log):len(l.log)], true
	}
	return nil, false
}

// forkLineage is the lineage of a fork of d.
func (d *Doc) forkLineage() *lineage {
	l := newLineage()
	if d.line == nil {
		return l
	}
	l.base = Stamp{doc: d.line.id, n: len(d.line.log)}
	if len(d.line.log) == 0 && d.line.base.doc != 0 {
		l.from = d.line.base
	}
	return l
}

// logChange records c in d's change log. A repeat of the last entry is
// recorded too: a reader may have taken a Stamp between the two, and the
// second write is news to it.
func (d *Doc) logChange(c Change) {
	if l := d.line; l != nil {
		l.log = append(l.log, c)
	}
}
