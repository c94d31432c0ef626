package shell

import (
	"context"
	"slices"
	"testing"
)

func TestComplete(t *testing.T) {
	sh := New(Options{Load: func(context.Context) (*Snapshot, error) { return groupSnapshot(), nil }})
	ctx := context.Background()
	if err := sh.Exec(ctx, "cd /iscsi-targets/iqn.2003-01.com.example.iscsi-gw:t1"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		line string
		want []string // all of these, in this order, among the candidates
		only bool     // and nothing else
	}{
		{"", nil, true},
		{"cd /isc", []string{"/iscsi-targets/"}, true},
		{"cd ho", []string{"host-groups/", "hosts/"}, true},
		{"cd ../", []string{"../iqn.2003-01.com.example.iscsi-gw:t1/", "../iqn.2003-01.com.example.iscsi-gw:t2/"}, true},
		{"ls hosts/iqn.1994-05.com.example:c1/", []string{"hosts/iqn.1994-05.com.example:c1/'lun 0'", "hosts/iqn.1994-05.com.example:c1/'lun 2'"}, true},
		{"pw", []string{"pwd"}, true},
		{"/disks cr", []string{"create"}, true},
		// create's pool completes to the replicated pools only (ssd is erasure-coded)
		{"/disks create ", []string{"rbd"}, true},
		{"/disks create s", []string{"size="}, true},
		{"/disks create p", []string{"pool="}, true},
		{"/disks create pool=r", []string{"pool=rbd"}, true},
		{"/disks create rbd i", []string{"image="}, true},
		{"goto ho", []string{"host-groups", "hosts"}, true},
		{"cd @ga", []string{"@gateways"}, true},
		{"bookmarks ", []string{"add", "del", "go", "show"}, true},
		{"help l", []string{"ls"}, true},
		{"ls / ", []string{"0", "1"}, false},
	}
	for _, tc := range cases {
		got := sh.Complete(ctx, tc.line)
		if tc.only && !slices.Equal(got, tc.want) {
			t.Errorf("Complete(%q) = %q, want %q", tc.line, got, tc.want)
			continue
		}
		i := 0
		for _, g := range got {
			if i < len(tc.want) && g == tc.want[i] {
				i++
			}
		}
		if i != len(tc.want) {
			t.Errorf("Complete(%q) = %q, want %q among them", tc.line, got, tc.want)
		}
	}
}
