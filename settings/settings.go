package settings

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// DefaultPath is the settings file every gateway reads; upstream hard-codes it.
const DefaultPath = "/etc/ceph/iscsi-gateway.cfg"

// ConfigKeyPrefix marks a value to be fetched from the mon config-key store.
const ConfigKeyPrefix = "config://"

// Values of AluaFailoverType.
const (
	AluaImplicit = "implicit"
	AluaExplicit = "explicit"
)

const redacted = "REDACTED"

// Secret holds a credential. Every way of printing, logging or JSON-encoding
// it yields "REDACTED", so a stray %v or slog call cannot leak it; Reveal is
// the only way to get the text.
type Secret string

// Reveal returns the secret text.
func (s Secret) Reveal() string { return string(s) }

// Format implements fmt.Formatter for every verb, including %#v and %x.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Settings holds every setting of the settings file, normalised and typed.
// Field comments give the file key; see the spec, section 2, for meanings.
type Settings struct {
	// [config]
	ClusterName        string   // cluster_name
	Pool               string   // pool
	ClusterClientName  string   // cluster_client_name
	TimeOut            int      // time_out
	APIHost            string   // api_host
	APIPort            int      // api_port
	APISecure          bool     // api_secure
	APISSLVerify       bool     // api_ssl_verify (always false when APISecure)
	LoopDelay          int      // loop_delay
	TrustedIPList      []string // trusted_ip_list
	APIUser            string   // api_user
	APIPassword        Secret   // api_password
	CephUser           string   // ceph_user
	Debug              bool     // debug
	MinimumGateways    int      // minimum_gateways
	CephConfigDir      string   // ceph_config_dir
	GatewayConf        string   // gateway_conf
	PrivKey            string   // priv_key
	PubKey             string   // pub_key
	PrometheusExporter bool     // prometheus_exporter
	PrometheusPort     int      // prometheus_port
	PrometheusHost     string   // prometheus_host
	LoggerLevel        int      // logger_level (Python logging level, 10-50)
	LogToStderr        bool     // log_to_stderr
	LogToStderrPrefix  string   // log_to_stderr_prefix
	LogToFile          bool     // log_to_file
	AluaFailoverType   string   // alua_failover_type: AluaImplicit or AluaExplicit
	// APIFailedLoginLimit is api_failed_login_limit (ours, not upstream's):
	// how many failed basic-auth logins one source may make in a row before
	// the API answers it 429; it regains one attempt every minute/limit.
	// 0 turns the back-off off.
	APIFailedLoginLimit int
	// DriftCheckInterval is drift_check_interval (ours, not upstream's):
	// seconds between the API daemon's full re-reads of LIO, which find and
	// repair changes made behind its back.
	DriftCheckInterval int

	// Target holds the [target] TPG/ACL settings: the global defaults of
	// every target's controls.
	Target TargetSettings
	// Disk holds the [target] tcmu settings: the global defaults of every
	// disk's controls.
	Disk DiskSettings
	// DeviceStatus holds the [device_status] settings.
	DeviceStatus DeviceStatusSettings

	// Warnings lists what the parser ignored (unknown keys and sections) for
	// the daemon to log once its logger exists. They never contain values.
	Warnings []string

	path      string       // where the settings came from, for messages
	pending   []pendingRef // config:// values not resolved yet
	sslVerify bool         // api_ssl_verify as written, before api_secure forces it off
}

// TargetSettings holds the target-scoped TPG parameters and ACL attributes.
type TargetSettings struct {
	DataoutTimeout           int  // dataout_timeout (client setting)
	NopinResponseTimeout     int  // nopin_response_timeout (client setting)
	NopinTimeout             int  // nopin_timeout (client setting)
	CmdsnDepth               int  // cmdsn_depth (client setting)
	ImmediateData            bool // immediate_data (LIO bool)
	InitialR2T               bool // initial_r2t (LIO bool)
	MaxOutstandingR2T        int  // max_outstanding_r2t
	FirstBurstLength         int  // first_burst_length
	MaxBurstLength           int  // max_burst_length
	MaxRecvDataSegmentLength int  // max_recv_data_segment_length
	MaxXmitDataSegmentLength int  // max_xmit_data_segment_length
}

