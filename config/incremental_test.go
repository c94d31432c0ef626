package config

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// choices drives a random commit sequence: a seeded generator, or a
// fuzzer's bytes (then the generator only fills in when they run out).
type choices struct {
	r    *rand.Rand
	data []byte
}

// n is a choice in [0, k).
func (c *choices) n(k int) int {
	if k <= 1 {
		return 0
	}
	if len(c.data) > 0 {
		v := int(c.data[0])
		c.data = c.data[1:]
		return v % k
	}
	return c.r.IntN(k)
}

func (c *choices) pick(s []string) string { return s[c.n(len(s))] }

// subset is a random subset of s, in s's order.
func (c *choices) subset(s []string) []string {
	var out []string
	for _, v := range s {
		if c.n(3) == 0 {
			out = append(out, v)
		}
	}
	return out
}

var (
	incTargets  = []string{"iqn.2003-01.com.example:t0", "iqn.2003-01.com.example:t1"}
	incGateways = []string{"gw1.example", "gw2.example", "gw3.example"}
	incClients  = []string{"iqn.1994-05.com.example:c0", "iqn.1994-05.com.example:c1", "iqn.1994-05.com.example:c2",
		"iqn.1994-05.com.example:c3", "iqn.1994-05.com.example:c4", "iqn.1994-05.com.example:c5"}
	incGroups = []string{"g0", "g1", "g2"}
	incDisks  = func() []string {
		var out []string
		for i := range 12 {
			out = append(out, fmt.Sprintf("rbd/img%02d", i))
		}
		return out
	}()
)

// incStart is the document a sequence starts from.
func incStart(tb testing.TB, c *choices) *Doc {
	tb.Helper()
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	switch c.n(4) {
	case 0:
		return NewDoc(now)
	case 1:
		d, err := Parse([]byte(fullDoc))
		if err != nil {
			tb.Fatal(err)
		}
		// without its unknown top-level key, so that the document is
		// encoded incrementally while its objects keep theirs
		d.Extra = nil
		return d
	default:
		d := scaleDoc(tb, 16)
		d.Targets[incTargets[0]] = d.Targets["iqn.2003-01.com.example.bench:target"]
		delete(d.Targets, "iqn.2003-01.com.example.bench:target")
		return d
	}
}

