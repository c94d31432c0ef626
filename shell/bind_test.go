package shell

import (
	"testing"
)

func TestBind(t *testing.T) {
	create := &Command{Name: "create", Params: []Param{
		{Name: "pool", Required: true}, {Name: "image", Required: true}, {Name: "size", Required: true},
		{Name: "backstore", Default: "user:rbd"}, {Name: "count", Default: "1"},
	}}
	exact := &Command{Name: "delete", Params: []Param{{Name: "image_id", Required: true}}}
	reconf := &Command{Name: "reconfigure", Variadic: true, Params: []Param{
		{Name: "attribute", Required: true}, {Name: "value", Required: true}}}
	noargs := &Command{Name: "info"}

	ok := []struct {
		c     *Command
		words []string
		want  map[string]string
		given []string
	}{
		{create, []string{"rbd", "img", "1G"}, map[string]string{"pool": "rbd", "image": "img", "size": "1G", "backstore": "user:rbd", "count": "1"}, []string{"pool", "image", "size"}},
		{create, []string{"pool=rbd", "size=2G", "image=x", "count=3"}, map[string]string{"pool": "rbd", "image": "x", "size": "2G", "backstore": "user:rbd", "count": "3"}, []string{"pool", "image", "size", "count"}},
		{create, []string{"rbd", "image=x", "size=1G", "backstore=user:rbd"}, map[string]string{"pool": "rbd", "image": "x", "size": "1G", "backstore": "user:rbd", "count": "1"}, []string{"pool", "image", "size", "backstore"}},
		{create, []string{"rbd", "x", "size="}, map[string]string{"pool": "rbd", "image": "x", "size": "", "backstore": "user:rbd", "count": "1"}, []string{"pool", "image", "size"}},
		{reconf, []string{"max_data_area_mb", "8", "16"}, map[string]string{"attribute": "max_data_area_mb", "value": "8 16"}, []string{"attribute", "value"}},
		// A word whose part before "=" is not a keyword is positional.
		{exact, []string{"rbd/img=1"}, map[string]string{"image_id": "rbd/img=1"}, []string{"image_id"}},
		{noargs, nil, map[string]string{}, nil},
	}
	for _, tc := range ok {
		a, err := Bind(tc.c, tc.words)
		if err != nil {
			t.Errorf("%s %q: %v", tc.c.Name, tc.words, err)
			continue
		}
		for k, v := range tc.want {
			if a.Get(k) != v {
				t.Errorf("%s %q: %s = %q, want %q", tc.c.Name, tc.words, k, a.Get(k), v)
			}
		}
		if len(a.Values) != len(tc.want) {
			t.Errorf("%s %q: values %v", tc.c.Name, tc.words, a.Values)
		}
		for _, g := range tc.given {
			if !a.Given[g] {
				t.Errorf("%s %q: %s not marked given", tc.c.Name, tc.words, g)
			}
		}
		if len(a.Given) != len(tc.given) {
			t.Errorf("%s %q: given %v, want %v", tc.c.Name, tc.words, a.Given, tc.given)
		}
	}

	bad := []struct {
		c     *Command
		words []string
		msg   string
	}{
		{create, []string{"rbd"}, "Missing required parameters 'image', 'size'"},
		{create, []string{"rbd", "img"}, "Missing required parameter size"},
		{create, []string{"rbd", "img", "1G", "bogus=1"}, "Unexpected keyword parameter 'bogus'."},
		{create, []string{"rbd", "img", "1G", "zz=1", "aa=2"}, "Unexpected keyword parameters 'aa', 'zz'."},
		{create, []string{"rbd", "img", "1G", "pool=x"}, "Duplicate parameter pool."},
		{create, []string{"a", "b", "c", "d", "e", "f"}, "Got 6 positionnal parameters, expected at most 5."},
		{exact, []string{"a", "b"}, "Got 2 positionnal parameters, expected exactly 1."},
		{noargs, []string{"a"}, "Got 1 positionnal parameters, expected exactly 0."},
		{noargs, []string{"a=1"}, "Unexpected keyword parameter 'a'."},
		{exact, nil, "Missing required parameter image_id"},
	}
	for _, tc := range bad {
		_, err := Bind(tc.c, tc.words)
		if err == nil || err.Error() != tc.msg {
			t.Errorf("%s %q: error %v, want %q", tc.c.Name, tc.words, err, tc.msg)
		}
	}
}

func TestResolve(t *testing.T) {
	root := Build(groupSnapshot())
	tgt := "/iscsi-targets/iqn.2003-01.com.example.iscsi-gw:t1"
	hosts, err := Resolve(root, root, tgt+"/hosts")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		from       *Node
		path, want string
	}{
		{root, "/", "/"},
		{root, "", "/"},
		{hosts, "", tgt + "/hosts"},
		{hosts, ".", tgt + "/hosts"},
		{hosts, "..", tgt},
		{hosts, "../..", "/iscsi-targets"},
		{hosts, "../gateways/./gw1.example.test", tgt + "/gateways/gw1.example.test"},
		{hosts, "/disks/rbd/", "/disks/rbd"},
		{hosts, "//disks//rbd", "/disks/rbd"},
		{root, "/../..", "/"},
		{hosts, "iqn.1994-05.com.example:c1/lun 2", tgt + "/hosts/iqn.1994-05.com.example:c1/lun 2"},
		// a node whose name holds a slash
		{hosts, "../disks/rbd/disk_10", tgt + "/disks/rbd/disk_10"},
	}
	for _, tc := range cases {
		n, err := Resolve(root, tc.from, tc.path)
		if err != nil {
			t.Errorf("%s + %q: %v", tc.from.Path(), tc.path, err)
			continue
		}
		if n.Path() != tc.want {
			t.Errorf("%s + %q = %s, want %s", tc.from.Path(), tc.path, n.Path(), tc.want)
		}
	}
	n, _ := Resolve(root, root, tgt+"/disks/rbd/disk_10")
	if n.Kind != KindTargetDisk || n.Disk() != "rbd/disk_10" || n.Target != "iqn.2003-01.com.example.iscsi-gw:t1" {
		t.Errorf("target disk node %+v", n)
	}
	if _, err := Resolve(root, hosts, "../nothing/here"); err == nil || err.Error() != "No such path "+tgt+"/nothing" {
		t.Errorf("unknown path error %v", err)
	}
	if _, err := Resolve(root, root, "/nothing"); err == nil || err.Error() != "No such path /nothing" {
		t.Errorf("unknown path at root error %v", err)
	}
}

func TestSplit(t *testing.T) {
	cases := map[string][]string{
		"":                              nil,
		"  ls   / 2 ":                   {"ls", "/", "2"},
		"ls 'lun 0'":                    {"ls", "lun 0"},
		`cd "a b"/c`:                    {"cd", "a b/c"},
		`auth username=x password=a\ b`: {"auth", "username=x", "password=a b"},
		`x ''`:                          {"x", ""},
		"a\tb":                          {"a", "b"},
		`'it'\''s'`:                     {"it's"},
	}
	for line, want := range cases {
		got, err := Split(line)
		if err != nil || len(got) != len(want) {
			t.Errorf("Split(%q) = %q, %v; want %q", line, got, err, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("Split(%q) = %q, want %q", line, got, want)
			}
		}
	}
	if _, err := Split("ls 'open"); err == nil {
		t.Error("an open quote was accepted")
	}
}
