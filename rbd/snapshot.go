package rbd

import (
	"fmt"

	gorados "github.com/ceph/go-ceph/rados"
	gorbd "github.com/ceph/go-ceph/rbd"
)

// Snapshot describes one snapshot of an image.
type Snapshot struct {
	ID   uint64
	Name string
	Size int64 // bytes: the image's size when the snapshot was taken
}

// snapErr translates librbd's errno for an operation on a snapshot. The messages for
// an existing or missing snapshot are upstream's (the API returns them as they are).
func snapErr(op, pool, image, snap string, err error) error {
	switch errno(err) {
	case errnoEEXIST:
		return &upstreamError{msg: fmt.Sprintf("snapshot %s already exists", snap), sentinel: ErrSnapshotExists, cause: err}
	case errnoENOENT:
		return &upstreamError{msg: fmt.Sprintf("snapshot %s does not exist", snap), sentinel: ErrSnapshotNotFound, cause: err}
	}
	return fmt.Errorf("%s %s/%s@%s: %w", op, pool, image, snap, err)
}

// CreateSnapshot takes a snapshot of pool/image named snap.
func CreateSnapshot(conn *gorados.Conn, pool, image, snap string) error {
	if err := ValidateSnapshotName(snap); err != nil {
		return err
	}
	return withImage(conn, pool, image, false, func(_ *gorados.IOContext, img *gorbd.Image) error {
		if _, err := img.CreateSnapshot(snap); err != nil {
			return snapErr("create snapshot", pool, image, snap, err)
		}
		return nil
	})
}

// RemoveSnapshot deletes the snapshot. A missing snapshot is ErrSnapshotNotFound, not
// success: upstream answers 404 and the API keeps that.
func RemoveSnapshot(conn *gorados.Conn, pool, image, snap string) error {
	return withImage(conn, pool, image, false, func(_ *gorados.IOContext, img *gorbd.Image) error {
		if err := img.GetSnapshot(snap).Remove(); err != nil {
			return snapErr("remove snapshot", pool, image, snap, err)
		}
		return nil
	})
}

// RollbackSnapshot rewrites the image with the snapshot's content. The caller must
// have deactivated the LUN on every gateway first: librbd takes the exclusive lock
// for the rollback, and a live tcmu-runner or krbd mapping would either hand it over
// mid-I/O or keep serving cached data.
func RollbackSnapshot(conn *gorados.Conn, pool, image, snap string) error {
	return withImage(conn, pool, image, false, func(_ *gorados.IOContext, img *gorbd.Image) error {
		if err := img.GetSnapshot(snap).Rollback(); err != nil {
			return snapErr("roll back to snapshot", pool, image, snap, err)
		}
		return nil
	})
}

// ListSnapshots returns the image's snapshots in librbd's order (creation order).
func ListSnapshots(conn *gorados.Conn, pool, image string) ([]Snapshot, error) {
	var snaps []Snapshot
	err := withImage(conn, pool, image, true, func(_ *gorados.IOContext, img *gorbd.Image) error {
		infos, err := img.GetSnapshotNames()
		if err != nil {
			return imageErr("list snapshots of", pool, image, err)
		}
		for _, s := range infos {
			snaps = append(snaps, Snapshot{ID: s.Id, Name: s.Name, Size: int64(s.Size)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return snaps, nil
}