// DiskSettings holds the per-disk tcmu settings of the user:rbd backstore.
type DiskSettings struct {
	MaxDataAreaMB int // max_data_area_mb
	QfullTimeout  int // qfull_timeout
	OsdOpTimeout  int // osd_op_timeout
	HwMaxSectors  int // hw_max_sectors
}

// DeviceStatusSettings tunes the device status watcher.
type DeviceStatusSettings struct {
	LockLostCntThreshhold int // lock_lost_cnt_threshhold (sic)
	StatusCheckInterval   int // status_check_interval
	StableStateResetCount int // stable_state_reset_count
}

// Defaults returns the settings used when the file is missing or silent.
func Defaults() *Settings {
	s := &Settings{path: DefaultPath}
	for i := range table {
		d := &table[i]
		d.set(s, d.def)
	}
	return s
}

// CephConfPath is the ceph.conf of the cluster. It is formatted exactly as
// upstream does (no path cleaning) because the LIO layer compares it with
// "/etc/ceph/ceph.conf" to decide whether the tcmu cfgstring needs ";conf=".
func (s *Settings) CephConfPath() string {
	return s.CephConfigDir + "/" + s.ClusterName + ".conf"
}

// ClientID is cluster_client_name without its entity type ("admin" for
// "client.admin"), as used in the tcmu cfgstring option ";id=". Parsing
// guarantees the name has a dot.
func (s *Settings) ClientID() string {
	_, id, _ := strings.Cut(s.ClusterClientName, ".")
	return id
}

// IsDefaultClient reports whether librados runs as client.admin, in which
// case the tcmu cfgstring carries no ";id=".
func (s *Settings) IsDefaultClient() bool { return s.ClusterClientName == "client.admin" }

// PrivKeyPath is the RSA private key that decrypts CHAP passwords.
func (s *Settings) PrivKeyPath() string { return pyJoin(s.CephConfigDir, s.PrivKey) }

// PubKeyPath is the RSA public key that encrypts CHAP passwords.
func (s *Settings) PubKeyPath() string { return pyJoin(s.CephConfigDir, s.PubKey) }

// APIAddr is the listen address of the REST API.
func (s *Settings) APIAddr() string { return net.JoinHostPort(s.APIHost, strconv.Itoa(s.APIPort)) }

// APIScheme is "https" or "http", the scheme used to reach every gateway.
func (s *Settings) APIScheme() string {
	if s.APISecure {
		return "https"
	}
	return "http"
}

// PrometheusAddr is the listen address of the metrics exporter.
func (s *Settings) PrometheusAddr() string {
	return net.JoinHostPort(s.PrometheusHost, strconv.Itoa(s.PrometheusPort))
}

// LogLevel maps logger_level (Python's 10 DEBUG .. 50 CRITICAL) onto slog's
// scale (-4 DEBUG .. 12), keeping intermediate values in proportion.
func (s *Settings) LogLevel() slog.Level {
	return slog.Level((s.LoggerLevel - 20) * 2 / 5)
}

// LogValue implements slog.LogValuer, for values and pointers alike;
// api_password is redacted and the attributes use the file's key names.
func (s Settings) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(table))
	for i := range table {
		d := &table[i]
		v := d.get(&s)
		if _, ok := v.(Secret); ok {
			v = redacted // do not rely on the handler honouring LogValuer
		}
		attrs = append(attrs, slog.Any(d.name, v))
	}
	return slog.GroupValue(attrs...)
}

// LIOYesNo renders a LIO bool the way LIO parameters expect it.
func LIOYesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// pyJoin joins like Python's os.path.join, which upstream uses for the key
// files: an absolute second part replaces the first.
func pyJoin(dir, name string) string {
	switch {
	case strings.HasPrefix(name, "/"):
		return name
	case dir == "" || strings.HasSuffix(dir, "/"):
		return dir + name
	default:
		return dir + "/" + name
	}
}
