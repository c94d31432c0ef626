package lio

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// loggedInInfo is what kernel 6.1's lio_target_nacl_info_show prints for a
// logged-in initiator with one TCP connection.
const loggedInInfo = `InitiatorName: iqn.1994-05.com.redhat:fullstack-client
InitiatorAlias: client-host
LIO Session ID: 1   ISID: 0x00023d000004  TSIH: 1  SessionType: Normal
Session State: TARG_SESS_STATE_LOGGED_IN
---------------------[iSCSI Session Values]-----------------------
  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    :     TTT
 0x00000000   0x00000000   0x0000001c   0x0000009b   0x00000000   0xffffffff
----------------------[iSCSI Connections]-------------------------
CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN
   Address 10.0.2.2 TCP  StatSN: 0x0000001f
`

func TestParseACLInfo(t *testing.T) {
	s, ok := ParseACLInfo(loggedInInfo)
	if !ok {
		t.Fatal("logged-in info parsed as no session")
	}
	want := Session{Initiator: "iqn.1994-05.com.redhat:fullstack-client", Alias: "client-host", State: "LOGGED_IN", Addresses: []string{"10.0.2.2"}}
	if s.Initiator != want.Initiator || s.Alias != want.Alias || s.State != want.State || !slices.Equal(s.Addresses, want.Addresses) {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if _, ok := ParseACLInfo("No active iSCSI Session for Initiator Endpoint: iqn.1994-05.com.redhat:x\n"); ok {
		t.Error("no-session info parsed as a session")
	}
	failed, ok := ParseACLInfo(`InitiatorName: iqn.x:y
InitiatorAlias: 
LIO Session ID: 2   ISID: 0x00023d000005  TSIH: 2  SessionType: Normal
Session State: TARG_SESS_STATE_FAILED
CID: 0  Connection State: TARG_CONN_STATE_CLEANUP_WAIT
   Address 10.0.2.3 TCP  StatSN: 0x00000001
`)
	if !ok || failed.State != "FAILED" || failed.Addresses != nil || failed.Alias != "" {
		t.Errorf("failed session: %+v, %v", failed, ok)
	}
}

func TestSessionsFromConfigfs(t *testing.T) {
	root := t.TempDir()
	f, err := NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	const iqn, client = "iqn.2003-01.com.example:t1", "iqn.1994-05.com.redhat:fullstack-client"
	if n, err := TargetSessions(f, iqn); err != nil || n != 0 {
		t.Fatalf("absent target: %d, %v", n, err)
	}
	if _, ok, err := ClientSession(f, iqn, client); err != nil || ok {
		t.Fatalf("absent target: %v, %v", ok, err)
	}
	write := func(rel, v string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tp := "target/iscsi/" + iqn + "/tpgt_1"
	write("target/iscsi/"+iqn+"/fabric_statistics/iscsi_instance/sessions", "3\n")
	write(tp+"/enable", "0\n")
	write(tp+"/acls/"+client+"/info", loggedInInfo)
	if n, err := TargetSessions(f, iqn); err != nil || n != 3 {
		t.Errorf("sessions = %d, %v; want 3", n, err)
	}
	if _, ok, _ := ClientSession(f, iqn, client); ok {
		t.Error("a session on a disabled TPG counted")
	}
	write(tp+"/enable", "1\n")
	s, ok, err := ClientSession(f, iqn, client)
	if err != nil || !ok || s.State != "LOGGED_IN" || !slices.Equal(s.Addresses, []string{"10.0.2.2"}) {
		t.Errorf("enabled TPG: %+v, %v, %v", s, ok, err)
	}
	if _, ok, _ := ClientSession(f, iqn, "iqn.1994-05.com.redhat:other"); ok {
		t.Error("an initiator without ACL has a session")
	}
	write("target/iscsi/"+iqn+"/fabric_statistics/iscsi_instance/sessions", "x")
	if _, err := TargetSessions(f, iqn); err == nil {
		t.Error("garbage session count accepted")
	}
}
