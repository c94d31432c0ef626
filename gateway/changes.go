package gateway

import "ceph-iscsi/config"

// A document's change log (config.Doc.ChangesSince) read by what it
// changed, for the memos that revisit only that: the content digest
// (content.go) and the spec memo (specmemo.go).

// docChanges is a change log (config.Doc.ChangesSince) by what it
// changed.
type docChanges struct {
	disks   map[string]bool
	targets map[string]*targetChanges
}

func changesOf(log []config.Change) *docChanges {
	c := &docChanges{disks: map[string]bool{}, targets: map[string]*targetChanges{}}
	for _, ch := range log {
		switch ch.Kind {
		case config.ChangedDisk:
			c.disks[ch.Key] = true
		case config.ChangedTarget, config.ChangedTargetFields, config.ChangedTargetLun,
			config.ChangedClient, config.ChangedPortal, config.ChangedGroup:
			addTargetChange(&c.targets, ch)
		}
		// a gateway's entry: the spec reads only whether this one is
		// there, each time
	}
	return c
}

// targetChanges are the changes of one target.
type targetChanges struct {
	// whole: anything of the target may have changed
	whole                          bool
	luns, clients, portals, groups []string
}

func (tc *targetChanges) add(c config.Change) {
	switch c.Kind {
	case config.ChangedTarget:
		tc.whole = true
	case config.ChangedTargetLun:
		tc.luns = append(tc.luns, c.Key)
	case config.ChangedClient:
		tc.clients = append(tc.clients, c.Key)
	case config.ChangedPortal:
		tc.portals = append(tc.portals, c.Key)
	case config.ChangedGroup:
		tc.groups = append(tc.groups, c.Key)
	}
	// ChangedTargetFields: the target's own fields are hashed again
	// whenever anything of it changed
}

// addTargetChange records c, a change of one of a target's kinds, in
// (*targets)[c.Target], making the map and the entry when missing.
func addTargetChange(targets *map[string]*targetChanges, c config.Change) {
	if *targets == nil {
		*targets = map[string]*targetChanges{}
	}
	tc := (*targets)[c.Target]
	if tc == nil {
		tc = &targetChanges{}
		(*targets)[c.Target] = tc
	}
	tc.add(c)
}
