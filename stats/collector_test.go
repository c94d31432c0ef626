package stats

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"ceph-iscsi/lio"
)

// everyFamily is every family the collector emits but the scrape duration,
// whose value is the clock's.
var everyFamily = []string{
	MetricTPGTotal, MetricLUNMapped, MetricLUNSize, MetricLUNIOPS, MetricLUNReadBytes, MetricLUNWriteBytes,
	MetricClientLogin, MetricClientLUN, MetricGatewayInfo, MetricUp, MetricTargetSessions, MetricTargetTPGs,
	MetricPortCommands, MetricPortReadBytes, MetricPortWriteBytes, MetricClientSessions, MetricLUNSessions,
}

func TestCollectorMetrics(t *testing.T) {
	// 3 LUNs; client0 has img0 (LUN 0) and img1 (LUN 1), client1 has img2
	// (LUN 0) and img0 (LUN 1); gw1 owns img0 and img2, gw2 owns img1.
	f := gateway(t, 3, 2, 2)
	io(t, f, 0, 1, 76, 1, 2)
	io(t, f, 1, 1, 5, 0, 7)
	portIO(t, f, 1, 0, 5, 0, 7)
	portIO(t, f, 1, 1, 80, 3, 4)
	login(t, f, 0)
	set(t, f, "fabric_statistics/iscsi_instance/sessions", "1")

	want := `# HELP ceph_iscsi_client_login iscsi client session active (0=No, 1=Yes)
# TYPE ceph_iscsi_client_login gauge
ceph_iscsi_client_login{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test"} 1
ceph_iscsi_client_login{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test"} 0
# HELP ceph_iscsi_client_lun LUN ID by client
# TYPE ceph_iscsi_client_lun gauge
ceph_iscsi_client_lun{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img0"} 0
ceph_iscsi_client_lun{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img1"} 1
ceph_iscsi_client_lun{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img0"} 1
ceph_iscsi_client_lun{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img2"} 0
# HELP ceph_iscsi_client_sessions logged-in iSCSI sessions of the client on this gateway
# TYPE ceph_iscsi_client_sessions gauge
ceph_iscsi_client_sessions{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test"} 1
ceph_iscsi_client_sessions{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test"} 0
# HELP ceph_iscsi_gateway_info ceph-iscsi gateway running this exporter (always 1)
# TYPE ceph_iscsi_gateway_info gauge
ceph_iscsi_gateway_info{gw_name="gw1.example.test",version="v1.2.3"} 1
# HELP ceph_iscsi_gateway_tpg_total target portal groups defined within gateway group
# TYPE ceph_iscsi_gateway_tpg_total gauge
ceph_iscsi_gateway_tpg_total{gw_iqn="iqn.2003-01.com.example:gw"} 2
# HELP ceph_iscsi_lun_iops IOPS per LUN per client
# TYPE ceph_iscsi_lun_iops counter
ceph_iscsi_lun_iops{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img0"} 0
ceph_iscsi_lun_iops{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img1"} 76
ceph_iscsi_lun_iops{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img0"} 5
ceph_iscsi_lun_iops{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img2"} 0
# HELP ceph_iscsi_lun_mapped LUN mapping state 0=unmapped, 1=mapped
# TYPE ceph_iscsi_lun_mapped gauge
ceph_iscsi_lun_mapped{gw_name="gw1.example.test",gw_owner="192.0.2.1",lun_name="rbd.img0"} 1
ceph_iscsi_lun_mapped{gw_name="gw1.example.test",gw_owner="192.0.2.1",lun_name="rbd.img2"} 1
ceph_iscsi_lun_mapped{gw_name="gw1.example.test",gw_owner="192.0.2.2",lun_name="rbd.img1"} 1
# HELP ceph_iscsi_lun_port_commands_total SCSI commands received for the LUN through this gateway's target ports, all clients
# TYPE ceph_iscsi_lun_port_commands_total counter
ceph_iscsi_lun_port_commands_total{gw_name="gw1.example.test",lun_name="rbd.img0",target_iqn="iqn.2003-01.com.example:gw"} 5
ceph_iscsi_lun_port_commands_total{gw_name="gw1.example.test",lun_name="rbd.img1",target_iqn="iqn.2003-01.com.example:gw"} 80
ceph_iscsi_lun_port_commands_total{gw_name="gw1.example.test",lun_name="rbd.img2",target_iqn="iqn.2003-01.com.example:gw"} 0
# HELP ceph_iscsi_lun_port_read_bytes_total bytes read from the LUN through this gateway's target ports, all clients (MiB resolution)
# TYPE ceph_iscsi_lun_port_read_bytes_total counter
ceph_iscsi_lun_port_read_bytes_total{gw_name="gw1.example.test",lun_name="rbd.img0",target_iqn="iqn.2003-01.com.example:gw"} 0
ceph_iscsi_lun_port_read_bytes_total{gw_name="gw1.example.test",lun_name="rbd.img1",target_iqn="iqn.2003-01.com.example:gw"} 3.145728e+06
ceph_iscsi_lun_port_read_bytes_total{gw_name="gw1.example.test",lun_name="rbd.img2",target_iqn="iqn.2003-01.com.example:gw"} 0
# HELP ceph_iscsi_lun_port_write_bytes_total bytes written to the LUN through this gateway's target ports, all clients (MiB resolution)
# TYPE ceph_iscsi_lun_port_write_bytes_total counter
ceph_iscsi_lun_port_write_bytes_total{gw_name="gw1.example.test",lun_name="rbd.img0",target_iqn="iqn.2003-01.com.example:gw"} 7.340032e+06
ceph_iscsi_lun_port_write_bytes_total{gw_name="gw1.example.test",lun_name="rbd.img1",target_iqn="iqn.2003-01.com.example:gw"} 4.194304e+06
ceph_iscsi_lun_port_write_bytes_total{gw_name="gw1.example.test",lun_name="rbd.img2",target_iqn="iqn.2003-01.com.example:gw"} 0
# HELP ceph_iscsi_lun_read_bytes read bytes per LUN per client
# TYPE ceph_iscsi_lun_read_bytes counter
ceph_iscsi_lun_read_bytes{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img0"} 0
ceph_iscsi_lun_read_bytes{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img1"} 1.048576e+06
ceph_iscsi_lun_read_bytes{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img0"} 0
ceph_iscsi_lun_read_bytes{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img2"} 0
# HELP ceph_iscsi_lun_sessions logged-in iSCSI sessions of the clients the LUN is mapped to
# TYPE ceph_iscsi_lun_sessions gauge
ceph_iscsi_lun_sessions{gw_name="gw1.example.test",lun_name="rbd.img0"} 1
ceph_iscsi_lun_sessions{gw_name="gw1.example.test",lun_name="rbd.img1"} 1
ceph_iscsi_lun_sessions{gw_name="gw1.example.test",lun_name="rbd.img2"} 0
# HELP ceph_iscsi_lun_size_bytes LUN size (bytes)
# TYPE ceph_iscsi_lun_size_bytes gauge
ceph_iscsi_lun_size_bytes{gw_name="gw1.example.test",lun_name="rbd.img0"} 1.073741824e+09
ceph_iscsi_lun_size_bytes{gw_name="gw1.example.test",lun_name="rbd.img1"} 2.147483648e+09
ceph_iscsi_lun_size_bytes{gw_name="gw1.example.test",lun_name="rbd.img2"} 3.221225472e+09
# HELP ceph_iscsi_lun_write_bytes write bytes per LUN client
# TYPE ceph_iscsi_lun_write_bytes counter
ceph_iscsi_lun_write_bytes{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img0"} 0
ceph_iscsi_lun_write_bytes{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img1"} 2.097152e+06
ceph_iscsi_lun_write_bytes{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img0"} 7.340032e+06
ceph_iscsi_lun_write_bytes{client_iqn="iqn.1994-05.com.example:client1",gw_name="gw1.example.test",lun_name="rbd.img2"} 0
# HELP ceph_iscsi_target_sessions iSCSI sessions of the target on this gateway
# TYPE ceph_iscsi_target_sessions gauge
ceph_iscsi_target_sessions{gw_name="gw1.example.test",target_iqn="iqn.2003-01.com.example:gw"} 1
# HELP ceph_iscsi_target_tpgs target portal groups of the target on this gateway
# TYPE ceph_iscsi_target_tpgs gauge
ceph_iscsi_target_tpgs{gw_name="gw1.example.test",target_iqn="iqn.2003-01.com.example:gw"} 2
# HELP ceph_iscsi_up 1 when the last scrape read all of LIO's statistics, 0 when part failed
# TYPE ceph_iscsi_up gauge
ceph_iscsi_up{gw_name="gw1.example.test"} 1
`
	c := NewCollector(f, testGW, "v1.2.3", nil)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), everyFamily...); err != nil {
		t.Fatal(err)
	}
	// the duration is there, with upstream's label
	if n := testutil.CollectAndCount(c, MetricScrapeDuration); n != 1 {
		t.Fatalf("%d scrape durations", n)
	}
}

