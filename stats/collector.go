package stats

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"ceph-iscsi/lio"
)

// Metric names. The first nine are upstream's (spec 8.3): names, labels and
// meanings are kept so that existing dashboards and alerts keep working.
const (
	MetricScrapeDuration = "ceph_iscsi_scrape_duration_seconds"
	MetricTPGTotal       = "ceph_iscsi_gateway_tpg_total"
	MetricLUNMapped      = "ceph_iscsi_lun_mapped"
	MetricLUNSize        = "ceph_iscsi_lun_size_bytes"
	MetricLUNIOPS        = "ceph_iscsi_lun_iops"
	MetricLUNReadBytes   = "ceph_iscsi_lun_read_bytes"
	MetricLUNWriteBytes  = "ceph_iscsi_lun_write_bytes"
	MetricClientLogin    = "ceph_iscsi_client_login"
	MetricClientLUN      = "ceph_iscsi_client_lun"

	MetricGatewayInfo     = "ceph_iscsi_gateway_info"
	MetricUp              = "ceph_iscsi_up"
	MetricTargetSessions  = "ceph_iscsi_target_sessions"
	MetricPortCommands    = "ceph_iscsi_lun_port_commands_total"
	MetricPortReadBytes   = "ceph_iscsi_lun_port_read_bytes_total"
	MetricPortWriteBytes  = "ceph_iscsi_lun_port_write_bytes_total"
	MetricTargetTPGs      = "ceph_iscsi_target_tpgs"
	MetricClientSessions  = "ceph_iscsi_client_sessions"
	MetricLUNSessions     = "ceph_iscsi_lun_sessions"
	metricLabelGateway    = "gw_name"
	metricLabelTarget     = "target_iqn"
	metricLabelLUN        = "lun_name"
	metricLabelClient     = "client_iqn"
	metricLabelOwner      = "gw_owner"
	metricLabelGatewayIQN = "gw_iqn"
)

// Collector reads LIO's statistics at scrape time and reports them as
// const metrics: no state is kept between scrapes.
type Collector struct {
	read    func() (lio.Statistics, error)
	gateway string
	version string
	log     *slog.Logger

	duration, tpgTotal, lunMapped, lunSize, iops, readBytes, writeBytes, login, clientLUN *prometheus.Desc

	info, up, targetSessions, targetTPGs, portCmds, portRead, portWrite, clientSessions, lunSessions *prometheus.Desc
}

// NewCollector collects the statistics of f for the gateway named gateway
// (upstream's gw_name, the FQDN), running version.
func NewCollector(f lio.FS, gateway, version string, log *slog.Logger) *Collector {
	return newCollector(func() (lio.Statistics, error) { return lio.ReadStatistics(f) }, gateway, version, log)
}

