package rados

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ClusterStatus is what `ceph status` says about the cluster as a whole: the facts gwcli
// shows under /cluster.
type ClusterStatus struct {
	Health  string   // HEALTH_OK, HEALTH_WARN, HEALTH_ERR
	Checks  []string // the summary message of every health check, sorted by check name
	OSDs    int
	OSDsUp  int
	OSDsIn  int
	MONs    int
	Quorum  []string
	RawSize uint64
	RawUsed uint64
}

// Status runs the mon command `status` (no mgr needed; the pgmap totals are zero without one).
func (c *Conn) Status() (ClusterStatus, error) {
	out, err := c.MonCommand(map[string]any{"prefix": "status", "format": "json"})
	if err != nil {
		return ClusterStatus{}, fmt.Errorf("rados: cluster status: %w", err)
	}
	return decodeStatus(out)
}

func decodeStatus(out []byte) (ClusterStatus, error) {
	var st struct {
		Health struct {
			Status        string `json:"status"`
			OverallStatus string `json:"overall_status"`
			Checks        map[string]struct {
				Summary struct {
					Message string `json:"message"`
				} `json:"summary"`
			} `json:"checks"`
		} `json:"health"`
		Quorum []string `json:"quorum_names"`
		Monmap struct {
			NumMons int               `json:"num_mons"`
			Mons    []json.RawMessage `json:"mons"`
		} `json:"monmap"`
		OSDMap json.RawMessage `json:"osdmap"`
		PGMap  struct {
			BytesTotal uint64 `json:"bytes_total"`
			BytesUsed  uint64 `json:"bytes_used"`
		} `json:"pgmap"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return ClusterStatus{}, fmt.Errorf("rados: decode cluster status: %w", err)
	}
	type osdCounts struct {
		NumOSDs   int `json:"num_osds"`
		NumUpOSDs int `json:"num_up_osds"`
		NumInOSDs int `json:"num_in_osds"`
	}
	// Before octopus the counts sit one level deeper, under osdmap.osdmap.
	var osd struct {
		osdCounts
		Nested *osdCounts `json:"osdmap"`
	}
	if len(st.OSDMap) > 0 {
		if err := json.Unmarshal(st.OSDMap, &osd); err != nil {
			return ClusterStatus{}, fmt.Errorf("rados: decode cluster status osdmap: %w", err)
		}
	}
	counts := osd.osdCounts
	if osd.Nested != nil {
		counts = *osd.Nested
	}
	s := ClusterStatus{
		Health: st.Health.Status, OSDs: counts.NumOSDs, OSDsUp: counts.NumUpOSDs, OSDsIn: counts.NumInOSDs,
		MONs: st.Monmap.NumMons, Quorum: st.Quorum, RawSize: st.PGMap.BytesTotal, RawUsed: st.PGMap.BytesUsed,
	}
	if s.Health == "" {
		s.Health = st.Health.OverallStatus
	}
	if len(st.Monmap.Mons) > 0 {
		s.MONs = len(st.Monmap.Mons)
	}
	names := make([]string, 0, len(st.Health.Checks))
	for k := range st.Health.Checks {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if m := st.Health.Checks[k].Summary.Message; m != "" {
			s.Checks = append(s.Checks, m)
		}
	}
	return s, nil
}

// PoolInfo is one pool of the OSD map.
type PoolInfo struct {
	Name       string
	ID         int64
	Replicated bool
	Size       int // replicas (replicated pools)
	K, M       int // erasure pools
	MaxBytes   uint64
}

// Pools lists the pools of the OSD map (`osd dump`), with their erasure-code profile's k and m.
func (c *Conn) Pools() ([]PoolInfo, error) {
	out, err := c.MonCommand(map[string]any{"prefix": "osd dump", "format": "json"})
	if err != nil {
		return nil, fmt.Errorf("rados: osd dump: %w", err)
	}
	return decodeOSDDump(out)
}

func decodeOSDDump(out []byte) ([]PoolInfo, error) {
	var d struct {
		Pools []struct {
			Name          string `json:"pool_name"`
			ID            int64  `json:"pool"`
			Type          int    `json:"type"`
			Size          int    `json:"size"`
			Profile       string `json:"erasure_code_profile"`
			QuotaMaxBytes uint64 `json:"quota_max_bytes"`
		} `json:"pools"`
		Profiles map[string]map[string]any `json:"erasure_code_profiles"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("rados: decode osd dump: %w", err)
	}
	pools := make([]PoolInfo, 0, len(d.Pools))
	for _, p := range d.Pools {
		pi := PoolInfo{Name: p.Name, ID: p.ID, Replicated: p.Type == 1, Size: p.Size, MaxBytes: p.QuotaMaxBytes}
		if p.Type == 3 {
			prof := d.Profiles[p.Profile]
			pi.K, pi.M = profileInt(prof["k"]), profileInt(prof["m"])
		}
		pools = append(pools, pi)
	}
	return pools, nil
}

// profileInt reads an erasure-code profile value, which the mon prints as a string.
func profileInt(v any) int {
	switch x := v.(type) {
	case string:
		n, _ := strconv.Atoi(strings.TrimSpace(x))
		return n
	case float64:
		return int(x)
	}
	return 0
}

// PoolUsage is one pool's line of `ceph df`.
type PoolUsage struct {
	MaxAvail  uint64
	BytesUsed uint64
}

// DF runs `df` (answered by the mgr; without one it lists no pools) and returns the usage of
// each pool by name.
func (c *Conn) DF() (map[string]PoolUsage, error) {
	out, err := c.MonCommand(map[string]any{"prefix": "df", "format": "json"})
	if err != nil {
		return nil, fmt.Errorf("rados: df: %w", err)
	}
	return decodeDF(out)
}

func decodeDF(out []byte) (map[string]PoolUsage, error) {
	res := map[string]PoolUsage{}
	if len(strings.TrimSpace(string(out))) == 0 {
		return res, nil
	}
	var d struct {
		Pools []struct {
			Name  string `json:"name"`
			Stats struct {
				MaxAvail  uint64 `json:"max_avail"`
				BytesUsed uint64 `json:"bytes_used"`
			} `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("rados: decode df: %w", err)
	}
	for _, p := range d.Pools {
		res[p.Name] = PoolUsage{MaxAvail: p.Stats.MaxAvail, BytesUsed: p.Stats.BytesUsed}
	}
	return res, nil
}

// Version reports the cluster's version as upstream's gwcli shows it ("16.2.15"), from the
// mon command `version` instead of a `ceph version` subprocess.
func (c *Conn) Version() (string, error) {
	out, err := c.MonCommand(map[string]any{"prefix": "version", "format": "json"})
	if err != nil {
		return "", fmt.Errorf("rados: version: %w", err)
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return "", fmt.Errorf("rados: decode version: %w", err)
	}
	// "ceph version 16.2.15 (hash) pacific (stable)": upstream keeps the third word, cut to
	// three dotted parts.
	f := strings.Fields(v.Version)
	if len(f) < 3 {
		return v.Version, nil
	}
	parts := strings.Split(f[2], ".")
	if len(parts) > 3 {
		parts = parts[:3]
	}
	return strings.Join(parts, "."), nil
}
