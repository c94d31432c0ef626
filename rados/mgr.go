package rados

import (
	"encoding/json"
	"fmt"
	"time"
)

// MgrCommand sends cmd (marshalled to JSON) to the active ceph-mgr and returns the
// output buffer. Without a mgr, librados waits for one up to the connection's
// OpTimeout and the call fails.
func (c *Conn) MgrCommand(cmd map[string]any) ([]byte, error) {
	args, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("rados: encode mgr command: %w", err)
	}
	out, status, err := c.rc.MgrCommand([][]byte{args})
	if err != nil {
		if status != "" {
			return out, fmt.Errorf("mgr command %q: %s: %w", cmd["prefix"], status, err)
		}
		return out, fmt.Errorf("mgr command %q: %w", cmd["prefix"], err)
	}
	return out, nil
}

// ServiceDaemon is one daemon of a service in the mgr's service map (`ceph service
// status`), e.g. tcmu-runner's "<gateway>:<pool>/<image>".
type ServiceDaemon struct {
	// Status is the daemon's last rados_service_update_status map ("" values
	// included); nil when it never sent one.
	Status map[string]string `json:"status"`
	// StatusStamp is when the mgr received Status, in the mgr's text form
	// ("2006-01-02T15:04:05.000000-0700"); see ParseServiceStamp.
	StatusStamp string `json:"status_stamp"`
	LastBeacon  string `json:"last_beacon"`
}

// MgrAvailable reports whether the mon's MgrMap has an active mgr. It asks the mon,
// so it answers at once where a mgr command would wait for a mgr to appear.
func (c *Conn) MgrAvailable() (bool, error) {
	out, err := c.MonCommand(map[string]any{"prefix": "mgr stat", "format": "json"})
	if err != nil {
		return false, err
	}
	var st struct {
		Available bool `json:"available"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return false, fmt.Errorf("mgr stat: decode %q: %w", out, err)
	}
	return st.Available, nil
}

// ServiceStatus returns the daemons of one service of the mgr's service map, keyed by
// daemon name (an empty map when the service has none).
func (c *Conn) ServiceStatus(service string) (map[string]ServiceDaemon, error) {
	out, err := c.MgrCommand(map[string]any{"prefix": "service status", "format": "json"})
	if err != nil {
		return nil, err
	}
	return DecodeServiceStatus(out, service)
}

// DecodeServiceStatus picks one service's daemons out of `service status` JSON.
func DecodeServiceStatus(out []byte, service string) (map[string]ServiceDaemon, error) {
	var all map[string]map[string]ServiceDaemon
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, fmt.Errorf("service status: decode: %w", err)
	}
	daemons := all[service]
	if daemons == nil {
		daemons = map[string]ServiceDaemon{}
	}
	return daemons, nil
}

// serviceStampLayout is how the mgr prints a utime_t (upstream parses it with
// "%Y-%m-%dT%H:%M:%S.%f%z").
const serviceStampLayout = "2006-01-02T15:04:05.999999999-0700"

// ParseServiceStamp parses a ServiceDaemon stamp.
func ParseServiceStamp(s string) (time.Time, error) {
	t, err := time.Parse(serviceStampLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("service status stamp %q: %w", s, err)
	}
	return t, nil
}