// TestCollectorLint: the only problems are upstream's names, which
// dashboards and alerts depend on: a gauge called *_total and counters
// without it.
func TestCollectorLint(t *testing.T) {
	f := gateway(t, 2, 1, 1)
	probs, err := testutil.CollectAndLint(NewCollector(f, testGW, "v1", nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range probs {
		got = append(got, p.Metric+": "+p.Text)
	}
	slices.Sort(got)
	want := []string{
		`ceph_iscsi_gateway_tpg_total: non-counter metrics should not have "_total" suffix`,
		`ceph_iscsi_lun_iops: counter metrics should have "_total" suffix`,
		`ceph_iscsi_lun_read_bytes: counter metrics should have "_total" suffix`,
		`ceph_iscsi_lun_write_bytes: counter metrics should have "_total" suffix`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("lint:\n%s", strings.Join(got, "\n"))
	}
}

// TestCollectorLUNWithoutOwner: upstream's scrape fails (KeyError) on a
// storage object that no TPG has in the "ao" group; here it is reported
// with an empty owner, and the rest as usual.
func TestCollectorLUNWithoutOwner(t *testing.T) {
	f := gateway(t, 2, 1, 1)
	// a storage object that is in no target at all
	so := filepath.Join(f.Root(), "target/core/user_7/stray")
	if err := os.MkdirAll(filepath.Join(so, "attrib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(so, "attrib/dev_size"), []byte("4096\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// and an exported one whose owning TPG lost its ALUA binding
	set(t, f, "tpgt_2/lun/lun_1/alua_tg_pt_gp", "TG Port Alias: default_tg_pt_gp")
	want := `# HELP ceph_iscsi_lun_mapped LUN mapping state 0=unmapped, 1=mapped
# TYPE ceph_iscsi_lun_mapped gauge
ceph_iscsi_lun_mapped{gw_name="gw1.example.test",gw_owner="",lun_name="rbd.img1"} 0
ceph_iscsi_lun_mapped{gw_name="gw1.example.test",gw_owner="",lun_name="stray"} 0
ceph_iscsi_lun_mapped{gw_name="gw1.example.test",gw_owner="192.0.2.1",lun_name="rbd.img0"} 1
# HELP ceph_iscsi_lun_size_bytes LUN size (bytes)
# TYPE ceph_iscsi_lun_size_bytes gauge
ceph_iscsi_lun_size_bytes{gw_name="gw1.example.test",lun_name="rbd.img0"} 1.073741824e+09
ceph_iscsi_lun_size_bytes{gw_name="gw1.example.test",lun_name="rbd.img1"} 2.147483648e+09
ceph_iscsi_lun_size_bytes{gw_name="gw1.example.test",lun_name="stray"} 4096
# HELP ceph_iscsi_up 1 when the last scrape read all of LIO's statistics, 0 when part failed
# TYPE ceph_iscsi_up gauge
ceph_iscsi_up{gw_name="gw1.example.test"} 1
`
	c := NewCollector(f, testGW, "v1", nil)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), MetricLUNMapped, MetricLUNSize, MetricUp); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorNoTarget: where upstream answers 404, the gateway's own
// metrics are still there, and nothing describes a target that is not.
func TestCollectorNoTarget(t *testing.T) {
	for name, root := range map[string]func(t *testing.T) lio.FS{
		"no target_core_mod": func(t *testing.T) lio.FS {
			f, err := lio.NewFS(t.TempDir()) // emulated, then emptied
			if err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(f.Root(), "target")); err != nil {
				t.Fatal(err)
			}
			return f
		},
		"no target": func(t *testing.T) lio.FS {
			f, err := lio.NewEmulatedFS(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := NewCollector(root(t), testGW, "v9", nil)
			want := `# HELP ceph_iscsi_gateway_info ceph-iscsi gateway running this exporter (always 1)
# TYPE ceph_iscsi_gateway_info gauge
ceph_iscsi_gateway_info{gw_name="gw1.example.test",version="v9"} 1
# HELP ceph_iscsi_up 1 when the last scrape read all of LIO's statistics, 0 when part failed
# TYPE ceph_iscsi_up gauge
ceph_iscsi_up{gw_name="gw1.example.test"} 1
`
			if err := testutil.CollectAndCompare(c, strings.NewReader(want), everyFamily...); err != nil {
				t.Fatal(err)
			}
			if n := testutil.CollectAndCount(c, MetricScrapeDuration); n != 1 {
				t.Fatalf("%d scrape durations", n)
			}
		})
	}
}

// TestCollectorReadError: a counter that cannot be parsed turns
// ceph_iscsi_up to 0; everything else is still reported.
func TestCollectorReadError(t *testing.T) {
	f := gateway(t, 2, 1, 2)
	io(t, f, 0, 1, 9, 0, 0)
	set(t, f, "tpgt_1/acls/"+clientIQN(0)+"/lun_0/statistics/scsi_auth_intr/num_cmds", "not-a-number")
	want := `# HELP ceph_iscsi_lun_iops IOPS per LUN per client
# TYPE ceph_iscsi_lun_iops counter
ceph_iscsi_lun_iops{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img0"} 0
ceph_iscsi_lun_iops{client_iqn="iqn.1994-05.com.example:client0",gw_name="gw1.example.test",lun_name="rbd.img1"} 9
# HELP ceph_iscsi_up 1 when the last scrape read all of LIO's statistics, 0 when part failed
# TYPE ceph_iscsi_up gauge
ceph_iscsi_up{gw_name="gw1.example.test"} 0
`
	c := NewCollector(f, testGW, "v1", nil)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), MetricLUNIOPS, MetricUp); err != nil {
		t.Fatal(err)
	}
	r := c.Report()
	if r.Complete || !strings.Contains(r.Error, "num_cmds") {
		t.Fatalf("report: complete=%v error=%q", r.Complete, r.Error)
	}
}

