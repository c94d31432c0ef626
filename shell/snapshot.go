package shell

import "ceph-iscsi/config"

// Snapshot is everything the tree shows, gathered once per command: the config document from
// the API, the cluster facts from RADOS, and the gateways' states. Render is a pure function
// of it.
type Snapshot struct {
	Raw    []byte      // GET /api/config as the API sent it (export prints it)
	Config *config.Doc // Raw, decoded

	Cluster ClusterFacts
	Pools   map[string]PoolFacts  // by pool name
	Images  map[string]ImageFacts // by "pool/image"; a disk without an entry is NOT FOUND

	Gateways   map[string]GatewayState // by gateway name, from /api/_ping
	DiskStatus map[string]string       // by "pool/image": Online, Degraded, Unknown, ...
	LoggedIn   map[string]bool         // by "<target iqn>/<client iqn>"
}

// ClusterFacts are the cluster-wide facts of /cluster.
type ClusterFacts struct {
	Name    string // "ceph"
	Health  string // HEALTH_OK, HEALTH_WARN, HEALTH_ERR; "" when unknown
	Checks  []string
	Version string
	OSDs    int
	OSDsUp  int
	OSDsIn  int
	MONs    int
	Quorum  []string
	RawSize uint64 // bytes
	RawUsed uint64
	Conf    string // the ceph.conf path
	Client  string // the cephx client name
}

// PoolFacts are one pool's facts of /cluster/<name>/pools.
type PoolFacts struct {
	Name       string
	Replicated bool
	Size       int // replicas, or k+m for erasure pools
	K, M       int // erasure pools only
	MaxAvail   uint64
	Used       uint64
	MaxBytes   uint64
}

// ImageFacts are one RBD image's facts.
type ImageFacts struct {
	Size      uint64
	Features  []string
	Snapshots []string
	SnapSizes []uint64 // the size of each of Snapshots, in the same order
}

// GatewayState is a gateway's state word of spec §10.2.
type GatewayState string

const (
	GatewayUp           GatewayState = "UP"
	GatewayPartial      GatewayState = "PARTIAL"
	GatewayUnauthorized GatewayState = "UNAUTHORIZED"
	GatewayForbidden    GatewayState = "FORBIDDEN"
	GatewayUnknown      GatewayState = "UNKNOWN"
	GatewayDown         GatewayState = "DOWN"
)
