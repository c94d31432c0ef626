package commands

import (
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"

	"ceph-iscsi/host"
)

// identityOptions say which gateway of the configuration this process is and
// which addresses it owns. api and restore take the same flags: a restore
// that resolved another identity than its daemon would plan to remove the
// portals of the other gateways sharing the host.
type identityOptions struct {
	gatewayName string
	// localAddrs, when set, replace the interface addresses.
	localAddrs []netip.Addr
}

// identityFlags are the flags identityFromFlags reads.
func identityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "gateway-name",
			Usage:   "this gateway's name in the configuration (default: the FQDN, as upstream's socket.getfqdn())",
			EnvVars: []string{host.EnvGatewayName},
		},
		&cli.StringSliceFlag{
			Name:  "local-addr",
			Usage: "an address this gateway owns for portals; repeat for several (default: every interface address)",
		},
	}
}

// identityFromFlags reads identityFlags; cmd prefixes usage errors.
func identityFromFlags(c *cli.Context, cmd string) (identityOptions, error) {
	o := identityOptions{gatewayName: c.String("gateway-name")}
	for _, a := range c.StringSlice("local-addr") {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return o, cli.Exit(fmt.Sprintf("%s: --local-addr %q: not an IP address", cmd, a), exitUsage)
		}
		o.localAddrs = append(o.localAddrs, ip.Unmap())
	}
	return o, nil
}

// resolve names this gateway and lists its portal addresses.
func (o identityOptions) resolve(cmd string) (host.Identity, error) {
	id, err := host.Resolve(o.gatewayName)
	if err != nil {
		return id, fatalf("%s: gateway identity: %w", cmd, err)
	}
	if o.localAddrs != nil {
		id.Addrs = o.localAddrs
	}
	return id, nil
}
