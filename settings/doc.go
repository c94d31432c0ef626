// Package settings owns the gateway settings file, /etc/ceph/iscsi-gateway.cfg:
// the 45 settings it may hold (their sections, types, ranges and defaults), how
// the file is parsed (the dialect of Python's ConfigParser that the upstream
// gateways use, including %-interpolation and continuation lines), how values
// are validated, the resolution of config:// values through a caller-supplied
// KeyResolver, the checkconf hash that gateways compare before a new gateway
// joins, and the normalisation of per-target and per-disk "controls" received
// by the REST API.
//
// Unlike upstream, a value that does not parse, is out of range, or sits in
// the wrong section is an error naming the file, section, key and rule, rather
// than being silently replaced by the default. The api_password value never
// appears in errors, warnings or log output.
//
// The package is pure: it reads one local file at most and must not talk to
// RADOS or the mon (that is what KeyResolver is for), LIO/configfs or HTTP.
package settings