func TestReport(t *testing.T) {
	f := gateway(t, 3, 2, 2)
	io(t, f, 0, 1, 76, 1, 2)
	io(t, f, 0, 0, 4, 1, 0)
	portIO(t, f, 1, 1, 80, 3, 4)
	login(t, f, 0)
	r := NewCollector(f, testGW, "v1.2.3", nil).Report()
	got, _ := json.Marshal(r)
	want := `{"gateway":"gw1.example.test","version":"v1.2.3","complete":true,` +
		`"targets":[{"target_iqn":"iqn.2003-01.com.example:gw","sessions":0,"tpgs":2}],` +
		`"luns":[` +
		`{"lun_name":"rbd.img0","size":1073741824,"owner":"192.0.2.1","mapped":true,"logged_in_sessions":1,"commands":0,"read_bytes":0,"write_bytes":0},` +
		`{"lun_name":"rbd.img1","size":2147483648,"owner":"192.0.2.2","mapped":true,"logged_in_sessions":1,"commands":80,"read_bytes":3145728,"write_bytes":4194304},` +
		`{"lun_name":"rbd.img2","size":3221225472,"owner":"192.0.2.1","mapped":true,"logged_in_sessions":0,"commands":0,"read_bytes":0,"write_bytes":0}],` +
		`"clients":[` +
		`{"client_iqn":"iqn.1994-05.com.example:client0","logged_in_sessions":1,"luns":[` +
		`{"lun_name":"rbd.img0","lun_id":0,"commands":4,"read_bytes":1048576,"write_bytes":0},` +
		`{"lun_name":"rbd.img1","lun_id":1,"commands":76,"read_bytes":1048576,"write_bytes":2097152}],` +
		`"commands":80,"read_bytes":2097152,"write_bytes":2097152},` +
		`{"client_iqn":"iqn.1994-05.com.example:client1","logged_in_sessions":0,"luns":[` +
		`{"lun_name":"rbd.img0","lun_id":1,"commands":0,"read_bytes":0,"write_bytes":0},` +
		`{"lun_name":"rbd.img2","lun_id":0,"commands":0,"read_bytes":0,"write_bytes":0}],` +
		`"commands":0,"read_bytes":0,"write_bytes":0}]}`
	if string(got) != want {
		t.Fatalf("report:\n got %s\nwant %s", got, want)
	}
	// an empty gateway: empty lists, never null
	e, _ := lio.NewEmulatedFS(t.TempDir())
	got, _ = json.Marshal(NewCollector(e, testGW, "v1", nil).Report())
	if want := `{"gateway":"gw1.example.test","version":"v1","complete":true,"targets":[],"luns":[],"clients":[]}`; string(got) != want {
		t.Fatalf("empty report: %s", got)
	}
}
