package api

import (
	"context"
	"errors"
	"fmt"

	gorados "github.com/ceph/go-ceph/rados"

	"ceph-iscsi/rados"
	"ceph-iscsi/rbd"
)

// Images is the RBD surface the disk routes use. Errors wrap package rbd's
// sentinels (rbd.ErrPoolNotFound, rbd.ErrImageNotFound, ...) and keep its
// upstream-worded messages, so the handlers can answer as upstream does.
type Images interface {
	// PoolID is the librados id of pool, or rbd.ErrPoolNotFound.
	PoolID(ctx context.Context, pool string) (int64, error)
	Exists(ctx context.Context, pool, image string) (bool, error)
	// Create makes a format 2 image with upstream's default features.
	Create(ctx context.Context, pool, image string, size int64) error
	// Info reports size and features (watchers and lockers may be empty).
	Info(ctx context.Context, pool, image string) (rbd.ImageInfo, error)
	// Resize grows the image; a size not strictly larger is a
	// *rbd.ResizeError.
	Resize(ctx context.Context, pool, image string, size int64) error
	// Remove deletes the image (missing counts as removed), waiting for
	// watchers to go away as rbd.Remove does.
	Remove(ctx context.Context, pool, image string) error
	CreateSnapshot(ctx context.Context, pool, image, snap string) error
	RemoveSnapshot(ctx context.Context, pool, image, snap string) error
	RollbackSnapshot(ctx context.Context, pool, image, snap string) error
}

// imageSizer is the optional part of an Images that reads an image's size
// (RBDImages): PUT /api/targetlun reads it instead of testing existence,
// and hands it to the LocalLIO's size cache (see imageSized).
type imageSizer interface {
	Size(ctx context.Context, pool, image string) (int64, error)
}

// RBDImages implements Images with package rbd on one cluster connection.
type RBDImages struct {
	Conn *gorados.Conn
	// RemoveWait bounds Remove's retries while the image is still open
	// somewhere (upstream's time_out and loop_delay).
	RemoveWait rbd.RemoveOptions
}

// NewRBDImages adapts the daemon's connection; removals wait as long as
// the settings' time_out, retrying every loop_delay.
func NewRBDImages(conn *rados.Conn, wait rbd.RemoveOptions) *RBDImages {
	return &RBDImages{Conn: conn.Raw(), RemoveWait: wait}
}

var _ Images = (*RBDImages)(nil)

// PoolID looks the pool up by name.
func (r *RBDImages) PoolID(_ context.Context, pool string) (int64, error) {
	id, err := r.Conn.GetPoolByName(pool)
	if err != nil {
		if errors.Is(err, gorados.ErrNotFound) || rados.Errno(err) == 2 {
			return 0, fmt.Errorf("pool %q: %w", pool, rbd.ErrPoolNotFound)
		}
		return 0, fmt.Errorf("look up pool %q: %w", pool, err)
	}
	return id, nil
}

// Exists reports whether pool/image exists.
func (r *RBDImages) Exists(_ context.Context, pool, image string) (bool, error) {
	return rbd.Exists(r.Conn, pool, image)
}

// Size is pool/image's size in bytes; a missing image wraps
// rbd.ErrImageNotFound. It is imageSizer: read from the pool's directory
// and the image's header (two round trips, rbd.HeaderSize), where Exists
// and then the reconciler's own size read are two image opens.
func (r *RBDImages) Size(_ context.Context, pool, image string) (int64, error) {
	return rbd.HeaderSize(r.Conn, pool, image)
}

// Create creates pool/image of size bytes.
func (r *RBDImages) Create(_ context.Context, pool, image string, size int64) error {
	return rbd.Create(r.Conn, pool, image, size, 0)
}

// Info reports the image's size, features, watchers and lock owners.
func (r *RBDImages) Info(_ context.Context, pool, image string) (rbd.ImageInfo, error) {
	return rbd.Info(r.Conn, pool, image)
}

// Resize grows pool/image to size bytes.
func (r *RBDImages) Resize(_ context.Context, pool, image string, size int64) error {
	return rbd.Resize(r.Conn, pool, image, size)
}

// Remove deletes pool/image.
func (r *RBDImages) Remove(ctx context.Context, pool, image string) error {
	return rbd.Remove(ctx, r.Conn, pool, image, r.RemoveWait)
}

// CreateSnapshot takes snapshot snap of pool/image.
func (r *RBDImages) CreateSnapshot(_ context.Context, pool, image, snap string) error {
	return rbd.CreateSnapshot(r.Conn, pool, image, snap)
}

// RemoveSnapshot deletes snapshot snap of pool/image.
func (r *RBDImages) RemoveSnapshot(_ context.Context, pool, image, snap string) error {
	return rbd.RemoveSnapshot(r.Conn, pool, image, snap)
}

// RollbackSnapshot rewrites pool/image with snapshot snap's content.
func (r *RBDImages) RollbackSnapshot(_ context.Context, pool, image, snap string) error {
	return rbd.RollbackSnapshot(r.Conn, pool, image, snap)
}

// errNoImages is what the disk routes answer on a server built without RBD
// access (Deps.Images nil), rather than a nil-pointer panic.
var errNoImages = errors.New("no RBD access configured for the disk routes")

type noImages struct{}

func (noImages) PoolID(context.Context, string) (int64, error)        { return 0, errNoImages }
func (noImages) Exists(context.Context, string, string) (bool, error) { return false, errNoImages }
func (noImages) Create(context.Context, string, string, int64) error  { return errNoImages }
func (noImages) Info(context.Context, string, string) (rbd.ImageInfo, error) {
	return rbd.ImageInfo{}, errNoImages
}
func (noImages) Resize(context.Context, string, string, int64) error          { return errNoImages }
func (noImages) Remove(context.Context, string, string) error                 { return errNoImages }
func (noImages) CreateSnapshot(context.Context, string, string, string) error { return errNoImages }
func (noImages) RemoveSnapshot(context.Context, string, string, string) error { return errNoImages }
func (noImages) RollbackSnapshot(context.Context, string, string, string) error {
	return errNoImages
}
