package config

import (
	"reflect"
	"strings"
	"testing"
)

// walkAny follows keys through the generic form, as a reader of one entry
// of the whole document would.
func walkAny(v any, keys []string) (any, bool) {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok || v == nil {
			return nil, false
		}
	}
	return v, true
}

// TestEntryIsItsPartOfTheWhole checks that the entry a path names,
// read from MarshalPart's object (Entry), equals the same entry read from the whole
// document's encoding, for every object of every corpus document (unknown
// keys included), deeper keys inside them, and absent names.
func TestEntryIsItsPartOfTheWhole(t *testing.T) {
	for name, d := range typedCorpus(t) {
		whole, err := ParseAny(d.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		var paths [][]string
		for id := range d.Disks {
			paths = append(paths, []string{"disks", id}, []string{"disks", id, "controls"}, []string{"disks", id, "pool"})
		}
		for gw := range d.Gateways {
			paths = append(paths, []string{"gateways", gw})
		}
		for iqn, tg := range d.Targets {
			paths = append(paths, []string{"targets", iqn}, []string{"targets", iqn, "portals"}, []string{"targets", iqn, "disks"},
				[]string{"targets", iqn, "clients", "iqn.absent:x"}, []string{"targets", iqn, "nosuchkey"})
			for c := range tg.Clients {
				paths = append(paths, []string{"targets", iqn, "clients", c}, []string{"targets", iqn, "clients", c, "luns"},
					[]string{"targets", iqn, "clients", c, "auth", "username"})
			}
			for p := range tg.Portals {
				paths = append(paths, []string{"targets", iqn, "portals", p})
			}
			for g := range tg.Groups {
				paths = append(paths, []string{"targets", iqn, "groups", g}, []string{"targets", iqn, "groups", g, "members"})
			}
		}
		paths = append(paths, []string{"disks"}, []string{"targets"}, []string{"epoch"}, []string{"discovery_auth"},
			[]string{"disks", "rbd/absent"}, []string{"gateways", "absent"}, []string{"targets", "iqn.absent:t", "clients", "c"}, nil)
		for _, p := range paths {
			want, wantOK := walkAny(whole, p)
			raw, rest, err := d.MarshalPart(p...)
			if err != nil {
				t.Fatalf("%s %v: %v", name, p, err)
			}
			if raw != nil {
				if _, err := ParseAny(raw); err != nil {
					t.Fatalf("%s %v: part does not parse alone: %v (rest %v)", name, p, err, rest)
				}
			}
			got, gotOK := d.Entry(p...)
			if gotOK != wantOK || !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: Entry gives %v (%v), the whole %v (%v)", name, strings.Join(p, "/"), got, gotOK, want, wantOK)
			}
		}
	}
}
