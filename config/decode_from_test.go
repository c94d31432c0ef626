package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// sameAsLoad fails t unless LoadFrom(raw, base) gives what Load gives,
// field for field, and returns its result.
func sameAsLoad(t *testing.T, what string, raw []byte, base *Decoding) (*Doc, *Decoding) {
	t.Helper()
	opts := UpgradeOptions{Gateway: node1, Now: t1}
	got, gotUp, dec, err := LoadFrom(raw, opts, base)
	want, wantUp, wantErr := Load(raw, opts)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) || gotUp != wantUp {
		t.Fatalf("%s: LoadFrom: %v (upgraded %v), Load: %v (upgraded %v)", what, err, gotUp, wantErr, wantUp)
	}
	if err != nil {
		return nil, nil
	}
	if !got.cow {
		t.Fatalf("%s: LoadFrom's document is not a snapshot whose objects are frozen", what)
	}
	cmp := *got
	cmp.cow = false
	if !reflect.DeepEqual(&cmp, want) {
		t.Fatalf("%s: LoadFrom and Load differ:\n%s", what, diffLines(string(want.Marshal()), string(got.Marshal())))
	}
	return got, dec
}

// TestLoadFromMatchesLoad: over random commit sequences (real mutations
// and hand-edit damage), decoding each document on the last one's
// Decoding, on an older one's, or on none gives exactly Load's document,
// and most objects are taken from the base.
func TestLoadFromMatchesLoad(t *testing.T) {
	var decoded, reused int
	for seed := range 30 {
		c := &choices{r: rand.New(rand.NewPCG(uint64(seed), 11))}
		now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		doc := incStart(t, c)
		var history []*Decoding
		var base *Decoding
		for step := range 150 {
			next := doc.Fork()
			for range 1 + c.n(3) {
				incMutate(c, next, now)
			}
			if c.n(10) == 0 {
				// what an older gateway or a hand edit leaves, when the
				// document is one Parse takes
				if raw, err := marshalDoc(next); err == nil {
					if _, err := Parse(raw); err == nil {
						next = injectInvalid(t, c, next)
					}
				}
			}
			raw, err := marshalDoc(next)
			if err != nil {
				continue // damage no encoder writes (a channel among controls)
			}
			from := base
			switch c.n(8) {
			case 0:
				from = nil
			case 1:
				if len(history) > 0 {
					from = history[c.n(len(history))]
				}
			}
			got, dec := sameAsLoad(t, fmt.Sprintf("seed %d step %d", seed, step), raw, from)
			if got == nil {
				continue
			}
			if dec != nil {
				base = dec
				history = append(history, dec)
				decoded += dec.Stats().Decoded
				reused += dec.Stats().Reused
			}
			doc = got
		}
	}
	if reused < decoded {
		t.Fatalf("%d objects reused, %d decoded: the sequences barely reuse", reused, decoded)
	}
	t.Logf("%d objects reused, %d decoded", reused, decoded)
}

// TestLoadFromSharesWhatDidNotChange: a peer's clientlun commit on 256
// LUNs decodes the target and the client, and gives a document sharing
// every disk, every other client and the target's LUN map with the last
// one, all frozen.
func TestLoadFromSharesWhatDidNotChange(t *testing.T) {
	const iqn = "iqn.2003-01.com.example.bench:target"
	const cl = "iqn.1994-05.com.example:c00001"
	d := scaleDoc(t, 256)
	first, dec := sameAsLoad(t, "first", d.Marshal(), nil)
	if s := dec.Stats(); s.Reused != 0 {
		t.Fatalf("a decode without a base reused %d objects", s.Reused)
	}
	next := first.Fork()
	if _, err := next.SetClientLuns(iqn, cl, []string{"rbd/img00004", "rbd/img00009"}, t1); err != nil {
		t.Fatal(err)
	}
	second, dec2 := sameAsLoad(t, "second", next.Marshal(), dec)
	if s := dec2.Stats(); s.Decoded != 2 {
		t.Errorf("a one-client change decoded %d objects, want the target and the client (%+v)", s.Decoded, s)
	}
	for id, k := range second.Disks {
		if k != first.Disks[id] || !second.Frozen(k) {
			t.Fatalf("disk %s is not the last document's, frozen", id)
		}
	}
	nt, ot := second.Targets[iqn], first.Targets[iqn]
	if nt == ot {
		t.Fatal("the changed target is the last document's")
	}
	if reflect.ValueOf(nt.Disks).UnsafePointer() != reflect.ValueOf(ot.Disks).UnsafePointer() {
		t.Error("the target's unchanged LUN map was decoded again")
	}
	for name, c := range nt.Clients {
		if shared := c == ot.Clients[name]; shared == (name == cl) {
			t.Errorf("client %s: shared with the last document %v", name, shared)
		}
		if !second.Frozen(c) {
			t.Errorf("client %s is not frozen", name)
		}
	}
	// a change through a fork of the snapshot copies, never writes the
	// shared objects
	f := second.Fork()
	f.MutClient(iqn, "iqn.1994-05.com.example:c00002").GroupName = "x"
	if first.Targets[iqn].Clients["iqn.1994-05.com.example:c00002"].GroupName != "" {
		t.Fatal("a fork's change reached an object the snapshots share")
	}
	// the bytes moved (a longer first disk) but did not change: reused
	moved := second.Fork()
	moved.MutDisk("rbd/img00000").WWN = "a-much-longer-wwn-than-before"
	_, dec3 := sameAsLoad(t, "moved", moved.Marshal(), dec2)
	if s := dec3.Stats(); s.Decoded != 1 {
		t.Errorf("after one disk grew, %d objects decoded, want 1 (%+v)", s.Decoded, s)
	}
}

// FuzzLoadFrom: whatever the base's and the new bytes, LoadFrom agrees
// with Load.
func FuzzLoadFrom(f *testing.F) {
	d := scaleDoc(f, 8)
	a := d.Marshal()
	d.Targets["iqn.2003-01.com.example.bench:target"].Clients["iqn.1994-05.com.example:c00001"].GroupName = "g"
	b := d.Marshal()
	f.Add(a, b)
	f.Add(b, a)
	f.Add(a, bytes.Replace(a, []byte(`"lun_id": 1`), []byte(`"lun_id": 12`), 1))
	f.Fuzz(func(t *testing.T, base, raw []byte) {
		_, dec := sameAsLoad(t, "base", base, nil)
		sameAsLoad(t, "next", raw, dec)
	})
}