// incMutate applies one random change to d: a real mutation (whose error
// is ignored: a refused mutation may still have changed the document), or
// a raw change of the kinds only a hand edit or an older gateway makes,
// valid or not.
func incMutate(c *choices, d *Doc, now time.Time) {
	tgt := c.pick(incTargets)
	gw := c.pick(incGateways)
	cli := c.pick(incClients)
	disk := c.pick(incDisks)
	switch c.n(52) {
	case 0, 1, 2:
		pool, image, _ := SplitDiskID(disk)
		_, _ = d.AddDisk(NewDisk{Pool: pool, Image: image, PoolID: 1, WWN: "wwn-" + disk, Backstore: "user:rbd",
			AllocatingHost: gw}, now)
	case 3:
		_ = d.RemoveDisk(disk)
	case 4, 5, 6:
		var id *int
		if c.n(2) == 0 {
			v := c.n(20)
			id = &v
		}
		_, _, _ = d.MapTargetLun(tgt, disk, id, gw, now)
	case 7:
		_, _ = d.UnmapTargetLun(tgt, disk, now)
	case 8, 9, 10:
		_, _ = d.SetClientLuns(tgt, cli, c.subset(incDisks), now)
	case 11, 12:
		_, _ = d.AddClient(tgt, cli, now)
	case 13:
		_ = d.RemoveClient(tgt, cli, now)
	case 14:
		_ = d.SetClientAuth(tgt, cli, Auth{Username: "user" + fmt.Sprint(c.n(3)), Password: "password12345" + fmt.Sprint(c.n(3))}, now)
	case 15, 16:
		_, _ = d.ApplyGroup(tgt, c.pick(incGroups), c.subset(incClients), c.subset(incDisks), now)
	case 17:
		_ = d.RemoveGroup(tgt, c.pick(incGroups), now)
	case 18, 19:
		ip := fmt.Sprintf("192.0.2.%d", 1+slices.Index(incGateways, gw))
		var list []string
		if t := d.Targets[tgt]; t != nil {
			list = slices.Clone(t.IPList)
		}
		if !slices.Contains(list, ip) {
			list = append(list, ip)
		}
		_, _ = d.AddTargetGateway(tgt, gw, list, []string{ip}, now)
	case 20:
		_, _ = d.RemoveTargetGateways(tgt, gw, now)
	case 21:
		_ = d.SetDiskControls(disk, map[string]any{"qfull_timeout": c.n(30)}, now)
	case 22:
		_ = d.SetTargetControls(tgt, map[string]any{"immediate_data": c.n(2) == 0}, now)
	case 23:
		_ = d.SetACLEnabled(tgt, c.n(2) == 0, now)
	case 24:
		_, _ = d.AddTarget(tgt, now)
	case 25:
		if c.n(4) == 0 {
			_ = d.RemoveTarget(tgt)
		}
	case 26:
		d.DetachDisk(disk)
	case 27:
		d.ReassignOwners(now)
	case 28:
		// a new invalid name: refused unless the path is tolerated
		if t := d.MutTarget(tgt); t != nil {
			t.Clients["iqn.1994-05.com.example:bad name"] = NewClient()
		}
	case 29:
		// a client LUN on a disk the target does not export
		if cl := d.MutClient(tgt, cli); cl != nil {
			cl.Luns = maps.Clone(cl.Luns)
			if cl.Luns == nil {
				cl.Luns = map[string]LunRef{}
			}
			cl.Luns[disk] = LunRef{LunID: c.n(8)}
		}
	case 30:
		// a disk moved to another key: same pointer, new key
		other := c.pick(incDisks)
		if k := d.Disks[disk]; k != nil && d.Disks[other] == nil {
			handSet(d, &d.Disks, &d.disksOwn, Change{Kind: ChangedDisk, Key: other}, k)
			handDelete(d, &d.Disks, &d.disksOwn, Change{Kind: ChangedDisk, Key: disk})
		}
	case 31:
		switch c.n(4) {
		case 0:
			handSet(d, &d.Disks, &d.disksOwn, Change{Kind: ChangedDisk, Key: disk}, nil)
		case 1:
			if t := d.MutTarget(tgt); t != nil {
				t.Clients[cli] = nil
			}
		case 2:
			handSet(d, &d.Targets, &d.targetsOwn, Change{Kind: ChangedTarget, Target: tgt}, nil)
		default:
			handSet(d, &d.Gateways, &d.gatewaysOwn, Change{Kind: ChangedGateway, Key: gw}, nil)
		}
	case 32:
		// unknown keys, which send an object through the generic encoder
		switch c.n(5) {
		case 0:
			if k := d.MutDisk(disk); k != nil {
				k.Extra = map[string]any{"x_disk": c.n(3)}
			}
		case 1:
			if t := d.MutTarget(tgt); t != nil {
				if len(t.Extra) == 0 {
					t.Extra = map[string]any{"x_target": "v"}
				} else {
					t.Extra = nil
				}
			}
		case 2:
			if cl := d.MutClient(tgt, cli); cl != nil {
				cl.Extra = map[string]any{"x_client": true}
			}
		case 3:
			if t := d.MutTarget(tgt); t != nil && len(t.Disks) > 0 {
				t.Disks = maps.Clone(t.Disks)
				id := slices.Sorted(maps.Keys(t.Disks))[0]
				t.Disks[id] = LunRef{LunID: t.Disks[id].LunID, Extra: map[string]any{"x_lun": 1}}
			}
		default:
			if c.n(3) == 0 {
				d.Extra = map[string]any{"x_top": 1}
			} else {
				d.Extra = nil
			}
		}
	case 33:
		// a target LUN id changed, possibly to one in use or out of range
		if t := d.MutTarget(tgt); t != nil && len(t.Disks) > 0 {
			id := slices.Sorted(maps.Keys(t.Disks))[c.n(len(t.Disks))]
			ids := []int{c.n(20), -1, MaxTargetLunID + 1}
			t.Disks[id] = LunRef{LunID: ids[c.n(len(ids))]}
		}
	case 34:
		if c.n(4) == 0 {
			d.Version = 10
		} else {
			d.Epoch = -5 // still negative after the step's Touch
		}
	case 35:
		if cl := d.MutClient(tgt, cli); cl != nil {
			cl.GroupName = c.pick(incGroups)
		}
	case 36:
		if p := d.MutPortal(tgt, gw); p != nil {
			p.PortalIPAddresses = []string{fmt.Sprintf("192.0.2.%d", c.n(4))}
		}
	case 37:
		d.dropGateway(gw)
	case 38:
		// a nil disks map exempts client LUNs from being the target's
		if t := d.MutTarget(tgt); t != nil && c.n(3) == 0 {
			t.Disks = nil
		}
	case 39:
		d.GatewaysUpgraded = [][]string{nil, {}, {gw}}[c.n(3)]
	case 40:
		// a target disk the document does not define
		if t := d.MutTarget(tgt); t != nil && t.Disks != nil {
			t.Disks["rbd/missing"] = LunRef{LunID: 100 + c.n(3)}
		}
	case 41:
		// a group's LUNs and members out of step with the target
		if g := d.MutGroup(tgt, c.pick(incGroups)); g != nil {
			if c.n(2) == 0 {
				g.Members = append(slices.Clone(g.Members), cli)
			} else {
				g.Disks = maps.Clone(g.Disks)
				if g.Disks == nil {
					g.Disks = map[string]LunRef{}
				}
				g.Disks[disk] = LunRef{LunID: c.n(4)}
			}
		}
	case 42:
		if t := d.MutTarget(tgt); t != nil {
			if c.n(2) == 0 {
				t.IPList = nil
			} else if len(t.Portals) > 0 {
				t.Portals[slices.Sorted(maps.Keys(t.Portals))[0]] = nil
			}
		}
	case 43:
		// a value the encoder refuses
		switch c.n(3) {
		case 0:
			if k := d.MutDisk(disk); k != nil {
				k.Controls = map[string]any{"bad": make(chan int)}
			}
		case 1:
			if t := d.MutTarget(tgt); t != nil {
				t.Extra = map[string]any{"bad": make(chan int)}
			}
		default:
			if t := d.MutTarget(tgt); t != nil {
				t.Controls = map[string]any{"bad": make(chan int)}
			}
		}
	case 44:
		// a new gateway or target whose name breaks its grammar
		if c.n(2) == 0 {
			d.PutGateway("bad gw", &Gateway{})
		} else {
			d.PutTarget("bad target", NewTarget(now))
		}
	case 45:
		if k := d.MutDisk(disk); k != nil {
			k.BackstoreObjectName = ""
		}
	case 46, 47:
		// a group made by hand, its members' group names set or not
		if t := d.MutTarget(tgt); t != nil {
			name := c.pick(incGroups)
			g := NewGroup()
			g.Members = c.subset(slices.Sorted(maps.Keys(t.Clients)))
			for _, id := range c.subset(slices.Sorted(maps.Keys(t.Disks))) {
				g.Disks[id] = LunRef{LunID: c.n(6)}
			}
			t.Groups[name] = g
			for _, m := range g.Members {
				if cl := d.MutClient(tgt, m); cl != nil && c.n(8) != 0 {
					cl.GroupName = name
				}
			}
		}
	default:
		// a name that breaks its grammar on a disk: refused unless its
		// path was already invalid
		if k := d.MutDisk(disk); k != nil {
			k.Pool = []string{"rbd", "bad pool", "bad/pool"}[c.n(3)]
		}
	}
}

