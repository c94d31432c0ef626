package config

import (
	"errors"
	"testing"
	"time"
)

func TestNormalizeIQN(t *testing.T) {
	for in, want := range map[string]string{
		" IQN.2003-01.com.Example:T1 ": "iqn.2003-01.com.example:t1",
		"iqn.2003-01.com.example":      "iqn.2003-01.com.example",
		"iqn.2003-01.com":              "",
		"iqn.2003-21.com.example:x":    "",
		"iqn.2003-01.com.ex_ample:x":   "",
		"iqn.2003-01.com.example:a b":  "",
		"eui.0123456789abcdef":         "",
	} {
		got, err := NormalizeIQN(in)
		if got != want || (want == "") != errors.Is(err, ErrInvalidIQN) {
			t.Errorf("NormalizeIQN(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestValidCredentials(t *testing.T) {
	for _, c := range []struct{ u, p, mu, mp, want string }{
		{"", "", "", "", ""},
		{"username1", "password1234", "", "", ""},
		{`dom\user.name@x:1`, "pass/word-_12", "mutualüser", "mutualpass12", ""},
		{"username1", "", "", "", "Password is required"},
		{"username1", "pässword1234", "", "", ""},
		{"username1", "password 1234", "", "", "Invalid password"},
	} {
		if got := ValidCredentials(c.u, c.p, c.mu, c.mp); got != c.want {
			t.Errorf("ValidCredentials(%q, %q, %q, %q) = %q, want %q", c.u, c.p, c.mu, c.mp, got, c.want)
		}
	}
}

func TestApplyGroupLunIDs(t *testing.T) {
	now := time.Unix(0, 0)
	d := NewDoc(now)
	tg, _ := d.AddTarget("iqn.2003-01.com.example:t", now)
	for id, lun := range map[string]int{"rbd/a": 0, "rbd/b": 1, "rbd/c": 7} {
		d.Disks[id] = &Disk{}
		tg.Disks[id] = LunRef{LunID: lun}
	}
	d.AddClient("iqn.2003-01.com.example:t", "iqn.1994-05.com.x:c1", now)
	changed, err := d.ApplyGroup("iqn.2003-01.com.example:t", "g", []string{"iqn.1994-05.com.x:c1"}, []string{"rbd/a", "rbd/b", "rbd/c"}, now)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	g := tg.Groups["g"]
	// each disk keeps its target-level id while the group leaves it free
	if g.Disks["rbd/a"].LunID != 0 || g.Disks["rbd/b"].LunID != 1 || g.Disks["rbd/c"].LunID != 7 {
		t.Fatalf("lun ids %+v", g.Disks)
	}
	c := tg.Clients["iqn.1994-05.com.x:c1"]
	if c.GroupName != "g" || len(c.Luns) != 3 {
		t.Fatalf("member %+v", c)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if changed, err := d.ApplyGroup("iqn.2003-01.com.example:t", "g", []string{"iqn.1994-05.com.x:c1"}, []string{"rbd/c", "rbd/b", "rbd/a"}, now); err != nil || changed {
		t.Fatalf("same sets must be no change: %v %v", changed, err)
	}
	if lun, _ := nextGroupLun(g.Disks, 1); lun != 2 {
		t.Fatalf("taken preferred id: got %d, want the lowest free 2", lun)
	}
	if err := d.RemoveGroup("iqn.2003-01.com.example:t", "g", now); err != nil || c.GroupName != "" || len(c.Luns) != 3 {
		t.Fatalf("remove: %v %+v", err, c)
	}
	var ge *GroupError
	if _, err := d.ApplyGroup("iqn.2003-01.com.example:t", "h", []string{"iqn.1994-05.com.x:c1"}, nil, now); !errors.As(err, &ge) || ge.Msg != GroupValidationFailed {
		t.Fatalf("member with luns accepted: %v", err)
	}
}
