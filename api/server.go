package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/devstatus"
	"ceph-iscsi/rados"
	"ceph-iscsi/settings"
)

// Store is the shared config document; *rados.Store implements it, and unit
// tests use an in-memory fake.
type Store interface {
	Load(ctx context.Context) (*config.Doc, error)
	Commit(ctx context.Context, mutate rados.Mutation) (*config.Doc, error)
}

// LocalLIO applies the shared configuration to this gateway's LIO. The API
// decides what the configuration should be; the implementation (the lio
// reconciler) converges the kernel towards it, so one level-triggered call
// replaces upstream's many per-object operations.
type LocalLIO interface {
	// Reconcile makes local LIO match doc for this gateway. doc is the
	// committed document or, on a gateway that does not commit, the
	// document with the requested change applied in memory. A document
	// whose content LIO already holds (the config watch applied it, or
	// this is the commit of a preview applied before) costs nothing: one
	// reconcile per change per gateway.
	Reconcile(ctx context.Context, doc *config.Doc) error
	// Sessions counts the iSCSI sessions of a target on this gateway (0
	// when the target is not in LIO).
	Sessions(ctx context.Context, targetIQN string) (int, error)
	// ClientState is the session state of an initiator on this gateway, in
	// upper case ("LOGGED_IN", ...), or "" when it has no session.
	ClientState(ctx context.Context, targetIQN, clientIQN string) (string, error)
	// ClientInfo is the session of an initiator on this gateway, read from
	// the info file of its ACL in the target's enabled TPG; the zero value
	// when the target, the ACL or a session is missing.
	ClientInfo(ctx context.Context, targetIQN, clientIQN string) (ClientSession, error)
}

// ClientSession is what configfs shows of an initiator's session in
// .../iscsi/<target>/tpgt_N/acls/<initiator>/info (rtslib's NodeACL.session).
// A file starting "No active iSCSI Session" means no session: the zero value.
type ClientSession struct {
	// Alias is the value of the "InitiatorAlias:" line ("" when absent).
	Alias string
	// State is the session state of the "TARG_SESS_STATE_<STATE>" line,
	// upper-cased ("LOGGED_IN", "FAILED", ...).
	State string
	// Addresses are the first fields after "Address" of each connection's
	// line, in file order, e.g. "192.0.2.7" from "Address 192.0.2.7 TCP".
	Addresses []string
}

// Deps are what the server needs from the rest of the daemon.
type Deps struct {
	Settings *settings.Settings
	Store    Store
	// Gateway is this gateway's name (its FQDN), the key it has in the
	// config's gateways and portals.
	Gateway string
	LIO     LocalLIO
	// HTTPClient reaches peer gateways (TLS verification off when
	// api_secure, as upstream). Nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// PeerURL gives the base URL ("scheme://host:port") of a gateway; nil
	// means the settings' scheme and api_port, as upstream.
	PeerURL func(gateway string) string
	// Now is the clock for created/updated stamps (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger

	// LookupHost resolves gateway names for the IP allowlist (the system
	// resolver when nil); results are cached for DNSTTL (default 60 s).
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	DNSTTL     time.Duration
	// LocalAddrs lists this host's addresses (all interface addresses when
	// nil), for the allowlist and /api/sysinfo/ip_addresses.
	LocalAddrs func() ([]netip.Addr, error)
	// ISCSIListening reports whether something listens on TCP 3260, for
	// /api/_ping (a /proc/net/tcp{,6} scan when nil).
	ISCSIListening func() bool
	// OSRelease is the os-release file of /api/sysinfo/checkversions
	// (/etc/os-release when empty).
	OSRelease string
	// Images reaches RBD for the disk routes (NewRBDImages in the daemon);
	// nil makes those routes fail with an error instead of touching RBD.
	Images Images
	// DeviceStatus is the device-status tracker behind GET /api/disk's
	// `status` (a *devstatus.Tracker); nil answers "Unknown" for every disk.
	DeviceStatus DeviceStatus
}

// DeviceStatus reports tcmu-runner's view of an image ("pool/image"), false when
// it has none.
type DeviceStatus interface {
	Status(imageID string) (devstatus.Status, bool)
}

type server struct {
	Deps
	allow  *allowlist
	logins *loginLimiter
	chap   chapKeys
	peers  *peers
	// configBody is GET /api/config's answer for the current object version.
	configBody bodyCache
}

// NewServer builds the API with every upstream route registered.
func NewServer(deps Deps) *echo.Echo {
	s := newServer(deps)
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	s.routes(e)
	e.GET(OpenAPIPath, s.openAPI())
	return e
}

func newServer(d Deps) *server {
	if d.Settings == nil {
		d.Settings = settings.Defaults()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if d.PeerURL == nil {
		scheme, port := d.Settings.APIScheme(), d.Settings.APIPort
		d.PeerURL = func(gw string) string {
			return scheme + "://" + net.JoinHostPort(gw, itoa(port))
		}
	}
	if d.LookupHost == nil {
		d.LookupHost = systemLookup
	}
	if d.DNSTTL <= 0 {
		d.DNSTTL = time.Minute
	}
	if d.LocalAddrs == nil {
		d.LocalAddrs = interfaceAddrs
	}
	if d.ISCSIListening == nil {
		d.ISCSIListening = iscsiListening
	}
	if d.OSRelease == "" {
		d.OSRelease = "/etc/os-release"
	}
	if d.Images == nil {
		d.Images = noImages{}
	}
	s := &server{Deps: d}
	s.allow = newAllowlist(s)
	s.logins = newLoginLimiter(d.Settings.APIFailedLoginLimit, d.Now)
	s.chap = chapKeys{pub: d.Settings.PubKeyPath(), priv: d.Settings.PrivKeyPath()}
	s.peers = &peers{s: s}
	return s
}

func (s *server) now() time.Time { return s.Now() }