// injectInvalid rewrites d through its generic tree with an invalid name
// added, as an older gateway or a hand edit leaves one: it is what a store
// reads, with no Encoding.
func injectInvalid(tb testing.TB, c *choices, d *Doc) *Doc {
	tb.Helper()
	m, err := ParseAny(d.Marshal())
	if err != nil {
		tb.Fatal(err)
	}
	targets := m["targets"].(map[string]any)
	var target map[string]any
	for _, iqn := range slices.Sorted(maps.Keys(targets)) {
		target = targets[iqn].(map[string]any)
		break
	}
	switch c.n(5) {
	case 0:
		m["gateways"].(map[string]any)["bad gw"] = map[string]any{"active_luns": 0, "created": "", "updated": ""}
		return reparse(tb, m)
	case 1:
		targets["bad target"] = map[string]any{"auth": map[string]any{}, "clients": map[string]any{}, "controls": map[string]any{},
			"created": "", "disks": map[string]any{}, "groups": map[string]any{}, "portals": map[string]any{}}
		return reparse(tb, m)
	case 2:
		if target != nil {
			target["groups"].(map[string]any)["bad group"] = map[string]any{"disks": map[string]any{}, "members": []any{}}
			return reparse(tb, m)
		}
	}
	if c.n(2) == 0 || target == nil {
		m["disks"].(map[string]any)["rbd/bad img"] = map[string]any{"pool": "rbd", "image": "bad img",
			"backstore": "user:rbd", "backstore_object_name": "rbd.bad img", "controls": map[string]any{},
			"created": "", "updated": "", "wwn": "bad", "pool_id": 1}
	} else {
		target["clients"].(map[string]any)["iqn.1994-05.com.example:bad client"] =
			map[string]any{"auth": map[string]any{}, "group_name": "", "luns": map[string]any{}}
	}
	return reparse(tb, m)
}

