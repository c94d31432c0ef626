package rbd

import (
	"context"
	"errors"
	"fmt"
	"time"

	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"
)

// Image features, as upstream sets and checks them for the user:rbd backstore.
const (
	// DefaultFeatures is what Create uses when given 0: layering, exclusive-lock,
	// object-map, fast-diff and deep-flatten (61), which the 6.1 krbd accepts too.
	DefaultFeatures = gorbd.FeatureLayering | gorbd.FeatureExclusiveLock |
		gorbd.FeatureObjectMap | gorbd.FeatureFastDiff | gorbd.FeatureDeepFlatten
	// RequiredFeatures must be set on an existing image before it is exported:
	// failover between gateways is arbitrated by the exclusive lock.
	RequiredFeatures = gorbd.FeatureExclusiveLock
)

// RemoveOptions bound Remove's wait for watchers to go away.
type RemoveOptions struct {
	// Timeout is upstream's time_out setting (30 s when zero).
	Timeout time.Duration
	// Interval is upstream's loop_delay setting (2 s when zero).
	Interval time.Duration

	// clock drives the retries (the real time when nil); tests replace it to
	// see each retry and move time on without waiting for it.
	clock removeClock
}

// removeClock is the time Remove's retry loop reads and waits on.
type removeClock interface {
	Now() time.Time
	// Wait returns after d, or with ctx's error when ctx ends first.
	Wait(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ImageInfo is what Info reports about an image.
type ImageInfo struct {
	Pool     string
	Name     string
	Size     int64 // bytes
	Features uint64
	// FeatureNames spells Features the way `rbd info` does.
	FeatureNames []string
	// Watchers are the addresses of the clients that have the image open: the
	// gateways' tcmu-runner or krbd clients, or anything else using it.
	Watchers []string
	// LockOwners hold the exclusive lock (at most one); empty when nobody holds it
	// or the feature is off.
	LockOwners []Locker
}

// Locker is a holder of an image's exclusive lock.
type Locker struct {
	Client string // e.g. client.4385
	Cookie string
	Addr   string // e.g. v1:10.0.0.1:0/846074196, what a blocklist entry names
}

// Where librbd keeps the exclusive lock: a cls_lock of this name on the header
// object of a format 2 image.
const (
	headerPrefix      = "rbd_header."
	exclusiveLockName = "rbd_lock"
)

// openPool opens an I/O context on pool; the caller destroys it.
func openPool(conn *gorados.Conn, pool string) (*gorados.IOContext, error) {
	ioctx, err := conn.OpenIOContext(pool)
	if err != nil {
		if errno(err) == errnoENOENT {
			return nil, fmt.Errorf("pool %q: %w", pool, ErrPoolNotFound)
		}
		return nil, fmt.Errorf("open pool %q: %w", pool, err)
	}
	return ioctx, nil
}

// imageErr translates librbd's errno for an operation on pool/image.
func imageErr(op, pool, image string, err error) error {
	switch errno(err) {
	case errnoENOENT:
		return fmt.Errorf("%s %s/%s: %w", op, pool, image, ErrImageNotFound)
	case errnoEEXIST:
		return fmt.Errorf("%s %s/%s: %w", op, pool, image, ErrImageExists)
	}
	return fmt.Errorf("%s %s/%s: %w", op, pool, image, err)
}

// withImage opens pool/image for the duration of fn. Read-only opens register no
// watch, so Info does not report itself as a watcher and never triggers a lock
// request on a gateway's exclusive lock.
func withImage(conn *gorados.Conn, pool, image string, readOnly bool, fn func(*gorados.IOContext, *gorbd.Image) error) error {
	ioctx, err := openPool(conn, pool)
	if err != nil {
		return err
	}
	defer ioctx.Destroy()
	var img *gorbd.Image
	if readOnly {
		img, err = gorbd.OpenImageReadOnly(ioctx, image, gorbd.NoSnapshot)
	} else {
		img, err = gorbd.OpenImage(ioctx, image, gorbd.NoSnapshot)
	}
	if err != nil {
		return imageErr("open image", pool, image, err)
	}
	defer img.Close()
	return fn(ioctx, img)
}

// Create creates a format 2 image of size bytes. features 0 means DefaultFeatures.
func Create(conn *gorados.Conn, pool, image string, size int64, features uint64) error {
	if size < 0 {
		return fmt.Errorf("create image %s/%s: negative size %d", pool, image, size)
	}
	if features == 0 {
		features = DefaultFeatures
	}
	ioctx, err := openPool(conn, pool)
	if err != nil {
		return err
	}
	defer ioctx.Destroy()
	// order 0 lets librbd pick its default object size (4 MiB), as upstream does.
	if _, err := gorbd.Create2(ioctx, image, uint64(size), features, 0); err != nil {
		return imageErr("create image", pool, image, err)
	}
	return nil
}

// Size returns the image's size in bytes.
func Size(conn *gorados.Conn, pool, image string) (int64, error) {
	var size uint64
	err := withImage(conn, pool, image, true, func(_ *gorados.IOContext, img *gorbd.Image) error {
		var err error
		size, err = img.GetSize()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int64(size), nil
}

// Resize grows the image to size bytes. Upstream refuses anything but growth (a
// shrink would cut off data initiators already wrote), so a size that is not strictly
// larger returns a *ResizeError with upstream's message. A failure to read the
// current size carries upstream's "failed to get current size: " prefix.
func Resize(conn *gorados.Conn, pool, image string, size int64) error {
	return withImage(conn, pool, image, false, func(_ *gorados.IOContext, img *gorbd.Image) error {
		cur, err := img.GetSize()
		if err != nil {
			return fmt.Errorf("failed to get current size: %w", imageErr("size of", pool, image, err))
		}
		if size <= int64(cur) {
			return &ResizeError{Current: int64(cur), Requested: size}
		}
		if err := img.Resize(uint64(size)); err != nil {
			return imageErr("resize image", pool, image, err)
		}
		return nil
	})
}

// Grow resizes the image to size bytes if it is smaller and reports whether it did;
// it never shrinks. This is allocate's rule for an image that already exists.
func Grow(conn *gorados.Conn, pool, image string, size int64) (bool, error) {
	err := Resize(conn, pool, image, size)
	if errors.Is(err, ErrResizeNotLarger) {
		return false, nil
	}
	return err == nil, err
}

// Remove deletes the image. An image that does not exist counts as removed, so a
// retried delete succeeds. While the image has watchers (it is still open on a
// gateway that has not torn its LUN down yet) librbd refuses; Remove retries every
// opts.Interval until opts.Timeout, as upstream does. An image with snapshots is
// refused at once. Both refusals carry upstream's message.
func Remove(ctx context.Context, conn *gorados.Conn, pool, image string, opts RemoveOptions) error {
	timeout, interval := opts.Timeout, opts.Interval
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	ioctx, err := openPool(conn, pool)
	if err != nil {
		return err
	}
	defer ioctx.Destroy()
	clock := opts.clock
	if clock == nil {
		clock = realClock{}
	}
	msg := "Unable to delete the underlying rbd image " + image
	deadline := clock.Now().Add(timeout)
	for {
		err := gorbd.RemoveImage(ioctx, image)
		switch errno(err) {
		case 0, errnoENOENT:
			return nil
		case errnoENOTEMPTY:
			return &upstreamError{msg: msg + " - Image has snapshots", sentinel: ErrImageHasSnapshots, cause: err}
		case errnoEBUSY:
		default:
			return imageErr("remove image", pool, image, err)
		}
		if !clock.Now().Add(interval).Before(deadline) {
			return &upstreamError{msg: msg, sentinel: ErrImageBusy, cause: err}
		}
		if err := clock.Wait(ctx, interval); err != nil {
			return &upstreamError{msg: msg, sentinel: ErrImageBusy, cause: err}
		}
	}
}

// Info reports size, features, watchers and lock owners of the image.
func Info(conn *gorados.Conn, pool, image string) (ImageInfo, error) {
	info := ImageInfo{Pool: pool, Name: image}
	err := withImage(conn, pool, image, true, func(ioctx *gorados.IOContext, img *gorbd.Image) error {
		size, err := img.GetSize()
		if err != nil {
			return imageErr("size of", pool, image, err)
		}
		info.Size = int64(size)
		if info.Features, err = img.GetFeatures(); err != nil {
			return imageErr("features of", pool, image, err)
		}
		fs := gorbd.FeatureSet(info.Features)
		info.FeatureNames = fs.Names()
		watchers, err := img.ListWatchers()
		if err != nil {
			return imageErr("watchers of", pool, image, err)
		}
		for _, w := range watchers {
			info.Watchers = append(info.Watchers, w.Addr)
		}
		// librbd answers lock-owner queries only on a read-write open, and a
		// read-write open would list itself as a watcher; the exclusive lock is a
		// cls_lock on the header object, which anyone may read.
		id, err := img.GetId()
		if err != nil {
			return imageErr("id of", pool, image, err)
		}
		lockers, err := ioctx.ListLockers(headerPrefix+id, exclusiveLockName)
		if err != nil {
			return imageErr("lockers of", pool, image, err)
		}
		for i := range lockers.Clients {
			l := Locker{Client: lockers.Clients[i]}
			if i < len(lockers.Addrs) {
				l.Addr = lockers.Addrs[i]
			}
			if i < len(lockers.Cookies) {
				l.Cookie = lockers.Cookies[i]
			}
			info.LockOwners = append(info.LockOwners, l)
		}
		return nil
	})
	if err != nil {
		return ImageInfo{}, err
	}
	return info, nil
}

// List returns the names of the images in pool.
func List(conn *gorados.Conn, pool string) ([]string, error) {
	ioctx, err := openPool(conn, pool)
	if err != nil {
		return nil, err
	}
	defer ioctx.Destroy()
	names, err := gorbd.GetImageNames(ioctx)
	if err != nil {
		return nil, fmt.Errorf("list images of pool %q: %w", pool, err)
	}
	return names, nil
}

// Exists reports whether pool/image exists; a missing pool is an error
// (ErrPoolNotFound), not "no".
func Exists(conn *gorados.Conn, pool, image string) (bool, error) {
	err := withImage(conn, pool, image, true, func(*gorados.IOContext, *gorbd.Image) error { return nil })
	if errors.Is(err, ErrImageNotFound) {
		return false, nil
	}
	return err == nil, err
}

// CheckFeatures reports whether an image with these features can be exported:
// every RequiredFeatures bit must be set. The message is upstream's, including its
// empty list of unsupported features (upstream prints the list it does not check).
func CheckFeatures(image string, features uint64) error {
	if features&RequiredFeatures == RequiredFeatures {
		return nil
	}
	return &upstreamError{
		msg: fmt.Sprintf("(LUN.allocate) rbd '%s' is not compatible with LIO\n"+
			"Image features  are not supported", image),
		sentinel: ErrFeatures,
	}
}
