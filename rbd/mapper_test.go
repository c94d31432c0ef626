package rbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const testKey = "AQTESTSECRETKEYTESTSECRETKEY00=="

// fakeHost is a temp-dir sysfs and /dev, a fake krbd behind the sysfs control files,
// and a fake rbd-nbd/modprobe behind the Runner.
type fakeHost struct {
	t     *testing.T
	sys   string
	dev   string
	creds Credentials

	adds, removes []string // data written to the krbd control files
	addErr        error    // the kernel refuses the next adds
	removeErr     error
	noNode        bool // devtmpfs never shows the node

	calls      []string // runner command lines
	nbd        []nbdDev // rbd-nbd's mappings
	modprobeOK map[string]bool
	nbdMapErr  string // stderr of a failing rbd-nbd map
}

type nbdDev struct {
	ID     int    `json:"id"`
	Pool   string `json:"pool"`
	NS     string `json:"namespace"`
	Image  string `json:"image"`
	Snap   string `json:"snap"`
	Device string `json:"device"`
}

func newFakeHost(t *testing.T, krbd bool) *fakeHost {
	root := t.TempDir()
	h := &fakeHost{t: t, sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev"),
		modprobeOK: map[string]bool{"nbd": true}}
	h.creds = Credentials{Monitors: []string{"127.0.0.1:6789", "127.0.0.2:6789"}, ID: "admin", Key: testKey,
		Keyring: "/etc/ceph/ceph.client.admin.keyring", ConfFile: "/etc/ceph/ceph.conf"}
	must(t, os.MkdirAll(h.dev, 0o755))
	must(t, os.MkdirAll(filepath.Join(h.sys, "module"), 0o755))
	if krbd {
		h.loadRBD()
	}
	return h
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// loadRBD creates what the rbd module shows in sysfs: the bus and its control files.
func (h *fakeHost) loadRBD() {
	bus := filepath.Join(h.sys, "bus", "rbd")
	must(h.t, os.MkdirAll(filepath.Join(bus, "devices"), 0o755))
	for _, f := range []string{"add", "remove", "add_single_major", "remove_single_major"} {
		must(h.t, os.WriteFile(filepath.Join(bus, f), nil, 0o200))
	}
}

// seedKRBD makes a krbd device appear, as an earlier process would have left it.
func (h *fakeHost) seedKRBD(id int, pool, ns, image, snap string) {
	d := filepath.Join(h.sys, "bus", "rbd", "devices", strconv.Itoa(id))
	must(h.t, os.MkdirAll(d, 0o755))
	for name, v := range map[string]string{"pool": pool, "pool_ns": ns, "name": image, "current_snap": snap,
		"config_info": "127.0.0.1:6789 name=admin,secret=" + testKey + " " + pool + " " + image + " " + snap} {
		must(h.t, os.WriteFile(filepath.Join(d, name), []byte(v+"\n"), 0o400))
	}
	if !h.noNode {
		must(h.t, os.WriteFile(filepath.Join(h.dev, "rbd"+strconv.Itoa(id)), nil, 0o600))
	}
}

func (h *fakeHost) mapper(driver Driver, logTo *bytes.Buffer) *Mapper {
	opts := MapperOptions{Credentials: h.creds, SysfsRoot: h.sys, DevRoot: h.dev, Runner: h,
		Driver: driver, Timeout: 200 * time.Millisecond}
	if logTo != nil {
		opts.Logger = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m := NewMapper(opts)
	m.write = h.kernelWrite
	return m
}

// kernelWrite plays krbd: an add line maps the image (next free id), an id written to
// remove unmaps it.
func (h *fakeHost) kernelWrite(path string, data []byte) error {
	if err := writeSysfs(path, data); err != nil { // the control file must exist
		return err
	}
	switch filepath.Base(path) {
	case "add_single_major", "add":
		h.adds = append(h.adds, string(data))
		if h.addErr != nil {
			// a leaky error, to prove the Mapper sanitises what it returns
			return fmt.Errorf("write %q: %w", data, h.addErr)
		}
		f := strings.Fields(string(data))
		if len(f) != 5 {
			return syscall.EINVAL
		}
		id := 0
		for ; ; id++ {
			if _, err := os.Stat(filepath.Join(h.sys, "bus", "rbd", "devices", strconv.Itoa(id))); err != nil {
				break
			}
		}
		h.seedKRBD(id, f[2], "", f[3], f[4])
	case "remove_single_major", "remove":
		h.removes = append(h.removes, string(data))
		if h.removeErr != nil {
			return h.removeErr
		}
		d := filepath.Join(h.sys, "bus", "rbd", "devices", string(data))
		if _, err := os.Stat(d); err != nil {
			return syscall.ENOENT
		}
		must(h.t, os.RemoveAll(d))
		os.Remove(filepath.Join(h.dev, "rbd"+string(data)))
	}
	return nil
}

// Run plays rbd-nbd and modprobe.
func (h *fakeHost) Run(_ context.Context, name string, args ...string) ([]byte, []byte, error) {
	h.calls = append(h.calls, strings.Join(append([]string{name}, args...), " "))
	exit1 := errors.New("exit status 1")
	switch name {
	case "modprobe":
		if !h.modprobeOK[args[0]] {
			return nil, []byte("modprobe: FATAL: Module " + args[0] + " not found"), exit1
		}
		switch args[0] {
		case "nbd":
			must(h.t, os.MkdirAll(filepath.Join(h.sys, "module", "nbd"), 0o755))
		case "rbd":
			h.loadRBD()
		}
		return nil, nil, nil
	case "rbd-nbd":
		switch args[0] {
		case "list-mapped":
			out, err := json.Marshal(h.nbd)
			must(h.t, err)
			if h.nbd == nil {
				out = []byte("[]")
			}
			return out, nil, nil
		case "map":
			if h.nbdMapErr != "" {
				return nil, []byte(h.nbdMapErr), exit1
			}
			spec := args[len(args)-1]
			pool, image, _ := strings.Cut(spec, "/")
			dev := fmt.Sprintf("/dev/nbd%d", len(h.nbd))
			h.nbd = append(h.nbd, nbdDev{ID: 4000 + len(h.nbd), Pool: pool, Image: image, Snap: "-", Device: dev})
			return []byte(dev + "\n"), nil, nil
		case "unmap":
			i := slices.IndexFunc(h.nbd, func(d nbdDev) bool { return d.Device == args[1] })
			if i < 0 {
				return nil, []byte("rbd-nbd: " + args[1] + " is not mapped"), exit1
			}
			h.nbd = slices.Delete(h.nbd, i, i+1)
			return nil, nil, nil
		}
	}
	return nil, nil, &exec.Error{Name: name, Err: exec.ErrNotFound}
}

func (h *fakeHost) mapped(t *testing.T, m *Mapper) []string {
	t.Helper()
	maps, err := m.Mapped(context.Background())
	if err != nil {
		t.Fatalf("Mapped: %v", err)
	}
	var s []string
	for _, mp := range maps {
		s = append(s, mp.String())
	}
	return s
}

func TestMapKRBD(t *testing.T) {
	h := newFakeHost(t, true)
	m := h.mapper(DriverAuto, nil)
	ctx := context.Background()

	dev, err := m.Map(ctx, "rbd", "disk1")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(h.dev, "rbd0"); dev != want {
		t.Errorf("device %s, want %s", dev, want)
	}
	wantAdd := "127.0.0.1:6789,127.0.0.2:6789 name=admin,secret=" + testKey + ",exclusive,lock_timeout=1 rbd disk1 -"
	if len(h.adds) != 1 || h.adds[0] != wantAdd {
		t.Errorf("sysfs adds %q, want [%q]", h.adds, wantAdd)
	}
	if got := h.mapped(t, m); !slices.Equal(got, []string{"krbd rbd/disk1 -> " + dev}) {
		t.Errorf("Mapped = %q", got)
	}

	// mapped already: same device, nothing written
	again, err := m.Map(ctx, "rbd", "disk1")
	if err != nil || again != dev || len(h.adds) != 1 {
		t.Errorf("second Map = %s, %v with %d adds; want %s and no second add", again, err, len(h.adds), dev)
	}
	if got, err := m.Device(ctx, "rbd", "disk1"); err != nil || got != dev {
		t.Errorf("Device = %s, %v", got, err)
	}

	// a second image gets the next id
	dev2, err := m.Map(ctx, "rbd", "disk2")
	if err != nil || dev2 != filepath.Join(h.dev, "rbd1") {
		t.Errorf("Map disk2 = %s, %v", dev2, err)
	}

	if err := m.Unmap(ctx, "rbd", "disk1"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.removes, []string{"0"}) {
		t.Errorf("removes %q, want [0]", h.removes)
	}
	if got := h.mapped(t, m); !slices.Equal(got, []string{"krbd rbd/disk2 -> " + dev2}) {
		t.Errorf("Mapped after unmap = %q", got)
	}
	if _, err := m.Device(ctx, "rbd", "disk1"); !errors.Is(err, ErrNotMapped) {
		t.Errorf("Device after unmap: %v, want ErrNotMapped", err)
	}
	if len(h.calls) != 0 {
		t.Errorf("krbd path ran commands: %q", h.calls)
	}
}

func TestMapReusesExistingKRBD(t *testing.T) {
	h := newFakeHost(t, true)
	// left behind by an earlier run: the head is reused; a snapshot mapping and the
	// same name in a namespace are other images
	h.seedKRBD(3, "rbd", "", "disk1", "-")
	h.seedKRBD(4, "rbd", "", "disk2", "snap1")
	h.seedKRBD(5, "rbd", "ns1", "disk2", "-")
	m := h.mapper(DriverAuto, nil)
	ctx := context.Background()

	dev, err := m.Map(ctx, "rbd", "disk1")
	if err != nil || dev != filepath.Join(h.dev, "rbd3") || len(h.adds) != 0 {
		t.Errorf("Map disk1 = %s, %v with adds %q; want the existing rbd3", dev, err, h.adds)
	}
	dev, err = m.Map(ctx, "rbd", "disk2")
	if err != nil || dev != filepath.Join(h.dev, "rbd0") || len(h.adds) != 1 {
		t.Errorf("Map disk2 = %s, %v with adds %q; want a new mapping rbd0", dev, err, h.adds)
	}
	got := h.mapped(t, m)
	want := []string{
		"krbd rbd/disk2 -> " + filepath.Join(h.dev, "rbd0"),
		"krbd rbd/disk1 -> " + filepath.Join(h.dev, "rbd3"),
		"krbd rbd/disk2@snap1 -> " + filepath.Join(h.dev, "rbd4"),
		"krbd rbd/ns1/disk2 -> " + filepath.Join(h.dev, "rbd5"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("Mapped:\n got %q\nwant %q", got, want)
	}
	// Unmap leaves the snapshot and namespace mappings alone
	must(t, m.Unmap(ctx, "rbd", "disk2"))
	if !slices.Equal(h.removes, []string{"0"}) {
		t.Errorf("removes %q, want [0]", h.removes)
	}
}

func TestMapReusesExistingNBD(t *testing.T) {
	h := newFakeHost(t, true)
	must(t, os.MkdirAll(filepath.Join(h.sys, "module", "nbd"), 0o755))
	h.nbd = []nbdDev{{ID: 99, Pool: "rbd", Image: "disk1", Snap: "-", Device: "/dev/nbd2"}}
	m := h.mapper(DriverAuto, nil)

	dev, err := m.Map(context.Background(), "rbd", "disk1")
	if err != nil || dev != "/dev/nbd2" {
		t.Errorf("Map = %s, %v; want the existing /dev/nbd2", dev, err)
	}
	if len(h.adds) != 0 || slices.ContainsFunc(h.calls, func(c string) bool { return strings.HasPrefix(c, "rbd-nbd map") }) {
		t.Errorf("mapped again: adds %q, calls %q", h.adds, h.calls)
	}
}

func TestUnmapNotMappedSucceeds(t *testing.T) {
	for _, krbd := range []bool{true, false} {
		h := newFakeHost(t, krbd)
		m := h.mapper(DriverAuto, nil)
		if err := m.Unmap(context.Background(), "rbd", "never-mapped"); err != nil {
			t.Errorf("krbd=%v: Unmap of an unmapped image: %v", krbd, err)
		}
		if len(h.removes) != 0 || len(h.calls) != 0 {
			t.Errorf("krbd=%v: removes %q, calls %q; want nothing done", krbd, h.removes, h.calls)
		}
	}
}

func TestUnmapKRBDRacesAndBusy(t *testing.T) {
	h := newFakeHost(t, true)
	h.seedKRBD(0, "rbd", "", "disk1", "-")
	m := h.mapper(DriverAuto, nil)

	h.removeErr = syscall.EBUSY
	err := m.Unmap(context.Background(), "rbd", "disk1")
	if !errors.Is(err, ErrDeviceBusy) {
		t.Errorf("Unmap of a busy device: %v, want ErrDeviceBusy", err)
	}
	// the device went away between listing and removal: still success
	h.removeErr = syscall.ENOENT
	if err := m.Unmap(context.Background(), "rbd", "disk1"); err != nil {
		t.Errorf("Unmap racing another unmap: %v", err)
	}
}

func TestUnmapNBD(t *testing.T) {
	h := newFakeHost(t, false)
	must(t, os.MkdirAll(filepath.Join(h.sys, "module", "nbd"), 0o755))
	h.nbd = []nbdDev{{ID: 7, Pool: "rbd", Image: "disk1", Snap: "-", Device: "/dev/nbd0"}}
	m := h.mapper(DriverAuto, nil)
	must(t, m.Unmap(context.Background(), "rbd", "disk1"))
	if len(h.nbd) != 0 || !slices.Contains(h.calls, "rbd-nbd unmap /dev/nbd0") {
		t.Errorf("nbd left %v, calls %q", h.nbd, h.calls)
	}

	// rbd-nbd says it is not mapped any more (unmapped meanwhile): success
	h.nbd = []nbdDev{{ID: 8, Pool: "rbd", Image: "disk1", Snap: "-", Device: "/dev/nbd5"}}
	m.run = raceRunner{h}
	if err := m.Unmap(context.Background(), "rbd", "disk1"); err != nil {
		t.Errorf("Unmap when rbd-nbd reports not mapped: %v", err)
	}
}

// raceRunner lists a mapping that is gone by the time rbd-nbd unmap runs.
type raceRunner struct{ h *fakeHost }

func (r raceRunner) Run(ctx context.Context, name string, args ...string) ([]byte, []byte, error) {
	out, stderr, err := r.h.Run(ctx, name, args...)
	if len(args) > 0 && args[0] == "list-mapped" {
		r.h.nbd = nil
	}
	return out, stderr, err
}

func TestFallbackToNBDWithoutKRBD(t *testing.T) {
	h := newFakeHost(t, false) // no /sys/bus/rbd, and modprobe rbd fails
	var logs bytes.Buffer
	m := h.mapper(DriverAuto, &logs)

	dev, err := m.Map(context.Background(), "rbd", "disk1")
	if err != nil || dev != "/dev/nbd0" {
		t.Fatalf("Map = %s, %v; want /dev/nbd0", dev, err)
	}
	want := []string{
		"modprobe rbd",
		"modprobe nbd",
		"rbd-nbd map --exclusive --id admin --conf /etc/ceph/ceph.conf --keyring /etc/ceph/ceph.client.admin.keyring rbd/disk1",
	}
	if !slices.Equal(h.calls, want) {
		t.Errorf("calls:\n got %q\nwant %q", h.calls, want)
	}
	// now that nbd is loaded, the mapping is found and not made twice
	dev, err = m.Map(context.Background(), "rbd", "disk1")
	if err != nil || dev != "/dev/nbd0" || len(h.nbd) != 1 {
		t.Errorf("second Map = %s, %v, nbd %v", dev, err, h.nbd)
	}
	if strings.Contains(logs.String(), testKey) {
		t.Errorf("key in logs:\n%s", logs.String())
	}
}

func TestFallbackToNBDWhenKernelRefuses(t *testing.T) {
	h := newFakeHost(t, true)
	h.addErr = syscall.EINVAL // an image feature this kernel lacks, say
	var logs bytes.Buffer
	m := h.mapper(DriverAuto, &logs)

	dev, err := m.Map(context.Background(), "rbd", "disk1")
	if err != nil || dev != "/dev/nbd0" {
		t.Fatalf("Map = %s, %v; want /dev/nbd0", dev, err)
	}
	if len(h.adds) != 1 {
		t.Errorf("krbd tried %d times, want 1", len(h.adds))
	}
	if !strings.Contains(logs.String(), "krbd_error") || strings.Contains(logs.String(), testKey) {
		t.Errorf("want the krbd failure logged without the key:\n%s", logs.String())
	}
}

func TestNoFallbackWhenLockedOrMissing(t *testing.T) {
	for errno, want := range map[syscall.Errno]error{syscall.EROFS: ErrImageLocked, syscall.ENOENT: ErrImageNotFound} {
		h := newFakeHost(t, true)
		h.addErr = errno
		m := h.mapper(DriverAuto, nil)
		_, err := m.Map(context.Background(), "rbd", "disk1")
		if !errors.Is(err, want) || !errors.Is(err, errno) {
			t.Errorf("kernel says %v: Map error %v, want %v", errno, err, want)
		}
		if len(h.calls) != 0 || len(h.nbd) != 0 {
			t.Errorf("kernel says %v: fell back to rbd-nbd: %q", errno, h.calls)
		}
	}
}

func TestForcedDriverDoesNotFallBack(t *testing.T) {
	h := newFakeHost(t, false)
	m := h.mapper(DriverKRBD, nil)
	if _, err := m.Map(context.Background(), "rbd", "disk1"); err == nil {
		t.Fatal("krbd map without the rbd module succeeded")
	}
	if slices.ContainsFunc(h.calls, func(c string) bool { return strings.HasPrefix(c, "rbd-nbd") }) {
		t.Errorf("forced krbd fell back: %q", h.calls)
	}
}

func TestSecretNeverInErrorsOrLogs(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, what string, err error, logs *bytes.Buffer) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: want an error", what)
		}
		if strings.Contains(err.Error(), testKey) || strings.Contains(logs.String(), testKey) {
			t.Errorf("%s leaked the key:\nerr: %v\nlogs: %s", what, err, logs.String())
		}
	}

	// both drivers fail; krbd's error quotes the add line, rbd-nbd echoes the key
	h := newFakeHost(t, true)
	h.creds.Keyring = "" // only the mons knew the key: rbd-nbd gets --key
	h.addErr = syscall.EINVAL
	h.nbdMapErr = "rbd-nbd: failed to connect with key " + testKey + " (secret=" + testKey + ")"
	var logs bytes.Buffer
	m := h.mapper(DriverAuto, &logs)
	_, err := m.Map(ctx, "rbd", "disk1")
	check(t, "Map", err, &logs)
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("krbd cause lost: %v", err)
	}
	if !slices.ContainsFunc(h.calls, func(c string) bool { return strings.Contains(c, "--key "+testKey) }) {
		t.Errorf("rbd-nbd was not given the key: %q", h.calls)
	}
	if !strings.Contains(err.Error(), "--key ***") {
		t.Errorf("error should show the sanitised command line: %v", err)
	}

	// the device node never shows up: the mapping is rolled back
	h = newFakeHost(t, true)
	h.noNode = true
	logs.Reset()
	m = h.mapper(DriverKRBD, &logs)
	_, err = m.Map(ctx, "rbd", "disk1")
	check(t, "Map without node", err, &logs)
	if len(h.removes) != 1 || len(h.mapped(t, m)) != 0 {
		t.Errorf("half-made mapping left behind: removes %q", h.removes)
	}
}

