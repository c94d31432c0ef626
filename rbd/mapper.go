package rbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// Defaults of MapperOptions.
const (
	DefaultSysfsRoot  = "/sys"
	DefaultDevRoot    = "/dev"
	DefaultMapTimeout = 30 * time.Second
)

// Driver names a block-device mapping driver.
type Driver string

// Drivers.
const (
	// DriverAuto (the zero value) uses krbd, and rbd-nbd when the rbd module is not
	// available or the kernel refuses the mapping.
	DriverAuto Driver = ""
	DriverKRBD Driver = "krbd"
	DriverNBD  Driver = "nbd"
)

// Tools and the stderr they print for an already-unmapped device, which Unmap counts
// as success.
const (
	rbdNBDCmd   = "rbd-nbd"
	modprobeCmd = "modprobe"
	// `rbd-nbd unmap <spec>`: "rbd-nbd: <spec> is not mapped"
	nbdStderrNotMapped = "is not mapped"
	// `rbd-nbd unmap <dev>` on a device that was disconnected meanwhile
	nbdStderrNotUsed = "the device is not used"
)

// krbdNoSnap is what krbd shows in current_snap for a mapping of the image head.
const krbdNoSnap = "-"

// Runner starts external commands (rbd-nbd, modprobe) for a Mapper. The error must
// not hide the exit status; stderr is returned separately so the Mapper can match
// and sanitise it.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (stdout, stderr []byte, err error)
}

// execRunner runs commands with os/exec.
type execRunner struct{}

func (execRunner) Run(ctx context.Context, name string, args ...string) ([]byte, []byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}

