package rados

/*
#cgo LDFLAGS: -lrados
#include <stdlib.h>
#include <rados/librados.h>
*/
import "C"

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"
)

// ServiceRegistration is a librados client registered in the mgr's service map as
// one daemon of a service, as tcmu-runner registers every image it opens
// ("tcmu-runner", "<host>:<pool>/<image>"). The gateway itself never registers; tests
// use it to feed the device-status tracker real service reports. go-ceph does not
// wrap rados_service_register, and a registration owns its own connection: the
// service map keys daemons by client, so one connection is one daemon.
type ServiceRegistration struct {
	cluster C.rados_t
}

// RegisterService connects as opts.ClientName and registers daemon of service with
// metadata. Close ends the registration.
func RegisterService(opts ConnOptions, service, daemon string, metadata map[string]string) (*ServiceRegistration, error) {
	name := opts.ClientName
	if name == "" {
		name = "client.admin"
	}
	cName := C.CString(name)
	defer C.free(unsafe.Pointer(cName))
	var cluster C.rados_t
	if ret := C.rados_create2(&cluster, nil, cName, 0); ret < 0 {
		return nil, fmt.Errorf("rados: create handle as %s: errno %d", name, -ret)
	}
	fail := func(what string, ret C.int) (*ServiceRegistration, error) {
		C.rados_shutdown(cluster)
		return nil, fmt.Errorf("rados: service %s daemon %s: %s: errno %d", service, daemon, what, -ret)
	}
	var cConf *C.char
	if opts.ConfFile != "" {
		cConf = C.CString(opts.ConfFile)
		defer C.free(unsafe.Pointer(cConf))
	}
	if ret := C.rados_conf_read_file(cluster, cConf); ret < 0 {
		return fail("read ceph.conf", ret)
	}
	if ret := C.rados_connect(cluster); ret < 0 {
		return fail("connect", ret)
	}
	cService, cDaemon := C.CString(service), C.CString(daemon)
	defer C.free(unsafe.Pointer(cService))
	defer C.free(unsafe.Pointer(cDaemon))
	meta := nulPairs(metadata)
	defer C.free(unsafe.Pointer(meta))
	if ret := C.rados_service_register(cluster, cService, cDaemon, meta); ret < 0 {
		return fail("register", ret)
	}
	return &ServiceRegistration{cluster: cluster}, nil
}

// UpdateStatus replaces the daemon's status map; the mgr shows it in `service status`
// after the client's next report (every mgr_stats_period).
func (r *ServiceRegistration) UpdateStatus(status map[string]string) error {
	s := nulPairs(status)
	defer C.free(unsafe.Pointer(s))
	if ret := C.rados_service_update_status(r.cluster, s); ret < 0 {
		return fmt.Errorf("rados: update service status: errno %d", -ret)
	}
	return nil
}

// Close disconnects; the mgr drops the daemon from the service map.
func (r *ServiceRegistration) Close() {
	C.rados_shutdown(r.cluster)
}

// nulPairs encodes m as librados wants it: "k\0v\0k\0v\0\0", in key order.
func nulPairs(m map[string]string) *C.char {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	b.WriteByte(0)
	// C.CString would do, but the embedded NULs make the explicit copy clearer
	s := b.String()
	p := C.malloc(C.size_t(len(s) + 1))
	copy(unsafe.Slice((*byte)(p), len(s)+1), s+"\x00")
	return (*C.char)(p)
}
