package rados

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Errno values the package interprets; go-ceph returns them as negative codes.
const (
	errnoENOENT    = 2
	errnoEEXIST    = 17
	errnoEBUSY     = 16
	errnoEINVAL    = 22
	errnoERANGE    = 34
	errnoEOVERFLOW = 75
	errnoENOTSUPP  = 95 // EOPNOTSUPP
)

// Errno extracts the Ceph errno (positive) from an error returned by go-ceph, looking
// through the operation errors that wrap it; 0 means no errno was found. go-ceph
// hides the code behind an unexported type, and every package that calls it needs it.
func Errno(err error) int {
	var coder interface{ ErrorCode() int }
	if errors.As(err, &coder) {
		c := coder.ErrorCode()
		if c < 0 {
			c = -c
		}
		return c
	}
	return 0
}

// ConnOptions say how to reach the cluster.
type ConnOptions struct {
	// ConfFile is the ceph.conf to read (<ceph_config_dir>/<cluster_name>.conf).
	ConfFile string
	// ClientName is the cephx entity, e.g. "client.admin".
	ClientName string
	// OpTimeout bounds every mon and OSD operation, so a dead cluster surfaces as an
	// error instead of a hung daemon. Zero means 30 s.
	OpTimeout time.Duration
}

// Conn is a connected RADOS client. One is meant to live for the whole process and be
// shared by every goroutine: librados multiplexes, and each new connection costs a
// mon session and a cephx handshake.
type Conn struct {
	rc   *rados.Conn
	name string
}

// Connect reads the ceph.conf in opts and connects as opts.ClientName.
func Connect(opts ConnOptions) (*Conn, error) {
	name := opts.ClientName
	if name == "" {
		name = "client.admin"
	}
	id, ok := strings.CutPrefix(name, "client.")
	if !ok || id == "" {
		return nil, fmt.Errorf("rados: cluster_client_name %q: expected client.<id>", name)
	}
	rc, err := rados.NewConnWithUser(id)
	if err != nil {
		return nil, fmt.Errorf("rados: new connection as %s: %w", name, err)
	}
	if opts.ConfFile != "" {
		if err := rc.ReadConfigFile(opts.ConfFile); err != nil {
			rc.Shutdown()
			return nil, fmt.Errorf("rados: read %s: %w", opts.ConfFile, err)
		}
	} else if err := rc.ReadDefaultConfigFile(); err != nil {
		rc.Shutdown()
		return nil, fmt.Errorf("rados: read default ceph.conf: %w", err)
	}
	timeout := opts.OpTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	secs := fmt.Sprint(int(timeout.Seconds()))
	for _, opt := range []string{"rados_mon_op_timeout", "rados_osd_op_timeout", "client_mount_timeout"} {
		if err := rc.SetConfigOption(opt, secs); err != nil {
			rc.Shutdown()
			return nil, fmt.Errorf("rados: set %s: %w", opt, err)
		}
	}
	if err := rc.Connect(); err != nil {
		rc.Shutdown()
		return nil, fmt.Errorf("rados: connect to the cluster of %s as %s: %w", opts.ConfFile, name, err)
	}
	return &Conn{rc: rc, name: name}, nil
}

// Close ends the session. Watches and open objects of the connection end with it.
func (c *Conn) Close() {
	c.rc.Shutdown()
}

// Addrs reports the connection's own address (addr:port/nonce), the value a fencing
// blocklist entry names.
func (c *Conn) Addrs() (string, error) {
	a, err := c.rc.GetAddrs()
	if err != nil {
		return "", fmt.Errorf("rados: own address: %w", err)
	}
	return a, nil
}

// PoolID reports the id of the named pool.
func (c *Conn) PoolID(pool string) (int64, error) {
	id, err := c.rc.GetPoolByName(pool)
	if err != nil {
		return 0, fmt.Errorf("rados: pool %q: %w", pool, err)
	}
	return id, nil
}

// MonCommand sends cmd (marshalled to JSON) to the monitors and returns the output
// buffer. A non-zero status becomes an error carrying the mon's status text.
func (c *Conn) MonCommand(cmd map[string]any) ([]byte, error) {
	args, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("rados: encode mon command: %w", err)
	}
	out, status, err := c.rc.MonCommand(args)
	if err != nil {
		if status != "" {
			return out, fmt.Errorf("mon command %q: %s: %w", cmd["prefix"], status, err)
		}
		return out, fmt.Errorf("mon command %q: %w", cmd["prefix"], err)
	}
	return out, nil
}

// ConfigKeyGet returns a value of the mon config-key store, the target of the
// settings file's config:// indirection and of the TLS fallback.
func (c *Conn) ConfigKeyGet(key string) (string, error) {
	out, err := c.MonCommand(map[string]any{"prefix": "config-key get", "key": key})
	if err != nil {
		return "", fmt.Errorf("config-key %q: %w", key, err)
	}
	return string(out), nil
}

// ConfigKeySet stores a value in the mon config-key store.
func (c *Conn) ConfigKeySet(key, value string) error {
	if _, err := c.MonCommand(map[string]any{"prefix": "config-key set", "key": key, "val": value}); err != nil {
		return fmt.Errorf("config-key %q: %w", key, err)
	}
	return nil
}

// Raw is the underlying go-ceph connection, for packages (rbd) that call librbd on
// the same session instead of opening their own.
func (c *Conn) Raw() *rados.Conn { return c.rc }

// Name is the cephx entity the connection authenticated as, e.g. "client.admin".
func (c *Conn) Name() string { return c.name }