// MapperOptions configure a Mapper.
type MapperOptions struct {
	// Credentials reach the cluster from the kernel or rbd-nbd (CredentialsFromConn).
	Credentials Credentials
	// SysfsRoot is where sysfs is mounted (DefaultSysfsRoot when empty).
	SysfsRoot string
	// DevRoot is where device nodes appear (DefaultDevRoot when empty).
	DevRoot string
	// Runner starts rbd-nbd and modprobe (os/exec when nil).
	Runner Runner
	// Driver forces a driver; DriverAuto by default.
	Driver Driver
	// Timeout bounds one mapping: the wait for the exclusive lock and for the device
	// node (DefaultMapTimeout when zero).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Mapping is one block device backed by an RBD image.
type Mapping struct {
	Driver    Driver
	Pool      string
	Namespace string
	Image     string
	Snap      string // "" for the image head
	Device    string // e.g. /dev/rbd0
	// ID is the krbd device id, or the rbd-nbd process id.
	ID string
}

// Mapper maps RBD images to local block devices. One Mapper serialises its own
// Map and Unmap calls, so two requests for one image cannot both map it.
type Mapper struct {
	creds   Credentials
	sysfs   string
	dev     string
	run     Runner
	driver  Driver
	timeout time.Duration
	log     *slog.Logger
	// write performs one sysfs write; the kernel acts on each write(2) call, so the
	// data must go in a single call. Tests replace it to play the kernel's part.
	write func(path string, data []byte) error

	mu sync.Mutex
}

// NewMapper returns a Mapper with opts' defaults filled in.
func NewMapper(opts MapperOptions) *Mapper {
	m := &Mapper{
		creds:   opts.Credentials,
		sysfs:   opts.SysfsRoot,
		dev:     opts.DevRoot,
		run:     opts.Runner,
		driver:  opts.Driver,
		timeout: opts.Timeout,
		log:     opts.Logger,
		write:   writeSysfs,
	}
	if m.sysfs == "" {
		m.sysfs = DefaultSysfsRoot
	}
	if m.dev == "" {
		m.dev = DefaultDevRoot
	}
	if m.run == nil {
		m.run = execRunner{}
	}
	if m.timeout <= 0 {
		m.timeout = DefaultMapTimeout
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m
}

func writeSysfs(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

func (m *Mapper) sysPath(elem ...string) string {
	return filepath.Join(append([]string{m.sysfs}, elem...)...)
}

// Mapped lists the block devices currently backed by RBD images, from both drivers,
// snapshot and namespace mappings included. With an error it still returns what it
// could read; callers about to map must not treat that as complete.
func (m *Mapper) Mapped(ctx context.Context) ([]Mapping, error) {
	maps, err := m.mapped(ctx)
	return maps, sanitizeErr(err, m.creds.Key)
}

func (m *Mapper) mapped(ctx context.Context) ([]Mapping, error) {
	krbd, kerr := m.krbdMapped()
	nbd, nerr := m.nbdMapped(ctx)
	return append(krbd, nbd...), errors.Join(kerr, nerr)
}

// Device returns the device of pool/image's head, or ErrNotMapped.
func (m *Mapper) Device(ctx context.Context, pool, image string) (string, error) {
	maps, err := m.mapped(ctx)
	if err != nil {
		return "", sanitizeErr(err, m.creds.Key)
	}
	if i := slices.IndexFunc(maps, isHeadOf(pool, image)); i >= 0 {
		return maps[i].Device, nil
	}
	return "", fmt.Errorf("%s/%s: %w", pool, image, ErrNotMapped)
}

func isHeadOf(pool, image string) func(Mapping) bool {
	return func(mp Mapping) bool {
		return mp.Pool == pool && mp.Image == image && mp.Namespace == "" && mp.Snap == ""
	}
}

// Map maps pool/image read-write and returns its device. If the image is already
// mapped (by either driver, e.g. before a daemon restart) that device is returned and
// nothing new is mapped. Mappings are exclusive (see the package documentation): when
// another client holds the image's lock and will not release it, Map fails with
// ErrImageLocked instead of trying rbd-nbd, which would meet the same holder.
func (m *Mapper) Map(ctx context.Context, pool, image string) (string, error) {
	dev, err := m.mapImage(ctx, pool, image)
	return dev, sanitizeErr(err, m.creds.Key)
}

func (m *Mapper) mapImage(ctx context.Context, pool, image string) (string, error) {
	if err := errors.Join(checkMapName("pool", pool), checkMapName("image", image)); err != nil {
		return "", fmt.Errorf("map %q/%q: %w", pool, image, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	maps, err := m.mapped(ctx)
	if err != nil {
		// mapping blind could map the image twice
		return "", fmt.Errorf("map %s/%s: list existing mappings: %w", pool, image, err)
	}
	if i := slices.IndexFunc(maps, isHeadOf(pool, image)); i >= 0 {
		m.log.Debug("rbd image already mapped", "pool", pool, "image", image,
			"driver", maps[i].Driver, "device", maps[i].Device)
		return maps[i].Device, nil
	}
	switch m.driver {
	case DriverKRBD:
		return m.krbdMap(ctx, pool, image)
	case DriverNBD:
		return m.nbdMap(ctx, pool, image)
	case DriverAuto:
	default:
		return "", fmt.Errorf("map %s/%s: unknown driver %q", pool, image, m.driver)
	}
	dev, kerr := m.krbdMap(ctx, pool, image)
	if kerr == nil {
		return dev, nil
	}
	if errors.Is(kerr, ErrImageLocked) || errors.Is(kerr, ErrImageNotFound) {
		return "", kerr // rbd-nbd would meet the same lock holder, or the same absence
	}
	dev, nerr := m.nbdMap(ctx, pool, image)
	if nerr != nil {
		return "", errors.Join(kerr, nerr)
	}
	m.log.Warn("krbd could not map the image; rbd-nbd did", "pool", pool, "image", image,
		"device", dev, "krbd_error", sanitizeText(kerr.Error(), m.creds.Key))
	return dev, nil
}

// Unmap removes every mapping of pool/image's head. An image that is not mapped is
// unmapped already: that is success, so teardown can be retried.
func (m *Mapper) Unmap(ctx context.Context, pool, image string) error {
	return sanitizeErr(m.unmapImage(ctx, pool, image), m.creds.Key)
}

func (m *Mapper) unmapImage(ctx context.Context, pool, image string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps, err := m.mapped(ctx)
	if err != nil {
		return fmt.Errorf("unmap %s/%s: list mappings: %w", pool, image, err)
	}
	var errs []error
	for _, mp := range maps {
		if !isHeadOf(pool, image)(mp) {
			continue
		}
		switch mp.Driver {
		case DriverKRBD:
			err = m.krbdUnmap(mp)
		case DriverNBD:
			err = m.nbdUnmap(ctx, mp)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("rbd image unmapped", "pool", pool, "image", image, "driver", mp.Driver, "device", mp.Device)
	}
	return errors.Join(errs...)
}

// ---- krbd (sysfs) ----

func (m *Mapper) krbdDevices() string { return m.sysPath("bus", "rbd", "devices") }

// krbdMapped reads /sys/bus/rbd/devices/<id>/{pool,pool_ns,name,current_snap}. No
// rbd module means no krbd mappings.
func (m *Mapper) krbdMapped() ([]Mapping, error) {
	entries, err := os.ReadDir(m.krbdDevices())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list krbd devices: %w", err)
	}
	var maps []Mapping
	for _, e := range entries {
		id := e.Name()
		attr := func(name string) (string, error) {
			b, err := os.ReadFile(filepath.Join(m.krbdDevices(), id, name))
			return strings.TrimSpace(string(b)), err
		}
		pool, perr := attr("pool")
		image, ierr := attr("name")
		snap, serr := attr("current_snap")
		if err := errors.Join(perr, ierr, serr); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // unmapped while we were reading
			}
			return nil, fmt.Errorf("read krbd device %s: %w", id, err)
		}
		ns, err := attr("pool_ns") // absent before kernel 5.0: no namespaces then
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read krbd device %s: %w", id, err)
		}
		if snap == krbdNoSnap {
			snap = ""
		}
		maps = append(maps, Mapping{Driver: DriverKRBD, Pool: pool, Namespace: ns, Image: image,
			Snap: snap, Device: filepath.Join(m.dev, "rbd"+id), ID: id})
	}
	return maps, nil
}

// krbdControl returns the control file to write (the single-major variant when the
// module offers it, as it does by default since 4.x).
func (m *Mapper) krbdControl(op string) string {
	p := m.sysPath("bus", "rbd", op+"_single_major")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return m.sysPath("bus", "rbd", op)
}

// krbdSpec builds the add line. `exclusive` takes the lock at map time and never
// hands it to another client; lock_timeout bounds that wait, which is otherwise
// unbounded and would hang the write (and the API request) forever.
func (m *Mapper) krbdSpec(pool, image string) (string, error) {
	c := m.creds
	mons, extra := c.Monitors, ""
	if len(mons) == 0 {
		mons, extra = c.MonitorsV2, ",ms_mode=prefer-crc"
	}
	if len(mons) == 0 || c.ID == "" || c.Key == "" {
		return "", errors.New("krbd needs monitor addresses, a client id and a key")
	}
	secs := max(1, int(m.timeout/time.Second))
	return fmt.Sprintf("%s name=%s,secret=%s,exclusive,lock_timeout=%d%s %s %s -",
		strings.Join(mons, ","), c.ID, c.Key, secs, extra, pool, image), nil
}

func (m *Mapper) ensureKRBD(ctx context.Context) error {
	if _, err := os.Stat(m.sysPath("bus", "rbd")); err == nil {
		return nil
	}
	if _, err := m.runCmd(ctx, modprobeCmd, "rbd"); err != nil {
		return fmt.Errorf("krbd unavailable: %w", err)
	}
	if _, err := os.Stat(m.sysPath("bus", "rbd")); err != nil {
		return fmt.Errorf("krbd unavailable: %w", err)
	}
	return nil
}

func (m *Mapper) krbdMap(ctx context.Context, pool, image string) (string, error) {
	if err := m.ensureKRBD(ctx); err != nil {
		return "", fmt.Errorf("krbd map %s/%s: %w", pool, image, err)
	}
	spec, err := m.krbdSpec(pool, image)
	if err != nil {
		return "", fmt.Errorf("krbd map %s/%s: %w", pool, image, err)
	}
	before, err := m.krbdMapped()
	if err != nil {
		return "", fmt.Errorf("krbd map %s/%s: %w", pool, image, err)
	}
	ctl := m.krbdControl("add")
	m.log.Debug("krbd map", "file", ctl, "spec", sanitizeText(spec, m.creds.Key))
	// The kernel's error names only the file; the spec (with the key) stays out.
	if err := m.write(ctl, []byte(spec)); err != nil {
		switch {
		case errors.Is(err, syscall.EROFS):
			// the peer refused the lock ("peer will not release lock" in dmesg)
			return "", fmt.Errorf("krbd map %s/%s: %w: %w", pool, image, ErrImageLocked, err)
		case errors.Is(err, syscall.ENOENT):
			return "", fmt.Errorf("krbd map %s/%s: %w: %w", pool, image, ErrImageNotFound, err)
		}
		return "", fmt.Errorf("krbd map %s/%s: %w", pool, image, err)
	}
	after, err := m.krbdMapped()
	if err != nil {
		return "", fmt.Errorf("krbd map %s/%s: %w", pool, image, err)
	}
	var mp *Mapping
	for i := range after {
		known := slices.ContainsFunc(before, func(b Mapping) bool { return b.ID == after[i].ID })
		if !known && isHeadOf(pool, image)(after[i]) {
			mp = &after[i]
			break
		}
	}
	if mp == nil {
		return "", fmt.Errorf("krbd map %s/%s: the kernel accepted the mapping but no device shows it", pool, image)
	}
	if err := waitForFile(ctx, mp.Device, m.timeout); err != nil {
		// without the node nobody can use the mapping; leave nothing behind
		if uerr := m.krbdUnmap(*mp); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return "", fmt.Errorf("krbd map %s/%s: %w", pool, image, err)
	}
	m.log.Info("rbd image mapped", "pool", pool, "image", image, "driver", DriverKRBD, "device", mp.Device)
	return mp.Device, nil
}

func (m *Mapper) krbdUnmap(mp Mapping) error {
	err := m.write(m.krbdControl("remove"), []byte(mp.ID))
	switch {
	case err == nil, errors.Is(err, syscall.ENOENT):
		return nil // gone already
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("krbd unmap %s (%s/%s): %w", mp.Device, mp.Pool, mp.Image, ErrDeviceBusy)
	}
	return fmt.Errorf("krbd unmap %s (%s/%s): %w", mp.Device, mp.Pool, mp.Image, err)
}

// waitForFile waits for a device node: devtmpfs creates it while the mapping is
// added, but the kernel does not promise it exists when write(2) returns.
func waitForFile(ctx context.Context, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("device %s did not appear: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// ---- rbd-nbd ----

// nbdMapped asks rbd-nbd for its mappings. Without the nbd module loaded there can
// be none, and rbd-nbd need not even be installed.
func (m *Mapper) nbdMapped(ctx context.Context) ([]Mapping, error) {
	if _, err := os.Stat(m.sysPath("module", "nbd")); err != nil {
		return nil, nil
	}
	out, err := m.runCmd(ctx, rbdNBDCmd, "list-mapped", "--format", "json")
	if errors.Is(err, exec.ErrNotFound) {
		return nil, nil // nbd is loaded for something else; no rbd-nbd, no mappings of ours
	}
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID        json.Number `json:"id"`
		Pool      string      `json:"pool"`
		Namespace string      `json:"namespace"`
		Image     string      `json:"image"`
		Snap      string      `json:"snap"`
		Device    string      `json:"device"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("%s list-mapped: decode: %w", rbdNBDCmd, err)
	}
	maps := make([]Mapping, 0, len(list))
	for _, d := range list {
		snap := d.Snap
		if snap == krbdNoSnap {
			snap = ""
		}
		maps = append(maps, Mapping{Driver: DriverNBD, Pool: d.Pool, Namespace: d.Namespace,
			Image: d.Image, Snap: snap, Device: d.Device, ID: d.ID.String()})
	}
	return maps, nil
}

func (m *Mapper) nbdMap(ctx context.Context, pool, image string) (string, error) {
	if _, err := os.Stat(m.sysPath("module", "nbd")); err != nil {
		if _, err := m.runCmd(ctx, modprobeCmd, "nbd"); err != nil {
			return "", fmt.Errorf("rbd-nbd map %s/%s: %w", pool, image, err)
		}
	}
	c := m.creds
	args := []string{"map", "--exclusive"}
	if c.ID != "" {
		args = append(args, "--id", c.ID)
	}
	if c.ConfFile != "" {
		args = append(args, "--conf", c.ConfFile)
	}
	// A keyring path keeps the key off the command line, where any local user could
	// read it in /proc; --key is the last resort when only the mons gave us the key.
	switch {
	case c.Keyring != "":
		args = append(args, "--keyring", c.Keyring)
	case c.Key != "":
		args = append(args, keyFlag, c.Key)
	}
	args = append(args, pool+"/"+image)
	out, err := m.runCmd(ctx, rbdNBDCmd, args...)
	if err != nil {
		return "", fmt.Errorf("rbd-nbd map %s/%s: %w", pool, image, err)
	}
	dev := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/") {
		return "", fmt.Errorf("rbd-nbd map %s/%s: unexpected output %q", pool, image, sanitizeText(dev, c.Key))
	}
	m.log.Info("rbd image mapped", "pool", pool, "image", image, "driver", DriverNBD, "device", dev)
	return dev, nil
}

func (m *Mapper) nbdUnmap(ctx context.Context, mp Mapping) error {
	_, err := m.runCmd(ctx, rbdNBDCmd, "unmap", mp.Device)
	var ce *cmdError
	if errors.As(err, &ce) && (strings.Contains(ce.stderr, nbdStderrNotMapped) || strings.Contains(ce.stderr, nbdStderrNotUsed)) {
		return nil // unmapped meanwhile
	}
	if err != nil {
		return fmt.Errorf("rbd-nbd unmap %s (%s/%s): %w", mp.Device, mp.Pool, mp.Image, err)
	}
	return nil
}

// cmdError is a failed command, its command line and stderr already sanitised.
type cmdError struct {
	cmdline string
	stderr  string
	err     error
}

func (e *cmdError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmdline, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmdline, e.err, e.stderr)
}

func (e *cmdError) Unwrap() error { return e.err }

// runCmd runs a command, logging and reporting only its sanitised form.
func (m *Mapper) runCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmdline := strings.Join(append([]string{name}, sanitizeArgs(args)...), " ")
	m.log.Debug("run", "cmd", cmdline)
	out, stderr, err := m.run.Run(ctx, name, args...)
	if err != nil {
		return out, &cmdError{
			cmdline: cmdline,
			stderr:  sanitizeText(strings.TrimSpace(string(stderr)), m.creds.Key),
			err:     err,
		}
	}
	return out, nil
}

// String helps tests and logs: "krbd rbd/img@snap -> /dev/rbd0".
func (mp Mapping) String() string {
	s := string(mp.Driver) + " " + mp.Pool + "/"
	if mp.Namespace != "" {
		s += mp.Namespace + "/"
	}
	s += mp.Image
	if mp.Snap != "" {
		s += "@" + mp.Snap
	}
	return s + " -> " + mp.Device
}

// checkMapName refuses a pool or image name that would change the meaning of
// the map request: krbd's add line is space-separated options, rbd-nbd's is
// an argument list where a leading '-' is an option, and '/' or '@' would
// name another image or a snapshot. The document may hold such a name (an
// older version or a hand edit); it must never reach either.
func checkMapName(what, name string) error {
	if name == "" || name[0] == '-' || strings.ContainsAny(name, "/@") {
		return fmt.Errorf("%w: %s %q: empty, a leading '-', '/' or '@'", ErrInvalidName, what, name)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s %q: space, control or unprintable character %U", ErrInvalidName, what, name, r)
		}
	}
	return nil
}
