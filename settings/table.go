package settings

import (
	"fmt"
	"slices"
)

type kind uint8

const (
	kindStr     kind = iota
	kindBool         // true/false; upstream's BoolSetting
	kindLIOBool      // the same inputs, but its type in LIO is yes/no
	kindInt
	kindList
	kindEnum
)

// group is the upstream settings table a setting belongs to. The order of
// the groups, and of the settings within them, is the checkconf hash order.
type group uint8

const (
	groupSys group = iota
	groupTgt
	groupTCMU
	groupDevStatus
)

// Section names of the settings file.
const (
	SectionConfig       = "config"
	SectionTarget       = "target"
	SectionDeviceStatus = "device_status"
)

func (g group) section() string {
	switch g {
	case groupSys:
		return SectionConfig
	case groupTgt, groupTCMU:
		return SectionTarget
	default:
		return SectionDeviceStatus
	}
}

type setting struct {
	name   string
	group  group
	kind   kind
	min    int
	max    int
	values []string // kindEnum
	def    any      // string, Secret, bool, int or []string, like the field
	client bool     // one of upstream's CLIENT_SETTINGS (ACL attributes)
	noHash bool     // upstream's exclude_from_hash
	field  func(*Settings) any
}

// table lists every setting in upstream order (SYS, TGT, TCMU, DEV_STATUS).
// It is read-only.
var table = [...]setting{
	{name: "cluster_name", kind: kindStr, def: "ceph", field: func(s *Settings) any { return &s.ClusterName }},
	{name: "pool", kind: kindStr, def: "rbd", field: func(s *Settings) any { return &s.Pool }},
	{name: "cluster_client_name", kind: kindStr, def: "client.admin", noHash: true, field: func(s *Settings) any { return &s.ClusterClientName }},
	{name: "time_out", kind: kindInt, min: 1, max: 600, def: 30, field: func(s *Settings) any { return &s.TimeOut }},
	{name: "api_host", kind: kindStr, def: "::", field: func(s *Settings) any { return &s.APIHost }},
	{name: "api_port", kind: kindInt, min: 1, max: 65535, def: 5000, field: func(s *Settings) any { return &s.APIPort }},
	{name: "api_secure", kind: kindBool, def: true, field: func(s *Settings) any { return &s.APISecure }},
	{name: "api_ssl_verify", kind: kindBool, def: false, field: func(s *Settings) any { return &s.APISSLVerify }},
	{name: "loop_delay", kind: kindInt, min: 1, max: 60, def: 2, field: func(s *Settings) any { return &s.LoopDelay }},
	{name: "trusted_ip_list", kind: kindList, def: []string{}, field: func(s *Settings) any { return &s.TrustedIPList }},
	{name: "api_user", kind: kindStr, def: "admin", field: func(s *Settings) any { return &s.APIUser }},
	{name: "api_password", kind: kindStr, def: Secret("admin"), field: func(s *Settings) any { return &s.APIPassword }},
	{name: "ceph_user", kind: kindStr, def: "admin", field: func(s *Settings) any { return &s.CephUser }},
	{name: "debug", kind: kindBool, def: false, field: func(s *Settings) any { return &s.Debug }},
	{name: "minimum_gateways", kind: kindInt, min: 1, max: 9999, def: 2, field: func(s *Settings) any { return &s.MinimumGateways }},
	{name: "ceph_config_dir", kind: kindStr, def: "/etc/ceph", field: func(s *Settings) any { return &s.CephConfigDir }},
	{name: "gateway_conf", kind: kindStr, def: "gateway.conf", field: func(s *Settings) any { return &s.GatewayConf }},
	{name: "priv_key", kind: kindStr, def: "iscsi-gateway.key", field: func(s *Settings) any { return &s.PrivKey }},
	{name: "pub_key", kind: kindStr, def: "iscsi-gateway-pub.key", field: func(s *Settings) any { return &s.PubKey }},
	{name: "prometheus_exporter", kind: kindBool, def: true, field: func(s *Settings) any { return &s.PrometheusExporter }},
	{name: "prometheus_port", kind: kindInt, min: 1, max: 65535, def: 9287, field: func(s *Settings) any { return &s.PrometheusPort }},
	{name: "prometheus_host", kind: kindStr, def: "::", field: func(s *Settings) any { return &s.PrometheusHost }},
	{name: "logger_level", kind: kindInt, min: 10, max: 50, def: 10, noHash: true, field: func(s *Settings) any { return &s.LoggerLevel }},
	{name: "log_to_stderr", kind: kindBool, def: false, field: func(s *Settings) any { return &s.LogToStderr }},
	{name: "log_to_stderr_prefix", kind: kindStr, def: "", field: func(s *Settings) any { return &s.LogToStderrPrefix }},
	{name: "log_to_file", kind: kindBool, def: true, field: func(s *Settings) any { return &s.LogToFile }},
	{name: "alua_failover_type", kind: kindEnum, values: []string{AluaImplicit, AluaExplicit}, def: AluaImplicit, field: func(s *Settings) any { return &s.AluaFailoverType }},
	// Not upstream's: the per-source limit on failed API logins (0 turns
	// it off). Left out of the checkconf hash so Python gateways, which do
	// not know it, still agree with ours.
	{name: "api_failed_login_limit", kind: kindInt, min: 0, max: 10000, def: 10, noHash: true, field: func(s *Settings) any { return &s.APIFailedLoginLimit }},
	// Not upstream's: seconds between the API daemon's full re-reads of
	// LIO, which find and repair what changed behind its back (between
	// them it plans against what it holds in memory). Out of the hash too.
	{name: "drift_check_interval", kind: kindInt, min: 1, max: 86400, def: 60, noHash: true, field: func(s *Settings) any { return &s.DriftCheckInterval }},

	{name: "dataout_timeout", group: groupTgt, kind: kindInt, min: 2, max: 60, def: 20, client: true, field: func(s *Settings) any { return &s.Target.DataoutTimeout }},
	{name: "nopin_response_timeout", group: groupTgt, kind: kindInt, min: 3, max: 60, def: 5, client: true, field: func(s *Settings) any { return &s.Target.NopinResponseTimeout }},
	{name: "nopin_timeout", group: groupTgt, kind: kindInt, min: 3, max: 60, def: 5, client: true, field: func(s *Settings) any { return &s.Target.NopinTimeout }},
	{name: "cmdsn_depth", group: groupTgt, kind: kindInt, min: 1, max: 512, def: 128, client: true, field: func(s *Settings) any { return &s.Target.CmdsnDepth }},
	{name: "immediate_data", group: groupTgt, kind: kindLIOBool, def: true, field: func(s *Settings) any { return &s.Target.ImmediateData }},
	{name: "initial_r2t", group: groupTgt, kind: kindLIOBool, def: true, field: func(s *Settings) any { return &s.Target.InitialR2T }},
	{name: "max_outstanding_r2t", group: groupTgt, kind: kindInt, min: 1, max: 65535, def: 1, field: func(s *Settings) any { return &s.Target.MaxOutstandingR2T }},
	{name: "first_burst_length", group: groupTgt, kind: kindInt, min: 512, max: 16777215, def: 262144, field: func(s *Settings) any { return &s.Target.FirstBurstLength }},
	{name: "max_burst_length", group: groupTgt, kind: kindInt, min: 512, max: 16777215, def: 524288, field: func(s *Settings) any { return &s.Target.MaxBurstLength }},
	{name: "max_recv_data_segment_length", group: groupTgt, kind: kindInt, min: 512, max: 16777215, def: 262144, field: func(s *Settings) any { return &s.Target.MaxRecvDataSegmentLength }},
	{name: "max_xmit_data_segment_length", group: groupTgt, kind: kindInt, min: 512, max: 16777215, def: 262144, field: func(s *Settings) any { return &s.Target.MaxXmitDataSegmentLength }},

	{name: "max_data_area_mb", group: groupTCMU, kind: kindInt, min: 1, max: 2048, def: 8, field: func(s *Settings) any { return &s.Disk.MaxDataAreaMB }},
	{name: "qfull_timeout", group: groupTCMU, kind: kindInt, min: 0, max: 600, def: 5, field: func(s *Settings) any { return &s.Disk.QfullTimeout }},
	{name: "osd_op_timeout", group: groupTCMU, kind: kindInt, min: 0, max: 600, def: 30, field: func(s *Settings) any { return &s.Disk.OsdOpTimeout }},
	{name: "hw_max_sectors", group: groupTCMU, kind: kindInt, min: 1, max: 8192, def: 1024, field: func(s *Settings) any { return &s.Disk.HwMaxSectors }},

	{name: "lock_lost_cnt_threshhold", group: groupDevStatus, kind: kindInt, min: 1, max: 1000000, def: 12, field: func(s *Settings) any { return &s.DeviceStatus.LockLostCntThreshhold }},
	{name: "status_check_interval", group: groupDevStatus, kind: kindInt, min: 1, max: 600, def: 10, field: func(s *Settings) any { return &s.DeviceStatus.StatusCheckInterval }},
	{name: "stable_state_reset_count", group: groupDevStatus, kind: kindInt, min: 1, max: 600, def: 3, field: func(s *Settings) any { return &s.DeviceStatus.StableStateResetCount }},
}

