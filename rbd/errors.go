package rbd

import (
	cephrados "ceph-iscsi/rados"

	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is. Returned errors wrap them with the pool and
// image they concern.
var (
	// ErrPoolNotFound is returned when the pool of a request does not exist.
	ErrPoolNotFound = errors.New("pool not found")
	// ErrImageNotFound is returned when the image does not exist in its pool.
	ErrImageNotFound = errors.New("rbd image not found")
	// ErrImageExists is returned by Create when the name is taken.
	ErrImageExists = errors.New("rbd image already exists")
	// ErrImageBusy is returned by Remove when the image still had watchers (it is
	// open or mapped somewhere) when the retry budget ran out.
	ErrImageBusy = errors.New("rbd image is busy")
	// ErrImageHasSnapshots is returned by Remove: librbd refuses to remove an image
	// with snapshots, and upstream never deletes snapshots on the user's behalf.
	ErrImageHasSnapshots = errors.New("rbd image has snapshots")
	// ErrSnapshotExists is returned by CreateSnapshot when the name is taken.
	ErrSnapshotExists = errors.New("snapshot already exists")
	// ErrSnapshotNotFound is returned by RemoveSnapshot and RollbackSnapshot.
	ErrSnapshotNotFound = errors.New("snapshot not found")
	// ErrInvalidSize is returned by ParseSize.
	ErrInvalidSize = errors.New("invalid size")
	// ErrResizeNotLarger is returned by Resize when the new size is not strictly
	// larger than the current one.
	ErrResizeNotLarger = errors.New("resize value not larger than the current size")
	// ErrInvalidName is returned by the name validators.
	ErrInvalidName = errors.New("invalid name")
	// ErrFeatures is returned by CheckFeatures for an image LIO cannot export.
	ErrFeatures = errors.New("rbd image features not compatible with LIO")
	// ErrFailoverUnsafe is returned by CheckFailoverSafe.
	ErrFailoverUnsafe = errors.New("export not failover safe")
	// ErrNotMapped is returned by Device when the image has no mapping.
	ErrNotMapped = errors.New("rbd image not mapped")
	// ErrImageLocked is returned by Map when another client holds the image's
	// exclusive lock and will not release it: the image is exported (mapped
	// exclusively) elsewhere.
	ErrImageLocked = errors.New("rbd image is exclusively locked by another client")
	// ErrDeviceBusy is returned by Unmap when the kernel refuses because the device
	// is still open (an iblock backstore still uses it).
	ErrDeviceBusy = errors.New("block device is busy")
)

// Errno values this package interprets; go-ceph returns them negated.
const (
	errnoENOENT    = 2
	errnoEBUSY     = 16
	errnoEEXIST    = 17
	errnoENOTEMPTY = 39
)

// errno extracts the (positive) errno from an error returned by go-ceph; 0 when
// there is none.
func errno(err error) int { return cephrados.Errno(err) }

// upstreamError carries one of upstream's user-facing messages verbatim (the API
// returns them to clients, whose scripts match on them) while still answering
// errors.Is for its sentinel and cause.
type upstreamError struct {
	msg      string
	sentinel error
	cause    error
}

func (e *upstreamError) Error() string { return e.msg }

func (e *upstreamError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.cause}
}

// ResizeError is returned by Resize when the requested size is not strictly larger
// than the image's current size. Its message is upstream's.
type ResizeError struct {
	Current   int64 // bytes
	Requested int64 // bytes
}

func (e *ResizeError) Error() string {
	return fmt.Sprintf("resize value must be larger than the current size (%s/%d)",
		HumanSize(e.Current), e.Current)
}

// Is makes errors.Is(err, ErrResizeNotLarger) hold.
func (e *ResizeError) Is(target error) bool { return target == ErrResizeNotLarger }