func reparse(tb testing.TB, m map[string]any) *Doc {
	tb.Helper()
	raw, err := MarshalAny(m)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// committed is a document a sequence committed and its Encoding.
type committed struct {
	doc *Doc
	enc *Encoding
}

// runIncremental commits steps random changes the way the store does, and
// checks that every step's incremental encode gives the full path's bytes
// and error, and an Encoding that knows the document's invalid names.
func runIncremental(t *testing.T, c *choices, steps int) (ok, refused int) {
	t.Helper()
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	base := incStart(t, c)
	history := []committed{{doc: base}}
	for step := range steps {
		now = now.Add(time.Second)
		from := history[len(history)-1]
		switch c.n(12) {
		case 0:
			from = history[c.n(len(history))]
		case 1:
			from.enc = nil
		case 2:
			if len(history) > 0 && c.n(3) == 0 {
				from = committed{doc: injectInvalid(t, c, from.doc)}
				history = append(history, from)
			}
		}
		tolerated := from.doc.InvalidNames()
		if c.n(20) == 0 {
			// a caller that tolerates nothing
			tolerated = nil
		} else if from.enc != nil {
			if !slices.Equal(slices.Sorted(maps.Keys(from.enc.InvalidNames())), slices.Sorted(maps.Keys(tolerated))) {
				t.Fatalf("step %d: the Encoding's invalid names %v, the document's %v", step, from.enc.InvalidNames(), tolerated)
			}
			tolerated = from.enc.InvalidNames()
		}
		next := from.doc.Fork()
		for range 1 + c.n(3) {
			incMutate(c, next, now)
		}
		next.Touch(now)
		want, wantErr := next.ValidateAndMarshalSince(tolerated)
		got, enc, err := next.ValidateAndMarshalFrom(from.enc, tolerated)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("step %d: incremental error\n%v\nfull path's\n%v", step, err, wantErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d: incremental bytes differ from the full path's:\n%s", step, diffLines(string(want), string(got)))
		}
		if from.enc != nil && !bytes.Equal(from.doc.Marshal(), from.enc.Bytes()) {
			t.Fatalf("step %d: the document the Encoding was built from changed", step)
		}
		if err != nil {
			if enc != nil {
				t.Fatalf("step %d: an Encoding for an invalid document", step)
			}
			refused++
			continue
		}
		if !bytes.Equal(enc.Bytes(), got) {
			t.Fatalf("step %d: the Encoding's bytes are not the ones returned", step)
		}
		if len(next.Extra) == 0 && enc.disks == nil {
			// the full path accepted what the incremental one refused
			t.Fatalf("step %d: the incremental path gave up on a valid document", step)
		}
		ok++
		history = append(history, committed{doc: next, enc: enc})
		if len(history) > 8 {
			history = history[len(history)-8:]
		}
	}
	return ok, refused
}

// TestIncrementalMatchesFull: over random commit sequences (real
// mutations, hand-edit damage, invalid names read from the object,
// commits on older documents and without an Encoding), the incremental
// path gives exactly the full path's bytes and errors.
func TestIncrementalMatchesFull(t *testing.T) {
	seeds, steps := 40, 300
	if testing.Short() {
		seeds = 8
	}
	var ok, refused int
	for seed := range seeds {
		c := &choices{r: rand.New(rand.NewPCG(uint64(seed), 10))}
		o, r := runIncremental(t, c, steps)
		ok += o
		refused += r
	}
	// both verdicts must be exercised in earnest, or the test proves little
	if ok < seeds*steps/4 || refused < seeds*steps/20 {
		t.Fatalf("%d commits accepted, %d refused: the sequences do not exercise both", ok, refused)
	}
	t.Logf("%d commits accepted, %d refused", ok, refused)
}

// FuzzIncremental is TestIncrementalMatchesFull with the fuzzer choosing.
func FuzzIncremental(f *testing.F) {
	for seed := range uint64(4) {
		buf := binary.LittleEndian.AppendUint64(nil, seed)
		f.Add(seed, append(buf, 5, 9, 31, 2, 2, 2, 8, 39, 12, 0, 4))
	}
	f.Fuzz(func(t *testing.T, seed uint64, data []byte) {
		c := &choices{r: rand.New(rand.NewPCG(seed, 10)), data: data}
		runIncremental(t, c, 20+len(data)/4)
	})
}

// TestIncrementalReuses: a clientlun-shaped commit on a large document
// writes afresh only the target and the client it changed, and copies
// every disk.
func TestIncrementalReuses(t *testing.T) {
	d := scaleDoc(t, 256)
	_, enc, err := d.ValidateAndMarshalFrom(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := enc.Stats(); s.Reused != 0 {
		t.Fatalf("a first encode reused %d objects", s.Reused)
	}
	next := d.Fork()
	const iqn = "iqn.2003-01.com.example.bench:target"
	if _, err := next.SetClientLuns(iqn, "iqn.1994-05.com.example:c00001", []string{"rbd/img00004", "rbd/img00009"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, enc2, err := next.ValidateAndMarshalFrom(enc, enc.InvalidNames())
	if err != nil {
		t.Fatal(err)
	}
	if want := next.Marshal(); !bytes.Equal(got, want) {
		t.Fatalf("bytes differ:\n%s", diffLines(string(want), string(got)))
	}
	// the target and one client written; 256 disks and 63 clients copied
	if s := enc2.Stats(); s.Encoded != 2 || s.Reused != 256+63 {
		t.Fatalf("stats %+v, want 2 encoded and %d reused", s, 256+63)
	}
}

// TestIncrementalConcurrent: forks of one committed document commit at
// once on the same Encoding (run with -race): each gets the full path's
// bytes and the shared Encoding is left as it was.
func TestIncrementalConcurrent(t *testing.T) {
	d := scaleDoc(t, 256)
	raw, enc, err := d.ValidateAndMarshalFrom(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(raw)
	const iqn = "iqn.2003-01.com.example.bench:target"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := d.Fork()
			var err error
			switch w % 3 {
			case 0:
				_, err = next.SetClientLuns(iqn, fmt.Sprintf("iqn.1994-05.com.example:c%05d", w), []string{"rbd/img00001"}, time.Time{})
			case 1:
				_, err = next.AddDisk(NewDisk{Pool: "rbd", Image: fmt.Sprintf("new%d", w), WWN: fmt.Sprint("new-", w), Backstore: "user:rbd"}, time.Time{})
			default:
				cl := fmt.Sprintf("iqn.1994-05.com.example:new%d", w)
				if _, err = next.AddClient(iqn, cl, time.Time{}); err == nil {
					_, err = next.SetClientLuns(iqn, cl, []string{"rbd/img00007"}, time.Time{})
				}
			}
			if err != nil {
				errs <- err
				return
			}
			next.Touch(time.Time{})
			got, _, err := next.ValidateAndMarshalFrom(enc, enc.InvalidNames())
			if err != nil {
				errs <- err
				return
			}
			if want := next.Marshal(); !bytes.Equal(got, want) {
				errs <- fmt.Errorf("worker %d: bytes differ:\n%s", w, diffLines(string(want), string(got)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !bytes.Equal(enc.Bytes(), before) || !bytes.Equal(d.Marshal(), before) {
		t.Fatal("a commit changed the shared Encoding or document")
	}
}