func lookup(name string) *setting {
	for i := range table {
		if table[i].name == name {
			return &table[i]
		}
	}
	return nil
}

func (d *setting) section() string { return d.group.section() }

// secret reports whether the value must never be echoed.
func (d *setting) secret() bool {
	_, ok := d.def.(Secret)
	return ok
}

// get returns the field's value; a list is returned as a copy so callers
// cannot alias the Settings.
func (d *setting) get(s *Settings) any {
	switch p := d.field(s).(type) {
	case *string:
		return *p
	case *Secret:
		return *p
	case *bool:
		return *p
	case *int:
		return *p
	case *[]string:
		return slices.Clone(*p)
	default:
		panic(fmt.Sprintf("settings: %s has field type %T", d.name, p))
	}
}

// set stores a value of the field's type (as produced by normalize).
func (d *setting) set(s *Settings, v any) {
	switch p := d.field(s).(type) {
	case *string:
		*p = v.(string)
	case *Secret:
		switch v := v.(type) {
		case Secret:
			*p = v
		default:
			*p = Secret(v.(string))
		}
	case *bool:
		*p = v.(bool)
	case *int:
		*p = v.(int)
	case *[]string:
		l := v.([]string)
		if l == nil {
			l = []string{}
		}
		*p = slices.Clone(l)
	default:
		panic(fmt.Sprintf("settings: %s has field type %T", d.name, p))
	}
}