func newCollector(read func() (lio.Statistics, error), gateway, version string, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gw := prometheus.Labels{metricLabelGateway: gateway}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, gw)
	}
	return &Collector{
		read: read, gateway: gateway, version: version, log: log,
		// upstream's help strings, verbatim
		duration:   d(MetricScrapeDuration, "time taken to scrape iscsi stats (secs)"),
		tpgTotal:   prometheus.NewDesc(MetricTPGTotal, "target portal groups defined within gateway group", []string{metricLabelGatewayIQN}, nil),
		lunMapped:  d(MetricLUNMapped, "LUN mapping state 0=unmapped, 1=mapped", metricLabelLUN, metricLabelOwner),
		lunSize:    d(MetricLUNSize, "LUN size (bytes)", metricLabelLUN),
		iops:       d(MetricLUNIOPS, "IOPS per LUN per client", metricLabelClient, metricLabelLUN),
		readBytes:  d(MetricLUNReadBytes, "read bytes per LUN per client", metricLabelClient, metricLabelLUN),
		writeBytes: d(MetricLUNWriteBytes, "write bytes per LUN client", metricLabelClient, metricLabelLUN),
		login:      d(MetricClientLogin, "iscsi client session active (0=No, 1=Yes)", metricLabelClient),
		clientLUN:  d(MetricClientLUN, "LUN ID by client", metricLabelClient, metricLabelLUN),

		info:           d(MetricGatewayInfo, "ceph-iscsi gateway running this exporter (always 1)", "version"),
		up:             d(MetricUp, "1 when the last scrape read all of LIO's statistics, 0 when part failed"),
		targetSessions: d(MetricTargetSessions, "iSCSI sessions of the target on this gateway", metricLabelTarget),
		targetTPGs:     d(MetricTargetTPGs, "target portal groups of the target on this gateway", metricLabelTarget),
		portCmds:       d(MetricPortCommands, "SCSI commands received for the LUN through this gateway's target ports, all clients", metricLabelTarget, metricLabelLUN),
		portRead:       d(MetricPortReadBytes, "bytes read from the LUN through this gateway's target ports, all clients (MiB resolution)", metricLabelTarget, metricLabelLUN),
		portWrite:      d(MetricPortWriteBytes, "bytes written to the LUN through this gateway's target ports, all clients (MiB resolution)", metricLabelTarget, metricLabelLUN),
		clientSessions: d(MetricClientSessions, "logged-in iSCSI sessions of the client on this gateway", metricLabelClient),
		lunSessions:    d(MetricLUNSessions, "logged-in iSCSI sessions of the clients the LUN is mapped to", metricLabelLUN),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.duration, c.tpgTotal, c.lunMapped, c.lunSize, c.iops, c.readBytes,
		c.writeBytes, c.login, c.clientLUN, c.info, c.up, c.targetSessions, c.targetTPGs, c.portCmds, c.portRead,
		c.portWrite, c.clientSessions, c.lunSessions} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one read of LIO per call.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	st, err := c.read()
	up := 1.0
	if err != nil {
		// Partial statistics are still reported; ceph_iscsi_up says so.
		c.log.Warn("reading LIO statistics", "err", err)
		up = 0
	}
	m := newModel(st)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.info, 1, c.version)
	gauge(c.up, up)
	// Upstream answers 404 without a target; here the metric is left out
	// and the rest is served.
	if m.firstIQN != "" {
		gauge(c.tpgTotal, float64(m.tpgs), m.firstIQN)
	}
	for _, t := range m.targets {
		gauge(c.targetSessions, float64(t.Sessions), t.IQN)
		gauge(c.targetTPGs, float64(t.TPGs), t.IQN)
	}
	for _, l := range m.luns {
		gauge(c.lunMapped, b2f(l.Mapped), l.Name, l.Owner)
		gauge(c.lunSize, float64(l.Size), l.Name)
		gauge(c.lunSessions, float64(l.LoggedInSessions), l.Name)
	}
	for k, v := range m.portTotal {
		counter(c.portCmds, v.Commands, k[0], k[1])
		counter(c.portRead, v.ReadBytes, k[0], k[1])
		counter(c.portWrite, v.WriteBytes, k[0], k[1])
	}
	for _, cl := range m.clients {
		gauge(c.login, b2f(cl.LoggedInSessions > 0), cl.IQN)
		gauge(c.clientSessions, float64(cl.LoggedInSessions), cl.IQN)
		for _, l := range cl.LUNs {
			counter(c.iops, l.Commands, cl.IQN, l.Name)
			counter(c.readBytes, l.ReadBytes, cl.IQN, l.Name)
			counter(c.writeBytes, l.WriteBytes, cl.IQN, l.Name)
			gauge(c.clientLUN, float64(l.LUNID), cl.IQN, l.Name)
		}
	}
	gauge(c.duration, time.Since(start).Seconds())
}

// Report reads LIO once and builds the /api/stats body.
func (c *Collector) Report() Report {
	st, err := c.read()
	return NewReport(st, err, c.gateway, c.version)
}

// NewRegistry registers c with the Go runtime and process collectors.
func NewRegistry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ prometheus.Collector = (*Collector)(nil)
