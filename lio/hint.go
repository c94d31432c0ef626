package lio

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// SpecChanges is a caller's word on what a Spec may differ in from the
// Spec of generation Since (Spec.Gen): the disks, and of each target the
// entries, listed here; everything else has the very same content. A
// Builder whose last build was of generation Since then compares, names
// and checks only what is listed, instead of every disk and client of
// the Spec; any other Builder ignores it (and compares everything, as
// without it). Listing a key that did not change costs a comparison; not
// listing one that did makes a wrong State, which Builder.VerifyHints
// catches in tests.
//
// "Content" is everything of the Spec, not only what the configuration
// document holds: a disk whose size or mapped device the caller learnt
// anew is listed in Disks, a client whose secret decrypts otherwise in
// its target's Clients. A disk or client added or removed without being
// listed shows in their number, and the build then compares everything.
// Gateway, Backstore, Settings, DiscoveryAuth and Names need not be
// listed: a build compares them anyway.
type SpecChanges struct {
	Since uint64
	// Disks are the ids of Spec.Disks added, removed or changed.
	Disks []string
	// Targets are the targets that may differ, by IQN; one added or
	// removed is listed with All.
	Targets map[string]TargetChanges
}

// TargetChanges is what may differ in one target (SpecChanges.Targets).
type TargetChanges struct {
	// All: anything, including whether the target is there at all.
	All bool
	// Fields: ACLEnabled, Auth, Controls, IPList or Portals.
	Fields bool
	// Disks and Clients are the keys of TargetSpec.Disks and Clients
	// whose entries were added, removed or changed.
	Disks   []string
	Clients []string
}

// hintFor returns what may differ in target iqn under the hint of the
// build in progress; ok is false without a usable hint or when anything
// of the target may.
func (m *buildMemo) hintFor(iqn string) (_ TargetChanges, ok bool) {
	if m == nil || m.hint == nil {
		return TargetChanges{}, false
	}
	tc := m.hint.Targets[iqn]
	return tc, !tc.All
}

// uniq returns l sorted without repeats: a hint may name a key twice.
func uniq(l []string) []string {
	if len(l) < 2 {
		return l
	}
	out := slices.Clone(l)
	slices.Sort(out)
	return slices.Compact(out)
}

// verifyHinted panics when st and err, built with a hint, are not what a
// build from scratch makes of spec: a hint that left out a change.
func verifyHinted(spec Spec, st State, err error) {
	since := spec.Changes.Since
	spec.Changes = nil
	want, werr := build(spec, nil)
	if d := stateDiffers(st, want); d != "" || fmt.Sprint(err) != fmt.Sprint(werr) {
		panic(fmt.Sprintf("lio: the build of generation %d with the hint since %d differs from a build from scratch (a change not in the hint?): %s; errors %v, want %v",
			spec.Gen, since, d, err, werr))
	}
}

// stateDiffers names where a and b differ, "" nowhere: short, for a
// panic message (secrets stay redacted).
func stateDiffers(a, b State) string {
	var out []string
	if !reflect.DeepEqual(a.StorageObjects, b.StorageObjects) {
		out = append(out, "storage objects")
	}
	if !reflect.DeepEqual(a.Managed, b.Managed) {
		out = append(out, "managed names")
	}
	if !reflect.DeepEqual(a.DiscoveryAuth, b.DiscoveryAuth) {
		out = append(out, "discovery auth")
	}
	if len(a.Targets) != len(b.Targets) {
		out = append(out, fmt.Sprintf("%d targets, want %d", len(a.Targets), len(b.Targets)))
	} else {
		for i := range a.Targets {
			x, y := a.Targets[i], b.Targets[i]
			if x.IQN != y.IQN || len(x.TPGs) != len(y.TPGs) {
				out = append(out, fmt.Sprintf("target %s", y.IQN))
				continue
			}
			for j := range x.TPGs {
				p, q := x.TPGs[j], y.TPGs[j]
				where := fmt.Sprintf("target %s TPG %d", y.IQN, q.Tag)
				if !reflect.DeepEqual(p.LUNs, q.LUNs) {
					out = append(out, where+" LUNs")
				}
				if !reflect.DeepEqual(p.ACLs, q.ACLs) {
					out = append(out, where+" ACLs")
				}
				p.LUNs, p.ACLs, q.LUNs, q.ACLs = nil, nil, nil, nil
				if !reflect.DeepEqual(p, q) {
					out = append(out, where+" settings")
				}
			}
		}
	}
	if len(out) == 0 && !reflect.DeepEqual(a, b) {
		out = append(out, "elsewhere")
	}
	return strings.Join(out, ", ")
}