func TestMapNeedsCredentials(t *testing.T) {
	h := newFakeHost(t, true)
	h.creds.Key = ""
	m := h.mapper(DriverKRBD, nil)
	if _, err := m.Map(context.Background(), "rbd", "disk1"); err == nil || len(h.adds) != 0 {
		t.Errorf("Map without a key: %v, adds %q", err, h.adds)
	}
}

func TestMonitorsV2Only(t *testing.T) {
	h := newFakeHost(t, true)
	h.creds.Monitors, h.creds.MonitorsV2 = nil, []string{"10.0.0.1:3300"}
	m := h.mapper(DriverKRBD, nil)
	if _, err := m.Map(context.Background(), "rbd", "disk1"); err != nil {
		t.Fatal(err)
	}
	if len(h.adds) != 1 || !strings.HasPrefix(h.adds[0], "10.0.0.1:3300 ") || !strings.Contains(h.adds[0], ",ms_mode=prefer-crc ") {
		t.Errorf("add line %q: want v2 monitors with ms_mode=prefer-crc", h.adds)
	}
}

// Issue 8: a name from the document never becomes an option or another
// image in a map request.
func TestMapRefusesHostileNames(t *testing.T) {
	h := newFakeHost(t, true)
	m := h.mapper(DriverAuto, nil)
	for _, c := range [][2]string{{"-o", "x"}, {"rbd", "--conf=/tmp/x"}, {"rbd", "a b"}, {"rbd", "a/../b"},
		{"rbd", "a@snap"}, {"rbd", "a\nb"}, {"", "x"}, {"rbd", "a\x00"}} {
		if _, err := m.Map(context.Background(), c[0], c[1]); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Map(%q, %q) = %v, want ErrInvalidName", c[0], c[1], err)
		}
	}
	if len(h.calls) != 0 {
		t.Errorf("commands run: %q", h.calls)
	}
}
