package rados

import (
	"regexp"
	"strings"
	"testing"
)

// TestClusterFacts asks the dev cluster (one mon, one OSD, pool rbd of size 1) what gwcli
// shows under /cluster.
func TestClusterFacts(t *testing.T) {
	conn := connect(t)
	st, err := conn.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Health, "HEALTH_") || st.OSDs != 1 || st.OSDsUp != 1 || st.OSDsIn != 1 || st.MONs != 1 || len(st.Quorum) != 1 {
		t.Errorf("status %+v", st)
	}
	pools, err := conn.Pools()
	if err != nil {
		t.Fatal(err)
	}
	var rbd *PoolInfo
	for i := range pools {
		if pools[i].Name == "rbd" {
			rbd = &pools[i]
		}
	}
	if rbd == nil || !rbd.Replicated || rbd.Size != 1 || rbd.ID <= 0 {
		t.Errorf("pool rbd in %+v", pools)
	}
	if _, err := conn.DF(); err != nil {
		t.Errorf("df: %v", err)
	}
	v, err := conn.Version()
	if err != nil || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("version %q %v", v, err)
	}
}

func TestDecodeClusterFacts(t *testing.T) {
	// A pre-octopus status nests the OSD counts; checks come sorted by name.
	st, err := decodeStatus([]byte(`{"health":{"status":"HEALTH_WARN","checks":{"ZZ":{"summary":{"message":"last"}},"AA":{"summary":{"message":"first"}}}},
		"quorum_names":["a","b"],"monmap":{"mons":[{},{},{}]},"osdmap":{"osdmap":{"num_osds":6,"num_up_osds":5,"num_in_osds":4}},
		"pgmap":{"bytes_total":1000,"bytes_used":10}}`))
	if err != nil || st.Health != "HEALTH_WARN" || strings.Join(st.Checks, ",") != "first,last" || st.MONs != 3 ||
		st.OSDs != 6 || st.OSDsUp != 5 || st.OSDsIn != 4 || st.RawSize != 1000 || st.RawUsed != 10 {
		t.Errorf("status %+v %v", st, err)
	}
	pools, err := decodeOSDDump([]byte(`{"pools":[{"pool_name":"ec","pool":3,"type":3,"size":6,"erasure_code_profile":"p42"},
		{"pool_name":"rep","pool":1,"type":1,"size":3,"quota_max_bytes":1024}],"erasure_code_profiles":{"p42":{"k":"4","m":"2"}}}`))
	if err != nil || len(pools) != 2 || pools[0].Replicated || pools[0].K != 4 || pools[0].M != 2 ||
		!pools[1].Replicated || pools[1].Size != 3 || pools[1].MaxBytes != 1024 {
		t.Errorf("pools %+v %v", pools, err)
	}
	df, err := decodeDF([]byte(`{"pools":[{"name":"rbd","stats":{"max_avail":2035872128,"bytes_used":4197648}}]}`))
	if err != nil || df["rbd"].MaxAvail != 2035872128 || df["rbd"].BytesUsed != 4197648 {
		t.Errorf("df %+v %v", df, err)
	}
	if df, err := decodeDF(nil); err != nil || len(df) != 0 {
		t.Errorf("df without a mgr: %v %v", df, err)
	}
}
